/**
 * One NVMe/TCP connection of the host: one queue, from the ICReq to the
 * close. Commands go out as command capsules (write data in the capsule up
 * to the queue's in-capsule size, else after the target's R2T, in H2CData
 * PDUs of at most its MAXH2CDATA); read data comes back in C2HData PDUs,
 * copied to where the command said; the response capsule (or a C2HData with
 * SUCCESS) completes it.
 *
 * Bounded: at most `maxOutstanding` commands are with the target (its SQ
 * size); more wait here in order. Every wait has a deadline: the TCP connect
 * and the ICResp within `connectTimeoutMs`. When the connection ends, for
 * whatever reason, every command still outstanding or waiting completes once
 * with Host Pathing Error (SCT 3h, SC 70h, DNR clear: another path may
 * serve it), and `onFailure` says why, once.
 *
 * A PDU that breaks the binding ends the connection with an H2CTermReq; a
 * C2HTermReq from the target ends it with the target's reason.
 */
import * as net from 'node:net';
import { NvmqError, PduError } from '../../errors.js';
import { crc32c } from '../../shared/crc32c.js';
import { Cqe, Psdt, SQE_SIZE } from '../../spec/command.js';
import { FabricsSqe, SGL_ID_IN_CAPSULE, SGL_ID_TRANSPORT, SglDescriptor } from '../../spec/fabrics.js';
import { GenericStatus, PathStatus, Sct, makeStatus } from '../../spec/status.js';
import { C2HDataPdu, CapsuleCmdPdu, CapsuleRespPdu, Fes, PduFlag, PduType, fesName } from '../../spec/tcp-pdu.js';
import { PduReader, type Pdu } from '../../target/pdu.js';
import { decodeIcResp, decodeR2T, decodeTermReq, type IcRespFields } from '../../target/pdu-fields.js';
import { encodeCapsuleCmd, encodeH2CData, encodeH2CTermReq, encodeIcReq, type WireOptions } from '../../target/pdu-encode.js';
import { TcpSender } from '../../target/tcp-sender.js';

/** The status a command gets when its connection ends before it completed: Host Pathing Error, retryable. */
export const PATH_ERROR_STATUS = makeStatus(Sct.PATH, PathStatus.HOST_PATHING_ERROR, false);

export interface HostConnectionOptions {
  host: string;
  port: number;
  /** What the connection serves, for messages: "admin queue", "I/O queue 3". */
  label: string;
  hdgst: boolean;
  ddgst: boolean;
  /** Milliseconds to connect and exchange ICReq / ICResp. */
  connectTimeoutMs: number;
  /** The largest controller-to-host PDU accepted: the largest transfer, plus headers. */
  maxPduBytes: number;
  /** Commands the target may hold at once (its SQ size); more wait here. */
  maxOutstanding: number;
}

/** A command of the connection. `status` is the CQE's status field without the phase tag. */
export interface HostCommand {
  cid: number;
  /** Host-to-controller data. */
  out?: Uint8Array | undefined;
  /** Where controller-to-host data goes. */
  in?: Uint8Array | undefined;
  done(status: number, dw0: number, dw1: number): void;
}

interface Outstanding {
  cmd: HostCommand;
  /** Bytes of `out` the target asked for and was sent. */
  sent: number;
  /** Some of its C2HData failed the data digest. */
  digestError: boolean;
}

const DIGEST_ERROR_STATUS = makeStatus(Sct.GENERIC, GenericStatus.TRANSIENT_TRANSPORT_ERROR, false);

/** PSDT 01b (SGLs, the metadata pointer a buffer): what a fabrics host sets in SQE byte 1. */
const PSDT_BYTE = Psdt.SGL_MPTR_CONTIG << 6;
const SGL1 = FabricsSqe.SGL1.offset;
const CAPSULE_HLEN = CapsuleCmdPdu.$size;
/** Little-endian fields of a received header, read by bytes. */
const u16 = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);
const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

/** Where the CQE sits in a CapsuleResp PDU. */
const CQE_AT = CapsuleRespPdu.CQE.offset;

/** Sets a capsule's data pointer in the SQE at byte `at` of `bytes` (`v` a view of them): SGL1, PSDT 01b. */
function setCapsuleSgl(bytes: Uint8Array, v: DataView, at: number, inCapsule: boolean, length: number): void {
  bytes[at + 1] = (bytes[at + 1]! & 0x3f) | PSDT_BYTE;
  const sgl = at + SGL1;
  v.setUint32(sgl + SglDescriptor.ADDRESS.offset, 0, true);
  v.setUint32(sgl + SglDescriptor.ADDRESS.offset + 4, 0, true);
  v.setUint32(sgl + SglDescriptor.LENGTH.offset, length, true);
  bytes[sgl + 12] = bytes[sgl + 13] = bytes[sgl + 14] = 0;
  bytes[sgl + SglDescriptor.SGL_ID.offset] = inCapsule ? SGL_ID_IN_CAPSULE : SGL_ID_TRANSPORT;
}

