/**
 * The in-process transport: the controller lives in this process and a
 * register write is a call into it, as a trapped MMIO write is for QEMU. Its
 * interrupts are delivered from a microtask, coalesced per vector
 * (vectors.ts).
 */
import type { Transport } from './transport.js';
import type { InProcessDevice } from '../device/controller.js';
import type { DmaArena } from '../dma-arena.js';
import { Vectors } from './vectors.js';

export class LocalTransport implements Transport {
  readonly name = 'local';
  readonly arena: DmaArena;
  private readonly vectors = new Vectors();
  private readonly handlers = this.vectors.handlers;

  constructor(readonly controller: InProcessDevice) {
    this.arena = controller.arena;
    controller.interrupts.onInterrupt = (vector) => this.raise(vector);
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

  poll(): void {
    this.controller.pollRings();
  }

  wait(timeoutMs: number, spinUs = 0): void {
    this.controller.waitRings(timeoutMs, spinUs);
  }

  waitable(): number {
    return this.controller.ringsInflight();
  }

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    const had = this.handlers.has(vector);
    if (handler) {
      this.handlers.set(vector, handler);
      this.controller.interrupts.setLocal(vector, true);
      if (!had) void this.watch(vector);
    } else {
      this.handlers.delete(vector);
      this.controller.interrupts.setLocal(vector, false);
      // Release the watcher's wait.
      const { words, index } = this.controller.interrupts.word(vector);
      Atomics.add(words, index, 1);
      Atomics.notify(words, index);
    }
  }

  /**
   * A vector raised by another thread (a completion posted there for a queue
   * whose handler lives here) bumps a shared word; this waits on it. The wait
   * holds no event-loop handle: an idle thread stays idle.
   */
  private async watch(vector: number): Promise<void> {
    const { words, index } = this.controller.interrupts.word(vector);
    let seen = Atomics.load(words, index);
    while (this.handlers.has(vector)) {
      const r = Atomics.waitAsync(words, index, seen);
      if (r.async) await r.value;
      seen = Atomics.load(words, index);
      this.raise(vector);
    }
  }

  private raise(vector: number): void {
    this.vectors.raise(vector);
  }

  async close(): Promise<void> {
    for (const v of [...this.handlers.keys()]) this.setInterruptHandler(v, undefined);
    await this.controller.close();
  }
}
