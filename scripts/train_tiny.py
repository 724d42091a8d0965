#!/usr/bin/python3
"""Train the default tiny Llama model family (target + draft) on the King James Bible.

Run (Debian's torch only imports from /usr/bin/python3):

    apt-get install -y python3-torch libopenblas0-pthread python3-regex bible-kjv
    /usr/bin/python3 scripts/train_tiny.py            # ~45 min on 2 cores

Writes standard Hugging Face folders that the Deno engine loads like any other model:

    weights/tiny/target/  Llama, 6 layers, dim 256, 8 query heads / 2 KV heads (GQA), F16, untied head
    weights/tiny/draft/   Llama, 2 layers, dim 128, 4 query heads / 2 KV heads, BF16, tied embeddings
    weights/tiny/golden.json    float64 PyTorch greedy ids (from the stored, rounded weights)
    weights/tiny/heldout.txt    held-out chapters (never trained on): evaluation and benchmark prompts
    weights/tiny/metrics.json   losses, agreement rate, run time

Everything is seeded; the same machine gives the same files.
"""

import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict

import regex
import torch
import torch.nn.functional as F

torch.set_num_threads(2)

# ---------------------------------------------------------------------------------------------
# Defaults (one block). Sizes chosen so both models train on 2 CPU cores in under an hour.
VOCAB_SIZE = 2048
SPECIALS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 (Llama convention)
HOLDOUT_EVERY = 40  # every 40th chapter is held out (~2.5%, spread over all books)
SEQ_LEN = 512
TARGET = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=6, num_attention_heads=8,
              num_key_value_heads=2, tie_word_embeddings=False, dtype="F16",
              steps=550, batch=8, lr=3e-3)
DRAFT = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, tie_word_embeddings=True, dtype="BF16",
             steps=400, batch=8, lr=4e-3)
ROPE_THETA = 10000.0
RMS_EPS = 1e-5
GOLDEN_PROMPTS = 6
GOLDEN_TOKENS = 64

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# ---------------------------------------------------------------------------------------------
# Corpus
def load_chapters():
    """Return a list of chapter texts (one verse per line, verse numbers removed)."""
    raw = subprocess.run(["bible", "-l10000", "Gen1:1-Rev22:21"], check=True,
                         capture_output=True, text=True).stdout
    chapters, verses = [], []
    for line in raw.split("\n"):
        s = line.strip()
        if not s:
            continue
        m = regex.match(r"^(\d+) (.*)$", s)
        if m and line.startswith("  "):
            verses.append(m.group(2))
        else:  # a chapter heading such as "Genesis 1"
            if verses:
                chapters.append("\n".join(verses) + "\n")
            verses = []
    if verses:
        chapters.append("\n".join(verses) + "\n")
    return chapters


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2 byte <-> unicode map, HF tokenizer.json format)
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


B2U = bytes_to_unicode()
PAT = regex.compile(GPT2_PATTERN)


def pretokenize(text):
    return ["".join(B2U[b] for b in w.encode("utf-8")) for w in PAT.findall(text)]


def train_bpe(texts, vocab_size):
    """Classic BPE merge loop with incremental pair counts. Ties broken by the pair itself."""
    word_counts = Counter()
    for t in texts:
        word_counts.update(pretokenize(t))
    words = [list(w) for w in word_counts]
    counts = [word_counts[w] for w in word_counts]
    pair_counts = Counter()
    where = defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_counts[(a, b)] += counts[i]
            where[(a, b)].add(i)
    vocab = SPECIALS + [B2U[b] for b in range(256)]
    merges = []
    while len(vocab) < vocab_size and pair_counts:
        best = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pair_counts[best] < 2:
            break
        merged = best[0] + best[1]
        merges.append(best)
        vocab.append(merged)
        for i in list(where[best]):
            w = words[i]
            for a, b in zip(w, w[1:]):
                pair_counts[(a, b)] -= counts[i]
                if pair_counts[(a, b)] <= 0:
                    del pair_counts[(a, b)]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == best[0] and w[j + 1] == best[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for a, b in zip(out, out[1:]):
                pair_counts[(a, b)] += counts[i]
                where[(a, b)].add(i)
        del where[best]
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.cache = {}

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get((a, b), 1 << 30), k) for k, (a, b) in
                      enumerate(zip(parts, parts[1:]))]
            r, k = min(ranked)
            if r == 1 << 30:
                break
            parts = parts[:k] + [parts[k] + parts[k + 1]] + parts[k + 2:]
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        return [i for w in pretokenize(text) for i in self._bpe(w)]


