/**
 * Paged decoder layers: a target whose weights do not fit the GPU memory budget keeps its embeddings,
 * LM head, norms (and as many whole layers as fit) resident, and streams the other decoder layers
 * through a ring of S >= 2 layer slots.
 *
 * Schedule. Streamed layers are used in a fixed cycle (R, R+1, .., L-1, R, ..), forward after forward;
 * use number u runs in slot u % S. Right after the commands of use u are SUBMITTED, the slot is refilled
 * with the layer of use u + S (`queue.writeBuffer` is ordered after every earlier submission and before
 * every later one, so no fence is needed). The refill's disk read runs while the GPU computes the next
 * S - 1 layers, and the last layers of a forward refill the slots with the NEXT forward's first layers.
 *
 * Host side: the bytes come from a host-RAM cache (the first layers that fit `hostBudget`, pinned; with a
 * cyclic access pattern a fixed set beats LRU, which would evict exactly the layer needed next) or from
 * disk with one seek + read per tensor into ONE reused staging set, so peak RSS stays near the host
 * budget plus one layer. Refills run one at a time, in schedule order.
 *
 * A failed read (file truncated or changed on disk) rejects the forward that needs the layer with the
 * checkpoint's error; the ring then forgets what its slots hold and the next forward reloads them.
 *
 * @module
 */

import type { ModelConfig } from "../../model/config.ts";
import type { TypedStore } from "../../model/weight_types.ts";
import type { GpuWeightType } from "../weight_layout.ts";
import { LAYER_MATRIX_ROLES, type LayerMatrixRole, llamaTensorSpec } from "../../model/weights.ts";
import type { PagingPlan, PagingStats } from "../../model/capabilities.ts";
import type { Gpu } from "../device.ts";
import { allocMatrix, destroyMatrix, type GpuMatrix, partUploads, writeParts } from "../tensor.ts";

/** A decoder layer's seven matrices on the GPU, by role (what a ring slot holds). */
export type LayerMatrices = Record<LayerMatrixRole, GpuMatrix>;

/** Build a layer's matrices role by role ({@link LAYER_MATRIX_ROLES} order, one call per role). */
export function layerMatrices(make: (role: LayerMatrixRole) => GpuMatrix): LayerMatrices {
  return Object.fromEntries(LAYER_MATRIX_ROLES.map((r) => [r, make(r)])) as LayerMatrices;
}

/** Free a layer's matrices. */
export function destroyLayer(m: LayerMatrices): void {
  for (const r of LAYER_MATRIX_ROLES) destroyMatrix(m[r]);
}

/** The ring of layer slots and its refill schedule (see the module doc). */
export class LayerPager {
  private readonly slots: LayerMatrices[];
  /** Layer whose bytes a slot holds (after pending writes), or -1 when unknown. */
  private readonly slotLayer: number[];
  /** A slot's refill in flight (resolves once written to the queue; `done` once it has). */
  private readonly pending: ({ promise: Promise<void>; done: boolean } | undefined)[];
  /** Refills run one after another, in schedule order. */
  private chain: Promise<void> = Promise.resolve();
  /** Next use index (see the module doc). */
  private next = 0;
  private disposed = false;
  private readonly staging: Uint8Array[];
  /** Per cached layer, per matrix (LAYER_MATRIX_ROLES order): its parts' device bytes (partUploads). */
  private readonly hostCache = new Map<number, Uint8Array[][]>();
  private readonly hostCacheLimit: number;
  private readonly streamed: number;
  readonly stats: PagingStats;

  /** Allocate the slots and fill them with the first streamed layers (awaits the reads). */
  static async create(
    gpu: Gpu,
    config: ModelConfig,
    st: TypedStore<GpuWeightType>,
    plan: PagingPlan,
    hostBudget: number,
  ): Promise<LayerPager> {
    const p = new LayerPager(gpu, config, st, plan, hostBudget);
    for (let s = 0; s < plan.ringSlots; s++) await p.fill(s, plan.residentLayers + s);
    return p;
  }

