/**
 * Speculative decoding engine: draft a tree -> one target forward over it with the ancestor mask ->
 * verify -> compact both KV caches -> emit the accepted tokens and the bonus. An AsyncGenerator of
 * events, with per-step stats, over any pair of {@link CausalLM} backends, or over the target alone
 * for a drafter that needs no draft model (lookup).
 *
 * Invariants between steps: the target cache holds every emitted token except the last (the root of
 * the next tree); the draft cache (when there is a draft model) holds a prefix of them and `pending`
 * the rest (root last).
 *
 * @module
 */

import { argmax, probabilities, type SamplingParams, validateSampling } from "../model/sampling.ts";
import { type CausalLM, ForwardCancelled } from "../model/causal_lm.ts";
import {
  type DeviceVerifiedStep,
  hasChainedTreeSteps,
  hasFusedTreeStep,
  isDeviceSampler,
  isTreeVerifier,
  readbacks,
} from "../model/capabilities.ts";
import { f32Uniforms, Rng } from "../util/rng.ts";
import type { GenerationEvent, GenerationStats } from "../decoding/stats.ts";
import { TokenSink } from "../decoding/token_sink.ts";
import type { Drafter, DraftOutput } from "./drafters/drafter.ts";
import { keptDraftSlots, rootSlot } from "./drafters/draft_cache.ts";
import { levels, treeAttention } from "./tree.ts";
import { checkPairing, type NodeDistributions, type VerifierKind } from "./verify/verifier.ts";
import { VERIFIERS } from "./verify/registry.ts";
import { uniformsPerStep } from "./verify/uniform_replay.ts";
import { type GrammarFactory, LogitsPipeline, type PipelineState } from "../decoding/logits/pipeline.ts";
import type { ProcessingSpec, TokenVocabulary } from "../decoding/logits/processor.ts";
import { logprobsOf } from "../decoding/logits/logprobs.ts";
import type { TokenScores } from "../decoding/token_sink.ts";

/** Options of one speculative generation. */
export interface SpeculativeOptions {
  drafter: Drafter;
  /** Verification rule; must be exact for the drafter (checked). Greedy is used at temperature 0. */
  verifier: VerifierKind;
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  eosIds?: number[];
  signal?: AbortSignal;
  /** The request's logit processors, applied to the target's row at every node with its own history. */
  processing?: ProcessingSpec;
  /** Needed by a grammar: the tokens' bytes. */
  vocab?: TokenVocabulary;
  /** Builds a grammar's processor (needed by a grammar). */
  grammar?: GrammarFactory;
  /** Log-probabilities on each token event: the token's and the `logprobs` most likely (0..20). */
  logprobs?: number;
  /**
   * Device targets: most plain steps (trees of the root alone, see DraftOutput.plainSteps) decoded in
   * one submission, as AR does. Default 8.
   */
  tokensPerSubmission?: number;
  /**
   * Most tree nodes (root included) of the next step, asked before every step: batched streams shrink
   * their trees as the batch grows (1: the root alone, a plain step). The caller uses it where the output
   * does not depend on the tree (greedy decoding); a sampled stream's draws do.
   */
  nodeLimit?: () => number;
  /**
   * Fused device steps verify on the device (default true): the readback is the accepted path, not
   * every node's target and draft rows. false: read the rows back and verify on the host (the oracle).
   */
  deviceVerify?: boolean;
  /** False when no token is consumed before the generation ends (a non-streaming request, `--json`). */
  stream?: boolean;
  /**
   * Device pairs that run fused steps: most verified steps chained (default 8; 1: single steps). Not
   * streaming, their paths are read back with one sync after the last; streaming (with `streamChain`),
   * each step's is read while the next one runs. Fewer when the tokens left, the caches or maxBatch allow
   * fewer.
   */
  stepsPerReadback?: number;
  /**
   * Streaming: chain fused steps too, each step's read overlapping the next step (default false: on
   * Deno's WebGPU over llvmpipe it measured ~8% slower than single steps, bench/results/webgpu.md).
   */
  streamChain?: boolean;
}

/** Stats of one speculative step. */
export interface StepStats {
  treeSize: number;
  treeDepth: number;
  accepted: number;
  /** Index (draw order, 1-based) of the accepted child at the root, 0 if none. */
  rootRank: number;
  draftMs: number;
  verifyMs: number;
  draftForwards: number;
  /** GPU->CPU readbacks in this step (draft + target). */
  syncs: number;
  /** Bytes read back by a step verified on the device (absent for the other steps). */
  readbackBytes?: number;
}

