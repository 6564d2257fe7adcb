/**
 * Where a worker leaves its figures: one slot per worker in a
 * SharedArrayBuffer, written only by that worker, read by the main thread
 * for live progress (a torn read there costs one wrong digit for one second)
 * and, once the worker is done, for the report. No message per I/O.
 *
 * | Float64 | field |
 * | --- | --- |
 * | 0 | read I/Os measured |
 * | 1 | read bytes measured |
 * | 2 | write I/Os measured |
 * | 3 | write bytes measured |
 * | 4 | phase: 0 starting, 1 ramp, 2 measuring, 3 verifying, 4 done |
 * | 5 | milliseconds measured (updated as it runs) |
 * | 6 | blocks verified |
 * | 7 | (reserved) |
 * | 8.. | read latency histogram, then write latency histogram (ns) |
 */
import { Histogram, HISTOGRAM_SLOTS } from './histogram.js';
import type { JobSpec } from '../options.js';

export const Phase = { STARTING: 0, RAMP: 1, MEASURING: 2, VERIFYING: 3, DONE: 4 } as const;

const COUNTERS = 8;
export const SLOT_BYTES = (COUNTERS + 2 * HISTOGRAM_SLOTS) * 8;

export const C_READ_IOS = 0;
export const C_READ_BYTES = 1;
export const C_WRITE_IOS = 2;
export const C_WRITE_BYTES = 3;
export const C_PHASE = 4;
export const C_MEASURED_MS = 5;
export const C_VERIFIED = 6;

export class WorkerStats {
  readonly counters: Float64Array;
  readonly read: Histogram;
  readonly write: Histogram;

  constructor(buffer: SharedArrayBuffer | ArrayBuffer, slot: number) {
    const base = slot * SLOT_BYTES;
    this.counters = new Float64Array(buffer, base, COUNTERS);
    this.read = new Histogram(buffer, base + COUNTERS * 8);
    this.write = new Histogram(buffer, base + (COUNTERS + HISTOGRAM_SLOTS) * 8);
  }

  static allocate(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, slots) * SLOT_BYTES);
  }
}

/** Where one job of a run does its I/O, and which workers (stats slots) run it. */
export interface JobLayout {
  job: JobSpec;
  nsid: number;
  lbaSize: number;
  path?: string;
  regionStart: number;
  perWorker: number;
  /** Global worker indices (stats slots). */
  workers: number[];
}
