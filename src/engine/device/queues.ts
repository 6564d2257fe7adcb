/**
 * The controller's view of its submission and completion queues.
 *
 * Queue state lives in one SharedArrayBuffer, the queue directory (the
 * controller's "device memory"): a block of Int32 words per QID, so that any
 * thread executing a queue's doorbell sees the same heads, tails and phase.
 * `SubmissionQueue` and `CompletionQueue` are views on a QID's block.
 *
 * | word          | field                       | writer                                      |
 * | ------------- | --------------------------- | ------------------------------------------- |
 * | SQ_VALID      | SQ exists                   | Create / Delete I/O SQ (main thread)        |
 * | SQ_DELETING   | Delete I/O SQ in progress   | Delete I/O SQ                               |
 * | SQ_SIZE, SQ_CQID, SQ_OFFSET, SQ_PRIO, SQ_IOVA | config | Create I/O SQ, once                 |
 * | SQ_HEAD       | next entry to fetch         | the thread fetching, under SQ_LOCK          |
 * | SQ_TAIL       | last valid tail doorbell    | the thread handling the doorbell (Atomics)  |
 * | SQ_INFLIGHT   | fetched, not yet completed  | Atomics.add / sub by executing threads      |
 * | SQ_LOCK       | Mutex: one fetcher at a time| any thread                                  |
 * | SQ_RERUN      | "the tail moved while you held the lock" | a thread that found SQ_LOCK taken |
 * | SQ_GENERATION | which creation of this QID it is (io_uring ownership) | Create I/O SQ |
 * | CQ_VALID      | CQ exists                   | Create / Delete I/O CQ                      |
 * | CQ_SIZE, CQ_OFFSET, CQ_IEN, CQ_IV, CQ_IOVA | config | Create I/O CQ, once                    |
 * | CQ_TAIL, CQ_PHASE | where the next CQE goes | the posting thread, under CQ_LOCK          |
 * | CQ_HEAD       | last head doorbell value    | the thread handling the doorbell, CQ_LOCK   |
 * | CQ_USED       | entries posted and not consumed, plus ones reserved by fetched commands | CQ_LOCK |
 * | CQ_SQS        | SQs posting here            | Create / Delete I/O SQ                      |
 * | CQ_STALLED    | a fetch stopped for room    | reserve() sets, the head doorbell takes, CQ_LOCK |
 * | CQ_LOCK       | Mutex                       | any thread                                  |
 *
 * A command is fetched only when its CQ has room reserved for its completion
 * (CQ_USED < size - 1), so a CQ can never overflow and no completion ever
 * waits in a thread-local list; fetching resumes on the next CQ head doorbell,
 * which looks for SQs to resume only when a fetch found the CQ full since the
 * last one (CQ_STALLED): both happen under CQ_LOCK, so either the fetch sees
 * the room the doorbell freed or the doorbell sees the fetch's mark.
 */
import type { Command } from '../spec/command.js';
import { Mutex } from '../shared/mutex.js';

const SQ_VALID = 0;
const SQ_DELETING = 1;
const SQ_SIZE = 2;
const SQ_CQID = 3;
const SQ_OFFSET = 4;
const SQ_HEAD = 5;
const SQ_INFLIGHT = 6;
const SQ_LOCK = 7;
const SQ_PRIO = 8;
const SQ_IOVA_LO = 9;
const SQ_IOVA_HI = 10;
const SQ_RERUN = 11;
const SQ_TAIL = 12;
const SQ_GENERATION = 13;
const CQ_VALID = 16;
const CQ_SIZE = 17;
const CQ_OFFSET = 18;
const CQ_TAIL = 19;
const CQ_PHASE = 20;
const CQ_HEAD = 21;
const CQ_IEN = 22;
const CQ_IV = 23;
const CQ_LOCK = 24;
const CQ_USED = 25;
const CQ_SQS = 26;
const CQ_IOVA_LO = 27;
const CQ_IOVA_HI = 28;
const CQ_STALLED = 29;
/** Words of fields per QID. */
const QUEUE_FIELDS = 32;
/**
 * A QID's block: its fields after 16 unused words (64 bytes). The threads executing different queues
 * write their blocks on every command; the gap keeps two blocks off a shared cache line however the
 * buffer is aligned (a large SharedArrayBuffer's memory may start 16 bytes into a page).
 */
const QUEUE_GAP = 16;
export const QUEUE_WORDS = QUEUE_GAP + QUEUE_FIELDS;

const TWO32 = 0x1_0000_0000;

export class QueueDirectory {
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly maxQid: number;

  constructor(maxQidOrBuffer: number | SharedArrayBuffer) {
    this.buffer = typeof maxQidOrBuffer === 'number' ? new SharedArrayBuffer((maxQidOrBuffer + 1) * QUEUE_WORDS * 4) : maxQidOrBuffer;
    this.words = new Int32Array(this.buffer);
    this.maxQid = this.words.length / QUEUE_WORDS - 1;
  }

