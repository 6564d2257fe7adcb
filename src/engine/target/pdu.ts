/**
 * The NVMe/TCP wire, receive side: a streaming PDU reader. Transport
 * independent: the connection feeds it what the socket delivered, in chunks
 * of any size, and takes whole, validated PDUs out.
 *
 *     reader.push(chunk);
 *     for (let pdu; (pdu = reader.next()) !== null; ) handle(pdu);
 *
 * Contract:
 * - `push()` keeps a reference to the chunk (no copy): do not modify it
 *   afterwards. Pushing after an error is ignored.
 * - `next()` returns the next whole PDU, or null until enough bytes are there
 *   (a truncated PDU is no error). It throws `PduError` for a PDU that breaks
 *   the binding; the connection is then over (the error is what the
 *   C2HTermReq carries) and every later `next()` throws it again.
 * - The common header is checked as soon as its 8 bytes are in, so an
 *   oversized PLEN is refused before any of its data is waited for; the
 *   header digest is checked before any header field is trusted.
 * - A PDU's `header` and `data` are views: of the pushed chunk when the PDU
 *   lies in one chunk, else of a buffer the reader reuses. Either way they
 *   stay valid until the next `next()` call only; copy what must outlive it
 *   (command data into its DMA buffer).
 * - Memory: the reader holds at most two buffers of `maxPduBytes` (the one
 *   a PDU straddling chunks is assembled in, and with `reusedChunks` the
 *   store a partial PDU is kept in) plus one header.
 *   Once `next()` has returned null, `bufferedBytes` (a partial PDU) is
 *   below `maxPduBytes`; the chunks those bytes sit in stay referenced
 *   (copied instead with `reusedChunks`).
 * - An H2CTermReq comes out as a PDU: the host is ending the connection,
 *   which gets no answer. A TermReq that is itself malformed throws a
 *   `PduError` with `sendTermReq` false.
 *
 * Digests (TCP transport, header and data digests): a header digest
 * error is fatal (`PduError`, FES Header Digest Error, FEI the received
 * digest). A data digest error is not: the PDU is returned with
 * `dataDigestError` set and the connection carries on; the target completes
 * the command with Transient Transport Error (SCT 0h, SC 22h), as the spec
 * asks. (Linux's nvmet-tcp closes the connection instead.)
 */
import { PduError } from '../errors.js';
import { crc32c } from '../shared/crc32c.js';
import { readField } from '../spec/layout.js';
import {
  C2HDataPdu,
  DDGST_SIZE,
  Fes,
  H2CDataPdu,
  HDGST_SIZE,
  IcReqPdu,
  IcRespPdu,
  MAX_PDA,
  MAX_PLEN,
  MAXH2CDATA_MULTIPLE,
  MIN_MAXH2CDATA,
  PDU_HLEN,
  PDU_TYPE_C2H_BIT,
  PduFlag,
  PduType,
  R2TPdu,
  TCP_PFV_1_0,
  TERM_REQ_MAX_ERROR_DATA,
  TERM_REQ_MAX_PLEN,
  TcpCommonHeader as CH,
  pdaBytes,
  type PduTypeValue,
} from '../spec/tcp-pdu.js';

export { PduError };

export interface PduReaderOptions {
  /**
   * Largest PLEN accepted: header, digests, padding and data. The target
   * derives it from MAXH2CDATA and the in-capsule data size it offers.
   * At least 128 (an ICReq).
   */
  maxPduBytes: number;
  /** `controller` (default) reads host-to-controller PDUs; `host` reads controller-to-host PDUs. */
  side?: 'controller' | 'host';
  /**
   * The pushed chunks are reused once `next()` has returned null (a socket
   * reading into one buffer, `onread`): the reader then copies the bytes of
   * a partial PDU into memory of its own, and references no chunk.
   */
  reusedChunks?: boolean;
  /** The data alignment this side asked for, 0's based dwords: CPDA of the ICResp (controller), HPDA of the ICReq (host). 0 by default. */
  pda?: number;
  /**
   * The connection's ICReq / ICResp were exchanged already, by another
   * reader (a connection moved to another thread): no ICReq is expected,
   * and these digests apply from the first byte.
   */
  negotiated?: { hdgst: boolean; ddgst: boolean };
}

