/**
 * What a thread that does I/O is given, for the engine's pool workers and
 * for the application's own attached threads alike: an I/O queue pair, a
 * buffer pool carved from the DMA arena (allocated in that thread without
 * locks), and a thread slot (its SMART row and in-flight count in the
 * controller). And how a grant ends: a thread that detaches gives it back;
 * for a thread that died, the controller first forgets what it was executing.
 */
import { debuglog } from 'node:util';
import type { DmaBuffer } from '../engine/dma-arena.js';
import type { EngineDevice } from '../engine/engine-device.js';
import { MAX_THREAD_SLOTS } from '../engine/device/shared-state.js';
import type { NvmeDriver } from '../engine/host/driver.js';
import type { IoQueuePair } from '../engine/host/io-queue-pair.js';
import type { IoMetrics } from '../engine/metrics/io-metrics.js';
import { NvmqError } from '../engine/errors.js';
import type { QueueGrant } from './protocol.js';
import type { WaitMode } from '../engine/host/waiter.js';
import type { ThreadTimeouts } from './deadline-channel.js';

const trace = debuglog('nvmq');

/** How long a dead thread's buffer pool stays reserved: a read it started in libuv may still land there. */
const DEAD_POOL_GRACE_MS = 1000;

/** The thread slots in use (slot 0 is the main thread's). */
export class ThreadSlots {
  private readonly used = new Set<number>();

  take(): number {
    for (let s = 1; s < MAX_THREAD_SLOTS; s++) {
      if (!this.used.has(s)) {
        this.used.add(s);
        return s;
      }
    }
    throw new NvmqError('NVMQ_NO_QUEUE', `no thread slot left: at most ${MAX_THREAD_SLOTS - 1} threads besides the main thread do I/O at once`);
  }

  give(slot: number): void {
    this.used.delete(slot);
  }
}

/** Where grants come from. */
export interface GrantSource {
  driver: NvmeDriver;
  controller: EngineDevice;
  slots: ThreadSlots;
  queueDepth: number;
  /** Bytes of DMA buffer pool per thread. */
  poolSize: number;
  /** Where the pairs count their I/O (undefined: not counted). */
  metrics: IoMetrics | undefined;
  /** How the threads' pairs wait for completions (undefined: adaptive). */
  waitMode?: WaitMode | undefined;
  /** The threads' command timeout and where they report commands past it (undefined: none). */
  timeouts?: ThreadTimeouts | undefined;
}

export interface Grant {
  qp: IoQueuePair;
  pool: DmaBuffer;
  threadSlot: number;
  /** What the thread is sent. */
  message: QueueGrant;
}

/**
 * A grant for thread `threadId`: on `shared`, a pair several threads use,
 * else a new pair (`joinable`: made shared, for other threads to join
 * later). Undone entirely when a step fails.
 */
export async function grantQueue(src: GrantSource, threadId: number, shared?: IoQueuePair, joinable = false): Promise<Grant> {
  const { driver } = src;
  const qp = shared ?? (await driver.createIoQueuePair({ entries: src.queueDepth, shared: joinable, reapHere: false, metrics: src.metrics }));
  let pool: DmaBuffer | undefined;
  try {
    pool = await allocPool(src);
    const threadSlot = src.slots.take();
    const message: QueueGrant = { threadId, threadSlot, queue: qp.handle(), vector: qp.qid, pool: { offset: pool.offset, size: pool.size }, association: src.controller.association?.() };
    return { qp, pool, threadSlot, message };
  } catch (e) {
    if (pool) driver.transport.arena.release(pool);
    if (!shared) await driver.deleteIoQueuePair(qp).catch(() => {});
    throw e;
  }
}

/**
 * Ends a grant. `dead`: the thread is gone without detaching, so the
 * controller forgets the commands it was executing (their callbacks will
 * never run), those it had fetched from its own pair complete as aborted,
 * and its pool stays reserved a moment longer. `deletePair`: the pair is
 * the thread's own and still exists (not after a reset, not a shared one).
 */
export async function endGrant(src: GrantSource, g: Grant, how: { dead: boolean; deletePair: boolean }): Promise<void> {
  // A live thread that detached has its commands counted until they end in its own thread.
  if (how.dead) src.controller.abandonThread(g.threadSlot);
  if (how.dead && how.deletePair) src.controller.abandonInflight(g.qp.qid);
  if (how.deletePair) {
    try {
      await src.driver.deleteIoQueuePair(g.qp);
    } catch (e) {
      trace('deleting queue %d: %s', g.qp.qid, e instanceof Error ? e.message : String(e));
    }
  }
  giveBack(src, g, how.dead);
}

/**
 * Gives a grant's thread slot and buffer pool back. A dead thread's pool
 * stays reserved until `settled` (what may still land in it) and a moment
 * longer.
 */
export function giveBack(src: GrantSource, g: Grant, dead: boolean, settled: Promise<unknown> = Promise.resolve()): void {
  src.slots.give(g.threadSlot);
  const arena = src.driver.transport.arena;
  if (!dead) return arena.release(g.pool);
  let pending = reservedPools.get(arena);
  if (!pending) reservedPools.set(arena, (pending = new Set()));
  const released: Promise<void> = new Promise((resolve) => {
    const later = (): void =>
      void setTimeout(() => {
        arena.release(g.pool);
        pending.delete(released);
        resolve();
      }, DEAD_POOL_GRACE_MS).unref();
    void settled.then(later, later);
  });
  pending.add(released);
}

/** Dead threads' pools still reserved, per arena, each a promise that resolves once it is released. */
const reservedPools = new WeakMap<object, Set<Promise<void>>>();

/**
 * A thread's buffer pool. When the arena has no room but dead threads' pools are waiting out their grace
 * (a reset just retired its workers, or workers died a moment ago), it waits for them rather than fail.
 */
async function allocPool(src: GrantSource): Promise<DmaBuffer> {
  const arena = src.driver.transport.arena;
  for (;;) {
    try {
      return arena.alloc(src.poolSize);
    } catch (e) {
      const pending = reservedPools.get(arena);
      if ((e as { code?: string }).code !== 'NVMQ_ARENA_EXHAUSTED' || !pending?.size) throw e;
      await Promise.race(pending);
    }
  }
}
