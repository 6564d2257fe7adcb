/**
 * Controller IDs of the dynamic controller model (Fabrics 1.1, dynamic controller model):
 * 1..FFEFh, the lowest one not in use, round robin from the last handed out
 * so a CNTLID just freed is not reused at once (a host still holding the old
 * association would otherwise meet a stranger under its ID).
 */
import { CNTLID_MAX, CNTLID_MIN } from '../spec/fabrics.js';

export class CntlidPool {
  private readonly used = new Set<number>();
  private next = CNTLID_MIN;

  constructor(private readonly min = CNTLID_MIN, private readonly max = CNTLID_MAX) {
    this.next = min;
  }

  /** A free CNTLID, or undefined when every one is in use. */
  take(): number | undefined {
    const span = this.max - this.min + 1;
    if (this.used.size >= span) return undefined;
    for (let i = 0; i < span; i++) {
      const id = this.next;
      this.next = id >= this.max ? this.min : id + 1;
      if (!this.used.has(id)) {
        this.used.add(id);
        return id;
      }
    }
    return undefined;
  }

  release(id: number): void {
    this.used.delete(id);
  }

  get inUse(): number {
    return this.used.size;
  }
}
