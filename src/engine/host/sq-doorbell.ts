/**
 * When a queue pair writes its SQ tail doorbell. A submission is "unrung"
 * until a doorbell write exposes it to the controller:
 *
 * - at once, one write per command (the default);
 * - inside plug() / unplug(), once at the outermost unplug: many commands,
 *   one write (and on the io_uring path one entry into the kernel);
 * - with `coalesce`, once per microtask turn for submissions made outside a
 *   plug: callers that each await their own command still share doorbells.
 *
 * After each write the pair reaps at once (a memory namespace has already
 * completed) and its waiter decides how to wait for the rest.
 */
import { sharedNow } from '../shared/clock.js';
import { microtask } from '../shared/microtask.js';

export class SqDoorbell {
  private depth = 0;
  /** The clock reading of the outermost plug(): the batch's submit time. */
  private clock = 0;
  private unrung = 0;
  /** coalesce: a write is queued for the end of this microtask turn (inside a plug, unplug rings it). */
  private queued = false;
  private readonly ringQueued = (): void => {
    this.queued = false;
    if (this.unrung > 0 && this.depth === 0) this.ringNow();
  };

  /** `ring` writes the tail to the controller and reaps; `coalesce`: once per microtask turn outside a plug. */
  constructor(
    private readonly ring: () => void,
    private readonly coalesce: boolean,
  ) {}

  plug(): void {
    // Commands of one plugged batch reach the controller together, at unplug: one clock reading serves them all.
    if (this.depth++ === 0) this.clock = sharedNow();
  }

  unplug(): void {
    if (this.depth === 0) throw new Error('unplug() without plug()');
    if (--this.depth === 0 && this.unrung > 0) this.ringNow();
  }

  /** The submit time of a command being queued now. */
  now(): number {
    return this.depth > 0 ? this.clock : sharedNow();
  }

  /**
   * A command was queued. Returns true when the caller is to ring now (it
   * does, so a failure's stack keeps the submitter's frames); otherwise the
   * doorbell is rung at unplug or at the end of this microtask turn.
   */
  submitted(): boolean {
    this.unrung++;
    if (this.depth > 0) return false;
    if (!this.coalesce) {
      this.unrung = 0;
      return true;
    }
    if (!this.queued) {
      this.queued = true;
      microtask(this.ringQueued);
    }
    return false;
  }

  private ringNow(): void {
    this.unrung = 0;
    this.ring();
  }
}
