/**
 * The VFIO transport of a thread attached to an engine on a PCIe controller
 * (a pool worker, an application's thread): its own mapping of BAR0, made
 * from the device fd the main thread's transport holds (file descriptors are
 * process-wide), through which it rings its granted I/O queue's doorbells,
 * and that queue's MSI-X vector watched in this thread, or its CQ polled
 * when the device has no MSI-X (bar.ts). The main thread
 * created the queue through the admin queue; the rings are in the shared DMA
 * arena, which the IOMMU mapping covers whichever thread writes it.
 *
 * Only doorbell writes reach the device: the controller's registers belong
 * to the main thread (a write to one here is dropped).
 *
 * A worker's queue pair may also wait for a completion without going back
 * to its event loop (waiter.ts): wait() looks at the phase tag of the CQE at
 * the CQ head, which it follows from this thread's CQ head doorbell writes
 * (the phase flips each time the head wraps, NVMe 2.0, 4.2.4), for a few
 * microseconds, then sleeps in the kernel on its vector's eventfd until the
 * interrupt. Without MSI-X there is nothing to sleep on: it spins for the
 * whole wait it is given.
 */
import type { Transport } from '../transport.js';
import { DmaArena, type DmaArenaHandle } from '../../dma-arena.js';
import { NvmqError } from '../../errors.js';
import { loadVfio, type NativeVfioBar } from '../../uring/native.js';
import { DOORBELL_BASE } from '../../spec/registers.js';
import { CQE_SIZE } from '../../spec/command.js';
import { BarTransport } from './bar.js';
import { MsixVectors } from './msix.js';

/** What a thread needs to ring its own I/O queue on the engine's PCIe controller (structured-cloneable). */
export interface VfioThreadHandle {
  kind: 'vfio';
  pci: string;
  /** The VFIO device fd the main thread holds open. */
  deviceFd: number;
  /** BAR0's region in that fd. */
  bar0: { offset: number; size: number };
  /** The eventfd of each MSI-X vector, by vector (empty: completions are polled). */
  eventfds: number[];
  arena: DmaArenaHandle;
}

export function isVfioThreadHandle(h: object): h is VfioThreadHandle {
  return (h as { kind?: unknown }).kind === 'vfio';
}

/** The granted queue, as QueuePair.handle() gives it. */
export interface VfioRings {
  qid: number;
  entries: number;
  cq: { offset: number };
}

/** CQE dword 3 (status and phase tag, bit 16) as a 32-bit word index from the CQE's start. */
const CQE_DW3 = 3;
/** How long wait() looks at the CQ before it sleeps on the interrupt. */
export const WAIT_SPIN_US = 5;

export class ThreadVfioTransport extends BarTransport implements Transport {
  /** This thread's CQ head doorbell, and the CQ's head and expected phase as its writes say. */
  private readonly cqDoorbell: number;
  private cqHead = 0;
  private phase = 1;
  /** The vector whose handler this thread installed: what wait() sleeps on. */
  private vector = -1;

  private constructor(
    arena: DmaArena,
    private readonly bar: NativeVfioBar,
    pci: string,
    private readonly rings: VfioRings,
  ) {
    // Its count is exact (no AER on an I/O queue): nothing to poll for while it is zero.
    super(arena, bar.buffer(), pci, 0);
    this.cqDoorbell = DOORBELL_BASE + (2 * rings.qid + 1) * this.stride;
    this.outstanding.track(rings.qid, rings.entries);
  }

  /**
   * Maps BAR0 for this thread and counts queue `rings.qid` (`rings.entries`
   * deep) as its own; `range` is the thread's part of the arena. Throws one
   * line when the mapping fails, nothing left mapped.
   */
  static open(h: VfioThreadHandle, range: { offset: number; size: number }, rings: VfioRings): ThreadVfioTransport {
    const native = loadVfio();
    if ('reason' in native) throw new NvmqError('NVMQ_VFIO_UNAVAILABLE', `VFIO unavailable in this thread: ${native.reason}`);
    let bar: NativeVfioBar;
    try {
      bar = new native.VfioBar(h.deviceFd, h.bar0.offset, h.bar0.size);
    } catch (e) {
      throw new NvmqError('NVMQ_VFIO', `${h.pci}: this thread cannot map BAR0: ${(e as Error).message}`, { cause: e });
    }
    let t: ThreadVfioTransport | undefined;
    try {
      t = new ThreadVfioTransport(new DmaArena({ ...h.arena, range }), bar, h.pci, rings);
      if (h.eventfds.length > 0) t.useMsix(new MsixVectors(native.VfioInterrupt, h.eventfds, (v) => t!.vectors.raise(v), h.pci));
      return t;
    } catch (e) {
      t?.stopPolling();
      bar.close();
      throw e;
    }
  }

  override setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    super.setInterruptHandler(vector, handler);
    this.vector = handler ? vector : -1;
  }

  override write32(offset: number, value: number): void {
    if (offset < DOORBELL_BASE) return;
    if (offset === this.cqDoorbell) {
      if (value < this.cqHead) this.phase ^= 1;
      this.cqHead = value;
    }
    super.write32(offset, value);
  }

  /** Commands of this thread's queue in flight: what wait() can wait for. */
  waitable(): number {
    return this.outstanding.count;
  }

  /**
   * Returns once the CQE at the head carries the current phase, or `timeoutMs`
   * has passed; the queue pair then reaps. With MSI-X it looks for
   * WAIT_SPIN_US, then sleeps on this thread's vector.
   */
  wait(timeoutMs: number): void {
    const at = ((this.rings.cq.offset + this.cqHead * CQE_SIZE) >> 2) + CQE_DW3;
    const u32 = this.arena.u32;
    const ready = (): boolean => ((Atomics.load(u32, at) >>> 16) & 1) === this.phase;
    const start = performance.now();
    const deadline = start + timeoutMs;
    const irq = this.msix?.interrupt(this.vector);
    const spinEnd = irq ? Math.min(deadline, start + WAIT_SPIN_US / 1000) : deadline;
    do {
      if (ready()) return;
    } while (performance.now() < spinEnd);
    if (!irq) return;
    for (let left = deadline - performance.now(); left > 0; left = deadline - performance.now()) {
      // 1: the vector fired (an earlier completion's, maybe: look again); 0: timed out; < 0: nothing to sleep on.
      if (irq.wait(Math.ceil(left * 1000)) < 0 || ready()) return;
    }
  }

  /** Stops polling and unmaps this thread's BAR0 (the queue itself is deleted by the main thread). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stopPolling();
    this.bar.close();
  }
}
