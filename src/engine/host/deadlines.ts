/**
 * Command deadlines of one queue pair in one thread: the host's timeout, as
 * Linux's nvme driver keeps one (io_timeout 30 s, admin_timeout 60 s).
 *
 * No timer per command: the submit time is already in the request table
 * (`RequestTable.describe`), so one sweep timer per pair and thread, unref'd,
 * looks at this thread's outstanding commands every quarter of the timeout
 * (at most once a second) and runs only while there are some. A command
 * costs a flag and a count here.
 *
 * Escalation, as Linux's: a command past its deadline is marked expired and
 * `onExpired` is asked to abort it (Abort, admin opcode 08h; on the admin
 * queue the owner goes to a reset directly, as Linux does). If it is still
 * outstanding one more timeout later, `onStuck` is asked to reset the
 * controller. Whatever then ends the command (its completion, Command Abort
 * Requested most likely, or the reset failing the pair) ends it with the
 * timeout error `ended()` returns, once.
 */
import { NvmqError } from '../errors.js';
import type { RequestTable } from '../shared/request-table.js';
import { sharedNow } from '../shared/clock.js';
import { AdminOpcode } from '../spec/opcodes.js';
import { invalidArgument } from './arguments.js';

/** Linux's defaults (nvme_core io_timeout and admin_timeout). */
export const DEFAULT_IO_TIMEOUT_MS = 30_000;
export const DEFAULT_ADMIN_TIMEOUT_MS = 60_000;
/** The longest a sweep waits: a one-hour timeout is still looked at every second. */
const MAX_SWEEP_MS = 1000;

/** A command past its deadline. */
export interface ExpiredCommand {
  qid: number;
  cid: number;
  opcode: number;
  /** How long it had been outstanding when the sweep found it. */
  elapsedMs: number;
}

export interface DeadlineHandlers {
  /** A command passed its deadline: abort it (or, on the admin queue, reset). */
  onExpired(e: ExpiredCommand): void;
  /** An expired command is still outstanding one more timeout later: reset the controller. */
  onStuck(e: ExpiredCommand): void;
}

/**
 * A command timeout option: milliseconds > 0, or 0 / Infinity for none;
 * returns the timeout, Infinity for none.
 */
export function checkTimeout(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw invalidArgument(name, 'a number of milliseconds > 0, or 0 or Infinity for none', v);
  return v === 0 ? Infinity : v;
}

export class Deadlines {
  readonly timeoutMs: number;
  private readonly qid: number;
  private readonly table: RequestTable;
  private readonly handlers: DeadlineHandlers;
  private readonly sweepMs: number;
  /** Per CID: 1 while outstanding from this thread and timed, 0 otherwise. */
  private readonly busy: Uint8Array;
  /** Per CID: when its deadline passed (sharedNow ms), 0 while it has not. */
  private readonly expiredAt: Float64Array;
  private count = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(qid: number, table: RequestTable, timeoutMs: number, handlers: DeadlineHandlers) {
    this.qid = qid;
    this.table = table;
    this.timeoutMs = timeoutMs;
    this.handlers = handlers;
    this.sweepMs = Math.max(1, Math.min(MAX_SWEEP_MS, Math.ceil(timeoutMs / 4)));
    this.busy = new Uint8Array(table.slots);
    this.expiredAt = new Float64Array(table.slots);
  }

  /** Command `cid` was handed to the controller from this thread. An AER has no deadline (it waits for an event). */
  started(cid: number): void {
    if (this.qid === 0 && this.table.opcode(cid) === AdminOpcode.ASYNC_EVENT_REQUEST) return;
    this.busy[cid] = 1;
    this.expiredAt[cid] = 0;
    this.count++;
    if (this.timer === undefined) this.arm();
  }

  /** Command `cid` ends: the timeout error it ends with when it expired, else undefined. */
  ended(cid: number): NvmqError | undefined {
    if (this.busy[cid] !== 1) return undefined;
    this.busy[cid] = 0;
    this.count--;
    const at = this.expiredAt[cid]!;
    if (at === 0) return undefined;
    this.expiredAt[cid] = 0;
    const opcode = this.table.opcode(cid);
    const waited = Math.round(sharedNow() - this.table.submitTime(cid));
    return new NvmqError(
      'NVMQ_TIMEOUT',
      `qid ${this.qid} cid ${cid}: opcode ${opcode.toString(16).padStart(2, '0')}h did not complete within its ${this.timeoutMs} ms timeout (ended after ${waited} ms)`,
    );
  }

  /** Stops sweeping (the pair is gone). */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = setTimeout(this.sweepBound, this.sweepMs);
    this.timer.unref();
  }

  private readonly sweepBound = (): void => this.sweep();

  private sweep(): void {
    this.timer = undefined;
    if (this.count === 0) return;
    const now = sharedNow();
    const found: Array<[ExpiredCommand, boolean]> = [];
    for (let cid = 0; cid < this.busy.length; cid++) {
      if (this.busy[cid] !== 1) continue;
      const at = this.expiredAt[cid]!;
      const elapsedMs = now - this.table.submitTime(cid);
      if (at === 0 && elapsedMs >= this.timeoutMs) {
        this.expiredAt[cid] = now;
        found.push([{ qid: this.qid, cid, opcode: this.table.opcode(cid), elapsedMs }, false]);
      } else if (at > 0 && now - at >= this.timeoutMs) {
        // Once: a reset is asked for a command at most once.
        this.expiredAt[cid] = -1;
        found.push([{ qid: this.qid, cid, opcode: this.table.opcode(cid), elapsedMs }, true]);
      }
    }
    this.arm();
    for (const [e, stuck] of found) {
      if (stuck) this.handlers.onStuck(e);
      else this.handlers.onExpired(e);
    }
  }
}
