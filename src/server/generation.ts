/**
 * One generation as every route runs it: checks that need the model (method available, prompt +
 * max_tokens within the context), a place in the FIFO queue, under `--method auto` the engine's choice
 * of method for this request (from predicted speeds: runtime/method_choice.ts), the engine's event
 * stream turned into text (streaming detokenizer, stop sequences), cancellation, and the metrics of the
 * run. Routes only adapt the result to their wire format.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { FinishReason, GenerationStats, PromptEvent, TokenEvent } from "../decoding/stats.ts";
import type { ProcessingSpec } from "../decoding/logits/processor.ts";
import { type Method, needsDraftModel, type TreeOptions } from "../speculative/methods.ts";
import type { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
import type { BackendStatus, MethodDecision } from "../runtime/runtime.ts";
import {
  AUTO_METHODS,
  type AutoMethod,
  type Exclusion,
  type MethodChoice,
} from "../runtime/method_choice.ts";
import { type DecodeEngine, LocalEngine } from "./engine.ts";
import { ApiError } from "./errors.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { CancelCause, Scheduler, Slot } from "./queue.ts";
import { StopFilter } from "./stop.ts";

/** What the app serves: one target model behind an engine, its tokenizer, and the startup decisions. */
export interface ModelService {
  /** The model id clients name (GET /v1/models). */
  name: string;
  tokenizer: ModelTokenizer;
  /** Runs the generations (in this thread, or in a worker); without a draft only "ar" and "lookup" run. */
  engine: DecodeEngine;
  /**
   * Method used when a request names none; "auto": chosen per request by the engine (its `choose`; an
   * engine without one decodes with ar).
   */
  defaultMethod?: Method | "auto";
  /** Default tree settings (e.g. the hardware-aware pick) and Sequoia's acceptance vector. */
  tree?: TreeOptions;
  acceptance?: number[];
  /** What GET /v1/status reports about the startup profile. */
  status?: Record<string, unknown>;
  /** Where the models run (GET /v1/status: backend, threads, device, backend_choice). */
  backend?: BackendStatus;
}

/**
 * A {@link ModelService} whose engine runs `model` (and `draft`) in this thread ({@link LocalEngine}),
 * with grammar support for `response_format` over `tokenizer`'s vocabulary.
 */
export function localService(
  o: Omit<ModelService, "engine"> & {
    model: CausalLM;
    draft?: CausalLM;
    /** Sequoia's self-re-planning tree, shared by all requests that keep the server's tree. */
    adaptive?: AdaptiveSequoiaPlan;
  },
): ModelService {
  const { model, draft, adaptive, ...rest } = o;
  return { ...rest, engine: new LocalEngine(model, draft, adaptive, { tokenizer: o.tokenizer }) };
}

/**
 * Longest stretch (ms) a generation runs without letting the event loop handle I/O. A CPU model's
 * forward resolves in microtasks, so without this a generation would starve the server: no other
 * request answered, no disconnect noticed, no stream flushed until it ended.
 */
const YIELD_EVERY_MS = 10;

const macrotask = () => new Promise<void>((res) => setTimeout(res, 0));

/** A validated generation request, in tokens. */
export interface GenerationRequest {
  /** (n) prompt token ids, BOS included when the model uses one. */
  prompt: number[];
  maxTokens: number;
  sampling: SamplingParams;
  /** Random seed; a fresh one when omitted. */
  seed?: number;
  /** Stop sequences: generation ends when the text contains one; the text is cut before it. */
  stop?: string[];
  method?: Method;
  treeSize?: number;
  depth?: number;
  budget?: number;
  /** The request's logits processors (penalties, logit_bias, min_p, grammar); absent: none. */
  processing?: ProcessingSpec;
  /** Log-probabilities of every generated token and its `logprobs` most likely alternatives (0..20). */
  logprobs?: number;
  /** Also the prompt's log-probabilities (OpenAI's `echo` with `logprobs`; needs `logprobs`). */
  promptLogprobs?: boolean;
}

/** Which request fields a refusal names (they differ between routes). */
export interface RequestParams {
  /** The field that set max_tokens (default "max_tokens"). */
  maxTokens?: string;
  /** The field the prompt came from (default "prompt"; "messages" for chat). */
  prompt?: string;
}

