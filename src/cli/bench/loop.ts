/**
 * The closed loop one worker runs: `iodepth` slots, each resubmitted as soon
 * as its I/O completes, over the worker's own region of the namespace. The
 * same loop drives nvmq's queue pair (job-task.ts) and node:fs (fs-task.ts),
 * so a comparison differs only in the I/O calls.
 *
 * Costs per I/O are kept flat: buffers and per-slot closures are made once;
 * completions of one burst share one clock reading and resubmit together in
 * one plugged batch (one doorbell write); figures go to the worker's slot of
 * a SharedArrayBuffer, never through a message.
 */
import { performance } from 'node:perf_hooks';
import { WorkerStats, Phase, C_READ_IOS, C_READ_BYTES, C_WRITE_IOS, C_WRITE_BYTES, C_PHASE, C_MEASURED_MS, C_VERIFIED } from './stats.js';
import { stampBlock, checkBlock, isStamped } from './block.js';
import type { RwMode } from '../options.js';
import { microtask } from '../../engine/shared/microtask.js';

/** The I/O calls the loop needs, at byte positions. */
export interface IoTarget {
  read(pos: number, buf: Uint8Array): Promise<unknown>;
  write(pos: number, buf: Uint8Array): Promise<unknown>;
  /** Batch the submissions that follow behind one doorbell write (no-op where there is none). */
  plug(): void;
  unplug(): void;
  alloc(bytes: number): Uint8Array;
  release(buf: Uint8Array): void;
}

export interface LoopArgs {
  rw: RwMode;
  rwmixread: number;
  bs: number;
  iodepth: number;
  /** Milliseconds, 0 = until the region is done. */
  runtime: number;
  timeBased: boolean;
  rampTime: number;
  verify: 'none' | 'crc32c';
  /** The worker's region, in bytes. */
  regionStart: number;
  regionBytes: number;
  /** Logical block size: verify stamps and error messages speak in LBAs of this size. */
  lbaSize: number;
  /** Index of this worker among all workers of the run (its stats slot; the verify writer id). */
  worker: number;
  stats: SharedArrayBuffer;
  seed: number;
}

export interface VerifyFailure {
  lba: number;
  reason: string;
}

export interface LoopResult {
  worker: number;
  ios: number;
  /** Blocks checked, during the run and in the verify phase. */
  verified: number;
  /** Of those, blocks read back in the verify phase: every block the run wrote. */
  readBack: number;
  failure?: VerifyFailure;
}

/** Past this many blocks per worker, verify's per-block state (5 bytes a block) is refused. */
export const MAX_VERIFY_BLOCKS = 1 << 26;

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 0x2545f491;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/**
 * Visits every block of [0, n) once per pass in a scattered order, with no
 * memory: a full-period LCG modulo the next power of two (Hull–Dobell:
 * a ≡ 1 mod 4, c odd), outputs scrambled by a bijective xorshift and odd
 * multiply, values past n skipped.
 */
export function scatter(n: number, seed: number): () => number {
  let bits = 1;
  while (2 ** bits < n) bits++;
  const m = 2 ** bits;
  const mask = m === 0x1_0000_0000 ? 0xffffffff : m - 1;
  // An odd increment in [1, m): the LCG then has full period m. (`seed | 1` would turn a seed with the top
  // bit set negative, and a negative x breaks the permutation: blocks repeat within a pass, others are skipped.)
  let c = (seed >>> 0) % m;
  if (c % 2 === 0) c = c + 1 < m ? c + 1 : c - 1;
  let x = (seed >>> 3) % m;
  const half = Math.max(1, bits >>> 1);
  return () => {
    for (;;) {
      x = (1664525 * x + c) % m;
      let y = (x ^ (x >>> half)) >>> 0;
      y = (Math.imul(y, 0x2c1b3c6d) >>> 0) & mask;
      y = (y ^ (y >>> half)) >>> 0;
      if (y < n) return y;
    }
  };
}

