/**
 * What the host driver is told when it is brought up (DriverOptions), what it
 * reports (AsyncEvent), and how an I/O queue pair is asked for.
 */
import type { IoMetrics } from '../metrics/io-metrics.js';

export interface DriverOptions {
  /** Admin queue entries (default 32, capped by CAP.MQES). */
  adminQueueEntries?: number;
  /** I/O queue pairs to ask for with Set Features Number of Queues (default 1). */
  ioQueues?: number;
  /** Enable or disable the volatile write cache; left as the controller has it when undefined. */
  volatileWriteCache?: boolean;
  /** Keep an Asynchronous Event Request outstanding and report events here. */
  onAsyncEvent?: (event: AsyncEvent) => void;
  /** Largest transfer, in bytes, when the controller reports no MDTS limit (default 2 MiB). */
  maxTransferFallback?: number;
  /**
   * Milliseconds an I/O command may stay outstanding (default 30000, Linux's io_timeout; 0 or Infinity:
   * none). Past it: Abort; one more timeout later: a reset. It ends with NVMQ_TIMEOUT either way.
   */
  ioTimeoutMs?: number;
  /** The same for admin commands (default 60000, Linux's admin_timeout); past it, the controller is reset. */
  adminTimeoutMs?: number;
}

export interface AsyncEvent {
  type: number;
  info: number;
  logPage: number;
}

export interface IoQueuePairOptions {
  /** Entries per ring (default 256, capped by CAP.MQES + 1). */
  entries?: number;
  /** This thread's command timeout on the pair (default: the driver's ioTimeoutMs). */
  timeoutMs?: number;
  /** QID; the lowest free one by default. */
  qid?: number;
  /** Several threads will submit on the pair (see QueuePair). */
  shared?: boolean;
  /**
   * Whether this thread reaps the pair's completions (default true). False for
   * a pair handed to worker threads: they install its interrupt handler, and
   * this thread must never consume its CQEs.
   */
  reapHere?: boolean;
  /** I/O counters to count the pair's commands into (see QueuePairOptions.metrics). */
  metrics?: IoMetrics;
  /** One SQ doorbell write per microtask turn for unplugged submissions (see QueuePairOptions.coalesce). */
  coalesce?: boolean;
}
