/**
 * What a paged run did between two counter snapshots, as the CLI and the bench report it.
 *
 * @module
 */

import type { PagingStats } from "../../model/capabilities.ts";

/** What a paged run did between two {@link PagingStats} snapshots, for reports (JSON-friendly). */
export interface PagingReport {
  resident_layers: number;
  ring_slots: number;
  layer_bytes: number;
  gpu_weight_bytes: number;
  host_cached_layers: number;
  uploads: number;
  bytes_uploaded: number;
  host_hits: number;
  /** Reading (disk or host cache) + writing layer bytes into the queue. */
  upload_ms: number;
  /** Time forwards waited for a refill. */
  stall_ms: number;
  /** Wall time not spent waiting for weights: the GPU's compute, readbacks, host work. */
  compute_ms: number;
  /**
   * Share of the upload time hidden behind compute: 1 - stall / upload (a refill that finished before
   * its layer was needed ran while the GPU worked on the layers already submitted).
   */
  overlap: number;
  /** Upload bandwidth of the refills: bytes / upload time. */
  upload_gb_per_s: number;
}

/** Summarise the paging work between `before` and `after` over `wallMs` of wall time. */
export function pagingReport(before: PagingStats, after: PagingStats, wallMs: number): PagingReport {
  const read = after.readMs - before.readMs, write = after.writeMs - before.writeMs;
  const stall = after.stallMs - before.stallMs;
  const upload = read + write, bytes = after.bytesUploaded - before.bytesUploaded;
  const r = (x: number) => Math.round(x * 100) / 100;
  return {
    resident_layers: after.plan.residentLayers,
    ring_slots: after.plan.ringSlots,
    layer_bytes: after.plan.layerBytes,
    gpu_weight_bytes: after.plan.gpuWeightBytes,
    host_cached_layers: after.hostCachedLayers,
    uploads: after.uploads - before.uploads,
    bytes_uploaded: bytes,
    host_hits: after.hostHits - before.hostHits,
    upload_ms: r(upload),
    stall_ms: r(stall),
    compute_ms: r(Math.max(0, wallMs - stall)),
    overlap: upload > 0 ? r(Math.min(1, Math.max(0, 1 - stall / upload))) : 1,
    upload_gb_per_s: upload > 0 ? r(bytes / upload / 1e6) : 0,
  };
}