/** One received PDU. Views stay valid until the next `next()` call. */
export interface Pdu {
  readonly type: PduTypeValue;
  readonly flags: number;
  readonly hlen: number;
  readonly pdo: number;
  readonly plen: number;
  /** The HLEN header bytes, without the header digest. */
  readonly header: Uint8Array;
  /** A DataView of `header`, for `readField(pdu.view, 0, H2CDataPdu.DATAO)`. */
  readonly view: DataView;
  /** The data: in-capsule data, H2C / C2H data, a TermReq's error data; without padding or digest. Empty when none. */
  readonly data: Uint8Array;
  /** The data digest did not match (never set without DDGSTF). Not fatal: see the file comment. */
  readonly dataDigestError: boolean;
}

const NO_DATA = new Uint8Array(0);
const CH_SIZE = CH.$size;

/** The little-endian 32-bit field at `at` of `bytes`. */
function u32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/** A header check's error: the offending header as error data (cut to what a TermReq carries). */
function headerError(p: Pending, header: Uint8Array, fes: number, fei: number, why: string): PduError {
  return new PduError(fes, fei, why, { pduType: p.type, offendingHeader: header.slice(0, Math.min(header.length, TERM_REQ_MAX_ERROR_DATA)) });
}

/** The checks of a data PDU (DATAL: the PDU's data, which it must have) and an R2T (R2TL not 0); nothing for other types. */
function checkCommandPdu(p: Pending, header: Uint8Array): void {
  if (p.type === PduType.H2C_DATA || p.type === PduType.C2H_DATA) {
    const f = p.type === PduType.H2C_DATA ? H2CDataPdu.DATAL : C2HDataPdu.DATAL;
    const datal = u32(header, f.offset);
    if (datal !== p.dataLen || datal === 0) throw headerError(p, header, Fes.INVALID_HEADER_FIELD, f.offset, `DATAL ${datal} with ${p.dataLen} bytes of data`);
  } else if (p.type === PduType.R2T && u32(header, R2TPdu.R2TL.offset) === 0) {
    throw headerError(p, header, Fes.INVALID_HEADER_FIELD, R2TPdu.R2TL.offset, 'R2TL 0');
  }
}

/** A PDU out of the reader: its header's DataView is made when first asked for (a capsule's fields are read by bytes). */
class ReadPdu implements Pdu {
  private dv: DataView | undefined;

  constructor(
    readonly type: PduTypeValue,
    readonly flags: number,
    readonly hlen: number,
    readonly pdo: number,
    readonly plen: number,
    readonly header: Uint8Array,
    readonly data: Uint8Array,
    readonly dataDigestError: boolean,
  ) {}

  get view(): DataView {
    return (this.dv ??= new DataView(this.header.buffer, this.header.byteOffset, this.header.byteLength));
  }
}

/** CH.FLAGS bits each PDU type may carry ("Common Header", and each PDU's definition). */
const VALID_FLAGS: Readonly<Record<PduTypeValue, number>> = {
  [PduType.IC_REQ]: 0,
  [PduType.IC_RESP]: 0,
  [PduType.H2C_TERM_REQ]: 0,
  [PduType.C2H_TERM_REQ]: 0,
  [PduType.CAPSULE_CMD]: PduFlag.HDGSTF | PduFlag.DDGSTF,
  [PduType.CAPSULE_RESP]: PduFlag.HDGSTF,
  [PduType.H2C_DATA]: PduFlag.HDGSTF | PduFlag.DDGSTF | PduFlag.LAST_PDU,
  [PduType.C2H_DATA]: PduFlag.HDGSTF | PduFlag.DDGSTF | PduFlag.LAST_PDU | PduFlag.SUCCESS,
  [PduType.R2T]: PduFlag.HDGSTF,
};

