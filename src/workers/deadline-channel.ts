/**
 * Command deadlines of other threads' queue pairs (pool workers, attached
 * threads). Each thread watches the commands it submits (host/deadlines.ts);
 * the admin queue, and so Abort and reset, belong to the main thread. A
 * thread whose command passes its deadline says so on the engine's
 * BroadcastChannel, and the main thread hands it to the driver, which
 * escalates as for its own commands: Abort, then a reset one more timeout
 * later. The command's end (NVMQ_TIMEOUT) stays the submitting thread's.
 * Both ends are unref'd: no event-loop handle is kept alive.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { randomUUID } from 'node:crypto';
import type { NvmeDriver } from '../engine/host/driver.js';
import type { DeadlineHandlers, ExpiredCommand } from '../engine/host/deadlines.js';

/** What a thread needs to time its commands: its I/O timeout (Infinity: none) and where to report. */
export interface ThreadTimeouts {
  ioMs: number;
  channel: string;
}

type Report = ExpiredCommand & { stuck: boolean };

/** The main thread's end. */
export class DeadlineChannel {
  readonly timeouts: ThreadTimeouts;
  private readonly channel: BroadcastChannel;

  constructor(driver: NvmeDriver) {
    this.timeouts = { ioMs: driver.ioTimeoutMs, channel: `nvmq-deadlines-${randomUUID()}` };
    this.channel = new BroadcastChannel(this.timeouts.channel);
    this.channel.unref();
    this.channel.onmessage = (ev) => {
      const { stuck, ...e } = (ev as MessageEvent).data as Report;
      driver.expired(e, stuck);
    };
  }

  close(): void {
    this.channel.close();
  }
}

/** A thread's end: the handlers its queue pair's deadlines call. */
export function remoteDeadlines(t: ThreadTimeouts): DeadlineHandlers {
  let channel: BroadcastChannel | undefined;
  const post = (e: ExpiredCommand, stuck: boolean): void => {
    if (!channel) {
      channel = new BroadcastChannel(t.channel);
      channel.unref();
    }
    channel.postMessage({ ...e, stuck } satisfies Report);
  };
  return { onExpired: (e) => post(e, false), onStuck: (e) => post(e, true) };
}