def tokenizer_json(vocab, merges):
    special = [dict(id=i, content=t, single_word=False, lstrip=False, rstrip=False,
                    normalized=False, special=True) for i, t in enumerate(SPECIALS)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(vocab)},
                  "merges": [[a, b] for a, b in merges]},
    }


# ---------------------------------------------------------------------------------------------
# Llama in PyTorch (HF conventions: rotate_half RoPE, weight names, RMSNorm in f32)
class Llama(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d, h, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        hd = d // h
        self.embed = torch.nn.Embedding(VOCAB_SIZE, d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["num_hidden_layers"]):
            L = torch.nn.ModuleDict(dict(
                q=torch.nn.Linear(d, h * hd, bias=False), k=torch.nn.Linear(d, kv * hd, bias=False),
                v=torch.nn.Linear(d, kv * hd, bias=False), o=torch.nn.Linear(h * hd, d, bias=False),
                gate=torch.nn.Linear(d, c["intermediate_size"], bias=False),
                up=torch.nn.Linear(d, c["intermediate_size"], bias=False),
                down=torch.nn.Linear(c["intermediate_size"], d, bias=False)))
            L.ln1 = torch.nn.Parameter(torch.ones(d))
            L.ln2 = torch.nn.Parameter(torch.ones(d))
            self.layers.append(L)
        self.norm = torch.nn.Parameter(torch.ones(d))
        self.head = None if c["tie_word_embeddings"] else torch.nn.Linear(d, VOCAB_SIZE, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        for L in self.layers:  # scaled init of residual projections (GPT-2)
            torch.nn.init.normal_(L["o"].weight, std=0.02 / math.sqrt(2 * c["num_hidden_layers"]))
            torch.nn.init.normal_(L["down"].weight, std=0.02 / math.sqrt(2 * c["num_hidden_layers"]))

    @staticmethod
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * w

    def forward(self, ids):
        c = self.c
        B, T = ids.shape
        h, kv = c["num_attention_heads"], c["num_key_value_heads"]
        hd = c["hidden_size"] // h
        dt = self.embed.weight.dtype
        inv = 1.0 / (ROPE_THETA ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        fr = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        emb = torch.cat([fr, fr], -1)
        cos, sin = emb.cos().to(dt), emb.sin().to(dt)

        def rope(x):
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            return x * cos + torch.cat([-x2, x1], -1) * sin

        mask = torch.full((T, T), float("-inf"), dtype=dt).triu(1)
        x = self.embed(ids)
        for L in self.layers:
            a = self.rms(x, L.ln1)
            q = rope(L["q"](a).view(B, T, h, hd).transpose(1, 2))
            k = rope(L["k"](a).view(B, T, kv, hd).transpose(1, 2))
            v = L["v"](a).view(B, T, kv, hd).transpose(1, 2)
            k = k.repeat_interleave(h // kv, dim=1)
            v = v.repeat_interleave(h // kv, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, h * hd)
            x = x + L["o"](o)
            m = self.rms(x, L.ln2)
            x = x + L["down"](F.silu(L["gate"](m)) * L["up"](m))
        x = self.rms(x, self.norm)
        return x @ self.embed.weight.T if self.head is None else self.head(x)


def hf_state(model):
    """Weights under Hugging Face LlamaForCausalLM names."""
    out = {"model.embed_tokens.weight": model.embed.weight}
    for i, L in enumerate(model.layers):
        p = f"model.layers.{i}."
        for k, n in [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
                     ("o", "self_attn.o_proj"), ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
                     ("down", "mlp.down_proj")]:
            out[p + n + ".weight"] = L[k].weight
        out[p + "input_layernorm.weight"] = L.ln1
        out[p + "post_attention_layernorm.weight"] = L.ln2
    out["model.norm.weight"] = model.norm
    if model.head is not None:
        out["lm_head.weight"] = model.head.weight
    return {k: v.detach() for k, v in out.items()}


def save_safetensors(path, tensors, dtype):
    tdt = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}[dtype]
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].to(tdt).contiguous()
        b = t.view(torch.int16).numpy().tobytes() if dtype != "F32" else t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_rounded(model, dtype):
    """A float64 copy of the model with every weight rounded through the stored dtype."""
    tdt = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}[dtype]
    m = Llama(model.c).double()
    with torch.no_grad():
        for (n, p), (_, q) in zip(m.named_parameters(), model.named_parameters()):
            p.copy_(q.detach().to(tdt).double())
    return m


def write_folder(out, model, c, tok_json):
    os.makedirs(out, exist_ok=True)
    d, h = c["hidden_size"], c["num_attention_heads"]
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB_SIZE,
        "hidden_size": d, "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"], "num_attention_heads": h,
        "num_key_value_heads": c["num_key_value_heads"], "head_dim": d // h,
        "max_position_embeddings": SEQ_LEN, "rms_norm_eps": RMS_EPS, "rope_theta": ROPE_THETA,
        "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": c["tie_word_embeddings"],
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": {"F16": "float16", "BF16": "bfloat16"}[c["dtype"]],
    }
    json.dump(config, open(f"{out}/config.json", "w"), indent=2)
    save_safetensors(f"{out}/model.safetensors", hf_state(model), c["dtype"])
    json.dump(tok_json, open(f"{out}/tokenizer.json", "w"), ensure_ascii=False)
    json.dump({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "add_eos_token": False, "model_max_length": SEQ_LEN, "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        # A plain chat template: the tiny models were never instruction-tuned, it only exercises the path.
        "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['role'] | capitalize }}: "
                         "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}",
    }, open(f"{out}/tokenizer_config.json", "w"), indent=2)
    json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, open(
        f"{out}/generation_config.json", "w"), indent=2)