/**
 * llama.cpp's per-response `timings` (tools/server: `result_timings`): prompt processing and
 * generation times and rates, and when speculation drafted anything, the draft tokens proposed and
 * accepted. Rates whose denominator is 0 are 0 (JSON has no NaN or Infinity).
 */
export interface Timings {
  /** Prompt tokens reused from a cache: always 0 (every generation processes its whole prompt). */
  cache_n: number;
  prompt_n: number;
  prompt_ms: number;
  prompt_per_token_ms: number;
  prompt_per_second: number;
  /** Generated tokens (= usage.completion_tokens). */
  predicted_n: number;
  predicted_ms: number;
  predicted_per_token_ms: number;
  predicted_per_second: number;
  /** Draft tokens proposed (tree nodes below the root, summed over steps); only when > 0. */
  draft_n?: number;
  /** Draft tokens the target accepted (the bonus token not counted); with `draft_n`. */
  draft_n_accepted?: number;
}

/** What one generation drafted: steps that proposed tokens, tokens proposed, accepted, accepted per depth. */
export interface DraftCounts {
  drafts: number;
  draftTokens: number;
  accepted: number;
  /** acceptedPerPos[i]: drafts whose accepted path reached depth i + 1 (vLLM's per-position count). */
  acceptedPerPos: number[];
}

/** `timings` of one or more finished generations, their counts and times summed. */
export function timingsOf(outs: readonly GenerationResult[]): Timings {
  let promptN = 0, promptMs = 0, predictedN = 0, predictedMs = 0, draftN = 0, accepted = 0;
  for (const o of outs) {
    promptN += o.promptTokens;
    promptMs += o.stats?.prefillMs ?? 0;
    predictedN += o.ids.length;
    predictedMs += o.stats?.decodeMs ?? 0;
    draftN += o.draft.draftTokens;
    accepted += o.draft.accepted;
  }
  const div = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? a / b : 0);
  const t: Timings = {
    cache_n: 0,
    prompt_n: promptN,
    prompt_ms: promptMs,
    prompt_per_token_ms: div(promptMs, promptN),
    prompt_per_second: div(promptN * 1000, promptMs),
    predicted_n: predictedN,
    predicted_ms: predictedMs,
    predicted_per_token_ms: div(predictedMs, predictedN),
    predicted_per_second: div(predictedN * 1000, predictedMs),
  };
  if (draftN > 0) {
    t.draft_n = draftN;
    t.draft_n_accepted = accepted;
  }
  return t;
}

/** A generated token's log-probabilities (when asked for): its own and the most likely (id, logprob). */
export interface TokenScore {
  logprob?: number;
  top?: [number, number][];
}

/** Why a generation ended, as clients see it. */
export type Finish = FinishReason;

/** The outcome of a generation. */
export interface GenerationResult {
  /** Every generated id (including those that spelled a stop sequence). */
  ids: number[];
  /** Generated text, cut before a stop sequence. */
  text: string;
  /** Text released only at the end (held back for stop sequences or an unfinished character). */
  tail: string;
  /** "stop" (EOS or stop sequence), "length" (max_tokens) or "cancelled" (see `cancelCause`). */
  finishReason: Finish;
  cancelCause?: CancelCause;
  method: Method;
  /** Under `--method auto`: why `method` was chosen (every candidate's predicted tok/s). */
  choice?: MethodChoice;
  stats: GenerationStats;
  promptTokens: number;
  /** Per generated id, its log-probabilities, when the request asked for them. */
  scores?: TokenScore[];
  /** The prompt's log-probabilities, when asked for (and the engine gave them). */
  prompt?: PromptEvent;
  /** What speculation drafted for this generation (all 0 for "ar"). */
  draft: DraftCounts;
}

/**
 * Called for each generated token with the text it releases (possibly ""), in order, and its event
 * (which carries `logprob` / `top` when they were asked for).
 */
export type OnToken = (id: number, text: string, ev: TokenEvent) => Promise<void> | void;

/** Called once with the prompt's log-probabilities, before the first token (when asked for). */
export type OnPrompt = (ev: PromptEvent) => Promise<void> | void;

