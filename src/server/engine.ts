/**
 * The seam between the HTTP layer and the models: a {@link DecodeEngine} runs one generation as a
 * stream of engine events. {@link LocalEngine} runs it on models in this thread (tests, `app.request`);
 * the server runs it in a worker (worker_engine.ts), so device polling and CPU kernels never block the
 * event loop that answers /health, /ready, /metrics, 429s and disconnects. Under `--method auto` an
 * engine that owns a runtime also chooses each generation's method ({@link DecodeEngine.choose}).
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { ProcessingSpec } from "../decoding/logits/processor.ts";
import { grammarProcessor, vocabularyOf } from "../decoding/grammar/mod.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { SpeculativeEvent } from "../speculative/engine.ts";
import { decode } from "../speculative/decode.ts";
import type { Method, TreeOptions } from "../speculative/methods.ts";
import type { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
import type { MethodDecision } from "../runtime/runtime.ts";
import type { Exclusion } from "../runtime/method_choice.ts";
import type { StreamPool } from "../batching/stream_pool.ts";

/** One generation's engine options (plain data: they cross a worker boundary). */
export interface EngineDecodeOptions {
  tree: TreeOptions;
  acceptance?: number[];
  /** Sequoia: decode with the engine's shared self-re-planning tree (when it has one). */
  adaptive: boolean;
  /**
   * With `adaptive`: the self-re-planning tree of auto's plan at this request's temperature
   * (MethodDecision.plan) instead of the shared one.
   */
  plan?: string;
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  eosIds: number[];
  /** The request's logit processors (bias, penalties, min_p, grammar); absent: none. */
  processing?: ProcessingSpec;
  /**
   * Log-probabilities on every token event: undefined = none, k >= 0 = the token's own plus the k most
   * likely (k <= 20); see TokenEvent in decoding/stats.ts.
   */
  logprobs?: number;
  /** Also emit the prompt's log-probabilities first (a PromptEvent; needs `logprobs`). */
  promptLogprobs?: boolean;
  /**
   * False when the response is sent whole (no stream): AR on a device then decodes longer batches per
   * readback (GenerateOptions.stream). Absent: streamed.
   */
  stream?: boolean;
}

/** What {@link DecodeEngine.choose} is told about one generation (plain data). */
export interface ChooseRequest {
  sampling: SamplingParams;
  /** The request's own tree fields (predictions are made at them). */
  tree: TreeOptions;
  /** Methods the request rules out, and why. */
  exclude: Exclusion[];
}

/** Runs generations on a loaded target (and draft). */
export interface DecodeEngine {
  /** The target's context length in tokens (prompt + generated). */
  readonly context: number;
  /** True when a draft is loaded, so the speculative methods can run. */
  readonly hasDraft: boolean;
  /**
   * Generations that may decode at once (batched streams, `serve --max-batch`); absent: 1. The caller
   * admits no more than this many at a time.
   */
  readonly maxStreams?: number;
  /** The shared adaptive Sequoia plan's current acceptance vector, when there is one. */
  liveAcceptance(): number[] | undefined;
  /**
   * `--method auto`: the method one generation of `prompt` decodes with, from predicted speeds (see
   * runtime/method_choice.ts), queued behind the generations before it (it may measure on the models).
   * Absent: this engine cannot predict, and auto decodes with ar.
   */
  choose?(prompt: number[], request: ChooseRequest): Promise<MethodDecision>;
  /** One generation of `prompt` (n token ids) with `method`; stops at its next step once `signal` aborts. */
  decode(
    method: Method,
    prompt: number[],
    o: EngineDecodeOptions,
    signal: AbortSignal,
  ): AsyncIterable<SpeculativeEvent>;
  /** Release what the engine holds (idempotent). */
  close(): void | Promise<void>;
}

/** A {@link DecodeEngine} over models in this thread. */
export class LocalEngine implements DecodeEngine {
  readonly context: number;

  constructor(
    readonly model: CausalLM,
    readonly draft?: CausalLM,
    readonly adaptive?: AdaptiveSequoiaPlan,
    private readonly o: {
      log?: (line: string) => void;
      /** The target's tokenizer: grammars (response_format) need every token's bytes; absent: refused. */
      tokenizer?: ModelTokenizer;
      /**
       * Batched streams: each generation decodes on a leased sequence of the pair, its forwards batched
       * with the other running generations' (the caller admits at most `pool.size` at once).
       */
      pool?: StreamPool;
      /**
       * With `pool`: the most tree nodes per stream that pay when `streams` batched streams share each
       * forward (Sequoia's pick for them, 1 when none beats plain decoding; rankTrees' streams), asked
       * before every step of a greedy speculative generation, whose output is the same for any tree. A
       * sampled stream's random draws depend on its tree, so it keeps the one it asked for whatever
       * shares its forwards.
       */
      batchNodes?: (streams: number) => number;
    } = {},
  ) {
    this.context = o.pool?.context ?? model.config.maxPositions;
  }

  /** Generations that may decode at once (1 without a stream pool). */
  get maxStreams(): number {
    return this.o.pool?.size ?? 1;
  }

  get hasDraft(): boolean {
    return this.draft !== undefined;
  }

  liveAcceptance(): number[] | undefined {
    return this.adaptive?.acceptance;
  }

  decode(
    method: Method,
    prompt: number[],
    o: EngineDecodeOptions,
    signal: AbortSignal,
  ): AsyncIterable<SpeculativeEvent> {
    const { adaptive, plan, ...rest } = o;
    // The vocabulary's bytes are read once per tokenizer (vocabularyOf caches them).
    const vocab = o.processing?.grammar && this.o.tokenizer
      ? vocabularyOf(this.o.tokenizer, this.model.config.vocabSize)
      : undefined;
    const opts = {
      ...rest,
      adaptive: adaptive ? this.adaptiveFor(plan) : undefined,
      log: this.o.log ?? ((l: string) => console.error(`[server] ${l}`)),
      signal,
      vocab,
      grammar: grammarProcessor,
    };
    const pool = this.o.pool;
    if (!pool) return decode(method, this.model, this.draft, prompt, opts);
    const batchNodes = method !== "ar" && o.sampling.temperature === 0 ? this.o.batchNodes : undefined;
    return (async function* () {
      const lease = await pool.acquire();
      try {
        // Alone, a stream keeps its tree; sharing forwards with others, it takes its share.
        const nodeLimit = batchNodes && (() => pool.active > 1 ? batchNodes(pool.active) : Infinity);
        yield* decode(method, lease.target, lease.draft, prompt, {
          ...opts,
          ...(nodeLimit ? { nodeLimit } : {}),
        });
      } finally {
        lease.release();
      }
    })();
  }

  /** The self-re-planning tree a Sequoia generation with `adaptive` uses (`plan`: auto's, by key). */
  protected adaptiveFor(_plan: string | undefined): AdaptiveSequoiaPlan | undefined {
    return this.adaptive;
  }

  close(): void {
    // The models belong to whoever loaded them.
  }
}
