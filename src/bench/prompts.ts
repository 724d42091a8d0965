/**
 * The benchmarks' prompts: the shipped set for the side-by-side run (bench/prompts.json) and the
 * opening words of held-out chapters for `--sweep` and `--ar`. Both are text the tiny models never
 * trained on, so acceptance is not inflated by memorised continuations.
 *
 * @module
 */

/** The shipped prompt set (bench/prompts.json): held-out text the tiny models never trained on. */
export async function loadPrompts(): Promise<string[]> {
  const j = JSON.parse(await Deno.readTextFile(new URL("../../bench/prompts.json", import.meta.url)));
  if (!Array.isArray(j.prompts) || !j.prompts.every((p: unknown) => typeof p === "string" && p.length > 0)) {
    throw new Error("bench/prompts.json: expected {prompts: string[]}");
  }
  return j.prompts;
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
