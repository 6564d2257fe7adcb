/**
 * A worker thread of the engine's pool. On start it asks the main thread for
 * its I/O queue pair, then attaches: the controller's I/O path (doorbell
 * writes run the controller here, in this thread), the host side of the
 * queue pair, and its interrupt handler. Tasks run with that queue.
 */
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import { IoQueuePair } from '../engine/host/io-queue-pair.js';
import type { IoTask, QueueGrant, WorkerBoot } from './protocol.js';
import { attachGranted } from './attach.js';
import { NvmqError, errorToWire, type TaskOutcome } from '../engine/errors.js';

const boot = workerData as WorkerBoot;

async function attach(): Promise<IoQueuePair> {
  const channel = new BroadcastChannel(boot.channel);
  try {
    const grant = await new Promise<QueueGrant>((resolve, reject) => {
      channel.onmessage = (ev) => {
        const m = (ev as MessageEvent).data as QueueGrant & { type: string; message?: string };
        if (m.threadId !== threadId) return;
        if (m.type === 'grant') resolve(m);
        else if (m.type === 'refused') reject(new NvmqError('NVMQ_NO_QUEUE', `no I/O queue for this worker: ${m.message ?? ''}`));
      };
      channel.postMessage({ type: 'attach', threadId });
    });
    try {
      const { queue } = await attachGranted(boot, grant, (opts, namespaces, h) => new IoQueuePair(opts, namespaces, h));
      // The engine counts a worker ready only now: until here it may be inside the addon, and stopping
      // a thread there is what the engine must never do.
      channel.postMessage({ type: 'attached', threadId });
      return queue;
    } catch (e) {
      channel.postMessage({ type: 'attach-failed', threadId, error: errorToWire(e instanceof Error ? e : new Error(String(e))) });
      throw e;
    }
  } finally {
    channel.close();
  }
}

/** This worker's queue pair (the argument of every task). */
export const queue = await attach();

/**
 * Runs a task and says how it ended: piscina's structured clone would keep
 * an Error's message and lose its class, `code` and NVMe status, so the
 * engine gets a TaskOutcome and rebuilds the error on its side.
 */
export default async function task(t: IoTask): Promise<TaskOutcome> {
  try {
    return { ok: await execute(t) };
  } catch (e) {
    return e instanceof Error ? { err: errorToWire(e) } : { thrown: e };
  }
}

async function loadTask(module: string): Promise<(q: IoQueuePair, args: unknown) => unknown> {
  let mod: { default?: unknown };
  try {
    mod = (await import(module)) as { default?: unknown };
  } catch (e) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `task module ${module} failed to load: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (typeof mod.default !== 'function') throw new NvmqError('NVMQ_INVALID_ARGUMENT', `task module ${module} has no default export function (queue, args)`);
  return mod.default as (q: IoQueuePair, args: unknown) => unknown;
}

async function execute(t: IoTask): Promise<unknown> {
  return (await loadTask(t.module))(queue, t.args);
}
