/**
 * Byte sizes on the command line: "268435456", "256MB", "256MiB", "1.5GB", "2g" (k/m/g/t: powers of 1000;
 * Ki/Mi/Gi/Ti: powers of 1024).
 *
 * @module
 */

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Parse a byte size for `flag`; throws a RangeError naming the flag. */
export function parseBytes(flag: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new RangeError(
      `${flag}: expected a byte size such as 268435456, 256MB or 1.5GiB, got ${JSON.stringify(text)}`,
    );
  }
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`${flag}: ${text} is too large`);
  return bytes;
}

/** "12.3 MB" style formatting (powers of 1000, like the flags' k/m/g). */
export function formatBytes(n: number): string {
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${u[i]}`;
}
