/**
 * One queue pair on the host side: the SQ ring the host fills and the CQ ring
 * it drains, a request table in shared memory (CID = slot index), PRP lists
 * built into per-slot pages, and the doorbells.
 *
 * Submission writes the SQE under the queue lock, then rings the SQ tail
 * doorbell outside it (or, while plugged, leaves the doorbell for `unplug()`:
 * one write for many commands). Completions are reaped right after a doorbell
 * write (a memory namespace completes inside it) and from the CQ's interrupt;
 * the phase tag tells new entries from old ones, and the CQ head doorbell is
 * written once per batch.
 *
 * A queue pair may be shared by several threads (`attach()` in each). Then
 * any thread may submit, whichever thread reaps writes each completion into
 * its request slot, and the submitter, waiting on that slot, picks it up. When
 * one thread owns the queue (the common case) completions resolve directly,
 * without a shared-memory wait.
 *
 * With `metrics`, the pair counts into its row of the I/O counters
 * (`metrics/io-metrics.ts`) as it submits, rings and reaps, under the same
 * locks that order those steps on a shared pair; a command failed without a
 * completion (reset, shutdown, deletion) is counted as an error by the
 * thread it was outstanding in, when that thread fails it.
 *
 * Host words (Int32, shared by the threads using the pair):
 *
 * | word      | field                              | writer                          |
 * | --------- | ---------------------------------- | ------------------------------- |
 * | H_LOCK    | Mutex over SQ tail and CQ reaping  | any thread                      |
 * | H_SQ_TAIL | next SQ entry to fill              | submitter, under H_LOCK         |
 * | H_CQ_HEAD, H_CQ_PHASE | next CQE to read, its expected phase | reaper, under H_LOCK |
 * | H_DB_LOCK | Mutex ordering doorbell writes     | the thread writing a doorbell   |
 * | H_DEAD    | the pair was failed (reset, delete)| fail()                          |
 *
 * No doorbell write and no completion callback runs under H_LOCK. H_DB_LOCK
 * only keeps doorbell values monotonic when threads race to write them (each
 * writes the newest tail / head, read inside the lock). An unshared pair has
 * one thread on it, so it skips both locks and the request table's.
 */
import { debuglog } from 'node:util';
import type { Transport } from '../transport/transport.js';
import type { DmaArena, DmaBuffer } from '../dma-arena.js';
import { CQE_SIZE, PRP_ENTRY_SIZE, SQE_SIZE, Sqe, decodeCompletionWords, encodeCommandWords, type Command, type Completion } from '../spec/command.js';
import { cqHeadDoorbell, sqTailDoorbell } from '../spec/registers.js';
import { writeU64 } from '../spec/layout.js';
import { NvmqError, statusToError } from '../errors.js';
import { checkCallback, checkCommand, checkInteger, invalidArgument } from './arguments.js';
import { CACHE_LINE, RequestTable, SlotState, type RequestTableHandle } from '../shared/request-table.js';
import { Mutex } from '../shared/mutex.js';
import { sharedNow } from '../shared/clock.js';
import { IoMetrics, hostFailureIndex, type IoMetricsHandle, type QueueMetrics } from '../metrics/io-metrics.js';
import { MAX_SPIN_US } from '../uring/ring.js';

const SPIN_RANGE = `an integer from 0 to ${MAX_SPIN_US}`;

const trace = debuglog('nvmq');
const noop = (): void => {};

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

/** A command refused before it was queued: a rejected Promise, or its callback on a later microtask. */
function failed(err: Error, callback: CompletionCallback | undefined): Promise<Completion> | undefined {
  if (!callback) return Promise.reject(err);
  queueMicrotask(() => callback(err, undefined));
  return undefined;
}

/**
 * PRP list pages each request slot needs for transfers up to `maxTransfer`:
 * none up to two pages (PRP1 and PRP2 suffice); beyond, pageSize / 8 entries
 * a page, the last of which chains to the next page (4.3).
 */
