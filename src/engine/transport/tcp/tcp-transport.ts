/**
 * The NVMe/TCP transport of the host: a remote NVMe over Fabrics controller
 * behind the `Transport` seam, so the driver, queue pairs, request tables,
 * timeouts and metrics run over TCP unchanged.
 *
 * The host's queue rings stay in its DMA arena, as for a local controller;
 * this transport is the controller's front end in the host's own process:
 * - Registers are the controller's properties. CAP, VS, CC and CSTS are read
 *   by Property Get when the admin queue connects; a CC write is a Property
 *   Set; a CSTS read returns the last value and asks for a fresh one (the
 *   driver polls CSTS with sleeps in between, so it sees each change one
 *   round trip late). AQA / ASQ / ACQ and the interrupt masks stay here.
 * - An SQ tail doorbell takes the new SQEs out of the ring and sends each as
 *   a command capsule on the queue's connection; its data is where the SQE's
 *   SGL Data Block points in the arena (the queue pairs write SGLs for this
 *   transport: `dataPointer`). Responses become CQEs in the host's CQ ring,
 *   with the phase tag, and raise the queue's vector.
 * - Creating an I/O queue is a new connection and an I/O Connect (Create I/O
 *   CQ is only noted, Create I/O SQ completes once the Connect did); deleting
 *   its SQ closes the connection. A queue another thread will ring
 *   (`queueOwnedElsewhere`) is created without one: that thread connects it
 *   (thread-transport.ts). Every other admin command goes to the target as
 *   it is, and the transport sends its own Keep Alive every KATO / 2 while
 *   the controller is enabled.
 * - CC.EN 1 → 0 closes this thread's I/O connections at once: the driver
 *   has failed those queues and may reuse their memory, so nothing more is
 *   written there.
 *
 * When any connection of the association dies, or Keep Alive goes
 * unanswered, the association is lost (`onLost`): every connection, in
 * every thread, ends and its commands complete with Host Pathing Error
 * (once each); CSTS reads CFS (and shutdown complete, so a shutdown does
 * not wait); `lost` says why and `onAssociationLost` tells the engine,
 * whose reset calls `restart()` for a new association.
 */
import { debuglog } from 'node:util';
import { BroadcastChannel } from 'node:worker_threads';
import { randomUUID } from 'node:crypto';
import type { Transport } from '../transport.js';
import type { DmaArena } from '../../dma-arena.js';
import { NvmqError } from '../../errors.js';
import { CQE_SIZE, SQE_SIZE } from '../../spec/command.js';
import { Regs, Csts, Cc, Cap } from '../../spec/registers.js';
import { bitsOf } from '../../spec/layout.js';
import { AdminOpcode } from '../../spec/opcodes.js';
import { CommandSpecificStatus, GenericStatus, PathStatus, Sct, makeStatus } from '../../spec/status.js';
import { IdCtrl } from '../../spec/identify.js';
import { CNTLID_DYNAMIC, Property } from '../../spec/fabrics.js';
import { HostConnection } from './host-connection.js';
import { connectQueue, hostIdentity, keepAliveSqe, propertyGet, propertyGetSqe, propertySetSqe, type HostIdentity } from './fabrics-host.js';
import { checkTcpTarget, type ResolvedTcpTarget, type TcpTarget } from './target-options.js';
import { DOORBELLS, MAX_PDU_BYTES, QueueBridge, connectIoQueue, invalid, type Bridged, type Cq } from './queue-bridge.js';
import type { LossReport, TcpThreadHandle } from './thread-transport.js';

export type { TcpTarget } from './target-options.js';

const trace = debuglog('nvmq');

/** Admin queue entries the transport connects with (Linux's NVME_AQ_DEPTH); the driver's admin ring may be smaller. */
const ADMIN_ENTRIES = 32;
/** In-capsule data on the admin queue (NVMe/TCP: 8 KiB). */
const ADMIN_IN_CAPSULE = 8192;
/** CIDs of the transport's own admin commands (Property Get / Set, Keep Alive): above any the driver's ring uses. */
const OWN_CID_BASE = 0xf000;
/** What CSTS reads once the admin connection is gone: CFS, and shutdown complete. */
const LOST_CSTS = (1 << Csts.CFS.shift) | (2 << Csts.SHST.shift);