const isInit = (t: number): boolean => t === PduType.IC_REQ || t === PduType.IC_RESP;
const isTermReq = (t: number): boolean => t === PduType.H2C_TERM_REQ || t === PduType.C2H_TERM_REQ;
/** Types whose data sits at PDO and is covered by the data digest. */
const hasPdoData = (t: number): boolean => t === PduType.CAPSULE_CMD || t === PduType.H2C_DATA || t === PduType.C2H_DATA;

/** What the common header said, once it passed the checks. */
interface Pending {
  type: PduTypeValue;
  flags: number;
  hlen: number;
  pdo: number;
  plen: number;
  dataStart: number;
  dataLen: number;
  hdgst: boolean;
  ddgst: boolean;
  headerChecked: boolean;
}

export class PduReader {
  readonly maxPduBytes: number;
  readonly side: 'controller' | 'host';
  private readonly pdaAlign: number;
  private hdgst = false;
  private ddgst = false;
  private initialized = false;
  private failed: PduError | null = null;
  private pending: Pending | null = null;

  // The unread bytes: chunks[first..] with `head` bytes of chunks[first] already consumed.
  private chunks: Uint8Array[] = [];
  private first = 0;
  private head = 0;
  private buffered = 0;
  private readonly chBuf = new Uint8Array(CH_SIZE);
  private readonly headerBuf = new Uint8Array(IcReqPdu.$size + HDGST_SIZE);
  private scratch = NO_DATA;
  private readonly reusedChunks: boolean;
  /** The view of `store` keepUnread() made last (the front chunk while its bytes are unread). */
  private own: Uint8Array | undefined;
  /** Memory of the reader's own that keepUnread() copies into, and how much of it is used (never written again once used: PDUs handed out may view it). */
  private store = NO_DATA;
  private stored = 0;

  constructor(options: PduReaderOptions) {
    const { maxPduBytes, side = 'controller', pda = 0 } = options;
    if (!Number.isSafeInteger(maxPduBytes) || maxPduBytes < IcReqPdu.$size || maxPduBytes > MAX_PLEN) throw new RangeError(`maxPduBytes ${maxPduBytes} is not an integer in [${IcReqPdu.$size}, ${MAX_PLEN}]`);
    if (!Number.isInteger(pda) || pda < 0 || pda > MAX_PDA) throw new RangeError(`pda ${pda} is not in [0, ${MAX_PDA}]`);
    this.maxPduBytes = maxPduBytes;
    this.side = side;
    this.pdaAlign = pdaBytes(pda);
    this.reusedChunks = options.reusedChunks === true;
    if (options.negotiated) {
      this.initialized = true;
      this.hdgst = options.negotiated.hdgst;
      this.ddgst = options.negotiated.ddgst;
    }
  }

  /** The digests negotiated by ICReq / ICResp; call it after the ICReq (ICResp) came out of `next()`, before the next call. */
  setDigests(hdgst: boolean, ddgst: boolean): void {
    this.hdgst = hdgst;
    this.ddgst = ddgst;
  }

  /** Bytes pushed and not yet returned as PDUs. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Takes every byte pushed and not yet returned as a PDU (a copy) and
   * leaves the reader empty, for another reader to go on from (a connection
   * moved to another thread). Call it between `next()` calls.
   */
  takeUnread(): Uint8Array {
    const out = new Uint8Array(this.buffered);
    if (this.buffered > 0) {
      this.copyOut(out, this.buffered);
      this.consume(this.buffered);
    }
    this.pending = null;
    return out;
  }

  /**
   * Copies the bytes pushed and not yet returned into memory of the reader's
   * own (`reusedChunks`). Bytes it copied before stay where they are and
   * only the chunks pushed since are appended, so a PDU arriving in many
   * small chunks costs copies of its length, not of its length squared; the
   * store grows to the pending PDU's length (or twice what is kept) when
   * they do not fit.
   */
  private keepUnread(): void {
    if (this.buffered === 0 || (this.first === this.chunks.length - 1 && this.chunks[this.first] === this.own)) return;
    const own = this.chunks[this.first] === this.own ? this.own! : undefined;
    const kept = own ? own.length - this.head : 0;
    let start: number;
    if (own && this.store.length - this.stored >= this.buffered - kept) {
      start = own.byteOffset + this.head;
      for (let i = this.first + 1; i < this.chunks.length; i++) {
        this.store.set(this.chunks[i]!, this.stored);
        this.stored += this.chunks[i]!.length;
      }
    } else {
      if (this.store.length - this.stored < this.buffered) {
        // What is kept is part of a PDU still coming: under maxPduBytes, as is its PDU.
        this.store = new Uint8Array(Math.min(this.maxPduBytes, Math.max(2 * this.buffered, this.pending?.plen ?? 0)));
        this.stored = 0;
      }
      start = this.stored;
      this.copyOut(this.store.subarray(start), this.buffered);
      this.stored += this.buffered;
    }
    this.own = this.store.subarray(start, this.stored);
    this.chunks = [this.own];
    this.first = 0;
    this.head = 0;
  }

