/**
 * Queue management command dwords of the admin command set (NVMe 1.4,
 * sections 5.1 - 5.7): Create / Delete I/O SQ and CQ, Abort.
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