const specific = (sc: number): number => makeStatus(Sct.COMMAND_SPECIFIC, sc, true);
/** CIDs from OWN_CID_BASE the admin association's setup used. */
const OWN_CIDS_USED = 5;

/** A connected admin queue and the properties read on it. */
interface AdminAssociation {
  conn: HostConnection;
  cntlid: number;
  cap: number;
  vs: number;
  cc: number;
  csts: number;
}

/** Opens the admin connection, Connects it (a new controller) and reads CAP, VS, CC, CSTS. Closes it on failure. */
async function connectAdmin(t: ResolvedTcpTarget, identity: HostIdentity): Promise<AdminAssociation> {
  const conn = await HostConnection.open({ host: t.host, port: t.port, label: 'admin queue', hdgst: t.headerDigest, ddgst: t.dataDigest, connectTimeoutMs: t.connectTimeoutMs, maxPduBytes: MAX_PDU_BYTES, maxOutstanding: ADMIN_ENTRIES - 1 });
  try {
    conn.inCapsuleBytes = ADMIN_IN_CAPSULE;
    const where = `${t.host}:${t.port}`;
    const cntlid = await connectQueue(conn, OWN_CID_BASE, { qid: 0, entries: ADMIN_ENTRIES, kato: t.keepAliveMs, cntlid: CNTLID_DYNAMIC, subnqn: t.subnqn, identity, where, timeoutMs: t.connectTimeoutMs });
    const get = (cid: number, p: { offset: number; size: number }): Promise<number> => propertyGet(conn, OWN_CID_BASE + cid, p.offset, p.size as 4 | 8, t.connectTimeoutMs);
    return { conn, cntlid, cap: await get(1, Property.CAP), vs: await get(2, Property.VS), cc: await get(3, Property.CC), csts: await get(4, Property.CSTS) };
  } catch (e) {
    await conn.close();
    throw e;
  }
}

export class TcpTransport implements Transport {
  readonly name = 'tcp';
  readonly dataPointer = 'sgl';
  readonly arena: DmaArena;
  private readonly bridge: QueueBridge;
  private readonly where: string;
  private capLo = 0;
  private capHi = 0;
  private vs = 0;
  private cc = 0;
  private cstsValue = 0;
  /** Bumped at each CC write: a CSTS read sent before it does not overwrite one sent after. */
  private ccGeneration = 0;
  private refreshing = false;
  private aqa = 0;
  private asq = 0;
  private acq = 0;
  private readonly cqs = new Map<number, Cq>();
  private readonly connecting = new Set<number>();
  /** I/O queues another thread connects and bridges (`queueOwnedElsewhere`): created and deleted here without a connection. */
  private readonly elsewhere = new Set<number>();
  private readonly placeholders = new Set<number>();
  /** Why creating an I/O queue failed, by QID (the admin completion carries only a path error). */
  private readonly queueErrors = new Map<number, Error>();
  private ownCid = 0;
  /** I/O queues' in-capsule data, from Identify Controller's IOCCSZ. */
  private ioInCapsule = 0;
  private keepAlive: NodeJS.Timeout | undefined;
  private keepAliveSent = 0;
  private closed = false;
  /** Numbers the associations: each restart() makes the next. */
  private epoch = 1;
  /** A restart() is making a new association: reports about the old one are not news. */
  private restarting = false;
  private readonly lostChannel: BroadcastChannel;
  /** Why the association broke, until a restart() makes a new one. */
  lost: NvmqError | undefined;

