/**
 * The embedding API: one controller, brought up on the main thread, a fixed
 * pool of worker threads (src/workers/pool.ts), each with its own I/O queue
 * pair, and a queue pair of the main thread's own for the engine's I/O calls
 * made there. Every thread's I/O runs the controller in that thread: no
 * contended lock, no waiting on another thread. The engine owns the
 * lifecycle: open, reset (a fresh generation of workers, a fresh main-thread
 * queue), close.
 */
import { availableParallelism } from 'node:os';
import { EventEmitter } from 'node:events';
import v8 from 'node:v8';
import { debuglog } from 'node:util';
import type { NvmeController } from './device/controller.js';
import type { NvmeDriver } from './host/driver.js';
import type { BatchOp, IoQueuePair, LbaRange, WriteOptions, WriteZeroesOptions } from './host/io-queue-pair.js';
import type { IoTask } from '../workers/protocol.js';
import { WorkerPool } from '../workers/pool.js';
import { ThreadSlots } from '../workers/grants.js';
import { Attachments } from '../workers/attachments.js';
import type { AttachHandle } from '../workers/protocol.js';
import { WAIT_MODES, type WaitMode } from './host/waiter.js';
import type { NamespaceInfo } from './host/identify.js';
import { NvmqError, unwrapOutcome } from './errors.js';
import { checkInteger, inactiveNsid, invalidArgument } from './host/arguments.js';
import type { OpenedDevice } from './remote-device.js';
import { openEngineDevice, checkOwnQueues } from './engine-open.js';
import { RemoteEngineDevice, VfioEngineDevice, type EngineDevice } from './engine-device.js';
import { RemoteLink, type RemoteEvents } from './remote-link.js';
import type { TcpTransport } from './transport/tcp/tcp-transport.js';
import type { VfioTransport } from './transport/vfio/vfio-transport.js';
import type { Registry } from 'prom-client';
import { IoMetrics } from './metrics/io-metrics.js';
import { createMetricsRegistry, nvmqVersion } from './metrics/collector.js';
import { checkMetricsServerOptions, serveMetrics, type MetricsServer } from './metrics/server.js';
import { DeadlineChannel, type ThreadTimeouts } from '../workers/deadline-channel.js';
import { checkTimeout } from './host/deadlines.js';
import { checkDeviceChoice, resultBuffer, wholeBlocks, type EngineBatchOp, type EngineOptions } from './engine-options.js';
import { TcpTarget, type TcpTargetOptions } from './target/tcp-target.js';

export type { EngineBatchOp, EngineOptions } from './engine-options.js';
export type { RemoteEvents } from './remote-link.js';

/** What an engine emits: a remote controller's connection events, and a controller out of service. */
export interface EngineEvents extends RemoteEvents {
  /** The controller reported a fatal status (CSTS.CFS) and the reset it was given did not clear it. */
  failed: [err: NvmqError];
}

const trace = debuglog('nvmq');

/** How long reset() lets running tasks end on their own (their I/O has failed) before it stops their workers. */
const RESET_GRACE_MS = 5000;

export class Engine extends EventEmitter<EngineEvents> {
  readonly driver: NvmeDriver;
  /** The in-process controller; undefined when the engine runs a remote one (`target`). */
  readonly controller: NvmeController | undefined;
  /** The remote controller's transport, when the engine runs one. */
  readonly remote: TcpTransport | undefined;
  /** The PCIe controller's transport (VFIO), when the engine runs one (`pci`). */
  readonly vfio: VfioTransport | undefined;
  /** What the pool and attached threads attach to. */
  private readonly device: EngineDevice;
  readonly workers: number;
  /** The current generation of workers (a reset starts the next). */
  private pool: WorkerPool;
  /** Serializes reset() and close(). */
  private lifecycle: Promise<void> = Promise.resolve();
  private readonly opts: { queueDepth: number; poolSize: number; queues: number; waitMode: WaitMode | undefined; timeouts: ThreadTimeouts };
  /** Where other threads report their commands past the deadline (the admin queue, Abort and reset are here). */
  private readonly deadlines: DeadlineChannel;
  private closing = false;
  /** Tasks submitted and not settled (a reset gives them a grace period). */
  private readonly running = new Set<Promise<unknown>>();
  /** Main-thread calls still waiting for the main thread's pair (close() waits for them too). */
  private readonly mainCalls = new Set<Promise<unknown>>();
  /** Bumped by each reset: a main-thread pair made across one is not kept. */
  private mainGeneration = 0;
  /** The main thread's queue pair, made on first use and again after a reset. */
  private main: Promise<IoQueuePair> | undefined;
  /** The same once made: read and write take it without a Promise hop. */
  private mainReady: IoQueuePair | undefined;
  /** Thread slots of the pool's workers and attached threads. */
  private readonly slots = new ThreadSlots();
  /** The application's own threads attached with attachHandle(). */
  private readonly attached: Attachments;
  /** Every queue's I/O counters (undefined with `metrics: false`), and the registry that reads them. */
  private readonly io: IoMetrics | undefined;
  private readonly registry: Registry | undefined;
  private metricsServer: MetricsServer | undefined;
  /** NVMe/TCP targets serving this engine's namespaces (listen()); closed before the engine. */
  private readonly targets = new Set<TcpTarget>();