function prpListPages(maxTransfer: number, pageSize: number): number {
  const perPage = pageSize / PRP_ENTRY_SIZE;
  const dataPages = Math.ceil(maxTransfer / pageSize) + 1;
  return dataPages <= 2 ? 0 : Math.max(1, Math.ceil((dataPages - 1) / (perPage - 1)));
}

/** `submit()`'s arguments: command fields (no raw SQE), data, and the length counted. */
function checkSubmission(cmd: unknown, data: unknown, length: unknown): void {
  checkCommand(cmd, data, false);
  if (length !== undefined) checkInteger('length', length, 0, Number.MAX_SAFE_INTEGER);
}

const H_LOCK = 0;
const H_SQ_TAIL = 1;
const H_CQ_HEAD = 2;
const H_CQ_PHASE = 3;
const H_DB_LOCK = 4;
const H_DEAD = 5;
const HOST_WORDS = 8;
/** Why the pair was failed, by H_DEAD's value (0: it was not); other threads rebuild the error from it. */
const DEAD_CODES: readonly string[] = ['', 'NVMQ_CONTROLLER_RESET', 'NVMQ_QUEUE_DELETED', 'NVMQ_CONTROLLER_SHUTDOWN'];
/** Longest a blocking free-slot wait blocks its thread before it waits asynchronously. */
const BLOCKING_WAIT_MS = 5;

/** Fields of a command; the queue pair assigns the CID and, when given data, the PRPs. */
export type CommandFields = Partial<Omit<Command, 'cid'>> & { opcode: number };

export interface DataSpec {
  /** Bytes to send (host → controller) or a buffer to fill (controller → host). */
  buffer: Uint8Array;
  direction: 'to-device' | 'from-device';
}

export interface QueuePairOptions {
  transport: Transport;
  qid: number;
  /** Entries in each ring (1's based). */
  entries: number;
  dstrd: number;
  /** Host memory page size (CC.MPS). */
  pageSize: number;
  /** The largest transfer the host will build PRPs for. */
  maxTransfer: number;
  /** Request slots; at most entries - 1 (a full SQ keeps one slot empty). */
  slots?: number;
  /** Several threads will submit on this pair. */
  shared?: boolean;
  /**
   * Wait for a free request slot by reaping and then, on a shared pair, with
   * Atomics.wait for a few milliseconds (blocking the thread) before waiting
   * asynchronously.
   */
  blockingWait?: boolean;
  /** I/O counters to count this pair's commands into (its row is its QID). */
  metrics?: IoMetrics;
}

/** Everything another thread needs to use the same queue pair (structured-cloneable). */
export interface QueuePairHandle {
  qid: number;
  entries: number;
  dstrd: number;
  pageSize: number;
  maxTransfer: number;
  shared: boolean;
  sq: { offset: number; size: number };
  cq: { offset: number; size: number };
  prpPages: number[];
  prpPagesPerSlot: number;
  table: RequestTableHandle;
  host: SharedArrayBuffer;
  metrics: IoMetricsHandle | undefined;
}

/**
 * How the callback forms (`submitCallback`, `IoQueuePair.readCallback`...) report a command's end:
 * `err` null and the completion, or the error the Promise form would reject with (then `c` is the
 * completion when the controller posted one, undefined when the command never reached it).
 */
export type CompletionCallback = (err: Error | null, c: Completion | undefined) => void;

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
}

function view(arena: DmaArena, offset: number, size: number): DmaBuffer {
  return { iova: arena.iovaOf(offset), offset, size, bytes: new Uint8Array(arena.buffer, arena.skew + offset, size) };
}

