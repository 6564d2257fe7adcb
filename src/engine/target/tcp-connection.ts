/**
 * One NVMe/TCP connection of the target: one queue (the admin queue of a
 * controller, or one of its I/O queues), from the ICReq to the close.
 *
 *   ICReq ──► ICResp (digests as the host asked, CPDA 0, MAXH2CDATA)
 *   CapsuleCmd: the first must be a Fabrics Connect (routed by SUBNQN to
 *     the subsystem or the discovery service); then, on an admin queue,
 *     every capsule goes to its controller (`execute`); on an I/O queue,
 *     NVM commands run on the serving thread's local queue pair
 *     (local-io.ts) and Fabrics ones (Disconnect) to the controller.
 *   Data to the controller: in the capsule (SGL Data Block, Offset), or
 *     asked for with one R2T for the whole transfer and received in
 *     H2CData PDUs of at most MAXH2CDATA, in order.
 *   Data to the host: one C2HData PDU (LAST_PDU; SUCCESS too, and no
 *     response capsule, where SQ flow control is disabled) from the buffer
 *     the command ran into, then the response capsule.
 *
 * A PDU that breaks the binding ends the connection with a C2HTermReq
 * (pdu.ts says which); a data digest error fails only its command
 * (Transient Transport Error, retryable). Memory is bounded by the queue:
 * at most its SQ size of commands in flight, each with at most MDTS bytes.
 * When the connection ends (the host closed it, a termination, or the
 * controller's teardown), commands still running end into nothing and give
 * their buffers back; the controller forgets the queue (`removeIoQueue`), or
 * for an admin queue the association ends (`disconnect`).
 */
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import type { IoQueuePair } from '../host/io-queue-pair.js';
import type { NamespaceInfo } from '../host/identify.js';
import { PduError } from '../errors.js';
import { readField } from '../spec/layout.js';
import { Sqe, SQE_SIZE } from '../spec/command.js';
import { FABRICS_OPCODE, FabricsSqe, FabricsType, SGL_ID_IN_CAPSULE, SGL_ID_TRANSPORT, SglDescriptor } from '../spec/fabrics.js';
import { GenericStatus } from '../spec/status.js';
import { Fes, H2CDataPdu, PduType } from '../spec/tcp-pdu.js';
import { PduReader, type Pdu } from './pdu.js';
import { capsuleEntry, decodeDataPdu, decodeIcReq } from './pdu-fields.js';
import { encodeC2HData, encodeC2HTermReq, encodeCapsuleResp, encodeIcResp, encodeR2T, type WireOptions } from './pdu-encode.js';
import { capsuleCid, encodeResponse, readSgl1, viewOf, type FabricsResponse } from './capsule.js';
import { connectTo, type ConnectTarget } from './connect.js';
import type { ControllerCore } from './controller-core.js';
import { DataDirection, dataDirection, expectedBytes, runLocal, statusResponse } from './local-io.js';

const trace = debuglog('nvmq');

/** In-capsule data an admin queue takes (NVMe/TCP: 8 KiB, enough for a Connect's 1024 bytes). */
export const ADMIN_IN_CAPSULE_BYTES = 8192;
/** SQHD in every response where the host disabled SQ flow control (Fabrics 1.1, Connect CATTR). */
const SQHD_DISABLED = 0xffff;

/** What a connection needs from the target that accepted it. */
export interface ConnectionEnv {
  /** Where a Connect may go: the subsystem, the discovery service. */
  targets: readonly ConnectTarget[];
  /** The serving thread's local I/O queue pair (made on first use). */
  ioQueue(): Promise<IoQueuePair>;
  namespaces: ReadonlyMap<number, NamespaceInfo>;
  /** MAXH2CDATA offered in the ICResp. */
  maxH2CData: number;
  /** In-capsule data an I/O command capsule may carry (IOCCSZ − 64). */
  inCapsuleDataBytes: number;
  /** The largest transfer of one command (the local controller's MDTS). */
  maxTransferBytes: number;
  /** The connection is gone. */
  closed(c: TcpConnection): void;
}

