/**
 * One NVMe/TCP connection of the target: one queue, from the ICReq to the
 * close. ICReq → ICResp (digests as asked, CPDA 0, MAXH2CDATA); the first
 * capsule must be a Connect (routed by SUBNQN); then admin capsules go to
 * the controller (`execute`), NVM commands to the serving thread's local
 * queue pair (local-io.ts). Write data comes in the capsule or after one
 * R2T, in order, in H2CData PDUs of at most MAXH2CDATA; read data goes back
 * in one C2HData (SUCCESS, and no response, where SQ flow control is off).
 * A connected I/O queue may move to an I/O thread (`move()`, tcp-worker.ts).
 *
 * A PDU that breaks the binding ends the connection with a C2HTermReq; a
 * data digest error fails only its command (Transient Transport Error,
 * retryable). Memory is bounded by the queue: at most its SQ size of
 * commands, each with at most MDTS bytes. When the connection ends,
 * commands still running end into nothing and give their buffers back; the
 * controller forgets the queue, or for an admin queue the association ends.
 */
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import type { IoQueuePair } from '../host/io-queue-pair.js';
import { PduError } from '../errors.js';
import { readField } from '../spec/layout.js';
import { Sqe } from '../spec/command.js';
import { FABRICS_OPCODE, FabricsSqe, FabricsType, SGL_ID_IN_CAPSULE, SglDescriptor } from '../spec/fabrics.js';
import { GenericStatus } from '../spec/status.js';
import { PduType } from '../spec/tcp-pdu.js';
import { PduReader, type Pdu } from './pdu.js';
import { capsuleEntry, decodeDataPdu, decodeIcReq } from './pdu-fields.js';
import { encodeC2HTermReq, encodeCapsuleResp, encodeIcResp, encodeR2T, type WireOptions } from './pdu-encode.js';
import { encodeResponse, type FabricsResponse } from './capsule.js';
import { connectTo } from './connect.js';
import { DataDirection, checkDataPointer, dataDirection, expectedBytes, statusResponse } from './local-io.js';
import { SLOT_NONE, TcpField } from './tcp-metrics.js';
import { SpareBuffers } from './spare-buffers.js';
import { CidSet, IoPath, commandRecord, h2cDataError, startCommand, type Command } from './tcp-command.js';
import { TcpSender } from './tcp-sender.js';
import { ADMIN_IN_CAPSULE_BYTES, CONNECT_TIMEOUT_MS, SQHD_DISABLED, type ConnectionEnv, type MovedQueue, type QueueOwner } from './tcp-env.js';

export type { ConnectionEnv, MovedQueue, QueueOwner } from './tcp-env.js';

const trace = debuglog('nvmq');

/**
 * `disconnected`: the host's Disconnect deleted the I/O queue; the response goes out, then the socket ends.
 * `moving` / `moved`: an I/O queue handed to another thread (ConnectionEnv.moveQueue).
 */
type State = 'icreq' | 'connect' | 'ready' | 'disconnected' | 'moving' | 'moved' | 'closed';

export class TcpConnection {
  private readonly reader: PduReader;
  private state: State = 'icreq';
  private wire: WireOptions = {};
  private controller: QueueOwner | undefined;
  /** Closes the connection where it moved to. */
  private movedClose: ((reason: string) => void) | undefined;
  /** The moved queue was disconnected there (its QID is free again). */
  private movedDisconnect = false;
  private qid = -1;
  private entries = 0;
  private sqhd = 0;
  private sqFlowOff = false;
  /** The CIDs of commands received and not yet answered. */
  private readonly inflight = new CidSet();
  /** R2T'd writes waiting for their data, by TTAG. */
  private readonly awaitingData = new Map<number, Command>();
  /** Commands waiting for their turn to take a DMA buffer (the bytes held are `spare.held`). */
  private readonly waiting: Array<{ cmd: Command; data: Uint8Array | undefined }> = [];
  private nextTtag = 0;
  /** Why the connection ended, once it has. */
  reason: string | undefined;
  /** The host's label slot in the metrics (SLOT_NONE until the Connect), and where its cells start in this thread's row. */
  private slot = SLOT_NONE;
  private cells: Float64Array | undefined;
  private cbase = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private readonly sender: TcpSender;
  /** An I/O queue's free command records: one is taken per capsule and given back with its response (at most as many as commands in flight). */
  private readonly free: Command[] = [];
  /** checkDataPointer()'s limits on this queue, once connected. */
  private limits = { maxTransferBytes: 0, inCapsuleBytes: ADMIN_IN_CAPSULE_BYTES };
  /** The serving thread's queue pair, once known (ioQueue() again after a reset failed it), and its executor if this thread runs it. */
  private readonly io: IoPath;
  /** DMA buffers finished commands gave back, for the next ones. */
  private readonly spare = new SpareBuffers();

