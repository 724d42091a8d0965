/**
 * Acceptance vectors stored beside the draft model (`<draft>/acceptance.json`) or in the cache directory
 * (`$SPECDEC_CACHE_DIR/acceptance.json`, see cache_dir.ts), keyed by both models' identities and the
 * sampling settings they were measured at.
 *
 * @module
 */

import { z } from "zod";
import type { SamplingParams } from "../model/sampling.ts";
import type { Checkpoint } from "../model/folder.ts";
import type { AcceptanceVector } from "../speculative/acceptance.ts";
import { cacheFiles, InvalidCacheFile, readCacheJson, writeAtomic } from "./cache_dir.ts";

const entrySchema = z.object({
  target: z.string(),
  draft: z.string(),
  temperature: z.number(),
  top_k: z.number(),
  top_p: z.number(),
  acceptance: z.array(z.number().min(0).max(1)),
  reject: z.number(),
  trials: z.number(),
  measured_at: z.string(),
});
const fileSchema = z.object({ version: z.literal(1), entries: z.array(entrySchema) });

/** One stored measurement. */
export type AcceptanceEntry = z.infer<typeof entrySchema>;

/**
 * A content identity of a model: SHA-256 over its config and its tensor store's identity. An HF folder:
 * config.json and every shard's name, size and header (every tensor's dtype, shape and offsets); a GGUF
 * file: its name, size, metadata table (config and tokenizer) and tensor infos. Changed weights of the
 * same layout are not detected, which is the price of not hashing gigabytes at startup.
 */
export async function modelId(folder: Checkpoint): Promise<string> {
  const st = folder.checkpoint;
  // A GGUF file's config is in its metadata, which its identity already covers.
  const parts = st.format === "gguf" ? [] : [await Deno.readTextFile(`${folder.dir}/config.json`)];
  parts.push(...st.identity());
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\n")));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
}

/** Where the acceptance store of a draft is read from and written to (see cache_dir.ts). */
export function acceptanceFiles(draftDir: string, cacheDir?: string | null) {
  return cacheFiles(draftDir, "acceptance.json", cacheDir);
}

/** One file's entries ([] when it does not exist); throws {@link InvalidCacheFile} naming it. */
async function readFile(path: string): Promise<AcceptanceEntry[]> {
  const json = await readCacheJson(path);
  if (json === undefined) return [];
  const r = fileSchema.safeParse(json);
  if (!r.success) {
    throw new InvalidCacheFile(path, `not a valid acceptance file: ${r.error.issues[0].message}`);
  }
  return r.data.entries;
}

/** Options of the store: where it lives, and what to do with an unusable file. */
export interface AcceptanceStoreOptions {
  /** Cache directory (default `$SPECDEC_CACHE_DIR`; null: beside the draft). */
  cacheDir?: string | null;
  /**
   * Called for an unusable file, which is then skipped; without it, the error is thrown
   * ({@link InvalidCacheFile}, naming the file).
   */
  onInvalid?: (e: InvalidCacheFile) => void;
}

const same = (e: AcceptanceEntry, target: string, draft: string, s: SamplingParams) =>
  e.target === target && e.draft === draft && e.temperature === s.temperature && e.top_k === s.topK &&
  e.top_p === s.topP;

/**
 * The stored vector for (target, draft, sampling) from the first file that has it (with that file's
 * path), or undefined.
 */
export async function loadAcceptance(
  draftDir: string,
  targetId: string,
  draftId: string,
  s: SamplingParams,
  opts: AcceptanceStoreOptions = {},
): Promise<(AcceptanceEntry & { path: string }) | undefined> {
  for (const path of acceptanceFiles(draftDir, opts.cacheDir).read) {
    let entries: AcceptanceEntry[];
    try {
      entries = await readFile(path);
    } catch (e) {
      if (!(e instanceof InvalidCacheFile) || !opts.onInvalid) throw e;
      opts.onInvalid(e);
      continue;
    }
    const hit = entries.find((e) => same(e, targetId, draftId, s));
    if (hit) return { ...hit, path };
  }
  return undefined;
}

/**
 * Store (replacing a previous entry with the same key) in the write file: the cache directory's when one
 * is in force, else the draft's. An unusable write file is replaced by a valid one holding this entry
 * (what it held cannot be read anyway).
 */
export async function saveAcceptance(
  draftDir: string,
  targetId: string,
  draftId: string,
  s: SamplingParams,
  v: AcceptanceVector,
  opts: { cacheDir?: string | null } = {},
): Promise<AcceptanceEntry & { path: string }> {
  const path = acceptanceFiles(draftDir, opts.cacheDir).write;
  const kept = await readFile(path).catch((e) => {
    if (e instanceof InvalidCacheFile) return [];
    throw e;
  });
  const entries = kept.filter((e) => !same(e, targetId, draftId, s));
  const entry: AcceptanceEntry = {
    target: targetId,
    draft: draftId,
    temperature: s.temperature,
    top_k: s.topK,
    top_p: s.topP,
    acceptance: v.acceptance.map((x) => Number(x.toFixed(6))),
    reject: Number(v.reject.toFixed(6)),
    trials: v.trials,
    measured_at: new Date().toISOString(),
  };
  entries.push(entry);
  await writeAtomic(path, JSON.stringify({ version: 1, entries }, null, 2) + "\n");
  return { ...entry, path };
}
