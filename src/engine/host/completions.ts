/**
 * A queue pair's completion side in one thread: reaping the CQ and handing
 * each completion to the command it ends.
 *
 * The reaper reads new CQEs (the phase tag tells them from old ones), then
 * writes the CQ head doorbell once per batch. On a shared pair it writes
 * each completion into its request slot, whichever thread submitted it, and
 * the submitter, waiting on that slot (`awaitCompletion()`), picks it up.
 * When one thread owns the pair (the common case) the reaper resolves the
 * commands directly, without a shared-memory wait.
 *
 * This thread's outstanding commands are kept by CID, with how each one ends:
 * a Promise's settlers or a callback, the opcode when a failed status should
 * become a typed error, and a bounce buffer to release.
 */
import { debuglog } from 'node:util';
import type { Transport } from '../transport/transport.js';
import type { DmaArena, DmaBuffer } from '../dma-arena.js';
import { CQE_SIZE, decodeCompletionWords, type Completion } from '../spec/command.js';
import { statusToError, type NvmqError } from '../errors.js';
import { SlotState, type RequestTable } from '../shared/request-table.js';
import type { Mutex } from '../shared/mutex.js';
import { sharedNow } from '../shared/clock.js';
import { microtask } from '../shared/microtask.js';
import { hostFailureIndex, type QueueCounts, type QueueMetrics } from '../metrics/io-metrics.js';
import type { DataMap } from './data-map.js';
import type { Deadlines } from './deadlines.js';
import { H_CQ_HEAD, H_CQ_PHASE, H_DEAD, deadError } from './host-words.js';
import { AdminOpcode } from '../spec/opcodes.js';

const trace = debuglog('nvmq');
const noop = (): void => {};

/**
 * How the callback forms (`submitCallback`, `IoQueuePair.readCallback`...) report a command's end:
 * `err` null and the completion, or the error the Promise form would reject with (then `c` is the
 * completion when the controller posted one, undefined when the command never reached it).
 */
export type CompletionCallback = (err: Error | null, c: Completion | undefined) => void;

/**
 * Runs a completion callback. One that throws must not strand the
 * completions reaped with it: its error is rethrown on a later microtask
 * (an uncaught exception, as from any Node callback) and reaping goes on.
 */
