/**
 * The controller state every thread that executes its queues shares, and the
 * memory map behind it: SharedArrayBuffers only, so a worker attaches by
 * receiving them (`SharedControllerMemory`).
 *
 * | buffer        | holds                                                    | written by                          |
 * | ------------- | -------------------------------------------------------- | ----------------------------------- |
 * | bar           | registers and doorbells (BAR0)                           | the host; the register front        |
 * | queues        | SQ / CQ state per QID (see queues.ts)                    | executing threads, Create / Delete  |
 * | inflightCids  | per SQ, a bit per CID fetched and not completed          | executing threads (Atomics)         |
 * | globals       | the words below                                          | see each word                       |
 * | health        | SMART counters, a row per thread (health.ts)             | each thread its row                 |
 * | errorLog      | Error Information log entries (health.ts)                | any thread, under its lock          |
 * | media         | per namespace (by index) its media state (health.ts)     | any thread, Atomics.or; see below   |
 *
 * Globals, in Int32 words:
 *
 * | word                  | meaning                                              | writer                      |
 * | --------------------- | ---------------------------------------------------- | --------------------------- |
 * | G_EPOCH               | bumped by every reset: older completions are dropped | register front              |
 * | G_READY               | CSTS.RDY as the executors read it                    | register front              |
 * | G_PAGE_SIZE           | CC.MPS in bytes, fixed while enabled                 | register front              |
 * | G_VWC                 | volatile write cache enabled                         | Set Features                |
 * | G_DRAIN_SEQ           | bumped when a thread's count drops to 0 in a drain   | executing threads           |
 * | G_DRAINING            | threads waiting for every count to reach 0           | drainers                    |
 * | G_EVENTS_POSTED       | bumped per event an I/O thread hands over            | I/O threads                 |
 * | G_SQ_GENERATION       | bumped per Create I/O SQ (ring ownership)            | Create I/O SQ               |
 * | G_EVENTS ..           | G_EVENT_SLOTS event words (DW0 | EVENT_PRESENT)      | I/O threads; main takes     |
 * | G_IRQ + v             | bumped when vector v is raised for another thread    | the posting thread          |
 * | threadBase + s·STRIDE | thread slot s's commands in flight, one cache line   | that thread alone           |
 *
 * Media, MEDIA_STRIDE Int32 words (one cache line) per namespace: a flags
 * word that only ever gains bits (Atomics.or by whichever thread executes the
 * command that sets one: "a write was cached", "data may have been lost"), and
 * the status of the failure that set "lost", stored once by the thread whose
 * Atomics.or set it. Nothing clears them: a controller reset keeps them, a new
 * controller (a new open) has new memory.
 */
import { DOORBELL_BASE } from '../spec/registers.js';
import { HEALTH_ROWS, MEDIA_STRIDE, MediaHealth } from './health.js';
import { QueueDirectory } from './queues.js';
import { waitAsyncAlive } from '../shared/wait.js';
import type { ControllerConfig } from './config.js';

const G_EPOCH = 0;
const G_READY = 1;
const G_PAGE_SIZE = 2;
const G_VWC = 3;
const G_DRAIN_SEQ = 4;
const G_DRAINING = 5;
const G_EVENTS_POSTED = 6;
const G_SQ_GENERATION = 7;
const G_EVENTS = 8;
const G_EVENT_SLOTS = 8;
const G_IRQ = 16;
/** Marks an event word as holding an event (event DW0 uses bits 23:0). */
const EVENT_PRESENT = 0x4000_0000;
/** Words of in-flight CID bits per SQ: one bit per possible CID. */
const CID_WORDS = 65536 / 32;
/** Int32 words per thread's in-flight count: one to a 64-byte cache line, written by that thread alone. */
const THREAD_STRIDE = 16;
/** Threads that can execute queues (slot 0 is the main thread): one SMART row each. */
export const MAX_THREAD_SLOTS = HEALTH_ROWS;

/** The shared memory behind a controller, for attaching in another thread. */
export interface SharedControllerMemory {
  bar: SharedArrayBuffer;
  /** Per SQ, a bit per CID of the commands fetched and not completed (for aborting a dead thread's). */
  inflightCids: SharedArrayBuffer;
  queues: SharedArrayBuffer;
  globals: SharedArrayBuffer;
  health: SharedArrayBuffer;
  errorLog: SharedArrayBuffer;
  /** Each namespace's media state (health.ts MediaHealth), by namespace index. */
  media: SharedArrayBuffer;
}

export class SharedState {
  readonly bar: SharedArrayBuffer;
  /** The BAR as Int32 words, for atomic doorbell stores and loads. */
  readonly barWords: Int32Array;
  readonly regs: DataView;
  readonly queues: QueueDirectory;
  readonly globals: Int32Array;
  private readonly inflightCids: Int32Array;
  private readonly media: Int32Array;
  /** Where the threads' in-flight counts start among the globals. */
  private readonly threadBase: number;

