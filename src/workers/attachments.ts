/**
 * The engine's side of the application's own attached threads (see
 * attach.ts for the thread's side and the protocol). Each handle is one
 * MessageChannel: the engine keeps one port, the thread gets the other. A
 * thread that attaches gets a queue pair of its own, a buffer pool and a
 * thread slot, like a pool worker; one that detaches gives them back; when
 * its port closes without a detach (the thread ended), what it was executing
 * completes as aborted and the queue is deleted.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { debuglog } from 'node:util';
import { NvmqError, errorFromWire } from '../engine/errors.js';
import { endGrant, grantQueue, type Grant, type GrantSource } from './grants.js';
import type { AttachHandle, AttachReply, AttachedMessage } from './protocol.js';

const trace = debuglog('nvmq');

interface Attached {
  grant: Grant | undefined;
  /** A reset deleted the pair under it: the thread still holds it until it detaches or ends. */
  stale: boolean;
}

export class Attachments {
  private readonly ports = new Map<MessagePort, Attached>();
  /** One grant or release at a time, in the order asked. */
  private work: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly src: GrantSource) {}

  /** A handle for one thread: post it with `handle.port` in the transfer list. */
  handle(): AttachHandle {
    if (this.closed) throw new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed');
    const { port1, port2 } = new MessageChannel();
    const entry: Attached = { grant: undefined, stale: false };
    this.ports.set(port1, entry);
    port1.on('message', (m: AttachedMessage) => this.onMessage(port1, entry, m));
    port1.on('close', () => this.serially(() => this.end(port1, entry, true)));
    // An unused handle must not keep the process alive.
    port1.unref();
    return { controller: this.src.controller.handle(), namespaces: [...this.src.driver.namespaces.values()], waitMode: this.src.waitMode, port: port2 };
  }

  /** Threads attached now. */
  get count(): number {
    let n = 0;
    for (const a of this.ports.values()) if (a.grant) n++;
    return n;
  }

  private serially(fn: () => Promise<void>): void {
    this.work = this.work.then(fn).catch((e: unknown) => trace('attached thread: %s', e instanceof Error ? e.message : String(e)));
  }

  private reply(port: MessagePort, r: AttachReply): void {
    port.postMessage(r);
  }

  private onMessage(port: MessagePort, entry: Attached, m: AttachedMessage): void {
    if (m.type === 'attach') {
      this.serially(async () => {
        if (this.closed) return this.reply(port, { type: 'refused', message: 'the engine is closing' });
        if (entry.grant) return this.reply(port, { type: 'refused', message: 'this handle is attached already: one handle per thread' });
        try {
          entry.grant = await grantQueue(this.src, m.threadId);
          entry.stale = false;
          this.reply(port, { type: 'grant', ...entry.grant.message });
        } catch (e) {
          this.reply(port, { type: 'refused', message: e instanceof Error ? e.message : String(e) });
        }
      });
    } else if (m.type === 'attach-failed') {
      trace('thread %d could not attach: %s', m.threadId, errorFromWire(m.error).message);
      this.serially(() => this.end(port, entry, false));
    } else if (m.type === 'detach') {
      this.serially(async () => {
        await this.end(port, entry, false);
        this.reply(port, { type: 'detached' });
      });
    }
  }

  /** Gives a thread's grant back; `dead`: the thread ended without detaching (its port closed). */
  private async end(port: MessagePort, entry: Attached, dead: boolean): Promise<void> {
    if (dead) this.ports.delete(port);
    const g = entry.grant;
    if (!g) return;
    entry.grant = undefined;
    await endGrant(this.src, g, { dead, deletePair: !entry.stale && !this.closed });
    // After a reset the pair is gone from the driver; its memory waited for this thread to let go.
    if (entry.stale) g.qp.releaseMemory();
  }

  /** A controller reset deleted every pair: each attached thread's queue now fails until it attaches again. */
  markStale(): void {
    for (const a of this.ports.values()) if (a.grant) a.stale = true;
  }

  /** The pairs attached threads still hold (a reset must not release their memory yet). */
  holds(qid: number): boolean {
    for (const a of this.ports.values()) if (a.grant?.qp.qid === qid) return true;
    return false;
  }

  /** Closes every port: threads see their queues fail (the engine deletes every pair as it shuts down). */
  async close(): Promise<void> {
    this.closed = true;
    await this.work;
    // Their commands in flight still count: the shutdown that follows waits for them, and deletes the pairs.
    for (const [port, a] of this.ports) {
      if (a.grant) this.src.slots.give(a.grant.threadSlot);
      a.grant = undefined;
      port.close();
    }
    this.ports.clear();
  }
}
