/**
 * I/O counters and latency histograms of every I/O queue pair, in one
 * SharedArrayBuffer, counted by the host side as it reaps completions: what
 * /proc/diskstats is for a Linux block device, per queue and namespace.
 *
 * The hot path costs a handful of plain Float64 stores per command and no
 * call into prom-client: collectors (`collector.ts`) read the cells at scrape
 * time. Counters need 64 bits (at 1M IOPS a 32-bit count wraps in an hour,
 * a byte count in seconds) and Atomics have no Float64 form, so every cell
 * has exactly one writer at a time instead: the thread that reaps the queue
 * pair's completions, which on a shared pair holds the pair's lock while it
 * does (the lock's Atomics order one reaper's stores before the next one's
 * loads), and on an unshared pair is the only thread using it. A scrape reads
 * without the lock and may miss the last few completions, never more (an
 * aligned 8-byte access is one instruction on x64 and arm64, as the SMART
 * counters in `device/health.ts` also rely on).
 *
 * Memory map: row `qid` (1..maxQid; row 0, the admin queue, is unused) of
 * ROW_CELLS Float64 cells.
 *
 * | cells                    | field                                   | writer (on a shared pair: under)        |
 * | ------------------------ | --------------------------------------- | --------------------------------------- |
 * | Q_INFLIGHT               | commands submitted and not yet reaped   | submitter +1, reaper -batch (H_LOCK)    |
 * | Q_BUSY_SINCE             | shared clock (ms) when Q_INFLIGHT left 0| submitter (H_LOCK)                      |
 * | Q_BUSY_MS                | ms with Q_INFLIGHT > 0, closed intervals| reaper (H_LOCK)                         |
 * | Q_WEIGHTED_MS            | sum of every reaped command's latency   | reaper (H_LOCK)                         |
 * | Q_SQ_DOORBELLS, Q_CQ_DOORBELLS | doorbell writes                   | doorbell writer (H_DB_LOCK)             |
 * | Q_POLLED, Q_INTERRUPTED  | CQEs found by polling (after a doorbell write, poll(), wait()) / by the interrupt handler | reaper (H_LOCK) |
 * | Q_SPURIOUS               | CQEs for a CID not outstanding          | reaper (H_LOCK)                         |
 * | Q_WAITS                  | submissions that found no free request slot | submitter (H_LOCK, taken for it)    |
 * | Q_OPENED                 | 1 once a pair with this QID was created | creating thread (main)                  |
 * | per namespace slot, per op, OP_CELLS: |                            | reaper (H_LOCK)                         |
 * |   +C_COMPLETED, +C_BYTES, +C_TIME_MS | successful commands, bytes they addressed, their summed latency |    |
 * |   +C_BUCKETS .. +LATENCY_BUCKETS | latency histogram of successful commands, not cumulative: bucket k counts latencies in (2^(k-1), 2^k] µs, the last one everything above 2^24 µs | |
 * |   +C_ERRORS .. +ERROR_STATUS_LABELS.length | failed commands: by status, then by the host's reason for those failed without a completion (HOST_FAILURES), the last one "other" | reaper; for a host failure, the thread the command was outstanding in (H_LOCK) |
 *
 * The cells from Q_SQ_DOORBELLS to Q_WAITS are the pair's event counts
 * (`QueueCounts`), the only place those events are counted: `QueuePair.stats`
 * reads them. A pair that has no row (no IoMetrics, the admin queue, a QID
 * past maxQid) counts them into a buffer of its own, with the same layout and
 * writers: one row's queue cells.
 *
 * Namespace slots: the active NSIDs in ascending order, then "all" (NSID
 * FFFFFFFFh, e.g. a flush of every namespace), then "other" (an NSID that is
 * not active). Ops: read, write, flush, write_zeroes, deallocate (Dataset
 * Management), other (any other I/O opcode, through passthrough).
 *
 * Latency is host-observed: from the submit time in the request table (the
 * shared clock) to the reaping of the CQE.
 */
