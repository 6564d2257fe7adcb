/**
 * Queue management command dwords (NVMe 1.4, sections 5.3 - 5.7) and the
 * I/O command dwords of the NVM command set (section 6).
 */
import { struct } from './layout.js';

/** Create I/O Completion Queue (Figures 150, 151). */
export const CreateCqCdw10 = struct('CreateIoCq.CDW10', 4, {
  QID: [0, 4, 0, 16],
  QSIZE: [0, 4, 16, 16],
});
export const CreateCqCdw11 = struct('CreateIoCq.CDW11', 4, {
  PC: [0, 4, 0, 1],
  IEN: [0, 4, 1, 1],
  IV: [0, 4, 16, 16],
});

/** Create I/O Submission Queue (Figures 153, 154). */
export const CreateSqCdw10 = struct('CreateIoSq.CDW10', 4, {
  QID: [0, 4, 0, 16],
  QSIZE: [0, 4, 16, 16],
});
export const CreateSqCdw11 = struct('CreateIoSq.CDW11', 4, {
  PC: [0, 4, 0, 1],
  QPRIO: [0, 4, 1, 2],
  CQID: [0, 4, 16, 16],
});

/** Delete I/O SQ / CQ (Figures 157, 160). */
export const DeleteQueueCdw10 = struct('DeleteIoQueue.CDW10', 4, {
  QID: [0, 4, 0, 16],
});

/** Abort (Figure 141); completion DW0 bit 0 set means "not aborted". */
export const AbortCdw10 = struct('Abort.CDW10', 4, {
  SQID: [0, 4, 0, 16],
  CID: [0, 4, 16, 16],
});

/** Read / Write / Write Zeroes: SLBA in CDW10-11, then CDW12 (Figures 372, 380, 387). */
export const RwCdw12 = struct('ReadWrite.CDW12', 4, {
  /** Number of Logical Blocks, 0's based. */
  NLB: [0, 4, 0, 16],
  DTYPE: [0, 4, 20, 4],
  /** Deallocate (Write Zeroes only). */
  DEAC: [0, 4, 25, 1],
  PRINFO: [0, 4, 26, 4],
  FUA: [0, 4, 30, 1],
  LR: [0, 4, 31, 1],
});

/** Dataset Management (Figures 364, 365) and its 16-byte range (Figure 366). */
export const DsmCdw10 = struct('DatasetManagement.CDW10', 4, {
  /** Number of Ranges, 0's based. */
  NR: [0, 4, 0, 8],
});
export const DsmCdw11 = struct('DatasetManagement.CDW11', 4, {
  IDR: [0, 4, 0, 1],
  IDW: [0, 4, 1, 1],
  AD: [0, 4, 2, 1],
});
export const DsmRange = struct('DatasetManagement.Range', 16, {
  CONTEXT_ATTRIBUTES: [0, 4],
  /** Length in logical blocks, 1's based. */
  NLB: [4, 4],
  SLBA: [8, 8],
});
export const DSM_RANGE_SIZE = 16;
export const DSM_MAX_RANGES = 256;

/** A PRP entry is 8 bytes; PRP1 offsets must be dword aligned (4.3). */
export const PRP_ENTRY_SIZE = 8;
