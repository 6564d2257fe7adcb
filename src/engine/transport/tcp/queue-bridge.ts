/**
 * The host's queue rings bridged to NVMe/TCP connections, in one thread: an
 * SQ tail doorbell takes the new SQEs out of the ring and sends each as a
 * command capsule on its queue's connection, with the data its SGL Data
 * Block points at in the arena; each response becomes a CQE in the ring
 * (phase tag last) and raises the queue's vector. The main thread's
 * transport (tcp-transport.ts) bridges the admin queue and its own I/O
 * queues; a thread attached to the engine bridges its own queue
 * (thread-transport.ts), on a connection it opened itself.
 */
import type { DmaArena } from '../../dma-arena.js';
import { CQE_SIZE, SQE_SIZE } from '../../spec/command.js';
import { CONNECT_DATA_SIZE } from '../../spec/fabrics.js';
import { GenericStatus, Sct, makeStatus } from '../../spec/status.js';
import { Vectors } from '../vectors.js';
import { HostConnection, type HostCommand } from './host-connection.js';
import { connectQueue, type HostIdentity } from './fabrics-host.js';
import type { ResolvedTcpTarget } from './target-options.js';

/** The largest controller-to-host PDU read: a transfer of up to 8 MiB and its headers. */
export const MAX_PDU_BYTES = (8 << 20) + 1024;
/** Where doorbells start in the register space (NVMe 1.4, 3.1). */
export const DOORBELLS = 0x1000;

export interface Cq {
  qid: number;
  offset: number;
  entries: number;
  vector: number;
  interrupts: boolean;
  tail: number;
  phase: number;
}

/** One host queue bridged to its connection. */
export interface Bridged {
  qid: number;
  sqOffset: number;
  entries: number;
  cq: Cq;
  conn: HostConnection;
  /** The next SQ entry to take. */
  head: number;
  /** Set when the queue is gone for the host (deleted, controller disabled): nothing more is written for it. */
  dead: boolean;
  /** Per CID, the command record given to the connection: made on the CID's first use, reused once it completed. */
  records: BridgedCommand[];
}

/** A forwarded command: its CQE goes into the queue's CQ once `then` (if any) has seen the status. */
interface BridgedCommand extends HostCommand {
  then: ((status: number) => void) | undefined;
}

/** A status the bridge gives a command it cannot send (DNR set). */
export const invalid = (sc: number): number => makeStatus(Sct.GENERIC, sc, true);

/** What connecting an I/O queue needs: where, who, which controller. */
export interface IoConnectParams {
  target: ResolvedTcpTarget;
  identity: HostIdentity;
  cntlid: number;
  /** In-capsule data the target takes on I/O queues (IOCCSZ less the SQE). */
  inCapsule: number;
}

/** Opens I/O queue `qid`'s connection and connects it to controller `cntlid`. Closes it again on failure. */
export async function connectIoQueue(p: IoConnectParams, qid: number, entries: number): Promise<HostConnection> {
  const t = p.target;
  const conn = await HostConnection.open({ host: t.host, port: t.port, label: `I/O queue ${qid}`, hdgst: t.headerDigest, ddgst: t.dataDigest, connectTimeoutMs: t.connectTimeoutMs, maxPduBytes: MAX_PDU_BYTES, maxOutstanding: entries - 1 });
  try {
    // The Connect data always travels in the capsule (NVMe/TCP).
    conn.inCapsuleBytes = CONNECT_DATA_SIZE;
    await connectQueue(conn, 0, { qid, entries, kato: 0, cntlid: p.cntlid, subnqn: t.subnqn, identity: p.identity, where: `${t.host}:${t.port}`, timeoutMs: t.connectTimeoutMs });
    conn.inCapsuleBytes = p.inCapsule;
    return conn;
  } catch (e) {
    await conn.close();
    throw e;
  }
}

export class QueueBridge {
  readonly vectors = new Vectors();
  /** I/O queues by QID. */
  readonly queues = new Map<number, Bridged>();
  /** The admin queue, while the controller is enabled (main thread only). */
  admin: Bridged | undefined;
  /** Takes the admin queue's SQEs, at arena offset `at` (queue creation and deletion are the transport's). */
  onAdminCommand: ((q: Bridged, at: number) => void) | undefined;

  constructor(
    readonly arena: DmaArena,
    /** CAP.DSTRD: doorbells are 4 << dstrd bytes apart. */
    public dstrd: number,
  ) {}

