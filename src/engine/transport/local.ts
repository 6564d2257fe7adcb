/**
 * The in-process transport: the controller lives in this process and a
 * register write is a call into it, as a trapped MMIO write is for QEMU. Its
 * interrupts are delivered from a microtask, coalesced per vector, so a
 * completion posted inside a doorbell write never re-enters the host's
 * submission path.
 */
import type { Transport } from './transport.js';
import type { InProcessDevice } from '../device/controller.js';
import type { DmaArena } from '../dma-arena.js';
import { microtask } from '../shared/microtask.js';

export class LocalTransport implements Transport {
  readonly name = 'local';
  readonly arena: DmaArena;
  private readonly handlers = new Map<number, () => void>();
  /** Vectors raised since the last delivery, once each (`isRaised` marks them). */
  private raised: number[] = [];
  private readonly isRaised: boolean[] = [];
  private scheduled = false;

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
    if (this.isRaised[vector]) return;
    this.isRaised[vector] = true;
    this.raised.push(vector);
    if (this.scheduled) return;
    this.scheduled = true;
    microtask(this.deliverNow);
  }

  private readonly deliverNow = (): void => this.deliver();
  /** Never throws: it runs from microtask(). */
  private deliver(): void {
    this.scheduled = false;
    const vectors = this.raised;
    this.raised = [];
    for (let i = 0; i < vectors.length; i++) {
      const v = vectors[i]!;
      this.isRaised[v] = false;
      try {
        this.handlers.get(v)?.();
      } catch (e) {
        // The vectors after it are raised again before the error goes on (an uncaught exception, as from
        // any Node callback, thrown from a microtask of its own): none is lost.
        for (const w of vectors.slice(i + 1)) {
          this.isRaised[w] = false;
          this.raise(w);
        }
        queueMicrotask(() => {
          throw e;
        });
        return;
      }
    }
  }

  async close(): Promise<void> {
    for (const v of [...this.handlers.keys()]) this.setInterruptHandler(v, undefined);
    await this.controller.close();
  }
}
