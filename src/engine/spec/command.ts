/**
 * Submission and completion queue entries (NVMe 1.4, sections 4.2 and 4.6).
 */
import { addressOf, struct } from './layout.js';

export const SQE_SIZE = 64;
export const CQE_SIZE = 16;
/** CC.IOSQES / IOCQES and Identify SQES / CQES use log2 of the entry size. */
export const SQE_SIZE_LOG2 = 6;
export const CQE_SIZE_LOG2 = 4;

/** Common command format (Figure 105/106). */
export const Sqe = struct('SQE', SQE_SIZE, {
  CDW0: [0, 4],
  OPC: [0, 1],
  FUSE: [1, 1, 0, 2],
  PSDT: [1, 1, 6, 2],
  CID: [2, 2],
  NSID: [4, 4],
  CDW2: [8, 4],
  CDW3: [12, 4],
  MPTR: [16, 8],
  PRP1: [24, 8],
  PRP2: [32, 8],
  CDW10: [40, 4],
  CDW11: [44, 4],
  CDW12: [48, 4],
  CDW13: [52, 4],
  CDW14: [56, 4],
  CDW15: [60, 4],
});

/** Common completion queue entry (Figure 124). */
export const Cqe = struct('CQE', CQE_SIZE, {
  DW0: [0, 4],
  DW1: [4, 4],
  SQHD: [8, 2],
  SQID: [10, 2],
  CID: [12, 2],
  /** Phase tag (bit 0) and status field (bits 15:1). */
  STATUS: [14, 2],
  P: [14, 2, 0, 1],
  SF: [14, 2, 1, 15],
});

/** A command's dwords, decoded once from the 64-byte SQE. */
export interface Command {
  opcode: number;
  fuse: number;
  psdt: number;
  cid: number;
  nsid: number;
  cdw2: number;
  cdw3: number;
  mptr: number;
  prp1: number;
  prp2: number;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
  cdw15: number;
}

/** A posted completion, as the host reads it. */
export interface Completion {
  dw0: number;
  dw1: number;
  sqhd: number;
  sqid: number;
  cid: number;
  /** Status field without the phase tag: DNR(14) M(13) CRD(12:11) SCT(10:8) SC(7:0). */
  status: number;
  phase: number;
}

const TWO32 = 0x1_0000_0000;

/**
 * The same decode from 32-bit words (`at` is a word index of a 64-byte aligned
 * SQE in a Uint32Array over the queue memory): the controller's hot path.
 * Little-endian hosts, as NVMe itself.
 */
export function decodeCommandWords(w: Uint32Array, at: number): Command {
  const cdw0 = w[at]!;
  return {
    opcode: cdw0 & 0xff,
    fuse: (cdw0 >>> 8) & 0x3,
    psdt: (cdw0 >>> 14) & 0x3,
    cid: cdw0 >>> 16,
    nsid: w[at + 1]!,
    cdw2: w[at + 2]!,
    cdw3: w[at + 3]!,
    mptr: w[at + 4]! + w[at + 5]! * TWO32,
    prp1: addressOf(w[at + 6]!, w[at + 7]!),
    prp2: addressOf(w[at + 8]!, w[at + 9]!),
    cdw10: w[at + 10]!,
    cdw11: w[at + 11]!,
    cdw12: w[at + 12]!,
    cdw13: w[at + 13]!,
    cdw14: w[at + 14]!,
    cdw15: w[at + 15]!,
  };
}

export function decodeCommand(dv: DataView, at: number): Command {
  const [w, i] = wordsOf(dv, at);
  return decodeCommandWords(w, i);
}

/**
 * Writes an SQE (through `encodeCommandWords`). `cid`, `prp1` and `prp2`, when given, replace the command's
 * own fields.
 */
export function encodeCommand(dv: DataView, at: number, c: Partial<Command> & { opcode: number }, cid = c.cid ?? 0, prp1 = c.prp1 ?? 0, prp2 = c.prp2 ?? 0): void {
  const [w, i] = wordsOf(dv, at);
  encodeCommandWords(w, i, c, cid, prp1, prp2);
}

