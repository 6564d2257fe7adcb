/**
 * Attached threads that share a queue pair, on the engine's side. An
 * attached thread normally gets a pair of its own; the last QID the
 * controller has free is made a shared pair instead, and a thread that
 * finds no QID free joins the shared pair with the fewest holders, as pool
 * workers share when they outnumber the queues: any holder submits under the
 * pair's locks, whichever thread reaps hands each completion to its
 * submitter through the request table, and whichever thread rings fetches
 * and executes what the SQ holds, other holders' commands included.
 *
 * The pair lives as long as it has a holder: one that detaches or ends
 * leaves it to the others, and the last one out deletes it. A holder leaving
 * takes only what is its own:
 *
 * - Commands it fetched and will never finish (it ended, or its close gave
 *   up on them: `abandonThread` says how many, as soon as its port closes,
 *   so that holders ending together are counted together). They cannot be told apart
 *   from the other threads' by their CIDs, so fetching is held (this thread
 *   takes the SQ's fetch lock; a thread that rings meanwhile leaves a note
 *   and returns) until every command another thread fetched has completed.
 *   What is in flight then is exactly the leaver's, and it completes as
 *   Aborted due to SQ Deletion (`abandonInflight`), another holder's
 *   command among them included. Should the others' commands not complete
 *   within LOST_DRAIN_MS, the engine resets, as it does when a pool worker
 *   dies on a shared pair.
 * - Its request slots, when it ended without picking its completions up:
 *   each slot records the thread that took it, and this thread frees them as
 *   their commands complete.
 * - Its buffer pool, once nothing more can land there.
 *
 * Then this thread rings the SQ doorbell with the newest tail, as a
 * submitter does, so that what was rung while fetching was held, or written
 * by the leaver and never rung, is fetched (and executed here).
 */
import { debuglog } from 'node:util';
import type { EngineDevice } from '../engine/engine-device.js';
import type { NvmeDriver } from '../engine/host/driver.js';
import type { IoQueuePair } from '../engine/host/io-queue-pair.js';
import { H_DB_LOCK, H_DEAD, H_SQ_TAIL, HOST_WORDS } from '../engine/host/host-words.js';
import { Mutex } from '../engine/shared/mutex.js';
import { sqTailDoorbell } from '../engine/spec/registers.js';
import { giveBack, type Grant, type GrantSource } from './grants.js';

const trace = debuglog('nvmq');

/** How long a leaver's lost commands wait for the other threads' fetched commands to complete. */
const LOST_DRAIN_MS = 10_000;
/** How often a dead holder's request slots are looked at while their commands complete. */
const RECLAIM_POLL_MS = 5;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface SharedPair {
  qp: IoQueuePair;
  holders: Set<Grant>;
  /** Commands that holders gone (or going) had fetched and will not finish, not yet completed as aborted. */
  lost: number;
  /** The pair's host words: its doorbell lock, SQ tail and failure word. */
  host: Int32Array;
}

export class SharedPairs {
  private readonly pairs = new Map<IoQueuePair, SharedPair>();

  /** `onStuck`: a leaver's lost commands could not be told from the others' in time; only a reset completes them. */
  constructor(
    private readonly src: GrantSource,
    private readonly onStuck: () => void,
  ) {}

  /** Records `g` as a holder of its pair, a new shared pair or one it joined. */
  add(g: Grant): void {
    let p = this.pairs.get(g.qp);
    if (!p) this.pairs.set(g.qp, (p = { qp: g.qp, holders: new Set(), lost: 0, host: new Int32Array(g.qp.handle().host, 0, HOST_WORDS) }));
    p.holders.add(g);
  }

  /** Whether `g` holds a shared pair. */
  has(g: Grant): boolean {
    return this.pairs.get(g.qp)?.holders.has(g) ?? false;
  }

  /**
   * Holder `g`'s thread has ended (its port closed), before its leave() is
   * handled: what it was executing is counted lost at once, so that a
   * leave() of another holder already waiting for its own lost commands
   * waits for these too, rather than for commands that will never complete.
   */
  died(g: Grant): void {
    const p = this.pairs.get(g.qp);
    if (p?.holders.has(g)) p.lost += this.src.controller.abandonThread(g.threadSlot);
  }

  /** The shared pair still in service with the fewest holders, if any. */
  pick(): IoQueuePair | undefined {
    let best: SharedPair | undefined;
    for (const p of this.pairs.values()) {
      if (this.src.driver.ioQueuePairs.includes(p.qp) && (!best || p.holders.size < best.holders.size)) best = p;
    }
    return best?.qp;
  }