/** A generation that holds a place in the queue; `run` it at once (or `abandon` it). */
export interface PendingGeneration {
  /** The method, or "auto" when the engine chooses it at the generation's turn (the result has it). */
  readonly method: Method | "auto";
  readonly promptTokens: number;
  /** Wait for the turn, generate, free the place. */
  run(onToken?: OnToken, onPrompt?: OnPrompt): Promise<GenerationResult>;
  /** Give the place back without generating (only instead of `run`). */
  abandon(): void;
}

/** The error a generation cancelled by shutdown answers with (503; an error event when streaming). */
export function shutdownError(): ApiError {
  return new ApiError(503, "generation cancelled: the server is shutting down", { code: "shutting_down" });
}

/** Tree settings a request may set, by field: they change only speculative methods. */
const TREE_FIELDS = [["treeSize", "tree_size"], ["depth", "depth"], ["budget", "budget"]] as const;

/** The tree fields each method reads (see speculative/methods.ts makeDrafter). */
const TREE_FIELDS_USED: Record<Method, readonly string[]> = {
  ar: [],
  chain: ["depth"],
  specinfer: ["depth"],
  sequoia: ["tree_size", "depth"],
  specexec: ["budget"],
  lookup: ["tree_size", "depth"],
};

/** Request fields whose values the engine checks again (its RangeErrors name them first). */
const PROCESSING_FIELD =
  /^(response_format|logit_bias|min_p|presence_penalty|frequency_penalty|repetition_penalty)\b/;

/**
 * The 400 for an engine refusal of a request's processing (e.g. a JSON schema its grammar cannot
 * compile, or an engine without grammar support): a RangeError whose message starts with the field's
 * name (it crosses the worker with its name and message). Undefined for anything else.
 */
export function processingError(e: unknown): ApiError | undefined {
  if (e instanceof Error && e.name === "GrammarError") {
    return new ApiError(400, `response_format: ${e.message}`, { param: "response_format" });
  }
  if (!(e instanceof Error) || e.name !== "RangeError") return undefined;
  const field = e.message.match(PROCESSING_FIELD)?.[1];
  return field ? new ApiError(400, e.message, { param: field }) : undefined;
}

/** Runs generations for the routes of one app. */
export class Generations {
  /** The model's context length (tokens). */
  readonly context: number;
  /** Token ids as logprobs show them. */
  readonly pieces: TokenPieces;

  constructor(
    readonly svc: ModelService,
    readonly scheduler: Scheduler,
    readonly metrics: ServerMetrics,
  ) {
    this.context = svc.engine.context;
    this.pieces = new TokenPieces(svc.tokenizer);
    // Dashboards see speculation's counters at 0 before the first speculative step (lookup speculates
    // on every server, with a draft model or not).
    metrics.initSpecDecode(svc.name);
  }

  /**
   * The method a request runs with ("auto": chosen at its turn, among {@link Generations.autoCandidates}); 400 when
   * this server cannot run it.
   */
  resolveMethod(requested: Method | undefined): Method | "auto" {
    if (requested === undefined && this.svc.defaultMethod === "auto") {
      return this.svc.engine.choose ? "auto" : "ar";
    }
    const method = requested ?? (this.svc.defaultMethod as Method | undefined) ?? "ar";
    if (needsDraftModel(method) && !this.svc.engine.hasDraft) {
      throw new ApiError(
        400,
        `method: "${method}" needs a draft model; this server has none (ar and lookup need none)`,
        { param: "method" },
      );
    }
    if (method === "sequoia" && !this.svc.acceptance) {
      throw new ApiError(400, `method: "sequoia" needs an acceptance vector; start the server with a draft`, {
        param: "method",
      });
    }
    return method;
  }

