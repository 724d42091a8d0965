/**
 * Draft-free speculation (prompt-lookup decoding, Saxena 2023; SuffixDecoding, Oliaro et al. 2024): the
 * tree below the root is copied from the text itself. The continuations that followed earlier
 * occurrences of the context's longest recurring suffix are merged into a token tree, so no draft model
 * is loaded or run. Children are a deterministic function of the context (never drawn from a q): pair
 * the tree with the match rule (greedy at T = 0), which is exact for any tree built without the target.
 *
 * Three parts, each usable on plain arrays:
 * - {@link NgramIndex}: an incremental hash map n-gram -> end positions (n = 1..maxNgram), O(maxNgram)
 *   work per appended token; a match is then extended backwards token by token (up to maxMatch).
 * - {@link buildLookupTree}: the tree-building rule (weighted trie of continuations, best-first top-K).
 * - {@link LookupPolicy}: the online fallback (propose only the root while lookup does not pay).
 *
 * @module
 */

import { childrenOf } from "../tree.ts";
import type { Drafter, DraftInput, DraftOutput, StepOutcome } from "./drafter.ts";

/** Settings of the lookup drafter ({@link LOOKUP_DEFAULTS}). */
export interface LookupOptions {
  /** Most nodes in a tree, root included (the server's tree budget: its `treeSize`). */
  budget: number;
  /** Most levels below the root. */
  depth: number;
  /** Longest n-gram the index keys; a match found with it is then extended backwards. */
  maxNgram: number;
  /** Earlier occurrences merged into one tree (the most recent ones). */
  maxOccurrences: number;
  /** Longest match length counted when weighting an occurrence. */
  maxMatch: number;
  /** Score factor per level below the first (the chance a copy keeps going falls with its length). */
  decay: number;
  /** Most plain steps one backoff lasts. */
  maxBackoff: number;
}

/** Defaults, in one place. */
export const LOOKUP_DEFAULTS: LookupOptions = {
  budget: 16,
  depth: 8,
  maxNgram: 3,
  maxOccurrences: 16,
  maxMatch: 32,
  decay: 0.9,
  maxBackoff: 64,
};

/** Node limit of a generation's first proposal (root included): a slow start, doubled per full path. */
const FIRST_LIMIT = 4;

/** A proposal pays when its time per token is at most this fraction of a plain token's. */
const PAY_MARGIN = 0.85;

/** An earlier occurrence of the context's suffix: where it ended and how many tokens it matches. */
export interface LookupMatch {
  /** Position of its last token (its continuation starts at end + 1). */
  end: number;
  /** Tokens it shares with the context's suffix (counted backwards, at most maxMatch). */
  length: number;
}

/**
 * Every n-gram (n = 1..maxNgram) of a growing token sequence, keyed to the positions where it ends.
 * Appending a token costs maxNgram map updates; {@link NgramIndex.matches} costs
 * O(maxNgram + maxOccurrences x maxMatch) whatever the length of the text.
 */
export class NgramIndex {
  /** (length) the indexed tokens. */
  readonly tokens: number[] = [];
  /** maps[n - 1]: "t_1,...,t_n" -> end positions in ascending order. */
  private readonly maps: Map<string, number[]>[];

  constructor(readonly maxNgram: number = LOOKUP_DEFAULTS.maxNgram) {
    if (!(maxNgram >= 1)) throw new RangeError(`lookup: maxNgram must be >= 1, got ${maxNgram}`);
    this.maps = Array.from({ length: maxNgram }, () => new Map());
  }

  get length(): number {
    return this.tokens.length;
  }

  /** Append one token and index the n-grams it ends. */
  push(token: number): void {
    const t = this.tokens, i = t.push(token) - 1;
    let key = "";
    for (let n = 1; n <= this.maxNgram && i - n + 1 >= 0; n++) {
      key = n === 1 ? String(t[i]) : `${t[i - n + 1]},${key}`;
      const at = this.maps[n - 1].get(key);
      if (at) at.push(i);
      else this.maps[n - 1].set(key, [i]);
    }
  }

  /** Index the tokens of `history` past the indexed ones (history must extend them). */
  extend(history: ArrayLike<number>): void {
    for (let i = this.tokens.length; i < history.length; i++) this.push(history[i]);
  }

