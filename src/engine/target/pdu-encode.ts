/**
 * The NVMe/TCP wire, send side: PDU encoders. The target sends ICResp,
 * CapsuleResp, C2HData, R2T and C2HTermReq; the host-side PDUs (ICReq,
 * CapsuleCmd, H2CData, H2CTermReq) are here too, for a host and for tests.
 *
 * Each encoder returns freshly allocated header bytes, or, for the ones the
 * target sends per command (CapsuleResp, C2HData, R2T), writes them into
 * `into` when given (a preallocated per-command buffer of
 * `MAX_HEADER_SEGMENT` bytes, the data digest included) and returns views of
 * it. A PDU with data comes
 * back as segments, `[header + digest + padding, data, data digest]`, for
 * `socket.writev()` or a corked run of writes: the data is the caller's own
 * array (a view of the DMA buffer), never copied. The caller must not change
 * it until the write completed. PDUs without data come back as one array.
 *
 * `putC2HData()` and `putCapsuleResp()` write the two PDUs a command's
 * completion sends, without digests, in place into a buffer of the caller's
 * (a sender gathering a turn's PDUs), with no allocation.
 *
 * Digests are added when `wire` says they were negotiated; ICReq, ICResp and
 * the TermReqs never carry any. Padding: data starts at the next multiple of
 * the receiver's PDU data alignment (`wire.pda`: the host's HPDA for C2H
 * PDUs, the controller's CPDA for H2C), right after the header digest.
 */
import { crc32c } from '../shared/crc32c.js';
import { Cqe } from '../spec/command.js';
import { writeField, type Field } from '../spec/layout.js';
import {
  C2HDataPdu,
  CapsuleCmdPdu,
  CapsuleRespPdu,
  DDGST_SIZE,
  H2CDataPdu,
  HDGST_SIZE,
  IcReqPdu,
  IcRespPdu,
  MAX_PDA,
  MAX_PLEN,
  MAXH2CDATA_MULTIPLE,
  MIN_MAXH2CDATA,
  PduFlag,
  PduType,
  R2TPdu,
  TCP_PFV_1_0,
  TERM_REQ_MAX_ERROR_DATA,
  TcpCommonHeader as CH,
  TermReqPdu,
  pdaBytes,
} from '../spec/tcp-pdu.js';
import type { DataPduFields, IcReqFields, IcRespFields, R2TFields } from './pdu-fields.js';

/** What ICReq / ICResp negotiated, as the sender applies it. */
export interface WireOptions {
  hdgst?: boolean;
  ddgst?: boolean;
  /** The receiver's PDU data alignment, 0's based dwords (HPDA for C2H PDUs, CPDA for H2C). */
  pda?: number;
}

const NONE: WireOptions = {};

/**
 * Room for the most an encoder writes into `into`: a header segment (a
 * header, its digest and padding to the largest data alignment, 128 bytes)
 * and after it the data digest.
 */
export const MAX_HEADER_SEGMENT = pdaBytes(MAX_PDA) + DDGST_SIZE;

/** Header bytes with the common header filled in (in `into` if given); the caller writes the type's fields and then `seal()`s it. */
function begin(type: number, flags: number, hlen: number, length: number, pdo: number, plen: number, into?: Uint8Array): [Uint8Array, DataView] {
  let bytes: Uint8Array;
  if (into === undefined) {
    bytes = new Uint8Array(length);
  } else {
    if (into.length < length) throw new RangeError(`a ${length}-byte PDU header does not fit ${into.length} bytes`);
    bytes = into.subarray(0, length);
    bytes.fill(0);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, length);
  writeField(dv, 0, CH.PDU_TYPE, type);
  writeField(dv, 0, CH.FLAGS, flags);
  writeField(dv, 0, CH.HLEN, hlen);
  writeField(dv, 0, CH.PDO, pdo);
  writeField(dv, 0, CH.PLEN, plen);
  return [bytes, dv];
}

/** The header digest, CRC32C of the HLEN header bytes, little endian right after them. */
function seal(bytes: Uint8Array, dv: DataView, hlen: number, hdgst: boolean): Uint8Array {
  if (hdgst) dv.setUint32(hlen, crc32c(bytes.subarray(0, hlen)), true);
  return bytes;
}

/** A PDU without data: header and, when negotiated and `digestible`, its digest. */
function headerOnly(type: number, hlen: number, wire: WireOptions, fill: (dv: DataView) => void, digestible = true, into?: Uint8Array): Uint8Array {
  const hdgst = digestible && wire.hdgst === true;
  const full = hlen + (hdgst ? HDGST_SIZE : 0);
  const [bytes, dv] = begin(type, hdgst ? PduFlag.HDGSTF : 0, hlen, full, 0, full, into);
  fill(dv);
  return seal(bytes, dv, hlen, hdgst);
}