  /**
   * 400 (code `context_length_exceeded`) when the prompt leaves no room for a generated token (naming
   * the prompt's field) or the prompt plus `maxTokens` do not fit (naming the max_tokens field); both
   * numbers and the limit are named.
   */
  checkContext(promptTokens: number, maxTokens: number, params: RequestParams = {}): void {
    const param = params.maxTokens ?? "max_tokens";
    const promptParam = params.prompt ?? "prompt";
    if (promptTokens === 0) {
      throw new ApiError(400, `${promptParam}: must contain at least one token`, { param: promptParam });
    }
    if (promptTokens >= this.context) {
      throw new ApiError(
        400,
        `${promptParam}: the prompt (${promptTokens} tokens) does not fit the model's context of ${this.context} tokens (at most ${
          this.context - 1
        }, leaving room for one generated token)`,
        { param: promptParam, code: "context_length_exceeded" },
      );
    }
    if (promptTokens + maxTokens > this.context) {
      throw new ApiError(
        400,
        `prompt (${promptTokens} tokens) + ${param} (${maxTokens}) = ${
          promptTokens + maxTokens
        } exceeds the model's context of ${this.context} tokens`,
        { param, code: "context_length_exceeded" },
      );
    }
  }

  /**
   * The methods auto may choose for `req`: ar, sequoia, specexec and lookup (without a draft: ar and
   * lookup), less those that do not read every tree field the request sets (a request asking for a
   * tree_size wants a tree that has one). `excluded` says why the others are out.
   */
  autoCandidates(req: GenerationRequest): { allowed: AutoMethod[]; excluded: Exclusion[] } {
    const allowed: AutoMethod[] = [], excluded: Exclusion[] = [];
    for (const m of AUTO_METHODS) {
      if (needsDraftModel(m) && !this.svc.engine.hasDraft) continue; // the engine says so itself
      const unread = TREE_FIELDS.find(([key, field]) =>
        req[key] !== undefined && !TREE_FIELDS_USED[m].includes(field)
      );
      if (unread) {
        excluded.push({ method: m, why: `the request sets ${unread[1]}, which ${m} does not read` });
      } else allowed.push(m);
    }
    return { allowed, excluded };
  }

  /**
   * 400 naming a tree field the generation's method does not use (it would be silently ignored): none
   * for ar; depth for chain and specinfer; tree_size and depth for sequoia and lookup; budget for specexec.
   * Under auto: when no method auto may choose reads all the fields the request sets.
   */
  checkTree(req: GenerationRequest, method: Method | "auto"): void {
    if (method === "auto") {
      if (this.autoCandidates(req).allowed.length > 0) return;
      const fields = TREE_FIELDS.filter(([key]) => req[key] !== undefined).map(([, f]) => f);
      const can = AUTO_METHODS.filter((m) => !needsDraftModel(m) || this.svc.engine.hasDraft);
      throw new ApiError(
        400,
        `${fields[fields.length - 1]}: the server's default method is "auto", which chooses among ${
          can.join(", ")
        }; none of them reads ${fields.join(" and ")}; name a method`,
        { param: fields[fields.length - 1] },
      );
    }
    const used = TREE_FIELDS_USED[method];
    for (const [key, field] of TREE_FIELDS) {
      if (req[key] === undefined || used.includes(field)) continue;
      const why = req.method === undefined
        ? `the server's default method is "${method}"`
        : `method is "${method}"`;
      const users = Object.entries(TREE_FIELDS_USED).filter(([, f]) => f.includes(field)).map(([m]) => m);
      throw new ApiError(
        400,
        `${field}: only the speculative methods that read it use it (${users.join(", ")}); ${why}`,
        {
          param: field,
        },
      );
    }
  }

  /**
   * Validate `req` against the model and take a place in the queue. Throws {@link ApiError}: 400
   * (method, tree fields, context), 429 (queue full), 503 (shutting down). `client` aborts when the
   * client leaves.
   */
  prepare(req: GenerationRequest, client?: AbortSignal, params: RequestParams = {}): PendingGeneration {
    return this.prepareMany([req], client, params)[0];
  }

  /**
   * {@link prepare} for several generations of one request (n > 1, best_of, a list of prompts): all
   * are checked first, then each takes its own place in the queue, consecutively; when the queue
   * cannot take them all, none keeps its place (429). They run one after another, in order.
   */
  prepareMany(
    reqs: readonly GenerationRequest[],
    client?: AbortSignal,
    params: RequestParams = {},
  ): PendingGeneration[] {
    const methods = reqs.map((req) => {
      const method = this.resolveMethod(req.method);
      this.checkTree(req, method);
      this.checkContext(req.prompt.length, req.maxTokens, params);
      return method;
    });
    const out: PendingGeneration[] = [];
    try {
      for (let i = 0; i < reqs.length; i++) out.push(this.admit(reqs[i], methods[i], client));
    } catch (e) {
      for (const p of out) p.abandon();
      throw e;
    }
    return out;
  }