  private constructor(
    arena: DmaArena,
    readonly target: ResolvedTcpTarget,
    readonly identity: HostIdentity,
    private admin: HostConnection,
    /** The controller's ID in the current association (a new one after each reconnect). */
    public cntlid: number,
  ) {
    this.arena = arena;
    this.bridge = new QueueBridge(arena, 0);
    this.bridge.onAdminCommand = (q, at) => this.adminCommand(q, at);
    this.where = `${target.host}:${target.port}`;
    admin.onFailure = (err) => this.onLost(err);
    // Threads that bridge their own queues say here when their connection dies.
    this.lostChannel = new BroadcastChannel(`nvmq-tcp-lost-${randomUUID()}`);
    this.lostChannel.unref();
    this.lostChannel.onmessage = (ev) => {
      const r = ((ev as MessageEvent).data as LossReport);
      // Reports from an association that is over (a reset disabled it, and its connections ended) are not news.
      if (r.epoch === this.epoch && bitsOf(this.cc, Cc.EN) && !this.restarting) this.onLost(new NvmqError(r.code, r.message));
    };
  }

  /** Connects the admin queue and reads the controller's properties. One line on failure, nothing left open. */
  static async connect(target: TcpTarget, arena: DmaArena): Promise<TcpTransport> {
    const t = checkTcpTarget(target);
    const identity = hostIdentity(target.hostnqn);
    const a = await connectAdmin(t, identity);
    const transport = new TcpTransport(arena, t, identity, a.conn, a.cntlid);
    transport.takeProperties(a);
    return transport;
  }

  private takeProperties(a: AdminAssociation): void {
    this.capLo = a.cap % 0x1_0000_0000;
    this.capHi = Math.floor(a.cap / 0x1_0000_0000);
    this.bridge.dstrd = bitsOf(this.capHi, Cap.DSTRD);
    this.vs = a.vs;
    this.cc = a.cc;
    this.cstsValue = a.csts;
    this.ownCid = OWN_CIDS_USED;
  }

  /**
   * A new association: the admin connection again, a Connect (a new
   * controller ID), the properties read again. Run by a reset between its
   * disable and the bring-up; every I/O queue is gone by then.
   */
  async restart(): Promise<void> {
    if (this.closed) throw new NvmqError('NVMQ_TARGET_DISCONNECTED', `the transport to ${this.where} is closed`);
    const old = this.admin;
    old.onFailure = undefined;
    this.restarting = true;
    let a: AdminAssociation;
    try {
      await Promise.all([old.close(), this.bridge.dropQueues()]);
      this.cqs.clear();
      this.placeholders.clear();
      this.elsewhere.clear();
      this.connecting.clear();
      a = await connectAdmin(this.target, this.identity);
    } catch (e) {
      // No association now: as lost as any (the engine reconnects), whatever started this reset.
      this.restarting = false;
      this.onLost(e instanceof NvmqError ? e : new NvmqError('NVMQ_TARGET_DISCONNECTED', String(e)));
      throw e;
    } finally {
      this.restarting = false;
    }
    if (this.closed) {
      await a.conn.close();
      throw new NvmqError('NVMQ_TARGET_DISCONNECTED', `the transport to ${this.where} was closed while it reconnected`);
    }
    this.admin = a.conn;
    this.cntlid = a.cntlid;
    this.epoch++;
    this.ccGeneration++;
    this.refreshing = false;
    this.keepAliveSent = 0;
    this.takeProperties(a);
    this.lost = undefined;
    a.conn.onFailure = (err) => this.onLost(err);
  }

  /** What a thread that bridges its own I/O queue needs (structured-cloneable); `association()` completes it at each grant. */
  threadHandle(): TcpThreadHandle {
    return { kind: 'tcp', target: this.target, identity: this.identity, dstrd: this.bridge.dstrd, arena: this.arena.handle(), lostChannel: this.lostChannel.name };
  }

  /** The current association's controller ID and I/O in-capsule size: what a thread connects its queue with now. */
  association(): { cntlid: number; inCapsule: number; epoch: number } {
    return { cntlid: this.cntlid, inCapsule: this.ioInCapsule, epoch: this.epoch };
  }

