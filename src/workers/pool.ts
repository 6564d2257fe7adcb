/**
 * The engine's worker pool and its grant protocol: a fixed piscina pool whose
 * workers each ask, over a BroadcastChannel, for an I/O queue pair; the main
 * thread creates it with admin commands and answers with its shared-memory
 * handle and a buffer pool carved from the DMA arena.
 *
 *   worker                         main thread (this module)
 *   attach {threadId}        ──►   create CQ + SQ (or pick a shared pair), carve a pool
 *                            ◄──   grant {queue handle, vector, pool, thread slot}
 *                                  (or refused {message})
 *   attached | attach-failed ──►   the worker counts as ready only now
 *
 * When threads outnumber queues they share pairs round robin. A worker that
 * dies has its queue pair deleted; the replacement piscina starts asks for a
 * fresh one. One WorkerPool is one generation of workers: a controller reset
 * retires it and the engine starts another.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import { Piscina } from 'piscina';
import type { IoQueuePair } from '../engine/host/io-queue-pair.js';
import { NvmqError, errorFromWire, type TaskOutcome } from '../engine/errors.js';
import type { IoTask, WorkerBoot, WorkerMessage } from './protocol.js';
import { endGrant, grantQueue, type Grant, type GrantSource } from './grants.js';

const trace = debuglog('nvmq');

/** A worker's grant: its queue pair (its own, or one it shares), its buffer pool and its counting slot. */
interface Assignment extends Grant {
  shared: boolean;
  /** The worker has set its queue up (it is out of the addon and idle). */
  attached: boolean;
}

/** Where the grants come from (driver, controller, slots, queue depth, pool size, metrics, wait mode), and the pool's shape. */
export interface WorkerPoolOptions extends GrantSource {
  workers: number;
  /** Queue pairs to spread the workers over; fewer than `workers` are shared. */
  queues: number;
  /** A worker died holding a shared pair: only a controller reset can complete what it had fetched. */
  onSharedDeath: (threadId: number) => void;
}

/** How long ready() waits for every worker to attach. */
const READY_TIMEOUT_MS = 30_000;

let pools = 0;

/** The pool's worker module, beside this one in the build (worker threads run JavaScript, not TypeScript). */
function workerFile(): string {
  const file = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (!existsSync(file)) throw new NvmqError('NVMQ_NOT_BUILT', `${file} is missing: run npm run build, and load the engine from dist/`);
  return file;
}

export class WorkerPool {
  private readonly piscina: Piscina;
  private readonly channel: BroadcastChannel;
  private readonly assignments = new Map<number, Assignment>();
  private readonly sharedQueues: IoQueuePair[] = [];
  /** One grant at a time: admin commands for queue creation are sequential. */
  private grants: Promise<void> = Promise.resolve();
  /** Why a worker could not attach, if one could not. */
  private attachError: Error | undefined;
  /** Set once the pool is being retired or stopped: workers' messages and deaths are no longer acted on. */
  private ending = false;

  constructor(private readonly o: WorkerPoolOptions) {
    const name = `nvmq-pool-${process.pid}-${++pools}-${Date.now()}`;
    const boot: WorkerBoot = { channel: name, controller: o.controller.handle(), namespaces: [...o.driver.namespaces.values()], waitMode: o.waitMode, timeouts: o.timeouts };
    // Resolved first: a missing build must not leave a channel open.
    const filename = workerFile();
    this.channel = new BroadcastChannel(name);
    this.channel.unref();
    this.channel.onmessage = (ev) => this.onWorkerMessage((ev as MessageEvent).data as WorkerMessage);
    this.piscina = new Piscina({
      filename,
      minThreads: o.workers,
      maxThreads: o.workers,
      idleTimeout: Infinity,
      // 'async': an idle worker keeps its event loop free, so completions and interrupts still run there.
      atomics: 'async',
      workerData: boot,
    });
    // A worker's threadId reads -1 once it has exited (and piscina's destroy event carries no other
    // identity), so watch each thread's own 'exit' from the moment it is created.
    this.piscina.on('workerCreate', (w: { id: number }) => {
      const id = w.id;
      const thread = this.piscina.threads.find((t) => t.threadId === id);
      thread?.once('exit', () => void this.recycle(id));
    });
    this.piscina.on('error', (e: unknown) => trace('worker pool error: %s', e instanceof Error ? e.message : String(e)));
  }

  /** Threads share queues when there are fewer queues than workers. */
  get sharing(): boolean {
    return this.o.queues < this.o.workers;
  }

  get threadIds(): number[] {
    return this.piscina.threads.map((t) => t.threadId);
  }

  /** The QID of a worker's queue pair. */
  queueOf(threadId: number): number | undefined {
    return this.assignments.get(threadId)?.qp.qid;
  }

