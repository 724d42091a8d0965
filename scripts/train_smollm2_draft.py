"""Distil a small draft for SmolLM2-135M-Instruct (the target `deno task models` fetches), on the CPU.

The draft is a 3-layer Llama with the target's width (576), initialised from the target (its embedding rows,
final norm and three of its 30 layers) and trained on the target's own outputs: chat answers and plain-text
continuations the target generated for prompts drawn from Debian's text packages, with the target's top-k
logits at every generated position as soft labels (sequence-level + logit distillation).

Its vocabulary is pruned (FR-Spec): the draft embeds and predicts only the VOCAB most frequent tokens of
the target's outputs plus one "other" id; `vocab_map` in the exported config maps draft ids to target ids.
The engine scatters the draft's logits into the target's vocabulary with q = 0 outside the subset; the
verifiers need only q, so verification stays exact (tests/exact_pruned_vocab_test.ts checks it).

Install (once; never into the repository), and the corpus packages:

  python3 -m venv /tmp/ref-venv && /tmp/ref-venv/bin/pip install -r scripts/requirements-reference.txt
  apt-get install -y bible-kjv fortunes python3-doc debian-reference-en

Run (after `deno task models`); every phase is seeded and caches its output under --work:

  /tmp/ref-venv/bin/python scripts/train_smollm2_draft.py data     # prompts + target answers (~30 min)
  /tmp/ref-venv/bin/python scripts/train_smollm2_draft.py train    # the draft (--minutes 25 by default)
  /tmp/ref-venv/bin/python scripts/train_smollm2_draft.py export   # -> weights/smollm2-draft/
  /tmp/ref-venv/bin/python scripts/train_smollm2_draft.py all      # the three in order

(~50 s per batch of 64 answers on 2 idle cores; the target's load takes 20 s.) `data` appends to
generations.jsonl and resumes after the last whole batch when restarted (a resumed run's sampled answers
differ from an unbroken one's). The committed draft came from such a run cut short to fit a session: 24 of
the 30 batches (1,536 prompts, the longest 384 left out; 168,882 answer tokens) and `train --minutes 14`
(447 steps); metrics.json records both. A fresh `all` run makes a similar, not an identical, draft.

Writes weights/smollm2-draft/: config.json (with vocab_map and load_as Q8_0), model.safetensors (F16, tied
embeddings), tokenizer.json (the target's), metrics.json (held-out loss, teacher-forced top-1 agreement with
the target, coverage of the target's held-out answers by the pruned vocabulary, data and training time),
prompts.json and heldout.txt (the 64 held-out prompts, chat-formatted and plain, from documents never
trained on; the engine measures the pair's acceptance vector on the target's answers to heldout.txt).
"""

import argparse
import gzip
import html
import json
import math
import os
import random
import re
import subprocess
import time
from collections import Counter

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_DIR = os.path.join(ROOT, "weights", "smollm2")
TARGET_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_DIR = os.path.join(ROOT, "weights", "smollm2-draft")

SEED = 1234
HOLDOUT_EVERY = 10  # every 10th document of each source is held out (prompts for evaluation and the bench)
PROMPTS = 1920  # training prompts (30 batches of 64)
GEN_BATCH = 64
MAX_NEW = 128
TOP_K = 16  # soft labels kept per generated position
SAMPLED_SHARE = 0.5  # half the prompts are answered at T = 0.7, half greedily
SAMPLE_T = 0.7
VOCAB = 8192  # draft vocabulary: most frequent target-output tokens (+ 1 "other" id)
DRAFT_LAYERS = (0, 15, 29)  # target layers the draft starts from
TRAIN = dict(minutes=25, batch=16, lr=1e-3, warmup=20, kd_weight=0.8, text_weight=0.2)


# ---------------------------------------------------------------------------------------------
# Corpus: documents from Debian's text packages, each a list of paragraphs.
def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def bible_chapters():
    raw = sh(["bible", "-l10000", "Gen1:1-Rev22:21"])
    chapters, verses = [], []
    for line in raw.split("\n"):
        s = line.strip()
        if not s:
            continue
        m = re.match(r"^(\d+) (.*)$", s)
        if m and line.startswith("  "):
            verses.append(m.group(2))
        else:
            if verses:
                chapters.append(" ".join(verses))
            verses = []
    if verses:
        chapters.append(" ".join(verses))
    return chapters


