/**
 * A queue pair's request table in shared memory, so several threads can
 * submit on one queue and whichever thread reaps a completion can hand it to
 * the thread that submitted it.
 *
 * CID = slot index. Free slots are a stack of indices under a Mutex. A thread
 * that finds no free slot waits on a sequence word without losing a wake-up:
 *
 *   under the lock: no free slot → read kFreeSeq, count itself a waiter
 *   unlock
 *   Atomics.wait(kFreeSeq, value read)     ← returns at once if a free happened in between
 *
 * `release()` bumps kFreeSeq under the lock for every freed slot and, after
 * unlocking, notifies only when somebody is waiting — never while holding the
 * lock, and never when no slot is free (the woken thread always finds one
 * unless another submitter took it first, and then it simply waits again).
 *
 * Memory map (Int32 words unless noted; "writer" is who stores the field):
 *
 * | word(s)                 | field          | writer                                  |
 * | ----------------------- | -------------- | --------------------------------------- |
 * | 0                       | lock           | Mutex (any thread)                      |
 * | 1                       | free count     | allocate / release, under the lock      |
 * | 2                       | free sequence  | release, under the lock (Atomics.add)   |
 * | 3                       | waiters        | a waiting allocator, under the lock     |
 * | 4                       | slots          | creator, once                           |
 * | 8 .. 8+slots            | free stack     | allocate / release, under the lock      |
 * | per slot, 8 words:      |                |                                         |
 * |   +0 state              | FREE/SUBMITTED/COMPLETED | submitter (SUBMITTED), reaper (COMPLETED, Atomics.store + notify), releaser (FREE) |
 * |   +1 opcode, +2 nsid    |                | submitter, before the SQE is written    |
 * |   +3 LBA low, +4 high   |                | submitter                               |
 * |   +5 owner              | threadId of the thread that took the slot | allocate, under the lock |
 * |   +6 status             | CQE status     | reaper, before state = COMPLETED        |
 * |   +7 dw0                | CQE DW0        | reaper, before state = COMPLETED        |
 * | Float64 × 2 per slot     | submit time, length | submitter: ms of `sharedNow()` (comparable between threads), bytes the command addresses |
 *
 * The reaper writes status and DW0, then `Atomics.store(state, COMPLETED)`
 * and `Atomics.notify(state)`: the submitter that sees COMPLETED (by
 * `Atomics.load` or a wait on the state word) sees the status too.
 *
 * Each slot records the thread that took it (`owner`): a thread sharing the
 * pair counts its own commands by it (`heldBy`), and when a thread ends
 * without picking its completions up, the slots it held are freed for it
 * (`releaseCompletedOf`).
 */
import { performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { Mutex } from './mutex.js';
import { waitAsyncAlive } from './wait.js';
import { sharedNow } from './clock.js';

const kLock = 0;
const kFreeCount = 1;
const kFreeSeq = 2;
const kWaiters = 3;
const kSlots = 4;
const HEADER = 8;
const SLOT_WORDS = 8;
/**
 * Unused bytes after each buffer: every queue pair's table is written per command by its own thread, and
 * two small buffers allocated one after the other would otherwise share a cache line across threads.
 */
export const CACHE_LINE = 64;

export const SlotState = { FREE: 0, SUBMITTED: 1, COMPLETED: 2 } as const;

const F_STATE = 0;
const F_OPCODE = 1;
const F_NSID = 2;
const F_LBA_LO = 3;
const F_LBA_HI = 4;
const F_OWNER = 5;
const F_STATUS = 6;
const F_DW0 = 7;

export interface RequestTableHandle {
  words: SharedArrayBuffer;
  times: SharedArrayBuffer;
}

/** Test hook: runs between the unlock and the wait of a free-slot wait (where the seed driver lost its wake-up). */
export type AfterUnlockHook = () => void;

export class RequestTable {
  readonly slots: number;
  readonly handle: RequestTableHandle;
  private readonly w: Int32Array;
  private readonly times: Float64Array;
  private readonly mutex: Mutex;
  private readonly stackBase: number;
  private readonly slotBase: number;
  /** For tests: see AfterUnlockHook. */
  afterUnlock: AfterUnlockHook | undefined;
  /**
   * Set by the only thread that allocates and releases on this table (an
   * unshared queue pair): the mutex is skipped. Never set it when another
   * thread may allocate too.
   */
  exclusive = false;

  static create(slots: number): RequestTable {
    if (!Number.isInteger(slots) || slots < 1 || slots > 65535) throw new RangeError(`request table slots must be 1..65535, got ${slots}`);
    const words = new SharedArrayBuffer((HEADER + slots + slots * SLOT_WORDS) * 4 + CACHE_LINE);
    const times = new SharedArrayBuffer(slots * 2 * 8 + CACHE_LINE);
    const w = new Int32Array(words);
    w[kSlots] = slots;
    w[kFreeCount] = slots;
    // Lowest CIDs on top of the stack.
    for (let i = 0; i < slots; i++) w[HEADER + i] = slots - 1 - i;
    return new RequestTable({ words, times });
  }

  /** Maps a table another thread created. */
  constructor(handle: RequestTableHandle) {
    this.handle = handle;
    this.w = new Int32Array(handle.words);
    this.times = new Float64Array(handle.times);
    this.slots = this.w[kSlots]!;
    this.mutex = new Mutex(this.w, kLock);
    this.stackBase = HEADER;
    this.slotBase = HEADER + this.slots;
  }

  /** A free CID, or -1 when every slot is in use. */
  tryAllocate(): number {
    if (this.exclusive) return this.popLocked();
    this.mutex.lock();
    const cid = this.popLocked();
    this.mutex.unlock();
    return cid;
  }

  private popLocked(): number {
    const n = this.w[kFreeCount]!;
    if (n === 0) return -1;
    this.w[kFreeCount] = n - 1;
    const cid = this.w[this.stackBase + n - 1]!;
    const s = this.slotBase + cid * SLOT_WORDS;
    this.w[s + F_OWNER] = threadId;
    this.w[s + F_STATE] = SlotState.SUBMITTED;
    return cid;
  }

  /**
   * Under the lock: a free CID, or the sequence value to wait on after
   * registering as a waiter (returned negated and offset so it cannot look
   * like a CID).
   */
  private allocateOrRegister(): { cid: number; seq: number } {
    this.mutex.lock();
    const cid = this.popLocked();
    if (cid >= 0) {
      this.mutex.unlock();
      return { cid, seq: 0 };
    }
    const seq = Atomics.load(this.w, kFreeSeq);
    this.w[kWaiters]!++;
    this.mutex.unlock();
    return { cid: -1, seq };
  }

  private unregister(): void {
    this.mutex.lock();
    this.w[kWaiters]!--;
    this.mutex.unlock();
  }

  /** A free CID, blocking the thread (Atomics.wait) until one is released. For worker threads. */
  allocateBlocking(timeoutMs = Infinity): number {
    const deadline = timeoutMs === Infinity ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      const r = this.allocateOrRegister();
      if (r.cid >= 0) return r.cid;
      this.afterUnlock?.();
      const left = deadline - performance.now();
      // The value read under the lock: a release between unlock and here makes this return at once.
      const res = left <= 0 ? 'timed-out' : Atomics.wait(this.w, kFreeSeq, r.seq, left);
      this.unregister();
      if (res === 'timed-out') return -1;
    }
  }

  /** A free CID without blocking the event loop (Atomics.waitAsync). Resolves -1 on timeout. */
  async allocateAsync(timeoutMs = Infinity): Promise<number> {
    const deadline = timeoutMs === Infinity ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      const r = this.allocateOrRegister();
      if (r.cid >= 0) return r.cid;
      this.afterUnlock?.();
      const left = deadline - performance.now();
      const res = left <= 0 ? 'timed-out' : await waitAsyncAlive(this.w, kFreeSeq, r.seq, left);
      this.unregister();
      if (res === 'timed-out') return -1;
    }
  }

  /** Returns a CID to the free stack and wakes one waiter if any. */
  release(cid: number): void {
    this.checkCid(cid);
    const locked = !this.exclusive;
    if (locked) this.mutex.lock();
    let waiters: number;
    try {
      waiters = this.pushLocked(cid);
    } finally {
      if (locked) this.mutex.unlock();
    }
    // Outside the lock: the woken thread's first step is to take it.
    if (waiters > 0) Atomics.notify(this.w, kFreeSeq, 1);
  }

  /** Under the lock (or on an exclusive table): frees `cid`, bumps the free sequence; returns the waiter count. */
  private pushLocked(cid: number): number {
    const s = this.slotBase + cid * SLOT_WORDS;
    if (this.w[s + F_STATE] === SlotState.FREE) throw new Error(`CID ${cid} released twice`);
    this.w[s + F_STATE] = SlotState.FREE;
    this.w[this.stackBase + this.w[kFreeCount]!] = cid;
    this.w[kFreeCount]!++;
    Atomics.add(this.w, kFreeSeq, 1);
    return this.w[kWaiters]!;
  }

  /** Slots thread `tid` has taken and not released (its commands outstanding, completed or not). */
  heldBy(tid: number): number {
    let n = 0;
    this.forEachHeldBy(tid, () => n++);
    return n;
  }

  /**
   * Frees the slots thread `tid` holds whose commands have completed, for a
   * thread that ended without picking them up (only its own thread frees a
   * slot otherwise). Returns how many it still holds: commands that have not
   * completed yet.
   */
  releaseCompletedOf(tid: number): number {
    let left = 0;
    let freed = 0;
    let waiters = 0;
    this.forEachHeldBy(tid, (cid) => {
      if (this.state(cid) !== SlotState.COMPLETED) left++;
      else {
        waiters = this.pushLocked(cid);
        freed++;
      }
    });
    if (freed > 0 && waiters > 0) Atomics.notify(this.w, kFreeSeq, freed);
    return left;
  }

  /** Calls `fn` with each slot `tid` holds, under the lock (slots are taken and freed only under it). */
  private forEachHeldBy(tid: number, fn: (cid: number) => void): void {
    const locked = !this.exclusive;
    if (locked) this.mutex.lock();
    try {
      for (let cid = 0; cid < this.slots; cid++) {
        const s = this.slotBase + cid * SLOT_WORDS;
        if (this.w[s + F_STATE] !== SlotState.FREE && this.w[s + F_OWNER] === tid) fn(cid);
      }
    } finally {
      if (locked) this.mutex.unlock();
    }
  }

  /** Records what a submitter put in slot `cid` (before its SQE is written). */
  describe(cid: number, opcode: number, nsid: number, lba: number, length: number, now = sharedNow()): void {
    const s = this.slotBase + cid * SLOT_WORDS;
    this.w[s + F_OPCODE] = opcode;
    this.w[s + F_NSID] = nsid | 0;
    this.w[s + F_LBA_LO] = lba % 0x1_0000_0000 | 0;
    this.w[s + F_LBA_HI] = Math.floor(lba / 0x1_0000_0000);
    this.times[cid * 2] = now;
    this.times[cid * 2 + 1] = length;
  }

  /** The reaper's side: status and DW0, then COMPLETED, then a wake-up for a submitter waiting on the slot. */
  complete(cid: number, status: number, dw0: number): void {
    const s = this.slotBase + cid * SLOT_WORDS;
    this.w[s + F_STATUS] = status;
    this.w[s + F_DW0] = dw0 | 0;
    Atomics.store(this.w, s + F_STATE, SlotState.COMPLETED);
    Atomics.notify(this.w, s + F_STATE);
  }

  state(cid: number): number {
    return Atomics.load(this.w, this.slotBase + cid * SLOT_WORDS + F_STATE);
  }

  status(cid: number): number {
    return this.w[this.slotBase + cid * SLOT_WORDS + F_STATUS]!;
  }

  dw0(cid: number): number {
    return this.w[this.slotBase + cid * SLOT_WORDS + F_DW0]! >>> 0;
  }

  opcode(cid: number): number {
    return this.w[this.slotBase + cid * SLOT_WORDS + F_OPCODE]!;
  }

  nsid(cid: number): number {
    return this.w[this.slotBase + cid * SLOT_WORDS + F_NSID]! >>> 0;
  }

  /** Bytes the command addresses, as its submitter described it. */
  length(cid: number): number {
    return this.times[cid * 2 + 1]!;
  }

  /** When the command was submitted (`sharedNow()` of the submitter). */
  submitTime(cid: number): number {
    return this.times[cid * 2]!;
  }

  /** Waits (async) until slot `cid` is COMPLETED. */
  async waitCompleted(cid: number, timeoutMs?: number): Promise<boolean> {
    const i = this.slotBase + cid * SLOT_WORDS + F_STATE;
    while (Atomics.load(this.w, i) === SlotState.SUBMITTED) {
      if ((await waitAsyncAlive(this.w, i, SlotState.SUBMITTED, timeoutMs)) === 'timed-out') return false;
    }
    return true;
  }

  /** Free slots right now (a snapshot; for tests and metrics). */
  freeCount(): number {
    return Atomics.load(this.w, kFreeCount);
  }

  waiters(): number {
    return Atomics.load(this.w, kWaiters);
  }

  private checkCid(cid: number): void {
    if (!Number.isInteger(cid) || cid < 0 || cid >= this.slots) throw new RangeError(`CID ${cid} outside the table (${this.slots} slots)`);
  }
}