import { describeStatus, GenericStatus, makeStatus, MediaStatus, Sct, statusCode } from '../spec/status.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { CACHE_LINE, type RequestTable } from '../shared/request-table.js';

export const OPS = ['read', 'write', 'flush', 'write_zeroes', 'deallocate', 'other'] as const;
export type OpName = (typeof OPS)[number];
const OP_OTHER = OPS.length - 1;

/** Op index by opcode. */
const OP_OF_OPCODE = new Uint8Array(256).fill(OP_OTHER);
OP_OF_OPCODE[NvmOpcode.READ] = 0;
OP_OF_OPCODE[NvmOpcode.WRITE] = 1;
OP_OF_OPCODE[NvmOpcode.FLUSH] = 2;
OP_OF_OPCODE[NvmOpcode.WRITE_ZEROES] = 3;
OP_OF_OPCODE[NvmOpcode.DATASET_MANAGEMENT] = 4;

/** Finite histogram buckets: upper bounds 2^k µs for k = 0..24 (1 µs to 16.8 s). */
export const LATENCY_BUCKETS = 25;
const MAX_BUCKET_US = 2 ** (LATENCY_BUCKETS - 1);

/** Upper bound of finite bucket `k`, in seconds. */
export function bucketBoundSeconds(k: number): number {
  return 2 ** k / 1e6;
}

/**
 * The bucket of a latency in milliseconds: the smallest k with latency <=
 * 2^k µs, from the bit length of the whole microseconds (no loop), or
 * LATENCY_BUCKETS past the last bound.
 */
export function latencyBucket(ms: number): number {
  const us = Math.ceil(ms * 1000);
  if (us <= 1) return 0;
  if (us > MAX_BUCKET_US) return LATENCY_BUCKETS;
  return 32 - Math.clz32(us - 1);
}

/** Statuses errors are counted by (a fixed set, to keep the label bounded); anything else counts as "other". */
export const ERROR_STATUSES: readonly number[] = [
  makeStatus(Sct.GENERIC, GenericStatus.INVALID_OPCODE),
  makeStatus(Sct.GENERIC, GenericStatus.INVALID_FIELD),
  makeStatus(Sct.GENERIC, GenericStatus.DATA_TRANSFER_ERROR),
  makeStatus(Sct.GENERIC, GenericStatus.INTERNAL_ERROR),
  makeStatus(Sct.GENERIC, GenericStatus.ABORT_REQUESTED),
  makeStatus(Sct.GENERIC, GenericStatus.ABORTED_SQ_DELETION),
  makeStatus(Sct.GENERIC, GenericStatus.INVALID_NAMESPACE),
  makeStatus(Sct.GENERIC, GenericStatus.PRP_OFFSET_INVALID),
  makeStatus(Sct.GENERIC, GenericStatus.NAMESPACE_WRITE_PROTECTED),
  makeStatus(Sct.GENERIC, GenericStatus.LBA_OUT_OF_RANGE),
  makeStatus(Sct.GENERIC, GenericStatus.CAPACITY_EXCEEDED),
  makeStatus(Sct.GENERIC, GenericStatus.NAMESPACE_NOT_READY),
  makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.WRITE_FAULT),
  makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.UNRECOVERED_READ_ERROR),
  makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.COMPARE_FAILURE),
  makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.ACCESS_DENIED),
];
const STATUS_INDEX = new Map(ERROR_STATUSES.map((s, i) => [statusCode(s), i]));

/**
 * Why the host fails a command the controller never completed: the error
 * code its caller gets. A reset or a shutdown fails every command still
 * outstanding; deleting a queue fails those no thread reaped.
 */
export const HOST_FAILURES: readonly string[] = ['NVMQ_CONTROLLER_RESET', 'NVMQ_CONTROLLER_SHUTDOWN', 'NVMQ_QUEUE_DELETED'];
const HOST_FAILURE_BASE = ERROR_STATUSES.length;
const ERROR_OTHER = HOST_FAILURE_BASE + HOST_FAILURES.length;

