/**
 * The embedding API: one controller, brought up on the main thread, and a
 * fixed pool of worker threads (piscina), each with its own I/O queue pair —
 * so the data path takes no contended lock and never waits on another thread.
 *
 * A worker asks for its queue when it starts (over a BroadcastChannel): the
 * main thread creates the CQ / SQ with admin commands and answers with the
 * pair's shared-memory handle and a buffer pool carved from the DMA arena.
 * When threads outnumber queues (`queues` below the worker count, or the
 * controller grants fewer), threads share queues round robin. A worker that
 * dies has its queue pair deleted; its replacement gets a fresh one.
 */
import { availableParallelism } from 'node:os';
import v8 from 'node:v8';
import { BroadcastChannel } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import { Piscina } from 'piscina';
import type { DmaBuffer } from './dma-arena.js';
import type { NvmeController, ControllerHandle, ControllerOptions } from './device/controller.js';
import type { NvmeDriver } from './host/driver.js';
import type { IoQueuePair } from './host/io-queue-pair.js';
import type { QueuePairHandle } from './host/queue-pair.js';
import type { IoTask } from '../workers/worker.js';
import type { NamespaceInfo } from './host/identify.js';
import { NvmqError, errorFromWire, unwrapOutcome, type TaskOutcome, type WireError } from './errors.js';
import { MAX_NLB, checkBlocks, checkInteger, flag, invalidArgument } from './host/arguments.js';
import { openLocal, type NamespaceSpec } from './local-device.js';
import type { Registry } from 'prom-client';
import { IoMetrics } from './metrics/io-metrics.js';
import { createMetricsRegistry, nvmqVersion } from './metrics/collector.js';
import { checkMetricsServerOptions, serveMetrics, type MetricsServer, type MetricsServerOptions } from './metrics/server.js';

const trace = debuglog('nvmq');

export interface EngineOptions {
  namespaces: NamespaceSpec[];
  /** Worker threads (default: the machine's available parallelism). */
  workers?: number;
  /** At most this many I/O queue pairs (default: one per worker); fewer queues than workers are shared. */
  queues?: number;
  /** Entries per I/O queue ring (default 128). */
  queueDepth?: number;
  /** Bytes of DMA buffer pool per worker (default 8 MiB). */
  poolSize?: number;
  /**
   * V8's minimum semi-space (young generation) size in MiB for the workers
   * (default 0: V8's own). Each command allocates a few short-lived objects;
   * with V8's default a worker sometimes stays with a small young generation
   * that promotes them, and then spends about a quarter of its time in
   * mark-compacts (about one run in five); 16 keeps it out of that mode. Set
   * through `v8.setFlagsFromString`, so it applies to every isolate (worker)
   * the process creates from then on. Opt-in: a V8 flag changed at run time
   * is outside what V8 promises, and one test run with it on crashed in V8
   * while a worker was being torn down (cause not established).
   */
  workerSemiSpaceMb?: number;
  /** Controller tuning (MDTS, MQES, identity, ...). */
  controller?: Omit<ControllerOptions, 'arena' | 'namespaces'>;
  /**
   * Prometheus metrics: counted unless false (default true); an object also
   * serves them at http://host:port/metrics (default 127.0.0.1:9469).
   */
  metrics?: boolean | MetricsServerOptions;
}

/** What a worker receives when it starts. */
export interface WorkerBoot {
  channel: string;
  controller: ControllerHandle;
  namespaces: NamespaceInfo[];
}

/** The main thread's answer to a worker asking for its queue. */
export interface QueueGrant {
  threadId: number;
  /** Where the worker counts the commands it executes (so a death can be accounted for). */
  threadSlot: number;
  queue: QueuePairHandle;
  vector: number;
  pool: { offset: number; size: number };
}

/** A worker's grant: its queue pair (its own, or one it shares), its buffer pool and its counting slot. */
interface Assignment {
  qp: IoQueuePair;
  pool: DmaBuffer;
  shared: boolean;
  threadSlot: number;
  /** The worker has set its queue up (it is out of the addon and idle). */
  attached: boolean;
}

/** What workers post on the engine's channel. */
type WorkerMessage = { type: 'attach' | 'attached'; threadId: number } | { type: 'attach-failed'; threadId: number; error: WireError };

/** The pool's worker module, beside this one in the build (worker threads run JavaScript, not TypeScript). */
function workerFile(): string {
  const file = fileURLToPath(new URL('../workers/worker.js', import.meta.url));
  if (!existsSync(file)) throw new NvmqError('NVMQ_NOT_BUILT', `${file} is missing: run npm run build, and load the engine from dist/`);
  return file;
}