  /**
   * Earlier occurrences of the longest suffix of the text (at most maxNgram tokens) that occurred
   * before its last position, most recent first, at most `limit`, each with its match length
   * extended backwards up to `maxMatch` tokens. Empty when even the last token is new.
   */
  matches(limit: number, maxMatch: number): LookupMatch[] {
    const t = this.tokens, last = t.length - 1;
    let key = "";
    const keys: string[] = [];
    for (let n = 1; n <= this.maxNgram && last - n + 1 >= 0; n++) {
      key = n === 1 ? String(t[last]) : `${t[last - n + 1]},${key}`;
      keys.push(key);
    }
    for (let n = keys.length; n >= 1; n--) {
      const at = this.maps[n - 1].get(keys[n - 1]);
      // The suffix itself ends at `last` (the newest entry); earlier entries are the matches.
      if (!at || at.length < 2) continue;
      const out: LookupMatch[] = [];
      for (let k = at.length - 1; k >= 0 && out.length < limit; k--) {
        const e = at[k];
        if (e >= last) continue;
        let len = n;
        while (len < maxMatch && e - len >= 0 && t[e - len] === t[last - len]) len++;
        out.push({ end: e, length: len });
      }
      return out;
    }
    return [];
  }
}

/** A tree in the engine's layout: breadth-first, root = node 0, each parent before its children. */
export interface LookupTree {
  /** (n) token per node; tokens[0] is the root. */
  tokens: Int32Array;
  /** (n) parent index, -1 for the root. */
  parent: Int32Array;
  /** (n) depth, root = 0. */
  depth: Int32Array;
  /** (n) the node's score (1 for the root): the weight of the continuations through it, decayed. */
  score: Float64Array;
}

/**
 * The tree-building rule. Each match's continuation (text[end + 1 ..], up to `depth` tokens and never
 * past the root) is inserted into a trie under the root, adding the match's weight (its match length:
 * longer matches predict better) to every node it passes. A node's score is
 *
 *   score(v) = (weight through v / total weight) * decay^(depth(v) - 1)
 *
 * so branches appear where earlier continuations differ, ordered by how much (and how long a) matching
 * text backs them, ties by recency. The tree is the top `budget - 1` nodes by score (ties: the earlier
 * created, so a parent before its child); scores never rise along a path, so the set is connected.
 * Children are ordered by score. No match: the root alone.
 */
export function buildLookupTree(
  text: ArrayLike<number>,
  matches: readonly LookupMatch[],
  o: { budget: number; depth: number; decay: number },
): LookupTree {
  const last = text.length - 1;
  const tok = [text[last]], par = [-1], dep = [0], weight = [0];
  const kids: Map<number, number>[] = [new Map()];
  for (const m of matches) {
    let v = 0;
    weight[0] += m.length;
    for (let d = 1; d <= o.depth && m.end + d <= last; d++) {
      const t = text[m.end + d];
      let c = kids[v].get(t);
      if (c === undefined) {
        c = tok.length;
        tok.push(t);
        par.push(v);
        dep.push(d);
        weight.push(0);
        kids.push(new Map());
        kids[v].set(t, c);
      }
      weight[c] += m.length;
      v = c;
    }
  }
  const total = weight[0] || 1;
  const score = weight.map((w, i) => (i === 0 ? 1 : (w / total) * o.decay ** (dep[i] - 1)));
  const keep = new Set(
    Array.from({ length: tok.length - 1 }, (_, i) => i + 1)
      .sort((a, b) => score[b] - score[a] || a - b)
      .slice(0, Math.max(0, o.budget - 1)),
  );
  keep.add(0);
  // Breadth-first renumbering over the kept nodes, each node's children by score (then creation).
  const order = [0], newParent = [-1];
  for (let i = 0; i < order.length; i++) {
    const ch = [...kids[order[i]].values()].filter((c) => keep.has(c)).sort((a, b) =>
      score[b] - score[a] || a - b
    );
    for (const c of ch) {
      order.push(c);
      newParent.push(i);
    }
  }
  return {
    tokens: Int32Array.from(order, (v) => tok[v]),
    parent: Int32Array.from(newParent),
    depth: Int32Array.from(order, (v) => dep[v]),
    score: Float64Array.from(order, (v) => score[v]),
  };
}