  /** I/O queue `qid` will be connected and rung by another thread's transport: creating it here opens no connection. */
  queueOwnedElsewhere(qid: number): void {
    this.elsewhere.add(qid);
  }

  private nextCid(): number {
    const cid = OWN_CID_BASE + (this.ownCid & 0xfff);
    this.ownCid++;
    return cid;
  }

  /** Sends one of the transport's own admin commands; `done` gets its status and DW0. */
  private own(sqe: Uint8Array, done?: (status: number, dw0: number) => void): void {
    const cid = new DataView(sqe.buffer, sqe.byteOffset).getUint16(2, true);
    this.admin.send(sqe, { cid, done: (status, dw0) => done?.(status, dw0) });
  }

  read32(offset: number): number {
    switch (offset) {
      case Regs.CAP_LO.offset:
        return this.capLo;
      case Regs.CAP_LO.offset + 4:
        return this.capHi;
      case Regs.VS.offset:
        return this.vs;
      case Regs.CC.offset:
        return this.cc;
      case Regs.CSTS.offset:
        return this.csts();
      case Regs.AQA.offset:
        return this.aqa;
      case Regs.ASQ.offset:
        return this.asq % 0x1_0000_0000;
      case Regs.ASQ.offset + 4:
        return Math.floor(this.asq / 0x1_0000_0000);
      case Regs.ACQ.offset:
        return this.acq % 0x1_0000_0000;
      case Regs.ACQ.offset + 4:
        return Math.floor(this.acq / 0x1_0000_0000);
      default:
        return 0;
    }
  }

  read64(offset: number): number {
    return this.read32(offset) + this.read32(offset + 4) * 0x1_0000_0000;
  }

  write32(offset: number, value: number): void {
    if (offset >= DOORBELLS) return this.bridge.doorbell(offset, value);
    switch (offset) {
      case Regs.CC.offset:
        return this.writeCc(value >>> 0);
      case Regs.AQA.offset:
        this.aqa = value >>> 0;
        return;
      case Regs.ASQ.offset:
        this.asq = value >>> 0;
        return;
      case Regs.ACQ.offset:
        this.acq = value >>> 0;
        return;
      case Regs.NSSR.offset:
        this.own(propertySetSqe(this.nextCid(), Property.NSSR.offset, value));
        return;
      default:
      // INTMS / INTMC: vectors are delivered in this process; nothing to mask at the target.
    }
  }

  write64(offset: number, value: number): void {
    if (offset === Regs.ASQ.offset) this.asq = value;
    else if (offset === Regs.ACQ.offset) this.acq = value;
    else {
      this.write32(offset, value % 0x1_0000_0000);
      this.write32(offset + 4, Math.floor(value / 0x1_0000_0000));
    }
  }

  private csts(): number {
    if (this.lost) return LOST_CSTS;
    if (!this.refreshing) {
      this.refreshing = true;
      const generation = this.ccGeneration;
      this.own(propertyGetSqe(this.nextCid(), Property.CSTS.offset), (status, dw0) => {
        this.refreshing = false;
        if (status === 0 && generation === this.ccGeneration) this.cstsValue = dw0;
      });
    }
    return this.cstsValue;
  }

  private writeCc(value: number): void {
    const was = bitsOf(this.cc, Cc.EN);
    const en = bitsOf(value, Cc.EN);
    this.cc = value;
    this.ccGeneration++;
    this.refreshing = false;
    if (was && !en) this.dropQueues();
    if (!was && en) this.bridge.admin = this.bridgeAdmin();
    const generation = this.ccGeneration;
    this.own(propertySetSqe(this.nextCid(), Property.CC.offset, value), () => {
      if (generation === this.ccGeneration) this.csts();
    });
    this.startKeepAlive();
  }

