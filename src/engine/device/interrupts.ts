/**
 * Interrupt routing in one thread. A completion raises its CQ's vector: in
 * this thread through the transport's handler when the vector's handler lives
 * here, otherwise by bumping the vector's shared word, which the owning
 * thread waits on. INTMS / INTMC (pin-based masking, 3.1.3-4) hold a vector
 * back until it is unmasked.
 */
import type { SharedState } from './shared-state.js';

export class Interrupts {
  /** Called for a vector whose handler runs in this thread. Set by the transport. */
  onInterrupt: (vector: number) => void = () => {};
  /** 1 where the vector's handler runs in this thread. */
  private readonly local: Uint8Array;
  private mask = 0;
  private pending = 0;

  constructor(
    private readonly shared: SharedState,
    vectors: number,
  ) {
    this.local = new Uint8Array(vectors);
  }

  raise(vector: number): void {
    if (vector < 32 && this.mask & (1 << vector)) {
      this.pending |= 1 << vector;
      return;
    }
    if (this.local[vector] === 1) this.onInterrupt(vector);
    else this.shared.raiseRemote(vector);
  }

  /** Says whether `vector`'s handler runs in this thread (the transport, as it installs or removes one). */
  setLocal(vector: number, here: boolean): void {
    this.local[vector] = here ? 1 : 0;
  }

  /** The shared word a thread waits on for `vector` raised elsewhere. */
  word(vector: number): { words: Int32Array; index: number } {
    return this.shared.interruptWord(vector);
  }

  /** INTMS / INTMC read: the mask. */
  get masked(): number {
    return this.mask >>> 0;
  }

  /** INTMS: masks the vectors set in `bits`. */
  maskVectors(bits: number): void {
    this.mask = (this.mask | bits) >>> 0;
  }

  /** INTMC: unmasks them and raises those that fired meanwhile. */
  unmaskVectors(bits: number): void {
    this.mask = (this.mask & ~bits) >>> 0;
    const fire = this.pending & bits;
    this.pending &= ~bits;
    for (let v = 0; v < 32; v++) if (fire & (1 << v)) this.onInterrupt(v);
  }

  /** Controller reset: nothing masked, nothing pending. */
  reset(): void {
    this.mask = 0;
    this.pending = 0;
  }
}
