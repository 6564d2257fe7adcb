/**
 * Interrupt delivery on the host side of a transport: a raised vector runs
 * its handler from a microtask, once however often it was raised before
 * that, so a completion posted inside a doorbell write never re-enters the
 * host's submission path.
 */
import { microtask } from '../shared/microtask.js';

export class Vectors {
  readonly handlers = new Map<number, () => void>();
  /** Vectors raised since the last delivery, once each (`isRaised` marks them). */
  private raised: number[] = [];
  private readonly isRaised: boolean[] = [];
  private scheduled = false;

  raise(vector: number): void {
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
}
