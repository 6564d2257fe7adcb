/**
 * An engine's association with a remote controller, and its reconnection
 * when it breaks, as Linux's NVMe/TCP host does it: the transport closes
 * every connection (commands in flight end with a path error) and says so;
 * then a reset of the engine (new association, new workers and pairs) is
 * tried every reconnectDelayMs until it works or ctrlLossTmoMs has passed.
 * Meanwhile the engine's calls wait (`whileReconnecting()`), or fail with a
 * path error past fastIoFailTmoMs; once it gave up, with NVMQ_TARGET_LOST.
 */
import { debuglog } from 'node:util';
import { NvmqError } from './errors.js';
import type { TcpTransport } from './transport/tcp/tcp-transport.js';

const trace = debuglog('nvmq');

/** What an engine on a remote controller emits (README, "NVMe/TCP host"). */
export interface RemoteEvents {
  disconnected: [err: NvmqError];
  reconnected: [info: { attempts: number; downtimeMs: number }];
  lost: [err: NvmqError];
}

/** What the link needs of its engine. */
export interface LinkHooks {
  /** The engine's reset (serialized with its other lifecycle steps). */
  reset(): Promise<void>;
  closing(): boolean;
  emit<E extends keyof RemoteEvents>(event: E, arg: RemoteEvents[E][0]): void;
  /** The association broke: the engine drops its main-thread pair. */
  dropMain(): void;
}

export class RemoteLink {
  /** `connected`, `reconnecting` (calls wait), or `lost` (gave up: every call fails with NVMQ_TARGET_LOST). */
  state: 'connected' | 'reconnecting' | 'lost' = 'connected';
  private reconnecting: Promise<void> | undefined;
  private disconnectedAt = 0;
  private lostError: NvmqError | undefined;
  private disconnects = 0;
  private reconnects = 0;
  /** The wait before the next attempt, and what ends it early (stop()). */
  private sleep: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly transport: TcpTransport,
    private readonly hooks: LinkHooks,
  ) {
    transport.onAssociationLost = (err) => this.onLost(err);
  }

  /** The engine is closing: no more attempts, and the one waited for starts no timer of its own. */
  stop(): void {
    clearTimeout(this.sleep);
    this.wake?.();
  }

  /** For the metrics. */
  counts(): { target: string; connected: boolean; disconnects: number; reconnects: number } {
    const t = this.transport.target;
    return { target: `${t.host}:${t.port}/${t.subnqn}`, connected: this.state === 'connected', disconnects: this.disconnects, reconnects: this.reconnects };
  }

  /** The association with the target broke: every connection is closed already; reconnect as Linux's host does. */
  private onLost(err: NvmqError): void {
    if (this.hooks.closing() || this.state !== 'connected') return;
    this.state = 'reconnecting';
    this.disconnectedAt = Date.now();
    this.disconnects++;
    this.hooks.dropMain();
    trace('remote controller: %s; reconnecting', err.message);
    this.hooks.emit('disconnected', err);
    this.reconnecting = this.reconnect(err).finally(() => {
      this.reconnecting = undefined;
    });
  }

  private async reconnect(first: NvmqError): Promise<void> {
    const t = this.transport.target;
    let last: unknown = first;
    for (let attempts = 1; ; attempts++) {
      const left = this.disconnectedAt + t.ctrlLossTmoMs - Date.now();
      if (left <= 0 && attempts > 1) {
        const why = last instanceof Error ? last.message : String(last);
        this.lostError = new NvmqError('NVMQ_TARGET_LOST', `gave up reconnecting to the NVMe/TCP target at ${t.host}:${t.port} after ${attempts - 1} attempt(s) in ${((Date.now() - this.disconnectedAt) / 1000).toFixed(1)} s (ctrlLossTmoMs ${t.ctrlLossTmoMs}): ${why}`);
        this.state = 'lost';
        trace('%s', this.lostError.message);
        this.hooks.emit('lost', this.lostError);
        return;
      }
      // The first attempt too waits reconnectDelayMs (Linux's reconnect_delay), bounded by what is left.
      await new Promise<void>((r) => {
        this.wake = r;
        this.sleep = setTimeout(r, Math.max(0, Math.min(t.reconnectDelayMs, left)));
      });
      this.sleep = this.wake = undefined;
      if (this.hooks.closing()) return;
      try {
        await this.hooks.reset();
        // Broken again before the reset was through (a report of this association's loss came meanwhile): go on.
        if (this.transport.lost) throw this.transport.lost;
        this.state = 'connected';
        this.reconnects++;
        const downtimeMs = Date.now() - this.disconnectedAt;
        trace('remote controller: reconnected after %d attempt(s), %d ms', attempts, downtimeMs);
        this.hooks.emit('reconnected', { attempts, downtimeMs });
        return;
      } catch (e) {
        last = e;
        trace('reconnect attempt %d failed: %s', attempts, e instanceof Error ? e.message : String(e));
      }
    }
  }

  /**
   * Waits while the engine reconnects to its target; rejects once it gave up,
   * or, past fastIoFailTmoMs since the loss, with a path error.
   */
  async whileReconnecting(): Promise<void> {
    if (this.state === 'lost') throw this.lostError!;
    const wait = this.reconnecting;
    if (!wait) return;
    const t = this.transport.target;
    const left = this.disconnectedAt + t.fastIoFailTmoMs - Date.now();
    if (left !== Infinity) {
      let timer: NodeJS.Timeout | undefined;
      const failFast = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new NvmqError('NVMQ_HOST_PATHING_ERROR', `the NVMe/TCP target at ${t.host}:${t.port} has been unreachable for ${t.fastIoFailTmoMs} ms (fastIoFailTmoMs): I/O fails until it reconnects`)), Math.max(0, left));
      });
      try {
        await Promise.race([wait, failFast]);
      } finally {
        clearTimeout(timer);
      }
    } else {
      await wait;
    }
    // It may have given up meanwhile.
    if (this.lostError) throw this.lostError;
  }
}
