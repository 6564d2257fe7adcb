/**
 * The engine's side of the application's own attached threads (see
 * attach.ts for the thread's side and the protocol). Each handle is one
 * MessageChannel: the engine keeps one port, the thread gets the other. A
 * thread that attaches gets a queue pair, a buffer pool and a thread slot,
 * like a pool worker: a pair of its own while the controller has QIDs free
 * (the last free one is made a shared pair), else a share of a shared pair
 * (sharing.ts). One that detaches gives them back; when its port closes
 * without a detach (the thread ended), what it was executing completes as
 * aborted and its own pair is deleted (a shared pair, once its last holder
 * is gone).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { debuglog } from 'node:util';
import { NvmqError, errorFromWire } from '../engine/errors.js';
import { endGrant, grantQueue, type Grant, type GrantSource } from './grants.js';
import { SharedPairs } from './sharing.js';
import type { AttachHandle, AttachReply, AttachedMessage } from './protocol.js';
import type { IoQueuePair } from '../engine/host/io-queue-pair.js';

const trace = debuglog('nvmq');

interface Attached {
  grant: Grant | undefined;
  /** The thread's id, from its attach (its request slots carry it). */
  threadId: number;
}

export class Attachments {
  private readonly ports = new Map<MessagePort, Attached>();
  /** One grant or release at a time, in the order asked. */
  private work: Promise<void> = Promise.resolve();
  private closed = false;
  /**
   * Pairs a reset failed while an attached thread still held them: the
   * driver left their memory to us (releaseOrphans' keep), released when
   * the thread detaches or ends.
   */
  private readonly adopted = new Set<IoQueuePair>();
  /** Shared pairs and their holders. */
  private readonly shared: SharedPairs;

  /** `onStuck`: a thread left a shared pair with commands only a controller reset can complete. */
  constructor(
    private readonly src: GrantSource,
    onStuck: () => void,
  ) {
    this.shared = new SharedPairs(src, onStuck);
  }

  /** A handle for one thread: post it with `handle.port` in the transfer list. */
  handle(): AttachHandle {
    if (this.closed) throw new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed');
    const { port1, port2 } = new MessageChannel();
    const entry: Attached = { grant: undefined, threadId: -1 };
    this.ports.set(port1, entry);
    port1.on('message', (m: AttachedMessage) => this.onMessage(port1, entry, m));
    port1.on('close', () => {
      // Counted at once: another holder of a shared pair leaving meanwhile must not wait for its commands.
      if (entry.grant) this.shared.died(entry.grant);
      this.serially(() => this.end(port1, entry, true));
    });
    // An unused handle must not keep the process alive.
    port1.unref();
    return { controller: this.src.controller.handle(), namespaces: [...this.src.driver.namespaces.values()], waitMode: this.src.waitMode, timeouts: this.src.timeouts, port: port2 };
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
          entry.threadId = m.threadId;
          entry.grant = await this.grant(m.threadId);
          this.reply(port, { type: 'grant', ...entry.grant.message });
        } catch (e) {
          const code = (e as { code?: unknown } | undefined)?.code;
          this.reply(port, { type: 'refused', message: e instanceof Error ? e.message : String(e), code: typeof code === 'string' ? code : undefined });
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

  /**
   * A grant for thread `threadId`: a pair of its own while two QIDs or more
   * are free; on the last free QID a new shared pair; with none free, a
   * share of the shared pair with the fewest holders.
   */
  private async grant(threadId: number): Promise<Grant> {
    const free = this.src.driver.freeIoQueues;
    if (free > 0) {
      const joinable = free === 1 && this.src.controller.executor !== undefined;
      try {
        const g = await grantQueue(this.src, threadId, undefined, joinable);
        if (joinable) this.shared.add(g);
        return g;
      } catch (e) {
        // A pool worker or the main thread took the QID meanwhile: a shared pair, if there is one, still serves.
        if (!(e instanceof NvmqError && e.code === 'NVMQ_NO_QUEUE' && this.shared.pick())) throw e;
      }
    }
    // A remote controller's queues are connections owned by one thread each: never shared.
    const on = this.src.controller.executor ? this.shared.pick() : undefined;
    if (!on) {
      const n = this.src.driver.grantedIoQueues;
      throw new NvmqError('NVMQ_NO_QUEUE', `all ${n} I/O queues the controller grants are in use by threads that do not share them (the pool's workers, the main thread, attached threads with a queue of their own)`);
    }
    const g = await grantQueue(this.src, threadId, on);
    this.shared.add(g);
    return g;
  }

  /**
   * Gives a thread's grant back; `dead`: the thread ended without detaching
   * (its port closed). Whether its pair still exists is asked of the driver
   * (a reset may have deleted it, and another pair may have its QID by now).
   */
  private async end(port: MessagePort, entry: Attached, dead: boolean): Promise<void> {
    if (dead) this.ports.delete(port);
    const g = entry.grant;
    if (!g) return;
    entry.grant = undefined;
    if (this.shared.has(g)) {
      await this.shared.leave(g, entry.threadId, { dead, closing: this.closed });
    } else {
      const live = this.src.driver.ioQueuePairs.includes(g.qp);
      // Once the engine is closing the shutdown deletes the pairs; a dead thread's fetched commands must complete first.
      if (dead && live && this.closed) this.src.controller.abandonInflight(g.qp.qid);
      await endGrant(this.src, g, { dead, deletePair: live && !this.closed });
    }
    if (!this.held(g.qp) && this.adopted.delete(g.qp)) g.qp.releaseMemory();
  }

  /** Whether an attached thread holds `qp`. */
  private held(qp: IoQueuePair): boolean {
    for (const a of this.ports.values()) if (a.grant?.qp === qp) return true;
    return false;
  }

  /**
   * For the driver's releaseOrphans after a reset: true (and the pair's
   * memory is ours to release, once its last holder is gone) when an
   * attached thread still holds it.
   */
  keep(qp: IoQueuePair): boolean {
    if (!this.held(qp)) return false;
    this.adopted.add(qp);
    return true;
  }

  /**
   * The engine is closing: no more grants. Threads stay attached through the
   * shutdown (their commands in flight are waited for; one that ends now is
   * handled as a death), which deletes their pairs.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.work;
  }

  /** After the shutdown: closes every port (threads see their queues failed already). */
  dispose(): void {
    for (const [port, a] of this.ports) {
      if (a.grant) this.src.slots.give(a.grant.threadSlot);
      a.grant = undefined;
      port.close();
    }
    this.ports.clear();
  }
}