  constructor(
    readonly socket: Socket,
    private readonly env: ConnectionEnv,
    negotiated?: { hdgst: boolean; ddgst: boolean },
  ) {
    // The largest PDU a host may send: a capsule with the most in-capsule data, or an H2CData of MAXH2CDATA.
    const inCapsule = Math.max(ADMIN_IN_CAPSULE_BYTES, env.inCapsuleDataBytes);
    this.reader = new PduReader({ maxPduBytes: Math.max(inCapsule, env.maxH2CData) + 256, side: 'controller', negotiated, reusedChunks: env.readBuffer !== undefined });
    if (env.counters) {
      this.cells = env.counters.cells;
      this.cbase = env.counters.base(SLOT_NONE);
    }
    if (!negotiated) {
      const ms = env.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
      this.connectTimer = setTimeout(() => this.close(`no queue connected within ${ms} ms`), ms);
      this.connectTimer.unref();
    }
    socket.setNoDelay(true);
    this.sender = new TcpSender(socket, () => this.state === 'ready', { uncork: 'microtasks' });
    this.limits.maxTransferBytes = env.maxTransferBytes;
    this.io = new IoPath(env.executorOf, this.spare);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    if (env.readBuffer) env.readBuffer.onChunk = (chunk) => this.onData(chunk);
    socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    socket.on('close', () => this.close('the host closed the connection'));
  }

  /** Goes on serving an I/O queue another thread connected (`ConnectionEnv.moveQueue`) on `socket`. */
  static adopt(socket: Socket, env: ConnectionEnv, m: MovedQueue, owner: QueueOwner): TcpConnection {
    const c = new TcpConnection(socket, env, { hdgst: m.hdgst, ddgst: m.ddgst });
    c.wire = { hdgst: m.hdgst, ddgst: m.ddgst, pda: m.hpda };
    c.controller = owner;
    c.qid = m.qid;
    c.limits.inCapsuleBytes = env.inCapsuleDataBytes;
    c.entries = m.entries;
    c.sqhd = m.sqhd;
    c.sqFlowOff = m.sqFlowOff;
    c.state = 'ready';
    c.countAs(m.hostSlot);
    if (m.unread.length > 0) c.onData(m.unread);
    return c;
  }

  /** The queue this connection carries, once connected: its controller's CNTLID and the QID. */
  get queue(): { cntlid: number; qid: number; hostnqn: string } | undefined {
    return this.controller ? { cntlid: this.controller.cntlid, qid: this.qid, hostnqn: this.controller.hostnqn } : undefined;
  }

  /** The host's metrics label slot and the queue type, for the connection gauges. */
  get metricsLabels(): { slot: number; queue: 'admin' | 'io' | 'none' } {
    return { slot: this.slot, queue: this.qid < 0 ? 'none' : this.qid === 0 ? 'admin' : 'io' };
  }

  private countAs(slot: number): void {
    this.slot = slot;
    if (this.cells) this.cbase = this.env.counters!.base(slot);
  }

  private count(field: number, n = 1): void {
    if (this.cells) this.cells[this.cbase + field]! += n;
  }

