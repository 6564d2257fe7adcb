/**
 * One queue pair on the host side: the SQ ring the host fills and the CQ ring
 * it drains, a request table in shared memory (CID = slot index), and the
 * doorbells. The command's data and its PRPs are `data-map.ts`'s, reaping
 * and handing completions back `completions.ts`'s, the words the pair's
 * threads share `host-words.ts`'s (with their writers and locks).
 *
 * Submission writes the SQE under the queue lock, then rings the SQ tail
 * doorbell outside it (or, while plugged, leaves the doorbell for `unplug()`:
 * one write for many commands). Completions are reaped right after a doorbell
 * write (a memory namespace completes inside it) and from the CQ's interrupt.
 *
 * A queue pair may be shared by several threads (`attach()` in each). Then
 * any thread may submit, whichever thread reaps writes each completion into
 * its request slot, and the submitter, waiting on that slot, picks it up. When
 * one thread owns the queue (the common case) completions resolve directly,
 * without a shared-memory wait.
 *
 * With `metrics`, the pair counts into its row of the I/O counters
 * (`metrics/io-metrics.ts`) as it submits, rings and reaps, under the locks
 * that order those steps; a command failed without a completion is counted
 * as an error by the thread that fails it. Events (doorbells, CQEs, waits
 * for a slot) are counted once, there or in cells of its own; `stats` reads them.
 */
import type { Transport } from '../transport/transport.js';
import type { DmaArena, DmaBuffer } from '../dma-arena.js';
import { CQE_SIZE, Psdt, SQE_SIZE, Sqe, encodeCommandWords, type Completion } from '../spec/command.js';
import { cqHeadDoorbell, sqTailDoorbell } from '../spec/registers.js';
import { readField, writeU64 } from '../spec/layout.js';
import { NvmqError } from '../errors.js';
import { checkCallback, checkCommand, checkInteger, invalidArgument } from './arguments.js';
import { RequestTable, SlotState } from '../shared/request-table.js';
import { Mutex } from '../shared/mutex.js';
import { sharedNow } from '../shared/clock.js';
import { IoMetrics, QueueCounts, type IoMetricsHandle, type QueueMetrics, type QueueStats } from '../metrics/io-metrics.js';
import { MAX_SPIN_US } from '../transport/transport.js';
import { Waiter } from './waiter.js';
import { SqDoorbell } from './sq-doorbell.js';
import { DataMap, arenaBuffer, type DataSpec } from './data-map.js';
import { Completions, type CompletionCallback } from './completions.js';
import { Deadlines } from './deadlines.js';
import { H_DB_LOCK, H_DEAD, H_LOCK, H_SQ_TAIL, HOST_WORDS, createHostWords, deadError, markDead } from './host-words.js';

import type { CommandFields, QueuePairHandle, QueuePairOptions } from './queue-pair-options.js';

export type { DataSpec } from './data-map.js';
export type { CommandFields, QueuePairHandle, QueuePairOptions } from './queue-pair-options.js';
export type { CompletionCallback } from './completions.js';

const SPIN_RANGE = `an integer from 0 to ${MAX_SPIN_US}`;

/** A command refused before it was queued: a rejected Promise, or its callback on a later microtask. */
function failed(err: Error, callback: CompletionCallback | undefined): Promise<Completion> | undefined {
  if (!callback) return Promise.reject(err);
  queueMicrotask(() => callback(err, undefined));
  return undefined;
}

/** `submit()`'s arguments: command fields (no raw SQE), data, and the length counted. */
function checkSubmission(cmd: unknown, data: unknown, length: unknown): void {
  checkCommand(cmd, data, false);
  if (length !== undefined) checkInteger('length', length, 0, Number.MAX_SAFE_INTEGER);
}

/** Longest a blocking free-slot wait blocks its thread before it waits asynchronously. */
const BLOCKING_WAIT_MS = 5;

export class QueuePair {
  readonly qid: number;
  readonly entries: number;
  readonly slots: number;
  readonly sq: DmaBuffer;
  readonly cq: DmaBuffer;
  readonly shared: boolean;
  /** The pair's events since this object was made, by every thread on it: a view of the cells it counts into. */
  readonly stats: QueueStats;
  /** The largest transfer, in bytes, the pair builds PRPs for. */
  get maxTransfer(): number {
    return this.data.maxTransfer;
  }
  readonly table: RequestTable;
  /** This pair's row of the I/O counters, when it has one. */
  readonly metrics: QueueMetrics | undefined;
  /** Where the pair's events are counted (`stats`). */
  private readonly counts: QueueCounts;

