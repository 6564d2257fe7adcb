/**
 * The send side of an NVMe/TCP connection: PDUs out on its socket, many in
 * one writev (the socket is corked at the first PDU and uncorked at the end
 * of the event-loop turn, or with `uncork: 'microtasks'` once the microtasks
 * queued so far have run: the target's responses to one received chunk, or
 * to one batch of completions, go out together, as a plain server answers
 * each chunk it reads, and the host works on them while the target reads
 * the next chunk), and reading held back while the host does not read what
 * it was sent (past SEND_BACKLOG_BYTES unsent, until the socket drains), so
 * a host that only sends cannot grow the target's memory.
 *
 * Small PDUs (a command's response, its read data up to COPY_MAX_BYTES) are
 * gathered: written straight into an output buffer (`alloc()`), which goes
 * to the socket as one write when it is full or at the uncork.
 * A few contiguous buffers cost the socket far less than a write
 * call (and its bookkeeping) per PDU segment, and the data's DMA buffer is
 * free again as soon as it is copied. Larger data goes out as it is, by
 * reference (`send()`), in order with what was gathered.
 *
 * Within one cork, every WRITE_THROUGH_EVERY completions go to the socket
 * at once rather than at the uncork: at depth 32 a host sends its commands
 * in one chunk, and answering the whole chunk in one write would make the
 * two ends take turns (the host idle while the target works through the
 * chunk, then the target idle while the host answers every response). Half
 * a chunk's responses out early lets the host issue its next commands
 * while the target works on the rest, as a plain server's ends overlap when
 * requests arrive in smaller chunks.
 */
import type { Socket } from 'node:net';
import { SEND_BACKLOG_BYTES } from './tcp-env.js';
import { CQE_SIZE } from '../spec/command.js';
import { encodeResponse } from './capsule.js';
import { MAX_HEADER_SEGMENT, encodeC2HData, encodeCapsuleResp, putC2HData, putC2HDataBytes, putC2HDataHeader, putCapsuleResp, putCapsuleRespBytes, type WireOptions } from './pdu-encode.js';

/** Bytes of one output buffer. */
const OUT_BYTES = 64 << 10;
/** Read data up to this size is copied into the output buffer; larger data is sent by reference. */
export const COPY_MAX_BYTES = 16 << 10;
/** Output buffers kept for reuse once the socket is done with them. */
const SPARE_OUTPUTS = 4;
/** Completions after which what was gathered and sent goes to the socket without waiting for the uncork (see above). */
export const WRITE_THROUGH_EVERY = 16;

export class TcpSender {
  private corked = false;
  private throttled = false;
  /** The output buffer (undefined until a PDU is gathered), a view of it, and the bytes written into it. */
  out: Buffer | undefined;
  view: DataView | undefined;
  private used = 0;
  /** Bytes of `out` already handed to the socket by a write-through (the buffer stays in use for the rest of the turn). */
  private sentFrom = 0;
  private readonly spare: Buffer[] = [];
  /** Per CID, the PDU headers of a completion sent by reference (C2HData, CapsuleResp), made on first use; a scratch CQE. */
  private readonly headers: Uint8Array[] = [];
  private readonly cqe = scratchCqe();
  /** Where reserveData() made room for a read's completion, and its data bytes; -1: none. */
  private placedAt = -1;
  private placedBytes = 0;
  /** Completions since what was written last went to the socket. */
  private completions = 0;

  /**
   * `reading()`: whether the connection still reads the host (it resumes
   * reading after a drain only then). `uncork`: when what was written since
   * the cork goes out (see above).
   */
  constructor(
    private readonly socket: Socket,
    private readonly reading: () => boolean,
    private readonly options: { uncork?: 'turn' | 'microtasks' } = {},
  ) {}