/** A command between its capsule and its response. */
interface Command {
  cid: number;
  sqe: Uint8Array;
  direction: number;
  /** Bytes its SGL describes. */
  length: number;
  buffer: Uint8Array | undefined;
  /** Whether `buffer` is a DMA buffer of `q` to give back. */
  q: IoQueuePair | undefined;
  /** H2CData bytes received so far (an R2T'd write). */
  received: number;
  ttag: number;
  /** Set when some of its H2CData failed the data digest: the rest is taken and dropped, then this is the response. */
  failed?: FabricsResponse;
}

/** `disconnected`: the host's Disconnect deleted the I/O queue; the response goes out, then the socket ends. */
type State = 'icreq' | 'connect' | 'ready' | 'disconnected' | 'closed';

export class TcpConnection {
  private readonly reader: PduReader;
  private state: State = 'icreq';
  private wire: WireOptions = {};
  private controller: ControllerCore | undefined;
  private qid = -1;
  private entries = 0;
  private sqhd = 0;
  private sqFlowOff = false;
  /** Commands received and not yet answered, by CID. */
  private readonly inflight = new Map<number, Command>();
  /** R2T'd writes waiting for their data, by TTAG. */
  private readonly awaitingData = new Map<number, Command>();
  private nextTtag = 0;
  /** Why the connection ended, once it has. */
  reason: string | undefined;

  constructor(
    readonly socket: Socket,
    private readonly env: ConnectionEnv,
  ) {
    // The largest PDU a host may send: a capsule with the most in-capsule data, or an H2CData of MAXH2CDATA.
    const inCapsule = Math.max(ADMIN_IN_CAPSULE_BYTES, env.inCapsuleDataBytes);
    this.reader = new PduReader({ maxPduBytes: Math.max(inCapsule, env.maxH2CData) + 256, side: 'controller' });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    socket.on('close', () => this.close('the host closed the connection'));
  }

  /** The queue this connection carries, once connected: its controller's CNTLID and the QID. */
  get queue(): { cntlid: number; qid: number; hostnqn: string } | undefined {
    return this.controller ? { cntlid: this.controller.cntlid, qid: this.qid, hostnqn: this.controller.hostnqn } : undefined;
  }

  /** Ends the connection (idempotent): the socket, the controller's view of the queue, the commands' buffers. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    // After a Disconnect the QID is no longer this connection's: another may hold it by now.
    const queueGone = this.state === 'disconnected';
    this.state = 'closed';
    this.reason = reason;
    trace('nvme/tcp %s: connection closed: %s', this.peer(), reason);
    this.socket.destroy();
    for (const cmd of this.awaitingData.values()) this.release(cmd);
    this.awaitingData.clear();
    const c = this.controller;
    if (c && !c.isGone && !queueGone) {
      if (this.qid === 0) c.disconnect();
      else c.removeIoQueue(this.qid);
    }
    this.env.closed(this);
  }

  /** Whether the connection takes no more PDUs: close() has run, or a Disconnect (a getter: it changes under the PDU loop's feet). */
  private get ended(): boolean {
    return this.state === 'closed' || this.state === 'disconnected';
  }

