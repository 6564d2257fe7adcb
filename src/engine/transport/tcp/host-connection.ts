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
import { C2HDataPdu, CapsuleCmdPdu, Fes, PduFlag, PduType, R2TPdu, fesName } from '../../spec/tcp-pdu.js';
import { PduReader, type Pdu } from '../../target/pdu.js';
import { decodeIcResp, decodeTermReq, type IcRespFields } from '../../target/pdu-fields.js';
import { encodeCapsuleCmd, encodeH2CData, encodeH2CTermReq, encodeIcReq, type WireOptions } from '../../target/pdu-encode.js';
import { HostOutput } from './host-output.js';
import { CQE_AT, FastReceiver, u16, u32, type ReceiveSink } from './host-receive.js';

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

const DIGEST_ERROR_STATUS = makeStatus(Sct.GENERIC, GenericStatus.TRANSIENT_TRANSPORT_ERROR, false);

/** PSDT 01b (SGLs, the metadata pointer a buffer): what a fabrics host sets in SQE byte 1. */
const PSDT_BYTE = Psdt.SGL_MPTR_CONTIG << 6;
const SGL1 = FabricsSqe.SGL1.offset;
const CAPSULE_HLEN = CapsuleCmdPdu.$size;
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

/**
 * Bytes of a connection's read buffer: the most one read takes. Room for
 * every response a queue of depth 32 has out (4 KiB reads): a read takes
 * what the target has sent, in one system call (with 64 KiB the host read
 * it in pieces and sent a write after each; measured, 256 KiB costs the host
 * less per I/O for the same rate).
 */
const READ_BYTES = 256 << 10;

/** Where the socket's reads go: the ICResp exchange, then the connection. */
interface ReadTarget {
  chunk: (buf: Uint8Array, n: number) => void;
}

function connectError(label: string, host: string, port: number, e: NodeJS.ErrnoException): NvmqError {
  const why = e.code === 'ECONNREFUSED' ? 'connection refused' : e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' ? 'host unreachable' : e.code === 'ENOTFOUND' ? 'no such host' : e.message;
  return new NvmqError('NVMQ_TARGET_UNREACHABLE', `cannot reach the NVMe/TCP target at ${host}:${port} (${label}): ${why}`, { cause: e });
}