  private admit(req: GenerationRequest, method: Method | "auto", client?: AbortSignal): PendingGeneration {
    // Its max_tokens bounds its time: the wait told to refused clients (Retry-After) counts it.
    const slot = this.scheduler.admit(client, { maxTokens: req.maxTokens });
    const queuedAt = performance.now();
    return {
      method,
      promptTokens: req.prompt.length,
      run: (onToken, onPrompt) =>
        slot.run((signal) => {
          this.metrics.queueSeconds.observe((performance.now() - queuedAt) / 1000);
          return this.generate(method, req, slot, signal, onToken, onPrompt);
        }).catch((e) => {
          // Cancelled by shutdown before its turn: the client hears why.
          if (slot.cause === "shutdown") throw shutdownError();
          throw processingError(e) ?? e;
        }),
      abandon: () => {
        slot.cancel("client");
        // A slot already at the head is released by running nothing.
        slot.run(() => Promise.resolve()).catch(() => {});
      },
    };
  }

  private async generate(
    requested: Method | "auto",
    req: GenerationRequest,
    slot: Slot,
    signal: AbortSignal,
    onToken?: OnToken,
    onPrompt?: OnPrompt,
  ): Promise<GenerationResult> {
    const { svc, metrics } = this;
    // Auto: the engine predicts each method's speed for this prompt and temperature, at this turn (it may
    // measure an acceptance vector on the models, once per temperature).
    let decision: MethodDecision | undefined;
    if (requested === "auto") {
      decision = await svc.engine.choose!(req.prompt, {
        sampling: req.sampling,
        tree: { treeSize: req.treeSize, depth: req.depth, budget: req.budget },
        exclude: this.autoCandidates(req).excluded,
      });
    }
    const method: Method = decision?.method ?? (requested as Method);
    // A stop sequence ends generation through the engine's own cancellation, so it stops at the very
    // token that completed the sequence and still reports its stats.
    const stopped = new AbortController();
    const dec = svc.tokenizer.streamDecoder();
    const stop = new StopFilter(req.stop ?? []);
    const ids: number[] = [];
    const scores: TokenScore[] | undefined = req.logprobs === undefined ? undefined : [];
    let prompt: PromptEvent | undefined;
    const draft: DraftCounts = { drafts: 0, draftTokens: 0, accepted: 0, acceptedPerPos: [] };
    let text = "";
    let finish: FinishReason = "length";
    let stats: GenerationStats | undefined;
    const tree: TreeOptions = {
      ...svc.tree,
      treeSize: req.treeSize ?? svc.tree?.treeSize,
      // The server's depth is Sequoia's pick (a shape for the draft's acceptance): lookup keeps its own
      // depth cap unless the request sets one; it shares the node budget (treeSize).
      depth: req.depth ?? (method === "lookup" ? undefined : svc.tree?.depth),
      budget: req.budget ?? svc.tree?.budget,
      // Auto: the settings the winner was predicted at (e.g. Sequoia's pick at this temperature).
      ...decision?.tree,
    };
    // The shared adaptive plan only serves requests that keep the server's tree.
    const adaptive = req.treeSize === undefined && req.depth === undefined;
    const events = svc.engine.decode(method, req.prompt, {
      tree,
      acceptance: decision?.acceptance ?? svc.acceptance,
      adaptive,
      ...(decision?.plan ? { plan: decision.plan } : {}),
      maxTokens: req.maxTokens,
      sampling: req.sampling,
      seed: req.seed ?? crypto.getRandomValues(new Uint32Array(1))[0],
      eosIds: svc.tokenizer.eosIds,
      ...(req.processing ? { processing: req.processing } : {}),
      ...(req.logprobs !== undefined ? { logprobs: req.logprobs } : {}),
      ...(req.promptLogprobs && req.logprobs !== undefined ? { promptLogprobs: true } : {}),
      // Nothing waits on single tokens without a stream: the device may read them back in long batches.
      ...(onToken ? {} : { stream: false }),
    }, AbortSignal.any([signal, stopped.signal]));
    let lastYield = performance.now();
    let lastToken: number | undefined;
    for await (const ev of events) {
      if (ev.type === "step") {
        metrics.tokensPerStep.observe(ev.stats.accepted + 1);
        metrics.stepSeconds.observe((ev.stats.draftMs + ev.stats.verifyMs) / 1000);
        // Draft tokens proposed: the tree's nodes below its root (the root is the last emitted token).
        const proposed = ev.stats.treeSize - 1;
        if (proposed > 0) {
          draft.drafts++;
          draft.draftTokens += proposed;
          draft.accepted += ev.stats.accepted;
          for (let i = 0; i < ev.stats.accepted; i++) {
            draft.acceptedPerPos[i] = (draft.acceptedPerPos[i] ?? 0) + 1;
          }
          metrics.observeDraft(svc.name, method, proposed, ev.stats.accepted);
        }
      } else if (ev.type === "prompt") {
        prompt = ev;
        await onPrompt?.(ev);
      } else if (ev.type === "token") {
        const now = performance.now();
        if (lastToken !== undefined) metrics.interTokenSeconds.observe((now - lastToken) / 1000);
        lastToken = now;
        if (performance.now() - lastYield > YIELD_EVERY_MS) {
          await macrotask();
          lastYield = performance.now();
        }
        ids.push(ev.id);
        scores?.push({ logprob: ev.logprob, top: ev.top });
        const out = stop.push(dec.push(ev.id));
        text += out.text;
        if (out.stopped) stopped.abort();
        await onToken?.(ev.id, out.text, ev);
      } else if (ev.type === "done") {
        finish = ev.finishReason;
        stats = ev.stats;
      }
    }
    // The decoder's and the stop filter's held-back text; a stop sequence may still complete here.
    const last = stop.push(dec.flush());
    const tail = last.text + stop.flush();
    text += tail;
    if (stop.stopped) finish = "stop";
    else if (slot.cause) finish = "cancelled";
    if (method === "ar" && stats && stats.targetForwards > 1) {
      // AR has no step events: every forward after prefill is one step of one token.
      const steps = stats.targetForwards - 1;
      metrics.tokensPerStep.observe(1, steps);
      metrics.stepSeconds.observe(stats.decodeMs / steps / 1000, steps);
    }
    slot.reportGenerated(ids.length);
    metrics.promptTokens.inc({}, req.prompt.length);
    metrics.completionTokens.inc({ method }, ids.length);
    metrics.generations.inc({ method, finish_reason: finish });
    return {
      ids,
      text,
      tail,
      finishReason: finish,
      cancelCause: finish === "cancelled" ? slot.cause : undefined,
      method,
      ...(decision ? { choice: decision.choice } : {}),
      stats: stats!,
      promptTokens: req.prompt.length,
      ...(scores ? { scores } : {}),
      ...(prompt ? { prompt } : {}),
      draft,
    };
  }
}