function invoke(callback: CompletionCallback, err: Error | null, c: Completion | undefined): void {
  try {
    callback(err, c);
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

interface LocalSlot {
  /** Whether the CID is outstanding from this thread. */
  busy: boolean;
  /** The Promise form's settlers, or `noop` for the callback form. */
  resolve: (c: Completion) => void;
  reject: (e: Error) => void;
  /** The callback form's callback. */
  callback: CompletionCallback | undefined;
  /** The opcode when a failed status should reject as a typed error; -1 to resolve with any status. */
  opcode: number;
  bounce: DmaBuffer | undefined;
  readBack: Uint8Array | undefined;
  /** Whether it holds the thread alive (every command but an Asynchronous Event Request). */
  holds: boolean;
}

/** What the completion side works on: the pair's CQ, words, locks and table. */
export interface CompletionContext {
  readonly qid: number;
  readonly entries: number;
  readonly cq: DmaBuffer;
  readonly transport: Transport;
  /** The CQ head doorbell's register offset. */
  readonly cqDoorbell: number;
  readonly host: Int32Array;
  readonly shared: boolean;
  readonly lock: Mutex;
  readonly dbLock: Mutex;
  readonly table: RequestTable;
  readonly data: DataMap;
  /** The pair's event counts (its row's when it has `metrics`). */
  readonly counts: QueueCounts;
  readonly metrics: QueueMetrics | undefined;
  /** This thread's command deadlines on the pair, when commands have a timeout. */
  readonly deadlines: Deadlines | undefined;
}

export class Completions {
  private readonly qid: number;
  private readonly entries: number;
  private readonly cq: DmaBuffer;
  private readonly transport: Transport;
  private readonly arena: DmaArena;
  private readonly cqDoorbell: number;
  private readonly host: Int32Array;
  private readonly shared: boolean;
  private readonly lock: Mutex;
  private readonly dbLock: Mutex;
  private readonly table: RequestTable;
  private readonly slots: number;
  private readonly data: DataMap;
  private readonly counts: QueueCounts;
  private readonly metrics: QueueMetrics | undefined;
  private readonly deadlines: Deadlines | undefined;
  /** This thread's outstanding commands by CID (slots are reused: no allocation per command). */
  private readonly local: LocalSlot[] = [];
  /** See reap(). */
  private reaping = false;
  private reapAgain = false;
  /** Callbacks of completions reaped inside a submission call, run on a later microtask (see reap()). */
  private deferCallbacks = false;
  private deferred: Array<() => void> = [];
  /**
   * This thread's outstanding commands but AERs. While there are some, `alive`
   * (a ref'd timer that never fires) holds the thread's event loop open, as a
   * pending fs call does: otherwise a worker awaiting only a command whose
   * completion a reset dropped would exit before the reset fails it (the
   * H_DEAD wait holds no handle). One timer per pair, ref'd and unref'd at
   * 0 <-> 1 (about 10 ns), made on first use and cleared by `stop()`.
   */
  private live = 0;
  private alive: NodeJS.Timeout | undefined;

  constructor(x: CompletionContext) {
    this.qid = x.qid;
    this.entries = x.entries;
    this.cq = x.cq;
    this.transport = x.transport;
    this.arena = x.transport.arena;
    this.cqDoorbell = x.cqDoorbell;
    this.host = x.host;
    this.shared = x.shared;
    this.lock = x.lock;
    this.dbLock = x.dbLock;
    this.table = x.table;
    this.slots = x.table.slots;
    this.data = x.data;
    this.counts = x.counts;
    this.metrics = x.metrics;
    this.deadlines = x.deadlines;
  }

  /**
   * Records request slot `cid`'s command as outstanding from this thread:
   * it ends through `callback`, or the returned Promise without one.
   * `opcode` >= 0 makes a failed status an error, -1 a completion like any.
   */
  track(cid: number, opcode: number, bounce: DmaBuffer | undefined, readBack: Uint8Array | undefined, callback: CompletionCallback | undefined): Promise<Completion> | undefined {
    let slot = this.local[cid];
    if (!slot) this.local[cid] = slot = { busy: false, resolve: noop, reject: noop, callback: undefined, bounce: undefined, readBack: undefined, opcode: -1, holds: false };
    slot.busy = true;
    slot.bounce = bounce;
    slot.readBack = readBack;
    slot.opcode = opcode;
    // An AER waits for an event, maybe for ever: it must not keep the thread alive.
    if (this.qid !== 0 || this.table.opcode(cid) !== AdminOpcode.ASYNC_EVENT_REQUEST) {
      slot.holds = true;
      if (this.live++ === 0) {
        if (this.alive) this.alive.ref();
        else this.alive = setInterval(noop, 2 ** 30);
      }
    }
    this.deadlines?.started(cid);
    if (callback) {
      slot.callback = callback;
      return undefined;
    }
    const s = slot;
    return new Promise<Completion>((resolve, reject) => {
      s.resolve = resolve;
      s.reject = reject;
    });
  }

  /**
   * Reaps every new CQE and returns how many, found by polling or by the
   * interrupt. A completion callback that submits (and so reaps) again
   * inside a reap only leaves a note: the outer reap goes round once more,
   * so a closed loop of callbacks iterates instead of recursing. A reap that
   * a submission call started (`inSubmit`) defers the callbacks it would run
   * to a microtask: a callback never runs inside the call that submitted.
   */
  reap(interrupt: boolean, inSubmit = false): number {
    if (this.reaping) {
      this.reapAgain = true;
      return 0;
    }
    this.reaping = true;
    this.deferCallbacks = inSubmit;
    let n = 0;
    try {
      do {
        this.reapAgain = false;
        n += this.reapOnce(interrupt);
      } while (this.reapAgain);
    } finally {
      this.reaping = false;
      this.deferCallbacks = false;
    }
    return n;
  }

  /** Runs `callback` now, or after the submission call that reaped its completion has returned. */
  private callBack(callback: CompletionCallback, err: Error | null, c: Completion | undefined): void {
    if (!this.deferCallbacks) return invoke(callback, err, c);
    if (this.deferred.length === 0) microtask(this.runDeferredBound);
    this.deferred.push(() => invoke(callback, err, c));
  }

  private readonly runDeferredBound = (): void => this.runDeferred();
  private runDeferred(): void {
    const calls = this.deferred;
    this.deferred = [];
    for (const call of calls) call();
  }

  private reapOnce(interrupt: boolean): number {
    const words = this.arena.u32;
    const mine: Completion[] = [];
    const m = this.metrics;
    let now = 0;
    let reaped = 0;
    let n = 0;
    if (this.shared) this.lock.lock();
    try {
      let head = this.host[H_CQ_HEAD]!;
      let phase = this.host[H_CQ_PHASE]!;
      for (;;) {
        const at = this.cq.offset + head * CQE_SIZE;
        // Atomic load of dword 3 (CID, phase, status), which the controller stored last: the rest of the CQE is visible with it.
        const dw3 = Atomics.load(words, (at >> 2) + 3);
        if (((dw3 >>> 16) & 1) !== phase) break;
        const c = decodeCompletionWords(words, at >> 2, dw3);
        if (++head === this.entries) {
          head = 0;
          phase ^= 1;
        }
        n++;
        if (c.cid >= this.slots || this.table.state(c.cid) !== SlotState.SUBMITTED) {
          // The controller broke the spec: a CID nobody has outstanding.
          this.counts.spurious();
          trace('qid %d: completion for CID %d, which is not outstanding', this.qid, c.cid);
          continue;
        }
        if (m) {
          // One clock reading for the whole batch.
          if (now === 0) now = sharedNow();
          m.reaped(this.table, c.cid, c.status, now);
          reaped++;
        }
        if (this.shared) this.table.complete(c.cid, c.status, c.dw0);
        else mine.push(c);
      }
      if (n > 0) {
        Atomics.store(this.host, H_CQ_HEAD, head);
        Atomics.store(this.host, H_CQ_PHASE, phase);
        this.counts.found(n, interrupt);
        m?.reapedBatch(reaped, now);
      }
    } finally {
      if (this.shared) this.lock.unlock();
    }
    if (n > 0) {
      if (this.shared) this.dbLock.lock();
      try {
        this.counts.cqDoorbell();
        this.transport.write32(this.cqDoorbell, Atomics.load(this.host, H_CQ_HEAD));
      } finally {
        if (this.shared) this.dbLock.unlock();
      }
    }
    for (const c of mine) this.finish(c);
    return n;
  }

  /** Shared pairs: the submitter waits on its slot, whichever thread reaped it. */
  async awaitCompletion(cid: number): Promise<void> {
    await this.table.waitCompleted(cid);
    if (!this.local[cid]?.busy) return;
    const dead = Atomics.load(this.host, H_DEAD) !== 0 && this.table.status(cid) === -1;
    if (dead) return this.fail(cid, deadError(this.host, this.qid)!);
    this.finish({ dw0: this.table.dw0(cid), dw1: 0, sqhd: 0, sqid: this.qid, cid, status: this.table.status(cid), phase: 0 });
  }

  private finish(c: Completion): void {
    const slot = this.local[c.cid];
    if (!slot?.busy) return;
    const { resolve, reject, callback, bounce, readBack, opcode } = slot;
    this.clear(slot);
    // Past its deadline, a command ends with the timeout error whatever its status (Command Abort Requested, most
    // likely), and its data does not reach the caller's buffer.
    const late = this.deadlines?.ended(c.cid);
    if (bounce) {
      if (late) this.data.drop(bounce);
      else this.data.unmap(bounce, readBack, c.status);
    }
    this.table.release(c.cid);
    const err = late ?? (opcode >= 0 && c.status !== 0 ? statusToError(c.status, { opcode, qid: this.qid, cid: c.cid }) : null);
    if (callback) this.callBack(callback, err, c);
    else if (err) reject(err);
    else resolve(c);
  }

  private fail(cid: number, failure: Error): void {
    const slot = this.local[cid];
    if (!slot?.busy) return;
    const { reject, callback, bounce } = slot;
    this.clear(slot);
    // A command past its deadline that a reset (or a deletion) ends reports its timeout, not the reset.
    const err = this.deadlines?.ended(cid) ?? failure;
    if (bounce) this.data.drop(bounce);
    if (this.metrics) this.countHostFailure(this.metrics, cid, err);
    this.table.release(cid);
    if (callback) this.callBack(callback, err, undefined);
    else reject(err);
  }

  /**
   * Counts a command failed without a completion as an error, once: not
   * when a reaper found its CQE first (it counted that), which on a shared
   * pair it may have done before this thread got to the slot. Under the
   * pair's lock there, as the reaper counts.
   */
  private countHostFailure(m: QueueMetrics, cid: number, err: Error): void {
    if (this.shared) this.lock.lock();
    try {
      const state = this.table.state(cid);
      // fail() marks the slots it finds submitted COMPLETED with status -1 (see awaitCompletion()).
      if (state === SlotState.SUBMITTED || (state === SlotState.COMPLETED && this.table.status(cid) === -1)) {
        m.hostFailed(this.table, cid, hostFailureIndex((err as Partial<NvmqError>).code ?? ''));
      }
    } finally {
      if (this.shared) this.lock.unlock();
    }
  }

  /** Fails every command outstanding from this thread with `err`. */
  failAll(err: Error): void {
    for (let cid = 0; cid < this.local.length; cid++) this.fail(cid, err);
  }

  /** The pair is gone from this thread (after failAll()): its keep-alive timer goes. */
  stop(): void {
    clearInterval(this.alive);
    this.alive = undefined;
    this.live = 0;
  }

  /** Frees a local slot for the CID's next command, dropping what it held. */
  private clear(slot: LocalSlot): void {
    if (slot.holds) {
      slot.holds = false;
      if (--this.live === 0) this.alive?.unref();
    }
    slot.busy = false;
    slot.resolve = noop;
    slot.reject = noop;
    slot.callback = undefined;
    slot.bounce = undefined;
    slot.readBack = undefined;
  }
}