export class QueuePair {
  readonly qid: number;
  readonly entries: number;
  readonly slots: number;
  readonly sq: DmaBuffer;
  readonly cq: DmaBuffer;
  readonly shared: boolean;
  /** This thread's counters: doorbell writes, completions found by polling vs interrupt, spurious CQEs. */
  readonly stats = { sqDoorbells: 0, cqDoorbells: 0, polled: 0, interrupted: 0, spurious: 0 };
  /** The largest transfer, in bytes, the pair builds PRPs for. */
  get maxTransfer(): number {
    return this.transferLimit;
  }
  readonly table: RequestTable;
  /** This pair's row of the I/O counters, when it has one. */
  readonly metrics: QueueMetrics | undefined;

  protected readonly transport: Transport;
  protected readonly arena: DmaArena;
  private readonly pageSize: number;
  private readonly dstrd: number;
  private readonly sqDoorbell: number;
  private readonly cqDoorbell: number;
  private readonly host: Int32Array;
  private readonly lock: Mutex;
  private readonly dbLock: Mutex;
  /** This thread's outstanding commands by CID (slots are reused: no allocation per command). */
  private readonly local: LocalSlot[] = [];
  /** PRP1 / PRP2 as `buildPrps` left them. */
  private prp1 = 0;
  private prp2 = 0;
  private readonly prpPages: DmaBuffer[];
  private prpPagesPerSlot: number;
  private transferLimit: number;
  private plugDepth = 0;
  /** See reap(). */
  private reaping = false;
  private reapAgain = false;
  /** Callbacks of completions reaped inside a submission call, run on a later microtask (see reap()). */
  private deferCallbacks = false;
  private deferred: Array<() => void> = [];
  private plugClock = 0;
  private unrung = 0;
  private readonly metricsHandle: IoMetricsHandle | undefined;
  /** Whether this object allocated the rings (and so releases them). */
  private readonly owner: boolean;
  /** See QueuePairOptions.blockingWait. */
  blockingWait: boolean;

  constructor(opts: QueuePairOptions, attach?: QueuePairHandle) {
    this.transport = opts.transport;
    this.arena = opts.transport.arena;
    this.qid = opts.qid;
    this.entries = opts.entries;
    this.pageSize = opts.pageSize;
    this.dstrd = opts.dstrd;
    this.transferLimit = opts.maxTransfer;
    this.sqDoorbell = sqTailDoorbell(opts.qid, opts.dstrd);
    this.cqDoorbell = cqHeadDoorbell(opts.qid, opts.dstrd);
    this.owner = !attach;
    this.blockingWait = opts.blockingWait ?? false;
    this.metricsHandle = attach ? attach.metrics : opts.metrics?.handle;
    if (attach) {
      this.shared = attach.shared;
      this.sq = view(this.arena, attach.sq.offset, attach.sq.size);
      this.cq = view(this.arena, attach.cq.offset, attach.cq.size);
      this.table = new RequestTable(attach.table);
      this.host = new Int32Array(attach.host, 0, HOST_WORDS);
      this.prpPagesPerSlot = attach.prpPagesPerSlot;
      this.prpPages = attach.prpPages.map((off) => view(this.arena, off, this.pageSize));
      this.metrics = attach.metrics && new IoMetrics(attach.metrics).queue(this.qid);
    } else {
      this.shared = opts.shared ?? false;
      const slots = Math.min(opts.slots ?? opts.entries - 1, opts.entries - 1, 0xffff);
      if (slots < 1) throw new RangeError(`queue ${opts.qid}: needs at least 2 entries, got ${opts.entries}`);
      this.sq = this.arena.alloc(opts.entries * SQE_SIZE);
      this.cq = this.arena.alloc(opts.entries * CQE_SIZE);
      this.table = RequestTable.create(slots);
      // Padded past a cache line: see CACHE_LINE.
      this.host = new Int32Array(new SharedArrayBuffer(HOST_WORDS * 4 + CACHE_LINE), 0, HOST_WORDS);
      this.host[H_CQ_PHASE] = 1;
      this.prpPagesPerSlot = prpListPages(this.maxTransfer, this.pageSize);
      this.prpPages = this.allocPrpPages(slots * this.prpPagesPerSlot);
      this.metrics = opts.metrics?.queue(this.qid);
      this.metrics?.opened();
    }
    this.slots = this.table.slots;
    this.lock = new Mutex(this.host, H_LOCK);
    this.dbLock = new Mutex(this.host, H_DB_LOCK);
    if (attach) void this.watchDead();
    // One thread on the pair: its locks would never be contended, so they are skipped.
    this.table.exclusive = !this.shared;
  }