  protected readonly transport: Transport;
  protected readonly arena: DmaArena;
  private readonly pageSize: number;
  private readonly dstrd: number;
  private readonly host: Int32Array;
  private readonly lock: Mutex;
  private readonly dbLock: Mutex;
  /** Data placement and PRPs. */
  private readonly data: DataMap;
  /** This thread's command deadlines, when its commands have a timeout. */
  readonly deadlines: Deadlines | undefined;
  /** Reaping, and this thread's outstanding commands. */
  private readonly completions: Completions;
  /** When submissions are rung: at once, at unplug, or once per microtask turn. */
  private readonly doorbell: SqDoorbell;
  private readonly sqDoorbell: number;
  /** How completions are waited for after a submission. */
  readonly waiter: Waiter;
  private readonly metricsHandle: IoMetricsHandle | undefined;
  /** Whether this object allocated the rings (and so releases them). */
  private readonly owner: boolean;
  private released = false;
  /** See QueuePairOptions.blockingWait. */
  blockingWait: boolean;

  constructor(opts: QueuePairOptions, attach?: QueuePairHandle) {
    this.transport = opts.transport;
    this.arena = opts.transport.arena;
    this.qid = opts.qid;
    this.entries = opts.entries;
    this.pageSize = opts.pageSize;
    this.dstrd = opts.dstrd;
    this.owner = !attach;
    this.blockingWait = opts.blockingWait ?? false;
    this.waiter = new Waiter(this, opts.waitMode);
    this.metricsHandle = attach ? attach.metrics : opts.metrics?.handle;
    if (attach) {
      this.shared = attach.shared;
      this.sq = arenaBuffer(this.arena, attach.sq.offset, attach.sq.size);
      this.cq = arenaBuffer(this.arena, attach.cq.offset, attach.cq.size);
      this.table = new RequestTable(attach.table);
      this.host = new Int32Array(attach.host, 0, HOST_WORDS);
      this.data = DataMap.attach(this.arena, this.pageSize, opts.maxTransfer, { offsets: attach.prpPages, perSlot: attach.prpPagesPerSlot }, this.transport.dataPointer === 'sgl');
      this.metrics = attach.metrics && new IoMetrics(attach.metrics).queue(this.qid);
    } else {
      this.shared = opts.shared ?? false;
      const slots = Math.min(opts.slots ?? opts.entries - 1, opts.entries - 1, 0xffff);
      if (slots < 1) throw new RangeError(`queue ${opts.qid}: needs at least 2 entries, got ${opts.entries}`);
      this.sq = this.arena.alloc(opts.entries * SQE_SIZE);
      this.cq = this.arena.alloc(opts.entries * CQE_SIZE);
      this.table = RequestTable.create(slots);
      this.host = createHostWords();
      this.data = DataMap.create(this.arena, this.pageSize, opts.maxTransfer, slots, this.transport.dataPointer === 'sgl');
      this.metrics = opts.metrics?.queue(this.qid);
      this.metrics?.opened();
    }
    // Counted once, in the row when there is one; in cells of the pair's own (shared by its threads) when not.
    this.counts = this.metrics ? this.metrics.counts : QueueCounts.own(attach?.counts);
    this.stats = this.counts.since();
    this.slots = this.table.slots;
    this.lock = new Mutex(this.host, H_LOCK);
    const timeout = opts.timeoutMs ?? Infinity;
    if (timeout > 0 && timeout < Infinity && opts.deadlines) this.deadlines = new Deadlines(this.qid, this.table, timeout, opts.deadlines);
    this.dbLock = new Mutex(this.host, H_DB_LOCK);
    this.completions = new Completions({
      qid: this.qid,
      entries: this.entries,
      cq: this.cq,
      transport: this.transport,
      cqDoorbell: cqHeadDoorbell(opts.qid, opts.dstrd),
      host: this.host,
      shared: this.shared,
      lock: this.lock,
      dbLock: this.dbLock,
      table: this.table,
      data: this.data,
      counts: this.counts,
      metrics: this.metrics,
      deadlines: this.deadlines,
    });
    this.sqDoorbell = sqTailDoorbell(opts.qid, opts.dstrd);
    this.doorbell = new SqDoorbell(() => this.ringSq(), opts.coalesce ?? false);
    if (attach) void this.watchDead();
    // One thread on the pair: its locks would never be contended, so they are skipped.
    this.table.exclusive = !this.shared;
  }