  /** A doorbell write: an SQ tail doorbell sends what the host queued; CQ head doorbells need nothing. */
  doorbell(offset: number, value: number): void {
    const index = (offset - DOORBELLS) / (4 << this.dstrd);
    // Odd: a CQ head doorbell; the ring never overflows (the host has fewer commands out than entries).
    if (Number.isInteger(index) && index % 2 === 0) this.sqDoorbell(index / 2, value);
  }

  private sqDoorbell(qid: number, tail: number): void {
    const q = qid === 0 ? this.admin : this.queues.get(qid);
    if (!q || q.dead || !Number.isInteger(tail) || tail < 0 || tail >= q.entries) return;
    // Each SQE is read where it is, within this call: the host reuses an entry only after more submissions.
    while (q.head !== tail) {
      const at = q.sqOffset + q.head * SQE_SIZE;
      q.head = (q.head + 1) % q.entries;
      if (qid === 0 && this.onAdminCommand) this.onAdminCommand(q, at);
      else this.forward(q, at);
    }
  }

  /** Writes a CQE into `q`'s CQ and raises its vector, unless the queue is gone for the host. */
  post(q: Bridged, cid: number, status: number, dw0 = 0, dw1 = 0): void {
    if (q.dead) return;
    const cq = q.cq;
    const at = cq.offset + cq.tail * CQE_SIZE;
    const v = this.arena.view;
    v.setUint32(at, dw0 >>> 0, true);
    v.setUint32(at + 4, dw1 >>> 0, true);
    v.setUint16(at + 8, q.head, true);
    v.setUint16(at + 10, q.qid, true);
    v.setUint16(at + 12, cid, true);
    // The status word last: its phase tag makes the entry new.
    v.setUint16(at + 14, ((status << 1) | cq.phase) & 0xffff, true);
    if (++cq.tail === cq.entries) {
      cq.tail = 0;
      cq.phase ^= 1;
    }
    if (cq.interrupts) this.vectors.raise(cq.vector);
  }

  /** Sends the SQE at arena offset `at` as a capsule with the data its SGL Data Block points at; `then` sees the status first. */
  forward(q: Bridged, at: number, then?: (status: number) => void): void {
    const v = this.arena.view;
    const bytes = this.arena.bytes;
    const cid = v.getUint16(at + 2, true);
    const psdt = bytes[at + 1]! >>> 6;
    let region: Uint8Array | undefined;
    if (psdt === 1) {
      const length = v.getUint32(at + 32, true);
      const offset = this.arena.translate(v.getUint32(at + 24, true) + v.getUint32(at + 28, true) * 0x1_0000_0000, length);
      if (bytes[at + 39] !== 0) return this.post(q, cid, invalid(GenericStatus.SGL_TYPE_INVALID));
      if (offset < 0) return this.post(q, cid, invalid(GenericStatus.DATA_TRANSFER_ERROR));
      if (length > 0) region = bytes.subarray(offset, offset + length);
    } else if (psdt !== 0 || v.getUint32(at + 24, true) !== 0 || v.getUint32(at + 28, true) !== 0 || v.getUint32(at + 32, true) !== 0 || v.getUint32(at + 36, true) !== 0) {
      // PRPs (or an SGL segment) cannot be carried: this transport moves data only by SGL Data Block.
      return this.post(q, cid, invalid(GenericStatus.INVALID_FIELD));
    }
    const direction = bytes[at]! & 3;
    if (region && direction !== 1 && direction !== 2) return this.post(q, cid, invalid(GenericStatus.INVALID_FIELD));
    // The host reuses a CID only once its command completed: by then the connection is done with its record.
    const r = (q.records[cid] ??= this.record(q, cid));
    r.out = direction === 1 ? region : undefined;
    r.in = direction === 2 ? region : undefined;
    r.then = then;
    q.conn.send(bytes, r, at);
  }

  private record(q: Bridged, cid: number): BridgedCommand {
    const r: BridgedCommand = {
      cid,
      out: undefined,
      in: undefined,
      then: undefined,
      done: (status, dw0, dw1) => {
        const then = r.then;
        r.then = r.out = r.in = undefined;
        then?.(status);
        this.post(q, cid, status, dw0, dw1);
      },
    };
    return r;
  }

  /** Every I/O queue gone for the host: their connections close, nothing more is written into their rings. */
  dropQueues(): Promise<void> {
    if (this.admin) this.admin.dead = true;
    this.admin = undefined;
    const closing: Array<Promise<void>> = [];
    for (const q of this.queues.values()) {
      q.dead = true;
      closing.push(q.conn.close());
    }
    this.queues.clear();
    return Promise.all(closing).then(() => {});
  }

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    if (handler) this.vectors.handlers.set(vector, handler);
    else this.vectors.handlers.delete(vector);
  }
}
