/**
 * The controller's view of a submission or completion queue: where its ring
 * lives in the DMA arena and the pointers it owns (SQ head, CQ tail and phase)
 * or learns from doorbells (SQ tail, CQ head).
 */
import type { Command } from '../spec/command.js';

export class CompletionQueue {
  head = 0;
  tail = 0;
  /** Phase tag the controller writes next; starts at 1 and flips on every wrap (4.6). */
  phase = 1;
  /** SQs posting here; a CQ with any cannot be deleted. */
  readonly sqs = new Set<number>();
  /** Completions waiting for room: the CQ was full ("one empty slot means full"). */
  readonly overflow: Array<{ sqid: number; cid: number; status: number; dw0: number }> = [];

  constructor(
    readonly qid: number,
    readonly iova: number,
    /** Arena offset of entry 0. */
    readonly offset: number,
    /** Entries (1's based). */
    readonly size: number,
    readonly interruptsEnabled: boolean,
    readonly vector: number,
  ) {}

  isFull(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }
}

export class SubmissionQueue {
  head = 0;
  tail = 0;
  /** Set by Delete I/O SQ: no more fetches; completes once in-flight commands drain. */
  deleting = false;
  /** Commands fetched but not yet completed. */
  readonly inflight = new Set<Request>();

  constructor(
    readonly qid: number,
    readonly iova: number,
    readonly offset: number,
    readonly size: number,
    readonly cq: CompletionQueue,
    readonly priority: number,
  ) {}
}

/**
 * One command between fetch and completion. A command may fan out into several
 * backend operations; `pending` counts them (plus one held by the dispatcher)
 * and the completion is posted when it reaches zero.
 */
export interface Request {
  readonly sq: SubmissionQueue;
  readonly cmd: Command;
  /** Controller epoch at fetch; a reset bumps the epoch and the completion is dropped. */
  readonly epoch: number;
  readonly io: boolean;
  /** First error wins, except that Internal Error wins over any other (as QEMU's device model). */
  status: number;
  /** A status imposed from outside (Abort, SQ deletion) that replaces whatever the operations report. */
  forced: number;
  dw0: number;
  pending: number;
  done: boolean;
  /** For the error log. */
  lba: number;
  /** Bytes moved, for the SMART data units. */
  bytes: number;
  onFinish: (() => void) | undefined;
}
