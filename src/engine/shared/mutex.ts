/**
 * A mutex in one Int32 of shared memory, for threads that share a queue.
 *
 * The word is 0 (unlocked), 1 (locked, nobody waiting) or 2 (locked, maybe
 * waiters). Taking a free lock is one compare-exchange; only a contended lock
 * sleeps (`Atomics.wait`, or `Atomics.waitAsync` for threads that must not
 * block), and only an unlock that saw 2 pays for `Atomics.notify`.
 *
 * Ordering: Atomics operations are sequentially consistent, so everything
 * written before `unlock()` is visible to the next thread whose `lock()`
 * returns.
 */

import { waitAsyncAlive } from './wait.js';

const UNLOCKED = 0;
const LOCKED = 1;
const CONTENDED = 2;

export class Mutex {
  constructor(
    private readonly words: Int32Array,
    private readonly index: number,
  ) {}

  tryLock(): boolean {
    return Atomics.compareExchange(this.words, this.index, UNLOCKED, LOCKED) === UNLOCKED;
  }

  /** Blocks the thread while another holds the lock. */
  lock(): void {
    let c = Atomics.compareExchange(this.words, this.index, UNLOCKED, LOCKED);
    if (c === UNLOCKED) return;
    // A short spin first: queue critical sections are a few hundred nanoseconds, a sleep costs tens of microseconds.
    for (let i = 0; i < 64; i++) {
      c = Atomics.compareExchange(this.words, this.index, UNLOCKED, LOCKED);
      if (c === UNLOCKED) return;
    }
    if (c !== CONTENDED) c = Atomics.exchange(this.words, this.index, CONTENDED);
    while (c !== UNLOCKED) {
      Atomics.wait(this.words, this.index, CONTENDED);
      c = Atomics.exchange(this.words, this.index, CONTENDED);
    }
  }

  /** Like `lock()`, without blocking the event loop. */
  async lockAsync(): Promise<void> {
    let c = Atomics.compareExchange(this.words, this.index, UNLOCKED, LOCKED);
    if (c === UNLOCKED) return;
    if (c !== CONTENDED) c = Atomics.exchange(this.words, this.index, CONTENDED);
    while (c !== UNLOCKED) {
      await waitAsyncAlive(this.words, this.index, CONTENDED);
      c = Atomics.exchange(this.words, this.index, CONTENDED);
    }
  }

  unlock(): void {
    if (Atomics.exchange(this.words, this.index, UNLOCKED) === CONTENDED) Atomics.notify(this.words, this.index, 1);
  }

  /** True while some thread holds the lock (for assertions). */
  isLocked(): boolean {
    return Atomics.load(this.words, this.index) !== UNLOCKED;
  }
}
