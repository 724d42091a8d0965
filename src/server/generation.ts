/**
 * One generation as every route runs it: checks that need the model (method available, prompt +
 * max_tokens within the context), a place in the FIFO queue, the engine's event stream turned into
 * text (streaming detokenizer, stop sequences), cancellation, and the metrics of the run. Routes only
 * adapt the result to their wire format.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { FinishReason, GenerationStats } from "../decoding/stats.ts";
import type { Method, TreeOptions } from "../speculative/methods.ts";
import type { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
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
  /** Runs the generations (in this thread, or in a worker); without a draft only "ar" is available. */
  engine: DecodeEngine;
  /** Method used when a request names none. */
  defaultMethod?: Method;
  /** Default tree settings (e.g. the hardware-aware pick) and Sequoia's acceptance vector. */
  tree?: TreeOptions;
  acceptance?: number[];
  /** What GET /v1/status reports about the startup profile. */
  status?: Record<string, unknown>;
}

/** A {@link ModelService} whose engine runs `model` (and `draft`) in this thread ({@link LocalEngine}). */
export function localService(
  o: Omit<ModelService, "engine"> & {
    model: CausalLM;
    draft?: CausalLM;
    /** Sequoia's self-re-planning tree, shared by all requests that keep the server's tree. */
    adaptive?: AdaptiveSequoiaPlan;
  },
): ModelService {
  const { model, draft, adaptive, ...rest } = o;
  return { ...rest, engine: new LocalEngine(model, draft, adaptive) };
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
  stats: GenerationStats;
  promptTokens: number;
}

/** Called for each generated token with the text it releases (possibly ""), in order. */
export type OnToken = (id: number, text: string) => Promise<void> | void;

/** A generation that holds a place in the queue; `run` it at once. */
export interface PendingGeneration {
  readonly method: Method;
  readonly promptTokens: number;
  /** Wait for the turn, generate, free the place. */
  run(onToken?: OnToken): Promise<GenerationResult>;
}

/** The error a generation cancelled by shutdown answers with (503; an error event when streaming). */
export function shutdownError(): ApiError {
  return new ApiError(503, "generation cancelled: the server is shutting down", { code: "shutting_down" });
}

/** Runs generations for the routes of one app. */
export class Generations {
  /** The model's context length (tokens). */
  readonly context: number;

  constructor(
    readonly svc: ModelService,
    readonly scheduler: Scheduler,
    readonly metrics: ServerMetrics,
  ) {
    this.context = svc.engine.context;
  }

  /** The method a request runs with; 400 when this server cannot run it. */
  resolveMethod(requested: Method | undefined): Method {
    const method = requested ?? this.svc.defaultMethod ?? "ar";
    if (method !== "ar" && !this.svc.engine.hasDraft) {
      throw new ApiError(400, `method: "${method}" needs a draft model; this server has none`, {
        param: "method",
      });
    }
    if (method === "sequoia" && !this.svc.acceptance) {
      throw new ApiError(400, `method: "sequoia" needs an acceptance vector; start the server with a draft`, {
        param: "method",
      });
    }
    return method;
  }

  /** 400 when the prompt plus `maxTokens` do not fit the context; names both numbers and the limit. */
  checkContext(promptTokens: number, maxTokens: number, param = "max_tokens"): void {
    if (promptTokens === 0) {
      throw new ApiError(400, "prompt: must contain at least one token", { param: "prompt" });
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
   * Validate `req` against the model and take a place in the queue. Throws {@link ApiError}: 400
   * (method, context), 429 (queue full), 503 (shutting down). `client` aborts when the client leaves.
   */
  prepare(req: GenerationRequest, client?: AbortSignal, maxTokensParam = "max_tokens"): PendingGeneration {
    const method = this.resolveMethod(req.method);
    this.checkContext(req.prompt.length, req.maxTokens, maxTokensParam);
    const slot = this.scheduler.admit(client);
    const queuedAt = performance.now();
    return {
      method,
      promptTokens: req.prompt.length,
      run: (onToken) =>
        slot.run((signal) => {
          this.metrics.queueSeconds.observe((performance.now() - queuedAt) / 1000);
          return this.generate(method, req, slot, signal, onToken);
        }).catch((e) => {
          // Cancelled by shutdown before its turn: the client hears why.
          if (slot.cause === "shutdown") throw shutdownError();
          throw e;
        }),
    };
  }

  private async generate(
    method: Method,
    req: GenerationRequest,
    slot: Slot,
    signal: AbortSignal,
    onToken?: OnToken,
  ): Promise<GenerationResult> {
    const { svc, metrics } = this;
    // A stop sequence ends generation through the engine's own cancellation, so it stops at the very
    // token that completed the sequence and still reports its stats.
    const stopped = new AbortController();
    const dec = svc.tokenizer.streamDecoder();
    const stop = new StopFilter(req.stop ?? []);
    const ids: number[] = [];
    let text = "";
    let finish: FinishReason = "length";
    let stats: GenerationStats | undefined;
    const tree: TreeOptions = {
      ...svc.tree,
      treeSize: req.treeSize ?? svc.tree?.treeSize,
      depth: req.depth ?? svc.tree?.depth,
      budget: req.budget ?? svc.tree?.budget,
    };
    // The shared adaptive plan only serves requests that keep the server's tree.
    const adaptive = req.treeSize === undefined && req.depth === undefined;
    const events = svc.engine.decode(method, req.prompt, {
      tree,
      acceptance: svc.acceptance,
      adaptive,
      maxTokens: req.maxTokens,
      sampling: req.sampling,
      seed: req.seed ?? crypto.getRandomValues(new Uint32Array(1))[0],
      eosIds: svc.tokenizer.eosIds,
    }, AbortSignal.any([signal, stopped.signal]));
    let lastYield = performance.now();
    for await (const ev of events) {
      if (ev.type === "step") {
        metrics.tokensPerStep.observe(ev.stats.accepted + 1);
        metrics.stepSeconds.observe((ev.stats.draftMs + ev.stats.verifyMs) / 1000);
      } else if (ev.type === "token") {
        if (performance.now() - lastYield > YIELD_EVERY_MS) {
          await macrotask();
          lastYield = performance.now();
        }
        ids.push(ev.id);
        const out = stop.push(dec.push(ev.id));
        text += out.text;
        if (out.stopped) stopped.abort();
        await onToken?.(ev.id, out.text);
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
      stats: stats!,
      promptTokens: req.prompt.length,
    };
  }
}
