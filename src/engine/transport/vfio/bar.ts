/**
 * BAR0 of a PCIe NVMe controller as one thread sees it: a mapping read and
 * written as memory (Atomics on a Uint32Array over it: each access is one
 * 32-bit load or store, ordered after every earlier store, as doorbell writes
 * after SQE writes require), and how that thread learns of completions.
 *
 * - MSI-X (when the device has it and VFIO enabled it, msix.ts): each
 *   installed handler runs when its vector's eventfd fires on this thread's
 *   event loop; the loop is held only while commands are outstanding.
 * - Polled otherwise: while commands are outstanding (outstanding.ts counts
 *   them from the doorbells this thread writes) every installed handler runs
 *   from setImmediate, as an interrupt would run it; where the count can run
 *   low (the admin queue's AERs) a slow, unreferenced timer polls.
 *
 * Each thread handles only what it rings: no thread wakes another.
 */
import type { DmaArena } from '../../dma-arena.js';
import { NvmqError } from '../../errors.js';
import { Cap, Regs } from '../../spec/registers.js';
import { bitsOf } from '../../spec/layout.js';
import { Vectors } from '../vectors.js';
import { OutstandingCommands } from './outstanding.js';
import type { MsixVectors } from './msix.js';

/** Poll period while nothing is counted as outstanding (an AER may still complete). */
export const IDLE_POLL_MS = 10;
/** NVMe registers and doorbells: what BAR0 must hold at least. */
export const MIN_BAR0 = 0x2000;

export abstract class BarTransport {
  readonly name = 'vfio';
  /** Completions found by polling (no MSI-X): I/O CQs are then created without interrupts (Transport.polled). */
  polled = true;
  private readonly regs: Uint32Array;
  protected readonly vectors = new Vectors();
  private readonly handlers = this.vectors.handlers;
  /** This thread's MSI-X vectors, once in use. */
  protected msix: MsixVectors | undefined;
  protected readonly outstanding: OutstandingCommands;
  /** CAP.DSTRD as a byte stride between doorbells. */
  protected readonly stride: number;
  private busyTimer: NodeJS.Immediate | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  protected closed = false;

  protected constructor(
    readonly arena: DmaArena,
    bar: ArrayBuffer,
    pci: string,
    /** Poll period while nothing is counted (0: none, for a thread whose count is exact). */
    private readonly idlePollMs: number,
  ) {
    if (bar.byteLength < MIN_BAR0) throw new NvmqError('NVMQ_VFIO', `BAR0 of ${pci} is ${bar.byteLength} bytes: too small for NVMe registers`);
    this.regs = new Uint32Array(bar);
    this.stride = 4 << bitsOf(this.read32(Regs.CAP_HI.offset), Cap.DSTRD);
    this.outstanding = new OutstandingCommands(arena, this.stride);
  }

  read32(offset: number): number {
    return Atomics.load(this.regs, offset >> 2) >>> 0;
  }
  read64(offset: number): number {
    return this.read32(offset) + this.read32(offset + 4) * 0x1_0000_0000;
  }
  write32(offset: number, value: number): void {
    Atomics.store(this.regs, offset >> 2, value);
    this.outstanding.write32(offset, value >>> 0);
    this.schedule();
  }
  /** Low dword, then high (NVMe allows 32-bit accesses to 64-bit registers). */
  write64(offset: number, value: number): void {
    this.write32(offset, value % 0x1_0000_0000);
    this.write32(offset + 4, Math.floor(value / 0x1_0000_0000));
  }

  /** Runs every installed handler, as if each vector had been raised. */
  poll(): void {
    for (const v of this.handlers.keys()) this.vectors.raise(v);
  }

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    if (handler) {
      this.msix?.watch(vector);
      this.handlers.set(vector, handler);
    } else {
      this.handlers.delete(vector);
      this.msix?.unwatch(vector);
    }
    this.schedule();
  }

  /** Completions through `msix` from now on (before the driver creates any I/O queue), polling no more. */
  protected useMsix(msix: MsixVectors): void {
    this.msix = msix;
    this.polled = false;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    for (const v of this.handlers.keys()) msix.watch(v);
    this.schedule();
  }

  /** MSI-X vectors enabled (0: polled). */
  get msixVectors(): number {
    return this.msix?.count ?? 0;
  }

  /** Commands outstanding as counted from this thread's doorbells. */
  get inflight(): number {
    return this.outstanding.count;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.msix) this.msix.hold(this.outstanding.count > 0);
    else if (this.outstanding.count > 0) {
      this.busyTimer ??= setImmediate(this.tick);
    } else if (this.idlePollMs > 0 && this.handlers.size > 0 && !this.idleTimer) {
      this.idleTimer = setInterval(() => this.poll(), this.idlePollMs);
      this.idleTimer.unref();
    }
  }

  private readonly tick = (): void => {
    this.busyTimer = undefined;
    if (this.closed) return;
    this.poll();
    // The handlers run from a microtask, after this: the next tick sees what they consumed.
    if (this.outstanding.count > 0) this.busyTimer = setImmediate(this.tick);
  };

  /** Stops polling and watching, and forgets the handlers (the subclass then releases its mapping). */
  protected stopPolling(): void {
    this.closed = true;
    this.msix?.close();
    this.msix = undefined;
    if (this.busyTimer) clearImmediate(this.busyTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.busyTimer = undefined;
    this.idleTimer = undefined;
    this.handlers.clear();
  }
}
