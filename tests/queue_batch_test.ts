/** The scheduler with batched streams (`serve --max-batch N`): up to maxRunning generations at once, FIFO beyond. */
import assert from "node:assert/strict";
import { ApiError } from "../src/server/errors.ts";
import { Scheduler } from "../src/server/queue.ts";

Deno.test("scheduler: maxRunning generations run at once, the next in arrival order as each ends, 429 beyond the queue", async () => {
  let t = 0;
  const s = new Scheduler({ maxQueue: 1, maxRunning: 2, now: () => t });
  const order: string[] = [];
  const ends = new Map<string, () => void>();
  const job = (name: string) => {
    const slot = s.admit(undefined, { maxTokens: 10 });
    return slot.run(() => {
      order.push(name);
      return new Promise<void>((res) => ends.set(name, res));
    });
  };
  const a = job("a"), b = job("b"), c = job("c");
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(order, ["a", "b"], "two run at once");
  assert.equal(s.running, 2);
  assert.equal(s.waiting, 1);
  assert.throws(() => s.admit(), (e: unknown) => e instanceof ApiError && e.status === 429);
  t = 1000;
  ends.get("b")!();
  await b;
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(order, ["a", "b", "c"], "c starts when b ends");
  assert.equal(s.running, 2);
  ends.get("a")!();
  ends.get("c")!();
  await Promise.all([a, c]);
  assert.equal(s.running, 0);
  await s.idle();
});

Deno.test("scheduler: no wait is told while a running place is free; the work ahead is shared by the places", () => {
  let t = 0;
  const s = new Scheduler({ maxQueue: 4, maxRunning: 2, now: () => t });
  s.admit(undefined, { maxTokens: 10 }).run(() => new Promise(() => {}));
  assert.equal(s.expectedWaitMs(), 0, "one place is free");
  s.admit(undefined, { maxTokens: 10 }).run(() => new Promise(() => {}));
  s.admit(undefined, { maxTokens: 10 });
  t = 0;
  // Nothing measured yet: each job counts DEFAULT_JOB_MS (1000): (1000 + 1000 + 1000) / 2.
  assert.equal(s.expectedWaitMs(), 1500);
  assert.throws(() => new Scheduler({ maxQueue: 1, maxRunning: 0 }), /maxRunning/);
});