const label = (code: string): string => code.replace(/^NVMQ_/, '').toLowerCase();
/**
 * Label values of the error cells: the status's stable code in lower case
 * ("lba_out_of_range"), then the host failures' codes so ("controller_reset"),
 * then "other".
 */
export const ERROR_STATUS_LABELS: readonly string[] = [...ERROR_STATUSES.map((s) => label(describeStatus(s).code)), ...HOST_FAILURES.map(label), 'other'];

/** The error cell of a host failure with error code `code` (an unknown code counts as "other"). */
export function hostFailureIndex(code: string): number {
  const i = HOST_FAILURES.indexOf(code);
  return i < 0 ? ERROR_OTHER : HOST_FAILURE_BASE + i;
}

// Queue cells.
export const Q_INFLIGHT = 0;
export const Q_BUSY_SINCE = 1;
export const Q_BUSY_MS = 2;
export const Q_WEIGHTED_MS = 3;
export const Q_SQ_DOORBELLS = 4;
export const Q_CQ_DOORBELLS = 5;
export const Q_POLLED = 6;
export const Q_INTERRUPTED = 7;
export const Q_SPURIOUS = 8;
export const Q_WAITS = 9;
export const Q_OPENED = 10;
const QUEUE_CELLS = 12;

// Cells of one (namespace, op).
export const C_COMPLETED = 0;
export const C_BYTES = 1;
export const C_TIME_MS = 2;
export const C_BUCKETS = 3;
export const C_ERRORS = C_BUCKETS + LATENCY_BUCKETS + 1;
const OP_CELLS = C_ERRORS + ERROR_STATUS_LABELS.length;
const NS_CELLS = OPS.length * OP_CELLS;

const NSID_ALL = 0xffffffff;

/** What another thread needs to map the same counters (structured-cloneable). */
export interface IoMetricsHandle {
  buffer: SharedArrayBuffer;
  maxQid: number;
  nsids: number[];
}

/** Every queue's counters: the layout, and the readers collectors use. */
export class IoMetrics {
  readonly handle: IoMetricsHandle;
  readonly maxQid: number;
  /** Label values of the namespace slots: the active NSIDs, "all", "other". */
  readonly namespaceLabels: readonly string[];
  readonly rowCells: number;
  private readonly cells: Float64Array;
  private readonly slotOfNsid: Map<number, number>;

  static create(opts: { maxQid: number; nsids: readonly number[] }): IoMetrics {
    if (!Number.isInteger(opts.maxQid) || opts.maxQid < 1 || opts.maxQid > 65535) throw new RangeError(`maxQid must be 1..65535, got ${opts.maxQid}`);
    const nsids = [...new Set(opts.nsids)].sort((a, b) => a - b);
    const rowCells = QUEUE_CELLS + (nsids.length + 2) * NS_CELLS;
    return new IoMetrics({ buffer: new SharedArrayBuffer((opts.maxQid + 1) * rowCells * 8), maxQid: opts.maxQid, nsids });
  }

  /** Maps counters another thread created. */
  constructor(handle: IoMetricsHandle) {
    this.handle = handle;
    this.maxQid = handle.maxQid;
    this.cells = new Float64Array(handle.buffer);
    this.rowCells = QUEUE_CELLS + (handle.nsids.length + 2) * NS_CELLS;
    this.slotOfNsid = new Map(handle.nsids.map((n, i) => [n, i]));
    this.namespaceLabels = [...handle.nsids.map(String), 'all', 'other'];
  }

  /** The counters of queue `qid`, or undefined when it lies past the rows made (then its commands are not counted). */
  queue(qid: number): QueueMetrics | undefined {
    if (!Number.isInteger(qid) || qid < 1 || qid > this.maxQid) return undefined;
    return new QueueMetrics(this, this.cells.subarray(qid * this.rowCells, (qid + 1) * this.rowCells));
  }

  /** Namespace slot of an NSID (as read from the request table: any 32-bit value). */
  namespaceSlot(nsid: number): number {
    const n = nsid >>> 0;
    const slot = this.slotOfNsid.get(n);
    if (slot !== undefined) return slot;
    return n === NSID_ALL ? this.handle.nsids.length : this.handle.nsids.length + 1;
  }