# ---------------------------------------------------------------------------------------------
def train(name, c, train_ids, held_ids, seed):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = Llama(c)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"[{name}] {nparams / 1e6:.2f}M parameters", flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}], lr=c["lr"], betas=(0.9, 0.95))
    data = torch.tensor(train_ids, dtype=torch.long)
    t0 = time.time()
    warm = 30
    for step in range(c["steps"]):
        lr = c["lr"] * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / c["steps"])))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = [rng.randrange(0, len(data) - SEQ_LEN - 1) for _ in range(c["batch"])]
        x = torch.stack([data[s:s + SEQ_LEN] for s in starts])
        y = torch.stack([data[s + 1:s + SEQ_LEN + 1] for s in starts])
        loss = F.cross_entropy(model(x).view(-1, VOCAB_SIZE), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == c["steps"] - 1:
            tps = (step + 1) * c["batch"] * SEQ_LEN / (time.time() - t0)
            print(f"[{name}] step {step} loss {loss.item():.3f} lr {lr:.2e} {tps:.0f} tok/s", flush=True)
    train_loss = evaluate(model, train_ids[: len(held_ids)])
    held_loss = evaluate(model, held_ids)
    print(f"[{name}] train loss {train_loss:.3f} held-out loss {held_loss:.3f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    return model, dict(parameters=nparams, train_loss=round(train_loss, 4), heldout_loss=round(held_loss, 4),
                       train_seconds=round(time.time() - t0), tokens_seen=c["steps"] * c["batch"] * SEQ_LEN)


@torch.no_grad()
def evaluate(model, ids):
    total, n = 0.0, 0
    for s in range(0, len(ids) - SEQ_LEN - 1, SEQ_LEN):
        x = torch.tensor(ids[s:s + SEQ_LEN])[None]
        y = torch.tensor(ids[s + 1:s + SEQ_LEN + 1])[None]
        total += F.cross_entropy(model(x)[0], y[0], reduction="sum").item()
        n += SEQ_LEN
    return total / max(n, 1)


@torch.no_grad()
def greedy(model, prompt_ids, n):
    ids, margins = list(prompt_ids), []
    for _ in range(n):
        logits = model(torch.tensor(ids)[None])[0, -1]
        top = torch.topk(logits, 2)
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(int(top.indices[0]))
    return ids[len(prompt_ids):], min(margins)


@torch.no_grad()
def agreement(target, draft, ids):
    """Teacher-forced fraction of positions where both models' argmax agree (held-out text)."""
    same, n = 0, 0
    for s in range(0, len(ids) - SEQ_LEN, SEQ_LEN):
        x = torch.tensor(ids[s:s + SEQ_LEN])[None]
        same += (target(x).argmax(-1) == draft(x).argmax(-1)).sum().item()
        n += SEQ_LEN
    return same / max(n, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "weights", "tiny"))
    ap.add_argument("--steps-scale", type=float, default=1.0, help="scale training steps (smoke runs)")
    args = ap.parse_args()
    t_start = time.time()
    random.seed(0)
    chapters = load_chapters()
    held = [c for i, c in enumerate(chapters) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    train_ch = [c for i, c in enumerate(chapters) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    print(f"{len(chapters)} chapters: {len(train_ch)} train, {len(held)} held out", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(f"{args.out}/heldout.txt", "w") as f:
        f.write("\n".join(held))

    t = time.time()
    vocab, merges = train_bpe(train_ch, VOCAB_SIZE)
    tok = Tokenizer(vocab, merges)
    tok_json = tokenizer_json(vocab, merges)
    print(f"BPE: {len(vocab)} tokens in {time.time() - t:.0f} s", flush=True)
    train_ids = [i for c in train_ch for i in [1] + tok.encode(c)]
    held_ids = [i for c in held for i in [1] + tok.encode(c)]
    print(f"{len(train_ids)} train tokens, {len(held_ids)} held-out tokens "
          f"({sum(map(len, train_ch)) / len(train_ids):.2f} chars/token)", flush=True)

    metrics = {"corpus": "King James Bible (Debian bible-kjv), every 40th chapter held out",
               "train_tokens": len(train_ids), "heldout_tokens": len(held_ids), "vocab_size": VOCAB_SIZE}
    models = {}
    for name, cfg, seed in [("draft", DRAFT, 1), ("target", TARGET, 2)]:
        cfg = dict(cfg, steps=max(1, int(cfg["steps"] * args.steps_scale)))
        model, m = train(name, cfg, train_ids, held_ids, seed)
        write_folder(f"{args.out}/{name}", model, cfg, tok_json)
        metrics[name] = m
        models[name] = load_rounded(model, cfg["dtype"])

    # Golden greedy continuations from the stored (rounded) weights, computed in float64 so that
    # an f32 engine agrees unless two logits are closer than the recorded margin.
    prompts = []
    for c in held[:: max(1, len(held) // GOLDEN_PROMPTS)][:GOLDEN_PROMPTS]:
        first = c.split("\n")[0]
        prompts.append(" ".join(first.split(" ")[:6]))
    golden = {"note": "float64 PyTorch greedy decoding from the stored weights; ids exclude the prompt",
              "max_tokens": GOLDEN_TOKENS, "cases": []}
    for p in prompts:
        ids = [1] + tok.encode(p)
        case = {"prompt": p, "prompt_ids": ids}
        for name in ("target", "draft"):
            out, margin = greedy(models[name], ids, GOLDEN_TOKENS)
            case[name] = out
            case[f"{name}_min_margin"] = round(margin, 6)
        golden["cases"].append(case)
    # Tokenizer cross-check for the JS tokenizer: python ids of a few held-out passages.
    golden["tokenizer"] = [{"text": t, "ids": tok.encode(t)} for t in
                           [held[0][:400], held[-1][:400], "In the beginning, ‘café’ — 日本 🙂!\n\n  x"]]
    json.dump(golden, open(f"{args.out}/golden.json", "w"), ensure_ascii=False)

    metrics["greedy_agreement_heldout"] = round(agreement(models["target"], models["draft"], held_ids), 4)
    metrics["total_seconds"] = round(time.time() - t_start)
    json.dump(metrics, open(f"{args.out}/metrics.json", "w"), indent=2)
    print(json.dumps(metrics, indent=2))
    for c in golden["cases"][:2]:
        print(repr(c["prompt"]), "->", repr(bytes(
            b for i in c["target"] for b in [{v: k for k, v in B2U.items()}[ch] for ch in
                                              (vocab[i] if i >= len(SPECIALS) else "")]).decode("utf-8", "replace")))


if __name__ == "__main__":
    sys.exit(main())