/** Events: tokens, one "step" per speculative step, then "done". */
export type SpeculativeEvent =
  | GenerationEvent
  | { type: "step"; stats: StepStats; visits?: [number, number][] };

/** Aggregate stats of a speculative generation. */
export interface SpeculativeStats extends GenerationStats {
  steps: number;
  draftForwards: number;
  draftMs: number;
  verifyMs: number;
}

/**
 * The visits of a walk along `accepted` (see VerifyResult.visits): [children, rank of the accepted
 * child (1-based) or 0] at every node of the path that has children.
 */
export function pathVisits(children: number[][], accepted: number[]): [number, number][] {
  const out: [number, number][] = [];
  const path = [0, ...accepted];
  for (const [i, v] of path.entries()) {
    const kids = children[v];
    if (kids.length) out.push([kids.length, i < accepted.length ? kids.indexOf(accepted[i]) + 1 : 0]);
  }
  return out;
}

/**
 * How many fused verified steps to chain: at most `wanted`, no more than the tokens left need at the
 * rate so far, and no more than the caches' room and one compaction's maxBatch moves allow. A chained
 * step's rows start after the most rows the previous one can keep (multi_step.ts): the target's
 * 1 + depth, the draft's 2 + depth (x, root, path); the last step writes all its rows.
 */
export function chainLength(
  first: { shape: { depth: Int32Array }; forwards: { positions: ArrayLike<number> }[] },
  rest: { shape: { depth: Int32Array }; forwards: { positions: ArrayLike<number> }[] },
  room: {
    wanted: number;
    left: number;
    tokensPerStep: number;
    targetRoom: number;
    draftRoom: number;
    maxBatch: number;
  },
): number {
  const n = first.shape.depth.length;
  const depth = Math.max(...first.shape.depth, ...rest.shape.depth);
  const k0 = first.forwards[0]?.positions.length ?? 1;
  const rowsR = rest.forwards.reduce((a, x) => a + x.positions.length, 0);
  return Math.max(
    1,
    Math.min(
      Math.floor(room.wanted),
      Math.ceil(room.left / Math.max(1, room.tokensPerStep)),
      1 + Math.floor((room.targetRoom - n) / (1 + depth)),
      2 + Math.floor((room.draftRoom - k0 - depth - rowsR) / (2 + depth)),
      Math.floor(room.maxBatch / (2 + depth)),
    ),
  );
}

/**
 * Generate with speculative decoding. The caches of both models are reset first. `draftModel` may be
 * undefined when the drafter needs no draft model (one given is then left untouched).
 */