  private constructor(driver: NvmeDriver, device: OpenedDevice, workers: number, queues: number, opts: EngineOptions) {
    super();
    this.driver = driver;
    this.controller = device.controller;
    this.remote = device.remote;
    this.vfio = device.vfio;
    this.device = device.controller ?? (device.vfio ? new VfioEngineDevice(device.vfio) : new RemoteEngineDevice(device.remote!));
    const controller = this.device;
    this.workers = workers;
    this.deadlines = new DeadlineChannel(driver);
    driver.resetForTimeout = () => this.reset(); // a stuck command resets the whole engine: fresh workers and pairs
    driver.onFailed = (err) => this.emit('failed', err); // a fatal controller status its reset did not clear
    this.opts = { queueDepth: opts.queueDepth ?? 128, poolSize: opts.poolSize ?? 8 << 20, queues, waitMode: opts.waitMode, timeouts: this.deadlines.timeouts };
    if (opts.metrics !== false) {
      this.io = IoMetrics.create({ maxQid: driver.grantedIoQueues, nsids: [...driver.namespaces.keys()] });
      this.registry = createMetricsRegistry({
        io: this.io,
        smartLog: () => driver.smartLog(),
        info: {
          version: nvmqVersion(),
          backend: opts.namespaces ? [...new Set(opts.namespaces.map((n) => n.backend))].sort().join(',') : device.vfio ? 'vfio' : 'nvme-tcp',
          namespaces: String(driver.namespaces.size),
          model: driver.controller.model,
          serial: driver.controller.serial,
          firmware: driver.controller.firmware,
        },
        namespaces: [...driver.namespaces.values()].map((n) => ({ nsid: n.nsid, capacityBytes: n.blocks * n.lbaSize })),
        remote: device.remote && (() => this.link!.counts()),
      });
    }
    this.attached = new Attachments(
      { driver, controller, slots: this.slots, queueDepth: this.opts.queueDepth, poolSize: this.opts.poolSize, metrics: this.io, waitMode: this.opts.waitMode, timeouts: this.opts.timeouts },
      () => void this.reset().catch((e: unknown) => trace('reset for a shared queue failed: %s', e instanceof Error ? e.message : String(e))),
    );
    this.pool = this.startPool();
    this.link = device.remote && new RemoteLink(device.remote, {
      reset: () => this.reset(),
      closing: () => this.closing,
      emit: (event, arg) => (this.emit as (e: string, a: unknown) => boolean)(event, arg),
      dropMain: () => { // it failed with the association: the next call waits for the reconnect and a fresh pair
        this.mainGeneration++;
        this.main = undefined;
        this.mainReady = undefined;
      },
    });
  }