/**
 * The online fallback of one generation: lookup runs while it pays and steps aside (trees of the root
 * alone: plain autoregressive steps, one token per target forward, nothing else verified) while it
 * does not, re-trying after a backoff.
 *
 * - A proposal (a tree with nodes below the root) *pays* when it accepted at least one node and, once
 *   the cost of a plain token has been measured in this generation, its time (drafting included) per
 *   emitted token is at most 0.85 x that cost: a 15% margin, so that where t(n) grows as fast as n (the
 *   CPU reference) timing noise does not keep lookup speculating at a loss.
 * - The node limit starts at 4 (a slow start: the first proposals are judged before any cost is known).
 * - A proposal that does not pay starts a backoff of b plain steps, b = 1, 8, 16, 32, ... (doubling
 *   with each consecutive failed re-try, at most maxBackoff), and halves the node limit (at least 2):
 *   where t(n) is steep (a CPU) trees shrink to what pays. A paying proposal ends the failure streak,
 *   and one whose accepted path reached a leaf (the tree said too little) doubles the limit back (at
 *   most the budget).
 * - The cost of a plain token is measured on plain runs of at least 8 steps (a device backend decodes
 *   them in one submission, as AR does): the long backoffs, and a calibration run of 8 plain steps at
 *   the first step that finds nothing to propose or after the first 4 proposals, whichever comes first,
 *   and every 128 proposals after that when no backoff measured it. Each run's mean ms per token is
 *   averaged in with weight 1/2.
 * - Where a plain step decoded alone costs over 1.5x a plain token of such a run (a device's readback
 *   per submission dominates: a small model on a GPU), plain steps come in runs of at least 8: the
 *   first backoff, and the steps where nothing matched (each then starts an 8-step run).
 * - During a backoff the drafter still builds the tree it would propose and checks it against the
 *   tokens actually emitted ({@link LookupPolicy.shadow}): one that would have accepted two or more
 *   ends the backoff, so lookup resumes as soon as the text starts repeating.
 *
 * Text that never repeats therefore costs, over T tokens, about log2(maxBackoff) + T / maxBackoff
 * failed proposals of at most a few nodes each (more only where shadows keep seeing 2-token repeats
 * that the real proposals then miss): the rest are exactly AR's steps.
 */
export class LookupPolicy {
  /** Plain steps left before the next proposal. */
  skip = 0;
  /** Consecutive proposals that did not pay. */
  failures = 0;
  /** Node limit of the next proposal (root included). */
  limit: number;
  /** Measured ms per plain token (undefined until a long enough plain run was seen). */
  plainMs: number | undefined;
  /** Measured ms of a plain step decoded alone (not in a device batch); undefined until one was seen. */
  singleMs: number | undefined;
  /** Proposals observed, and how many had been observed when a plain run last measured plainMs. */
  proposals = 0;
  private measuredAt = 0;
  /** The plain run in progress: its length, the ms of its steps so far, and whether it is a backoff. */
  private run = { steps: 0, seen: 0, ms: 0, backoff: false };

  constructor(readonly budget: number, readonly maxBackoff: number = LOOKUP_DEFAULTS.maxBackoff) {
    this.limit = Math.min(budget, FIRST_LIMIT);
  }

  /** Whether the next step should propose a tree. */
  get proposing(): boolean {
    return this.skip === 0;
  }

  /** Shortest run of plain steps worth starting: 8 where a plain step alone costs much more than in a run. */
  get minRun(): number {
    return this.singleMs !== undefined && this.plainMs !== undefined && this.singleMs > 1.5 * this.plainMs
      ? 8
      : 1;
  }

  /**
   * A step found nothing to propose: start a run of {@link minRun} plain steps (the calibration run if a
   * plain token was never measured); returns the run's length.
   */
  noMatch(): number {
    if (this.skip === 0) {
      if (this.plainMs === undefined) this.startRun(8);
      else if (this.minRun > 1) this.startRun(this.minRun);
    }
    return Math.max(1, this.skip);
  }

  /** Record one step's outcome. */
  observe(step: StepOutcome): void {
    if (step.treeSize <= 1) {
      if ((step.batch ?? 1) <= 1) {
        this.singleMs = this.singleMs === undefined ? step.ms : 0.75 * this.singleMs + 0.25 * step.ms;
      }
      if (this.skip === 0) return; // nothing matched: not part of a run
      this.skip--;
      this.run.seen++;
      this.run.ms += step.ms;
      if (this.run.seen === this.run.steps && this.run.steps >= 8) {
        const ms = this.run.ms / this.run.steps;
        this.plainMs = this.plainMs === undefined ? ms : (this.plainMs + ms) / 2;
        this.measuredAt = this.proposals;
      }
      return;
    }
    this.proposals++;
    const tokens = step.accepted + 1;
    const pays = step.accepted > 0 &&
      (this.plainMs === undefined || step.ms <= PAY_MARGIN * tokens * this.plainMs);
    if (pays) {
      this.failures = 0;
      if (step.leaf) this.limit = Math.min(this.budget, this.limit * 2);
      const due = this.plainMs === undefined ? 4 : 128;
      if (this.proposals - this.measuredAt >= due) this.startRun(8); // calibrate
      return;
    }
    this.startRun(
      this.failures === 0 ? this.minRun : Math.min(this.maxBackoff, 8 * 2 ** (this.failures - 1)),
      true,
    );
    this.failures++;
    this.limit = Math.max(2, Math.floor(this.limit / 2));
  }