  private allocPrpPages(n: number): DmaBuffer[] {
    const pages: DmaBuffer[] = [];
    try {
      for (let i = 0; i < n; i++) pages.push(this.arena.alloc(this.pageSize));
    } catch (e) {
      for (const p of pages) this.arena.release(p);
      throw e;
    }
    return pages;
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
    const perSlot = prpListPages(bytes, this.pageSize);
    if (perSlot !== this.prpPagesPerSlot) {
      const pages = this.allocPrpPages(this.slots * perSlot);
      for (const p of this.prpPages) this.arena.release(p);
      this.prpPages.splice(0, this.prpPages.length, ...pages);
      this.prpPagesPerSlot = perSlot;
    }
    this.transferLimit = bytes;
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
    const err = this.deadError()!;
    this.failAllLocal(err);
  }

  /** What `attach()` in another thread needs. */
  handle(): QueuePairHandle {
    return {
      qid: this.qid,
      entries: this.entries,
      dstrd: this.dstrd,
      pageSize: this.pageSize,
      maxTransfer: this.maxTransfer,
      shared: this.shared,
      sq: { offset: this.sq.offset, size: this.sq.size },
      cq: { offset: this.cq.offset, size: this.cq.size },
      prpPages: this.prpPages.map((p) => p.offset),
      prpPagesPerSlot: this.prpPagesPerSlot,
      table: this.table.handle,
      host: this.host.buffer as SharedArrayBuffer,
      metrics: this.metricsHandle,
    };
  }

  /** Commands submitted and not yet completed, across every thread using the pair. */
  get outstanding(): number {
    return this.slots - this.table.freeCount();
  }

  /** Delays SQ doorbell writes until the matching `unplug()` (doorbell batching). */
  plug(): void {
    // Commands of one plugged batch reach the controller together, at unplug: one clock reading serves them all.
    if (this.plugDepth++ === 0) this.plugClock = sharedNow();
  }

  unplug(): void {
    if (this.plugDepth === 0) throw new Error('unplug() without plug()');
    if (--this.plugDepth === 0 && this.unrung > 0) this.ringSq();
  }

  private deadError(): NvmqError | undefined {
    const code = DEAD_CODES[Atomics.load(this.host, H_DEAD)];
    if (!code) return undefined;
    if (code === 'NVMQ_QUEUE_DELETED') return new NvmqError(code, `I/O queue ${this.qid} was deleted`);
    return new NvmqError(code, code === 'NVMQ_CONTROLLER_SHUTDOWN' ? 'the controller was shut down' : 'the controller was reset');
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
    const dead = this.deadError();
    if (dead) return failed(dead, callback);
    const cid = this.table.tryAllocate();
    if (cid >= 0) return this.enqueueWithSlot(cid, cmd, data, throwOnError, length, callback);
    if (this.metrics) this.countWait(this.metrics);
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
    const later = this.table.allocateAsync();
    if (!callback) return later.then((got) => this.enqueueWithSlot(got, cmd, data, throwOnError, length)!);
    later.then(
      (got) => this.enqueueWithSlot(got, cmd, data, throwOnError, length, callback),
      (e: Error) => callback(e, undefined),
    );
    return undefined;
  }

  /** A submission found no free request slot (the slow path: the lock orders it with the other counting threads). */
  private countWait(m: QueueMetrics): void {
    if (this.shared) this.lock.lock();
    m.waited();
    if (this.shared) this.lock.unlock();
  }