export class HostConnection implements ReceiveSink {
  /** What the ICResp granted. */
  readonly icResp: IcRespFields;
  /** Largest write data sent in the capsule; more goes by R2T. Set from the target's IOCCSZ (the admin queue's is 8 KiB). */
  inCapsuleBytes = 0;
  /** Called once, when the connection ends unasked (after every command completed with a path error). */
  onFailure: ((err: NvmqError) => void) | undefined;
  private readonly reader: PduReader;
  /** Set without digests: the PDUs of commands are read by the fast path (host-receive.ts). */
  private readonly fast: FastReceiver | undefined;
  private readonly output: HostOutput;
  private readonly wire: WireOptions;
  /** The commands with the target, by CID; per CID, the bytes of `out` the target asked for and was sent, and whether some of its C2HData failed the data digest. */
  private readonly commands: Array<HostCommand | undefined> = [];
  private readonly sent: number[] = [];
  private readonly digestErrors: boolean[] = [];
  private active = 0;
  private readonly backlog: Array<{ sqe: Uint8Array; cmd: HostCommand }> = [];
  /** A data-less capsule's header (and digest) as the encoder makes it: each command's is written over a copy of it. */
  private readonly capsuleTemplate: Uint8Array;
  private failure: NvmqError | undefined;
  private closing = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly opts: HostConnectionOptions,
    reader: PduReader,
    icResp: IcRespFields,
    input: ReadTarget,
  ) {
    this.reader = reader;
    this.icResp = icResp;
    this.wire = { hdgst: icResp.hdgst, ddgst: icResp.ddgst, pda: icResp.cpda };
    // Never held back: the host's own queue depth bounds what it sends, and a target that stops reading
    // until its responses are read would otherwise wait on a host that waits on it.
    this.output = new HostOutput(socket);
    this.capsuleTemplate = encodeCapsuleCmd(new Uint8Array(SQE_SIZE), undefined, this.wire)[0]!.slice();
    if (!icResp.hdgst && !icResp.ddgst) this.fast = new FastReceiver(this, opts.maxPduBytes);
    input.chunk = (buf, n) => this.onData(buf, n);
    socket.on('error', (e) => this.fail(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${opts.label}: the connection to ${opts.host}:${opts.port} failed: ${e.message}`, { cause: e })));
    socket.on('close', () => this.fail(new NvmqError('NVMQ_TARGET_DISCONNECTED', `${opts.label}: the target at ${opts.host}:${opts.port} closed the connection`)));
  }

  /** Connects and exchanges ICReq / ICResp; rejects with one line naming what failed. */
  static async open(opts: HostConnectionOptions): Promise<HostConnection> {
    // The socket reads into one buffer of the connection's, reused for every read (no buffer made, filled and
    // copied per read): what a read brought is taken, or copied, before the callback returns.
    const input: ReadTarget = { chunk: () => {} };
    const readBuffer = Buffer.allocUnsafeSlow(READ_BYTES);
    // Read as a plain Uint8Array: its views are plain ones too (a Buffer's cost more).
    const readBytes = new Uint8Array(readBuffer.buffer, readBuffer.byteOffset, READ_BYTES);
    const socket = net.connect({
      host: opts.host,
      port: opts.port,
      noDelay: true,
      onread: {
        buffer: readBuffer,
        callback: (n) => {
          input.chunk(readBytes, n);
          return true;
        },
      },
    });
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
        input.chunk = (buf, n): void => {
          reader.push(buf.slice(0, n));
          let pdu: Pdu | null;
          try {
            pdu = reader.next();
          } catch (e) {
            return reject(new NvmqError('NVMQ_TARGET_PROTOCOL', `${opts.label}: the target's ICResp is malformed: ${(e as Error).message}`, { cause: e }));
          }
          if (pdu === null) return;
          input.chunk = () => {};
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
      });
      reader.setDigests(icResp.hdgst, icResp.ddgst);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      const conn = new HostConnection(socket, opts, reader, icResp, input);
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
    return this.active + this.backlog.length;
  }

  /** Why the connection ended, once it has. */
  get failed(): NvmqError | undefined {
    return this.failure;
  }

  /**
   * Sends the SQE at byte `at` of `sqe` (its CID already `cmd.cid`; SGL1 is
   * set here) with the command's data. Never completes the command inside
   * this call unless the connection is already gone.
   */
  send(sqe: Uint8Array, cmd: HostCommand, at = 0): void {
    if (this.failure) return cmd.done(PATH_ERROR_STATUS, 0, 0);
    if (this.active >= this.opts.maxOutstanding) {
      this.backlog.push({ sqe: sqe.slice(at, at + SQE_SIZE), cmd });
      return;
    }
    this.transmit(sqe, at, cmd);
  }

  /** Sends the capsule; the SQE is only read, here (it may be the host's ring entry). */
  private transmit(sqe: Uint8Array, sqeAt: number, cmd: HostCommand): void {
    const out = cmd.out;
    const cid = cmd.cid;
    const inCapsule = out !== undefined && out.length > 0 && out.length <= this.inCapsuleBytes;
    this.commands[cid] = cmd;
    this.sent[cid] = inCapsule ? out.length : 0;
    this.digestErrors[cid] = false;
    this.active++;
    if (inCapsule) {
      const copy = sqe.slice(sqeAt, sqeAt + SQE_SIZE);
      setCapsuleSgl(copy, new DataView(copy.buffer), 0, true, out.length);
      this.output.append(encodeCapsuleCmd(copy, out, this.wire));
      return;
    }
    // The common case (reads, writes by R2T, commands without data): the header written straight into the
    // output buffer, which goes out with the rest of the doorbell's capsules.
    const o = this.output;
    const t = this.capsuleTemplate;
    const at = o.reserve(t.length);
    const b = o.out;
    b.set(t, at);
    const sqeOut = at + SQE_AT;
    o.copy(sqe, sqeAt, sqeOut, SQE_SIZE);
    setCapsuleSgl(b, o.view, sqeOut, false, out?.length ?? cmd.in?.length ?? 0);
    if (this.wire.hdgst) o.view.setUint32(at + CAPSULE_HLEN, crc32c(b.subarray(at, at + CAPSULE_HLEN)), true);
  }

  /** The first `n` bytes of `buf` came in (`buf` is read into again after this call). */
  private onData(buf: Uint8Array, n: number): void {
    if (this.failure) return;
    if (this.fast !== undefined && this.reader.bufferedBytes === 0) {
      try {
        this.fast.push(buf, n);
      } catch (e) {
        this.readError(e);
      }
      return;
    }
    this.slow(buf.subarray(0, n));
  }

  /** ReceiveSink: what the fast path does not take goes through the reader, copied (the read buffer is reused). */
  slow(bytes: Uint8Array): void {
    this.reader.push(bytes.slice());
    this.drain();
  }

  get stopped(): boolean {
    return this.failure !== undefined;
  }

  private drain(): void {
    try {
      for (let pdu = this.reader.next(); pdu !== null && !this.failure; pdu = this.reader.next()) this.onPdu(pdu);
    } catch (e) {
      this.readError(e);
    }
  }

  private readError(e: unknown): void {
    if (e instanceof PduError) {
      this.fail(new NvmqError('NVMQ_TARGET_PROTOCOL', `${this.opts.label}: the target broke the NVMe/TCP binding: ${e.message}`, { cause: e }), e.sendTermReq ? encodeH2CTermReq(e) : undefined);
    } else {
      this.fail(e instanceof NvmqError ? e : new NvmqError('NVMQ_TARGET_PROTOCOL', `${this.opts.label}: ${(e as Error).message}`, { cause: e }));
    }
  }

  /** The error for the header at `at` of `h` (HLEN bytes, no digest): the header is its error data. */
  private protocolError(h: Uint8Array, at: number, fes: number, fei: number, message: string): PduError {
    return new PduError(fes, fei, message, { pduType: h[at]!, offendingHeader: h.slice(at, at + h[at + 2]!) });
  }

  /** ReceiveSink: a CapsuleResp; the CQE's fields read in place, by bytes. */
  onResponse(h: Uint8Array, at: number): void {
    const cid = u16(h, at + CQE_AT + Cqe.CID.offset);
    if (this.commands[cid] === undefined) throw this.protocolError(h, at, Fes.INVALID_HEADER_FIELD, CQE_AT + Cqe.CID.offset, `a response for CID ${cid}, which is not outstanding`);
    this.complete(cid, u16(h, at + CQE_AT + Cqe.STATUS.offset) >>> 1, u32(h, at + CQE_AT + Cqe.DW0.offset), u32(h, at + CQE_AT + Cqe.DW1.offset));
  }

  /** ReceiveSink: where a C2HData's data goes, once its header is checked against the command. */
  dataDest(h: Uint8Array, at: number): Uint8Array {
    const cid = u16(h, at + C2HDataPdu.CCCID.offset);
    const dest = this.commands[cid]?.in;
    if (!dest) throw this.protocolError(h, at, Fes.INVALID_HEADER_FIELD, C2HDataPdu.CCCID.offset, `C2HData for CID ${cid}, which reads nothing`);
    if (u32(h, at + C2HDataPdu.DATAO.offset) + u32(h, at + C2HDataPdu.DATAL.offset) > dest.length) throw this.protocolError(h, at, Fes.DATA_TRANSFER_OUT_OF_RANGE, C2HDataPdu.DATAO.offset, `C2HData past the ${dest.length} bytes CID ${cid} reads`);
    return dest;
  }

  /** ReceiveSink: a C2HData's data is in; with SUCCESS, no response follows. */
  dataEnd(cid: number, flags: number): void {
    if (flags & PduFlag.SUCCESS) this.complete(cid, 0, 0, 0);
  }

  /** ReceiveSink: an R2T; the data it asks for goes out in H2CData PDUs of at most MAXH2CDATA. */
  onR2T(h: Uint8Array, at: number): void {
    const cccid = u16(h, at + R2TPdu.CCCID.offset);
    const ttag = u16(h, at + R2TPdu.TTAG.offset);
    const r2to = u32(h, at + R2TPdu.R2TO.offset);
    const r2tl = u32(h, at + R2TPdu.R2TL.offset);
    const out = this.commands[cccid]?.out;
    if (!out) throw this.protocolError(h, at, Fes.INVALID_HEADER_FIELD, R2TPdu.CCCID.offset, `R2T for CID ${cccid}, which writes nothing`);
    const sent = this.sent[cccid]!;
    if (r2to !== sent || r2to + r2tl > out.length) throw this.protocolError(h, at, Fes.DATA_TRANSFER_OUT_OF_RANGE, R2TPdu.R2TO.offset, `R2T for bytes ${r2to}..${r2to + r2tl} of CID ${cccid}'s ${out.length} (${sent} sent)`);
    const max = this.icResp.maxh2cdata;
    for (let o = r2to, end = r2to + r2tl; o < end; o += max) {
      const n = Math.min(max, end - o);
      this.output.append(encodeH2CData({ cccid, ttag, datao: o, data: out.subarray(o, o + n), last: o + n === end }, this.wire));
    }
    this.sent[cccid] = sent + r2tl;
  }

  private onPdu(pdu: Pdu): void {
    switch (pdu.type) {
      case PduType.CAPSULE_RESP:
        return this.onResponse(pdu.header, 0);
      case PduType.C2H_DATA: {
        const dest = this.dataDest(pdu.header, 0);
        const cid = u16(pdu.header, C2HDataPdu.CCCID.offset);
        // A data digest error is not fatal: the data is not trusted and the command fails with Transient
        // Transport Error (retryable), whatever its response says.
        if (pdu.dataDigestError) this.digestErrors[cid] = true;
        else dest.set(pdu.data, u32(pdu.header, C2HDataPdu.DATAO.offset));
        return this.dataEnd(cid, pdu.flags);
      }
      case PduType.R2T:
        return this.onR2T(pdu.header, 0);
      case PduType.C2H_TERM_REQ: {
        const t = decodeTermReq(pdu);
        this.fail(new NvmqError('NVMQ_TARGET_PROTOCOL', `${this.opts.label}: the target ended the connection: ${fesName(t.fes)} (FEI 0x${t.fei.toString(16)})`));
        return;
      }
      default:
        throw this.protocolError(pdu.header, 0, Fes.INVALID_HEADER_FIELD, 0, `unexpected PDU type 0x${pdu.type.toString(16)} on a host connection`);
    }
  }

  private complete(cid: number, status: number, dw0: number, dw1: number): void {
    const cmd = this.commands[cid]!;
    this.commands[cid] = undefined;
    this.active--;
    if (this.backlog.length > 0) {
      const next = this.backlog.shift()!;
      this.transmit(next.sqe, 0, next.cmd);
    }
    if (this.digestErrors[cid] && status === 0) cmd.done(DIGEST_ERROR_STATUS, 0, 0);
    else cmd.done(status, dw0, dw1);
  }

  /** Ends the connection: `farewell` (an H2CTermReq) goes out first, after what was gathered, then the socket closes. */
  private fail(err: NvmqError, farewell?: Uint8Array): void {
    if (this.failure) return;
    this.failure = err;
    if (farewell && !this.socket.destroyed) {
      this.output.end(farewell);
      // A peer that does not close its side in a second is not waited for.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.output.drop();
      this.socket.destroy();
    }
    const all: HostCommand[] = [];
    for (let cid = 0; cid < this.commands.length; cid++) {
      const c = this.commands[cid];
      if (c !== undefined) all.push(c);
    }
    for (const b of this.backlog) all.push(b.cmd);
    this.commands.length = 0;
    this.active = 0;
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