  /** Ends the connection (idempotent): the socket, the controller's view of the queue, the commands' buffers. */
  close(reason: string): void {
    if (this.state === 'moved') {
      // The controller ends the queue: the thread serving it now closes it.
      this.movedClose?.(reason);
      this.movedClose = undefined;
      return;
    }
    if (this.state === 'closed') return;
    // After a Disconnect the QID is no longer this connection's: another may hold it by now.
    const queueGone = this.state === 'disconnected';
    this.state = 'closed';
    this.reason = reason;
    clearTimeout(this.connectTimer);
    trace('nvme/tcp %s: connection closed: %s', this.peer(), reason);
    this.socket.destroy();
    for (const cmd of this.awaitingData.values()) this.release(cmd);
    this.awaitingData.clear();
    this.waiting.length = 0;
    this.spare.drop();
    this.sender.drop();
    const c = this.controller;
    if (c && !c.isGone && !queueGone) {
      if (this.qid === 0) c.disconnect();
      else c.removeIoQueue(this.qid);
    }
    this.env.closed(this);
  }

  /** Whether this thread takes no more PDUs: close() has run, a Disconnect, or the queue moving to another thread (a getter: it changes under the PDU loop's feet). */
  private get ended(): boolean {
    return this.state === 'closed' || this.state === 'disconnected' || this.state === 'moving' || this.state === 'moved';
  }

