/**
 * The host driver: brings a controller up through its registers (NVMe 1.4,
 * section 7.6.1), runs the admin queue, identifies the controller and its
 * namespaces, negotiates features, creates and deletes I/O queue pairs, and
 * shuts the controller down (7.6.2).
 */
import { debuglog } from 'node:util';
import type { Transport } from '../transport/transport.js';
import { QueuePair, type CommandFields, type DataSpec } from './queue-pair.js';
import { IoQueuePair } from './io-queue-pair.js';
import { NvmqError } from '../errors.js';
import { parseErrorLog, parseIdentifyController, parseIdentifyNamespace, parseSmartLog, type ControllerInfo, type ErrorLogRecord, type NamespaceInfo, type SmartHealth } from './identify.js';
import { Aqa, Cap, Cc, Csts, Regs, ShutdownNotification, ShutdownStatus, CAP_TO_UNIT_MS, pageSizeOf } from '../spec/registers.js';
import { bitsOf, withBits } from '../spec/layout.js';
import { SQE_SIZE_LOG2, CQE_SIZE_LOG2, type Completion } from '../spec/command.js';
import { AdminOpcode } from '../spec/opcodes.js';
import { Cns, IDENTIFY_DATA_SIZE, ACTIVE_NS_LIST_ENTRIES } from '../spec/identify.js';
import { FeatureId, NumberOfQueuesDw } from '../spec/features.js';
import { LogPageId, SMART_LOG_SIZE, AsyncEventDw0 } from '../spec/log-pages.js';
import { AbortCdw10, CreateCqCdw10, CreateCqCdw11, CreateSqCdw10, CreateSqCdw11 } from '../spec/admin-commands.js';
import { DEFAULT_ADMIN_TIMEOUT_MS, DEFAULT_IO_TIMEOUT_MS, checkTimeout, type DeadlineHandlers, type ExpiredCommand } from './deadlines.js';
import type { DriverOptions, IoQueuePairOptions } from './driver-options.js';

const trace = debuglog('nvmq');

