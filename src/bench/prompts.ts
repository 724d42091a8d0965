/**
 * The benchmarks' prompts. The side-by-side run takes one or more prompt sets (`--prompt-set
 * FILE[,FILE...]`; default bench/prompts.json), each a JSON file
 *
 *     {"prompts": [string | {"text": string, "chat"?: boolean, "kind"?: string}], "note"?: string}
 *
 * and reports every row per set. A plain prompt is encoded as text (BOS first where the model uses one);
 * a chat prompt is one user message rendered with the TARGET's chat template, generation prompt added
 * (the same {@link ModelTokenizer.encodeChat} the server's chat route uses). `--sweep` and `--ar` take the
 * opening words of held-out chapters instead. The shipped sets are text the tiny models never trained on,
 * so acceptance is not inflated by memorised continuations.
 *
 * @module
 */

import type { ModelTokenizer } from "../model/tokenizer.ts";

/** The default prompt set of the side-by-side run (held-out text the tiny models never trained on). */
export const DEFAULT_PROMPT_SET = "bench/prompts.json";
/** Where the default set is read from (beside the code, so the compiled binary finds its embedded copy). */
const DEFAULT_PROMPT_SET_URL = new URL("../../bench/prompts.json", import.meta.url);

/** One prompt of a set. */
export interface PromptEntry {
  text: string;
  /** Format with the target's chat template (one user message) instead of encoding the text as is. */
  chat: boolean;
  /** A free label, e.g. "edit" or "question" (reported, never interpreted). */
  kind?: string;
}

/** One prompt file: its rows are reported as a table of their own. */
export interface PromptSet {
  /** Short name for tables and plot files: the file's base name without `.json`, e.g. "prompts_edit". */
  name: string;
  /** The file as given. */
  path: string;
  note?: string;
  prompts: PromptEntry[];
}

const SET_KEYS = new Set(["prompts", "note", "source"]);
const ENTRY_KEYS = new Set(["text", "chat", "kind"]);

/** A prompt file that cannot be used; the message names the file (and the prompt's index). */
export class PromptSetError extends SyntaxError {
  constructor(message: string) {
    super(message);
    this.name = "PromptSetError";
  }
}

/** The set name of a prompt file: its base name without `.json`. */
export function promptSetName(path: string): string {
  return path.replace(/\/+$/, "").split("/").pop()!.replace(/\.json$/i, "");
}

/**
 * Validate a parsed prompt file (`source` names it in errors, e.g. `bench/prompts_edit.json:
 * prompts[3].chat: expected a boolean, got "yes"`). Strings are plain prompts.
 */
export function parsePromptSet(json: unknown, source: string): PromptSet {
  const fail = (what: string) => new PromptSetError(`${source}: ${what}`);
  const show = (v: unknown) => JSON.stringify(v)?.slice(0, 40) ?? String(v);
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    throw fail(`expected an object {"prompts": [...], "note"?: string}, got ${show(json)}`);
  }
  const o = json as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !SET_KEYS.has(k));
  if (extra !== undefined) throw fail(`unknown key "${extra}" (expected prompts, note)`);
  if (o.note !== undefined && typeof o.note !== "string") throw fail(`note: expected a string`);
  if (!Array.isArray(o.prompts) || o.prompts.length === 0) {
    throw fail(`prompts: expected a non-empty array of strings or {text, chat?, kind?}`);
  }
  const prompts = o.prompts.map((p: unknown, i): PromptEntry => {
    const at = `prompts[${i}]`;
    if (typeof p === "string") {
      if (!p.trim()) throw fail(`${at}: empty prompt`);
      return { text: p, chat: false };
    }
    if (!p || typeof p !== "object" || Array.isArray(p)) {
      throw fail(`${at}: expected a string or {text, chat?, kind?}, got ${show(p)}`);
    }
    const e = p as Record<string, unknown>;
    const bad = Object.keys(e).find((k) => !ENTRY_KEYS.has(k));
    if (bad !== undefined) throw fail(`${at}: unknown key "${bad}" (expected text, chat, kind)`);
    if (typeof e.text !== "string" || !e.text.trim()) {
      throw fail(`${at}.text: expected a non-empty string, got ${show(e.text)}`);
    }
    if (e.chat !== undefined && typeof e.chat !== "boolean") {
      throw fail(`${at}.chat: expected a boolean, got ${show(e.chat)}`);
    }
    if (e.kind !== undefined && typeof e.kind !== "string") {
      throw fail(`${at}.kind: expected a string, got ${show(e.kind)}`);
    }
    return { text: e.text, chat: e.chat === true, ...(e.kind === undefined ? {} : { kind: e.kind }) };
  });
  return {
    name: promptSetName(source),
    path: source,
    ...(o.note === undefined ? {} : { note: o.note as string }),
    prompts,
  };
}

/** Read and validate one prompt file ({@link DEFAULT_PROMPT_SET}: the shipped one); errors name the file. */
export async function loadPromptSet(path: string): Promise<PromptSet> {
  let text: string;
  try {
    text = await Deno.readTextFile(path === DEFAULT_PROMPT_SET ? DEFAULT_PROMPT_SET_URL : path);
  } catch (e) {
    throw new PromptSetError(`${path}: cannot read the prompt set: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PromptSetError(`${path}: not JSON: ${(e as Error).message}`);
  }
  return parsePromptSet(json, path);
}

/**
 * The token ids of a set's first `count` prompts for `tokenizer` (the target's): chat prompts through its
 * chat template (one user message, generation prompt added), plain ones as text. Throws naming the file and
 * index when a chat prompt meets a model without a chat template.
 */
export function encodePromptSet(set: PromptSet, tokenizer: ModelTokenizer, count = Infinity): number[][] {
  return set.prompts.slice(0, count).map((p, i) => {
    if (!p.chat) return tokenizer.encode(p.text);
    if (!tokenizer.hasChatTemplate) {
      throw new PromptSetError(
        `${set.path}: prompts[${i}] is a chat prompt, but the target has no chat template`,
      );
    }
    return tokenizer.encodeChat([{ role: "user", content: p.text }]);
  });
}

/** The shipped prompt set's texts (bench/prompts.json; `--load` sends them as completions). */
export async function loadPrompts(): Promise<string[]> {
  return (await loadPromptSet(DEFAULT_PROMPT_SET)).prompts.map((p) => p.text);
}

/** `count` prompts for `--sweep` and `--ar`: the first eight words of evenly spaced held-out chapters. */
export async function benchPrompts(count: number): Promise<string[]> {
  const text = await Deno.readTextFile(new URL("../../weights/tiny/heldout.txt", import.meta.url));
  const chapters = text.split("\n\n").filter((c) => c.trim().length > 0);
  const step = Math.max(1, Math.floor(chapters.length / count));
  return chapters.filter((_, i) => i % step === 0).slice(0, count).map((c) =>
    c.split("\n")[0].split(" ").slice(0, 8).join(" ")
  );
}