export async function* generateSpeculative(
  target: CausalLM,
  draftModel: CausalLM | undefined,
  prompt: ArrayLike<number>,
  opts: SpeculativeOptions,
): AsyncGenerator<SpeculativeEvent> {
  validateSampling(opts.sampling);
  const greedy = opts.sampling.temperature === 0;
  const verifierKind: VerifierKind = greedy ? "greedy" : opts.verifier;
  checkPairing(opts.drafter.kind, verifierKind, opts.sampling.temperature);
  const verifier = VERIFIERS[verifierKind];
  if (opts.drafter.needsDraftModel && !draftModel) {
    throw new RangeError(`drafter "${opts.drafter.kind}" needs a draft model`);
  }
  const draft = opts.drafter.needsDraftModel ? draftModel : undefined;
  if (draft && draft.config.vocabSize !== target.config.vocabSize) {
    throw new RangeError(
      `draft vocabulary ${draft.config.vocabSize} != target vocabulary ${target.config.vocabSize}`,
    );
  }
  if (prompt.length === 0) throw new RangeError("prompt must contain at least one token");
  const ctx = Math.min(target.config.maxPositions, draft?.config.maxPositions ?? Infinity);
  if (prompt.length >= ctx) throw new RangeError(`prompt has ${prompt.length} tokens; the context is ${ctx}`);
  const rng = new Rng(opts.seed);
  const sink = new TokenSink(opts.maxTokens, new Set(opts.eosIds ?? []), opts.signal);
  const V = target.config.vocabSize;
  // Processors (penalties, bias, grammar, min-p) change the target's rows only: every verifier is exact
  // for any draft distribution, so q stays the draft's own (what its children were drawn from).
  const pipe = LogitsPipeline.fromSpec(opts.processing, {
    temperature: opts.sampling.temperature,
    vocabSize: V,
    vocab: opts.vocab,
    grammar: opts.grammar,
  });
  const top = opts.logprobs;
  let rootState: PipelineState | undefined = pipe?.initial(prompt);
  target.kv.truncate(0);
  draft?.kv.truncate(0);
  // A pair on one device may run a whole static-tree step there with one readback.
  const fusedTarget = draft && hasFusedTreeStep(target) ? target : undefined;
  const fusedLimits = draft && fusedTarget?.fusedTreeLimits(draft);
  // ... and chain such steps: one readback for all when nothing waits on the tokens, else each step's
  // read overlapping the next step (not for batched streams: their trees change between steps).
  const chainTarget = draft && !opts.nodeLimit && (opts.stream === false || opts.streamChain === true) &&
      hasChainedTreeSteps(target)
    ? target
    : undefined;
  // Fused steps verify on the device unless the host needs the target's rows (log-probabilities) or the
  // caller asks for the host verifiers (the oracle; processors never reach a fused step).
  const deviceVerify = opts.deviceVerify !== false && top === undefined;
  // Host-drafted trees (SpecExec, lookup, a draft on another backend or vocabulary) too, when the target
  // can: not with processors (the host applies them to the target's rows).
  const treeVerifier = deviceVerify && !pipe && isTreeVerifier(target) ? target : undefined;
  const syncs = () => readbacks(target) + (draft ? readbacks(draft) : 0);
  // Plain steps (a tree of the root alone) may run as AR does on a device: several in one submission,
  // sampled there. The device samples the plain distribution: not with processors or logprobs.
  const plainTarget = isDeviceSampler(target) && !opts.processing && opts.logprobs === undefined
    ? target
    : undefined;
  const sync0 = syncs();
  const t0 = performance.now();

  // Prefill: everything but the last prompt token goes into both caches; the last one is the root.
  const n = prompt.length;
  if (n > 1) {
    const head = {
      tokens: Int32Array.from(prompt).subarray(0, n - 1),
      positions: Int32Array.from({ length: n - 1 }, (_, i) => i),
      logitRows: [n - 2],
      signal: opts.signal,
    };
    try {
      await target.forward(head);
      await draft?.forward(head);
    } catch (e) {
      // Cancelled between two prefill chunks (that forward's cache dropped it): the loop's first check
      // ends the generation as cancelled; both caches are reset by the next generation.
      if (!(e instanceof ForwardCancelled)) throw e;
    }
  }
  let root = prompt[n - 1];
  let pending = [root];
  // Every token so far, the root last (appended in place: a drafter may index it incrementally).
  const history: number[] = Array.from(prompt);
  const t1 = performance.now();
  let emitted = 0, steps = 0, targetForwards = 0, draftForwards = 0, draftMs = 0, verifyMs = 0;

  /**
   * Account for a step verified on the device (`r`: the path it read back) over a tree of `shape` and
   * emit it: state, drafter feedback, the step event, the tokens.
   */
  async function* deviceOutcome(
    r: DeviceVerifiedStep,
    shape: { children: number[][]; depth: Int32Array },
    forwards: number,
    dMs: number,
    vMs: number,
    stepSyncs: number,
  ): AsyncGenerator<SpeculativeEvent> {
    const kids = shape.children, accepted = r.accepted.length, nodes = kids.length;
    pending = draft ? [...r.tokens.slice(r.draftKept), r.bonus] : [r.bonus];
    root = r.bonus;
    history.push(...r.tokens, r.bonus);
    opts.drafter.observe?.({
      treeSize: nodes,
      accepted,
      ms: dMs + vMs,
      leaf: kids[accepted ? r.accepted[accepted - 1] : 0].length === 0,
    });
    steps++;
    targetForwards++;
    emitted += accepted + 1;
    draftForwards += forwards;
    draftMs += dMs;
    verifyMs += vMs;
    yield {
      type: "step",
      stats: {
        treeSize: nodes,
        treeDepth: levels(shape.depth),
        accepted,
        rootRank: accepted ? kids[0].indexOf(r.accepted[0]) + 1 : 0,
        draftMs: dMs,
        verifyMs: vMs,
        draftForwards: forwards,
        syncs: stepSyncs,
        readbackBytes: r.readbackBytes,
      },
      visits: pathVisits(kids, r.accepted),
    };
    yield* sink.emit([...r.tokens, r.bonus]);
  }

  while (sink.produced < opts.maxTokens) {
    if (opts.signal?.aborted) {
      sink.finish = "cancelled";
      break;
    }
    const L = target.kv.length; // == prompt + emitted - 1
    const room = Math.min(ctx - L, target.maxBatch ?? Infinity);
    if (room < 1) break;
    const s0 = syncs();
    const ta = performance.now();
    // Without a draft model the "draft cache" is the target's: every token but the root.
    const prefixLen = draft ? draft.kv.length : L;
    const draftInput = {
      draft,
      prefixLen,
      pending,
      history,
      sampling: opts.sampling,
      rng,
      maxNodes: Math.min(
        room,
        ctx - prefixLen - pending.length + 1,
        Math.max(1, opts.nodeLimit?.() ?? Infinity),
      ),
      draftRoom: ctx - prefixLen - pending.length,
      processing: pipe && { pipeline: pipe, root: rootState! },
    };
    // One device round trip when the drafter and the pair can (draft levels + target, one readback).
    // With processors the draft's rows are processed on the host (the device draws from raw rows), so
    // the step is drafted and verified apart: exact either way, but drafts stay where p allows them.
    const fused = !pipe && fusedLimits && opts.drafter.planFused?.(draftInput, fusedLimits);
    let tree: DraftOutput, logits: Float32Array, tb: number;
    // The fused step's plan (its seed drawn first, then a verified step's uniforms: one order for both).
    const fusedPlan = fused && {
      nodes: fused.shape.parent.length,
      pending,
      forwards: fused.forwards,
      target: treeAttention(fused.shape.parent, fused.shape.depth, L),
      sampling: opts.sampling,
      seed: rng.nextU32(),
      draw: fused.draw,
      wantQ: verifier.needsQ && !deviceVerify,
    };
    if (fused && fusedPlan && fusedTarget && deviceVerify) {
      // Drafted, verified and compacted on the device: only the accepted path comes back.
      const nodes = fusedPlan.nodes;
      const stepUniforms = () => greedy ? new Float32Array(nodes) : f32Uniforms(rng, uniformsPerStep(nodes));
      const firstVerify = {
        rule: verifierKind,
        children: fused.shape.children,
        draftSlots: fused.slotOf,
        uniforms: stepUniforms(),
      };
      // Later steps of a chain, planned once in their own coordinates (see ChainedStepsPlan).
      const rest = chainTarget && opts.drafter.planFused?.(
        { ...draftInput, prefixLen: 0, pending: [0, 0] },
        fusedLimits,
      );
      const K = rest && rest.shape.parent.length === nodes
        ? chainLength(fused, rest, {
          wanted: opts.stepsPerReadback ?? 8,
          left: opts.maxTokens - sink.produced,
          tokensPerStep: steps ? emitted / steps : 1,
          targetRoom: Math.min(ctx, target.kv.capacity) - L,
          draftRoom: Math.min(ctx, draft.kv.capacity) - prefixLen,
          maxBatch: Math.min(target.maxBatch ?? Infinity, draft.maxBatch ?? Infinity),
        })
        : 1;
      if (rest && chainTarget && K > 1) {
        // The RNG is consumed as K single steps would: seed, uniforms, seed, uniforms, ...
        const seeds: number[] = [], uniforms: Float32Array[] = [];
        for (let j = 1; j < K; j++) {
          seeds.push(rng.nextU32());
          uniforms.push(stepUniforms());
        }
        // Streaming: each step's path is read while the next one runs (its tokens come as it ends); not
        // streaming: every path at once after the last step.
        const overlap = opts.stream !== false;
        const chain = chainTarget.fusedVerifiedSteps(draft, {
          first: fusedPlan,
          firstVerify,
          rest: {
            ...fusedPlan,
            pending: [0, 0],
            forwards: rest.forwards,
            target: treeAttention(rest.shape.parent, rest.shape.depth, 0),
            seed: 0,
          },
          restVerify: { rule: verifierKind, children: rest.shape.children, draftSlots: rest.slotOf },
          seeds,
          uniforms,
        }, overlap);
        let j = 0, tPrev = ta, sPrev = s0, share = 0, stepRoot = root;
        let last: DeviceVerifiedStep | undefined, lastRoot = root;
        for await (const r of chain) {
          const now = performance.now();
          if (!overlap && j === 0) share = (now - ta) / K; // one readback for all: the time shared out
          const ms = overlap ? now - tPrev : share;
          tPrev = now;
          const stepSyncs = syncs() - sPrev;
          sPrev = syncs();
          yield* deviceOutcome(
            r,
            j === 0 ? fused.shape : rest.shape,
            fused.forwards.length,
            ms,
            0,
            stepSyncs,
          );
          last = r;
          lastRoot = stepRoot;
          stepRoot = r.bonus;
          j++;
          if (sink.finish) break;
          if (opts.signal?.aborted) {
            sink.finish = "cancelled";
            break;
          }
        }
        if (sink.finish || !last) break;
        // The draft has not kept the last accepted token (the chain forwards it again as the next x).
        pending = [last.tokens.length ? last.tokens[last.tokens.length - 1] : lastRoot, last.bonus];
        if (target.kv.length >= ctx) break;
        continue;
      }
      const r = await fusedTarget.fusedVerifiedStep(draft, fusedPlan, firstVerify);
      const ms = performance.now() - ta;
      yield* deviceOutcome(r, fused.shape, fused.forwards.length, ms, 0, syncs() - s0);
      if (sink.finish) break;
      if (target.kv.length >= ctx) break;
      continue;
    }
    if (fused && fusedPlan && fusedTarget) {
      const r = await fusedTarget.fusedTreeStep(draft, fusedPlan);
      tree = fused.complete(r);
      logits = r.targetLogits;
      tb = performance.now(); // the fused step's draft and target time are reported together as draft ms
    } else {
      tree = await opts.drafter.draft(draftInput);
      tb = performance.now();
      const plain = tree.tokens.length === 1 ? Math.min(tree.plainSteps ?? 1, room) : 1;
      if (plainTarget && plain > 1) {
        // Plain steps on the device, AR's way: up to tokensPerSubmission tokens, one readback.
        const k = Math.min(plain, opts.tokensPerSubmission ?? 8, opts.maxTokens - sink.produced);
        const ids = Array.from(
          await plainTarget.decodeSteps(
            root,
            k,
            greedy ? { kind: "argmax" } : {
              kind: "sample",
              sampling: opts.sampling,
              uniforms: Array.from({ length: k }, () => rng.next()),
            },
          ),
        );
        const share = (performance.now() - tb) / k;
        const stepSyncs = syncs() - s0;
        targetForwards += k;
        draftMs += tb - ta;
        verifyMs += share * k;
        for (const [i, id] of ids.entries()) {
          steps++;
          emitted++;
          const ms = share + (i === 0 ? tb - ta : 0);
          opts.drafter.observe?.({ treeSize: 1, accepted: 0, ms, batch: k });
          yield {
            type: "step",
            stats: {
              treeSize: 1,
              treeDepth: 1,
              accepted: 0,
              rootRank: 0,
              draftMs: i === 0 ? tb - ta : 0,
              verifyMs: share,
              draftForwards: 0,
              syncs: i === 0 ? stepSyncs : 0,
            },
            visits: [],
          };
          yield* sink.emit([id]);
          if (sink.finish) break;
        }
        history.push(...ids);
        root = ids[ids.length - 1];
        pending = [root];
        if (sink.finish) break;
        if (target.kv.length >= ctx) break;
        continue;
      }
      const { positions, mask } = treeAttention(tree.parent, tree.depth, L);
      if (treeVerifier) {
        // Verified on the target's device: only the path comes back; the draft compacts as usual.
        const t = tree, nodes = t.tokens.length;
        const r = await treeVerifier.verifiedForward({ tokens: t.tokens, positions, mask }, {
          rule: verifierKind,
          children: t.children,
          uniforms: greedy ? new Float32Array(nodes) : f32Uniforms(rng, uniformsPerStep(nodes)),
          sampling: opts.sampling,
          q: (v) => t.q[v],
        });
        if (draft) {
          const kept = keptDraftSlots(r.accepted, t.slotOf);
          await draft.kv.commit(rootSlot(prefixLen, pending.length) + 1, kept.slots);
          r.draftKept = kept.count;
        }
        yield* deviceOutcome(r, t, t.forwards, tb - ta, performance.now() - tb, syncs() - s0);
        if (sink.finish) break;
        if (target.kv.length >= ctx) break;
        continue;
      }
      logits = await target.forward({ tokens: tree.tokens, positions, mask });
    }
    const size = tree.tokens.length;
    targetForwards++;
    const raw = (v: number) => logits.subarray(v * V, (v + 1) * V);
    // Node v's processor state: the generated tokens so far, then the path root -> v (v's token last).
    const states = new Map<number, PipelineState>();
    const stateOf = (v: number): PipelineState => {
      let st = states.get(v);
      if (!st) {
        states.set(v, st = v === 0 ? rootState! : pipe!.advance(stateOf(tree.parent[v]), tree.tokens[v]));
      }
      return st;
    };
    const rows = new Map<number, Float32Array>();
    const row = (v: number) => {
      if (!pipe) return raw(v);
      let x = rows.get(v);
      if (!x) rows.set(v, x = pipe.processed(raw(v), stateOf(v)));
      return x;
    };
    const pCache = new Map<number, Float64Array>();
    const p = (v: number) => {
      let x = pCache.get(v);
      if (!x) pCache.set(v, x = probabilities(row(v), opts.sampling));
      return x;
    };
    const q = (v: number) => {
      const x = tree.q[v];
      if (!x) {
        throw new Error(`verifier needs the draft distribution at node ${v}, which the drafter did not keep`);
      }
      return x;
    };
    const dists: NodeDistributions = { argmax: (v) => argmax(row(v)), p, q };
    const res = verifier.verify({ tokens: tree.tokens, children: tree.children }, dists, rng);
    const tc = performance.now();

    // Compact: target keeps the root and the accepted path; the draft keeps what it has processed.
    await target.kv.commit(L, [L, ...res.accepted.map((v) => L + v)]);
    const acceptedTokens = res.accepted.map((v) => tree.tokens[v]);
    if (draft) {
      const kept = keptDraftSlots(res.accepted, tree.slotOf);
      await draft.kv.commit(rootSlot(prefixLen, pending.length) + 1, kept.slots);
      pending = [...acceptedTokens.slice(kept.count), res.bonus];
    } else {
      pending = [res.bonus];
    }
    root = res.bonus;
    history.push(...acceptedTokens, res.bonus);
    // The row each emitted token was drawn from: its parent's (the root's for the first), the last
    // accepted node's for the bonus.
    const from = [0, ...res.accepted];
    const scores: TokenScores[] | undefined = top === undefined
      ? undefined
      : [...acceptedTokens, res.bonus].map(
        (id, i) => logprobsOf(row(from[i]), id, top),
      );
    if (pipe) rootState = pipe.advance(stateOf(from[from.length - 1]), res.bonus);

    const accepted = res.accepted.length;
    const leaf = tree.children[accepted ? res.accepted[accepted - 1] : 0].length === 0;
    opts.drafter.observe?.({ treeSize: size, accepted, ms: performance.now() - ta, leaf });
    steps++;
    emitted += accepted + 1;
    draftForwards += tree.forwards;
    draftMs += tb - ta;
    verifyMs += tc - tb;
    const rootKids = tree.children[0];
    yield {
      type: "step",
      stats: {
        treeSize: size,
        treeDepth: levels(tree.depth),
        accepted,
        rootRank: accepted ? rootKids.indexOf(res.accepted[0]) + 1 : 0,
        draftMs: tb - ta,
        verifyMs: tc - tb,
        draftForwards: tree.forwards,
        syncs: syncs() - s0,
      },
      visits: res.visits,
    };
    yield* sink.emit([...acceptedTokens, res.bonus], scores);
    if (sink.finish) break;
    if (target.kv.length >= ctx) break; // the next root would have no position left
  }
  const t2 = performance.now();
  const decodeMs = t2 - t1;
  const produced = sink.produced;
  const stats: SpeculativeStats = {
    promptTokens: n,
    completionTokens: produced,
    prefillMs: t1 - t0,
    decodeMs,
    tokPerS: decodeMs > 0 ? produced / (decodeMs / 1000) : 0,
    targetForwards,
    // Tokens each step emitted (accepted + bonus), before truncation at EOS / max_tokens.
    tokensPerStep: steps ? emitted / steps : 0,
    syncs: syncs() - sync0,
    steps,
    draftForwards,
    draftMs,
    verifyMs,
  };
  yield { type: "done", finishReason: sink.finish ?? "length", stats };
}