  /**
   * Changes the largest transfer the pair builds PRPs for, re-making its
   * PRP list pages to fit. For the admin queue: the driver learns MDTS from
   * Identify Controller, which it sends through that queue. Only while no
   * command is outstanding, on an unshared pair of this thread's making.
   */
  setMaxTransfer(bytes: number): void {
    checkInteger('maxTransfer', bytes, this.pageSize, Number.MAX_SAFE_INTEGER, `an integer number of bytes >= ${this.pageSize} (a page)`);
    if (!this.owner || this.shared || this.outstanding > 0) {
      throw new NvmqError('NVMQ_QUEUE_BUSY', `queue ${this.qid}: its maximum transfer can change only while it is idle, unshared and in the thread that created it`);
    }
    this.data.setMaxTransfer(bytes, this.slots);
  }

  /**
   * In a thread that attached to the pair: when the creating thread fails it
   * (reset, deletion), fail this thread's outstanding commands too. The wait
   * holds no event-loop handle.
   */
  private async watchDead(): Promise<void> {
    while (Atomics.load(this.host, H_DEAD) === 0) {
      const r = Atomics.waitAsync(this.host, H_DEAD, 0);
      if (r.async) await r.value;
    }
    this.completions.failAll(deadError(this.host, this.qid)!);
    this.completions.stop();
    this.deadlines?.stop();
  }

  /** What `attach()` in another thread needs. */
  handle(): QueuePairHandle {
    const pages = this.data.listPages();
    return {
      qid: this.qid,
      entries: this.entries,
      dstrd: this.dstrd,
      pageSize: this.pageSize,
      maxTransfer: this.maxTransfer,
      shared: this.shared,
      sq: { offset: this.sq.offset, size: this.sq.size },
      cq: { offset: this.cq.offset, size: this.cq.size },
      prpPages: pages.offsets,
      prpPagesPerSlot: pages.perSlot,
      table: this.table.handle,
      host: this.host.buffer as SharedArrayBuffer,
      metrics: this.metricsHandle,
      counts: this.metrics ? undefined : this.counts.buffer,
    };
  }

  /** Whether the pair was failed (a reset, its deletion) in any thread: it takes no more commands. */
  get failed(): boolean {
    return Atomics.load(this.host, H_DEAD) !== 0;
  }

  /** Commands submitted and not yet completed, across every thread using the pair. */
  get outstanding(): number {
    return this.slots - this.table.freeCount();
  }

  /** Commands this thread handed to the pair still waiting for a free request slot. */
  get waitingForSlot(): number {
    return this.slotWaiters;
  }
  private slotWaiters = 0;

  /** Delays SQ doorbell writes until the matching `unplug()` (doorbell batching). */
  plug(): void {
    this.doorbell.plug();
  }
  unplug(): void {
    this.doorbell.unplug();
  }

