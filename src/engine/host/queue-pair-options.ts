/**
 * A queue pair's options and its handle for other threads: the types
 * `QueuePair` is made from (`queue-pair.ts`), kept apart from its code.
 */
import type { Transport } from '../transport/transport.js';
import type { Command } from '../spec/command.js';
import type { RequestTableHandle } from '../shared/request-table.js';
import type { IoMetrics, IoMetricsHandle } from '../metrics/io-metrics.js';
import type { WaitMode } from './waiter.js';
import type { DeadlineHandlers } from './deadlines.js';

/** Fields of a command; the queue pair assigns the CID and, when given data, the PRPs. */
export type CommandFields = Partial<Omit<Command, 'cid'>> & { opcode: number };

export interface QueuePairOptions {
  transport: Transport;
  qid: number;
  /** Entries in each ring (1's based). */
  entries: number;
  dstrd: number;
  /** Host memory page size (CC.MPS). */
  pageSize: number;
  /** The largest transfer the host will build PRPs for. */
  maxTransfer: number;
  /** Request slots; at most entries - 1 (a full SQ keeps one slot empty). */
  slots?: number;
  /** Several threads will submit on this pair. */
  shared?: boolean;
  /**
   * Wait for a free request slot by reaping and then, on a shared pair, with
   * Atomics.wait for a few milliseconds (blocking the thread) before waiting
   * asynchronously.
   */
  blockingWait?: boolean;
  /** I/O counters to count this pair's commands into (its row is its QID). */
  metrics?: IoMetrics;
  /**
   * Submissions made outside plug() / unplug() share one SQ doorbell write
   * per microtask turn instead of one each: callers that each await their
   * own command (the engine's main-thread calls) still reach the controller
   * and the kernel in batches. Default false: a doorbell per command.
   */
  coalesce?: boolean;
  /** How the pair waits for completions after a submission (see waiter.ts); default 'adaptive' ('event-loop' on the main thread). */
  waitMode?: WaitMode;
  /**
   * Milliseconds each command this thread submits may stay outstanding
   * before `deadlines` is told (see deadlines.ts); Infinity (the default
   * here) for none. The driver and the engine pass their timeouts.
   */
  timeoutMs?: number;
  /** What to do about a command past its deadline (abort it, then reset); needed with `timeoutMs`. */
  deadlines?: DeadlineHandlers;
}

/** Everything another thread needs to use the same queue pair (structured-cloneable). */
export interface QueuePairHandle {
  qid: number;
  entries: number;
  dstrd: number;
  pageSize: number;
  maxTransfer: number;
  shared: boolean;
  sq: { offset: number; size: number };
  cq: { offset: number; size: number };
  prpPages: number[];
  prpPagesPerSlot: number;
  table: RequestTableHandle;
  host: SharedArrayBuffer;
  metrics: IoMetricsHandle | undefined;
  /** The pair's event counts when it has no row of I/O counters (`QueueCounts.own()`). */
  counts: SharedArrayBuffer | undefined;
}

