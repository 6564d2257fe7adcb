/**
 * A thread attaching to the engine's controller: the controller's I/O path
 * (its doorbell writes run the controller in this thread), the host side of
 * the granted queue pair, and its interrupt handler, all in this thread.
 * Pool workers do it when they start (worker.ts); an application's own
 * worker threads do it with `attach(handle)`:
 *
 *   thread (attach)                 engine (workers/attachments.ts)
 *   attach {threadId}        ──►    create CQ + SQ (or pick a shared pair),
 *                                   carve a pool, a slot
 *                            ◄──    grant {...} | refused {message, code}
 *   attached | attach-failed ──►
 *   ... I/O on its queue pair, no message per I/O ...
 *   (its commands done, its view of the controller closed)
 *   detach                   ──►    delete the pair (a shared one once its
 *                                   last holder leaves), give pool and slot back
 *                            ◄──    detached
 *
 * A thread that ends without detaching closes its end of the port: the
 * engine then completes what it had fetched as aborted and takes the queue
 * back, as for a pool worker that dies (on a shared pair, only what was the
 * thread's: see sharing.ts).
 */
import { threadId, type MessagePort } from 'node:worker_threads';
import { IoThreadController, NvmeController } from '../engine/device/controller.js';
import type { QueueExecutor } from '../engine/device/executor.js';
import { LocalTransport } from '../engine/transport/local.js';
import type { Transport } from '../engine/transport/transport.js';
import { ThreadTcpTransport, isTcpThreadHandle } from '../engine/transport/tcp/thread-transport.js';
import { ThreadVfioTransport, isVfioThreadHandle } from '../engine/transport/vfio/thread-transport.js';
import { IoQueuePair } from '../engine/host/io-queue-pair.js';
import type { NamespaceInfo } from '../engine/host/identify.js';
import type { CommandFields, CompletionCallback, DataSpec, QueuePairOptions, QueuePairHandle } from '../engine/host/queue-pair.js';
import type { Completion } from '../engine/spec/command.js';
import { NvmqError, errorToWire } from '../engine/errors.js';
import { invalidArgument } from '../engine/host/arguments.js';
import { remoteDeadlines } from './deadline-channel.js';
import type { AttachHandle, AttachReply, AttachedMessage, QueueGrant, ThreadBoot } from './protocol.js';

/** How long detach() waits for this thread's outstanding commands before it gives the queue back anyway. */
const DETACH_DRAIN_MS = 30_000;
/** How long attach() and detach() wait for the engine to answer. */
const ANSWER_MS = 30_000;

/**
 * The transport and queue pair of a thread attached with `grant`: the
 * controller's I/O path in this thread (local), or this thread's own
 * connection for its queue (remote, NVMe/TCP).
 */
export async function attachGranted<Q extends IoQueuePair>(
  boot: ThreadBoot,
  grant: QueueGrant,
  make: (opts: QueuePairOptions, namespaces: ReadonlyMap<number, NamespaceInfo>, h: QueuePairHandle) => Q,
): Promise<{ transport: Transport; queue: Q }> {
  const c = boot.controller;
  const h = grant.queue;
  const transport: Transport = isTcpThreadHandle(c)
    ? await ThreadTcpTransport.open(c, grant.association!, grant.pool, h, grant.vector)
    : isVfioThreadHandle(c)
      ? ThreadVfioTransport.open(c, grant.pool, h)
      : new LocalTransport(NvmeController.attach({ ...c, arena: { ...c.arena, range: grant.pool } }, grant.threadSlot));
  const namespaces = new Map(boot.namespaces.map((n) => [n.nsid, n]));
  const t = boot.timeouts;
  const deadlines = t && { timeoutMs: t.ioMs, deadlines: remoteDeadlines(t) };
  // Over NVMe/TCP a doorbell write only queues capsules, which go out in one write per microtask turn anyway
  // (host-output.ts): one doorbell per turn saves a ring and a reap per command.
  const coalesce = isTcpThreadHandle(c);
  const queue = make({ transport, qid: h.qid, entries: h.entries, dstrd: h.dstrd, pageSize: h.pageSize, maxTransfer: h.maxTransfer, waitMode: boot.waitMode, coalesce, ...deadlines }, namespaces, h);
  transport.setInterruptHandler(grant.vector, () => queue.onInterrupt());
  return { transport, queue };
}

/** The error a refused attach fails with: NVMQ_NO_QUEUE, or the code of what the engine ran out of (the DMA arena). */
function refusal(r: Extract<AttachReply, { type: 'refused' }>): NvmqError {
  if (r.code?.startsWith('NVMQ_') && r.code !== 'NVMQ_NO_QUEUE') return new NvmqError(r.code, `this thread cannot attach: ${r.message}`);
  return new NvmqError('NVMQ_NO_QUEUE', `no I/O queue for this thread: ${r.message}`);
}