  /**
   * Submits one command and resolves with its completion, whatever its status
   * (passthrough semantics). `raw` writes a whole 64-byte SQE verbatim except
   * the CID, for tests that need malformed commands. With a data buffer the
   * queue pair points PRP1 / PRP2 (a raw SQE's bytes 24..39) at it; a
   * command that sets them itself is refused.
   */
  submitRaw(cmd: CommandFields | { raw: Uint8Array }, data?: DataSpec): Promise<Completion> {
    try {
      checkCommand(cmd, data, true);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.enqueue(cmd, data, false, data?.buffer.length ?? 0);
  }

  /** `submitRaw()` without a Promise: `done(err, completion)` as `submitCallback()` calls it, whatever the status. */
  submitRawCallback(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, done: CompletionCallback): void {
    checkCallback(done);
    try {
      checkCommand(cmd, data, true);
    } catch (e) {
      return this.refuse(e as Error, done);
    }
    this.enqueue(cmd, data, false, data?.buffer.length ?? 0, done);
  }

  /**
   * Submits and rejects with the status as a typed error when it is not
   * success. `length`: the bytes the command addresses, for the I/O counters
   * (default: the data transferred).
   */
  submit(cmd: CommandFields, data?: DataSpec, length?: number): Promise<Completion> {
    try {
      checkSubmission(cmd, data, length);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.enqueue(cmd, data, true, length ?? data?.buffer.length ?? 0);
  }

  /**
   * `submit()` without a Promise: `done` runs once the command completes,
   * from the completion path (a callback that submits again continues in the
   * same turn), never inside this call. For closed loops that cannot afford
   * a Promise per command. Bad arguments reach `done` as any refusal does
   * (a `done` that is not a function throws here).
   */
  submitCallback(cmd: CommandFields, data: DataSpec | undefined, done: CompletionCallback, length?: number): void {
    checkCallback(done);
    try {
      checkSubmission(cmd, data, length);
    } catch (e) {
      return this.refuse(e as Error, done);
    }
    this.enqueue(cmd, data, true, length ?? data?.buffer.length ?? 0, done);
  }

  /** A command refused before it was queued, reported as `enqueue()` reports one. */
  protected refuse(err: Error, callback: CompletionCallback): void {
    failed(err, callback);
  }

  /**
   * The submission path. With a free slot it runs to the doorbell without an
   * await, and the command costs one Promise (none with `callback`); only a
   * full table waits. It takes the command as given: the public forms check
   * their arguments first, subclasses build well-formed commands.
   */
  protected enqueue(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number): Promise<Completion>;
  protected enqueue(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number, callback: CompletionCallback): undefined;
  protected enqueue(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number, callback?: CompletionCallback): Promise<Completion> | undefined {
    const dead = deadError(this.host, this.qid);
    if (dead) return failed(dead, callback);
    const cid = this.table.tryAllocate();
    if (cid >= 0) return this.enqueueWithSlot(cid, cmd, data, throwOnError, length, callback);
    this.countWait();
    if (this.blockingWait) {
      // Completions this thread can reap free slots at once; then, on a shared pair, other threads' can.
      // A blocked thread cannot run its own completion callbacks, so the blocking wait is short and the
      // rest of the wait is asynchronous: blocking never deadlocks the thread on itself.
      this.poll();
      const got = this.table.tryAllocate();
      if (got >= 0) return this.enqueueWithSlot(got, cmd, data, throwOnError, length, callback);
      if (this.shared) {
        const shared = this.table.allocateBlocking(BLOCKING_WAIT_MS);
        if (shared >= 0) return this.enqueueWithSlot(shared, cmd, data, throwOnError, length, callback);
      }
    }
    this.slotWaiters++;
    const later = this.table.allocateAsync().finally(() => this.slotWaiters--);
    if (!callback) return later.then((got) => this.enqueueWithSlot(got, cmd, data, throwOnError, length)!);
    later.then(
      (got) => this.enqueueWithSlot(got, cmd, data, throwOnError, length, callback),
      (e: Error) => callback(e, undefined),
    );
    return undefined;
  }

  /** A submission found no free request slot (the slow path: the lock orders it with the other counting threads). */
  private countWait(): void {
    if (this.shared) this.lock.lock();
    this.counts.waited();
    if (this.shared) this.lock.unlock();
  }

  private enqueueWithSlot(cid: number, cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number, callback?: CompletionCallback): Promise<Completion> | undefined {
    let bounce: DmaBuffer | undefined;
    let readBack: Uint8Array | undefined;
    let prp1 = 0;
    let prp2 = 0;
    try {
      const late = deadError(this.host, this.qid);
      if (late) throw late;
      if (data && data.buffer.length > 0) {
        bounce = this.data.map(cid, data);
        if (bounce && data.direction !== 'to-device') readBack = data.buffer;
        prp1 = this.data.prp1;
        prp2 = this.data.prp2;
      }
    } catch (e) {
      this.table.release(cid);
      return failed(e as Error, callback);
    }

    const raw = 'raw' in cmd;
    const opcode = raw ? (cmd.raw[0] ?? 0) : cmd.opcode;
    if (this.shared) this.lock.lock();
    try {
      const tail = this.host[H_SQ_TAIL]!;
      const at = this.sq.offset + tail * SQE_SIZE;
      const now = this.doorbell.now();
      if (raw) {
        // A raw command's namespace and starting LBA, for its metrics and error reports (CDW10-11 hold SLBA in Read / Write).
        const rv = new DataView(cmd.raw.buffer, cmd.raw.byteOffset, SQE_SIZE);
        this.table.describe(cid, opcode, readField(rv, 0, Sqe.NSID), readField(rv, 0, Sqe.CDW10) + readField(rv, 0, Sqe.CDW11) * 0x1_0000_0000, length, now);
      } else {
        this.table.describe(cid, opcode, cmd.nsid ?? 0, (cmd.cdw10 ?? 0) + (cmd.cdw11 ?? 0) * 0x1_0000_0000, length, now);
      }
      const withData = data !== undefined && data.buffer.length > 0;
      if (raw) {
        const dv = this.arena.view;
        this.arena.bytes.set(cmd.raw.subarray(0, SQE_SIZE), at);
        dv.setUint16(at + Sqe.CID.offset, cid, true);
        // A raw SQE with data leaves DPTR to the queue pair, as a command of fields does (checkCommand()).
        if (withData) {
          writeU64(dv, at + Sqe.PRP1.offset, prp1);
          writeU64(dv, at + Sqe.PRP2.offset, prp2);
        }
      } else {
        encodeCommandWords(this.arena.u32, at >> 2, cmd, cid, withData ? prp1 : cmd.prp1, withData ? prp2 : cmd.prp2);
      }
      // SGL1 in DPTR: PSDT 01b says so.
      if (withData && this.data.sgl) this.arena.bytes[at + 1] = (this.arena.bytes[at + 1]! & 0x3f) | (Psdt.SGL_MPTR_CONTIG << 6);
      // The tail moves only once the whole SQE is in place.
      Atomics.store(this.host, H_SQ_TAIL, (tail + 1) % this.entries);
      this.metrics?.submitted(now);
    } catch (e) {
      // A malformed field (a BigInt, say): nothing was queued.
      if (bounce) this.data.drop(bounce);
      this.table.release(cid);
      return failed(e as Error, callback);
    } finally {
      if (this.shared) this.lock.unlock();
    }
    const done = this.completions.track(cid, throwOnError ? opcode : -1, bounce, readBack, callback);
    if (this.doorbell.submitted()) this.ringSq();
    if (this.shared) void this.completions.awaitCompletion(cid);
    return done;
  }

  private ringSq(): void {
    // A coalesced ring queued before the pair was failed (reset, deletion): its rings may be gone.
    if (Atomics.load(this.host, H_DEAD) !== 0) return;
    if (this.shared) this.dbLock.lock();
    try {
      this.counts.sqDoorbell();
      this.transport.write32(this.sqDoorbell, Atomics.load(this.host, H_SQ_TAIL));
    } finally {
      if (this.shared) this.dbLock.unlock();
    }
    // Reap straight away: a memory namespace has already completed.
    this.completions.reap(false, true);
    this.waiter.afterSubmit();
  }


  /** Polled completion: the controller finishes what the kernel has done (no system call), then the CQ is reaped. */
  poll(): number {
    this.transport.poll?.();
    return this.processCompletions();
  }

  /**
   * Waits for completions by blocking the thread inside io_uring_enter (as
   * fio does) until the controller in this thread finishes an I/O or
   * `timeoutMs` passes, then reaps; callbacks run inside this call. Returns
   * the completions reaped. For a thread with nothing else to do: timers and
   * messages wait meanwhile. Returns at once when nothing this thread
   * executes can be waited for so (portable path, memory namespace, a
   * controller in another thread): give the event loop a turn then.
   * `spinUs` > 0 polls the ring that long first (hybrid polling: no sleep,
   * no wake-up, a core kept busy). One wait lasts an hour at most.
   */
  wait(timeoutMs = 10, spinUs = 0): number {
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) throw invalidArgument('wait: timeoutMs', 'a number of milliseconds >= 0', timeoutMs);
    checkInteger('wait: spinUs', spinUs, 0, MAX_SPIN_US, SPIN_RANGE);
    this.transport.wait?.(timeoutMs, spinUs);
    return this.processCompletions();
  }

  /** Operations this thread's wait() can wait for (its io_uring operations in flight). */
  waitable(): number {
    return this.transport.waitable?.() ?? 0;
  }

  /** The interrupt handler for this queue's vector. */
  onInterrupt(): void {
    this.completions.reap(true);
  }

  /**
   * Reaps every new CQE (phase tag matches), then writes the CQ head doorbell
   * once. Returns how many. Each completion lands in its request slot; the
   * ones this thread submitted on an unshared pair are resolved here, after
   * the lock is dropped (see `completions.ts`).
   */
  processCompletions(): number {
    return this.completions.reap(false);
  }

  /**
   * Fails every outstanding command (controller reset, queue deleted); the
   * pair is unusable afterwards, in every thread. Call only once the
   * controller can no longer write to the pair's buffers (CSTS.RDY clear, or
   * the queue deleted).
   */
  fail(err: NvmqError): void {
    markDead(this.host, err);
    this.metrics?.failed(sharedNow());
    this.completions.failAll(err);
    // Nothing of this thread's is outstanding now: its timers must not hold the pair (and the arena) either.
    this.completions.stop();
    this.deadlines?.stop();
    // Submitters in other threads wait on their slots: complete them with a marker they recognise.
    for (let cid = 0; cid < this.slots; cid++) if (this.table.state(cid) === SlotState.SUBMITTED) this.table.complete(cid, -1, 0);
  }

  /** Returns ring and PRP memory to the arena (the thread that created the pair). */
  releaseMemory(): void {
    // Once: a reset that failed before it made a new admin pair may be followed by another.
    if (!this.owner || this.released) return;
    this.released = true;
    this.arena.release(this.sq);
    this.arena.release(this.cq);
    this.data.release();
  }
}