  /** Runs a task in a worker; the worker answers with how it ended. */
  run(task: IoTask): Promise<TaskOutcome> {
    return this.piscina.run(task) as Promise<TaskOutcome>;
  }

  /**
   * Resolves once every worker has attached to its queue pair; rejects when
   * one cannot, or after READY_TIMEOUT_MS. Resolves at once once the pool is
   * ending (its workers' messages are ignored from then on).
   */
  async ready(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (this.ending) return;
      if (this.attachError) throw this.attachError;
      let attached = 0;
      for (const a of this.assignments.values()) if (a.attached) attached++;
      if (attached >= this.o.workers) break;
      if (Date.now() > deadline) throw new NvmqError('NVMQ_TIMEOUT', `only ${attached} of ${this.o.workers} workers attached to a queue`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await this.grants;
  }

  /** From now on the workers' messages and deaths are left to whoever ends the pool (close, reset). */
  quiesce(): void {
    this.ending = true;
  }

  /**
   * After a controller reset (which failed and deleted every pair): stops the
   * workers, then gives their pools back. Nothing is deleted: the pairs are gone.
   */
  async retire(): Promise<void> {
    await this.halt();
    // The workers are stopped: what they were executing will not complete in their threads.
    for (const a of this.assignments.values()) await endGrant(this.o, a, { dead: true, deletePair: false });
    this.assignments.clear();
    this.sharedQueues.length = 0;
  }

  /** Stops the workers and deletes every queue pair they had; the controller stays up. */
  async stop(): Promise<void> {
    await this.halt();
    // Workers are gone: whatever they left executing will not complete in their threads.
    const pairs = new Set<IoQueuePair>();
    for (const a of this.assignments.values()) {
      this.o.controller.abandonThread(a.threadSlot);
      this.o.slots.give(a.threadSlot);
      pairs.add(a.qp);
    }
    for (const qp of pairs) {
      this.o.controller.abandonInflight(qp.qid);
      await this.o.driver.deleteIoQueuePair(qp).catch((e: unknown) => trace('deleting queue %d: %s', qp.qid, e instanceof Error ? e.message : String(e)));
    }
    this.assignments.clear();
  }

  /** Stops the workers and the channel, and lets a grant in progress finish. */
  private async halt(): Promise<void> {
    this.ending = true;
    await this.piscina.destroy();
    this.channel.close();
    await this.grants.catch(() => {});
  }

  private onWorkerMessage(msg: WorkerMessage): void {
    if (this.ending) return;
    if (msg.type === 'attached') {
      const a = this.assignments.get(msg.threadId);
      if (a) a.attached = true;
      return;
    }
    if (msg.type === 'attach-failed') {
      this.attachError ??= new NvmqError('NVMQ_NO_QUEUE', `worker ${msg.threadId} could not attach to its queue: ${msg.error.message}`, { cause: errorFromWire(msg.error) });
      return;
    }
    this.grants = this.grants.then(() => this.grant(msg.threadId)).catch((e: unknown) => {
      const why = e instanceof Error ? e.message : String(e);
      trace('queue for thread %d failed: %s', msg.threadId, why);
      this.attachError ??= new NvmqError('NVMQ_NO_QUEUE', `no I/O queue for worker ${msg.threadId}: ${why}`, { cause: e });
      this.channel.postMessage({ type: 'refused', threadId: msg.threadId, message: why });
    });
  }

  private async grant(threadId: number): Promise<void> {
    const { driver, queues, queueDepth, metrics } = this.o;
    let shared: IoQueuePair | undefined;
    if (this.sharing) {
      const i = this.assignments.size % queues;
      shared = this.sharedQueues[i] ??= await driver.createIoQueuePair({ entries: queueDepth, shared: true, reapHere: false, metrics });
    }
    const g = await grantQueue(this.o, threadId, shared);
    this.assignments.set(threadId, { ...g, shared: this.sharing, attached: false });
    this.channel.postMessage({ type: 'grant', ...g.message });
  }

  /**
   * A worker died: the commands it was executing will never complete in its
   * thread, so the controller forgets them. An unshared pair is deleted and the
   * replacement piscina starts asks for a fresh one; the other workers are not
   * involved. A shared pair may hold other threads' commands that the dead
   * thread had fetched, which nothing would complete: the owner resets.
   */
  private async recycle(threadId: number): Promise<void> {
    const a = this.assignments.get(threadId);
    if (!a) return;
    // Always, so a reset's drain does not wait for it; the rest is retire()'s or stop()'s once the pool ends.
    this.o.controller.abandonThread(a.threadSlot);
    if (this.ending) return;
    this.assignments.delete(threadId);
    if (a.shared) {
      this.o.slots.give(a.threadSlot);
      return this.o.onSharedDeath(threadId);
    }
    await endGrant(this.o, a, { dead: true, deletePair: true });
  }
}