  // ---------------------------------------------------------------- readers (scrape time)

  /** QIDs of the rows a queue pair was ever created on (their counters persist across queue deletion). */
  openedQueues(): number[] {
    const out: number[] = [];
    for (let qid = 1; qid <= this.maxQid; qid++) if (this.queueCell(qid, Q_OPENED) !== 0) out.push(qid);
    return out;
  }

  queueCell(qid: number, cell: number): number {
    return this.cells[qid * this.rowCells + cell]!;
  }

  /** A cell of (queue, namespace slot, op): C_COMPLETED, C_BYTES, C_TIME_MS, C_BUCKETS + k, C_ERRORS + i. */
  opCell(qid: number, nsSlot: number, op: number, cell: number): number {
    return this.cells[qid * this.rowCells + QUEUE_CELLS + nsSlot * NS_CELLS + op * OP_CELLS + cell]!;
  }

  /** Milliseconds queue `qid` has had commands in flight, including the interval still open at `now` (shared clock). */
  busyMs(qid: number, now: number): number {
    const closed = this.queueCell(qid, Q_BUSY_MS);
    return this.queueCell(qid, Q_INFLIGHT) > 0 ? closed + Math.max(0, now - this.queueCell(qid, Q_BUSY_SINCE)) : closed;
  }
}

/** A queue pair's event counts, as `QueuePair.stats` shows them. */
export interface QueueStats {
  /** SQ tail doorbell writes. */
  readonly sqDoorbells: number;
  /** CQ head doorbell writes. */
  readonly cqDoorbells: number;
  /** CQEs found by polling: right after a doorbell write, in poll(), wait() or processCompletions(). */
  readonly polled: number;
  /** CQEs found by the interrupt handler. */
  readonly interrupted: number;
  /** CQEs for a CID that was not outstanding. */
  readonly spurious: number;
  /** Submissions that found every request slot in use and waited. */
  readonly waits: number;
}

const STAT_CELLS: Readonly<Record<keyof QueueStats, number>> = {
  sqDoorbells: Q_SQ_DOORBELLS,
  cqDoorbells: Q_CQ_DOORBELLS,
  polled: Q_POLLED,
  interrupted: Q_INTERRUPTED,
  spurious: Q_SPURIOUS,
  waits: Q_WAITS,
};

/**
 * A queue pair's event counts: doorbell writes, CQEs found and how,
 * spurious CQEs, waits for a request slot. In its row of the I/O counters
 * (`QueueMetrics.counts`), or in cells of its own (`QueueCounts.own()`).
 * Each method is one store (see the map above for who may call which).
 */
export class QueueCounts {
  /** `c`: a row's queue cells (from Q_INFLIGHT on). */
  constructor(private readonly c: Float64Array) {}

  /**
   * Counts of a pair with no row of I/O counters: in `buffer`, another
   * thread's pair's (`buffer` there), or in a new one.
   */
  static own(buffer = new SharedArrayBuffer(QUEUE_CELLS * 8 + CACHE_LINE)): QueueCounts {
    return new QueueCounts(new Float64Array(buffer, 0, QUEUE_CELLS));
  }

  /** The SharedArrayBuffer the cells are in. */
  get buffer(): SharedArrayBuffer {
    return this.c.buffer as SharedArrayBuffer;
  }

  sqDoorbell(): void {
    this.c[Q_SQ_DOORBELLS]!++;
  }

  cqDoorbell(): void {
    this.c[Q_CQ_DOORBELLS]!++;
  }

  /** `n` CQEs found, by polling (`interrupt` false) or by the interrupt handler. */
  found(n: number, interrupt: boolean): void {
    this.c[interrupt ? Q_INTERRUPTED : Q_POLLED]! += n;
  }

  spurious(): void {
    this.c[Q_SPURIOUS]!++;
  }

  waited(): void {
    this.c[Q_WAITS]!++;
  }