  private enqueueWithSlot(cid: number, cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number, callback?: CompletionCallback): Promise<Completion> | undefined {
    let bounce: DmaBuffer | undefined;
    let readBack: Uint8Array | undefined;
    let prp1 = 0;
    let prp2 = 0;
    try {
      const late = this.deadError();
      if (late) throw late;
      if (data && data.buffer.length > 0) {
        if (data.buffer.length > this.transferLimit) {
          throw invalidArgument('data.buffer', `at most ${this.transferLimit} bytes (the queue's maximum transfer)`, data.buffer);
        }
        let region: Uint8Array = data.buffer;
        if (!this.arena.contains(data.buffer)) {
          // Bounce path: a buffer outside the DMA arena is copied through one inside it.
          bounce = this.arena.alloc(data.buffer.length);
          region = bounce.bytes.subarray(0, data.buffer.length);
          if (data.direction === 'to-device') region.set(data.buffer);
          else readBack = data.buffer;
        }
        this.buildPrps(cid, this.arena.iovaOf(this.arena.offsetOf(region)), region.length);
        prp1 = this.prp1;
        prp2 = this.prp2;
      }
    } catch (e) {
      if (bounce) this.arena.release(bounce);
      this.table.release(cid);
      return failed(e as Error, callback);
    }

    const raw = 'raw' in cmd;
    const opcode = raw ? (cmd.raw[0] ?? 0) : cmd.opcode;
    if (this.shared) this.lock.lock();
    try {
      const tail = this.host[H_SQ_TAIL]!;
      const at = this.sq.offset + tail * SQE_SIZE;
      const now = this.plugDepth > 0 ? this.plugClock : sharedNow();
      this.table.describe(cid, opcode, raw ? 0 : (cmd.nsid ?? 0), raw ? 0 : (cmd.cdw10 ?? 0) + (cmd.cdw11 ?? 0) * 0x1_0000_0000, length, now);
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
      // The tail moves only once the whole SQE is in place.
      Atomics.store(this.host, H_SQ_TAIL, (tail + 1) % this.entries);
      this.metrics?.submitted(now);
    } catch (e) {
      // A malformed field (a BigInt, say): nothing was queued.
      if (bounce) this.arena.release(bounce);
      this.table.release(cid);
      return failed(e as Error, callback);
    } finally {
      if (this.shared) this.lock.unlock();
    }
    let slot = this.local[cid];
    if (!slot) this.local[cid] = slot = { busy: false, resolve: noop, reject: noop, callback: undefined, bounce: undefined, readBack: undefined, opcode: -1 };
    slot.busy = true;
    slot.bounce = bounce;
    slot.readBack = readBack;
    slot.opcode = throwOnError ? opcode : -1;
    let done: Promise<Completion> | undefined;
    if (callback) slot.callback = callback;
    else {
      const s = slot;
      done = new Promise<Completion>((resolve, reject) => {
        s.resolve = resolve;
        s.reject = reject;
      });
    }
    this.unrung++;
    if (this.plugDepth === 0) this.ringSq();
    if (this.shared) void this.awaitSlot(cid);
    return done;
  }

  private ringSq(): void {
    this.unrung = 0;
    this.stats.sqDoorbells++;
    if (this.shared) this.dbLock.lock();
    try {
      this.metrics?.sqDoorbell();
      this.transport.write32(this.sqDoorbell, Atomics.load(this.host, H_SQ_TAIL));
    } finally {
      if (this.shared) this.dbLock.unlock();
    }
    // Poll straight away: a memory namespace has already completed.
    this.stats.polled += this.reap(false, true);
  }

  /**
   * Polled completion: lets the controller finish what the kernel has done
   * (no system call), then reaps the CQ. Returns the completions reaped.
   */
  poll(): number {
    this.transport.poll?.();
    const n = this.processCompletions();
    this.stats.polled += n;
    return n;
  }

