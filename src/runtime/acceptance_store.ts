/**
 * Acceptance vectors stored beside the draft model (`<draft>/acceptance.json`), keyed by the target's
 * identity and the sampling settings they were measured at.
 *
 * @module
 */

import { z } from "zod";
import type { SamplingParams } from "../model/sampling.ts";
import type { Checkpoint } from "../model/folder.ts";
import type { AcceptanceVector } from "../speculative/acceptance.ts";

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
 * A content identity of a model: SHA-256 over config.json and every shard's name, size and header
 * (the header lists every tensor's dtype, shape and offsets; changed weights of the same shape
 * are not detected, which is the price of not hashing gigabytes at startup).
 */
export async function modelId(folder: Checkpoint): Promise<string> {
  const parts: string[] = [await Deno.readTextFile(`${folder.dir}/config.json`)];
  for (const f of folder.checkpoint.files) {
    parts.push(
      f.path.split("/").pop()!,
      String(f.size),
      JSON.stringify([...f.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.offset])),
    );
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\n")));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
}

function pathOf(draftDir: string): string {
  return `${draftDir}/acceptance.json`;
}

async function readAll(draftDir: string): Promise<AcceptanceEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(pathOf(draftDir));
  } catch {
    return [];
  }
  const r = fileSchema.safeParse(JSON.parse(text));
  if (!r.success) {
    throw new SyntaxError(`${pathOf(draftDir)}: not a valid acceptance file: ${r.error.issues[0].message}`);
  }
  return r.data.entries;
}

const same = (e: AcceptanceEntry, target: string, draft: string, s: SamplingParams) =>
  e.target === target && e.draft === draft && e.temperature === s.temperature && e.top_k === s.topK &&
  e.top_p === s.topP;

/** The stored vector for (target, draft, sampling), or undefined. */
export async function loadAcceptance(
  draftDir: string,
  targetId: string,
  draftId: string,
  s: SamplingParams,
): Promise<AcceptanceEntry | undefined> {
  return (await readAll(draftDir)).find((e) => same(e, targetId, draftId, s));
}

/** Store (replacing a previous entry with the same key). */
export async function saveAcceptance(
  draftDir: string,
  targetId: string,
  draftId: string,
  s: SamplingParams,
  v: AcceptanceVector,
): Promise<AcceptanceEntry> {
  const entries = (await readAll(draftDir)).filter((e) => !same(e, targetId, draftId, s));
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
  const tmp = `${pathOf(draftDir)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify({ version: 1, entries }, null, 2) + "\n");
  await Deno.rename(tmp, pathOf(draftDir)); // atomic: a crash never leaves half a file
  return entry;
}
