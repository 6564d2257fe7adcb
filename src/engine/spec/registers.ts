/**
 * Controller registers (NVMe 1.4, section 3.1): the memory-mapped BAR0 layout.
 *
 * CAP is 64 bits wide; its bit fields are described over its two 32-bit halves
 * so every field reads with one 32-bit access.
 */
import { struct } from './layout.js';

export const Regs = struct('ControllerRegisters', 0x1000, {
  CAP: [0x00, 8],
  CAP_LO: [0x00, 4],
  CAP_HI: [0x04, 4],
  VS: [0x08, 4],
  INTMS: [0x0c, 4],
  INTMC: [0x10, 4],
  CC: [0x14, 4],
  CSTS: [0x1c, 4],
  NSSR: [0x20, 4],
  AQA: [0x24, 4],
  ASQ: [0x28, 8],
  ACQ: [0x30, 8],
});

/** CAP bit fields (3.1.1). Offsets are those of the containing 32-bit half. */
export const Cap = struct('CAP', 8, {
  /** Maximum Queue Entries Supported, 0's based. */
  MQES: [0, 4, 0, 16],
  /** Contiguous Queues Required. */
  CQR: [0, 4, 16, 1],
  /** Arbitration Mechanism Supported. */
  AMS: [0, 4, 17, 2],
  /** Timeout, in 500 ms units, for CSTS.RDY to follow CC.EN. */
  TO: [0, 4, 24, 8],
  /** Doorbell Stride: doorbells are (4 << DSTRD) bytes apart. */
  DSTRD: [4, 4, 0, 4],
  NSSRS: [4, 4, 4, 1],
  /** Command Sets Supported; bit 0 = NVM command set. */
  CSS: [4, 4, 5, 8],
  BPS: [4, 4, 13, 1],
  /** Memory Page Size Minimum / Maximum: 2 ^ (12 + n) bytes. */
  MPSMIN: [4, 4, 16, 4],
  MPSMAX: [4, 4, 20, 4],
});

/** VS (3.1.2). */
export const Vs = struct('VS', 4, {
  TER: [0, 4, 0, 8],
  MNR: [0, 4, 8, 8],
  MJR: [0, 4, 16, 16],
});

/** CC (3.1.5). */
export const Cc = struct('CC', 4, {
  EN: [0, 4, 0, 1],
  CSS: [0, 4, 4, 3],
  MPS: [0, 4, 7, 4],
  AMS: [0, 4, 11, 3],
  SHN: [0, 4, 14, 2],
  IOSQES: [0, 4, 16, 4],
  IOCQES: [0, 4, 20, 4],
});

/** CSTS (3.1.6). */
export const Csts = struct('CSTS', 4, {
  RDY: [0, 4, 0, 1],
  CFS: [0, 4, 1, 1],
  SHST: [0, 4, 2, 2],
  NSSRO: [0, 4, 4, 1],
  PP: [0, 4, 5, 1],
});

/** AQA (3.1.8): admin queue sizes, 0's based. */
export const Aqa = struct('AQA', 4, {
  ASQS: [0, 4, 0, 12],
  ACQS: [0, 4, 16, 12],
});

/** CC.SHN values. */
export const ShutdownNotification = { NONE: 0, NORMAL: 1, ABRUPT: 2 } as const;
/** CSTS.SHST values. */
export const ShutdownStatus = { NORMAL: 0, PROCESSING: 1, COMPLETE: 2 } as const;
/** The value written to NSSR to start an NVM subsystem reset: "NVMe" in ASCII. */
export const NSSR_RESET_VALUE = 0x4e564d65;
/** CC.CSS value for the NVM command set. */
export const CC_CSS_NVM = 0;
/** CAP.CSS bit for the NVM command set. */
export const CAP_CSS_NVM = 1;

/** The first doorbell register (3.1.24). */
export const DOORBELL_BASE = 0x1000;

/** Offset of the Submission Queue y Tail Doorbell. */
export function sqTailDoorbell(qid: number, dstrd: number): number {
  return DOORBELL_BASE + 2 * qid * (4 << dstrd);
}

/** Offset of the Completion Queue y Head Doorbell. */
export function cqHeadDoorbell(qid: number, dstrd: number): number {
  return DOORBELL_BASE + (2 * qid + 1) * (4 << dstrd);
}

/** Memory page size in bytes for an MPS / MPSMIN / MPSMAX value. */
export function pageSizeOf(mps: number): number {
  return 1 << (12 + mps);
}

/** CAP.TO is in units of 500 ms. */
export const CAP_TO_UNIT_MS = 500;