  private peer(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}${this.controller ? ` (controller ${this.controller.cntlid} queue ${this.qid})` : ''}`;
  }

  private onData(chunk: Uint8Array): void {
    if (this.ended) return;
    this.count(TcpField.BYTES_RECEIVED, chunk.length);
    this.reader.push(chunk);
    // The chunk's commands reach the local controller together: one io_uring entry (through the pair: one SQ doorbell, one reap).
    const batch = this.io.batch;
    batch?.plug();
    try {
      for (let pdu = this.reader.next(); pdu !== null && !this.ended; pdu = this.reader.next()) this.onPdu(pdu);
    } catch (e) {
      if (!(e instanceof PduError)) throw e;
      this.terminate(e);
    } finally {
      batch?.unplug();
    }
  }

  /** A fatal protocol error: C2HTermReq (unless the PDU was itself a bad TermReq), then the close. */
  private terminate(e: PduError): void {
    trace('nvme/tcp %s: %s', this.peer(), e.message);
    this.count(TcpField.TERMINATIONS);
    if (e.sendTermReq) this.sender.end(encodeC2HTermReq(e));
    this.close(e.message);
  }

  private onPdu(pdu: Pdu): void {
    switch (pdu.type) {
      case PduType.IC_REQ:
        return this.onIcReq(pdu);
      case PduType.CAPSULE_CMD:
        return this.onCapsule(pdu);
      case PduType.H2C_DATA:
        return this.onH2CData(pdu);
      case PduType.H2C_TERM_REQ:
        this.count(TcpField.TERMINATIONS);
        return this.close('the host terminated the connection (H2CTermReq)');
      default:
        // The reader lets through only what a controller may receive.
        return this.close(`unexpected PDU type 0x${pdu.type.toString(16)}`);
    }
  }

  private onIcReq(pdu: Pdu): void {
    const req = decodeIcReq(pdu);
    // HPDA: the alignment the host wants for data in what we send; CPDA 0: we take data right after the header.
    this.wire = { hdgst: req.hdgst, ddgst: req.ddgst, pda: req.hpda };
    this.write([encodeIcResp({ cpda: 0, hdgst: req.hdgst, ddgst: req.ddgst, maxh2cdata: this.env.maxH2CData })]);
    this.reader.setDigests(req.hdgst, req.ddgst);
    this.state = 'connect';
  }

  // ---- command capsules ------------------------------------------------------

  private onCapsule(pdu: Pdu): void {
    const entry = capsuleEntry(pdu);
    const cid = entry[Sqe.CID.offset]! | (entry[Sqe.CID.offset + 1]! << 8);
    this.count(TcpField.COMMANDS);
    // Every capsule takes an SQ slot (the Connect included): SQHD counts them.
    if (this.entries > 0) this.sqhd = (this.sqhd + 1) % this.entries;
    if (this.inflight.has(cid)) return this.respond(cid, statusResponse(GenericStatus.CID_CONFLICT));
    // An I/O queue reuses its records; admin and Connect capsules get their own.
    const cmd = this.qid > 0 ? (this.free.pop() ?? commandRecord(cid, this.completed)) : commandRecord(cid);
    cmd.cid = cid;
    cmd.sqe.set(entry);
    const { sqe, dv } = cmd;
    const opcode = sqe[Sqe.OPC.offset]!;
    // A host keeps no more commands outstanding than its SQ holds: that bounds what a connection can pin.
    if (this.entries > 0 && this.inflight.size >= this.entries) return this.respond(cid, statusResponse(GenericStatus.COMMAND_SEQUENCE_ERROR));
    if (pdu.dataDigestError) {
      this.count(TcpField.DATA_DIGEST_ERRORS);
      return this.respond(cid, statusResponse(GenericStatus.TRANSIENT_TRANSPORT_ERROR, false));
    }
    const fabrics = opcode === FABRICS_OPCODE;
    const fctype = fabrics ? readField(dv, 0, FabricsSqe.FCTYPE) : -1;
    if (this.state === 'connect' && fctype !== FabricsType.CONNECT) return this.respond(cid, statusResponse(GenericStatus.COMMAND_SEQUENCE_ERROR));
    // Fabrics commands carry their direction in FCTYPE's low bits, as opcodes do.
    const direction = dataDirection(fabrics ? fctype : opcode);
    const sglId = readField(dv, FabricsSqe.SGL1.offset, SglDescriptor.SGL_ID);
    const length = readField(dv, FabricsSqe.SGL1.offset, SglDescriptor.LENGTH);
    startCommand(cmd, direction, length);
    const refused = checkDataPointer(sqe, direction, pdu.data.length, this.limits, dv);
    if (refused !== undefined) return this.respond(cid, statusResponse(refused));
    this.inflight.add(cid);
    if (this.state === 'connect') return this.connect(cmd, pdu.data.subarray(0, length));
    const inCapsule = sglId === SGL_ID_IN_CAPSULE ? pdu.data.subarray(0, length) : undefined;
    // The common case goes on synchronously: the pair is known, so is the buffer (the PDU's views last until the next one).
    if (length === 0 || this.qid === 0 || fabrics || this.io.usable()) this.withData(cmd, inCapsule);
    else {
      const copy = inCapsule?.slice();
      this.reattach(cmd, () => this.withData(cmd, copy));
    }
  }

  /** Runs I/O command `cmd` on `q`'s controller (IoPath.run); Command Interrupted when it cannot take it now. */
  private runIo(q: IoQueuePair, cmd: Command): void {
    if (cmd.placed && cmd.buffer === undefined) cmd.buffer = this.sender.reserveData(this.wire, cmd.length, this.sqFlowOff);
    if (!this.io.run(q, cmd)) this.finish(cmd, statusResponse(GenericStatus.COMMAND_INTERRUPTED, false));
  }

  /** Gets the command's buffer (its data in it, for a write) and runs it; an R2T'd write waits for its H2CData. */
  private withData(cmd: Command, inCapsule: Uint8Array | undefined): void {
    // Reached after the connection ended (its queue pair came after the close): nothing to take or run.
    if (this.state === 'closed') return;
    // A command that completes inside the call needs no DMA buffer: a write's data is used where it arrived, a read's goes where its response is gathered (runIo).
    const q = cmd.length > 0 && this.qid > 0 && cmd.sqe[Sqe.OPC.offset] !== FABRICS_OPCODE ? this.io.usable() : undefined;
    if (q && this.io.inline(q, cmd) && (inCapsule !== undefined || (cmd.direction === DataDirection.FROM_DEVICE && this.sender.canPlace(this.wire, cmd.length)))) {
      cmd.placed = true;
      cmd.buffer = inCapsule;
      return this.run(cmd);
    }
    // A command waits its turn while the connection's others hold their share of the thread's DMA pool.
    if (cmd.length > 0 && this.spare.mustWait(cmd.length) && this.qid > 0 && readField(cmd.dv, 0, Sqe.OPC) !== FABRICS_OPCODE) {
      return void this.waiting.push({ cmd, data: inCapsule?.slice() });
    }
    if (cmd.length > 0) {
      let buffer: Uint8Array;
      try {
        buffer = this.allocate(cmd);
      } catch {
        // The arena is full for now: the host retries (no DNR).
        return this.finish(cmd, statusResponse(GenericStatus.COMMAND_INTERRUPTED, false));
      }
      if (inCapsule) buffer.set(inCapsule);
      else if (cmd.direction === DataDirection.TO_DEVICE) {
        cmd.ttag = this.nextTtag;
        this.nextTtag = (this.nextTtag + 1) & 0xffff;
        this.awaitingData.set(cmd.ttag, cmd);
        this.write([encodeR2T({ cccid: cmd.cid, ttag: cmd.ttag, r2to: 0, r2tl: cmd.length }, this.wire)]);
        return;
      }
    }
    this.run(cmd);
  }

  /** A DMA buffer of the local queue pair for I/O commands (no bounce; a spare one when there is), plain memory for admin ones. */
  private allocate(cmd: Command): Uint8Array {
    const q = this.qid > 0 && readField(cmd.dv, 0, Sqe.OPC) !== FABRICS_OPCODE ? this.io.usable() : undefined;
    if (!q) return (cmd.buffer = new Uint8Array(cmd.length));
    const buffer = this.spare.take(q, cmd.length);
    cmd.q = q;
    return (cmd.buffer = buffer);
  }

  /** Gives the command's DMA buffer back: kept for the next command while the connection lives, else to the arena. */
  private release(cmd: Command): void {
    const { q, buffer } = cmd;
    cmd.buffer = undefined;
    cmd.q = undefined;
    cmd.placed = false;
    this.giveBack(q, buffer);
  }

  private giveBack(q: IoQueuePair | undefined, buffer: Uint8Array | undefined): void {
    if (!q || !buffer) return;
    this.spare.give(q, buffer, this.state !== 'closed');
    // The commands waiting for their turn, in order, as far as the share allows.
    while (this.waiting.length > 0 && this.state === 'ready') {
      const next = this.waiting[0]!;
      if (this.spare.mustWait(next.cmd.length)) break;
      this.waiting.shift();
      this.withData(next.cmd, next.data);
    }
  }

  private onH2CData(pdu: Pdu): void {
    const h = decodeDataPdu(pdu);
    const cmd = this.awaitingData.get(h.ttag);
    // Data for no R2T, out of order or past the transfer: the binding's Data Transfer Out of Range / sequence errors.
    const wrong = h2cDataError(pdu, h, cmd, this.env.maxH2CData);
    if (wrong || !cmd) return this.terminate(wrong!);
    // A data digest error fails the command, not the transfer: the host is already sending the rest of the
    // R2T's data, which is taken (and dropped) so that its H2CData PDUs still match; the response follows the last.
    if (pdu.dataDigestError && !cmd.failed) {
      this.count(TcpField.DATA_DIGEST_ERRORS);
      cmd.failed = statusResponse(GenericStatus.TRANSIENT_TRANSPORT_ERROR, false);
    }
    if (!cmd.failed) cmd.buffer!.set(pdu.data.subarray(0, h.datal), h.datao);
    cmd.received += h.datal;
    if (cmd.received === cmd.length) {
      this.awaitingData.delete(cmd.ttag);
      if (cmd.failed) this.finish(cmd, cmd.failed);
      else this.run(cmd);
    }
  }

  private connect(cmd: Command, data: Uint8Array): void {
    const r = connectTo(this.env.targets, cmd.sqe, data, { close: (why) => this.close(why) });
    if (r.controller && r.queue) {
      this.controller = r.controller as QueueOwner;
      this.qid = r.qid;
      if (this.qid > 0) this.limits.inCapsuleBytes = this.env.inCapsuleDataBytes;
      this.entries = r.queue.entries;
      this.sqFlowOff = r.queue.sqFlowControlDisabled;
      this.sqhd = 1 % this.entries;
      this.state = 'ready';
      clearTimeout(this.connectTimer);
      if (this.env.hostSlot) this.countAs(this.env.hostSlot(this.controller.hostnqn));
      trace('nvme/tcp %s: connected (%s)', this.peer(), this.controller.hostnqn);
      if (this.qid > 0 && this.env.moveQueue) {
        // Read nothing more here; once the Connect's response is out, another thread may take the queue.
        this.state = 'moving';
        this.socket.pause();
        this.inflight.delete(cmd.cid);
        this.write([encodeCapsuleResp(encodeResponse(r.response, cmd.cid, this.qid, this.sqFlowOff ? SQHD_DISABLED : this.sqhd), this.wire)], () => this.move());
        return;
      }
    }
    this.finish(cmd, r.response);
  }

  /** The thread this queue moved to has ended its connection: the controller forgets the queue. */
  movedEnded(reason: string): void {
    if (this.state !== 'moved') return;
    this.state = 'closed';
    this.reason = reason;
    this.movedClose = undefined;
    const c = this.controller;
    if (c && !c.isGone && !this.movedDisconnect) c.removeIoQueue(this.qid);
    this.env.closed(this);
  }

  /** The host disconnected the moved queue in its thread: the controller forgets it now (the QID may connect again), not when the socket ends. */
  movedDisconnected(): void {
    if (this.state !== 'moved' || this.movedDisconnect) return;
    this.movedDisconnect = true;
    const c = this.controller;
    if (c && !c.isGone) c.removeIoQueue(this.qid);
  }

  /** Hands the connected I/O queue to another thread, or serves it here when none takes it. */
  private move(): void {
    if (this.state !== 'moving') return;
    const c = this.controller!;
    const unread = this.reader.takeUnread();
    const m: MovedQueue = { ...this.wire, hdgst: this.wire.hdgst === true, ddgst: this.wire.ddgst === true, hpda: this.wire.pda ?? 0, cntlid: c.cntlid, hostnqn: c.hostnqn, qid: this.qid, entries: this.entries, sqhd: this.sqhd, sqFlowOff: this.sqFlowOff, unread, hostSlot: this.slot };
    const closeThere = this.env.moveQueue!(this, m);
    if (!closeThere) {
      this.state = 'ready';
      this.socket.resume();
      this.onData(unread);
      return;
    }
    this.state = 'moved';
    this.movedClose = closeThere;
    // This thread's handle on the socket goes; the connection lives on in the other thread's duplicate.
    this.socket.removeAllListeners();
    this.socket.on('error', () => {});
    this.socket.destroy();
    trace('nvme/tcp controller %d queue %d: served by another thread', c.cntlid, this.qid);
  }

  private run(cmd: Command): void {
    if (this.state === 'closed') return this.release(cmd);
    const c = this.controller!;
    const dv = cmd.dv;
    if (this.qid === 0) {
      void c.execute(cmd.sqe, cmd.direction === DataDirection.TO_DEVICE ? cmd.buffer : undefined).then((r) => this.answer(cmd, r));
      return;
    }
    if (readField(dv, 0, Sqe.OPC) === FABRICS_OPCODE) {
      const r = c.fabricsCommand(cmd.sqe, this.qid);
      const disconnect = r.status === 0 && readField(dv, 0, FabricsSqe.FCTYPE) === FabricsType.DISCONNECT;
      this.finish(cmd, r);
      if (disconnect && this.state === 'ready') {
        // The queue is deleted: nothing the host sends after its Disconnect runs on it.
        this.state = 'disconnected';
        this.sender.end();
      }
      return;
    }
    const want = expectedBytes(dv, this.env.namespaces);
    if (want !== undefined && want !== cmd.length) return this.finish(cmd, statusResponse(GenericStatus.DATA_SGL_LENGTH_INVALID));
    const q = cmd.q ?? this.io.usable();
    if (q) return this.runIo(q, cmd);
    this.reattach(cmd, (fresh) => this.runIo(fresh, cmd));
  }

  /** Gets the thread's queue pair (again, after a reset failed it), then goes on with `next`; Command Interrupted when there is none. */
  private reattach(cmd: Command, next: (q: IoQueuePair) => void): void {
    const interrupted = (): void => this.finish(cmd, statusResponse(GenericStatus.COMMAND_INTERRUPTED, false));
    this.env.ioQueue().then((q) => {
      this.io.use(q);
      next(q);
    }, interrupted);
  }

  /** Sends a command's response, with its data when it read some. */
  private answer(cmd: Command, r: FabricsResponse): void {
    if (cmd.direction === DataDirection.FROM_DEVICE && r.status === 0) {
      // Admin data comes back in the response (at most what the SGL asked for); I/O data is in the DMA buffer.
      const data = this.qid === 0 ? r.data?.subarray(0, cmd.length) : cmd.buffer;
      if (data && data.length > 0) return this.finish(cmd, r, data);
    }
    this.finish(cmd, r);
  }

  /** Sends the command's data (if any) and its response; gives its buffer back once the socket is done with it. */
  private readonly finish = (cmd: Command, r: FabricsResponse, data?: Uint8Array): void => this.complete(cmd, r.status, r.dw0, r.dw1, data);

  private readonly completed = (cmd: Command, status: number, dw0: number, dw1: number, data: Uint8Array | undefined): void => this.complete(cmd, status, dw0, dw1, data);

  /** finish() by fields: small data is copied (its DMA buffer free at once), larger goes by reference (given back once sent). */
  private complete(cmd: Command, status: number, dw0: number, dw1: number, data: Uint8Array | undefined): void {
    this.inflight.delete(cmd.cid);
    if (this.state === 'closed') return this.release(cmd);
    const cid = cmd.cid;
    const sqid = Math.max(this.qid, 0);
    const sqhd = this.sqFlowOff ? SQHD_DISABLED : this.sqhd;
    const success = data !== undefined && status === 0 && this.sqFlowOff;
    const gathered = cmd.placed && cmd.direction === DataDirection.FROM_DEVICE && cmd.buffer !== undefined ? this.sender.placed(this.wire, cid, sqid, sqhd, status, dw0, dw1, success) : this.sender.gather(this.wire, cid, sqid, sqhd, status, dw0, dw1, data, success);
    if (gathered !== undefined) {
      this.count(TcpField.BYTES_SENT, gathered);
      this.release(cmd);
    } else {
      // The record may serve another command before the socket is done: the buffer goes back by itself.
      const { q, buffer } = cmd;
      cmd.q = undefined;
      cmd.buffer = undefined;
      this.count(TcpField.BYTES_SENT, this.sender.sendCompletion(this.wire, cid, sqid, sqhd, status, dw0, dw1, data, success, () => this.giveBack(q, buffer)));
    }
    // An I/O queue's record (the one with a local completion callback) is free for the next capsule.
    if (cmd.local !== undefined) this.free.push(cmd);
  }

  private respond(cid: number, r: FabricsResponse): void {
    this.write([encodeCapsuleResp(encodeResponse(r, cid, Math.max(this.qid, 0), this.sqFlowOff ? SQHD_DISABLED : this.sqhd), this.wire)]);
  }

  private write(segments: Uint8Array[], done?: () => void): void {
    if (this.state === 'closed') return done?.();
    this.count(TcpField.BYTES_SENT, this.sender.send(segments, done));
  }
}
