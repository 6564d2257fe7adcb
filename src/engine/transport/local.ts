/**
 * The in-process transport: the controller lives in this process and a
 * register write is a call into it, as a trapped MMIO write is for QEMU. Its
 * interrupts are delivered from a microtask, coalesced per vector, so a
 * completion posted inside a doorbell write never re-enters the host's
 * submission path.
 */
import type { Transport } from '../host/transport.js';
import type { NvmeController } from '../device/controller.js';
import type { DmaArena } from '../dma-arena.js';

export class LocalTransport implements Transport {
  readonly name = 'local';
  readonly arena: DmaArena;
  private readonly handlers = new Map<number, () => void>();
  private readonly raised = new Set<number>();
  private scheduled = false;

  constructor(readonly controller: NvmeController) {
    this.arena = controller.arena;
    controller.onInterrupt = (vector) => this.raise(vector);
  }

  read32(offset: number): number {
    return this.controller.mmioRead32(offset);
  }
  read64(offset: number): number {
    return this.controller.mmioRead64(offset);
  }
  write32(offset: number, value: number): void {
    this.controller.mmioWrite32(offset, value);
  }
  write64(offset: number, value: number): void {
    this.controller.mmioWrite64(offset, value);
  }

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    if (handler) this.handlers.set(vector, handler);
    else this.handlers.delete(vector);
  }

  private raise(vector: number): void {
    this.raised.add(vector);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      for (const v of this.raised) {
        this.raised.delete(v);
        this.handlers.get(v)?.();
      }
    });
  }

  async close(): Promise<void> {
    this.handlers.clear();
    await this.controller.close();
  }
}