/** A token as logprobs show it: its text and its bytes (UTF-8). */
export interface TokenPiece {
  /** The token's text; `bytes:\\xNN...` when its bytes are not valid UTF-8 alone (part of a character). */
  text: string;
  bytes: number[];
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Token ids as logprobs show them, computed once per id. */
export class TokenPieces {
  private readonly cache = new Map<number, TokenPiece>();
  constructor(private readonly tokenizer: ModelTokenizer) {}

  /** The piece of token `id`: the bytes it appends mid-text (`tokenBytes`), or its lone decode. */
  of(id: number): TokenPiece {
    let p = this.cache.get(id);
    if (!p) {
      let raw: Uint8Array | undefined;
      try {
        raw = this.tokenizer.tokenBytes(id);
      } catch {
        // A decoder tokenBytes does not know: fall back to decoding the id alone.
      }
      if (raw === undefined) {
        const text = this.tokenizer.decode([id]);
        p = { text, bytes: [...new TextEncoder().encode(text)] };
      } else {
        const bytes = [...raw];
        try {
          p = { text: STRICT_UTF8.decode(raw), bytes };
        } catch {
          p = { text: "bytes:" + bytes.map((b) => "\\x" + b.toString(16).padStart(2, "0")).join(""), bytes };
        }
      }
      this.cache.set(id, p);
    }
    return p;
  }
}