  push(chunk: Uint8Array): void {
    if (this.failed !== null || chunk.length === 0) return;
    // Kept as a plain Uint8Array: the PDUs' views of it are then plain ones too (a Buffer's subarray() costs more).
    this.chunks.push(Object.getPrototypeOf(chunk) === Uint8Array.prototype ? chunk : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    this.buffered += chunk.length;
  }

  next(): Pdu | null {
    if (this.failed !== null) throw this.failed;
    try {
      const pdu = this.read();
      if (pdu === null && this.reusedChunks) this.keepUnread();
      return pdu;
    } catch (e) {
      if (e instanceof PduError) this.failed = e;
      throw e;
    }
  }

  private read(): Pdu | null {
    let p = this.pending;
    if (p === null) {
      if (this.buffered < CH_SIZE) return null;
      p = this.pending = this.checkCommonHeader(this.peek(CH_SIZE, this.chBuf));
    }
    if (!p.headerChecked) {
      const full = p.hlen + (p.hdgst ? HDGST_SIZE : 0);
      if (this.buffered < full) return null;
      this.checkHeader(p, this.peek(full, this.headerBuf));
      p.headerChecked = true;
    }
    if (this.buffered < p.plen) return null;
    const bytes = this.take(p.plen);
    this.pending = null;
    const data = p.dataLen > 0 ? bytes.subarray(p.dataStart, p.dataStart + p.dataLen) : NO_DATA;
    let dataDigestError = false;
    if (p.ddgst) {
      const at = bytes.byteOffset + p.plen - DDGST_SIZE;
      dataDigestError = crc32c(data) !== new DataView(bytes.buffer, at, DDGST_SIZE).getUint32(0, true);
    }
    if (isInit(p.type)) this.initialized = true;
    return new ReadPdu(p.type, p.flags, p.hlen, p.pdo, p.plen, bytes.subarray(0, p.hlen), data, dataDigestError);
  }

  /**
   * The checks the common header alone allows, field by field in byte order:
   * the spec has a receiver report the lowest field in error.
   */
  private checkCommonHeader(ch: Uint8Array): Pending {
    const type = ch[CH.PDU_TYPE.offset]!;
    const flags = ch[CH.FLAGS.offset]!;
    const hlen = ch[CH.HLEN.offset]!;
    const pdo = ch[CH.PDO.offset]!;
    const plen = u32(ch, CH.PLEN.offset);

    // PDU-TYPE: a known type of this direction, in sequence (the ICReq / ICResp first and only once).
    const receivedDirection = this.side === 'controller' ? 0 : PDU_TYPE_C2H_BIT;
    if (!(type in PDU_HLEN) || (type & PDU_TYPE_C2H_BIT) !== receivedDirection) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PDU_TYPE, `not a PDU a ${this.side} receives`);
    const t = type as PduTypeValue;
    if (isInit(t) === this.initialized && !isTermReq(t)) {
      throw this.commonHeaderError(type, hlen, Fes.PDU_SEQUENCE_ERROR, CH.PDU_TYPE, this.initialized ? 'connection already initialized' : 'the first PDU must initialize the connection');
    }

    // FLAGS: only the type's own bits; digest flags exactly as negotiated.
    if ((flags & ~VALID_FLAGS[t]) !== 0) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.FLAGS, `flags 0x${flags.toString(16)} not defined for this PDU`);
    const hdgst = (flags & PduFlag.HDGSTF) !== 0;
    const ddgst = (flags & PduFlag.DDGSTF) !== 0;
    const fullHlen = hlen + (hdgst ? HDGST_SIZE : 0);
    if (VALID_FLAGS[t] & PduFlag.HDGSTF && hdgst !== this.hdgst) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.FLAGS, `HDGSTF ${+hdgst} but header digests ${this.hdgst ? 'on' : 'off'}`);
    // The data digest is there when negotiated and the PDU has data (bytes past the header and its digest).
    const hasData = plen > fullHlen;
    if (VALID_FLAGS[t] & PduFlag.DDGSTF && ddgst !== (this.ddgst && hasData)) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.FLAGS, `DDGSTF ${+ddgst} but data digests ${this.ddgst ? 'on' : 'off'}${hasData ? '' : ', no data'}`);
    // NVMe-oF 1.1 7.4.5.2: SUCCESS only on the last C2HData PDU.
    if ((flags & (PduFlag.SUCCESS | PduFlag.LAST_PDU)) === PduFlag.SUCCESS) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.FLAGS, 'SUCCESS without LAST_PDU');

    // HLEN: fixed per type.
    if (hlen !== PDU_HLEN[t]) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.HLEN, `HLEN ${hlen}, not ${PDU_HLEN[t]}`);

    // PDO: 0 without data; else past the header and its digest, inside the PDU, aligned as this side asked (CPDA / HPDA).
    if (!hasPdoData(t)) {
      if (pdo !== 0) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PDO, `PDO ${pdo} in a PDU without PDO data`);
    } else if (hasData || pdo !== 0) {
      if (pdo < fullHlen || pdo > plen || pdo % this.pdaAlign !== 0) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PDO, `PDO ${pdo} with header ${fullHlen}, PLEN ${plen}, alignment ${this.pdaAlign}`);
    }

    // PLEN.
    if (isTermReq(t)) {
      // NVMe-oF 1.1 7.4.7: a TermReq with a bad PLEN closes the connection, unanswered.
      if (plen < hlen || plen > TERM_REQ_MAX_PLEN) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PLEN, `TermReq PLEN ${plen}`);
    } else if (isInit(t)) {
      if (plen !== hlen) throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PLEN, `PLEN ${plen}, not ${hlen}`);
    } else if (plen < fullHlen || (!hasPdoData(t) && plen !== fullHlen)) {
      throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PLEN, `PLEN ${plen} with header ${fullHlen}`);
    } else if (ddgst && plen - pdo <= DDGST_SIZE) {
      throw this.commonHeaderError(type, hlen, Fes.INVALID_HEADER_FIELD, CH.PLEN, `PLEN ${plen} leaves no data before the data digest`);
    }
    if (plen > this.maxPduBytes) throw this.commonHeaderError(type, hlen, Fes.DATA_TRANSFER_LIMIT_EXCEEDED, CH.PLEN, `PLEN ${plen} over the limit of ${this.maxPduBytes}`);

    const dataStart = hasData ? (pdo !== 0 ? pdo : fullHlen) : plen;
    const dataLen = hasData ? plen - dataStart - (ddgst ? DDGST_SIZE : 0) : 0;
    return { type: t, flags, hlen, pdo, plen, dataStart, dataLen, hdgst, ddgst, headerChecked: false };
  }

  /** The error for a common header field (no closure per PDU: only a PDU in error pays for it). A peer's TermReq already ends the connection: one in error is not answered with another. */
  private commonHeaderError(type: number, hlen: number, fes: number, field: { offset: number }, why: string): PduError {
    return new PduError(fes, field.offset, why, { pduType: type, offendingHeader: this.copyHeader(hlen), sendTermReq: !isTermReq(type) });
  }

  /** The whole header is in: its digest first, then the fields past the common header. */
  private checkHeader(p: Pending, header: Uint8Array): void {
    // The fields of the PDUs of every command (data PDUs' DATAL, R2TL) are read by bytes: no DataView (nor closure) for them.
    const type = p.type;
    if (!p.hdgst && type !== PduType.IC_REQ && type !== PduType.IC_RESP) return checkCommandPdu(p, header);
    const fail = (fes: number, fei: number, why: string): PduError => headerError(p, header, fes, fei, why);
    const dv = new DataView(header.buffer, header.byteOffset, header.byteLength);
    if (p.hdgst) {
      const received = dv.getUint32(p.hlen, true);
      const computed = crc32c(header.subarray(0, p.hlen));
      if (received !== computed) throw fail(Fes.HEADER_DIGEST_ERROR, received, `header digest 0x${received.toString(16)}, computed 0x${computed.toString(16)}`);
    }
    switch (p.type) {
      case PduType.IC_REQ:
      case PduType.IC_RESP: {
        const s = p.type === PduType.IC_REQ ? IcReqPdu : IcRespPdu;
        const pfv = readField(dv, 0, s.PFV);
        if (pfv !== TCP_PFV_1_0) throw fail(Fes.UNSUPPORTED_PARAMETER, s.PFV.offset, `PFV ${pfv}`);
        const pdaField = p.type === PduType.IC_REQ ? IcReqPdu.HPDA : IcRespPdu.CPDA;
        const pda = readField(dv, 0, pdaField);
        if (pda > MAX_PDA) throw fail(Fes.INVALID_HEADER_FIELD, pdaField.offset, `${pdaField.name} ${pda}`);
        if (p.type === PduType.IC_RESP) {
          const max = readField(dv, 0, IcRespPdu.MAXH2CDATA);
          if (max < MIN_MAXH2CDATA || max % MAXH2CDATA_MULTIPLE !== 0) throw fail(Fes.INVALID_HEADER_FIELD, IcRespPdu.MAXH2CDATA.offset, `MAXH2CDATA ${max}`);
        }
        break;
      }
      default:
        checkCommandPdu(p, header);
        break;
    }
  }

  /** Up to `hlen` bytes (at least the common header, at most the TermReq error data limit) of the PDU at the front. */
  private copyHeader(hlen: number): Uint8Array {
    const n = Math.min(this.buffered, Math.max(CH_SIZE, Math.min(hlen, TERM_REQ_MAX_ERROR_DATA)));
    const out = new Uint8Array(n);
    this.copyOut(out, n);
    return out;
  }

  /** The first `n` bytes: a view of the front chunk if it holds them, else copied into `into`. */
  private peek(n: number, into: Uint8Array): Uint8Array {
    const c = this.chunks[this.first]!;
    if (c.length - this.head >= n) return c.subarray(this.head, this.head + n);
    this.copyOut(into, n);
    return into.subarray(0, n);
  }

  /** Removes the first `n` bytes and returns them: a view of the front chunk if it holds them, else a copy in the scratch buffer. */
  private take(n: number): Uint8Array {
    const c = this.chunks[this.first]!;
    let out: Uint8Array;
    if (c.length - this.head >= n) {
      out = c.subarray(this.head, this.head + n);
    } else {
      if (this.scratch.length < n) this.scratch = new Uint8Array(Math.min(this.maxPduBytes, Math.max(n, this.scratch.length * 2)));
      this.copyOut(this.scratch, n);
      out = this.scratch.subarray(0, n);
    }
    this.consume(n);
    return out;
  }

  private copyOut(dst: Uint8Array, n: number): void {
    let at = 0;
    for (let i = this.first, off = this.head; at < n; i++, off = 0) {
      const c = this.chunks[i]!;
      const k = Math.min(c.length - off, n - at);
      dst.set(c.subarray(off, off + k), at);
      at += k;
    }
  }

  private consume(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const left = this.chunks[this.first]!.length - this.head;
      if (left > n) {
        this.head += n;
        return;
      }
      n -= left;
      this.first++;
      this.head = 0;
    }
    // Drop consumed chunks: all of them when the queue is empty, else now and then (amortized O(1) per chunk).
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
      // Nothing kept: the store goes (PDUs handed out hold their own views of it).
      this.store = NO_DATA;
      this.stored = 0;
      this.own = undefined;
    } else if (this.first > 64 && this.first * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }
}
