/**
 * A VFIO device's MSI-X vectors as one thread handles them. When the main
 * thread opened the device it attached an eventfd to each vector
 * (VFIO_DEVICE_SET_IRQS, which also enabled MSI-X); descriptors are
 * process-wide, so a thread watches, through a duplicate of its own, the
 * eventfd of each vector it installed a handler for, and only those: no
 * thread wakes another. A watch holds the thread's event loop only while the
 * thread has commands outstanding (`hold`), as a ring's eventfd does.
 */
import { NvmqError } from '../../errors.js';
import type { NativeVfioInterrupt } from '../../uring/native.js';

export class MsixVectors {
  private readonly watched = new Map<number, NativeVfioInterrupt>();
  private held = false;

  constructor(
    private readonly Interrupt: new (eventfd: number) => NativeVfioInterrupt,
    /** The eventfd of each enabled vector, by vector. */
    private readonly eventfds: ArrayLike<number>,
    /** Called on this thread's event loop when `vector` fires. */
    private readonly raise: (vector: number) => void,
    private readonly pci: string,
  ) {}

  get count(): number {
    return this.eventfds.length;
  }

  /** Starts watching `vector` in this thread (once however often it is asked). */
  watch(vector: number): void {
    if (this.watched.has(vector)) return;
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.eventfds.length) {
      throw new NvmqError('NVMQ_VFIO', `${this.pci}: no MSI-X vector ${vector} (${this.eventfds.length} enabled)`);
    }
    let irq: NativeVfioInterrupt;
    try {
      irq = new this.Interrupt(this.eventfds[vector]!);
    } catch (e) {
      throw new NvmqError('NVMQ_VFIO', `${this.pci}: cannot watch MSI-X vector ${vector}: ${(e as Error).message}`, { cause: e });
    }
    try {
      irq.watch(() => this.raise(vector));
      if (this.held) irq.ref(true);
    } catch (e) {
      irq.close();
      throw e;
    }
    this.watched.set(vector, irq);
  }

  unwatch(vector: number): void {
    this.watched.get(vector)?.close();
    this.watched.delete(vector);
  }

  /** The watched interrupt of `vector`, for a thread that blocks on it (wait()). */
  interrupt(vector: number): NativeVfioInterrupt | undefined {
    return this.watched.get(vector);
  }

  /** Whether the watches keep the event loop alive: while commands are outstanding. */
  hold(busy: boolean): void {
    if (busy === this.held) return;
    this.held = busy;
    for (const irq of this.watched.values()) irq.ref(busy);
  }

  close(): void {
    for (const irq of this.watched.values()) irq.close();
    this.watched.clear();
  }
}