  /**
   * The counts as they go on, from zero now: a read-only view whose
   * properties read the cells (the cells themselves never go back).
   */
  since(): QueueStats {
    const c = this.c;
    const view = {};
    for (const [name, cell] of Object.entries(STAT_CELLS)) {
      const start = c[cell]!;
      Object.defineProperty(view, name, { enumerable: true, get: () => c[cell]! - start });
    }
    return Object.freeze(view) as QueueStats;
  }
}

/**
 * One queue pair's row: what the host side calls as it submits, rings and
 * reaps. Every method is a few stores into the row (see the map above for
 * who may call which).
 */
export class QueueMetrics {
  /** The row's event counts. */
  readonly counts: QueueCounts;
  private lastNsid = -1;
  private lastBase = 0;
  /** Latency summed over the batch being reaped, added to Q_WEIGHTED_MS by `reapedBatch()`. */
  private batchMs = 0;

  constructor(
    private readonly layout: IoMetrics,
    private readonly c: Float64Array,
  ) {
    this.counts = new QueueCounts(c);
  }

  /** The creating thread, when a pair takes this QID: a fresh pair has nothing in flight. */
  opened(): void {
    this.c[Q_INFLIGHT] = 0;
    this.c[Q_BUSY_SINCE] = 0;
    this.c[Q_OPENED] = 1;
  }

  /** The pair was failed (reset, deletion): its outstanding commands will never be reaped. */
  failed(now: number): void {
    if (this.c[Q_INFLIGHT]! > 0) this.c[Q_BUSY_MS]! += now - this.c[Q_BUSY_SINCE]!;
    this.c[Q_INFLIGHT] = 0;
  }

  /** One command submitted at `now` (shared clock). */
  submitted(now: number): void {
    if (this.c[Q_INFLIGHT]!++ === 0) this.c[Q_BUSY_SINCE] = now;
  }

  /**
   * The completion of request slot `cid` with `status`, reaped at `now`
   * (shared clock). The batch it belongs to ends with `reapedBatch()`.
   */
  reaped(table: RequestTable, cid: number, status: number, now: number): void {
    const c = this.c;
    const ms = now - table.submitTime(cid);
    this.batchMs += ms;
    const base = this.opBase(table, cid);
    if (status === 0) {
      c[base + C_COMPLETED]!++;
      c[base + C_BYTES]! += table.length(cid);
      c[base + C_TIME_MS]! += ms;
      c[base + C_BUCKETS + latencyBucket(ms)]!++;
    } else {
      c[base + C_ERRORS + (STATUS_INDEX.get(statusCode(status)) ?? ERROR_OTHER)]!++;
    }
  }

  /**
   * Request slot `cid`'s command, failed by the host without a completion
   * (`failure`: a `hostFailureIndex()`), counts as an error. The pair's
   * `failed()` has taken it out of Q_INFLIGHT already.
   */
  hostFailed(table: RequestTable, cid: number, failure: number): void {
    this.c[this.opBase(table, cid) + C_ERRORS + failure]!++;
  }

  /** The first cell of the (namespace, op) of slot `cid`'s command. */
  private opBase(table: RequestTable, cid: number): number {
    const nsid = table.nsid(cid);
    if (nsid !== this.lastNsid) {
      this.lastNsid = nsid;
      this.lastBase = QUEUE_CELLS + this.layout.namespaceSlot(nsid) * NS_CELLS;
    }
    return this.lastBase + OP_OF_OPCODE[table.opcode(cid) & 0xff]! * OP_CELLS;
  }

  /** The end of a batch in which `reaped` CQEs (`reaped()` each; the spurious ones not) were found at `now`. */
  reapedBatch(reaped: number, now: number): void {
    if (reaped === 0) return;
    const c = this.c;
    c[Q_WEIGHTED_MS]! += this.batchMs;
    this.batchMs = 0;
    if ((c[Q_INFLIGHT]! -= reaped) === 0) c[Q_BUSY_MS]! += now - c[Q_BUSY_SINCE]!;
  }
}