  /**
   * What the tree lookup would have proposed at a plain step of a backoff would have accepted, checked
   * against the tokens that step emitted (free: no forward). Two or more end the backoff: the text has
   * started to repeat. (Calibration runs and runs of nothing-matched steps are not cut.)
   */
  shadow(accepted: number): void {
    if (this.skip > 0 && this.run.backoff && accepted >= 2) {
      this.skip = 0;
      this.failures = 0;
      this.limit = Math.max(this.limit, Math.min(this.budget, FIRST_LIMIT));
    }
  }

  private startRun(steps: number, backoff = false): void {
    this.skip = steps;
    this.run = { steps, seen: 0, ms: 0, backoff };
  }
}

/**
 * How many nodes of `tree` (built when the text had `at` tokens, its root the last of them) the tokens
 * emitted since would have accepted: the length of the path that follows text[at], text[at + 1], ...
 */
export function acceptedAlong(tree: LookupTree, text: ArrayLike<number>, at: number): number {
  const children = childrenOf(tree.parent);
  let v = 0, n = 0;
  for (let i = at; i < text.length; i++) {
    const c = children[v].find((c) => tree.tokens[c] === text[i]);
    if (c === undefined) break;
    v = c;
    n++;
  }
  return n;
}

/**
 * Lookup's drafter: no draft model; the tree comes from the prompt and the text generated so far
 * (`input.history`, indexed incrementally), under min(budget, the step's room, the policy's limit,
 * 1 + 2 x the longest match length) nodes. One instance serves one generation at a time (a history that does not extend the indexed one
 * starts a new index and a new policy).
 */
export class LookupDrafter implements Drafter {
  readonly kind = "lookup" as const;
  readonly needsDraftModel = false;
  readonly opts: LookupOptions;
  private index: NgramIndex;
  private source: readonly number[] | undefined;
  /** The tree a plain step of a backoff would have proposed, and the history length it was built at. */
  private shadowTree: { tree: LookupTree; at: number } | undefined;
  policy: LookupPolicy;

  constructor(opts: Partial<LookupOptions> = {}) {
    this.opts = { ...LOOKUP_DEFAULTS, ...opts };
    if (!(this.opts.budget >= 1 && this.opts.depth >= 1)) {
      throw new RangeError(
        `lookup: budget and depth must be >= 1, got ${this.opts.budget} and ${this.opts.depth}`,
      );
    }
    this.index = new NgramIndex(this.opts.maxNgram);
    this.policy = new LookupPolicy(this.opts.budget, this.opts.maxBackoff);
  }

  draft(input: DraftInput): Promise<DraftOutput> {
    const h = input.history;
    const known = this.index.length;
    if (
      h !== this.source || h.length < known || (known > 0 && h[known - 1] !== this.index.tokens[known - 1])
    ) {
      this.index = new NgramIndex(this.opts.maxNgram);
      this.policy = new LookupPolicy(this.opts.budget, this.opts.maxBackoff);
      this.source = h;
      this.shadowTree = undefined;
    }
    this.index.extend(h);
    if (this.shadowTree) {
      // Follow the emitted tokens down the shadow tree until they leave it, or it proves its point.
      const { tree, at } = this.shadowTree;
      const n = acceptedAlong(tree, h, at);
      if (n >= 2 || n < h.length - at || this.policy.proposing) {
        this.policy.shadow(n);
        this.shadowTree = undefined;
      }
    }
    const budget = Math.min(this.opts.budget, input.maxNodes, this.policy.limit);
    const build = (budget: number) => {
      const matches = this.index.matches(this.opts.maxOccurrences, this.opts.maxMatch);
      // Speculate about as far as the text has been matching (SuffixDecoding's length ~ match length):
      // a one-token match (common in any text) risks 2 nodes, a span being copied the whole budget.
      const longest = matches.reduce((a, m) => Math.max(a, m.length), 0);
      return buildLookupTree(this.index.tokens, matches, {
        budget: Math.min(budget, 1 + 2 * longest),
        depth: this.opts.depth,
        decay: this.opts.decay,
      });
    };
    let tree: LookupTree | undefined;
    if (this.policy.proposing && budget > 1) tree = build(budget);
    else if (!this.policy.proposing && !this.shadowTree) {
      // Free to build: the shadow may be as large as the budget allows.
      this.shadowTree = { tree: build(Math.min(this.opts.budget, input.maxNodes)), at: h.length };
    }
    const n = tree?.tokens.length ?? 1;
    const out: DraftOutput = {
      tokens: tree?.tokens ?? Int32Array.of(h[h.length - 1]),
      parent: tree?.parent ?? Int32Array.of(-1),
      depth: tree?.depth ?? Int32Array.of(0),
      children: tree ? childrenOf(tree.parent) : [[]],
      q: new Array(n),
      slotOf: new Int32Array(n).fill(-1),
      forwards: 0,
    };
    if (n === 1) out.plainSteps = this.policy.proposing ? this.policy.noMatch() : this.policy.skip;
    return Promise.resolve(out);
  }