let engines = 0;
/** How long reset() lets running tasks end on their own (their I/O has failed) before it stops their workers. */
const RESET_GRACE_MS = 5000;

export class Engine {
  readonly driver: NvmeDriver;
  readonly controller: NvmeController;
  readonly workers: number;
  private pool: Piscina;
  private readonly channel: BroadcastChannel;
  private readonly boot: WorkerBoot;
  private readonly assignments = new Map<number, Assignment>();
  private readonly sharedQueues: IoQueuePair[] = [];
  /** Serializes reset() and close(). */
  private lifecycle: Promise<void> = Promise.resolve();
  private resetting = false;
  private readonly opts: Required<Pick<EngineOptions, 'queueDepth' | 'poolSize'>> & { queues: number };
  private closing = false;
  /** Tasks submitted and not settled. */
  private readonly running = new Set<Promise<unknown>>();
  private grants: Promise<void> = Promise.resolve();
  /** Why a worker of the current pool could not attach, if one could not. */
  private attachError: Error | undefined;
  /** Every queue's I/O counters (undefined with `metrics: false`), and the registry that reads them. */
  private readonly io: IoMetrics | undefined;
  private readonly registry: Registry | undefined;
  private metricsServer: MetricsServer | undefined;

  private constructor(driver: NvmeDriver, controller: NvmeController, workers: number, queues: number, opts: EngineOptions) {
    this.driver = driver;
    this.controller = controller;
    this.workers = workers;
    this.opts = { queueDepth: opts.queueDepth ?? 128, poolSize: opts.poolSize ?? 8 << 20, queues };
    const name = `nvmq-engine-${process.pid}-${++engines}-${Date.now()}`;
    this.channel = new BroadcastChannel(name);
    this.channel.unref();
    this.channel.onmessage = (ev) => this.onWorkerMessage((ev as MessageEvent).data as WorkerMessage);
    this.boot = { channel: name, controller: controller.handle(), namespaces: [...driver.namespaces.values()] };
    if (opts.metrics !== false) {
      this.io = IoMetrics.create({ maxQid: driver.grantedIoQueues, nsids: [...driver.namespaces.keys()] });
      this.registry = createMetricsRegistry({
        io: this.io,
        smartLog: () => driver.smartLog(),
        info: {
          version: nvmqVersion(),
          backend: [...new Set(opts.namespaces.map((n) => n.backend))].sort().join(','),
          namespaces: String(driver.namespaces.size),
          model: driver.controller.model,
          serial: driver.controller.serial,
          firmware: driver.controller.firmware,
        },
        namespaces: [...driver.namespaces.values()].map((n) => ({ nsid: n.nsid, capacityBytes: n.blocks * n.lbaSize })),
      });
    }
    this.pool = this.startPool();
  }

  private startPool(): Piscina {
    // An earlier pool's failure to attach says nothing about this one.
    this.attachError = undefined;
    const pool = new Piscina({
      filename: workerFile(),
      minThreads: this.workers,
      maxThreads: this.workers,
      idleTimeout: Infinity,
      // 'async': an idle worker keeps its event loop free, so completions and interrupts still run there.
      atomics: 'async',
      workerData: this.boot,
    });
    // A worker's threadId reads -1 once it has exited (and piscina's destroy event carries no other
    // identity), so watch each thread's own 'exit' from the moment it is created.
    pool.on('workerCreate', (w: { id: number }) => {
      const id = w.id;
      const thread = pool.threads.find((t) => t.threadId === id);
      thread?.once('exit', () => {
        if (!this.closing && this.pool === pool) void this.recycle(id);
      });
    });
    pool.on('error', (e: unknown) => trace('worker pool error: %s', e instanceof Error ? e.message : String(e)));
    return pool;
  }

