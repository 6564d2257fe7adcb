/**
 * One thread's io_uring instances: a ring per I/O submission queue the
 * thread executes, made on the queue's first command, and for each ring the
 * namespaces' operations submitted to it.
 *
 * A ring belongs to one creation of its QID (the SQ's generation): a queue
 * deleted and created again gets a new ring, and the old one's operations
 * are cancelled and completed first. Backends reach io_uring only through
 * what this set gives the executor (`io()`): a backend with a `uring` side (a
 * file) has its descriptor registered with every ring and its operations
 * bound to the ring; the others are used as they are.
 */
import type { DmaArena } from '../dma-arena.js';
import type { Backend, BlockIo } from '../device/backends/backend.js';
import type { NativeBinding } from './native.js';
import { IoRing } from './ring.js';
import { notePortable } from './data-path.js';

/** What the set needs of a submission queue (device/queues.ts SubmissionQueue). */
export interface RingQueue {
  readonly qid: number;
  /** Which creation of the QID this is: a ring serves one. */
  readonly generation: number;
  readonly size: number;
}

interface Entry {
  readonly ring: IoRing;
  readonly generation: number;
  /** Each backend's operations on this ring, by the backend's index in the set. */
  readonly io: BlockIo[];
}

export class RingSet {
  private readonly byQid: Array<Entry | undefined> = [];
  /** QIDs with a ring, for the loops that visit every ring. */
  private readonly qids = new Set<number>();
  /** Some backend is an O_DIRECT file: its rings register the arena (see make()). */
  private readonly direct: boolean;
  private native: NativeBinding | null;

  constructor(
    native: NativeBinding,
    private readonly arena: DmaArena,
    private readonly backends: readonly Backend[],
  ) {
    this.native = native;
    this.direct = backends.some((b) => b.uring?.direct === true);
  }

  /** False once setting up a ring failed: this thread then takes the portable path. */
  get active(): boolean {
    return this.native !== null;
  }

  /**
   * The operations of backend `index` for a command of `sq`, through that
   * SQ's ring, made on first use (with a slot per SQ entry). Returns the
   * backend itself when it has no io_uring side or no ring can be set up.
   */
  io(sq: RingQueue, index: number): BlockIo {
    const had = this.byQid[sq.qid];
    const e = had && had.generation === sq.generation ? had : this.replace(sq);
    return e ? e.io[index]! : this.backends[index]!;
  }

  /** The ring serving SQ `qid` in this thread, if one was made. */
  ring(qid: number): IoRing | undefined {
    return this.byQid[qid]?.ring;
  }

  /** A ring for this creation of `sq`, after tearing down one left from an earlier creation of its QID. */
  private replace(sq: RingQueue): Entry | undefined {
    this.retire(sq.qid);
    return this.make(sq.qid, sq.generation, sq.size);
  }

  private make(qid: number, generation: number, size: number): Entry | undefined {
    if (!this.native) return undefined;
    let ring: IoRing;
    try {
      ring = new IoRing(this.native, this.arena, size);
    } catch (e) {
      // Out of memory or locked-memory limit: this thread goes on without rings rather than failing I/O.
      this.native = null;
      notePortable(`io_uring setup failed (${(e as Error).message}); this thread's file I/O uses the portable node:fs path`);
      return undefined;
    }
    ring.registerFiles(this.backends.flatMap((b) => (b.uring ? [b.uring.fd] : [])));
    // O_DIRECT transfers pin their pages in the kernel per operation unless the arena is registered (about
    // 9% less CPU per 4 KiB O_DIRECT read here); reads from the page cache gain nothing from it, and the
    // registration pins the whole arena, so only rings serving an O_DIRECT namespace register it.
    if (this.direct) ring.registerBuffers();
    // Each O_DIRECT operation is a device request: it goes to the kernel as it is staged (IoRing.submitEach).
    ring.submitEach(this.backends.flatMap((b) => (b.uring?.direct === true ? [b.uring.fd] : [])));
    const entry: Entry = { ring, generation, io: this.backends.map((b) => b.uring?.via(ring) ?? b) };
    this.byQid[qid] = entry;
    this.qids.add(qid);
    return entry;
  }

  /** One io_uring_enter for what the commands of SQ `qid` staged (once per doorbell). */
  submit(qid: number): void {
    this.byQid[qid]?.ring.submit();
  }

  /**
   * Tears down the ring of `qid`: operations still in flight are cancelled
   * and waited for, and their commands complete (aborted unless the kernel
   * had finished them).
   */
  retire(qid: number): void {
    const had = this.byQid[qid];
    if (!had) return;
    this.byQid[qid] = undefined;
    this.qids.delete(qid);
    had.ring.close();
  }

  retireAll(): void {
    for (const qid of [...this.qids]) this.retire(qid);
  }

  /**
   * Blocks this thread until its first ring with operations in flight (in
   * the engine, a worker's only one) finishes one or `timeoutMs` passes, then
   * completes what that ring finished; polls that ring for up to `spinUs`
   * first. Returns how many; 0 at once when no ring has anything in flight.
   */
  wait(timeoutMs: number, spinUs = 0): number {
    for (const qid of this.qids) {
      const ring = this.byQid[qid]!.ring;
      if (ring.inflight > 0) return ring.wait(timeoutMs, spinUs);
    }
    return 0;
  }

  /** Operations in flight in this thread's rings. */
  inflight(): number {
    let n = 0;
    for (const qid of this.qids) n += this.byQid[qid]!.ring.inflight;
    return n;
  }

  /** Completes what the rings have finished, without a system call (polled mode). Returns how many. */
  poll(): number {
    let n = 0;
    for (const qid of this.qids) n += this.byQid[qid]!.ring.poll();
    return n;
  }
}