/** Sends `msg` on `port` and waits for the reply `accept` recognizes (a timeout is an NVMQ_TIMEOUT). */
function ask<T extends AttachReply>(port: MessagePort, msg: AttachedMessage, accept: (r: AttachReply) => r is T, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => done(new NvmqError('NVMQ_TIMEOUT', `the engine did not answer ${what} within ${ANSWER_MS / 1000} s`)), ANSWER_MS);
    const onClose = (): void => done(new NvmqError('NVMQ_ENGINE_CLOSED', `the engine closed before it answered ${what}`));
    const onMessage = (r: AttachReply): void => {
      if (r.type === 'refused') done(refusal(r));
      else if (accept(r)) done(undefined, r);
    };
    const done = (err: Error | undefined, r?: T): void => {
      clearTimeout(timer);
      port.off('message', onMessage);
      port.off('close', onClose);
      port.unref();
      if (err) reject(err);
      else resolve(r!);
    };
    port.on('message', onMessage);
    port.on('close', onClose);
    port.ref();
    port.postMessage(msg);
  });
}

/** An application thread's queue pair (its own, or a share of one): the API an `engine.run()` task gets, plus `detach()`. */
export class AttachedQueue extends IoQueuePair {
  private detaching: Promise<void> | undefined;
  /** Set once detach() has waited for this thread's commands: the pair takes none from it any more. */
  private detached = false;
  private port: MessagePort | undefined;
  private local: Transport | undefined;

  /** Set up by attach(). */
  bind(port: MessagePort, transport: Transport): void {
    this.port = port;
    this.local = transport;
  }

  /** The controller's queue executor in this thread, when it is an in-process controller (the NVMe/TCP target's I/O threads run commands on it directly). */
  get executor(): QueueExecutor | undefined {
    const c = this.local instanceof LocalTransport ? this.local.controller : undefined;
    return c instanceof IoThreadController ? c.executor : undefined;
  }

  /** This thread's commands not yet completed: holding a request slot, or waiting for one (other threads' on a shared pair are theirs). */
  private get own(): number {
    return this.table.heldBy(threadId) + this.waitingForSlot;
  }

  /**
   * Waits for this thread's outstanding commands, closes this thread's view
   * of the controller (once what it executes, other threads' commands
   * included on a shared pair, has finished) and gives the queue back to the
   * engine. Later I/O on the queue fails with NVMQ_QUEUE_DELETED; `attach()`
   * again for a new one.
   */
  detach(): Promise<void> {
    return (this.detaching ??= this.doDetach());
  }

  private async doDetach(): Promise<void> {
    const deadline = Date.now() + DETACH_DRAIN_MS;
    while (this.own > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    this.detached = true;
    try {
      await this.local!.close();
    } finally {
      await ask(this.port!, { type: 'detach', threadId }, (r): r is Extract<AttachReply, { type: 'detached' }> => r.type === 'detached', 'detach');
    }
  }

  /**
   * Reaps unless detached. A detaching thread stops reaping, and so writing
   * the CQ head doorbell that would fetch more of a shared pair's commands
   * into it while it waits for those it executes; the other holders reap.
   */
  override processCompletions(): number {
    return this.detached ? 0 : super.processCompletions();
  }

  protected override enqueue(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number): Promise<Completion>;
  protected override enqueue(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number, callback: CompletionCallback): undefined;
  protected override enqueue(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, throwOnError: boolean, length: number, callback?: CompletionCallback): Promise<Completion> | undefined {
    if (this.detached) {
      // A shared pair lives on for its other holders: this thread's view of it is what is gone.
      const err = new NvmqError('NVMQ_QUEUE_DELETED', `I/O queue ${this.qid} was detached from this thread`);
      if (!callback) return Promise.reject(err);
      this.refuse(err, callback);
      return undefined;
    }
    return callback ? super.enqueue(cmd, data, throwOnError, length, callback) : super.enqueue(cmd, data, throwOnError, length);
  }
}

/**
 * Attaches this thread (a worker the application created, not one of the
 * engine's pool) to the engine: it gets an I/O queue pair of its own whose
 * I/O runs the controller in this thread. `handle` comes from
 * `engine.attachHandle()`, posted with its port in the transfer list.
 */
export async function attach(handle: AttachHandle): Promise<AttachedQueue> {
  if (typeof handle !== 'object' || handle === null || typeof handle.port?.postMessage !== 'function' || typeof handle.controller !== 'object') {
    throw invalidArgument('handle', 'what engine.attachHandle() returned, posted with its port in the transfer list', handle);
  }
  const port = handle.port;
  const grant = await ask(port, { type: 'attach', threadId }, (r): r is Extract<AttachReply, { type: 'grant' }> => r.type === 'grant', 'attach');
  try {
    const { transport, queue } = await attachGranted(handle, grant, (opts, namespaces, h) => new AttachedQueue(opts, namespaces, h));
    queue.bind(port, transport);
    port.postMessage({ type: 'attached', threadId } satisfies AttachedMessage);
    return queue;
  } catch (e) {
    port.postMessage({ type: 'attach-failed', threadId, error: errorToWire(e instanceof Error ? e : new Error(String(e))) } satisfies AttachedMessage);
    throw e;
  }
}