export type { AsyncEvent, DriverOptions, IoQueuePairOptions } from './driver-options.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class NvmeDriver {
  readonly transport: Transport;
  /** CAP fields read at bring-up. */
  readonly cap: { mqes: number; timeoutMs: number; dstrd: number; mpsMin: number; mpsMax: number; cqr: boolean };
  controller!: ControllerInfo;
  readonly namespaces = new Map<number, NamespaceInfo>();
  /** I/O queues granted by Number of Queues. */
  grantedIoQueues = 0;
  private admin!: QueuePair;
  private readonly ioQueues = new Map<number, IoQueuePair>();
  /** QIDs whose completions other threads reap. */
  private readonly remoteReaped = new Set<number>();
  /** Pairs used by other threads, failed by a reset, whose memory is released once those threads are gone. */
  private readonly orphans: IoQueuePair[] = [];

  /**
   * Releases the memory of pairs other threads used before a reset (call
   * when those threads have stopped). Pairs `keep` names are left to the
   * caller, whose threads still hold them (their releaseMemory() is its to call).
   */
  releaseOrphans(keep: (qp: IoQueuePair) => boolean = () => false): void {
    for (const qp of this.orphans.splice(0)) if (!keep(qp)) qp.releaseMemory();
  }
  private readonly opts: DriverOptions;
  /** Command timeouts in ms, Infinity for none (DriverOptions.ioTimeoutMs, adminTimeoutMs). */
  readonly ioTimeoutMs: number;
  readonly adminTimeoutMs: number;
  /** How a command stuck past its deadline resets the controller: the engine puts its own reset here. */
  resetForTimeout: () => Promise<void> = () => this.reset();
  /** A fatal status (CSTS.CFS) the reset did not clear: every command fails with `err` until a reset by hand. The engine's 'failed'. */
  onFailed: (err: NvmqError) => void = (err) => trace('%s', err.message);
  /** Set while a reset asked for by a timeout runs: one reset serves every command stuck meanwhile. */
  private timeoutResetting = false;
  private readonly pageSize = 4096;
  /** 'failed': a reset did not clear a fatal controller status (`failure` says why). */
  private state: 'down' | 'up' | 'failed' | 'closed' = 'down';
  private failure: NvmqError | undefined;

  private constructor(transport: Transport, opts: DriverOptions) {
    this.transport = transport;
    this.opts = opts;
    this.ioTimeoutMs = checkTimeout('ioTimeoutMs', opts.ioTimeoutMs, DEFAULT_IO_TIMEOUT_MS);
    this.adminTimeoutMs = checkTimeout('adminTimeoutMs', opts.adminTimeoutMs, DEFAULT_ADMIN_TIMEOUT_MS);
    const lo = transport.read32(Regs.CAP_LO.offset);
    const hi = transport.read32(Regs.CAP_HI.offset);
    this.cap = {
      mqes: bitsOf(lo, Cap.MQES),
      timeoutMs: Math.max(1, bitsOf(lo, Cap.TO)) * CAP_TO_UNIT_MS,
      dstrd: bitsOf(hi, Cap.DSTRD),
      mpsMin: bitsOf(hi, Cap.MPSMIN),
      mpsMax: bitsOf(hi, Cap.MPSMAX),
      cqr: bitsOf(lo, Cap.CQR) === 1,
    };
  }

  /** Brings the controller up and identifies it: the spec's initialization sequence. */
  static async attach(transport: Transport, opts: DriverOptions = {}): Promise<NvmeDriver> {
    const d = new NvmeDriver(transport, opts);
    await d.initialize();
    return d;
  }

  private async initialize(): Promise<void> {
    const t = this.transport;
    if (pageSizeOf(this.cap.mpsMin) > this.pageSize || pageSizeOf(this.cap.mpsMax) < this.pageSize) {
      throw new NvmqError('NVMQ_UNSUPPORTED_CONTROLLER', `controller page sizes ${pageSizeOf(this.cap.mpsMin)}..${pageSizeOf(this.cap.mpsMax)} exclude ${this.pageSize}`);
    }
    // 1. Reset: clear CC.EN and wait for CSTS.RDY to follow.
    if (bitsOf(t.read32(Regs.CC.offset), Cc.EN) || bitsOf(t.read32(Regs.CSTS.offset), Csts.RDY)) {
      t.write32(Regs.CC.offset, 0);
    }
    await this.waitReady(0);

    // 2. Admin queue.
    const entries = Math.min(this.opts.adminQueueEntries ?? 32, this.cap.mqes + 1, 4096);
    // MDTS is known only once Identify Controller (4 KiB) has come back through this queue: room for that until then.
    this.admin = new QueuePair({ transport: t, qid: 0, entries, dstrd: this.cap.dstrd, pageSize: this.pageSize, maxTransfer: IDENTIFY_DATA_SIZE, timeoutMs: this.adminTimeoutMs, deadlines: this.deadlines });
    t.write32(Regs.AQA.offset, withBits(withBits(0, Aqa.ASQS, entries - 1), Aqa.ACQS, entries - 1));
    t.write64(Regs.ASQ.offset, this.admin.sq.iova);
    t.write64(Regs.ACQ.offset, this.admin.cq.iova);
    t.setInterruptHandler(0, () => this.admin.onInterrupt());
    // Masks set while the controller was disabled survive into this bring-up (a reset clears only the ones
    // set before it); this driver does not mask vectors, and a masked one would leave its completions unseen
    // until polled.
    t.write32(Regs.INTMC.offset, 0xffffffff);

    // 3. Enable with the NVM command set, 4 KiB pages, round robin, 64/16-byte entries.
    let cc = withBits(0, Cc.EN, 1);
    cc = withBits(cc, Cc.MPS, Math.log2(this.pageSize) - 12);
    cc = withBits(cc, Cc.IOSQES, SQE_SIZE_LOG2);
    cc = withBits(cc, Cc.IOCQES, CQE_SIZE_LOG2);
    t.write32(Regs.CC.offset, cc);
    await this.waitReady(1);
    this.state = 'up';
    this.failure = undefined;

    // 4. Identify, queues, features.
    const idc = await this.identify(Cns.CONTROLLER, 0);
    this.controller = parseIdentifyController(idc, this.cap.mpsMin);
    this.admin.setMaxTransfer(this.maxTransfer);
    await this.scanNamespaces();
    if (this.opts.ioQueues !== undefined) await this.setNumberOfQueues(this.opts.ioQueues);
    else this.grantedIoQueues = await this.getNumberOfQueues();
    if (this.opts.volatileWriteCache !== undefined) await this.setVolatileWriteCache(this.opts.volatileWriteCache);
    if (this.opts.onAsyncEvent) this.armAsyncEvent();
  }

  /** Waits for CSTS.RDY to equal `want`, within CAP.TO; CSTS.CFS ends the wait with an error. */
  private async waitReady(want: 0 | 1): Promise<void> {
    const deadline = Date.now() + this.cap.timeoutMs;
    let delay = 0;
    for (;;) {
      const csts = this.transport.read32(Regs.CSTS.offset);
      if (csts === 0xffffffff) throw new NvmqError('NVMQ_CONTROLLER_GONE', 'CSTS reads all ones: the controller is gone');
      if (want === 1 && bitsOf(csts, Csts.CFS)) throw new NvmqError('NVMQ_CONTROLLER_FATAL', 'controller reported a fatal status (CSTS.CFS) during enable');
      if (bitsOf(csts, Csts.RDY) === want) return;
      if (Date.now() > deadline) {
        throw new NvmqError('NVMQ_TIMEOUT', `CSTS.RDY did not become ${want} within CAP.TO (${this.cap.timeoutMs} ms)`);
      }
      await sleep(delay);
      delay = Math.min(delay * 2 + 1, 50);
    }
  }

  /** The largest transfer a queue pair takes: MDTS, or `maxTransferFallback` when the controller sets no limit. */
  private get maxTransfer(): number {
    return Number.isFinite(this.controller.maxTransferBytes) ? this.controller.maxTransferBytes : (this.opts.maxTransferFallback ?? 2 * 1024 * 1024);
  }

  private checkUp(): void {
    if (this.state === 'failed' && this.failure) throw this.failure;
    if (this.state !== 'up') throw new NvmqError('NVMQ_CONTROLLER_DOWN', `the controller is ${this.state === 'closed' ? 'shut down' : 'not ready'}`);
  }

  // ---------------------------------------------------------------- admin commands

  /** Raw admin command (as `nvme admin-passthru`): the whole completion, whatever its status. */
  adminPassthru(cmd: CommandFields | { raw: Uint8Array }, data?: DataSpec): Promise<Completion> {
    this.checkUp();
    return this.admin.submitRaw(cmd, data);
  }

  /** An admin command that throws the completion's status as a typed error. */
  adminCommand(cmd: CommandFields, data?: DataSpec): Promise<Completion> {
    this.checkUp();
    return this.admin.submit(cmd, data);
  }

  async identify(cns: number, nsid: number): Promise<Uint8Array> {
    const buffer = new Uint8Array(IDENTIFY_DATA_SIZE);
    await this.adminCommand({ opcode: AdminOpcode.IDENTIFY, nsid, cdw10: cns }, { buffer, direction: 'from-device' });
    return buffer;
  }

  async identifyNamespace(nsid: number): Promise<NamespaceInfo> {
    return parseIdentifyNamespace(nsid, await this.identify(Cns.NAMESPACE, nsid));
  }

  /** Active NSIDs, following the list past 1024 entries. */
  async activeNamespaceIds(): Promise<number[]> {
    const ids: number[] = [];
    let after = 0;
    for (;;) {
      const data = await this.identify(Cns.ACTIVE_NAMESPACE_LIST, after);
      const dv = new DataView(data.buffer);
      let n = 0;
      for (; n < ACTIVE_NS_LIST_ENTRIES; n++) {
        const id = dv.getUint32(n * 4, true);
        if (id === 0) break;
        ids.push(id);
      }
      if (n < ACTIVE_NS_LIST_ENTRIES) return ids;
      after = ids[ids.length - 1]!;
    }
  }

  private async scanNamespaces(): Promise<void> {
    this.namespaces.clear();
    for (const nsid of await this.activeNamespaceIds()) this.namespaces.set(nsid, await this.identifyNamespace(nsid));
  }

  async getFeature(fid: number, select = 0, cdw11 = 0): Promise<number> {
    const c = await this.adminCommand({ opcode: AdminOpcode.GET_FEATURES, cdw10: fid | (select << 8), cdw11 });
    return c.dw0;
  }

  async setFeature(fid: number, cdw11: number): Promise<number> {
    const c = await this.adminCommand({ opcode: AdminOpcode.SET_FEATURES, cdw10: fid, cdw11 });
    return c.dw0;
  }

  /** Asks for `n` I/O queue pairs; returns how many the controller granted. */
  async setNumberOfQueues(n: number): Promise<number> {
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `number of queues must be 1..65535, got ${n}`);
    const dw0 = await this.setFeature(FeatureId.NUMBER_OF_QUEUES, withBits(withBits(0, NumberOfQueuesDw.NSQ, n - 1), NumberOfQueuesDw.NCQ, n - 1));
    this.grantedIoQueues = Math.min(bitsOf(dw0, NumberOfQueuesDw.NSQ), bitsOf(dw0, NumberOfQueuesDw.NCQ)) + 1;
    return this.grantedIoQueues;
  }

  private async getNumberOfQueues(): Promise<number> {
    const dw0 = await this.getFeature(FeatureId.NUMBER_OF_QUEUES);
    return Math.min(bitsOf(dw0, NumberOfQueuesDw.NSQ), bitsOf(dw0, NumberOfQueuesDw.NCQ)) + 1;
  }

  async setVolatileWriteCache(enabled: boolean): Promise<void> {
    if (!(this.controller.vwc & 1)) {
      if (enabled) throw new NvmqError('NVMQ_UNSUPPORTED', 'the controller has no volatile write cache');
      return;
    }
    await this.setFeature(FeatureId.VOLATILE_WRITE_CACHE, enabled ? 1 : 0);
  }

  async getLogPage(lid: number, length: number, opts: { nsid?: number; offset?: number; retainAsyncEvent?: boolean } = {}): Promise<Uint8Array> {
    if (length <= 0 || length % 4 !== 0) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `log page length must be a positive multiple of 4, got ${length}`);
    const numd = length / 4 - 1;
    const offset = opts.offset ?? 0;
    const buffer = new Uint8Array(length);
    await this.adminCommand(
      {
        opcode: AdminOpcode.GET_LOG_PAGE,
        nsid: opts.nsid ?? 0xffffffff,
        cdw10: (lid | (opts.retainAsyncEvent ? 1 << 15 : 0) | ((numd & 0xffff) << 16)) >>> 0,
        cdw11: numd >>> 16,
        cdw12: offset % 0x1_0000_0000,
        cdw13: Math.floor(offset / 0x1_0000_0000),
      },
      { buffer, direction: 'from-device' },
    );
    return buffer;
  }

  async smartLog(): Promise<SmartHealth> {
    return parseSmartLog(await this.getLogPage(LogPageId.SMART_HEALTH, SMART_LOG_SIZE));
  }

  async errorLog(): Promise<ErrorLogRecord[]> {
    return parseErrorLog(await this.getLogPage(LogPageId.ERROR_INFORMATION, (this.controller.elpe + 1) * 64));
  }

  /** Keeps one AER outstanding; each completion is reported, then the next one is posted. */
  private armAsyncEvent(): void {
    const report = this.opts.onAsyncEvent;
    if (!report || this.state !== 'up') return;
    this.admin.submitRaw({ opcode: AdminOpcode.ASYNC_EVENT_REQUEST }).then(
      (c) => {
        if (c.status !== 0) return;
        report({ type: bitsOf(c.dw0, AsyncEventDw0.TYPE), info: bitsOf(c.dw0, AsyncEventDw0.INFO), logPage: bitsOf(c.dw0, AsyncEventDw0.LID) });
        this.armAsyncEvent();
      },
      (e: Error) => trace('AER ended: %s', e.message),
    );
  }

  // ---------------------------------------------------------------- timeouts

  /**
   * Sends Abort (admin opcode 08h) for command `cid` of SQ `sqid`; resolves
   * true when the controller found it (DW0 bit 0 clear): it then completes
   * with Command Abort Requested once its backend work stops.
   */
  async abort(sqid: number, cid: number): Promise<boolean> {
    const c = await this.adminCommand({ opcode: AdminOpcode.ABORT, cdw10: withBits(withBits(0, AbortCdw10.SQID, sqid), AbortCdw10.CID, cid) });
    return (c.dw0 & 1) === 0;
  }

  /** What this thread's pairs do about a command past its deadline (another thread's pairs ask through `expired()`). */
  private readonly deadlines: DeadlineHandlers = { onExpired: (e) => this.expired(e, false), onStuck: (e) => this.expired(e, true) };

  /**
   * A command past its deadline (`stuck`: and past its grace after the
   * Abort): an I/O command is aborted first; an admin command, or one the
   * Abort did not end, resets the controller, as Linux's nvme_timeout does.
   * So does any command when the controller reports a fatal status
   * (CSTS.CFS) or is gone (CSTS all ones): it would answer no Abort.
   */
  expired(e: ExpiredCommand, stuck: boolean): void {
    const fatal = this.state === 'up' && this.controllerFatal();
    if (!stuck && e.qid !== 0 && !fatal) {
      trace('qid %d cid %d (opcode %d) outstanding %d ms: abort', e.qid, e.cid, e.opcode, Math.round(e.elapsedMs));
      this.abort(e.qid, e.cid).then(
        (found) => trace('abort of qid %d cid %d: %s', e.qid, e.cid, found ? 'aborted' : 'not found'),
        (err: Error) => trace('abort of qid %d cid %d failed: %s', e.qid, e.cid, err.message),
      );
      return;
    }
    if (this.timeoutResetting || this.state !== 'up') return;
    trace('qid %d cid %d (opcode %d) outstanding %d ms%s: controller reset', e.qid, e.cid, e.opcode, Math.round(e.elapsedMs), fatal ? ', controller fatal status' : '');
    this.timeoutResetting = true;
    this.resetForTimeout()
      .catch((err: Error) => trace('reset after a timeout failed: %s', err.message))
      .finally(() => {
        this.timeoutResetting = false;
      });
  }

  /** Whether CSTS reports a fatal status (CFS) or reads all ones (the controller is gone). */
  private controllerFatal(): boolean {
    const csts = this.transport.read32(Regs.CSTS.offset);
    return csts === 0xffffffff || bitsOf(csts, Csts.CFS) === 1;
  }

  // ---------------------------------------------------------------- I/O queues

  /** Creates an I/O CQ and SQ (in that order) and returns the host side of the pair. */
  async createIoQueuePair(opts: IoQueuePairOptions = {}): Promise<IoQueuePair> {
    this.checkUp();
    // Default: 256, or what the controller allows (CAP.MQES + 1) when that is less.
    const entries = opts.entries ?? Math.min(256, this.cap.mqes + 1);
    if (!Number.isInteger(entries) || entries < 2 || entries > this.cap.mqes + 1) {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', `queue entries must be 2..${this.cap.mqes + 1} (CAP.MQES + 1), got ${entries}`);
    }
    let qid = opts.qid;
    const taken = (q: number): boolean => this.ioQueues.has(q) || this.creating.has(q);
    if (qid === undefined) {
      qid = 1;
      while (taken(qid)) qid++;
    }
    if (qid < 1 || qid > this.grantedIoQueues || taken(qid)) {
      throw new NvmqError('NVMQ_NO_QUEUE', `no I/O queue ${qid} to create: ${this.grantedIoQueues} granted, ${this.ioQueues.size + this.creating.size} in use`);
    }
    // Reserved until the pair exists or its creation failed: creations may overlap (threads asking at once).
    this.creating.add(qid);
    try {
      return await this.makeIoQueuePair(qid, entries, opts);
    } finally {
      this.creating.delete(qid);
    }
  }

  /** QIDs whose pair is being created. */
  private readonly creating = new Set<number>();
  /** Bumped when the controller is disabled (reset, shutdown): a pair whose creation spans it is not kept. */
  private generation = 0;

  private async makeIoQueuePair(qid: number, entries: number, opts: IoQueuePairOptions): Promise<IoQueuePair> {
    const generation = this.generation;
    const qp = new IoQueuePair({ transport: this.transport, qid, entries, dstrd: this.cap.dstrd, pageSize: this.pageSize, maxTransfer: this.maxTransfer, shared: opts.shared ?? false, metrics: opts.metrics, coalesce: opts.coalesce, timeoutMs: checkTimeout('timeoutMs', opts.timeoutMs, this.ioTimeoutMs), deadlines: this.deadlines }, this.namespaces);
    const vector = qid;
    try {
      await this.adminCommand({
        opcode: AdminOpcode.CREATE_IO_CQ,
        prp1: qp.cq.iova,
        cdw10: withBits(withBits(0, CreateCqCdw10.QID, qid), CreateCqCdw10.QSIZE, entries - 1),
        cdw11: this.transport.polled ? withBits(0, CreateCqCdw11.PC, 1) : withBits(withBits(withBits(0, CreateCqCdw11.PC, 1), CreateCqCdw11.IEN, 1), CreateCqCdw11.IV, vector), // polled: no interrupt (Transport.polled)
      });
      if (opts.reapHere === false) this.transport.queueOwnedElsewhere?.(qid); // connected there, by a transport that connects per thread
      try {
        await this.adminCommand({
          opcode: AdminOpcode.CREATE_IO_SQ,
          prp1: qp.sq.iova,
          cdw10: withBits(withBits(0, CreateSqCdw10.QID, qid), CreateSqCdw10.QSIZE, entries - 1),
          cdw11: withBits(withBits(0, CreateSqCdw11.PC, 1), CreateSqCdw11.CQID, qid),
        });
      } catch (e) {
        await this.adminCommand({ opcode: AdminOpcode.DELETE_IO_CQ, cdw10: qid });
        // A transport that makes queues its own way (a connection per queue) knows better what failed.
        throw this.transport.queueError?.(qid) ?? e;
      }
    } catch (e) {
      qp.releaseMemory();
      throw e;
    }
    if (generation !== this.generation) {
      // The controller was reset under the creation: the queue is gone with it, and disable() never saw this pair.
      const err = new NvmqError('NVMQ_CONTROLLER_RESET', `the controller was reset while I/O queue ${qid} was being created`);
      qp.fail(err);
      qp.releaseMemory();
      throw err;
    }
    if (opts.reapHere !== false) this.transport.setInterruptHandler(vector, () => qp.onInterrupt());
    else this.remoteReaped.add(qid);
    this.ioQueues.set(qid, qp);
    return qp;
  }

  /**
   * Deletes the SQ (its outstanding commands complete with Command Aborted due
   * to SQ Deletion), reaps them, then deletes the CQ.
   */
  async deleteIoQueuePair(qp: IoQueuePair): Promise<void> {
    if (this.ioQueues.get(qp.qid) !== qp) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `I/O queue ${qp.qid} does not belong to this driver`);
    this.ioQueues.delete(qp.qid);
    if (this.state === 'up') {
      await this.adminCommand({ opcode: AdminOpcode.DELETE_IO_SQ, cdw10: qp.qid });
      // The aborted commands' completions are in the CQ now: reap them before the CQ goes.
      if (!this.remoteReaped.has(qp.qid)) qp.processCompletions();
      await this.adminCommand({ opcode: AdminOpcode.DELETE_IO_CQ, cdw10: qp.qid });
    }
    this.remoteReaped.delete(qp.qid);
    this.transport.setInterruptHandler(qp.qid, undefined);
    qp.fail(new NvmqError('NVMQ_QUEUE_DELETED', `I/O queue ${qp.qid} was deleted`));
    qp.releaseMemory();
  }

  get ioQueuePairs(): readonly IoQueuePair[] {
    return [...this.ioQueues.values()];
  }

  /** I/O queues granted that no pair has, or is being created with. */
  get freeIoQueues(): number {
    return this.grantedIoQueues - this.ioQueues.size - this.creating.size;
  }

  // ---------------------------------------------------------------- reset and shutdown

  /**
   * Disables the controller (CC.EN = 0), waits for CSTS.RDY = 0 and fails every queue and command. One
   * that does not stop has its commands failed but keeps the memory it may still write; the error is thrown.
   */
  private async disable(reason: NvmqError): Promise<void> {
    this.state = 'down';
    this.generation++;
    this.transport.write32(Regs.CC.offset, withBits(this.transport.read32(Regs.CC.offset), Cc.EN, 0));
    let stuck: unknown;
    await this.waitReady(0).catch((e: unknown) => (stuck = e ?? new Error('the controller did not stop')));
    for (const qp of this.ioQueues.values()) {
      this.transport.setInterruptHandler(qp.qid, undefined);
      qp.fail(reason);
      if (stuck !== undefined) continue;
      // Other threads may still touch a pair they use until they see it failed: its memory waits for releaseOrphans().
      if (this.remoteReaped.has(qp.qid)) this.orphans.push(qp);
      else qp.releaseMemory();
    }
    this.ioQueues.clear();
    this.remoteReaped.clear();
    this.admin.fail(reason);
    if (stuck !== undefined) throw stuck;
    this.admin.releaseMemory();
  }

  /** Controller reset and a fresh bring-up; I/O queue pairs must be created again. */
  async reset(): Promise<void> {
    if (this.state === 'closed') throw new NvmqError('NVMQ_CONTROLLER_DOWN', 'the controller is shut down');
    try {
      await this.disable(new NvmqError('NVMQ_CONTROLLER_RESET', 'the controller was reset'));
      await this.transport.restart?.(); // a transport over a network makes a new association here
      await this.initialize();
    } catch (e) {
      throw this.outOfService(e) ?? e;
    }
  }

  /** A reset failed with the controller fatal or gone: out of service, said once (a remote one's loss is its link's). */
  private outOfService(e: unknown): NvmqError | undefined {
    const known = e instanceof NvmqError && (e.code === 'NVMQ_CONTROLLER_FATAL' || e.code === 'NVMQ_CONTROLLER_GONE');
    if (this.transport.restart || (!known && !this.controllerFatal())) return undefined;
    const why = `${known ? '' : 'the controller reports a fatal status (CSTS.CFS): '}${e instanceof Error ? e.message : String(e)}`;
    this.state = 'failed';
    this.failure = new NvmqError(known ? e.code : 'NVMQ_CONTROLLER_FATAL', `${why}; a controller reset did not clear it, so the controller is out of service`);
    this.onFailed(this.failure);
    return this.failure;
  }

  /**
   * Orderly shutdown: deletes the I/O queues, sets CC.SHN = normal, waits for
   * CSTS.SHST = complete (every namespace flushed), then disables.
   */
  async shutdown(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'up') {
      for (const qp of [...this.ioQueues.values()]) await this.deleteIoQueuePair(qp);
      const t = this.transport;
      t.write32(Regs.CC.offset, withBits(t.read32(Regs.CC.offset), Cc.SHN, ShutdownNotification.NORMAL));
      const deadline = Date.now() + Math.max(this.cap.timeoutMs, 10_000);
      let delay = 0;
      while (bitsOf(t.read32(Regs.CSTS.offset), Csts.SHST) !== ShutdownStatus.COMPLETE) {
        if (Date.now() > deadline) throw new NvmqError('NVMQ_TIMEOUT', 'shutdown did not complete (CSTS.SHST) in time');
        await sleep(delay);
        delay = Math.min(delay * 2 + 1, 20);
      }
    }
    const out = this.state === 'failed';
    try {
      await this.disable(new NvmqError('NVMQ_CONTROLLER_SHUTDOWN', 'the controller was shut down'));
    } catch (e) {
      if (!out) throw e; // a controller out of service that does not stop either: nothing left to shut down
      trace('disabling a failed controller: %s', e instanceof Error ? e.message : String(e));
    }
    this.state = 'closed';
  }

  /** Shuts down and closes the transport (and with it the namespaces' backends), the transport even when the shutdown fails. */
  async close(): Promise<void> {
    try {
      await this.shutdown();
    } finally {
      await this.transport.close();
    }
  }
}