  /** The host's admin rings, as AQA / ASQ / ACQ give them, on the admin connection. */
  private bridgeAdmin(): Bridged | undefined {
    const sqEntries = (this.aqa & 0xfff) + 1;
    const cqEntries = ((this.aqa >>> 16) & 0xfff) + 1;
    const sq = this.arena.translate(this.asq, sqEntries * SQE_SIZE);
    const cq = this.arena.translate(this.acq, cqEntries * CQE_SIZE);
    if (sq < 0 || cq < 0) return undefined;
    return { qid: 0, sqOffset: sq, entries: sqEntries, cq: { qid: 0, offset: cq, entries: cqEntries, vector: 0, interrupts: true, tail: 0, phase: 1 }, conn: this.admin, head: 0, dead: false, records: [] };
  }

  /** Controller disabled: every queue is gone for the host. I/O connections close; admin commands still out end into nothing. */
  private dropQueues(): void {
    void this.bridge.dropQueues();
    this.cqs.clear();
    this.placeholders.clear();
  }

  private startKeepAlive(): void {
    const period = this.target.keepAliveMs / 2;
    if (this.keepAlive || period <= 0 || this.closed) return;
    this.keepAlive = setInterval(() => {
      if (this.lost || !bitsOf(this.cc, Cc.EN)) return;
      if (this.keepAliveSent !== 0 && Date.now() - this.keepAliveSent > this.target.keepAliveMs) {
        void this.admin.close().then(() => this.onLost(new NvmqError('NVMQ_TARGET_DISCONNECTED', `the NVMe/TCP target at ${this.where} did not answer Keep Alive within ${this.target.keepAliveMs} ms`)));
        return;
      }
      if (this.keepAliveSent !== 0) return;
      this.keepAliveSent = Date.now();
      this.own(keepAliveSqe(this.nextCid()), (status) => {
        this.keepAliveSent = 0;
        if (status !== 0) trace('tcp %s: Keep Alive status 0x%s', this.where, status.toString(16));
      });
    }, period);
    this.keepAlive.unref();
  }

  /**
   * The association is broken: the admin connection, or one of the I/O
   * connections (this thread's or another's), ended unasked, or Keep Alive
   * went unanswered. As Linux's host does, the whole controller is then
   * in error: every connection closes (their commands end with a path
   * error), CSTS reads CFS, and `onLost` says so once; a reset (`restart()`)
   * reconnects.
   */
  private onLost(err: NvmqError): void {
    if (this.lost || this.closed) return;
    this.lost = err;
    trace('tcp %s: %s', this.where, err.message);
    this.admin.onFailure = undefined;
    void this.admin.close();
    for (const q of this.bridge.queues.values()) void q.conn.close();
    // The other threads' connections end too, their commands with a path error.
    this.lostChannel.postMessage({ epoch: this.epoch, code: err.code, message: err.message } satisfies LossReport);
    this.onAssociationLost?.(err);
  }

  /** Told once per broken association, after its connections were closed (the engine reconnects). */
  onAssociationLost: ((err: NvmqError) => void) | undefined;

  // ------------------------------------------------------------------ queues

