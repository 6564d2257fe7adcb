/**
 * How a queue pair learns of completions once its thread has submitted and
 * would otherwise go back to its event loop to wait for the ring's eventfd.
 *
 * - 'event-loop': always through the event loop (the eventfd, the interrupt
 *   word). The main thread always waits so: nothing may block it.
 * - 'ring': block inside io_uring_enter until a completion (bounded), as fio
 *   does: no epoll wake-up, no eventfd read, no libuv callback per batch.
 * - 'poll': the same, polling the ring from user space first (hybrid
 *   polling), at the price of a core while it spins.
 * - 'adaptive' (the default in worker threads): after each event-loop turn
 *   that left commands in flight, wait in the ring for a bounded time: about
 *   twice the recent completion time, never more than MAX_WAIT_MS, so timers
 *   and messages of the thread wait at most that long. It polls first when
 *   completions come faster than SPIN_BELOW_US. Where nothing can be waited
 *   for in the ring (the portable path, a memory namespace, a controller in
 *   another thread) the wait returns at once and the queue leaves the rest
 *   to the event loop until its next submission. When the thread does other
 *   work between turns (more than the wait's own length), the waits shrink
 *   to a non-blocking look, so a busy event loop is not slowed.
 *
 * The check runs from setImmediate: after the loop's poll phase, once the
 * microtasks of this turn (the resubmissions of a closed loop) have run.
 */
import { performance } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

export const WAIT_MODES = ['adaptive', 'event-loop', 'ring', 'poll'] as const;
export type WaitMode = (typeof WAIT_MODES)[number];

/** The longest a single adaptive or ring wait blocks the thread. */
const MAX_WAIT_MS = 1;
/** The shortest adaptive wait worth blocking for. */
const MIN_WAIT_MS = 0.05;
/** Completions faster than this are polled for before sleeping (adaptive). */
const SPIN_BELOW_US = 60;
/** The spin of 'poll' mode. */
const POLL_SPIN_US = 200;

/** What the waiter needs of its queue pair. */
export interface Waitable {
  readonly outstanding: number;
  /** Operations this thread's wait() can wait for (0: it would return at once). */
  waitable(): number;
  /** Blocks in this thread's ring for up to `timeoutMs` (polling `spinUs` first); reaps; returns how many. */
  wait(timeoutMs: number, spinUs: number): number;
}

export class Waiter {
  readonly mode: WaitMode;
  /** Waits done in the ring, and the completions they brought. */
  ringWaits = 0;
  ringCompletions = 0;
  private armed = false;
  /** Recent completion time seen by waits that found something, in ms (moving average). */
  private meanMs = MIN_WAIT_MS;
  /** When the last wait ended (to see how long the thread spends on other work between turns). */
  private lastEnd = 0;
  private readonly run = (): void => this.check();

  constructor(
    private readonly q: Waitable,
    mode: WaitMode = 'adaptive',
  ) {
    this.mode = isMainThread ? 'event-loop' : mode;
  }

  /** A doorbell was written: look again once this event-loop turn is over. */
  afterSubmit(): void {
    if (this.mode === 'event-loop' || this.armed) return;
    this.armed = true;
    setImmediate(this.run);
  }

  private check(): void {
    this.armed = false;
    // Nothing in this thread's ring (portable path, memory namespace, a controller in another thread): the event loop takes over.
    if (this.q.outstanding === 0 || this.q.waitable() === 0) return;
    const start = performance.now();
    let timeoutMs: number;
    let spinUs = 0;
    if (this.mode === 'ring') timeoutMs = MAX_WAIT_MS;
    else if (this.mode === 'poll') {
      timeoutMs = MAX_WAIT_MS;
      spinUs = POLL_SPIN_US;
    } else {
      // Other work ran between the last wait and this one: do not hold the loop, just look.
      const busy = this.lastEnd > 0 && start - this.lastEnd > Math.max(MAX_WAIT_MS, 4 * this.meanMs);
      timeoutMs = busy ? 0 : Math.min(MAX_WAIT_MS, Math.max(MIN_WAIT_MS, 2 * this.meanMs));
      if (!busy && this.meanMs * 1000 < SPIN_BELOW_US) spinUs = Math.ceil(this.meanMs * 1500);
    }
    const n = this.q.wait(timeoutMs, spinUs);
    const end = performance.now();
    this.lastEnd = end;
    // A busy thread only looked: the event loop takes over.
    if (timeoutMs === 0) return;
    this.ringWaits++;
    this.ringCompletions += n;
    if (n > 0) this.meanMs += (end - start - this.meanMs) / 8;
    else if (timeoutMs > 0) this.meanMs = Math.min(MAX_WAIT_MS, this.meanMs * 2); // slower than thought
    // A callback run inside the wait may have resubmitted and armed the next check already.
    if (this.q.outstanding > 0 && !this.armed) {
      this.armed = true;
      setImmediate(this.run);
    }
  }
}
