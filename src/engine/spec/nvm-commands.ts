/**
 * I/O command dwords of the NVM command set (NVMe 1.4, section 6): Read,
 * Write, Write Zeroes and Dataset Management.
 */
import { struct } from './layout.js';

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