  private peer(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}${this.controller ? ` (controller ${this.controller.cntlid} queue ${this.qid})` : ''}`;
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    this.reader.push(chunk);
    try {
      for (let pdu = this.reader.next(); pdu !== null && !this.ended; pdu = this.reader.next()) this.onPdu(pdu);
    } catch (e) {
      if (!(e instanceof PduError)) throw e;
      this.terminate(e);
    }
  }

  /** A fatal protocol error: C2HTermReq (unless the PDU was itself a bad TermReq), then the close. */
  private terminate(e: PduError): void {
    trace('nvme/tcp %s: %s', this.peer(), e.message);
    if (e.sendTermReq) this.socket.end(encodeC2HTermReq(e));
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
    this.socket.write(encodeIcResp({ cpda: 0, hdgst: req.hdgst, ddgst: req.ddgst, maxh2cdata: this.env.maxH2CData }));
    this.reader.setDigests(req.hdgst, req.ddgst);
    this.state = 'connect';
  }

  // ---- command capsules ------------------------------------------------------

  private onCapsule(pdu: Pdu): void {
    const sqe = new Uint8Array(SQE_SIZE);
    sqe.set(capsuleEntry(pdu));
    const cid = capsuleCid(sqe);
    const dv = viewOf(sqe);
    const opcode = readField(dv, 0, Sqe.OPC);
    // Every capsule takes an SQ slot (the Connect included): SQHD counts them.
    if (this.entries > 0) this.sqhd = (this.sqhd + 1) % this.entries;
    if (this.inflight.has(cid)) return this.respond(cid, statusResponse(GenericStatus.CID_CONFLICT));
    // A host keeps no more commands outstanding than its SQ holds: that bounds what a connection can pin.
    if (this.entries > 0 && this.inflight.size >= this.entries) return this.respond(cid, statusResponse(GenericStatus.COMMAND_SEQUENCE_ERROR));
    if (pdu.dataDigestError) return this.respond(cid, statusResponse(GenericStatus.TRANSIENT_TRANSPORT_ERROR, false));
    const fabrics = opcode === FABRICS_OPCODE;
    const fctype = fabrics ? readField(dv, 0, FabricsSqe.FCTYPE) : -1;
    if (this.state === 'connect' && fctype !== FabricsType.CONNECT) return this.respond(cid, statusResponse(GenericStatus.COMMAND_SEQUENCE_ERROR));
    // Fabrics commands carry their direction in FCTYPE's low bits, as opcodes do.
    const direction = dataDirection(fabrics ? fctype : opcode);
    const sgl = readSgl1(sqe)!;
    const sglId = readField(dv, FabricsSqe.SGL1.offset, SglDescriptor.SGL_ID);
    const length = sgl.length;
    const cmd: Command = { cid, sqe, direction, length, buffer: undefined, q: undefined, received: 0, ttag: -1 };
    if (length > 0) {
      if (direction === DataDirection.NONE || direction === DataDirection.BIDIRECTIONAL) return this.respond(cid, statusResponse(GenericStatus.INVALID_FIELD));
      if (length > this.env.maxTransferBytes) return this.respond(cid, statusResponse(GenericStatus.DATA_SGL_LENGTH_INVALID));
      if (sglId === SGL_ID_IN_CAPSULE) {
        const limit = this.qid > 0 ? this.env.inCapsuleDataBytes : ADMIN_IN_CAPSULE_BYTES;
        if (direction !== DataDirection.TO_DEVICE || sgl.address !== 0) return this.respond(cid, statusResponse(GenericStatus.SGL_OFFSET_INVALID));
        if (length > limit || length > pdu.data.length) return this.respond(cid, statusResponse(GenericStatus.DATA_SGL_LENGTH_INVALID));
      } else if (sglId !== SGL_ID_TRANSPORT) {
        return this.respond(cid, statusResponse(GenericStatus.SGL_TYPE_INVALID));
      } else if (pdu.data.length > 0) {
        return this.respond(cid, statusResponse(GenericStatus.SGL_TYPE_INVALID));
      }
    }
    this.inflight.set(cid, cmd);
    if (this.state === 'connect') return this.connect(cmd, pdu.data.subarray(0, length));
    void this.withData(cmd, sglId === SGL_ID_IN_CAPSULE ? pdu.data.subarray(0, length) : undefined);
  }

  /** Gets the command's buffer (its data in it, for a write) and runs it; an R2T'd write waits for its H2CData. */
  private async withData(cmd: Command, inCapsule: Uint8Array | undefined): Promise<void> {
    if (cmd.length > 0) {
      let buffer: Uint8Array;
      try {
        buffer = await this.allocate(cmd);
      } catch {
        // The arena is full for now: the host retries (no DNR).
        return this.finish(cmd, statusResponse(GenericStatus.COMMAND_INTERRUPTED, false));
      }
      if (this.state === 'closed') return this.release(cmd);
      if (inCapsule) buffer.set(inCapsule);
      else if (cmd.direction === DataDirection.TO_DEVICE) {
        cmd.ttag = this.nextTtag;
        this.nextTtag = (this.nextTtag + 1) & 0xffff;
        this.awaitingData.set(cmd.ttag, cmd);
        this.write([encodeR2T({ cccid: cmd.cid, ttag: cmd.ttag, r2to: 0, r2tl: cmd.length }, this.wire)]);
        return;
      }
    }
    void this.run(cmd);
  }

  /** A DMA buffer of the local queue pair for I/O commands (no bounce), plain memory for admin ones. */
  private async allocate(cmd: Command): Promise<Uint8Array> {
    if (this.qid > 0 && readField(viewOf(cmd.sqe), 0, Sqe.OPC) !== FABRICS_OPCODE) {
      const q = await this.env.ioQueue();
      cmd.q = q;
      return (cmd.buffer = q.allocBuffer(cmd.length));
    }
    return (cmd.buffer = new Uint8Array(cmd.length));
  }

  private release(cmd: Command): void {
    if (cmd.q && cmd.buffer) {
      try {
        cmd.q.releaseBuffer(cmd.buffer);
      } catch {
        // The pair was failed by a reset: its arena memory went with it.
      }
    }
    cmd.buffer = undefined;
    cmd.q = undefined;
  }

  private onH2CData(pdu: Pdu): void {
    const h = decodeDataPdu(pdu);
    const cmd = this.awaitingData.get(h.ttag);
    // Data for no R2T, out of order or past the transfer: the binding's Data Transfer Out of Range / sequence errors.
    if (!cmd || cmd.cid !== h.cccid) return this.terminate(new PduError(Fes.INVALID_HEADER_FIELD, H2CDataPdu.TTAG.offset, `H2CData for TTAG ${h.ttag} / CCCID ${h.cccid}, which no R2T asked for`, { pduType: pdu.type, offendingHeader: pdu.header }));
    // More than MAXH2CDATA in one PDU: the limit the ICResp set (as the reader says for an oversized PLEN).
    if (h.datal > this.env.maxH2CData) {
      return this.terminate(new PduError(Fes.DATA_TRANSFER_LIMIT_EXCEEDED, H2CDataPdu.DATAL.offset, `H2CData of ${h.datal} bytes, over MAXH2CDATA ${this.env.maxH2CData}`, { pduType: pdu.type, offendingHeader: pdu.header }));
    }
    if (h.datao !== cmd.received || h.datao + h.datal > cmd.length) {
      return this.terminate(new PduError(Fes.DATA_TRANSFER_OUT_OF_RANGE, H2CDataPdu.DATAO.offset, `H2CData at ${h.datao} (+${h.datal}) where ${cmd.received} of ${cmd.length} bytes were expected`, { pduType: pdu.type, offendingHeader: pdu.header }));
    }
    // A data digest error fails the command, not the transfer: the host is already sending the rest of the
    // R2T's data, which is taken (and dropped) so that its H2CData PDUs still match; the response follows the last.
    if (pdu.dataDigestError) cmd.failed ??= statusResponse(GenericStatus.TRANSIENT_TRANSPORT_ERROR, false);
    if (!cmd.failed) cmd.buffer!.set(pdu.data.subarray(0, h.datal), h.datao);
    cmd.received += h.datal;
    if (cmd.received === cmd.length) {
      this.awaitingData.delete(h.ttag);
      if (cmd.failed) return this.finish(cmd, cmd.failed);
      void this.run(cmd);
    }
  }

  private connect(cmd: Command, data: Uint8Array): void {
    const r = connectTo(this.env.targets, cmd.sqe, data, { close: (why) => this.close(why) });
    if (r.controller && r.queue) {
      this.controller = r.controller as ControllerCore;
      this.qid = r.qid;
      this.entries = r.queue.entries;
      this.sqFlowOff = r.queue.sqFlowControlDisabled;
      this.sqhd = 1 % this.entries;
      this.state = 'ready';
      trace('nvme/tcp %s: connected (%s)', this.peer(), this.controller.hostnqn);
    }
    this.finish(cmd, r.response);
  }

  private async run(cmd: Command): Promise<void> {
    if (this.state === 'closed') return this.release(cmd);
    const c = this.controller!;
    const dv = viewOf(cmd.sqe);
    let r: FabricsResponse;
    if (this.qid === 0) {
      r = await c.execute(cmd.sqe, cmd.direction === DataDirection.TO_DEVICE ? cmd.buffer : undefined);
    } else if (readField(dv, 0, Sqe.OPC) === FABRICS_OPCODE) {
      r = c.fabricsCommand(cmd.sqe, this.qid);
      const disconnect = r.status === 0 && readField(dv, 0, FabricsSqe.FCTYPE) === FabricsType.DISCONNECT;
      this.finish(cmd, r);
      if (disconnect && this.state === 'ready') {
        // The queue is deleted: nothing the host sends after its Disconnect runs on it.
        this.state = 'disconnected';
        this.socket.end();
      }
      return;
    } else {
      const want = expectedBytes(dv, this.env.namespaces);
      if (want !== undefined && want !== cmd.length) return this.finish(cmd, statusResponse(GenericStatus.DATA_SGL_LENGTH_INVALID));
      const q = cmd.q ?? (await this.env.ioQueue());
      r = await runLocal(q, cmd.sqe, cmd.buffer, cmd.direction);
    }
    if (cmd.direction === DataDirection.FROM_DEVICE && r.status === 0) {
      // Admin data comes back in the response (at most what the SGL asked for); I/O data is in the DMA buffer.
      const data = this.qid === 0 ? r.data?.subarray(0, cmd.length) : cmd.buffer;
      if (data && data.length > 0) return this.finish(cmd, r, data);
    }
    this.finish(cmd, r);
  }

  /** Sends the command's data (if any) and its response; gives its buffer back once the socket is done with it. */
  private finish(cmd: Command, r: FabricsResponse, data?: Uint8Array): void {
    this.inflight.delete(cmd.cid);
    if (this.state === 'closed') return this.release(cmd);
    const segments: Uint8Array[] = [];
    const success = data !== undefined && r.status === 0 && this.sqFlowOff;
    if (data) segments.push(...encodeC2HData({ cccid: cmd.cid, datao: 0, data, last: true, success }, this.wire));
    if (!success) segments.push(encodeCapsuleResp(encodeResponse(r, cmd.cid, Math.max(this.qid, 0), this.sqFlowOff ? SQHD_DISABLED : this.sqhd), this.wire));
    this.write(segments, () => this.release(cmd));
  }

  private respond(cid: number, r: FabricsResponse): void {
    this.write([encodeCapsuleResp(encodeResponse(r, cid, Math.max(this.qid, 0), this.sqFlowOff ? SQHD_DISABLED : this.sqhd), this.wire)]);
  }

  private write(segments: Uint8Array[], done?: () => void): void {
    if (this.state === 'closed') {
      done?.();
      return;
    }
    const s = this.socket;
    s.cork();
    for (let i = 0; i < segments.length; i++) s.write(segments[i]!, i === segments.length - 1 ? done : undefined);
    s.uncork();
  }
}