  /** A remote controller's connection and its reconnection; undefined for an in-process one. */
  private readonly link: RemoteLink | undefined;
  private startPool(): WorkerPool {
    return new WorkerPool({
      driver: this.driver,
      controller: this.device,
      workers: this.workers,
      ...this.opts,
      slots: this.slots,
      metrics: this.io,
      onSharedDeath: (threadId) =>
        void this.reset().catch((e: unknown) => trace('reset after the death of thread %d failed: %s', threadId, e instanceof Error ? e.message : String(e))),
    });
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
    if (opts.waitMode !== undefined && !WAIT_MODES.includes(opts.waitMode)) throw invalidArgument('waitMode', `one of ${WAIT_MODES.map((m) => `'${m}'`).join(', ')}`, opts.waitMode);
    checkTimeout('ioTimeoutMs', opts.ioTimeoutMs, 0);
    checkTimeout('adminTimeoutMs', opts.adminTimeoutMs, 0);
    const semiSpace = opts.workerSemiSpaceMb ?? 0;
    checkInteger('workerSemiSpaceMb', semiSpace, 0, 256, '0..256');
    if (opts.metrics !== undefined && typeof opts.metrics !== 'boolean' && (typeof opts.metrics !== 'object' || opts.metrics === null)) {
      throw invalidArgument('metrics', 'true, false or { host?, port? }', opts.metrics);
    }
    if (typeof opts.metrics === 'object') checkMetricsServerOptions(opts.metrics);
    checkDeviceChoice(opts);
    if (semiSpace > 0) v8.setFlagsFromString(`--min-semi-space-size=${semiSpace}`);
    const device = await openEngineDevice(opts, { workers, queueDepth: depth, poolSize });
    let engine: Engine | undefined;
    try {
      const queues = Math.min(wanted, device.driver.grantedIoQueues);
      checkOwnQueues(device, workers, queues, opts.queues);
      engine = new Engine(device.driver, device, workers, queues, opts);
      await engine.pool.ready();
      if (typeof opts.metrics === 'object') engine.metricsServer = await serveMetrics(engine.registry!, opts.metrics);
      return engine;
    } catch (e) {
      try {
        if (engine) await engine.pool.stop();
      } finally {
        engine?.deadlines.close();
        await device.abandon();
      }
      throw e;
    }
  }

  /** Threads share queues when there are fewer queues than workers. */
  get sharing(): boolean {
    return this.pool.sharing;
  }

  /** Queue pairs in use, by worker thread id (for tests and metrics). */
  queueOf(threadId: number): number | undefined {
    return this.pool.queueOf(threadId);
  }

