/**
 * The queue executor: what a thread that rings a doorbell runs. A doorbell
 * write fetches the commands a new SQ tail exposes (while their CQ has room),
 * executes each through its command set's handler, and posts the completion
 * once the command's backend operations are done, raising the CQ's vector.
 * Memory namespaces complete inside the doorbell write; file namespaces later,
 * from their backend's callback or this thread's io_uring.
 *
 * Every thread that executes queues has one executor over the same shared
 * state (shared-state.ts); the main thread's also serves the admin queue
 * (`serveAdmin`). Commands normally arrive through an SQ in the DMA arena;
 * `submit()` runs one that arrived some other way, completing to its CQ;
 * `submitDirect()` an I/O command (an NVMe/TCP capsule) with its data in
 * a buffer and its completion to a callback in place of the CQ.
 */
import { performance } from 'node:perf_hooks';
import { debuglog } from 'node:util';
import type { DmaArena } from '../dma-arena.js';
import type { Namespace } from './namespace.js';
import type { ControllerConfig } from './config.js';
import type { SharedState } from './shared-state.js';
import type { Interrupts } from './interrupts.js';
import type { ErrorLog, HealthCounters } from './health.js';
import { byOpcode, type AdminContext, type CommandEntry, type IoContext, type QueueControl } from './context.js';
import type { BlockIo, IoDone } from './backends/backend.js';
import { BackendError } from '../errors.js';
import { MemoryBackend } from './backends/memory.js';
import { CompletionQueue, ExecutingRequests, SubmissionQueue, type DirectDone, type Request } from './queues.js';
import { DOORBELL_BASE, Cap, Regs, pageSizeOf } from '../spec/registers.js';
import { readField } from '../spec/layout.js';
import { CQE_SIZE, SQE_SIZE, decodeCommandWords, postCompletionWords, type Command } from '../spec/command.js';
import { opcodeName } from '../spec/opcodes.js';
import { AsyncEventType, AsyncErrorInfo, LogPageId } from '../spec/log-pages.js';
import { statusCode, formatStatus } from '../spec/status.js';
import { ABORTED_SQ_DELETION, COMMAND_INTERRUPTED, HELD, INTERNAL_ERROR, INVALID_FIELD, INVALID_OPCODE, backendStatus } from './status.js';
import { eventWord } from './admin-state.js';
import { directData, mapPrps, gather, scatter } from './prp.js';
import type { RingSet } from '../uring/ring-set.js';

const trace = debuglog('nvmq');

/** NSIDs up to this are looked up in an array. */
const MAX_INDEXED_NSID = 1024;

export interface ExecutorParts {
  config: ControllerConfig;
  shared: SharedState;
  arena: DmaArena;
  namespaces: ReadonlyMap<number, Namespace>;
  health: HealthCounters;
  errorLog: ErrorLog;
  interrupts: Interrupts;
  /** This thread's slot (0: the main thread): its in-flight count and SMART row. */
  threadSlot: number;
  /** The I/O command set. */
  ioCommands: ReadonlyMap<number, CommandEntry<IoContext>>;
  /** This thread's io_uring instances, when file namespaces take the io_uring path. */
  rings: RingSet | undefined;
  /** Raises an asynchronous event (its completion DW0) where the admin queue runs. */
  raiseEvent: (dw0: number) => void;
}