  observe(step: StepOutcome): void {
    this.policy.observe(step);
  }
}

/** What lookup would have done on a text's second half ({@link replayLookup}). */
export interface LookupReplay {
  /** The node budget (root included) and depth cap the steps were built with. */
  budget: number;
  depth: number;
  /** (steps) nodes each replayed step would have verified, root included; 1: nothing matched (a plain step). */
  nodes: number[];
  /** (steps) nodes below the root each step would have accepted. */
  accepted: number[];
  /** Mean of `accepted` (0 without a step): tokens per step = 1 + this. */
  meanAccepted: number;
}

/** Most positions {@link replayLookup} replays: the end of a long prompt is enough to judge it. */
export const REPLAY_WINDOW = 1024;

/**
 * How well lookup would copy from `text` (a prompt), measured on the text itself: lookup's acceptance
 * cannot be known before decoding, but a text that repeats itself (an edit or rewrite prompt quoting its
 * input, a chat carrying earlier turns) is what it copies from. Replays the drafter's matching over the
 * text's second half (at most its last {@link REPLAY_WINDOW} positions), using only tokens before each
 * step: at a step whose root is text[i], the index holds text[0..i], the tree is the one
 * {@link LookupDrafter} would build (the same index, {@link buildLookupTree} under
 * min(budget, 1 + 2 x the longest match) nodes), and its accepted count is the greedy (T = 0) one: the
 * path that follows text[i + 1], text[i + 2], ... ({@link acceptedAlong}). The next step's root is the
 * bonus, text[i + accepted + 1]. Not modelled: the online policy's node limit (a slow start at 4, halved
 * on failures) and sampling at T > 0 (the match rule then accepts a child with its probability under the
 * target, so this is optimistic there); the policy's fallback bounds what a wrong guess costs.
 * O(text + steps x (maxOccurrences x maxMatch + budget)); pure.
 *
 * @example
 * ```ts
 * const passage = Array.from({ length: 12 }, (_, i) => 10 + i);
 * const r = replayLookup([...passage, ...passage, ...passage], { budget: 16 });
 * r.accepted; // [8, 8]: two steps, each accepting the depth cap (8) of the copy it predicts
 * ```
 */
export function replayLookup(
  text: ArrayLike<number>,
  o: Partial<Pick<LookupOptions, "budget" | "depth">> & { window?: number } = {},
): LookupReplay {
  const opts = { ...LOOKUP_DEFAULTS, ...o };
  if (!(opts.budget >= 1 && opts.depth >= 1)) {
    throw new RangeError(
      `lookup replay: budget and depth must be >= 1, got ${opts.budget} and ${opts.depth}`,
    );
  }
  const n = text.length;
  const nodes: number[] = [], accepted: number[] = [];
  const index = new NgramIndex(opts.maxNgram);
  // The first step's root: the second half's first token, at most `window` positions before the end.
  let i = Math.max(Math.floor(n / 2), n - 1 - (o.window ?? REPLAY_WINDOW));
  for (let k = 0; k <= i && k < n; k++) index.push(text[k]);
  while (i < n - 1) {
    const matches = index.matches(opts.maxOccurrences, opts.maxMatch);
    const longest = matches.reduce((a, m) => Math.max(a, m.length), 0);
    const tree = buildLookupTree(index.tokens, matches, {
      budget: Math.min(opts.budget, 1 + 2 * longest),
      depth: opts.depth,
      decay: opts.decay,
    });
    const a = acceptedAlong(tree, text, i + 1);
    nodes.push(tree.tokens.length);
    accepted.push(a);
    // The step emits its accepted path and the bonus; the bonus is the next root.
    const next = Math.min(n - 1, i + a + 1);
    for (let k = i + 1; k <= next; k++) index.push(text[k]);
    i = next;
  }
  const meanAccepted = accepted.length ? accepted.reduce((s, a) => s + a, 0) / accepted.length : 0;
  return { budget: opts.budget, depth: opts.depth, nodes, accepted, meanAccepted };
}