  /**
   * Waits for completions by blocking the thread, as fio waits inside
   * io_uring_enter: no event-loop turn, no eventfd, no wake-up through
   * libuv. Blocks until the controller (in this thread) finishes an I/O or
   * `timeoutMs` passes, then reaps; callbacks of the callback forms run
   * inside this call. Returns the completions reaped.
   *
   * For a thread dedicated to I/O with nothing else to do: timers and
   * messages wait meanwhile. Returns at once, with what it could reap, when
   * nothing this thread executes can be waited for so (the portable data
   * path, a memory namespace, a controller in another thread): a caller
   * that got 0 should give the event loop a turn before waiting again.
   *
   * `spinUs` > 0 makes it hybrid polling: the thread first polls the ring
   * from user space for up to that many microseconds, and sleeps only if
   * nothing finished meanwhile. A completion caught so costs no sleep and no
   * wake-up, which on a virtual machine is most of a depth-1 I/O's latency
   * beyond the device's own; the price is a core kept busy while it spins.
   * A single wait lasts an hour at most (`Infinity` waits that long).
   */
  wait(timeoutMs = 10, spinUs = 0): number {
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) throw invalidArgument('wait: timeoutMs', 'a number of milliseconds >= 0', timeoutMs);
    checkInteger('wait: spinUs', spinUs, 0, MAX_SPIN_US, SPIN_RANGE);
    this.transport.wait?.(timeoutMs, spinUs);
    const n = this.processCompletions();
    this.stats.polled += n;
    return n;
  }

  /** The interrupt handler for this queue's vector. */
  onInterrupt(): void {
    this.stats.interrupted += this.reap(true);
  }

  /**
   * Reaps every new CQE (phase tag matches), then writes the CQ head doorbell
   * once. Returns how many. Each completion lands in its request slot; the
   * ones this thread submitted on an unshared pair are resolved here, after
   * the lock is dropped.
   */
  processCompletions(): number {
    return this.reap(false);
  }

  /**
   * processCompletions(), counted as found by polling or by the interrupt.
   * A completion callback that submits (and so reaps) again inside a reap
   * only leaves a note: the outer reap goes round once more, so a closed
   * loop of callbacks iterates instead of recursing. A reap that a
   * submission call started (`inSubmit`) defers the callbacks it would run
   * to a microtask: a callback never runs inside the call that submitted.
   */
  private reap(interrupt: boolean, inSubmit = false): number {
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
    if (this.deferred.length === 0) queueMicrotask(() => this.runDeferred());
    this.deferred.push(() => invoke(callback, err, c));
  }

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
        if (c.cid >= this.slots || this.table.state(c.cid) !== 1) {
          // The controller broke the spec: a CID nobody has outstanding.
          this.stats.spurious++;
          m?.spurious();
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
        m?.found(n, reaped, interrupt, now);
      }
    } finally {
      if (this.shared) this.lock.unlock();
    }
    if (n > 0) {
      this.stats.cqDoorbells++;
      if (this.shared) this.dbLock.lock();
      try {
        m?.cqDoorbell();
        this.transport.write32(this.cqDoorbell, Atomics.load(this.host, H_CQ_HEAD));
      } finally {
        if (this.shared) this.dbLock.unlock();
      }
    }
    for (const c of mine) this.finishLocal(c);
    return n;
  }

  /** Shared pairs: the submitter waits on its slot, whichever thread reaped it. */
  private async awaitSlot(cid: number): Promise<void> {
    await this.table.waitCompleted(cid);
    if (!this.local[cid]?.busy) return;
    const dead = Atomics.load(this.host, H_DEAD) !== 0 && this.table.status(cid) === -1;
    if (dead) return this.failLocal(cid, this.deadError()!);
    this.finishLocal({ dw0: this.table.dw0(cid), dw1: 0, sqhd: 0, sqid: this.qid, cid, status: this.table.status(cid), phase: 0 });
  }

  private finishLocal(c: Completion): void {
    const slot = this.local[c.cid];
    if (!slot?.busy) return;
    const { resolve, reject, callback, bounce, readBack, opcode } = slot;
    this.clearLocal(slot);
    if (bounce) {
      if (readBack && c.status === 0) readBack.set(bounce.bytes.subarray(0, readBack.length));
      this.arena.release(bounce);
    }
    this.table.release(c.cid);
    const err = opcode >= 0 && c.status !== 0 ? statusToError(c.status, { opcode, qid: this.qid, cid: c.cid }) : null;
    if (callback) this.callBack(callback, err, c);
    else if (err) reject(err);
    else resolve(c);
  }

  private failLocal(cid: number, err: Error): void {
    const slot = this.local[cid];
    if (!slot?.busy) return;
    const { reject, callback, bounce } = slot;
    this.clearLocal(slot);
    if (bounce) this.arena.release(bounce);
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
      // fail() marks the slots it finds submitted COMPLETED with status -1 (see awaitSlot()).
      if (state === SlotState.SUBMITTED || (state === SlotState.COMPLETED && this.table.status(cid) === -1)) {
        m.hostFailed(this.table, cid, hostFailureIndex((err as Partial<NvmqError>).code ?? ''));
      }
    } finally {
      if (this.shared) this.lock.unlock();
    }
  }

  private failAllLocal(err: Error): void {
    for (let cid = 0; cid < this.local.length; cid++) this.failLocal(cid, err);
  }

  /** Frees a local slot for the CID's next command, dropping what it held. */
  private clearLocal(slot: LocalSlot): void {
    slot.busy = false;
    slot.resolve = noop;
    slot.reject = noop;
    slot.callback = undefined;
    slot.bounce = undefined;
    slot.readBack = undefined;
  }

  /**
   * Leaves in `prp1` / `prp2` the PRPs for a contiguous region of the
   * arena. Beyond two pages PRP2 points at the slot's list pages, chained
   * when one page of entries is not enough (4.3).
   */
  private buildPrps(cid: number, iova: number, length: number): void {
    const ps = this.pageSize;
    const first = ps - (iova % ps);
    this.prp1 = iova;
    this.prp2 = 0;
    if (length <= first) return;
    const rest = length - first;
    const second = iova + first;
    if (rest <= ps) {
      this.prp2 = second;
      return;
    }
    const pages = Math.ceil(rest / ps);
    const perPage = ps / PRP_ENTRY_SIZE;
    const dv = this.arena.view;
    let listIndex = cid * this.prpPagesPerSlot;
    let list = this.prpPages[listIndex]!;
    let slot = 0;
    for (let i = 0; i < pages; i++) {
      if (slot === perPage - 1 && pages - i > 1) {
        const next = this.prpPages[++listIndex]!;
        writeU64(dv, list.offset + slot * PRP_ENTRY_SIZE, next.iova);
        list = next;
        slot = 0;
      }
      writeU64(dv, list.offset + slot * PRP_ENTRY_SIZE, second + i * ps);
      slot++;
    }
    this.prp2 = this.prpPages[cid * this.prpPagesPerSlot]!.iova;
  }

  /**
   * Fails every outstanding command (controller reset, queue deleted); the
   * pair is unusable afterwards, in every thread. Call only once the
   * controller can no longer write to the pair's buffers (CSTS.RDY clear, or
   * the queue deleted).
   */
  fail(err: NvmqError): void {
    Atomics.store(this.host, H_DEAD, Math.max(1, DEAD_CODES.indexOf(err.code)));
    Atomics.notify(this.host, H_DEAD);
    this.metrics?.failed(sharedNow());
    this.failAllLocal(err);
    // Submitters in other threads wait on their slots: complete them with a marker they recognise.
    for (let cid = 0; cid < this.slots; cid++) if (this.table.state(cid) === 1) this.table.complete(cid, -1, 0);
  }

  /** Returns ring and PRP memory to the arena (the thread that created the pair). */
  releaseMemory(): void {
    if (!this.owner) return;
    this.arena.release(this.sq);
    this.arena.release(this.cq);
    for (const p of this.prpPages) this.arena.release(p);
    this.prpPages.length = 0;
  }
}