export class QueueExecutor implements QueueControl {
  readonly namespaces: ReadonlyMap<number, Namespace>;
  private readonly shared: SharedState;
  private readonly arena: DmaArena;
  private readonly health: HealthCounters;
  private readonly errorLog: ErrorLog;
  private readonly interrupts: Interrupts;
  private readonly raiseEvent: (dw0: number) => void;
  private readonly rings: RingSet | undefined;
  private readonly ioHandlers: Array<CommandEntry<IoContext> | undefined>;
  /** Set on the thread that serves the admin queue. */
  private admin: { handlers: Array<CommandEntry<AdminContext> | undefined>; ctx: AdminContext } | undefined;
  /** Namespaces by NSID for the per-command lookup (NSIDs up to MAX_INDEXED_NSID; larger ones go through the Map). */
  private readonly nsByNsid: Array<Namespace | undefined> = [];
  private readonly sqViews: SubmissionQueue[] = [];
  private readonly cqViews: CompletionQueue[] = [];
  /** Requests this thread has fetched and is waiting on backend operations for (for Abort). */
  private readonly mine = new ExecutingRequests();
  /** This thread's in-flight count among the shared globals. */
  private readonly threadWord: number;
  private readonly doorbellStride: number;
  private readonly mdts: number;
  private maxTransferBytes: number | undefined;
  /** One clock reading per doorbell, for busy-time accounting. */
  private clock: number | undefined;
  /** plug() depth, and the SQs whose io_uring submission waits for the last unplug(). */
  private plugs = 0;
  private readonly unsubmitted: number[] = [];

  constructor(p: ExecutorParts) {
    this.shared = p.shared;
    this.arena = p.arena;
    this.namespaces = p.namespaces;
    this.health = p.health;
    this.errorLog = p.errorLog;
    this.interrupts = p.interrupts;
    this.raiseEvent = p.raiseEvent;
    this.rings = p.rings;
    this.ioHandlers = byOpcode(p.ioCommands);
    this.threadWord = p.shared.threadWord(p.threadSlot);
    this.doorbellStride = 4 << p.config.dstrd;
    this.mdts = p.config.mdts;
    for (const ns of p.namespaces.values()) if (ns.nsid <= MAX_INDEXED_NSID) this.nsByNsid[ns.nsid] = ns;
  }

  /** Makes this executor serve the admin queue as well (the main thread's). */
  serveAdmin(table: ReadonlyMap<number, CommandEntry<AdminContext>>, ctx: AdminContext): void {
    this.admin = { handlers: byOpcode(table), ctx };
  }

  // ---------------------------------------------------------------- lookups

  namespace(nsid: number): Namespace | undefined {
    return nsid <= MAX_INDEXED_NSID ? this.nsByNsid[nsid] : this.namespaces.get(nsid);
  }

  /** Whether commands of namespace `nsid` complete inside the call that runs them (memory): a direct command's data may then be any memory, used only during the call. */
  completesInline(nsid: number): boolean {
    return this.namespace(nsid)?.backend instanceof MemoryBackend;
  }

  get writeCacheEnabled(): boolean {
    return this.shared.writeCacheEnabled;
  }

  sq(qid: number): SubmissionQueue | undefined {
    if (!Number.isInteger(qid) || qid < 0 || qid > this.shared.queues.maxQid) return undefined;
    const v = (this.sqViews[qid] ??= new SubmissionQueue(this.shared.queues, qid));
    return v.valid ? v : undefined;
  }

  cq(qid: number): CompletionQueue | undefined {
    if (!Number.isInteger(qid) || qid < 0 || qid > this.shared.queues.maxQid) return undefined;
    const v = (this.cqViews[qid] ??= new CompletionQueue(this.shared.queues, qid));
    return v.valid ? v : undefined;
  }

  sqSlot(qid: number): SubmissionQueue {
    return (this.sqViews[qid] ??= new SubmissionQueue(this.shared.queues, qid));
  }

  cqSlot(qid: number): CompletionQueue {
    return (this.cqViews[qid] ??= new CompletionQueue(this.shared.queues, qid));
  }

  requestsOf(qid: number): readonly Request[] {
    return this.mine.of(qid);
  }

  // ---------------------------------------------------------------- doorbells