  /**
   * Ends holder `g`'s grant: thread `threadId` detached, or ended without
   * detaching (`dead`). The last holder out deletes the pair, unless it is
   * gone already (a reset) or the engine is closing (`closing`: the shutdown
   * deletes it).
   */
  async leave(g: Grant, threadId: number, how: { dead: boolean; closing: boolean }): Promise<void> {
    const { driver, controller } = this.src;
    const p = this.pairs.get(g.qp)!;
    p.holders.delete(g);
    const last = p.holders.size === 0;
    if (last) this.pairs.delete(g.qp);
    const qid = g.qp.qid;
    // Gone already when a reset failed it (with its commands).
    const live = (): boolean => driver.ioQueuePairs.includes(g.qp);
    // What the thread was executing and will not finish: whatever it had when it ended (counted by died()
    // already); after a detach, what its close gave up on.
    p.lost += controller.abandonThread(g.threadSlot);
    let settled: Promise<void> = Promise.resolve();
    if (p.lost > 0 && live() && !(await abortLost(controller, p))) {
      trace('thread %d left I/O queue %d with commands it will not finish, and the others did not finish theirs within %d s: resetting', threadId, qid, LOST_DRAIN_MS / 1000);
      this.onStuck();
    } else if (live() && !last) {
      kick(driver, p);
      if (how.dead) settled = reclaim(p, threadId);
    } else if (live() && !how.closing) {
      await driver.deleteIoQueuePair(g.qp).catch((e: unknown) => trace('deleting queue %d: %s', qid, e instanceof Error ? e.message : String(e)));
    }
    giveBack(this.src, g, how.dead, settled);
  }
}

/**
 * Completes as aborted the commands holders that left the pair had fetched
 * and will not finish (`p.lost`, which may grow meanwhile): with fetching
 * held, once the SQ's in-flight count is down to them. False when the
 * others' commands did not complete in time; true once done, or when the
 * queue went meanwhile (deleted, or failed by a reset, with its commands).
 */
async function abortLost(controller: EngineDevice, p: SharedPair): Promise<boolean> {
  const sq = controller.executor?.sq(p.qp.qid);
  if (!sq) {
    p.lost = 0;
    return true;
  }
  const generation = sq.generation;
  // Deleted, or failed by a reset, with its commands (or created again since).
  const gone = (): boolean => !sq.valid || sq.generation !== generation;
  const deadline = Date.now() + LOST_DRAIN_MS;
  let held = false;
  try {
    // A thread fetching now holds the lock only for as long as its fetch takes.
    while (!gone() && !(held = sq.lock.tryLock())) {
      if (Date.now() > deadline) return false;
      await sleep(1);
    }
    // Nothing is fetched from here: the count only falls, as the other threads' commands complete.
    while (!gone() && sq.inflight > p.lost) {
      if (Date.now() > deadline) return false;
      await sleep(1);
    }
    if (!gone()) controller.abandonInflight(p.qp.qid);
    p.lost = 0;
    return true;
  } finally {
    // A queue gone meanwhile has its fetch lock cleared, or one of its own: not this thread's to release.
    if (held && !gone()) sq.lock.unlock();
  }
}

/** Rings the pair's SQ tail doorbell with the newest tail, under the pair's doorbell lock as a submitter does. */
function kick(driver: NvmeDriver, p: SharedPair): void {
  if (Atomics.load(p.host, H_DEAD) !== 0) return;
  const lock = new Mutex(p.host, H_DB_LOCK);
  lock.lock();
  try {
    driver.transport.write32(sqTailDoorbell(p.qp.qid, driver.cap.dstrd), Atomics.load(p.host, H_SQ_TAIL));
  } finally {
    lock.unlock();
  }
}

/**
 * Frees the request slots dead thread `threadId` held on the pair as their
 * commands complete (the other holders reap them). Ends when none is left,
 * or once the pair has failed (its commands then count as completed).
 */
async function reclaim(p: SharedPair, threadId: number): Promise<void> {
  while (p.qp.table.releaseCompletedOf(threadId) > 0) {
    if (Atomics.load(p.host, H_DEAD) !== 0) {
      // fail() marks every submitted slot completed before it returns: one more pass frees them all.
      p.qp.table.releaseCompletedOf(threadId);
      return;
    }
    // Unref'd: commands still in flight must not keep the process alive.
    await new Promise((r) => setTimeout(r, RECLAIM_POLL_MS).unref());
  }
}