  /** Writes a PDU's segments, by reference; `done` once the socket is done with them. Returns the bytes. */
  send(segments: readonly Uint8Array[], done?: () => void): number {
    const s = this.socket;
    this.cork();
    this.flush();
    let bytes = 0;
    for (let i = 0; i < segments.length; i++) {
      bytes += segments[i]!.length;
      s.write(segments[i]!, i === segments.length - 1 ? done : undefined);
    }
    this.throttle();
    return bytes;
  }

  /**
   * Room for `bytes` (at most COPY_MAX_BYTES plus two PDU headers) in the
   * output buffer: returns where in `out` (and `view`) to write them,
   * now, before anything else is sent.
   */
  alloc(bytes: number): number {
    this.cork();
    if (this.out !== undefined && this.used + bytes > this.out.length) this.flush();
    if (this.out === undefined) {
      this.out = this.spare.pop() ?? Buffer.allocUnsafeSlow(Math.max(OUT_BYTES, bytes));
      this.view = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
      this.used = 0;
    }
    const at = this.used;
    this.used += bytes;
    return at;
  }

  /**
   * Gathers a command's completion: its read data (if any, up to
   * COPY_MAX_BYTES) in a C2HData, and unless `success` (the C2HData's
   * SUCCESS flag stands for it) its response capsule. Returns the bytes, or
   * undefined when these PDUs are not gathered (digests, larger data): the
   * caller encodes and `send()`s them.
   */
  gather(wire: WireOptions, cid: number, sqid: number, sqhd: number, status: number, dw0: number, dw1: number, data: Uint8Array | undefined, success: boolean): number | undefined {
    if (data !== undefined && data.length > COPY_MAX_BYTES) return undefined;
    const dataBytes = data === undefined ? 0 : putC2HDataBytes(data.length, wire);
    const respBytes = success ? 0 : putCapsuleRespBytes(wire);
    if (dataBytes === undefined || respBytes === undefined) return undefined;
    let at = this.alloc(dataBytes + respBytes);
    if (data !== undefined) at += putC2HData(this.out!, this.view!, at, cid, data, success, wire);
    if (!success) putCapsuleResp(this.out!, this.view!, at, cid, sqid, sqhd, status, dw0, dw1);
    this.completed();
    return dataBytes + respBytes;
  }

  /** Whether reserveData() can make room for a read of `bytes` with `wire` (gathered PDUs: no digests, at most COPY_MAX_BYTES). */
  canPlace(wire: WireOptions, bytes: number): boolean {
    return bytes <= COPY_MAX_BYTES && putC2HDataBytes(bytes, wire) !== undefined && putCapsuleRespBytes(wire) !== undefined;
  }

  /**
   * Room for the completion of a read whose data the controller writes
   * straight into the output buffer: returns the view the data goes to,
   * after room for its C2HData header (and its response capsule after it,
   * unless `success`). The read must complete before anything else is
   * gathered or sent (a backend that completes inside the call); then
   * `placed()`.
   */
  reserveData(wire: WireOptions, bytes: number, success: boolean): Uint8Array {
    const dataBytes = putC2HDataBytes(bytes, wire)!;
    const at = this.alloc(dataBytes + (success ? 0 : putCapsuleRespBytes(wire)!));
    this.placedAt = at;
    this.placedBytes = bytes;
    return this.out!.subarray(at + dataBytes - bytes, at + dataBytes);
  }

  /** The completion of the read reserveData() made room for: its C2HData around the data and its response; only the response when it failed. Returns the bytes. */
  placed(wire: WireOptions, cid: number, sqid: number, sqhd: number, status: number, dw0: number, dw1: number, success: boolean): number {
    const at = this.placedAt;
    this.placedAt = -1;
    if (at < 0 || this.out === undefined) throw new Error('a placed read completed with no room made for it');
    if (status !== 0) {
      // Nothing was gathered since the room was made: it is given back, and the response goes there.
      this.used = at;
      return this.gather(wire, cid, sqid, sqhd, status, dw0, dw1, undefined, false)!;
    }
    const n = putC2HDataHeader(this.out, this.view!, at, cid, this.placedBytes, success, wire);
    if (!success) putCapsuleResp(this.out, this.view!, at + n, cid, sqid, sqhd, status, dw0, dw1);
    this.completed();
    return n + (success ? 0 : putCapsuleRespBytes(wire)!);
  }