  /** Forgets every queue (controller reset). Only while no thread executes. */
  clear(): void {
    this.words.fill(0);
  }
}

export class CompletionQueue {
  private readonly w: Int32Array;
  private readonly b: number;
  readonly lock: Mutex;

  constructor(
    dir: QueueDirectory,
    readonly qid: number,
  ) {
    this.w = dir.words;
    this.b = qid * QUEUE_WORDS + QUEUE_GAP;
    this.lock = new Mutex(this.w, this.b + CQ_LOCK);
  }

  /** Writes the configuration of a new CQ (Create I/O CQ, or enable for the admin CQ). */
  init(iova: number, offset: number, size: number, interruptsEnabled: boolean, vector: number): this {
    const w = this.w;
    const b = this.b;
    w.fill(0, b + CQ_VALID, b + QUEUE_FIELDS);
    w[b + CQ_SIZE] = size;
    w[b + CQ_OFFSET] = offset;
    w[b + CQ_IEN] = interruptsEnabled ? 1 : 0;
    w[b + CQ_IV] = vector;
    w[b + CQ_IOVA_LO] = iova % TWO32 | 0;
    w[b + CQ_IOVA_HI] = Math.floor(iova / TWO32);
    // Phase starts at 1 and flips on every wrap (4.6).
    w[b + CQ_PHASE] = 1;
    Atomics.store(w, b + CQ_VALID, 1);
    return this;
  }

  get valid(): boolean {
    return Atomics.load(this.w, this.b + CQ_VALID) === 1;
  }
  invalidate(): void {
    Atomics.store(this.w, this.b + CQ_VALID, 0);
  }
  get size(): number {
    return this.w[this.b + CQ_SIZE]!;
  }
  get offset(): number {
    return this.w[this.b + CQ_OFFSET]!;
  }
  get iova(): number {
    return (this.w[this.b + CQ_IOVA_LO]! >>> 0) + this.w[this.b + CQ_IOVA_HI]! * TWO32;
  }
  get interruptsEnabled(): boolean {
    return this.w[this.b + CQ_IEN] === 1;
  }
  get vector(): number {
    return this.w[this.b + CQ_IV]!;
  }
  get head(): number {
    return this.w[this.b + CQ_HEAD]!;
  }
  set head(v: number) {
    this.w[this.b + CQ_HEAD] = v;
  }
  get tail(): number {
    return this.w[this.b + CQ_TAIL]!;
  }
  set tail(v: number) {
    this.w[this.b + CQ_TAIL] = v;
  }
  get phase(): number {
    return this.w[this.b + CQ_PHASE]!;
  }
  set phase(v: number) {
    this.w[this.b + CQ_PHASE] = v;
  }
  /** Entries posted and not consumed plus entries reserved for fetched commands. */
  get used(): number {
    return this.w[this.b + CQ_USED]!;
  }
  set used(v: number) {
    this.w[this.b + CQ_USED] = v;
  }
  get sqCount(): number {
    return Atomics.load(this.w, this.b + CQ_SQS);
  }
  addSq(delta: number): void {
    Atomics.add(this.w, this.b + CQ_SQS, delta);
  }

  /**
   * Reserves room for up to `wanted` completions; returns how many fit ("one
   * empty slot means full"). Fewer than wanted marks the CQ stalled: the next
   * head doorbell resumes the SQs posting here (see consume()).
   */
  reserve(wanted: number): number {
    this.lock.lock();
    const n = Math.max(0, Math.min(wanted, this.size - 1 - this.used));
    this.used += n;
    if (n < wanted) this.w[this.b + CQ_STALLED] = 1;
    this.lock.unlock();
    return n;
  }

  /**
   * A head doorbell: moves the head to `head` and frees the room of the
   * entries it consumed. Returns -1 when `head` is invalid (past what was
   * posted; nothing changes), else 1 when a fetch stopped for room since the
   * last head doorbell (the caller resumes the SQs posting here), else 0.
   */
  consume(head: number): number {
    this.lock.lock();
    const posted = (this.tail - this.head + this.size) % this.size;
    const consumed = (head - this.head + this.size) % this.size;
    let result = -1;
    if (head < this.size && consumed <= posted) {
      this.head = head;
      this.used -= consumed;
      result = consumed > 0 ? this.w[this.b + CQ_STALLED]! : 0;
      if (result === 1) this.w[this.b + CQ_STALLED] = 0;
    }
    this.lock.unlock();
    return result;
  }

  /** Gives back room reserved for commands that were not fetched after all. */
  unreserve(n: number): void {
    this.lock.lock();
    this.used -= n;
    this.lock.unlock();
  }
}

export class SubmissionQueue {
  private readonly w: Int32Array;
  private readonly b: number;
  readonly lock: Mutex;