  /**
   * Brings the controller up, asks for the queues, and starts the workers.
   * A failure at any step undoes the steps before it: no worker, server,
   * open file or image created by this call is left behind.
   */
  static async open(opts: EngineOptions): Promise<Engine> {
    if (typeof opts !== 'object' || opts === null) throw invalidArgument('Engine.open options', 'an options object', opts);
    const workers = opts.workers ?? availableParallelism();
    checkInteger('workers', workers, 1, 256, '1..256');
    const wanted = opts.queues ?? workers;
    checkInteger('queues', wanted, 1, 65535, '1..65535');
    const depth = opts.queueDepth ?? 128;
    checkInteger('queueDepth', depth, 2, 4096, '2..4096');
    const poolSize = opts.poolSize ?? 8 << 20;
    checkInteger('poolSize', poolSize, 1 << 20, 1 << 30, '1 MiB..1 GiB (in bytes)');
    const semiSpace = opts.workerSemiSpaceMb ?? 0;
    checkInteger('workerSemiSpaceMb', semiSpace, 0, 256, '0..256');
    if (opts.metrics !== undefined && typeof opts.metrics !== 'boolean' && (typeof opts.metrics !== 'object' || opts.metrics === null)) {
      throw invalidArgument('metrics', 'true, false or { host?, port? }', opts.metrics);
    }
    if (typeof opts.metrics === 'object') checkMetricsServerOptions(opts.metrics);
    if (semiSpace > 0) v8.setFlagsFromString(`--min-semi-space-size=${semiSpace}`);
    // Rings, PRP pages and pools for every worker, plus room for replacements and the admin queue.
    const perQueue = depth * (64 + 16) + depth * 4096 * 2;
    const device = await openLocal({
      namespaces: opts.namespaces,
      arenaSize: Math.ceil((workers * 2 * (poolSize + perQueue) + (8 << 20)) / 4096) * 4096,
      controller: {
        maxIoQueues: Math.max(64, workers * 2),
        // Doorbells 64 bytes apart (CAP.DSTRD 4): each worker writes its queue's doorbells per command, and
        // 4-byte neighbours would put every queue's doorbells in one cache line that all workers write.
        dstrd: 4,
        ...opts.controller,
      },
      driver: { ioQueues: Math.max(wanted, workers * 2) },
    });
    let engine: Engine | undefined;
    try {
      engine = new Engine(device.driver, device.controller, workers, Math.min(wanted, device.driver.grantedIoQueues), opts);
      await engine.ready();
      if (typeof opts.metrics === 'object') engine.metricsServer = await serveMetrics(engine.registry!, opts.metrics);
      return engine;
    } catch (e) {
      try {
        if (engine) await engine.stopWorkers();
      } finally {
        await device.abandon();
      }
      throw e;
    }
  }

  /**
   * Resolves once every worker has attached to its queue pair; rejects when
   * one cannot. Resolves at once when close() has been called meanwhile (the
   * workers' messages are ignored from then on, and close() stops them).
   */
  private async ready(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.closing) return;
      if (this.attachError) throw this.attachError;
      let attached = 0;
      for (const a of this.assignments.values()) if (a.attached) attached++;
      if (attached >= this.workers) break;
      if (Date.now() > deadline) throw new NvmqError('NVMQ_TIMEOUT', `only ${attached} of ${this.workers} workers attached to a queue`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await this.grants;
  }

  /** Threads share queues when there are fewer queues than workers. */
  get sharing(): boolean {
    return this.opts.queues < this.workers;
  }

