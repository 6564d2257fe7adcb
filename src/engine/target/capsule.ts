/**
 * What the Fabrics command layer hands back for every capsule, and how a
 * transport turns it into a 16-byte response capsule.
 *
 * Handlers return a `FabricsResponse`: the NVMe status (the 15-bit status
 * field of `spec/status.ts`, DNR included), completion DW0 / DW1 and, for a
 * command that moves data to the host, the bytes to send. The transport owns
 * SQHD (it knows its queue's head) and the phase tag (none on a fabric:
 * Fabrics 1.1, response capsules), so `encodeResponse()` takes SQHD from it.
 */
import { Cqe, CQE_SIZE, SQE_SIZE } from '../spec/command.js';
import { GenericStatus, Sct, makeStatus } from '../spec/status.js';
import { writeField, readField, readU64 } from '../spec/layout.js';
import { FabricsSqe, SglDescriptor } from '../spec/fabrics.js';

export interface FabricsResponse {
  /** Status field: DNR(14) M(13) CRD(12:11) SCT(10:8) SC(7:0); 0 for success. */
  status: number;
  dw0: number;
  dw1: number;
  /** Controller-to-host data, exactly the length the command asked for. */
  data?: Uint8Array;
}

/** Whatever the transport gives to end one queue's connection. */
export interface QueueLink {
  /** Ends the queue's connection; this layer calls it at most once per queue. */
  close(reason: string): void;
}

export function ok(dw0 = 0, data?: Uint8Array, dw1 = 0): FabricsResponse {
  return data ? { status: 0, dw0: dw0 >>> 0, dw1: dw1 >>> 0, data } : { status: 0, dw0: dw0 >>> 0, dw1: dw1 >>> 0 };
}

/** A failed command; every rejection here is final for the host, so DNR is set unless `retry`. */
export function fail(sct: number, sc: number, dw0 = 0, retry = false): FabricsResponse {
  return { status: makeStatus(sct, sc, !retry), dw0: dw0 >>> 0, dw1: 0 };
}

export function failGeneric(sc: number, dw0 = 0): FabricsResponse {
  return fail(Sct.GENERIC, sc, dw0);
}
export const invalidField = (): FabricsResponse => failGeneric(GenericStatus.INVALID_FIELD);
export const invalidOpcode = (): FabricsResponse => failGeneric(GenericStatus.INVALID_OPCODE);
export const commandSequenceError = (): FabricsResponse => failGeneric(GenericStatus.COMMAND_SEQUENCE_ERROR);

/** The CID of a command capsule; 0 when the capsule is too short to carry one. */
export function capsuleCid(sqe: Uint8Array): number {
  return sqe.length >= SQE_SIZE ? readField(viewOf(sqe), 0, FabricsSqe.CID) : 0;
}

/** The 16-byte response capsule of `r` for command `cid` on queue `sqid` (Fabrics 1.1, response capsule); in `into` (16 bytes and its view) when given. */
export function encodeResponse(r: FabricsResponse, cid: number, sqid: number, sqhd: number, into?: { bytes: Uint8Array; view: DataView }): Uint8Array {
  const out = into?.bytes ?? new Uint8Array(CQE_SIZE);
  const dv = into?.view ?? viewOf(out);
  writeField(dv, 0, Cqe.DW0, r.dw0);
  writeField(dv, 0, Cqe.DW1, r.dw1);
  writeField(dv, 0, Cqe.SQHD, sqhd & 0xffff);
  writeField(dv, 0, Cqe.SQID, sqid & 0xffff);
  writeField(dv, 0, Cqe.CID, cid & 0xffff);
  writeField(dv, 0, Cqe.SF, r.status & 0x7fff);
  return out;
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A NUL-terminated (or field-filling) UTF-8 string from a byte field; undefined when it is not valid UTF-8. */
export function readNqnField(bytes: Uint8Array, offset: number, size: number): string | undefined {
  const field = bytes.subarray(offset, offset + size);
  const end = field.indexOf(0);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(field.subarray(0, end < 0 ? field.length : end));
  } catch {
    return undefined;
  }
}

/** Writes `text` as UTF-8 into a byte field, NUL padded (NQN fields, TRADDR, TRSVCID). */
export function writeStringField(bytes: Uint8Array, offset: number, size: number, text: string): void {
  const enc = new TextEncoder().encode(text);
  bytes.fill(0, offset, offset + size);
  bytes.set(enc.subarray(0, size - 1), offset);
}

/** SGL1 of a command capsule (bytes 39:24, NVMe 1.4 section 4.4) decoded; see SGL_ID_IN_CAPSULE / SGL_ID_TRANSPORT. */
export interface Sgl {
  type: number;
  subtype: number;
  /** An address, or for the Offset subtype the offset into the in-capsule data. */
  address: number;
  length: number;
}

/** SGL1 of a 64-byte capsule; undefined for a shorter one. */
export function readSgl1(sqe: Uint8Array): Sgl | undefined {
  if (sqe.length < SQE_SIZE) return undefined;
  const dv = viewOf(sqe);
  const at = FabricsSqe.SGL1.offset;
  return {
    type: readField(dv, at, SglDescriptor.TYPE),
    subtype: readField(dv, at, SglDescriptor.SUBTYPE),
    address: readU64(dv, at + SglDescriptor.ADDRESS.offset),
    length: readField(dv, at, SglDescriptor.LENGTH),
  };
}