  /** Admin commands: queue creation and deletion are connections; the rest goes to the target. */
  private adminCommand(q: Bridged, at: number): void {
    const v = this.arena.view;
    const cid = v.getUint16(at + 2, true);
    const cdw10 = v.getUint32(at + 40, true);
    const cdw11 = v.getUint32(at + 44, true);
    const prp1 = v.getUint32(at + 24, true) + v.getUint32(at + 28, true) * 0x1_0000_0000;
    const qid = cdw10 & 0xffff;
    const entries = (cdw10 >>> 16) + 1;
    switch (this.arena.bytes[at]) {
      case AdminOpcode.CREATE_IO_CQ: {
        const offset = this.arena.translate(prp1, entries * CQE_SIZE);
        if (qid === 0 || this.cqs.has(qid)) return this.bridge.post(q, cid, specific(CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER));
        if (offset < 0 || entries < 2) return this.bridge.post(q, cid, invalid(GenericStatus.INVALID_FIELD));
        this.cqs.set(qid, { qid, offset, entries, vector: cdw11 >>> 16, interrupts: (cdw11 & 2) !== 0, tail: 0, phase: 1 });
        return this.bridge.post(q, cid, 0);
      }
      case AdminOpcode.CREATE_IO_SQ:
        return this.createSq(q, cid, qid, entries, cdw11 >>> 16, prp1);
      case AdminOpcode.DELETE_IO_SQ: {
        if (this.placeholders.delete(qid)) {
          this.elsewhere.delete(qid);
          return this.bridge.post(q, cid, 0);
        }
        const sq = this.bridge.queues.get(qid);
        if (!sq) return this.bridge.post(q, cid, specific(CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER));
        this.bridge.queues.delete(qid);
        sq.dead = true;
        void sq.conn.close();
        return this.bridge.post(q, cid, 0);
      }
      case AdminOpcode.DELETE_IO_CQ: {
        if (!this.cqs.delete(qid)) return this.bridge.post(q, cid, specific(CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER));
        return this.bridge.post(q, cid, 0);
      }
      case AdminOpcode.IDENTIFY:
        // Identify Controller tells the I/O queues' in-capsule data size (IOCCSZ, 16-byte units, the SQE included).
        if ((cdw10 & 0xff) === 1) {
          const data = this.arena.translate(prp1, 4096);
          return this.bridge.forward(q, at, (status) => {
            if (status === 0 && data >= 0) this.ioInCapsule = Math.max(0, this.arena.view.getUint32(data + IdCtrl.IOCCSZ.offset, true) * 16 - SQE_SIZE);
          });
        }
        return this.bridge.forward(q, at);
      default:
        return this.bridge.forward(q, at);
    }
  }

  /** Create I/O SQ: a connection of its own and an I/O Connect; the CQE once that is done. */
  private createSq(q: Bridged, cid: number, qid: number, entries: number, cqid: number, iova: number): void {
    const cq = this.cqs.get(cqid);
    const offset = this.arena.translate(iova, entries * SQE_SIZE);
    if (qid === 0 || this.bridge.queues.has(qid) || this.connecting.has(qid) || this.placeholders.has(qid)) return this.bridge.post(q, cid, specific(CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER));
    if (!cq) return this.bridge.post(q, cid, specific(CommandSpecificStatus.COMPLETION_QUEUE_INVALID));
    if (offset < 0 || entries < 2) return this.bridge.post(q, cid, invalid(GenericStatus.INVALID_FIELD));
    if (this.elsewhere.has(qid)) {
      // The thread that owns it connects it when it attaches (thread-transport.ts).
      this.placeholders.add(qid);
      return this.bridge.post(q, cid, 0);
    }
    this.connecting.add(qid);
    const generation = this.ccGeneration;
    void connectIoQueue({ target: this.target, identity: this.identity, cntlid: this.cntlid, inCapsule: this.ioInCapsule }, qid, entries).then(
      (conn) => {
        this.connecting.delete(qid);
        if (generation !== this.ccGeneration || this.closed || q.dead) {
          void conn.close();
          return;
        }
        const sq: Bridged = { qid, sqOffset: offset, entries, cq, conn, head: 0, dead: false, records: [] };
        conn.onFailure = (err) => this.onLost(err);
        this.bridge.queues.set(qid, sq);
        this.bridge.post(q, cid, 0);
      },
      (err: Error) => {
        this.connecting.delete(qid);
        trace('tcp %s: I/O queue %d: %s', this.where, qid, err.message);
        this.queueErrors.set(qid, err);
        this.bridge.post(q, cid, makeStatus(Sct.PATH, PathStatus.HOST_PATHING_ERROR, true));
      },
    );
  }

  queueError(qid: number): Error | undefined {
    const e = this.queueErrors.get(qid);
    this.queueErrors.delete(qid);
    return e;
  }

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    this.bridge.setInterruptHandler(vector, handler);
  }

  /** Closes every connection (what is outstanding completes with a path error). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepAlive);
    this.cqs.clear();
    this.lostChannel.close();
    this.admin.onFailure = undefined;
    await Promise.all([this.bridge.dropQueues(), this.admin.close()]);
  }
}