export async function runLoop(io: IoTarget, a: LoopArgs): Promise<LoopResult> {
  const stats = new WorkerStats(a.stats, a.worker);
  const c = stats.counters;
  const blocks = Math.floor(a.regionBytes / a.bs);
  const depth = Math.min(a.iodepth, blocks);
  const verify = a.verify === 'crc32c';
  if (verify && blocks > MAX_VERIFY_BLOCKS) throw new RangeError(`verify keeps state for at most ${MAX_VERIFY_BLOCKS} blocks per worker; this worker has ${blocks}`);
  const random = a.rw === 'randread' || a.rw === 'randwrite' || a.rw === 'randrw';
  const mixed = a.rw === 'rw' || a.rw === 'randrw';
  const readOnly = a.rw === 'read' || a.rw === 'randread';
  const writeOnly = a.rw === 'write' || a.rw === 'randwrite';
  const rng = xorshift(a.seed);
  const nextRandom = scatter(blocks, rng());
  let cursor = 0;
  const nextSequential = (): number => {
    if (cursor === blocks) cursor = 0;
    return cursor++;
  };
  const nextBlock = random ? nextRandom : nextSequential;
  const readThreshold = Math.round((a.rwmixread / 100) * 0x1_0000_0000);

  // Verify state: the sequence of the last write to each block, and which blocks have an I/O in flight
  // (two I/Os on one block at once would race; the loop picks another block instead).
  const expected = verify ? new Uint32Array(blocks) : undefined;
  const busy = verify ? new Uint8Array(blocks) : undefined;
  let seq = 0;
  let failure: VerifyFailure | undefined;
  let verified = 0;

  const bufs = Array.from({ length: depth }, () => io.alloc(a.bs));
  if (!verify) for (const b of bufs) fillRandom(b, rng);
  const slotBlock = new Float64Array(depth);
  const slotStart = new Float64Array(depth);
  const slotWrite = new Uint8Array(depth);
  const ready = new Int32Array(depth);
  let readyCount = 0;
  let inflight = 0;

  const t0 = performance.now();
  const rampEnd = t0 + a.rampTime;
  const end = a.runtime > 0 ? rampEnd + a.runtime : Infinity;
  /** Measured I/Os issued: a run that is not time based stops after one pass over the region. */
  let issued = 0;
  let measuring = a.rampTime === 0;
  c[C_PHASE] = measuring ? Phase.MEASURING : Phase.RAMP;
  let stopping = false;
  let burstClock = 0;
  let lastYield = t0;
  let flushQueued = false;
  let error: unknown;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const resetClock = (): void => {
    burstClock = 0;
  };

  const lbaOf = (block: number): number => (a.regionStart + block * a.bs) / a.lbaSize;
  const posOf = (block: number): number => a.regionStart + block * a.bs;

  const complete = (slot: number): void => {
    inflight--;
    if (burstClock === 0) {
      burstClock = performance.now();
      microtask(resetClock);
    }
    const block = slotBlock[slot]!;
    const write = slotWrite[slot] === 1;
    if (verify) {
      busy![block] = 0;
      if (!write && failure === undefined) {
        const buf = bufs[slot]!;
        const want = expected![block]!;
        // Blocks this run has not written: a read-only job checks every one; a mixed job skips unwritten ones.
        if (want !== 0 || readOnly || isStamped(buf)) {
          const reason = checkBlock(buf, lbaOf(block), want);
          if (reason !== undefined) {
            failure = { lba: lbaOf(block), reason };
            stopping = true;
          } else {
            c[C_VERIFIED] = ++verified;
          }
        }
      }
    }
    if (slotStart[slot]! >= rampEnd) {
      const ns = (burstClock - slotStart[slot]!) * 1e6;
      if (write) {
        stats.write.record(ns);
        c[C_WRITE_IOS]!++;
        c[C_WRITE_BYTES]! += a.bs;
      } else {
        stats.read.record(ns);
        c[C_READ_IOS]!++;
        c[C_READ_BYTES]! += a.bs;
      }
    }
    ready[readyCount++] = slot;
    if (!flushQueued) {
      flushQueued = true;
      microtask(flush);
    }
  };
  const fail = (e: unknown): void => {
    inflight--;
    error ??= e;
    stopping = true;
    if (inflight === 0) finish();
  };
  const done = Array.from({ length: depth }, (_, slot) => () => complete(slot));

  const submit = (slot: number, now: number): void => {
    let block = nextBlock();
    if (verify) {
      // At most depth - 1 other blocks are busy, so this ends.
      while (busy![block] === 1) block = nextBlock();
      busy![block] = 1;
    }
    const write = writeOnly || (mixed && rng() >= readThreshold);
    slotBlock[slot] = block;
    slotStart[slot] = now;
    slotWrite[slot] = write ? 1 : 0;
    const buf = bufs[slot]!;
    inflight++;
    if (write) {
      if (verify) {
        stampBlock(buf, lbaOf(block), ++seq, a.worker);
        expected![block] = seq;
      }
      io.write(posOf(block), buf).then(done[slot], fail);
    } else {
      io.read(posOf(block), buf).then(done[slot], fail);
    }
  };

  const flush = (): void => {
    flushQueued = false;
    const now = performance.now();
    if (!measuring && now >= rampEnd) {
      measuring = true;
      c[C_PHASE] = Phase.MEASURING;
    }
    if (measuring) c[C_MEASURED_MS] = now - rampEnd;
    if (now >= end || (!a.timeBased && issued >= blocks)) stopping = true;
    if (stopping) {
      readyCount = 0;
      if (inflight === 0) finish();
      return;
    }
    // A memory namespace completes inside the doorbell write, so this loop could run on microtasks
    // alone; let the worker's event loop turn now and then.
    if (now - lastYield > 20) {
      lastYield = now;
      flushQueued = true;
      setImmediate(flush);
      return;
    }
    io.plug();
    try {
      while (readyCount > 0) {
        if (!a.timeBased && measuring && issued >= blocks) break;
        submit(ready[--readyCount]!, now);
        if (measuring) issued++;
      }
    } finally {
      io.unplug();
    }
    if (inflight === 0) finish();
  };

  for (let s = depth - 1; s >= 0; s--) ready[readyCount++] = s;
  flush();
  await finished;
  if (error !== undefined) throw error;
  c[C_MEASURED_MS] = performance.now() - rampEnd;

  // Every block a write or mixed job wrote is read back and checked before the job ends, as fio's verify
  // phase does: a mixed job's own reads rarely find a block it wrote (a pass visits each block once) and
  // never its last writes. The phase comes after the measured window; a backlog (fio's verify_backlog)
  // would put reads the job did not ask for among its measured I/Os, changing its mix and latencies.
  let readBack = 0;
  if (verify && !readOnly && failure === undefined) {
    c[C_PHASE] = Phase.VERIFYING;
    failure = await verifyWritten(io, bufs, blocks, expected!, lbaOf, posOf, () => {
      readBack++;
      c[C_VERIFIED] = ++verified;
    });
  }
  c[C_PHASE] = Phase.DONE;
  for (const b of bufs) io.release(b);
  const ios = c[C_READ_IOS]! + c[C_WRITE_IOS]!;
  return failure ? { worker: a.worker, ios, verified, readBack, failure } : { worker: a.worker, ios, verified, readBack };
}

/** Reads back every block with a recorded write, `bufs.length` at a time. */
async function verifyWritten(
  io: IoTarget,
  bufs: Uint8Array[],
  blocks: number,
  expected: Uint32Array,
  lbaOf: (b: number) => number,
  posOf: (b: number) => number,
  onVerified: () => void,
): Promise<VerifyFailure | undefined> {
  let next = 0;
  let failure: VerifyFailure | undefined;
  await Promise.all(
    bufs.map(async (buf) => {
      while (failure === undefined) {
        while (next < blocks && expected[next] === 0) next++;
        if (next >= blocks) return;
        const block = next++;
        await io.read(posOf(block), buf);
        const reason = checkBlock(buf, lbaOf(block), expected[block]!);
        if (reason !== undefined) failure ??= { lba: lbaOf(block), reason };
        else onVerified();
      }
    }),
  );
  return failure;
}

function fillRandom(buf: Uint8Array, rng: () => number): void {
  const w = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  for (let i = 0; i < w.length; i++) w[i] = rng();
}
