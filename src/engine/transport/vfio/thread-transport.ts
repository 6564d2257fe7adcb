/**
 * The VFIO transport of a thread attached to an engine on a PCIe controller
 * (a pool worker, an application's thread): its own mapping of BAR0, made
 * from the device fd the main thread's transport holds (file descriptors are
 * process-wide), through which it rings its granted I/O queue's doorbells and
 * polls that queue's CQ in this thread (polled-bar.ts). The main thread
 * created the queue through the admin queue; the rings are in the shared DMA
 * arena, which the IOMMU mapping covers whichever thread writes it.
 *
 * Only doorbell writes reach the device: the controller's registers belong
 * to the main thread (a write to one here is dropped).
 */
import type { Transport } from '../transport.js';
import { DmaArena, type DmaArenaHandle } from '../../dma-arena.js';
import { NvmqError } from '../../errors.js';
import { loadVfio, type NativeVfioBar } from '../../uring/native.js';
import { DOORBELL_BASE } from '../../spec/registers.js';
import { PolledBar } from './polled-bar.js';

/** What a thread needs to ring its own I/O queue on the engine's PCIe controller (structured-cloneable). */
export interface VfioThreadHandle {
  kind: 'vfio';
  pci: string;
  /** The VFIO device fd the main thread holds open. */
  deviceFd: number;
  /** BAR0's region in that fd. */
  bar0: { offset: number; size: number };
  arena: DmaArenaHandle;
}

export function isVfioThreadHandle(h: object): h is VfioThreadHandle {
  return (h as { kind?: unknown }).kind === 'vfio';
}

export class ThreadVfioTransport extends PolledBar implements Transport {
  private constructor(
    arena: DmaArena,
    private readonly bar: NativeVfioBar,
    pci: string,
  ) {
    super(arena, bar.buffer(), pci);
  }

  /**
   * Maps BAR0 for this thread and counts queue `rings.qid` (`rings.entries`
   * deep) as its own; `range` is the thread's part of the arena. Throws one
   * line when the mapping fails, nothing left mapped.
   */
  static open(h: VfioThreadHandle, range: { offset: number; size: number }, rings: { qid: number; entries: number }): ThreadVfioTransport {
    const native = loadVfio();
    if ('reason' in native) throw new NvmqError('NVMQ_VFIO_UNAVAILABLE', `VFIO unavailable in this thread: ${native.reason}`);
    let bar: NativeVfioBar;
    try {
      bar = new native.VfioBar(h.deviceFd, h.bar0.offset, h.bar0.size);
    } catch (e) {
      throw new NvmqError('NVMQ_VFIO', `${h.pci}: this thread cannot map BAR0: ${(e as Error).message}`, { cause: e });
    }
    try {
      const t = new ThreadVfioTransport(new DmaArena({ ...h.arena, range }), bar, h.pci);
      t.outstanding.track(rings.qid, rings.entries);
      return t;
    } catch (e) {
      bar.close();
      throw e;
    }
  }

  override write32(offset: number, value: number): void {
    if (offset >= DOORBELL_BASE) super.write32(offset, value);
  }

  /** Stops polling and unmaps this thread's BAR0 (the queue itself is deleted by the main thread). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stopPolling();
    this.bar.close();
  }
}
