/**
 * Asynchronous Event Requests of one controller (NVMe 1.4 section 5.2): the
 * host leaves up to AERL + 1 outstanding; an event completes the oldest, or
 * waits for the next request when none is outstanding.
 */
import { CommandSpecificStatus, Sct } from '../spec/status.js';
import { withBits } from '../spec/layout.js';
import { AsyncEventDw0 } from '../spec/log-pages.js';
import { fail, ok, type FabricsResponse } from './capsule.js';

export class AsyncEvents {
  private readonly waiting: Array<(r: FabricsResponse) => void> = [];
  private readonly pending: number[] = [];

  /** `limit`: requests that may be outstanding at once (AERL + 1). */
  constructor(private readonly limit: number) {}

  /** An Asynchronous Event Request: a pending event at once, else a completion held until one comes. */
  request(): Promise<FabricsResponse> | FabricsResponse {
    const dw0 = this.pending.shift();
    if (dw0 !== undefined) return ok(dw0);
    if (this.waiting.length >= this.limit) return fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.ASYNC_EVENT_LIMIT_EXCEEDED);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Reports an event: completion DW0 carries its type, information and the log page to read. */
  post(type: number, info: number, logPage: number): void {
    const dw0 = withBits(withBits(withBits(0, AsyncEventDw0.TYPE, type), AsyncEventDw0.INFO, info), AsyncEventDw0.LID, logPage);
    const waiter = this.waiting.shift();
    if (waiter) waiter(ok(dw0));
    else this.pending.push(dw0);
  }

  /** Completes every outstanding request with `r` and forgets pending events (a reset, a teardown). */
  abortAll(r: FabricsResponse): void {
    this.pending.length = 0;
    for (const w of this.waiting.splice(0)) w(r);
  }

  get outstanding(): number {
    return this.waiting.length;
  }
}