/** A PDU with data at PDO: `[header + digest + padding, data, data digest?]`. */
function withData(type: number, flags: number, hlen: number, data: Uint8Array, wire: WireOptions, fill: (dv: DataView) => void, into?: Uint8Array): Uint8Array[] {
  const hdgst = wire.hdgst === true;
  const ddgst = wire.ddgst === true && data.length > 0;
  const full = hlen + (hdgst ? HDGST_SIZE : 0);
  if (data.length === 0) return [headerOnly(type, hlen, wire, fill, true, into)];
  const align = pdaBytes(checkPda(wire.pda ?? 0));
  const pdo = Math.ceil(full / align) * align;
  const plen = pdo + data.length + (ddgst ? DDGST_SIZE : 0);
  if (plen > MAX_PLEN) throw new RangeError(`PDU of ${plen} bytes does not fit PLEN`);
  const f = flags | (hdgst ? PduFlag.HDGSTF : 0) | (ddgst ? PduFlag.DDGSTF : 0);
  const [bytes, dv] = begin(type, f, hlen, pdo, pdo, plen, into);
  fill(dv);
  seal(bytes, dv, hlen, hdgst);
  if (!ddgst) return [bytes, data];
  const digest = into !== undefined && into.length >= pdo + DDGST_SIZE ? into.subarray(pdo, pdo + DDGST_SIZE) : new Uint8Array(DDGST_SIZE);
  new DataView(digest.buffer, digest.byteOffset, DDGST_SIZE).setUint32(0, crc32c(data), true);
  return [bytes, data, digest];
}

function checkPda(pda: number): number {
  if (!Number.isInteger(pda) || pda < 0 || pda > MAX_PDA) throw new RangeError(`PDU data alignment ${pda} is not in [0, ${MAX_PDA}]`);
  return pda;
}

function copyInto(dv: DataView, f: Field, src: Uint8Array, what: string): void {
  if (src.length !== f.size) throw new RangeError(`${what} is ${src.length} bytes, not ${f.size}`);
  new Uint8Array(dv.buffer, dv.byteOffset + f.offset, f.size).set(src);
}

/**
 * The bytes `putC2HData()` writes for `dataBytes` of data with `wire`
 * (header, padding to the receiver's alignment, data); undefined when the
 * wire carries digests (those PDUs are encoded by `encodeC2HData()`).
 */
export function putC2HDataBytes(dataBytes: number, wire: WireOptions = NONE): number | undefined {
  if (wire.hdgst === true || wire.ddgst === true) return undefined;
  const align = pdaBytes(checkPda(wire.pda ?? 0));
  return Math.ceil(C2HDataPdu.$size / align) * align + dataBytes;
}

/**
 * C2HData without digests written in place, at `at` of `out` (`view` a
 * DataView of all of `out`), for a sender that gathers PDUs into one buffer:
 * the same bytes as `encodeC2HData()`'s segments, `putC2HDataBytes()` of
 * them. Returns the bytes written.
 */
export function putC2HData(out: Uint8Array, view: DataView, at: number, cccid: number, data: Uint8Array, success: boolean, wire: WireOptions = NONE): number {
  const n = putC2HDataHeader(out, view, at, cccid, data.length, success, wire);
  out.set(data, at + n - data.length);
  return n;
}

/** putC2HData() for `dataBytes` of data already in place (after the header and padding): writes the rest. */
export function putC2HDataHeader(out: Uint8Array, view: DataView, at: number, cccid: number, dataBytes: number, success: boolean, wire: WireOptions = NONE): number {
  const n = putC2HDataBytes(dataBytes, wire);
  if (n === undefined) throw new RangeError('putC2HData writes PDUs without digests');
  if (dataBytes === 0) throw new RangeError('a C2HData PDU carries data');
  const pdo = n - dataBytes;
  out.fill(0, at, at + pdo);
  out[at + CH.PDU_TYPE.offset] = PduType.C2H_DATA;
  out[at + CH.FLAGS.offset] = PduFlag.LAST_PDU | (success ? PduFlag.SUCCESS : 0);
  out[at + CH.HLEN.offset] = C2HDataPdu.$size;
  out[at + CH.PDO.offset] = pdo;
  view.setUint32(at + CH.PLEN.offset, n, true);
  view.setUint16(at + C2HDataPdu.CCCID.offset, cccid, true);
  view.setUint32(at + C2HDataPdu.DATAL.offset, dataBytes, true);
  return n;
}