  private constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    private readonly st: TypedStore<GpuWeightType>,
    readonly plan: PagingPlan,
    hostBudget: number,
  ) {
    const spec = llamaTensorSpec(config);
    const R = plan.residentLayers;
    this.streamed = config.nLayers - R;
    // Every streamed layer must have layer R's matrix shapes and dtypes (slots are allocated once).
    const first = spec.layers[R];
    for (let l = R + 1; l < config.nLayers; l++) {
      LAYER_MATRIX_ROLES.forEach((r) => {
        const a = st.get(first[r].name), b = st.get(spec.layers[l][r].name);
        if (a.type !== b.type || a.byteLength !== b.byteLength) {
          throw new RangeError(
            `cannot page ${spec.layers[l][r].name}: ${b.type} ${b.byteLength} bytes, but ${
              first[r].name
            } is ${a.type} ${a.byteLength} bytes (streamed layers must share one layout)`,
          );
        }
      });
    }
    this.slots = Array.from(
      { length: plan.ringSlots },
      (_, s) =>
        layerMatrices((r) => {
          const t = first[r];
          return allocMatrix(gpu, `ring slot ${s} ${r}`, [t.shape[0], t.shape[1]], st.get(t.name).type);
        }),
    );
    this.slotLayer = new Array(plan.ringSlots).fill(-1);
    this.pending = new Array(plan.ringSlots).fill(undefined);
    this.staging = LAYER_MATRIX_ROLES.map((r) => new Uint8Array(st.get(first[r].name).byteLength));
    this.hostCacheLimit = Math.min(this.streamed, Math.floor(Math.max(0, hostBudget) / plan.layerBytes));
    this.stats = {
      uploads: 0,
      bytesUploaded: 0,
      hostHits: 0,
      demandLoads: 0,
      readMs: 0,
      writeMs: 0,
      stallMs: 0,
      plan,
      hostCachedLayers: 0,
      hostCachedBytes: 0,
    };
  }

  /** Decoder layer of use `u`. */
  private layerOf(u: number): number {
    return this.plan.residentLayers + (u % this.streamed);
  }

  /** Read layer `l`'s bytes (host cache, or disk into the staging set) and queue them into slot `s`. */
  private async fill(s: number, l: number): Promise<void> {
    if (this.disposed) return;
    this.slotLayer[s] = -1; // unknown until the write is queued
    const spec = llamaTensorSpec(this.config).layers[l];
    const slot = this.slots[s];
    let uploads = this.hostCache.get(l);
    if (uploads) {
      this.stats.hostHits++;
    } else {
      const t0 = performance.now();
      const pin = l - this.plan.residentLayers < this.hostCacheLimit;
      uploads = [];
      // One buffer per matrix, in LAYER_MATRIX_ROLES order (like the staging set), in the device layout
      // of the slot's parts (every slot has the same parts): a cached layer is converted once.
      for (const [j, r] of LAYER_MATRIX_ROLES.entries()) {
        const bytes = await this.st.read(spec[r].name, pin ? undefined : this.staging[j]);
        uploads.push(partUploads(slot[r], bytes));
      }
      this.stats.readMs += performance.now() - t0;
      if (pin) {
        this.hostCache.set(l, uploads);
        this.stats.hostCachedLayers++;
        this.stats.hostCachedBytes += this.plan.layerBytes;
      }
    }
    if (this.disposed) return;
    const t1 = performance.now();
    LAYER_MATRIX_ROLES.forEach((r, j) => writeParts(this.gpu, slot[r], uploads[j]));
    this.stats.writeMs += performance.now() - t1;
    this.stats.uploads++;
    this.stats.bytesUploaded += this.plan.layerBytes;
    this.slotLayer[s] = l;
  }

  /**
   * The slot holding streamed layer `l` (>= residentLayers), waiting for its refill if needed. Uses
   * arrive in cycle order; after an aborted forward the schedule re-aligns and missing layers load now.
   */
  async acquire(l: number): Promise<LayerMatrices> {
    const m = l - this.plan.residentLayers;
    if (m < 0 || m >= this.streamed) throw new RangeError(`layer ${l} is not a streamed layer`);
    const skip = (m - (this.next % this.streamed) + this.streamed) % this.streamed;
    this.next += skip;
    const s = this.next % this.plan.ringSlots;
    const pend = this.pending[s];
    // A stall is time spent waiting for a refill that has not finished. Awaiting a finished one still
    // yields to queued microtasks (often the next slot's refill, copying while the GPU computes): not a stall.
    const stalled = pend !== undefined && !pend.done;
    const t0 = performance.now();
    let demand = false;
    try {
      await pend?.promise;
      this.pending[s] = undefined;
      if (this.slotLayer[s] !== l) {
        demand = true;
        this.stats.demandLoads++;
        // Through the chain: refills share the staging buffers and the files' seek position.
        const p = this.chain.then(() => this.fill(s, l));
        this.chain = p.catch(() => {});
        await p;
      }
    } catch (e) {
      await this.forget();
      throw e;
    } finally {
      if (stalled || demand) this.stats.stallMs += performance.now() - t0;
    }
    return this.slots[s];
  }

  /**
   * Call right after the commands that use layer `l`'s slot were submitted: schedules the slot's refill
   * with the layer it serves S uses later (for the last layers of a forward: the next forward's first).
   */
  release(l: number): void {
    const u = this.next++;
    if (this.layerOf(u) !== l) throw new Error(`pager: released layer ${l} out of order`);
    const s = u % this.plan.ringSlots;
    const nextLayer = this.layerOf(u + this.plan.ringSlots);
    if (nextLayer === l) return; // the slot already holds it (only when the ring covers every streamed layer)
    const p = this.chain.then(() => this.fill(s, nextLayer));
    const pend = { promise: p, done: false };
    p.then(() => pend.done = true, () => pend.done = true);
    this.pending[s] = pend;
    this.chain = p.catch(() => {});
  }

  /** After a failed refill: wait for refills in flight, then treat every slot as unknown. */
  private async forget(): Promise<void> {
    await this.chain;
    this.pending.fill(undefined);
    this.slotLayer.fill(-1);
  }

  /** Wait for refills in flight (e.g. before timing or disposing). */
  async idle(): Promise<void> {
    await this.chain;
  }

  /** Free the slots (after in-flight refills; the caller makes sure no forward is running). */
  dispose(): void {
    this.disposed = true;
    for (const slot of this.slots) destroyLayer(slot);
    this.hostCache.clear();
  }
}