def fortunes():
    out = []
    d = "/usr/share/games/fortunes"
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if "." in name or not os.path.isfile(p) or name in ("art", "ascii-art"):
            continue
        with open(p, encoding="utf-8", errors="replace") as f:
            out += [t.strip() for t in f.read().split("\n%\n") if 40 <= len(t.strip()) <= 600]
    return out


def python_docs():
    """Paragraphs and code blocks of the Python documentation's reST sources."""
    base = "/usr/share/doc/python3-doc/html/_sources"
    docs = []
    for dirpath, _, files in sorted(os.walk(base)):
        for name in sorted(files):
            if not name.endswith(".txt"):
                continue
            with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            paras = [p.strip() for p in re.split(r"\n\s*\n", text)]
            paras = [p for p in paras if len(p) >= 80 and not p.startswith((".. ", "==", "--", "**"))]
            if paras:
                docs.append(paras)
    return docs


def debian_reference():
    with gzip.open("/usr/share/debian-reference/debian-reference.en.txt.gz", "rt", errors="replace") as f:
        text = f.read()
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    paras = [p for p in paras if 80 <= len(p) <= 1500]
    # documents of 30 consecutive paragraphs (a section or so), so the held-out split spreads over the book
    docs = [paras[i:i + 30] for i in range(0, len(paras), 30)]
    return docs


def snippet(rng, paras, max_chars):
    i = rng.randrange(len(paras))
    s = paras[i]
    while len(s) < max_chars // 2 and i + 1 < len(paras):
        i += 1
        s += "\n\n" + paras[i]
    return s[:max_chars].rsplit(" ", 1)[0] if len(s) > max_chars else s