/**
 * `encodeCommand` into 32-bit words (`at` is a word index of a 64-byte aligned
 * SQE): the host's hot path. Little-endian hosts, as NVMe itself.
 */
export function encodeCommandWords(w: Uint32Array, at: number, c: Partial<Command> & { opcode: number }, cid: number, prp1 = c.prp1 ?? 0, prp2 = c.prp2 ?? 0): void {
  w[at] = (c.opcode & 0xff) | ((c.fuse ?? 0) << 8) | ((c.psdt ?? 0) << 14) | (cid << 16);
  w[at + 1] = c.nsid ?? 0;
  w[at + 2] = c.cdw2 ?? 0;
  w[at + 3] = c.cdw3 ?? 0;
  const mptr = c.mptr ?? 0;
  w[at + 4] = mptr % TWO32;
  w[at + 5] = Math.floor(mptr / TWO32);
  w[at + 6] = prp1 % TWO32;
  w[at + 7] = Math.floor(prp1 / TWO32);
  w[at + 8] = prp2 % TWO32;
  w[at + 9] = Math.floor(prp2 / TWO32);
  w[at + 10] = c.cdw10 ?? 0;
  w[at + 11] = c.cdw11 ?? 0;
  w[at + 12] = c.cdw12 ?? 0;
  w[at + 13] = c.cdw13 ?? 0;
  w[at + 14] = c.cdw14 ?? 0;
  w[at + 15] = c.cdw15 ?? 0;
}

/**
 * Posts a CQE through 32-bit words (`at` a word index of a 16-byte aligned
 * entry): dwords 0-2 first, then dword 3 — CID, phase tag and status — with
 * one atomic store, so a host that sees the new phase with an atomic load of
 * that dword sees the whole entry.
 */
export function postCompletionWords(w: Uint32Array, at: number, c: Completion): void {
  w[at] = c.dw0;
  w[at + 1] = c.dw1;
  w[at + 2] = (c.sqhd & 0xffff) | ((c.sqid & 0xffff) << 16);
  Atomics.store(w, at + 3, ((c.cid & 0xffff) | ((c.phase & 1) << 16) | ((c.status & 0x7fff) << 17)) >>> 0);
}

/** Writes a CQE, dword 3 (CID, phase, status) last; the controller's `postCompletionWords` on a DataView. */
export function encodeCompletion(dv: DataView, at: number, c: Completion): void {
  const [w, i] = wordsOf(dv, at);
  postCompletionWords(w, i, c);
}

/** A CQE from 32-bit words (`at` a word index), dword 3 given as already loaded (atomically) by the caller. */
export function decodeCompletionWords(w: Uint32Array, at: number, dw3: number): Completion {
  const dw2 = w[at + 2]!;
  return { dw0: w[at]!, dw1: w[at + 1]!, sqhd: dw2 & 0xffff, sqid: dw2 >>> 16, cid: dw3 & 0xffff, status: dw3 >>> 17, phase: (dw3 >>> 16) & 1 };
}

export function decodeCompletion(dv: DataView, at: number): Completion {
  const [w, i] = wordsOf(dv, at);
  return decodeCompletionWords(w, i, Atomics.load(w, i + 3));
}

/**
 * The 32-bit word view behind a DataView and the word index of `at`: the
 * DataView helpers share the word codecs the hot path uses, so one
 * implementation is tested. Entries are dword aligned by the spec.
 */
function wordsOf(dv: DataView, at: number): [Uint32Array, number] {
  const byte = dv.byteOffset + at;
  if (byte % 4 !== 0) throw new RangeError(`queue entry at byte ${byte} is not dword aligned`);
  return [new Uint32Array(dv.buffer, 0, Math.floor(dv.buffer.byteLength / 4)), byte / 4];
}

/** PSDT values: only PRPs are supported by this controller. */
export const Psdt = { PRP: 0, SGL_MPTR_CONTIG: 1, SGL_MPTR_SGL: 2 } as const;
/** FUSE values. */
export const Fuse = { NORMAL: 0, FIRST: 1, SECOND: 2 } as const;

/** A PRP entry is 8 bytes; PRP1 offsets must be dword aligned (4.3). */
export const PRP_ENTRY_SIZE = 8;