  /** A write to BAR `offset` at or past DOORBELL_BASE: a doorbell, or an invalid-doorbell event when it names none. */
  doorbell(offset: number, value: number): void {
    const rel = offset - DOORBELL_BASE;
    if (rel % this.doorbellStride !== 0 || offset + 4 > this.shared.bar.byteLength) {
      return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_REGISTER, `write to 0x${offset.toString(16)}, not a doorbell`);
    }
    Atomics.store(this.shared.barWords, offset >> 2, value | 0);
    const index = rel / this.doorbellStride;
    const qid = index >> 1;
    if (!this.shared.ready || (qid === 0 && !this.admin)) {
      trace('host broke the spec: doorbell 0x%s written while the controller is not ready', offset.toString(16));
      return;
    }
    if (index & 1) this.writeCqHead(qid, value);
    else this.writeSqTail(qid, value);
  }

  private invalidDoorbell(info: number, why: string): void {
    trace('host broke the spec: %s', why);
    this.raiseEvent(eventWord(AsyncEventType.ERROR, info, LogPageId.ERROR_INFORMATION));
  }

  private writeSqTail(qid: number, tail: number): void {
    const sq = this.sq(qid);
    if (!sq || sq.deleting) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_REGISTER, `SQ ${qid} tail doorbell, but SQ ${qid} does not exist`);
    if (tail >= sq.size) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_VALUE, `SQ ${qid} tail ${tail} >= size ${sq.size}`);
    sq.tail = tail;
    this.processSq(sq);
  }

  private writeCqHead(qid: number, head: number): void {
    const cq = this.cq(qid);
    if (!cq) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_REGISTER, `CQ ${qid} head doorbell, but CQ ${qid} does not exist`);
    const stalled = cq.consume(head);
    if (stalled < 0) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_VALUE, `CQ ${qid} head ${head} past the posted entries`);
    // Room again after a fetch stopped for it: fetch what the SQs posting here left waiting.
    if (stalled === 1) {
      for (let q = 0; q <= this.shared.queues.maxQid; q++) {
        const sq = this.sq(q);
        if (sq && sq.cqid === qid && sq.tail !== sq.head) this.processSq(sq);
      }
    }
  }

  /**
   * Fetches and executes the commands between the SQ's head and tail, while
   * its CQ has room for their completions. One thread fetches a queue at a
   * time; a thread that finds another fetching leaves it a note to look again.
   */
  private processSq(sq: SubmissionQueue): void {
    const cq = this.cq(sq.cqid);
    if (cq) this.run(sq, cq, undefined, 0);
  }

  /**
   * Runs what one doorbell (or one submit) brings: fetches `sq` (`one`
   * undefined), or executes `one` in `epoch`. One clock reading serves every
   * command it runs to completion, and one io_uring_enter submits everything
   * staged; what the kernel completes inline (page-cache hits) is timed with
   * the same clock, as a memory namespace's commands are.
   */
  private run(sq: SubmissionQueue, cq: CompletionQueue, one: Command | undefined, epoch: number, data?: Uint8Array[], done?: DirectDone): void {
    const outer = this.clock === undefined;
    if (outer) this.clock = performance.now();
    try {
      if (one) this.execute(sq, cq, one, epoch, data, done);
      else this.fetchAll(sq, cq);
    } finally {
      try {
        if (this.plugs === 0) this.rings?.submit(sq.qid);
        else if (!this.unsubmitted.includes(sq.qid)) this.unsubmitted.push(sq.qid);
      } finally {
        if (outer) this.clock = undefined;
      }
    }
  }

  /** Until the last unplug(), submitDirect()'s io_uring operations wait: one io_uring_enter (and clock reading) for a batch, as for a doorbell. */
  plug(): void {
    if (this.plugs++ === 0 && this.clock === undefined) this.clock = performance.now();
  }

  unplug(): void {
    if (this.plugs === 0 || --this.plugs > 0) return;
    try {
      for (let qid = this.unsubmitted.pop(); qid !== undefined; qid = this.unsubmitted.pop()) this.rings?.submit(qid);
    } finally {
      this.clock = undefined;
    }
  }

  /** Time for busy-time accounting: the doorbell's clock while one runs, else now. */
  private now(): number {
    return this.clock ?? performance.now();
  }

  private fetchAll(sq: SubmissionQueue, cq: CompletionQueue): void {
    do {
      if (!sq.lock.tryLock()) {
        sq.requestRerun();
        // The holder may have checked for a rerun just before our note: try once more.
        if (!sq.lock.tryLock()) return;
      }
      try {
        sq.takeRerun();
        for (;;) {
          const waiting = (sq.tail - sq.head + sq.size) % sq.size;
          if (waiting === 0) break;
          const epoch = this.shared.epoch;
          const n = this.admit(sq, cq, waiting, epoch);
          if (n === 0) break;
          for (let i = 0; i < n; i++) {
            const head = sq.head;
            sq.head = (head + 1) % sq.size;
            this.execute(sq, cq, decodeCommandWords(this.arena.u32, (sq.offset + head * SQE_SIZE) >> 2), epoch);
          }
        }
      } finally {
        sq.lock.unlock();
      }
    } while (sq.takeRerun());
  }

  /**
   * Takes up to `wanted` commands of `sq` in, to run in `epoch`: room in its
   * CQ for as many as fit, reserved in one step, and counted in flight.
   * Returns how many; 0 when none can run (no room, the queue going away, the
   * controller not ready or reset since `epoch` was read).
   */
  private admit(sq: SubmissionQueue, cq: CompletionQueue, wanted: number, epoch: number, reserve = true): number {
    const n = reserve ? cq.reserve(wanted) : wanted;
    if (n === 0) return 0;
    // Count them in flight before the last checks: a Delete I/O SQ or a reset that reads the counts
    // after this either sees them or finds the queue / controller state that stops the fetch.
    sq.addInflight(n);
    this.shared.enter(this.threadWord, n);
    if (!this.shared.ready || !sq.valid || sq.deleting || this.shared.epoch !== epoch) {
      if (reserve) cq.unreserve(n);
      this.leave(sq, n);
      return 0;
    }
    return n;
  }

  /**
   * Executes `cmd` as a command of I/O or admin queue `sq` that arrived other
   * than through the SQ's ring in the arena: its completion goes to the SQ's
   * CQ like any other. Returns false, and runs nothing, when the CQ has no
   * room or the queue or controller cannot take commands now.
   */
  submit(sq: SubmissionQueue, cmd: Command): boolean {
    const cq = this.cq(sq.cqid);
    if (!cq || (sq.qid === 0 && !this.admin)) return false;
    const epoch = this.shared.epoch;
    if (this.admit(sq, cq, 1, epoch) === 0) return false;
    this.run(sq, cq, cmd, epoch);
    return true;
  }

  /**
   * Executes I/O command `sqe` (16 words) for I/O SQ `qid` of this thread without its ring: an NVMe/TCP
   * capsule whose data pointer the transport resolved into `data`. PSDT and DPTR are ignored; the handlers
   * map `data` where they map PRPs (PRP1 = its offset, for the alignment check). Same handlers, statuses,
   * SMART counters and error log as a fetched command, counted in flight on the SQ and this thread (a
   * Delete I/O SQ, reset or close drains it); its CID is the caller's (not marked, not found by Abort).
   * `done` gets status and DW0 once, inside this call when the backend completes at once (memory); one a
   * reset overtook gets Command Interrupted, one its SQ's deletion overtook Command Aborted due to SQ
   * Deletion (its host may retry either). False, running nothing, when the
   * queue or controller cannot take commands now.
   */
  submitDirect(qid: number, sqe: Uint32Array, data: Uint8Array | undefined, done: DirectDone): boolean {
    const sq = qid > 0 ? this.sq(qid) : undefined;
    const cq = sq && this.cq(sq.cqid);
    const epoch = this.shared.epoch;
    // Admitted without room in the CQ: nothing is posted there.
    if (!sq || !cq || this.admit(sq, cq, 1, epoch, false) === 0) return false;
    const cmd = decodeCommandWords(sqe, 0);
    cmd.psdt = 0;
    // A DMA buffer's offset from the arena's page-aligned start, as a PRP would give it, so the alignment
    // check sees the address the backend gets (every thread's view of the arena has the same skew). A view
    // of received bytes (not shared memory) goes only to a memory namespace, which needs no alignment.
    cmd.prp1 = data ? data.byteOffset - (data.buffer instanceof SharedArrayBuffer ? this.arena.skew : 0) : 0;
    cmd.prp2 = 0;
    this.run(sq, cq, cmd, epoch, data && data.length > 0 ? [data] : [], done);
    return true;
  }

  // ---------------------------------------------------------------- execution

  /** Runs a fetched command; admit() has already counted it in flight. */
  private execute(sq: SubmissionQueue, cq: CompletionQueue, cmd: Command, epoch: number, data?: Uint8Array[], direct?: DirectDone): void {
    const io = sq.qid !== 0;
    const req: Request = { sq, cq, cmd, epoch, io, status: 0, forced: 0, dw0: 0, pending: 1, done: false, lba: 0, bytes: 0, listed: -1, data, direct };
    if (!direct) this.shared.markCid(sq.qid, cmd.cid);
    if (io) this.health.ioStarted(this.now());
    let status: number;
    try {
      if (cmd.fuse !== 0 || cmd.psdt !== 0) {
        // Fused operations and SGLs are not supported (Identify FUSES = 0, SGLS = 0).
        status = INVALID_FIELD;
      } else if (io) {
        const entry = this.ioHandlers[cmd.opcode];
        status = entry ? entry.handler(this, req) : INVALID_OPCODE;
      } else {
        const entry = this.admin!.handlers[cmd.opcode];
        status = entry ? entry.handler(this.admin!.ctx, req) : INVALID_OPCODE;
      }
    } catch (e) {
      trace('internal error in %s: %s', opcodeName(cmd.opcode, !io), (e as Error).stack);
      status = INTERNAL_ERROR;
    }
    if (status === HELD) return;
    // Still waiting for backend operations: Abort may look for it. (A command that completed inside the
    // dispatch never needs finding, so the common memory case skips the bookkeeping.)
    if (req.pending > 1 && !direct) this.mine.add(req);
    this.release(req, status);
  }

  blockIo(req: Request, ns: Namespace): BlockIo {
    return this.rings?.active ? this.rings.io(req.sq, ns.index) : ns.backend;
  }

  backendOp(req: Request, op: (done: IoDone) => void): void {
    req.pending++;
    let called = false;
    const done: IoDone = (err) => {
      if (called) return;
      called = true;
      this.release(req, err ? backendStatus(err) : 0);
    };
    try {
      op(done);
    } catch (e) {
      done(new BackendError('internal', `backend threw: ${(e as Error).message}`));
    }
  }

  release(req: Request, status: number): void {
    if (status !== 0 && (req.status === 0 || statusCode(status) === statusCode(INTERNAL_ERROR))) req.status = status;
    if (--req.pending === 0) this.finish(req);
  }

  detach(req: Request): void {
    this.shared.forgetCid(req.sq.qid, req.cmd.cid);
    this.mine.remove(req);
    this.leave(req.sq);
  }

  /** One command fewer in flight on `sq`: wakes a Delete I/O SQ or a reset waiting for the count to drain. */
  private leave(sq: SubmissionQueue, n = 1): void {
    // Only Delete I/O SQ waits on an SQ's count, and only a drain (reset, shutdown, close) on the threads' counts.
    if (sq.addInflight(-n) === 0 && sq.deleting) Atomics.notify(sq.words, sq.inflightIndex);
    this.shared.leave(this.threadWord, n);
  }

  private finish(req: Request): void {
    if (req.done) return;
    req.done = true;
    const sq = req.sq;
    const direct = req.direct;
    if (!direct) this.shared.forgetCid(sq.qid, req.cmd.cid);
    this.mine.remove(req);
    // A command still executing when its SQ was deleted completes as aborted (5.6).
    const status = req.forced || (sq.deleting ? ABORTED_SQ_DELETION : 0) || req.status;
    if (req.io) {
      this.health.ioFinished(this.now());
      this.health.countIo(req.cmd.opcode, req.bytes, status);
    }
    const current = req.epoch === this.shared.epoch && req.cq.valid;
    if (current && status !== 0) trace('%s qid %d cid %d%s: %s', opcodeName(req.cmd.opcode, !req.io), sq.qid, req.cmd.cid, direct ? ' (direct)' : '', formatStatus(status));
    if (current && !direct) this.postCompletion(req, status);
    else if (current && status !== 0) this.recordError(req, status, 0);
    this.leave(sq);
    // A direct command a reset overtook (another epoch, or its CQ gone): the caller's host may retry it.
    direct?.(current ? status : COMMAND_INTERRUPTED, req.dw0);
  }

  postCompletion(req: Request, status: number): void {
    const { sq, cq } = req;
    const cid = req.cmd.cid;
    cq.lock.lock();
    const phase = cq.phase;
    postCompletionWords(this.arena.u32, (cq.offset + cq.tail * CQE_SIZE) >> 2, { dw0: req.dw0, dw1: 0, sqhd: sq.head, sqid: sq.qid, cid, status, phase });
    cq.tail++;
    if (cq.tail === cq.size) {
      cq.tail = 0;
      cq.phase ^= 1;
    }
    cq.lock.unlock();
    if (status !== 0) this.recordError(req, status, phase);
    if (cq.interruptsEnabled) this.interrupts.raise(cq.vector);
  }

  private recordError(req: Request, status: number, phase: number): void {
    this.errorLog.record({ sqid: req.sq.qid, cid: req.cmd.cid, status, phase, nsid: req.cmd.nsid, lba: req.lba, paramErrorLocation: 0xffff });
  }

  /**
   * Forgets the commands of an SQ whose only executing thread died: their
   * backend callbacks will never run, so a Delete I/O SQ would wait for them
   * forever. Each completes as the Delete I/O SQ that follows would have
   * completed it: aborted, into the room its fetch reserved. (The thread's
   * count goes with SharedState.abandonSlot.)
   */
  abandonInflight(qid: number): number {
    const sq = this.sq(qid);
    if (!sq) return 0;
    const n = Atomics.exchange(sq.words, sq.inflightIndex, 0);
    const cq = this.cq(sq.cqid);
    for (const cid of this.shared.takeCids(qid)) {
      if (!cq) continue;
      const cmd = decodeCommandWords(new Uint32Array(16), 0);
      cmd.cid = cid;
      this.postCompletion({ sq, cq, cmd, epoch: this.shared.epoch, io: true, status: 0, forced: 0, dw0: 0, pending: 0, done: true, lba: 0, bytes: 0, listed: -1, data: undefined, direct: undefined }, ABORTED_SQ_DELETION);
    }
    if (n > 0) Atomics.notify(sq.words, sq.inflightIndex);
    return n;
  }

  // ---------------------------------------------------------------- io_uring

  retireRing(qid: number): void {
    this.rings?.retire(qid);
  }

  retireRings(): void {
    this.rings?.retireAll();
  }

  waitRings(timeoutMs: number, spinUs = 0): number {
    return this.rings?.wait(timeoutMs, spinUs) ?? 0;
  }

  pollRings(): number {
    return this.rings?.poll() ?? 0;
  }

  // ---------------------------------------------------------------- data transfer

  get maxTransfer(): number {
    // CAP.MPSMIN is fixed at construction: computed once, not per command.
    return (this.maxTransferBytes ??= this.mdts === 0 ? Infinity : (1 << this.mdts) * pageSizeOf(readField(this.shared.regs, Regs.CAP_LO.offset, Cap.MPSMIN)));
  }

  mapData(req: Request, length: number): { status: number; segments: Uint8Array[] } {
    if (length > this.maxTransfer) return { status: INVALID_FIELD, segments: [] };
    if (req.data) return directData(req.data, length);
    return mapPrps(this.arena, req.cmd.prp1, req.cmd.prp2, length, this.shared.pageSize);
  }

  sendToHost(req: Request, data: Uint8Array, length = data.length): number {
    const m = this.mapData(req, length);
    if (m.status) return m.status;
    scatter(m.segments, data);
    return 0;
  }

  receiveFromHost(req: Request, length: number): { status: number; data: Uint8Array } {
    const m = this.mapData(req, length);
    if (m.status) return { status: m.status, data: new Uint8Array(0) };
    return { status: 0, data: gather(m.segments, length) };
  }
}