  private onWorkerMessage(msg: WorkerMessage): void {
    if (this.closing) return;
    if (msg.type === 'attached') {
      const a = this.assignments.get(msg.threadId);
      if (a) a.attached = true;
      return;
    }
    if (msg.type === 'attach-failed') {
      this.attachError ??= new NvmqError('NVMQ_NO_QUEUE', `worker ${msg.threadId} could not attach to its queue: ${msg.error.message}`, { cause: errorFromWire(msg.error) });
      return;
    }
    // One grant at a time: admin commands for queue creation are sequential.
    this.grants = this.grants.then(() => this.grant(msg.threadId)).catch((e: unknown) => {
      trace('queue for thread %d failed: %s', msg.threadId, e instanceof Error ? e.message : String(e));
      this.attachError ??= new NvmqError('NVMQ_NO_QUEUE', `no I/O queue for worker ${msg.threadId}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      this.channel.postMessage({ type: 'refused', threadId: msg.threadId, message: e instanceof Error ? e.message : String(e) });
    });
  }

  private async grant(threadId: number): Promise<void> {
    let qp: IoQueuePair;
    if (this.sharing) {
      const i = this.assignments.size % this.opts.queues;
      qp = this.sharedQueues[i] ?? (this.sharedQueues[i] = await this.driver.createIoQueuePair({ entries: this.opts.queueDepth, shared: true, reapHere: false, metrics: this.io }));
    } else {
      qp = await this.driver.createIoQueuePair({ entries: this.opts.queueDepth, shared: false, reapHere: false, metrics: this.io });
    }
    const pool = this.driver.transport.arena.alloc(this.opts.poolSize);
    let threadSlot = 1;
    const used = new Set([...this.assignments.values()].map((a) => a.threadSlot));
    while (used.has(threadSlot)) threadSlot++;
    this.assignments.set(threadId, { qp, pool, shared: this.sharing, threadSlot, attached: false });
    const grant: QueueGrant = { threadId, threadSlot, queue: qp.handle(), vector: qp.qid, pool: { offset: pool.offset, size: pool.size } };
    this.channel.postMessage({ type: 'grant', ...grant });
  }

  /**
   * A worker died: the commands it was executing will never complete in its
   * thread, so the controller forgets them. An unshared pair is deleted and the
   * replacement piscina starts asks for a fresh one; the other workers are not
   * involved. A shared pair may hold other threads' commands that the dead
   * thread had fetched, which nothing would complete: the engine resets.
   */
  private async recycle(threadId: number): Promise<void> {
    const a = this.assignments.get(threadId);
    if (!a) return;
    this.controller.abandonThread(a.threadSlot);
    if (this.resetting) return; // the reset deletes every pair and pool
    this.assignments.delete(threadId);
    if (a.shared) {
      this.reset().catch((e: unknown) => trace('reset after the death of thread %d failed: %s', threadId, e instanceof Error ? e.message : String(e)));
      return;
    }
    this.controller.abandonInflight(a.qp.qid);
    try {
      await this.driver.deleteIoQueuePair(a.qp);
    } catch (e) {
      trace('deleting the queue of dead thread %d: %s', threadId, (e as Error).message);
    }
    // Its pool may still be written by a read the dead thread had started in libuv: give that a moment.
    setTimeout(() => this.driver.transport.arena.release(a.pool), 1000).unref();
  }

  /** Queue pairs in use, by worker thread id (for tests and metrics). */
  queueOf(threadId: number): number | undefined {
    return this.assignments.get(threadId)?.qp.qid;
  }

  get threadIds(): number[] {
    return this.pool.threads.map((t) => t.threadId);
  }

  /**
   * Runs `default export (queue, args)` of the module at `taskModuleUrl` in a
   * worker, with that worker's I/O queue pair. Resolves with what it returns;
   * rejects with what it throws (an NvmqError keeps its class, code and status).
   */
  run<T = unknown>(taskModuleUrl: string | URL, args?: unknown): Promise<T> {
    if (this.closing) return closed();
    if (typeof taskModuleUrl !== 'string' && !(taskModuleUrl instanceof URL)) {
      return Promise.reject(invalidArgument('taskModuleUrl', 'a module URL (string or URL)', taskModuleUrl));
    }
    return this.dispatch({ kind: 'run', module: String(taskModuleUrl), args }) as Promise<T>;
  }

  /**
   * Hands a task to the pool and tracks it until it settles. A task's error
   * comes back as a WireError and is rebuilt here; a rejection from the pool
   * itself means the worker went away under the task.
   */
  private dispatch(task: IoTask): Promise<unknown> {
    const p = this.pool.run(task).then(
      (r: TaskOutcome) => unwrapOutcome(r),
      (e: unknown) => {
        throw e instanceof NvmqError ? e : new NvmqError('NVMQ_WORKER_EXITED', `the worker running the task stopped: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      },
    );
    this.running.add(p);
    const forget = (): void => {
      this.running.delete(p);
    };
    p.then(forget, forget);
    return p;
  }

  /** Reads blocks through a worker (a convenience for the main thread, not the fast path). */
  async read(nsid: number, slba: number, nlb: number): Promise<Uint8Array> {
    if (this.closing) return closed();
    this.namespace(nsid);
    checkBlocks(slba, nlb);
    return (await this.dispatch({ kind: 'io', op: 'read', nsid, slba, nlb })) as Uint8Array;
  }

  async write(nsid: number, slba: number, data: Uint8Array, opts?: { fua?: boolean }): Promise<void> {
    if (this.closing) return closed();
    const lbaSize = this.namespace(nsid).lbaSize;
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length % lbaSize !== 0) {
      throw invalidArgument('data', `a Uint8Array of whole ${lbaSize}-byte blocks`, data);
    }
    if (data.length / lbaSize > MAX_NLB) throw invalidArgument('data', `at most ${MAX_NLB} blocks (${MAX_NLB * lbaSize} bytes) a write`, data);
    checkBlocks(slba, data.length / lbaSize);
    const fua = flag(opts, 'fua');
    await this.dispatch({ kind: 'io', op: 'write', nsid, slba, data, fua });
  }