  /** New memory for a controller of `namespaces` namespaces (`memory` absent), or the memory of one made in another thread. */
  constructor(cfg: ControllerConfig, memory?: SharedControllerMemory, namespaces = 0) {
    this.bar = memory?.bar ?? new SharedArrayBuffer(DOORBELL_BASE + 2 * (cfg.maxIoQueues + 1) * (4 << cfg.dstrd));
    this.barWords = new Int32Array(this.bar);
    this.regs = new DataView(this.bar);
    this.queues = new QueueDirectory(memory?.queues ?? cfg.maxIoQueues);
    this.inflightCids = new Int32Array(memory?.inflightCids ?? new SharedArrayBuffer((cfg.maxIoQueues + 1) * CID_WORDS * 4));
    this.threadBase = Math.ceil((G_IRQ + cfg.interruptVectors) / THREAD_STRIDE) * THREAD_STRIDE;
    this.globals = new Int32Array(memory?.globals ?? new SharedArrayBuffer((this.threadBase + MAX_THREAD_SLOTS * THREAD_STRIDE) * 4));
    this.media = new Int32Array(memory?.media ?? new SharedArrayBuffer(Math.max(1, namespaces) * MEDIA_STRIDE * 4));
    if (!memory) {
      this.globals[G_PAGE_SIZE] = 4096;
      this.globals[G_VWC] = 1;
    }
  }

  /** A 32-bit register read: all ones outside the BAR or unaligned, as a failed PCIe read reads. */
  readBar(offset: number): number {
    if (offset < 0 || offset + 4 > this.bar.byteLength || offset % 4 !== 0) return 0xffffffff;
    return this.regs.getUint32(offset, true);
  }

  /** The buffers, given the health and error log buffers that live with their own classes. */
  memory(health: SharedArrayBuffer, errorLog: SharedArrayBuffer): SharedControllerMemory {
    return { bar: this.bar, inflightCids: this.inflightCids.buffer as SharedArrayBuffer, queues: this.queues.buffer, globals: this.globals.buffer as SharedArrayBuffer, health, errorLog, media: this.media.buffer as SharedArrayBuffer };
  }

  /** The media state of the namespace at `index` (its position among the controller's namespaces); its event goes to the admin queue's thread. */
  mediaOf(index: number): MediaHealth {
    if (!Number.isInteger(index) || index < 0 || (index + 1) * MEDIA_STRIDE > this.media.length) throw new RangeError(`no media state for namespace index ${index}`);
    return new MediaHealth(this.media, index * MEDIA_STRIDE, (dw0) => this.postEvent(dw0));
  }

  // ------------------------------------------------------------ controller words

  /** Bumped by every reset: completions of commands fetched before it are dropped. */
  get epoch(): number {
    return Atomics.load(this.globals, G_EPOCH);
  }

  newEpoch(): void {
    Atomics.add(this.globals, G_EPOCH, 1);
  }

  get ready(): boolean {
    return Atomics.load(this.globals, G_READY) === 1;
  }

  setReady(on: boolean): void {
    Atomics.store(this.globals, G_READY, on ? 1 : 0);
  }

  /** Host memory page size from CC.MPS, fixed while enabled. */
  get pageSize(): number {
    return this.globals[G_PAGE_SIZE]!;
  }

  setPageSize(bytes: number): void {
    this.globals[G_PAGE_SIZE] = bytes;
  }

  /** Volatile Write Cache Enable, read on every write. */
  get writeCacheEnabled(): boolean {
    return Atomics.load(this.globals, G_VWC) === 1;
  }

  setWriteCacheEnabled(on: boolean): void {
    Atomics.store(this.globals, G_VWC, on ? 1 : 0);
  }

  /** A fresh generation for a newly created I/O SQ: a thread's io_uring for a QID belongs to one creation of it. */
  nextSqGeneration(): number {
    return Atomics.add(this.globals, G_SQ_GENERATION, 1) + 1;
  }

  // ------------------------------------------------------------ commands in flight

  /** The globals word of a thread slot's in-flight count. */
  threadWord(slot: number): number {
    return this.threadBase + slot * THREAD_STRIDE;
  }

  markCid(qid: number, cid: number): void {
    Atomics.or(this.inflightCids, qid * CID_WORDS + (cid >>> 5), 1 << (cid & 31));
  }

  forgetCid(qid: number, cid: number): void {
    Atomics.and(this.inflightCids, qid * CID_WORDS + (cid >>> 5), ~(1 << (cid & 31)));
  }

  forgetAllCids(): void {
    this.inflightCids.fill(0);
  }