  get threadIds(): number[] {
    return this.pool.threadIds;
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
    // While a remote controller reconnects, tasks wait for the new workers (or fail as main-thread I/O does).
    const start = !this.link || this.link.state === 'connected' ? this.pool.run(task) : this.link.whileReconnecting().then(() => this.lifecycle).then(() => this.pool.run(task));
    return this.track(
      start.then(
        (r) => unwrapOutcome(r),
        (e: unknown) => {
          throw e instanceof NvmqError ? e : new NvmqError('NVMQ_WORKER_EXITED', `the worker running the task stopped: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        },
      ),
    );
  }

  /** Keeps `p` in `set` until it settles: close() waits for it. */
  private track<T>(p: Promise<T>, set = this.running): Promise<T> {
    set.add(p);
    const forget = (): void => {
      set.delete(p);
    };
    p.then(forget, forget);
    return p;
  }

  /**
   * The main thread's I/O queue pair: the same API a task gets (plug /
   * unplug batches, DMA buffers, callback forms), running the controller in
   * this thread with completions through this thread's event loop. Made on
   * first use; after a reset the next call makes a fresh one.
   */
  queue(): Promise<IoQueuePair> {
    if (this.closing) return closed();
    if (!this.main) {
      const made: Promise<IoQueuePair> = this.makeMainQueue().catch((e: unknown) => {
        // A failed attempt is not kept: the next call tries again.
        if (this.main === made) this.main = undefined;
        throw e;
      });
      this.main = made;
    }
    return this.main;
  }

  private async makeMainQueue(): Promise<IoQueuePair> {
    // A remote controller being reconnected, or a reset in progress, brings the controller back first.
    await this.link?.whileReconnecting();
    await this.lifecycle;
    if (this.closing) return closed();
    const generation = this.mainGeneration;
    // Main-thread callers each await their own command: their submissions share a doorbell per microtask turn.
    const q = await this.driver.createIoQueuePair({ entries: this.opts.queueDepth, metrics: this.io, coalesce: true });
    // A reset meanwhile failed this pair: the next call makes another.
    if (generation === this.mainGeneration) this.mainReady = q;
    return q;
  }

  /** Runs `op` on the main thread's queue pair, tracked for close(). */
  private onMain<T>(op: (q: IoQueuePair) => Promise<T>): Promise<T> {
    if (this.closing) return closed();
    return this.track(this.queue().then(op), this.mainCalls);
  }

  /**
   * A handle for one thread the application created (not one of the pool's):
   * post it to the thread with its port in the transfer list, and there
   * `await attach(handle)` gives that thread an I/O queue pair of its own.
   *
   *   const h = engine.attachHandle();
   *   new Worker(url, { workerData: h, transferList: [h.port] });
   */
  attachHandle(): AttachHandle {
    if (this.closing) throw new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed');
    return this.attached.handle();
  }

  /**
   * Reads `nlb` blocks from `slba` on the main thread's queue pair, into
   * `buffer` (exactly `nlb` blocks long, as node:fs reads into the caller's
   * buffer) or else a new one, and resolves with it. Not an async function:
   * once the pair exists a read costs one Promise (close() waits for the
   * pair's outstanding commands).
   */
  read(nsid: number, slba: number, nlb: number, buffer?: Uint8Array): Promise<Uint8Array> {
    const q = this.mainReady;
    if (!q || this.closing) return this.onMain(() => this.read(nsid, slba, nlb, buffer));
    let out: Uint8Array;
    try {
      const lbaSize = this.namespace(nsid).lbaSize;
      // The queue pair checks a given buffer's length and names it in its error.
      out = buffer ?? resultBuffer(q, nlb, lbaSize);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return new Promise((resolve, reject) => q.readCallback(nsid, slba, nlb, out, (err) => (err ? reject(err) : resolve(out))));
  }

  /** Writes whole blocks of `data` at `slba` on the main thread's queue pair. */
  write(nsid: number, slba: number, data: Uint8Array, opts?: WriteOptions): Promise<void> {
    const q = this.mainReady;
    if (!q || this.closing) return this.onMain(() => this.write(nsid, slba, data, opts));
    let nlb: number;
    try {
      const lbaSize = this.namespace(nsid).lbaSize;
      nlb = wholeBlocks('data', data, lbaSize);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return new Promise((resolve, reject) => q.writeCallback(nsid, slba, nlb, data, (err) => (err ? reject(err) : resolve()), opts));
  }

  /** Flushes one namespace, or every namespace (NSID FFFFFFFFh, the default). */
  async flush(nsid = 0xffffffff): Promise<void> {
    if (nsid !== 0xffffffff) this.namespace(nsid);
    await this.onMain((q) => q.flush(nsid));
  }

  /** Write Zeroes over `nlb` blocks from `slba` (with `deallocate`, the blocks may be unmapped). */
  async writeZeroes(nsid: number, slba: number, nlb: number, opts?: WriteZeroesOptions): Promise<void> {
    this.namespace(nsid);
    await this.onMain((q) => q.writeZeroes(nsid, slba, nlb, opts));
  }

  /**
   * Several commands behind one doorbell on the main thread's queue pair
   * (one entry into the kernel on the io_uring path). Resolves once all have
   * completed with, in order, each read's data (undefined for the others);
   * rejects with the first failure once all have ended. Every entry is
   * checked before any is submitted.
   */
  async batch(ops: readonly EngineBatchOp[]): Promise<Array<Uint8Array | undefined>> {
    if (!Array.isArray(ops)) throw invalidArgument('ops', 'an array of commands', ops);
    return this.onMain(async (q) => {
      const entries: BatchOp[] = ops.map((o, i) => {
        if (typeof o !== 'object' || o === null) throw invalidArgument(`ops[${i}]`, "{ op: 'read' | 'write' | 'flush' | 'writeZeroes', ... }", o);
        if (o.op === 'flush') return { op: 'flush', nsid: o.nsid ?? 0xffffffff };
        const lbaSize = this.namespace(o.nsid).lbaSize;
        if (o.op === 'read') return { op: 'read', nsid: o.nsid, slba: o.slba, nlb: o.nlb, buffer: o.buffer ?? resultBuffer(q, o.nlb, lbaSize) };
        if (o.op === 'write') {
          return { op: 'write', nsid: o.nsid, slba: o.slba, nlb: wholeBlocks(`ops[${i}].data`, o.data, lbaSize), buffer: o.data, fua: o.fua };
        }
        return o;
      });
      await q.batch(entries);
      return entries.map((e) => (e.op === 'read' ? e.buffer : undefined));
    });
  }

  /** Deallocates the ranges (Dataset Management): they read as zeroes afterwards. */
  async deallocate(nsid: number, ranges: readonly LbaRange[]): Promise<void> {
    this.namespace(nsid);
    await this.onMain((q) => q.deallocate(nsid, ranges));
  }

  namespace(nsid: number): NamespaceInfo {
    if (this.closing) throw new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed');
    const ns = this.driver.namespaces.get(nsid);
    if (!ns) throw inactiveNsid(nsid, this.driver.namespaces.keys());
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
   * Serves the namespaces to NVMe/TCP hosts (Linux's `nvme connect`): one
   * NVM subsystem and the discovery service on `host:port` (default
   * 127.0.0.1:4420). `allowHosts` (host NQNs) or `allowAnyHost: true` must
   * say who may connect. Closed with the engine, or by the returned target's
   * `close()`. See README, "NVMe/TCP target".
   */
  async listen(opts: TcpTargetOptions): Promise<TcpTarget> {
    if (this.closing) return closed();
    if (this.remote || this.vfio) throw new NvmqError('NVMQ_UNSUPPORTED', `engine.listen(): this engine runs a ${this.remote ? 'remote' : 'PCIe'} controller; serve local namespaces instead`);
    const target = await TcpTarget.listen(this, opts, this.registry);
    if (this.closing) {
      await target.close();
      return closed();
    }
    this.targets.add(target);
    return target;
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
    const old = this.pool;
    // Deaths from here on are the reset's to clean up, not grounds for another reset.
    old.quiesce();
    // The reset fails the main thread's queue pair too; the next main-thread I/O makes a fresh one.
    this.mainGeneration++;
    this.main = undefined;
    this.mainReady = undefined;
    // Fails every queue pair, in every thread, once the controller has drained.
    await this.driver.reset();
    // Running tasks now see their I/O fail; give them a moment to end on their own before the workers go.
    await Promise.race([Promise.allSettled(this.running), new Promise((r) => setTimeout(r, RESET_GRACE_MS).unref())]);
    await old.retire();
    // The old workers are gone: nothing can touch their rings and pools any more. Attached threads still
    // hold their old pairs (failed now) until they detach or end.
    this.driver.releaseOrphans((qp) => this.attached.keep(qp));
    if (this.closing) return;
    this.pool = this.startPool();
    await this.pool.ready();
  }

  /**
   * Waits for running tasks, stops the workers, deletes every queue pair,
   * and shuts the controller down (CC.SHN: every namespace flushed).
   */
  close(): Promise<void> {
    if (this.closing) return this.lifecycle;
    this.closing = true;
    this.link?.stop();
    // Workers' grant requests and deaths are close()'s to deal with from here (a reset bringing workers up stops waiting).
    this.pool.quiesce();
    this.lifecycle = this.lifecycle.then(() => this.doClose());
    return this.lifecycle;
  }

  private async doClose(): Promise<void> {
    // Hosts first: their connections end, and with them the commands they would still send.
    await Promise.all([...this.targets].map((t) => t.close()));
    this.targets.clear();
    await this.metricsServer?.close();
    this.metricsServer = undefined;
    await this.attached.close();
    // Drain (not pool.close(): it can count a worker done twice and stop another mid-task); a task that
    // never ends is cut off after a grace period rather than holding close() forever.
    await Promise.race([Promise.allSettled([...this.running, ...this.mainCalls]), new Promise((r) => setTimeout(r, 10_000).unref())]);
    // Main-thread reads and writes on the made pair are not tracked one by one: the pair counts them, and
    // those still waiting for a request slot.
    const deadline = Date.now() + 10_000;
    const busy = (q: IoQueuePair | undefined): boolean => q !== undefined && q.outstanding + q.waitingForSlot > 0;
    while (busy(this.mainReady) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    try {
      await this.pool.stop();
      await this.driver.close();
    } finally {
      this.attached.dispose();
      this.deadlines.close();
    }
  }

}

const closed = (): Promise<never> => Promise.reject(new NvmqError('NVMQ_ENGINE_CLOSED', 'the engine is closed'));