  constructor(
    dir: QueueDirectory,
    readonly qid: number,
  ) {
    this.w = dir.words;
    this.b = qid * QUEUE_WORDS + QUEUE_GAP;
    this.lock = new Mutex(this.w, this.b + SQ_LOCK);
  }

  init(iova: number, offset: number, size: number, cqid: number, priority: number): this {
    const w = this.w;
    const b = this.b;
    w.fill(0, b, b + CQ_VALID);
    w[b + SQ_SIZE] = size;
    w[b + SQ_CQID] = cqid;
    w[b + SQ_OFFSET] = offset;
    w[b + SQ_PRIO] = priority;
    w[b + SQ_IOVA_LO] = iova % TWO32 | 0;
    w[b + SQ_IOVA_HI] = Math.floor(iova / TWO32);
    Atomics.store(w, b + SQ_VALID, 1);
    return this;
  }

  get valid(): boolean {
    return Atomics.load(this.w, this.b + SQ_VALID) === 1;
  }
  invalidate(): void {
    Atomics.store(this.w, this.b + SQ_VALID, 0);
  }
  get deleting(): boolean {
    return Atomics.load(this.w, this.b + SQ_DELETING) === 1;
  }
  set deleting(v: boolean) {
    Atomics.store(this.w, this.b + SQ_DELETING, v ? 1 : 0);
  }
  get size(): number {
    return this.w[this.b + SQ_SIZE]!;
  }
  get cqid(): number {
    return this.w[this.b + SQ_CQID]!;
  }
  get offset(): number {
    return this.w[this.b + SQ_OFFSET]!;
  }
  get iova(): number {
    return (this.w[this.b + SQ_IOVA_LO]! >>> 0) + this.w[this.b + SQ_IOVA_HI]! * TWO32;
  }
  get priority(): number {
    return this.w[this.b + SQ_PRIO]!;
  }
  get head(): number {
    return this.w[this.b + SQ_HEAD]!;
  }
  set head(v: number) {
    this.w[this.b + SQ_HEAD] = v;
  }
  /** The tail from the last valid doorbell write (an invalid one never lands here). */
  get tail(): number {
    return Atomics.load(this.w, this.b + SQ_TAIL);
  }
  set tail(v: number) {
    Atomics.store(this.w, this.b + SQ_TAIL, v);
  }
  /** Commands fetched and not yet completed, across all threads. */
  get inflight(): number {
    return Atomics.load(this.w, this.b + SQ_INFLIGHT);
  }
  addInflight(delta: number): number {
    return Atomics.add(this.w, this.b + SQ_INFLIGHT, delta) + delta;
  }
  /** Word index of the in-flight counter, for waiting on it. */
  get inflightIndex(): number {
    return this.b + SQ_INFLIGHT;
  }
  get words(): Int32Array {
    return this.w;
  }
  get generation(): number {
    return Atomics.load(this.w, this.b + SQ_GENERATION);
  }
  set generation(v: number) {
    Atomics.store(this.w, this.b + SQ_GENERATION, v);
  }
  requestRerun(): void {
    Atomics.store(this.w, this.b + SQ_RERUN, 1);
  }
  takeRerun(): boolean {
    return Atomics.exchange(this.w, this.b + SQ_RERUN, 0) === 1;
  }
}

/**
 * One command between fetch and completion, owned by the thread that fetched
 * it. A command may fan out into several backend operations; `pending` counts
 * them (plus one held by the dispatcher) and the completion is posted when it
 * reaches zero.
 */
export interface Request {
  readonly sq: SubmissionQueue;
  readonly cq: CompletionQueue;
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
  /** Index in this thread's list of executing requests of its SQ (for Abort), -1 when not listed: listed only while backend operations are pending. */
  listed: number;
  /** A direct command's data (QueueExecutor.submitDirect), mapped in place of PRPs; undefined for a fetched command. */
  readonly data: Uint8Array[] | undefined;
  /** Where a direct command's completion goes in place of the CQ. */
  readonly direct: DirectDone | undefined;
}

/**
 * One thread's executing requests by QID (for Abort). Each knows its index
 * (`listed`), so leaving is a swap with the last one: no hashing per command.
 */
export class ExecutingRequests {
  private readonly byQid: Array<Request[] | undefined> = [];

  of(qid: number): readonly Request[] {
    return this.byQid[qid] ?? [];
  }

  add(req: Request): void {
    const list = (this.byQid[req.sq.qid] ??= []);
    req.listed = list.length;
    list.push(req);
  }

  remove(req: Request): void {
    const at = req.listed;
    if (at < 0) return;
    req.listed = -1;
    const list = this.byQid[req.sq.qid]!;
    const last = list.pop()!;
    if (last !== req) {
      list[at] = last;
      last.listed = at;
    }
  }
}

/** The completion of a command run by QueueExecutor.submitDirect: its status and DW0. */
export type DirectDone = (status: number, dw0: number) => void;