/** The bytes of a CapsuleResp `putCapsuleResp()` writes with `wire`; undefined with header digests. */
export function putCapsuleRespBytes(wire: WireOptions = NONE): number | undefined {
  return wire.hdgst === true ? undefined : CapsuleRespPdu.$size;
}

/**
 * A CapsuleResp without header digest written in place (see `putC2HData()`):
 * the response capsule of command `cid` on queue `sqid` with `status` (the
 * 15-bit status field), DW0, DW1 and SQHD, as `encodeResponse()` and
 * `encodeCapsuleResp()` together make it. Returns the bytes written.
 */
export function putCapsuleResp(out: Uint8Array, view: DataView, at: number, cid: number, sqid: number, sqhd: number, status: number, dw0: number, dw1: number): number {
  const n = CapsuleRespPdu.$size;
  out[at + CH.PDU_TYPE.offset] = PduType.CAPSULE_RESP;
  out[at + CH.FLAGS.offset] = 0;
  out[at + CH.HLEN.offset] = n;
  out[at + CH.PDO.offset] = 0;
  view.setUint32(at + CH.PLEN.offset, n, true);
  const cqe = at + CapsuleRespPdu.CQE.offset;
  view.setUint32(cqe + Cqe.DW0.offset, dw0 >>> 0, true);
  view.setUint32(cqe + Cqe.DW1.offset, dw1 >>> 0, true);
  view.setUint16(cqe + Cqe.SQHD.offset, sqhd & 0xffff, true);
  view.setUint16(cqe + Cqe.SQID.offset, sqid & 0xffff, true);
  view.setUint16(cqe + Cqe.CID.offset, cid & 0xffff, true);
  // The status field above the phase tag, which a fabric leaves 0.
  view.setUint16(cqe + Cqe.STATUS.offset, (status & 0x7fff) << 1, true);
  return n;
}

/** ICResp (no digests: they start with the next PDU). `pfv` defaults to 0. */
export function encodeIcResp(f: Omit<IcRespFields, 'pfv'> & { pfv?: number }): Uint8Array {
  checkPda(f.cpda);
  if (!Number.isInteger(f.maxh2cdata) || f.maxh2cdata < MIN_MAXH2CDATA || f.maxh2cdata % MAXH2CDATA_MULTIPLE !== 0 || f.maxh2cdata > MAX_PLEN) {
    throw new RangeError(`MAXH2CDATA ${f.maxh2cdata} is not a multiple of ${MAXH2CDATA_MULTIPLE} of at least ${MIN_MAXH2CDATA}`);
  }
  return headerOnly(PduType.IC_RESP, IcRespPdu.$size, NONE, (dv) => {
    writeField(dv, 0, IcRespPdu.PFV, f.pfv ?? TCP_PFV_1_0);
    writeField(dv, 0, IcRespPdu.CPDA, f.cpda);
    writeField(dv, 0, IcRespPdu.HDGST_ENABLE, f.hdgst ? 1 : 0);
    writeField(dv, 0, IcRespPdu.DDGST_ENABLE, f.ddgst ? 1 : 0);
    writeField(dv, 0, IcRespPdu.MAXH2CDATA, f.maxh2cdata);
  }, false);
}

/** ICReq, the host's first PDU. `pfv` defaults to 0. */
export function encodeIcReq(f: Omit<IcReqFields, 'pfv'> & { pfv?: number }): Uint8Array {
  checkPda(f.hpda);
  return headerOnly(PduType.IC_REQ, IcReqPdu.$size, NONE, (dv) => {
    writeField(dv, 0, IcReqPdu.PFV, f.pfv ?? TCP_PFV_1_0);
    writeField(dv, 0, IcReqPdu.HPDA, f.hpda);
    writeField(dv, 0, IcReqPdu.HDGST_ENABLE, f.hdgst ? 1 : 0);
    writeField(dv, 0, IcReqPdu.DDGST_ENABLE, f.ddgst ? 1 : 0);
    writeField(dv, 0, IcReqPdu.MAXR2T, f.maxr2t);
  }, false);
}

/** CapsuleResp carrying a 16-byte CQE. */
export function encodeCapsuleResp(cqe: Uint8Array, wire: WireOptions = NONE, into?: Uint8Array): Uint8Array {
  return headerOnly(PduType.CAPSULE_RESP, CapsuleRespPdu.$size, wire, (dv) => copyInto(dv, CapsuleRespPdu.CQE, cqe, 'CQE'), true, into);
}