/** Where the SQE sits in a CapsuleCmd PDU. */
const SQE_AT = CapsuleCmdPdu.SQE.offset;

/** A CID's capsule without in-capsule data, made once and reused: the header (and digest), a view, the segment list. */
interface CapsuleHeader {
  bytes: Uint8Array;
  view: DataView;
  segments: Uint8Array[];
}

function connectError(label: string, host: string, port: number, e: NodeJS.ErrnoException): NvmqError {
  const why = e.code === 'ECONNREFUSED' ? 'connection refused' : e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' ? 'host unreachable' : e.code === 'ENOTFOUND' ? 'no such host' : e.message;
  return new NvmqError('NVMQ_TARGET_UNREACHABLE', `cannot reach the NVMe/TCP target at ${host}:${port} (${label}): ${why}`, { cause: e });
}

export class HostConnection {
  /** What the ICResp granted. */
  readonly icResp: IcRespFields;
  /** Largest write data sent in the capsule; more goes by R2T. Set from the target's IOCCSZ (the admin queue's is 8 KiB). */
  inCapsuleBytes = 0;
  /** Called once, when the connection ends unasked (after every command completed with a path error). */
  onFailure: ((err: NvmqError) => void) | undefined;
  private readonly reader: PduReader;
  private readonly sender: TcpSender;
  private readonly wire: WireOptions;
  private readonly commands = new Map<number, Outstanding>();
  private readonly backlog: Array<{ sqe: Uint8Array; cmd: HostCommand }> = [];
  private readonly headers: CapsuleHeader[] = [];
  private failure: NvmqError | undefined;
  private closing = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly opts: HostConnectionOptions,
    reader: PduReader,
    icResp: IcRespFields,
  ) {
    this.reader = reader;
    this.icResp = icResp;
    this.wire = { hdgst: icResp.hdgst, ddgst: icResp.ddgst, pda: icResp.cpda };
    // Never held back: the host's own queue depth bounds what it sends, and a target that stops reading
    // until its responses are read would otherwise wait on a host that waits on it.
    this.sender = new TcpSender(socket, () => false);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.fail(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${opts.label}: the connection to ${opts.host}:${opts.port} failed: ${e.message}`, { cause: e })));
    socket.on('close', () => this.fail(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${opts.label}: the target at ${opts.host}:${opts.port} closed the connection`)));
  }

  /** Connects and exchanges ICReq / ICResp; rejects with one line naming what failed. */
  static async open(opts: HostConnectionOptions): Promise<HostConnection> {
    const socket = net.connect({ host: opts.host, port: opts.port, noDelay: true });
    const reader = new PduReader({ maxPduBytes: opts.maxPduBytes, side: 'host' });
    let timer: NodeJS.Timeout | undefined;
    try {
      const icResp = await new Promise<IcRespFields>((resolve, reject) => {
        timer = setTimeout(() => reject(new NvmqError('NVMQ_TIMEOUT', `${opts.label}: the NVMe/TCP target at ${opts.host}:${opts.port} did not ${socket.connecting ? 'accept the connection' : 'answer the ICReq'} within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
        let connected = false;
        socket.once('error', (e) => reject(!connected ? connectError(opts.label, opts.host, opts.port, e) : new NvmqError('NVMQ_TARGET_DISCONNECTED', `${opts.label}: the connection to ${opts.host}:${opts.port} failed before its ICResp: ${e.message}`, { cause: e })));
        socket.once('close', () => reject(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${opts.label}: the target at ${opts.host}:${opts.port} closed the connection before its ICResp`)));
        socket.once('connect', () => {
          connected = true;
          socket.write(encodeIcReq({ hpda: 0, hdgst: opts.hdgst, ddgst: opts.ddgst, maxr2t: 0 }));
        });
        const onData = (chunk: Buffer): void => {
          reader.push(chunk);
          let pdu: Pdu | null;
          try {
            pdu = reader.next();
          } catch (e) {
            return reject(new NvmqError('NVMQ_TARGET_PROTOCOL', `${opts.label}: the target's ICResp is malformed: ${(e as Error).message}`, { cause: e }));
          }
          if (pdu === null) return;
          socket.off('data', onData);
          if (pdu.type === PduType.C2H_TERM_REQ) {
            return reject(new NvmqError('NVMQ_TARGET_PROTOCOL', `${opts.label}: the target refused the ICReq (${fesName(decodeTermReq(pdu).fes)})`));
          }
          if (pdu.type !== PduType.IC_RESP) return reject(new NvmqError('NVMQ_TARGET_PROTOCOL', `${opts.label}: the target answered the ICReq with PDU type 0x${pdu.type.toString(16)}, not an ICResp`));
          const r = decodeIcResp(pdu);
          if (r.hdgst !== opts.hdgst || r.ddgst !== opts.ddgst) {
            const asked = `header digest ${opts.hdgst ? 'on' : 'off'}, data digest ${opts.ddgst ? 'on' : 'off'}`;
            const got = `header ${r.hdgst ? 'on' : 'off'}, data ${r.ddgst ? 'on' : 'off'}`;
            return reject(new NvmqError('NVMQ_TARGET_PROTOCOL', `${opts.label}: asked for ${asked}; the target granted ${got}`));
          }
          resolve(r);
        };
        socket.on('data', onData);
      });
      reader.setDigests(icResp.hdgst, icResp.ddgst);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      const conn = new HostConnection(socket, opts, reader, icResp);
      // Bytes after the ICResp, if the target sent any, were pushed to the reader already.
      conn.drain();
      return conn;
    } catch (e) {
      socket.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Commands with the target, and waiting for room. */
  get outstanding(): number {
    return this.commands.size + this.backlog.length;
  }

  /** Why the connection ended, once it has. */
  get failed(): NvmqError | undefined {
    return this.failure;
  }

  /**
   * Sends `sqe` (its CID already `cmd.cid`; SGL1 is set here) with the
   * command's data. Never completes the command inside this call unless
   * the connection is already gone.
   */
  send(sqe: Uint8Array, cmd: HostCommand): void {
    if (this.failure) return cmd.done(PATH_ERROR_STATUS, 0, 0);
    if (this.commands.size >= this.opts.maxOutstanding) {
      this.backlog.push({ sqe: sqe.slice(0, SQE_SIZE), cmd });
      return;
    }
    this.transmit(sqe, cmd);
  }

  /** Sends the capsule; `sqe` is only read, here (it may be the host's ring entry). */
  private transmit(sqe: Uint8Array, cmd: HostCommand): void {
    const out = cmd.out;
    const inCapsule = out !== undefined && out.length > 0 && out.length <= this.inCapsuleBytes;
    this.commands.set(cmd.cid, { cmd, sent: inCapsule ? out.length : 0, digestError: false });
    if (inCapsule) {
      const copy = sqe.slice(0, SQE_SIZE);
      setCapsuleSgl(copy, new DataView(copy.buffer), 0, true, out.length);
      this.sender.send(encodeCapsuleCmd(copy, out, this.wire));
      return;
    }
    // The common case (reads, writes by R2T, commands without data): the CID's own header, no allocation. It
    // is free again once the command completed, which is after the target received this.
    const h = (this.headers[cmd.cid] ??= this.capsuleHeader());
    h.bytes.set(sqe.subarray(0, SQE_SIZE), SQE_AT);
    setCapsuleSgl(h.bytes, h.view, SQE_AT, false, out?.length ?? cmd.in?.length ?? 0);
    if (this.wire.hdgst) h.view.setUint32(CAPSULE_HLEN, crc32c(h.bytes.subarray(0, CAPSULE_HLEN)), true);
    this.sender.send(h.segments);
  }

  /** A data-less capsule as the encoder makes it (common header, room for the digest), to be filled per command. */
  private capsuleHeader(): CapsuleHeader {
    const bytes = encodeCapsuleCmd(new Uint8Array(SQE_SIZE), undefined, this.wire)[0]!;
    return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.length), segments: [bytes] };
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    this.reader.push(chunk);
    this.drain();
  }

  private drain(): void {
    try {
      for (let pdu = this.reader.next(); pdu !== null && !this.failure; pdu = this.reader.next()) this.onPdu(pdu);
    } catch (e) {
      if (e instanceof PduError) {
        this.fail(new NvmqError('NVMQ_TARGET_PROTOCOL', `${this.opts.label}: the target broke the NVMe/TCP binding: ${e.message}`, { cause: e }), e.sendTermReq ? encodeH2CTermReq(e) : undefined);
      } else {
        this.fail(e instanceof NvmqError ? e : new NvmqError('NVMQ_TARGET_PROTOCOL', `${this.opts.label}: ${(e as Error).message}`, { cause: e }));
      }
    }
  }

  private protocolError(pdu: Pdu, fes: number, fei: number, message: string): PduError {
    return new PduError(fes, fei, message, { pduType: pdu.type, offendingHeader: pdu.header });
  }

  private onPdu(pdu: Pdu): void {
    switch (pdu.type) {
      case PduType.CAPSULE_RESP: {
        // The CQE's fields read in place, by bytes (no view per PDU).
        const h = pdu.header;
        const cid = u16(h, CQE_AT + Cqe.CID.offset);
        if (!this.commands.has(cid)) throw this.protocolError(pdu, Fes.INVALID_HEADER_FIELD, CQE_AT + Cqe.CID.offset, `a response for CID ${cid}, which is not outstanding`);
        this.complete(cid, u16(h, CQE_AT + Cqe.STATUS.offset) >>> 1, u32(h, CQE_AT + Cqe.DW0.offset), u32(h, CQE_AT + Cqe.DW1.offset));
        return;
      }
      case PduType.C2H_DATA: {
        const cid = u16(pdu.header, C2HDataPdu.CCCID.offset);
        const o = this.commands.get(cid);
        const datao = u32(pdu.header, C2HDataPdu.DATAO.offset);
        const dest = o?.cmd.in;
        if (!dest) throw this.protocolError(pdu, Fes.INVALID_HEADER_FIELD, C2HDataPdu.CCCID.offset, `C2HData for CID ${cid}, which reads nothing`);
        if (datao + pdu.data.length > dest.length) throw this.protocolError(pdu, Fes.DATA_TRANSFER_OUT_OF_RANGE, C2HDataPdu.DATAO.offset, `C2HData past the ${dest.length} bytes CID ${cid} reads`);
        // A data digest error is not fatal: the data is not trusted and the command fails with Transient
        // Transport Error (retryable), whatever its response says.
        if (pdu.dataDigestError) o.digestError = true;
        else dest.set(pdu.data, datao);
        if (pdu.flags & PduFlag.SUCCESS) this.complete(cid, 0, 0, 0);
        return;
      }
      case PduType.R2T: {
        const r = decodeR2T(pdu);
        const o = this.commands.get(r.cccid);
        const out = o?.cmd.out;
        if (!o || !out) throw this.protocolError(pdu, Fes.INVALID_HEADER_FIELD, 8, `R2T for CID ${r.cccid}, which writes nothing`);
        if (r.r2to !== o.sent || r.r2to + r.r2tl > out.length) throw this.protocolError(pdu, Fes.DATA_TRANSFER_OUT_OF_RANGE, 12, `R2T for bytes ${r.r2to}..${r.r2to + r.r2tl} of CID ${r.cccid}'s ${out.length} (${o.sent} sent)`);
        const max = this.icResp.maxh2cdata;
        for (let at = r.r2to, end = r.r2to + r.r2tl; at < end; at += max) {
          const n = Math.min(max, end - at);
          this.sender.send(encodeH2CData({ cccid: r.cccid, ttag: r.ttag, datao: at, data: out.subarray(at, at + n), last: at + n === end }, this.wire));
        }
        o.sent += r.r2tl;
        return;
      }
      case PduType.C2H_TERM_REQ: {
        const t = decodeTermReq(pdu);
        this.fail(new NvmqError('NVMQ_TARGET_PROTOCOL', `${this.opts.label}: the target ended the connection: ${fesName(t.fes)} (FEI 0x${t.fei.toString(16)})`));
        return;
      }
      default:
        throw this.protocolError(pdu, Fes.INVALID_HEADER_FIELD, 0, `unexpected PDU type 0x${pdu.type.toString(16)} on a host connection`);
    }
  }

  private complete(cid: number, status: number, dw0: number, dw1: number): void {
    const o = this.commands.get(cid)!;
    this.commands.delete(cid);
    const next = this.backlog.shift();
    if (next) this.transmit(next.sqe, next.cmd);
    if (o.digestError && status === 0) o.cmd.done(DIGEST_ERROR_STATUS, 0, 0);
    else o.cmd.done(status, dw0, dw1);
  }

  /** Ends the connection: `farewell` (an H2CTermReq) goes out first, after what is corked, then the socket closes. */
  private fail(err: NvmqError, farewell?: Uint8Array): void {
    if (this.failure) return;
    this.failure = err;
    if (farewell && !this.socket.destroyed) {
      while (this.socket.writableCorked > 0) this.socket.uncork();
      this.socket.end(farewell);
      // A peer that does not close its side in a second is not waited for.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.socket.destroy();
    }
    const all = [...this.commands.values()].map((o) => o.cmd).concat(this.backlog.map((b) => b.cmd));
    this.commands.clear();
    this.backlog.length = 0;
    for (const c of all) c.done(PATH_ERROR_STATUS, 0, 0);
    if (!this.closing) this.onFailure?.(err);
  }

  /** Ends the connection (what is outstanding completes with a path error); resolves once the socket is closed. */
  close(): Promise<void> {
    this.closing = true;
    if (this.socket.closed) {
      this.fail(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${this.opts.label}: closed`));
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.fail(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${this.opts.label}: closed`));
    });
  }
}