  /** Flushes one namespace, or every namespace (NSID FFFFFFFFh, the default). */
  async flush(nsid = 0xffffffff): Promise<void> {
    if (this.closing) return closed();
    if (nsid !== 0xffffffff) this.namespace(nsid);
    await this.dispatch({ kind: 'io', op: 'flush', nsid });
  }

  namespace(nsid: number): NamespaceInfo {
    if (this.closing) throw new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed');
    const ns = this.driver.namespaces.get(nsid);
    if (!ns) throw invalidArgument('nsid', `an active NSID (${[...this.driver.namespaces.keys()].join(', ')})`, nsid);
    return ns;
  }

  /** The Prometheus text exposition of the engine's metrics (what /metrics serves). */
  async metrics(): Promise<string> {
    if (this.closing) return closed();
    return this.metricsRegistry.metrics();
  }

  /** The engine's private prom-client registry, e.g. to merge into an application's own (`Registry.merge`). */
  get metricsRegistry(): Registry {
    if (!this.registry) throw new NvmqError('NVMQ_METRICS_DISABLED', 'metrics are off for this engine (metrics: false)');
    return this.registry;
  }

  /** Where /metrics is served, when the engine serves it. */
  get metricsAddress(): { host: string; port: number; url: string } | undefined {
    const s = this.metricsServer;
    return s && { host: s.host, port: s.port, url: s.url };
  }

  /**
   * Controller reset with I/O in flight: every outstanding command fails
   * with NVMQ_CONTROLLER_RESET (none is left waiting), the controller comes
   * back up, and a fresh pool of workers gets fresh queue pairs. Tasks that
   * were running are ended with the old workers.
   */
  reset(): Promise<void> {
    if (this.closing) return closed();
    const run = this.lifecycle.then(() => this.doReset());
    this.lifecycle = run.catch(() => {});
    return run;
  }

  private async doReset(): Promise<void> {
    // A close() requested meanwhile wins: it tears everything down anyway.
    if (this.closing) return;
    this.resetting = true;
    const old = this.pool;
    try {
      // Fails every queue pair, in every thread, once the controller has drained.
      await this.driver.reset();
      // Running tasks now see their I/O fail; give them a moment to end on their own before the workers go.
      await Promise.race([Promise.allSettled(this.running), new Promise((r) => setTimeout(r, RESET_GRACE_MS).unref())]);
      await old.destroy();
      // The old workers are gone: nothing can touch their rings and pools any more.
      this.driver.releaseOrphans();
      for (const a of this.assignments.values()) {
        this.controller.abandonThread(a.threadSlot);
        this.driver.transport.arena.release(a.pool);
      }
      this.assignments.clear();
      this.sharedQueues.length = 0;
    } finally {
      this.resetting = false;
    }
    if (this.closing) return;
    this.pool = this.startPool();
    await this.ready();
  }

  /**
   * Waits for running tasks, stops the workers, deletes every queue pair,
   * and shuts the controller down (CC.SHN: every namespace flushed).
   */
  close(): Promise<void> {
    if (this.closing) return this.lifecycle;
    this.closing = true;
    this.lifecycle = this.lifecycle.then(() => this.doClose());
    return this.lifecycle;
  }

  private async doClose(): Promise<void> {
    await this.metricsServer?.close();
    this.metricsServer = undefined;
    // Drain (not pool.close(): it can count a worker done twice and stop another mid-task); a task that
    // never ends is cut off after a grace period rather than holding close() forever.
    await Promise.race([Promise.allSettled(this.running), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await this.stopWorkers();
    await this.driver.close();
  }

  /** Stops the pool and deletes every queue pair its workers had; the controller stays up. */
  private async stopWorkers(): Promise<void> {
    this.closing = true;
    await this.pool.destroy();
    this.channel.close();
    await this.grants.catch(() => {});
    // Workers are gone: whatever they left executing will not complete in their threads.
    const pairs = new Set<IoQueuePair>();
    for (const a of this.assignments.values()) {
      this.controller.abandonThread(a.threadSlot);
      pairs.add(a.qp);
    }
    for (const qp of pairs) {
      this.controller.abandonInflight(qp.qid);
      await this.driver.deleteIoQueuePair(qp).catch((e: unknown) => trace('deleting queue %d: %s', qp.qid, e instanceof Error ? e.message : String(e)));
    }
    this.assignments.clear();
  }
}

const closed = (): Promise<never> => Promise.reject(new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed'));