/** CapsuleCmd carrying a 64-byte SQE and, optionally, in-capsule data. */
export function encodeCapsuleCmd(sqe: Uint8Array, data: Uint8Array = new Uint8Array(0), wire: WireOptions = NONE): Uint8Array[] {
  return withData(PduType.CAPSULE_CMD, 0, CapsuleCmdPdu.$size, data, wire, (dv) => copyInto(dv, CapsuleCmdPdu.SQE, sqe, 'SQE'));
}

/** C2HData: `data` (not empty) at offset `datao` of command `cccid`'s data. `success` (no CapsuleResp follows) requires `last`. */
export function encodeC2HData(f: { cccid: number; datao: number; data: Uint8Array; last: boolean; success?: boolean }, wire: WireOptions = NONE, into?: Uint8Array): Uint8Array[] {
  if (f.data.length === 0) throw new RangeError('a C2HData PDU carries data');
  // NVMe-oF 1.1 7.4.5.2: SUCCESS only on the last data PDU of the command.
  if (f.success === true && !f.last) throw new RangeError('SUCCESS requires LAST_PDU');
  const flags = (f.last ? PduFlag.LAST_PDU : 0) | (f.success === true ? PduFlag.SUCCESS : 0);
  return withData(PduType.C2H_DATA, flags, C2HDataPdu.$size, f.data, wire, (dv) => {
    writeField(dv, 0, C2HDataPdu.CCCID, f.cccid);
    writeField(dv, 0, C2HDataPdu.DATAO, f.datao);
    writeField(dv, 0, C2HDataPdu.DATAL, f.data.length);
  }, into);
}

/** H2CData: `data` (not empty) at offset `datao` of command `cccid`'s data, answering the R2T tagged `ttag`. */
export function encodeH2CData(f: Omit<DataPduFields, 'datal' | 'success'> & { data: Uint8Array }, wire: WireOptions = NONE): Uint8Array[] {
  if (f.data.length === 0) throw new RangeError('an H2CData PDU carries data');
  return withData(PduType.H2C_DATA, f.last ? PduFlag.LAST_PDU : 0, H2CDataPdu.$size, f.data, wire, (dv) => {
    writeField(dv, 0, H2CDataPdu.CCCID, f.cccid);
    writeField(dv, 0, H2CDataPdu.TTAG, f.ttag);
    writeField(dv, 0, H2CDataPdu.DATAO, f.datao);
    writeField(dv, 0, H2CDataPdu.DATAL, f.data.length);
  });
}

/** R2T: ask the host for `r2tl` (> 0) bytes of command `cccid`'s data from offset `r2to`, tagged `ttag`. */
export function encodeR2T(f: R2TFields, wire: WireOptions = NONE, into?: Uint8Array): Uint8Array {
  if (f.r2tl <= 0) throw new RangeError(`R2TL ${f.r2tl}`);
  return headerOnly(PduType.R2T, R2TPdu.$size, wire, (dv) => {
    writeField(dv, 0, R2TPdu.CCCID, f.cccid);
    writeField(dv, 0, R2TPdu.TTAG, f.ttag);
    writeField(dv, 0, R2TPdu.R2TO, f.r2to);
    writeField(dv, 0, R2TPdu.R2TL, f.r2tl);
  }, true, into);
}

/**
 * C2HTermReq: FES, FEI and, as error data, the offending PDU's header cut to
 * 128 bytes (PLEN at most 152). No digests, PDO 0. A `PduError` carries all
 * three: `encodeC2HTermReq(err)`.
 */
export function encodeC2HTermReq(f: { fes: number; fei: number; offendingHeader: Uint8Array }): Uint8Array {
  return termReq(PduType.C2H_TERM_REQ, f);
}

/** H2CTermReq, the host's side of `encodeC2HTermReq`. */
export function encodeH2CTermReq(f: { fes: number; fei: number; offendingHeader: Uint8Array }): Uint8Array {
  return termReq(PduType.H2C_TERM_REQ, f);
}

function termReq(type: number, f: { fes: number; fei: number; offendingHeader: Uint8Array }): Uint8Array {
  const errorData = f.offendingHeader.subarray(0, TERM_REQ_MAX_ERROR_DATA);
  const hlen = TermReqPdu.$size;
  const [bytes, dv] = begin(type, 0, hlen, hlen + errorData.length, 0, hlen + errorData.length);
  writeField(dv, 0, TermReqPdu.FES, f.fes);
  writeField(dv, 0, TermReqPdu.FEI, f.fei);
  bytes.set(errorData, hlen);
  return bytes;
}

/** The segments of a PDU as one array (tests, or a transport without writev). */
export function concatSegments(segments: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(segments.reduce((n, s) => n + s.length, 0));
  let at = 0;
  for (const s of segments) {
    out.set(s, at);
    at += s.length;
  }
  return out;
}