def typos(rng, text):
    words = text.split(" ")
    for _ in range(max(1, len(words) // 12)):
        j = rng.randrange(len(words))
        w = words[j]
        if len(w) > 3:
            k = rng.randrange(len(w) - 1)
            words[j] = w[:k] + w[k + 1] + w[k] + w[k + 2:]
    return " ".join(words)


def build_prompts(rng, sources):
    """One prompt: {"chat": bool, "text": str, "kind": str} from a random source and template."""
    kind = rng.choice(["summarize", "explain", "rewrite", "continue", "fortune", "typos", "question", "plain",
                       "plain", "code"])
    bible, fort, py, deb = sources["bible"], sources["fortunes"], sources["python"], sources["debian"]
    if kind == "summarize":
        doc = rng.choice(py + deb)
        return dict(chat=True, kind=kind, text="Summarize the following text in a few sentences:\n\n" +
                    snippet(rng, doc, 900))
    if kind == "explain":
        doc = rng.choice(deb + py)
        return dict(chat=True, kind=kind, text="Explain this to a beginner:\n\n" + snippet(rng, doc, 600))
    if kind == "rewrite":
        ch = rng.choice(bible)
        return dict(chat=True, kind=kind, text="Rewrite this passage in plain modern English:\n\n" +
                    ch[:rng.randint(200, 600)].rsplit(" ", 1)[0])
    if kind == "continue":
        doc = rng.choice(py + deb)
        return dict(chat=True, kind=kind, text="Continue this text:\n\n" + snippet(rng, doc, 500))
    if kind == "fortune":
        return dict(chat=True, kind=kind, text=rng.choice(fort) + "\n\nWhat does this mean? Explain briefly.")
    if kind == "typos":
        doc = rng.choice(py + deb)
        return dict(chat=True, kind=kind, text="Fix the spelling mistakes in this text and return it:\n\n" +
                    typos(rng, snippet(rng, doc, 500)))
    if kind == "question":
        doc = rng.choice(py + deb)
        first = snippet(rng, doc, 300).split(". ")[0]
        return dict(chat=True, kind=kind, text=f"Here is a sentence from a manual: \"{first}\". "
                    "What questions might a reader have, and what are the answers?")
    if kind == "code":
        doc = rng.choice(py)
        code = [p for p in doc if p.startswith(("   ", ">>>"))]
        body = rng.choice(code) if code else snippet(rng, doc, 500)
        return dict(chat=True, kind=kind, text="What does this Python code do?\n\n" + body[:700])
    # plain text continuation: the opening of a passage
    src = rng.choice(["bible", "python", "debian", "fortunes"])
    if src == "bible":
        t = rng.choice(bible)
    elif src == "fortunes":
        t = rng.choice(fort)
    else:
        t = snippet(rng, rng.choice(py if src == "python" else deb), 600)
    return dict(chat=False, kind="plain", text=t[:rng.randint(80, 300)].rsplit(" ", 1)[0])


def load_sources():
    def split(docs):
        return [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY != 0], \
            [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY == 0]
    bible = bible_chapters()
    fort = fortunes()
    py = python_docs()
    deb = debian_reference()
    train, held = {}, {}
    for name, docs in [("bible", bible), ("fortunes", fort), ("python", py), ("debian", deb)]:
        train[name], held[name] = split(docs)
    return train, held


# ---------------------------------------------------------------------------------------------
# The target (transformers reads the GGUF: dequantized weights, q/k permutation undone).
def load_target(threads):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(TARGET_DIR, gguf_file=TARGET_FILE)
    model = AutoModelForCausalLM.from_pretrained(TARGET_DIR, gguf_file=TARGET_FILE, dtype=torch.float32).eval()
    return tok, model


def encode(tok, p):
    if p["chat"]:
        return tok.apply_chat_template([{"role": "user", "content": p["text"]}], add_generation_prompt=True,
                                       tokenize=True, return_dict=False)
    return tok(p["text"], add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate_batch(model, prompts_ids, temps, gen, eos_ids, max_new):
    """Left-padded batched decoding with the KV cache: per-row temperature (0 = greedy); returns per row the
    generated ids and the top-k (ids, logits) of the raw target logits at each generated position."""
    from transformers import DynamicCache
    b = len(prompts_ids)
    width = max(len(p) for p in prompts_ids)
    ids = torch.zeros(b, width, dtype=torch.long)
    att = torch.zeros(b, width, dtype=torch.long)
    for i, p in enumerate(prompts_ids):
        ids[i, width - len(p):] = torch.tensor(p)
        att[i, width - len(p):] = 1
    pos = (att.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = model(input_ids=ids, attention_mask=att, position_ids=pos, past_key_values=cache, use_cache=True,
                logits_to_keep=1)  # the prompt rows' logits are not kept: skip their LM head
    logits = out.logits[:, -1, :].float()
    last = pos[:, -1]
    temps_t = torch.tensor(temps).float()
    done = torch.zeros(b, dtype=torch.bool)
    tokens, top_i, top_v = [[] for _ in range(b)], [[] for _ in range(b)], [[] for _ in range(b)]
    for _ in range(max_new):
        v, ix = logits.topk(TOP_K, dim=-1)
        greedy = logits.argmax(-1)
        probs = torch.softmax(logits / temps_t.clamp(min=1e-3)[:, None], -1)
        sampled = torch.multinomial(probs, 1, generator=gen)[:, 0]
        nxt = torch.where(temps_t > 0, sampled, greedy)
        for i in range(b):
            if done[i]:
                continue
            tokens[i].append(int(nxt[i]))
            top_i[i].append(ix[i].tolist())
            top_v[i].append([round(float(x), 3) for x in v[i]])
            if int(nxt[i]) in eos_ids:
                done[i] = True
        if bool(done.all()):
            break
        att = torch.cat([att, torch.ones(b, 1, dtype=torch.long)], 1)
        last = last + 1
        out = model(input_ids=nxt[:, None], attention_mask=att, position_ids=last[:, None],
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1, :].float()
    return tokens, top_i, top_v


def phase_data(args):
    rng = random.Random(SEED)
    train_src, held_src = load_sources()
    print("sources:", {k: len(v) for k, v in train_src.items()}, "held out:", {k: len(v) for k, v in held_src.items()})
    tok, model = load_target(args.threads)
    eos_ids = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    prompts = [build_prompts(rng, train_src) for _ in range(args.prompts)]
    held = [build_prompts(rng, held_src) for _ in range(64)]
    for p in prompts + held:
        p["ids"] = encode(tok, p)
        p["temp"] = SAMPLE_T if rng.random() < SAMPLED_SHARE else 0.0
    os.makedirs(args.work, exist_ok=True)
    with open(os.path.join(args.work, "heldout_prompts.json"), "w") as f:
        json.dump(held, f)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["ids"]))
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    path = os.path.join(args.work, "generations.jsonl")
    done_batches = 0
    if os.path.exists(path):
        with open(path) as f:
            done_batches = sum(1 for _ in f) // GEN_BATCH
    with open(path, "a") as f:
        for bi in range(0, len(order), GEN_BATCH):
            if bi // GEN_BATCH < done_batches:  # resumed: a resumed run's samples differ from an unbroken one's
                continue
            batch = [prompts[i] for i in order[bi:bi + GEN_BATCH]]
            toks, ti, tv = generate_batch(model, [p["ids"] for p in batch], [p["temp"] for p in batch], gen,
                                          eos_ids, MAX_NEW)
            for p, a, b_, c in zip(batch, toks, ti, tv):
                f.write(json.dumps(dict(kind=p["kind"], chat=p["chat"], temp=p["temp"], prompt=p["ids"], gen=a,
                                        top_i=b_, top_v=c)) + "\n")
            f.flush()
            n = sum(len(t) for t in toks)
            print(f"batch {bi // GEN_BATCH + 1}/{math.ceil(len(order) / GEN_BATCH)}: {n} tokens, "
                  f"{time.time() - t0:.0f} s", flush=True)
    with open(os.path.join(args.work, "data_time.json"), "w") as f:
        json.dump(dict(seconds=time.time() - t0), f)


# ---------------------------------------------------------------------------------------------
# Training
def read_generations(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def choose_vocab(rows, size):
    """The `size` most frequent tokens of the target's outputs (prompt tokens count a quarter): what the draft
    must predict. Returns sorted target ids."""
    c = Counter()
    for r in rows:
        c.update(r["gen"])
        for t in r["prompt"]:
            c[t] += 0.25
    return sorted(t for t, _ in c.most_common(size))


class VocabMap:
    """Target id <-> draft row; row `other` (the last) stands for every target token outside the subset."""

    def __init__(self, ids, target_vocab):
        self.ids = ids
        self.other = len(ids)
        self.to_row = torch.full((target_vocab,), self.other, dtype=torch.long)
        self.to_row[torch.tensor(ids)] = torch.arange(len(ids))

    def rows(self, ids):
        return self.to_row[torch.as_tensor(ids, dtype=torch.long)]


def make_examples(rows, vmap, prompt_keep):
    """Per sequence: draft-row inputs, hard next-row labels (-100 where unused), and the positions with the
    target's soft labels (top-k ids mapped to rows, logits). Prompts keep their last `prompt_keep` tokens."""
    out = []
    for r in rows:
        prompt = r["prompt"][-prompt_keep:]
        seq = prompt + r["gen"]
        x = vmap.rows(seq)
        labels = torch.full((len(seq),), -100, dtype=torch.long)
        labels[:-1] = x[1:]
        start = len(prompt) - 1  # position whose next token is the first generated one
        n = len(r["gen"])
        soft_pos = torch.arange(start, start + n)
        soft_i = vmap.rows(torch.tensor(r["top_i"], dtype=torch.long).view(-1)).view(n, TOP_K)
        soft_v = torch.tensor(r["top_v"], dtype=torch.float32)
        out.append(dict(x=x, labels=labels, soft_pos=soft_pos, soft_i=soft_i, soft_v=soft_v,
                        gen_target=torch.tensor(r["gen"]), top1=torch.tensor([t[0] for t in r["top_i"]])))
    return out


def collate(batch):
    w = max(len(e["x"]) for e in batch)
    x = torch.zeros(len(batch), w, dtype=torch.long)
    labels = torch.full((len(batch), w), -100, dtype=torch.long)
    att = torch.zeros(len(batch), w, dtype=torch.long)
    sb, sp, si, sv = [], [], [], []
    for b, e in enumerate(batch):
        n = len(e["x"])
        x[b, :n], labels[b, :n], att[b, :n] = e["x"], e["labels"], 1
        sb.append(torch.full((len(e["soft_pos"]),), b, dtype=torch.long))
        sp.append(e["soft_pos"])
        si.append(e["soft_i"])
        sv.append(e["soft_v"])
    return x, labels, att, torch.cat(sb), torch.cat(sp), torch.cat(si), torch.cat(sv)


def draft_from_target(target, vmap, layers):
    """A LlamaForCausalLM with the target's width, `layers` of the target's decoder layers, and the target's
    embedding rows of the subset (+ their mean for the other row), tied."""
    from transformers import LlamaConfig, LlamaForCausalLM
    tc = target.config
    cfg = LlamaConfig(vocab_size=len(vmap.ids) + 1, hidden_size=tc.hidden_size,
                      intermediate_size=tc.intermediate_size, num_hidden_layers=len(layers),
                      num_attention_heads=tc.num_attention_heads, num_key_value_heads=tc.num_key_value_heads,
                      max_position_embeddings=tc.max_position_embeddings, rms_norm_eps=tc.rms_norm_eps,
                      rope_parameters=tc.rope_parameters,
                      tie_word_embeddings=True, bos_token_id=tc.bos_token_id, eos_token_id=tc.eos_token_id,
                      hidden_act="silu", attention_bias=False, mlp_bias=False)
    d = LlamaForCausalLM(cfg)
    with torch.no_grad():
        emb = target.model.embed_tokens.weight
        rows = emb[torch.tensor(vmap.ids)]
        d.model.embed_tokens.weight.copy_(torch.cat([rows, emb.mean(0, keepdim=True)]))
        for i, li in enumerate(layers):
            d.model.layers[i].load_state_dict(target.model.layers[li].state_dict())
        d.model.norm.load_state_dict(target.model.norm.state_dict())
    d.tie_weights()
    return d


def losses(model, batch, kd_weight, text_weight):
    x, labels, att, sb, sp, si, sv = batch
    logits = model(input_ids=x, attention_mask=att).logits.float()
    text = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
    # Soft labels: the target's top-k distribution (renormalised over its top k; subset-outside mass goes to
    # the other row, which inference drops) against the draft's log-softmax at those positions.
    lp = F.log_softmax(logits[sb, sp], -1)
    p = torch.softmax(sv, -1)
    kd = -(p * lp.gather(1, si)).sum(-1).mean()
    return kd_weight * kd + text_weight * text, kd, text, lp


@torch.no_grad()
def evaluate(model, examples, vmap, batch=16):
    """Held-out: soft-label cross-entropy, the target token's NLL (OOV: the other row), and teacher-forced
    top-1 agreement (the draft's best row, other excluded, maps to the target's argmax)."""
    model.eval()
    kd_sum = nll_sum = agree = n = 0
    ids = torch.tensor(vmap.ids)
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        b = collate(chunk)
        _, kd, _, lp = losses(model, b, 1.0, 0.0)
        m = sum(len(e["soft_pos"]) for e in chunk)
        kd_sum += float(kd) * m
        gen_t = vmap.rows(torch.cat([e["gen_target"] for e in chunk]))
        nll_sum += float(-lp.gather(1, gen_t[:, None]).sum())
        best = lp[:, :-1].argmax(-1)
        agree += int((ids[best] == torch.cat([e["top1"] for e in chunk])).sum())
        n += m
    model.train()
    return dict(soft_ce=kd_sum / n, nll=nll_sum / n, top1_agreement=agree / n, positions=n)


def phase_train(args):
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    tok, target = load_target(args.threads)
    eos_ids = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    held_path = os.path.join(args.work, "heldout_generations.jsonl")
    if not os.path.exists(held_path):  # the held-out prompts' answers, at the same temperatures as training
        with open(os.path.join(args.work, "heldout_prompts.json")) as f:
            held = json.load(f)
        gen = torch.Generator().manual_seed(SEED + 1)
        toks, ti, tv = generate_batch(target, [p["ids"] for p in held], [p["temp"] for p in held], gen, eos_ids,
                                      MAX_NEW)
        with open(held_path, "w") as f:
            for p, a, b_, c in zip(held, toks, ti, tv):
                f.write(json.dumps(dict(kind=p["kind"], chat=p["chat"], temp=p["temp"], prompt=p["ids"], gen=a,
                                        top_i=b_, top_v=c)) + "\n")
    rows = read_generations(os.path.join(args.work, "generations.jsonl"))
    held_rows = read_generations(held_path)
    vocab = choose_vocab(rows, args.vocab)
    vmap = VocabMap(vocab, target.config.vocab_size)
    in_set = set(vocab)
    coverage = sum(t in in_set for r in held_rows for t in r["gen"]) / sum(len(r["gen"]) for r in held_rows)
    print(f"vocab {len(vocab)} + other: held-out generated-token coverage {coverage:.4f}", flush=True)
    train_ex = make_examples(rows, vmap, args.prompt_keep)
    held_ex = make_examples(held_rows, vmap, 10**9)  # evaluated on the whole prompt, as the engine runs it
    layers = [int(x) for x in args.layers.split(",")]
    model = draft_from_target(target, vmap, layers)
    del target
    model.train()
    cfg = TRAIN
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0, betas=(0.9, 0.98))
    # Length: --steps N, or a --minutes budget (the default): the cosine schedule then runs on elapsed time,
    # and the metrics record the steps taken, so `--steps <that>` reproduces the run exactly.
    budget = None if args.steps else args.minutes * 60
    steps = args.steps or 10**9
    t0 = time.time()
    order = []
    step = 0
    while True:
        progress = (time.time() - t0) / budget if budget else step / steps
        if progress >= 1:
            break
        if len(order) < cfg["batch"]:
            perm = list(range(len(train_ex)))
            rng.shuffle(perm)
            order += perm
        batch = collate([train_ex[i] for i in order[:cfg["batch"]]])
        order = order[cfg["batch"]:]
        lr = cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, kd, text, _ = losses(model, batch, cfg["kd_weight"], cfg["text_weight"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            print(f"step {step} loss {float(loss):.3f} kd {float(kd):.3f} text {float(text):.3f} "
                  f"lr {lr:.2e} {time.time() - t0:.0f} s", flush=True)
        step += 1
    steps = step
    train_s = time.time() - t0
    metrics = dict(heldout=evaluate(model, held_ex, vmap), train_seconds=round(train_s), steps=steps,
                   batch=cfg["batch"], layers_from_target=layers, vocab=len(vocab), heldout_coverage=coverage,
                   train_sequences=len(train_ex), heldout_sequences=len(held_ex),
                   train_generated_tokens=sum(len(r["gen"]) for r in rows))
    with open(os.path.join(args.work, "data_time.json")) as f:
        metrics["data_seconds"] = round(json.load(f)["seconds"])
    print("final:", metrics["heldout"], flush=True)
    torch.save(dict(state=model.state_dict(), config=model.config.to_dict(), vocab=vocab, metrics=metrics),
               os.path.join(args.work, "draft.pt"))


def phase_export(args):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    ck = torch.load(os.path.join(args.work, "draft.pt"))
    cfg = LlamaConfig.from_dict(ck["config"])
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(ck["state"])
    model = model.to(torch.float16)
    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(TARGET_DIR, gguf_file=TARGET_FILE)
    tok.save_pretrained(out_dir)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        p = os.path.join(out_dir, extra)
        if os.path.exists(p):
            os.remove(p)
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        c = json.load(f)
    c["rope_theta"] = c.get("rope_parameters", {}).get("rope_theta", c.get("rope_theta"))  # the engine reads this
    c["vocab_map"] = dict(vocab_size=len(tok), ids=ck["vocab"] + [-1])
    c["load_as"] = "Q8_0"
    with open(path, "w") as f:
        json.dump(c, f, indent=1)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(ck["metrics"], f, indent=1)
    with open(os.path.join(args.work, "heldout_prompts.json")) as f:
        held = json.load(f)
    prompts = [dict(kind=p["kind"], chat=p["chat"], text=p["text"]) for p in held]
    with open(os.path.join(out_dir, "prompts.json"), "w") as f:
        json.dump(dict(note="Held-out prompts (documents never trained on), chat-formatted (chat: true: apply the "
                       "model's chat template) and plain text continuations.", prompts=prompts), f, indent=1)
    # heldout.txt: the same prompts as text, chat ones formatted with the target's template, one per
    # "<|endofprompt|>" line: the engine measures this pair's acceptance vector on the target's answers to them.
    texts = [tok.apply_chat_template([{"role": "user", "content": p["text"]}], add_generation_prompt=True,
                                     tokenize=False) if p["chat"] else p["text"] for p in held]
    with open(os.path.join(out_dir, "heldout.txt"), "w") as f:
        f.write("\n<|endofprompt|>\n".join(texts) + "\n")
    print("wrote", out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["data", "train", "export", "all"])
    ap.add_argument("--work", default=os.path.join(ROOT, "weights", "smollm2-draft-work"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=OUT_DIR, help="export: the draft folder to write")
    ap.add_argument("--prompts", type=int, default=PROMPTS)
    ap.add_argument("--vocab", type=int, default=VOCAB)
    ap.add_argument("--layers", default=",".join(map(str, DRAFT_LAYERS)))
    ap.add_argument("--steps", type=int, default=0, help="training steps (default: a --minutes budget)")
    ap.add_argument("--minutes", type=float, default=TRAIN["minutes"], help="training time budget")
    ap.add_argument("--prompt-keep", type=int, default=128, help="prompt tokens kept before each answer")
    args = ap.parse_args()
    if args.phase in ("data", "all"):
        phase_data(args)
    if args.phase in ("train", "all"):
        phase_train(args)
    if args.phase in ("export", "all"):
        phase_export(args)


if __name__ == "__main__":
    main()
