/**
 * One clock for every thread of the process.
 *
 * `performance.now()` counts from the start of the thread that calls it, so a
 * time taken by a submitting worker and one taken by another thread that
 * reaps the completion (a shared queue pair) cannot be subtracted. Both are
 * the process's monotonic clock (the one `process.hrtime` reads) minus a
 * per-thread origin: that origin is measured once per thread here, and
 * `sharedNow()` adds it back, at the cost of one addition per reading.
 */
import { performance } from 'node:perf_hooks';

function measureOrigin(): number {
  let best = Infinity;
  let offset = 0;
  // The smallest bracket around the hrtime reading gives the closest offset (well under a microsecond).
  for (let i = 0; i < 16; i++) {
    const before = performance.now();
    const hr = Number(process.hrtime.bigint()) / 1e6;
    const after = performance.now();
    if (after - before < best) {
      best = after - before;
      offset = hr - (before + after) / 2;
    }
  }
  return offset;
}

const ORIGIN = measureOrigin();

/** Milliseconds on the process's monotonic clock: comparable between threads. */
export function sharedNow(): number {
  return performance.now() + ORIGIN;
}