  /** Takes (clears) every in-flight CID bit of an SQ and returns the CIDs. */
  takeCids(qid: number): number[] {
    const out: number[] = [];
    const base = qid * CID_WORDS;
    for (let i = 0; i < CID_WORDS; i++) {
      let bits = Atomics.exchange(this.inflightCids, base + i, 0);
      while (bits !== 0) {
        const bit = 31 - Math.clz32(bits);
        bits &= ~(1 << bit);
        out.push(i * 32 + bit);
      }
    }
    return out;
  }

  /** `n` more commands in flight in the thread whose count is at `word`. */
  enter(word: number, n: number): void {
    Atomics.add(this.globals, word, n);
  }

  /** `n` fewer; when the thread's count drops to 0 while someone drains, wakes the drainers. */
  leave(word: number, n: number): void {
    if (Atomics.sub(this.globals, word, n) === n && Atomics.load(this.globals, G_DRAINING) > 0) this.drained();
  }

  /** Commands thread slot `slot` is executing. */
  inflightOf(slot: number): number {
    return Atomics.load(this.globals, this.threadWord(slot));
  }

  /** Zeroes a dead thread's count (its callbacks will never run); returns what it was. */
  abandonSlot(slot: number): number {
    const n = Atomics.exchange(this.globals, this.threadWord(slot), 0);
    if (n > 0) this.drained();
    return n;
  }

  /** Commands fetched and not completed, across all threads. */
  private inflightTotal(): number {
    let n = 0;
    for (let w = this.threadBase; w < this.globals.length; w += THREAD_STRIDE) n += Atomics.load(this.globals, w);
    return n;
  }

  /** A thread's count reached 0 while someone drains: wake the drainers to sum the counts again. */
  private drained(): void {
    Atomics.add(this.globals, G_DRAIN_SEQ, 1);
    Atomics.notify(this.globals, G_DRAIN_SEQ);
  }

  /** Runs `fn` once no command is executing in any thread (at once when none is). */
  whenDrained(fn: () => void): void {
    if (this.inflightTotal() === 0) return fn();
    Atomics.add(this.globals, G_DRAINING, 1);
    void (async () => {
      try {
        for (;;) {
          // The sequence is read before the counts: a count that drops to 0 after the sum bumps it, and the wait returns at once.
          const seq = Atomics.load(this.globals, G_DRAIN_SEQ);
          if (this.inflightTotal() === 0) return;
          await waitAsyncAlive(this.globals, G_DRAIN_SEQ, seq);
        }
      } finally {
        Atomics.sub(this.globals, G_DRAINING, 1);
        fn();
      }
    })();
  }

  // ------------------------------------------------------------ interrupts and events across threads

  /** The shared word a thread waits on for a vector raised elsewhere. */
  interruptWord(vector: number): { words: Int32Array; index: number } {
    return { words: this.globals, index: G_IRQ + vector };
  }

  /** Raises `vector` for a handler in another thread. */
  raiseRemote(vector: number): void {
    Atomics.add(this.globals, G_IRQ + vector, 1);
    Atomics.notify(this.globals, G_IRQ + vector);
  }

  /**
   * Hands an asynchronous event (its completion DW0) to the admin queue's
   * thread. When all slots are taken it is dropped: the same type is masked
   * until its log page is read anyway.
   */
  postEvent(dw0: number): void {
    for (let i = 0; i < G_EVENT_SLOTS; i++) {
      if (Atomics.compareExchange(this.globals, G_EVENTS + i, 0, dw0 | EVENT_PRESENT) === 0) {
        Atomics.add(this.globals, G_EVENTS_POSTED, 1);
        Atomics.notify(this.globals, G_EVENTS_POSTED);
        return;
      }
    }
  }

  /**
   * Main thread: calls `raise` with each event I/O threads post, until
   * `stopped()`; the wait holds no event-loop handle. wakeEventWatch() makes
   * it look at `stopped` again.
   */
  async watchEvents(raise: (dw0: number) => void, stopped: () => boolean): Promise<void> {
    let seen = Atomics.load(this.globals, G_EVENTS_POSTED);
    while (!stopped()) {
      const r = Atomics.waitAsync(this.globals, G_EVENTS_POSTED, seen);
      if (r.async) await r.value;
      seen = Atomics.load(this.globals, G_EVENTS_POSTED);
      for (let i = 0; i < G_EVENT_SLOTS; i++) {
        const w = Atomics.exchange(this.globals, G_EVENTS + i, 0);
        if (w & EVENT_PRESENT) raise(w & ~EVENT_PRESENT);
      }
    }
  }

  wakeEventWatch(): void {
    Atomics.add(this.globals, G_EVENTS_POSTED, 1);
    Atomics.notify(this.globals, G_EVENTS_POSTED);
  }
}