  /** A command's completion as gather() makes it, sent by reference (`data` is not copied): `done` once the socket is done with it. Returns the bytes. */
  sendCompletion(wire: WireOptions, cid: number, sqid: number, sqhd: number, status: number, dw0: number, dw1: number, data: Uint8Array | undefined, success: boolean, done: () => void): number {
    // The CID's own header buffer: the host cannot reuse the CID before it has this response, so it is free again by then.
    const hdr = (this.headers[cid] ??= new Uint8Array(2 * MAX_HEADER_SEGMENT));
    const segments = data ? encodeC2HData({ cccid: cid, datao: 0, data, last: true, success }, wire, hdr.subarray(0, MAX_HEADER_SEGMENT)) : [];
    if (!success) segments.push(encodeCapsuleResp(encodeResponse({ status, dw0, dw1 }, cid, sqid, sqhd, this.cqe), wire, hdr.subarray(MAX_HEADER_SEGMENT)));
    const bytes = this.send(segments, done);
    this.completed();
    return bytes;
  }

  /**
   * One more completion gathered or sent: every WRITE_THROUGH_EVERY of
   * them, what is corked goes to the socket now. The output buffer stays in
   * use: what was gathered since the last write goes as a view of it, and
   * the rest of the turn is gathered after it (flush() frees the buffer
   * once the socket is done with all of it).
   */
  private completed(): void {
    if (++this.completions < WRITE_THROUGH_EVERY || !this.corked) return;
    this.completions = 0;
    const out = this.out;
    if (out !== undefined && this.used > this.sentFrom) {
      this.socket.write(out.subarray(this.sentFrom, this.used));
      this.sentFrom = this.used;
    }
    // The socket writes what it holds when its last cork is taken off; the turn's cork goes back on.
    this.socket.uncork();
    this.socket.cork();
    this.throttle();
  }

  /** Writes what was gathered out (before whatever is sent next). */
  flush(): void {
    const out = this.out;
    if (out === undefined) return;
    const { used, sentFrom } = this;
    this.out = undefined;
    this.view = undefined;
    this.used = 0;
    this.sentFrom = 0;
    if (used === 0) return this.keep(out);
    // The rest (nothing, when a write-through took it all): its callback runs once the socket is done with every write of the buffer.
    this.socket.write(out.subarray(sentFrom, used), () => this.keep(out));
    this.throttle();
  }

  /** Ends the socket after what was gathered (and `last`, when given). */
  end(last?: Uint8Array): void {
    this.flush();
    if (last) this.socket.end(last);
    else this.socket.end();
  }

  /** Forgets what was gathered and not written (the connection is closed). */
  drop(): void {
    this.out = undefined;
    this.view = undefined;
    this.used = 0;
    this.sentFrom = 0;
  }

  private keep(out: Buffer): void {
    if (this.spare.length < SPARE_OUTPUTS && out.length === OUT_BYTES) this.spare.push(out);
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    if (this.options.uncork === 'microtasks') queueMicrotask(this.uncork);
    else setImmediate(this.uncork);
  }

  private throttle(): void {
    const s = this.socket;
    if (s.writableLength > SEND_BACKLOG_BYTES && !this.throttled && this.reading()) {
      this.throttled = true;
      s.pause();
      s.once('drain', () => {
        this.throttled = false;
        if (this.reading()) s.resume();
      });
    }
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.completions = 0;
    this.flush();
    this.socket.uncork();
  };
}

function scratchCqe(): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(CQE_SIZE);
  return { bytes, view: new DataView(bytes.buffer) };
}
