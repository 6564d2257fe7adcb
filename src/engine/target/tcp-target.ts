/**
 * The NVMe/TCP target: a TCP listener that exports one NVM subsystem (the
 * engine's namespaces, behind its one local controller) and the discovery
 * service, to any NVMe/TCP host (Linux's `nvme connect` / `nvme discover`).
 *
 * Each accepted connection is one queue (tcp-connection.ts), accepted on the
 * main thread, which serves the admin queues (through the engine's admin
 * queue) and answers every Connect. A connected I/O queue then moves to one
 * of the target's I/O threads (tcp-worker.ts: attached to the engine, a
 * queue pair and io_uring of its own), the one serving the fewest queues:
 * the native addon duplicates the socket's descriptor, the thread opens its
 * own socket on it, and the main thread lets go of its own. Without the
 * addon (no dup(2) from JavaScript) every queue stays on the main thread,
 * on its queue pair; `ioThreads` says which it is.
 *
 * Secure by default: it listens on loopback unless told otherwise, and a
 * host gets in only if its NQN is in `allowHosts` or `allowAnyHost` is set;
 * one of the two must be given.
 */
import { NVME_TCP_PORT } from '../spec/tcp-pdu.js';
import * as net from 'node:net';
import { Worker } from 'node:worker_threads';
import { debuglog } from 'node:util';
import type { NvmeDriver } from '../host/driver.js';
import type { IoQueuePair } from '../host/io-queue-pair.js';
import { NvmqError } from '../errors.js';
import { invalidArgument } from '../host/arguments.js';
import { DiscoveryService } from './discovery.js';
import { Subsystem } from './subsystem.js';
import { describeListenError } from '../metrics/server.js';
import { TcpConnection } from './tcp-connection.js';
import { CONNECT_TIMEOUT_MS, type ConnectionEnv, type MovedQueue } from './tcp-env.js';
import type { FromTcpWorker, TcpWorkerData, ToTcpWorker } from './tcp-worker.js';
import type { AttachHandle } from '../../workers/protocol.js';
import { loadNative } from '../uring/native.js';
import type { Registry } from 'prom-client';
import { HostSlots, TcpCounters, registerTcpMetrics } from './tcp-metrics.js';

const trace = debuglog('nvmq');

/** NVMe/TCP's port (IANA: 4420 for NVMe/TCP I/O controllers). */
export const DEFAULT_NVME_TCP_PORT = NVME_TCP_PORT;
/** A subsystem NQN nvmq uses when given none. */
export const DEFAULT_SUBNQN = 'nqn.2026-12.io.nvmq:subsystem';
/** MAXH2CDATA offered: the most data one H2CData PDU may carry. */
const DEFAULT_MAX_H2C_DATA = 128 << 10;

export interface TcpTargetOptions {
  /** Address to listen on (default 127.0.0.1: loopback only). */
  host?: string;
  /** TCP port (default 4420; 0 for any free port). */
  port?: number;
  /** The subsystem's NQN (default `nqn.2026-12.io.nvmq:subsystem`). */
  subnqn?: string;
  /** Host NQNs allowed to connect. */
  allowHosts?: string[];
  /** Let any host connect. Either this or `allowHosts` must be given. */
  allowAnyHost?: boolean;
  /** I/O queues per host controller (default 8). */
  maxIoQueues?: number;
  /** Entries of an I/O queue at most (default 128). */
  maxQueueSize?: number;
  /** In-capsule data bytes of an I/O command (default 8192). */
  inCapsuleDataBytes?: number;
  /**
   * Threads serving I/O queue connections, each with its own queue pair
   * (default: as many as the engine has pool workers); 0 serves every queue
   * on the main thread. Without the native addon it is always 0.
   */
  ioThreads?: number;
  /** Milliseconds an accepted connection has to send its ICReq and Connect before it is closed (default 10000). */
  connectTimeoutMs?: number;
}

/** What the target needs of an engine: the local controller's driver and the main thread's queue pair. */
export interface TargetEngine {
  readonly driver: NvmeDriver;
  queue(): Promise<IoQueuePair>;
  attachHandle(): AttachHandle;
  /** The pool's worker threads (their count sets the default ioThreads). */
  readonly threadIds: number[];
}

/** One I/O thread and the queues moved to it. */
interface IoThread {
  worker: Worker;
  queues: Map<number, TcpConnection>;
}

export class TcpTarget {
  readonly subsystem: Subsystem;
  readonly discovery: DiscoveryService;
  private readonly server: net.Server;
  private readonly connections = new Set<TcpConnection>();
  private readonly threads: IoThread[] = [];
  private nextMoveId = 0;
  private closing: Promise<void> | undefined;
  private unregisterMetrics: (() => void) | undefined;

  private constructor(server: net.Server, subsystem: Subsystem, discovery: DiscoveryService) {
    this.server = server;
    this.subsystem = subsystem;
    this.discovery = discovery;
  }

  /** Threads serving I/O queues (0: the main thread serves them all). */
  get ioThreads(): number {
    return this.threads.length;
  }

  /** Listens and resolves once the port is bound; a failed bind leaves nothing behind. */
  static async listen(engine: TargetEngine, opts: TcpTargetOptions = {}, registry?: Registry): Promise<TcpTarget> {
    if (typeof opts !== 'object' || opts === null) throw invalidArgument('options', 'an object', opts);
    const host = opts.host ?? '127.0.0.1';
    const port = opts.port ?? DEFAULT_NVME_TCP_PORT;
    if (typeof host !== 'string' || net.isIP(host) === 0) throw invalidArgument('host', 'an IPv4 or IPv6 address', host);
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw invalidArgument('port', 'an integer 0..65535', port);
    const allowHosts = opts.allowHosts ?? [];
    if (!Array.isArray(allowHosts)) throw invalidArgument('allowHosts', 'an array of host NQNs', allowHosts);
    if (opts.allowAnyHost !== undefined && typeof opts.allowAnyHost !== 'boolean') throw invalidArgument('allowAnyHost', 'true or false', opts.allowAnyHost);
    const native = loadNative();
    const ioThreads = opts.ioThreads ?? Math.max(1, engine.threadIds.length);
    if (!Number.isInteger(ioThreads) || ioThreads < 0 || ioThreads > 64) throw invalidArgument('ioThreads', 'an integer 0..64', opts.ioThreads);
    const connectTimeoutMs = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 1 || connectTimeoutMs > 3_600_000) throw invalidArgument('connectTimeoutMs', 'an integer 1..3600000', opts.connectTimeoutMs);
    if (allowHosts.length === 0 && opts.allowAnyHost !== true) {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', 'say which hosts may connect: allowHosts (host NQNs) or allowAnyHost: true');
    }
    const server = net.createServer({ noDelay: true });
    // Hosts that connect while the I/O threads start wait, paused, until the target is ready.
    const early: net.Socket[] = [];
    const holdEarly = (socket: net.Socket): void => {
      socket.pause();
      early.push(socket);
    };
    server.on('connection', holdEarly);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new NvmqError('NVMQ_TCP_LISTEN', `NVMe/TCP target cannot listen on ${describeListenError(e, host, port)}`, { cause: e })));
      server.listen({ host, port }, resolve);
    });
    const bound = server.address() as net.AddressInfo;
    const address = { trtype: 'tcp', traddr: bound.address, trsvcid: String(bound.port), adrfam: net.isIPv6(bound.address) ? 'ipv6' : 'ipv4' } as const;
    let subsystem: Subsystem;
    let discovery: DiscoveryService;
    try {
      subsystem = new Subsystem({
        subnqn: opts.subnqn ?? DEFAULT_SUBNQN,
        driver: engine.driver,
        allowHosts,
        allowAnyHost: opts.allowAnyHost === true,
        maxIoQueues: opts.maxIoQueues,
        maxQueueSize: opts.maxQueueSize,
        inCapsuleDataBytes: opts.inCapsuleDataBytes,
        port: address,
      });
      discovery = new DiscoveryService({ port: address });
      discovery.add(subsystem);
    } catch (e) {
      server.close();
      for (const socket of early) socket.destroy();
      throw e;
    }
    const target = new TcpTarget(server, subsystem, discovery);
    const maxTransfer = engine.driver.controller.maxTransferBytes;
    const limits = { maxH2CData: DEFAULT_MAX_H2C_DATA, inCapsuleDataBytes: subsystem.inCapsuleDataBytes, maxTransferBytes: Number.isFinite(maxTransfer) ? maxTransfer : 1 << 20 };
    // Metrics rows: the main thread's, then one per I/O thread.
    const threads = native ? ioThreads : 0;
    const counters = TcpCounters.allocate(1 + threads);
    const hosts = new HostSlots();
    if (threads > 0) {
      try {
        await target.startThreads(engine, threads, limits, counters);
      } catch (e) {
        for (const socket of early) socket.destroy();
        await target.close();
        throw e;
      }
    }
    const env: ConnectionEnv = {
      targets: [subsystem, discovery],
      ioQueue: () => engine.queue(),
      namespaces: engine.driver.namespaces,
      ...limits,
      closed: (c) => target.connections.delete(c as TcpConnection),
      moveQueue: native && target.threads.length > 0 ? (conn, q) => target.moveQueue(native.dupFd, conn as TcpConnection, q) : undefined,
      counters: new TcpCounters(counters, 0),
      hostSlot: (nqn) => hosts.slotOf(nqn),
      connectTimeoutMs,
    };
    if (registry) {
      target.unregisterMetrics = registerTcpMetrics(registry, {
        listen: `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`,
        cells: new Float64Array(counters),
        hosts,
        connections: () => [...target.connections].map((c) => c.metricsLabels),
        controllers: () => [...subsystem.activeControllers.values()].map((c) => c.hostnqn),
      });
    }
    const accept = (socket: net.Socket): void => {
      if (target.closing) return void socket.destroy();
      target.connections.add(new TcpConnection(socket, env));
      socket.resume();
    };
    server.off('connection', holdEarly);
    server.on('connection', accept);
    for (const socket of early.splice(0)) accept(socket);
    server.on('error', (e) => trace('nvme/tcp listener: %s', e.message));
    trace('nvme/tcp: listening on %s:%d, subsystem %s', bound.address, bound.port, subsystem.subnqn);
    return target;
  }

  private async startThreads(engine: TargetEngine, n: number, limits: Omit<TcpWorkerData, 'handle' | 'counters' | 'thread'>, counters: SharedArrayBuffer): Promise<void> {
    const starting: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      const handle = engine.attachHandle();
      const worker = new Worker(new URL('./tcp-worker.js', import.meta.url), { workerData: { handle, ...limits, counters, thread: i + 1 } satisfies TcpWorkerData, transferList: [handle.port] });
      const t: IoThread = { worker, queues: new Map() };
      this.threads.push(t);
      starting.push(
        new Promise<void>((resolve, reject) => {
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new NvmqError('NVMQ_TCP_THREAD', `an NVMe/TCP I/O thread exited (status ${code}) before it attached`)));
          worker.on('message', (m: FromTcpWorker) => {
            if (m.type === 'ready') resolve();
            else if (m.type === 'disconnected') t.queues.get(m.id)?.movedDisconnected();
            else this.ended(t, m.id, m.reason);
          });
        }),
      );
      worker.on('exit', () => {
        // Its connections ended with it (their descriptors closed): the controllers forget those queues.
        for (const [id] of t.queues) this.ended(t, id, 'its I/O thread ended');
        const i = this.threads.indexOf(t);
        if (i >= 0) this.threads.splice(i, 1);
      });
      worker.on('error', (e) => trace('nvme/tcp I/O thread: %s', e.message));
    }
    await Promise.all(starting);
  }

  /** Moves a connected I/O queue to the I/O thread serving the fewest; undefined when it cannot (it stays here). */
  private moveQueue(dupFd: (fd: number) => number, conn: TcpConnection, q: MovedQueue): ((reason: string) => void) | undefined {
    if (this.closing || this.threads.length === 0) return undefined;
    // The socket's descriptor (Node's TCP handle keeps it in `fd` on POSIX systems).
    const fd = (conn.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return undefined;
    const dup = dupFd(fd);
    if (dup < 0) {
      trace('nvme/tcp: cannot duplicate descriptor %d (errno %d): the queue stays on the main thread', fd, -dup);
      return undefined;
    }
    const t = this.threads.reduce((a, b) => (b.queues.size < a.queues.size ? b : a));
    const id = ++this.nextMoveId;
    t.queues.set(id, conn);
    t.worker.postMessage({ type: 'serve', id, fd: dup, queue: q } satisfies ToTcpWorker, [q.unread.buffer as ArrayBuffer]);
    return (reason) => t.worker.postMessage({ type: 'close', id, reason } satisfies ToTcpWorker);
  }

  /** A moved queue's connection ended in its thread. */
  private ended(t: IoThread, id: number, reason: string): void {
    const conn = t.queues.get(id);
    if (!conn) return;
    t.queues.delete(id);
    conn.movedEnded(reason);
  }

  /** Where the target listens. */
  get address(): { host: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  get subnqn(): string {
    return this.subsystem.subnqn;
  }

  /** Open connections (queues) right now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops listening, ends every connection and controller. Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const c of [...this.connections]) c.close('the target is closing');
      this.subsystem.close('the target is closing');
      this.discovery.close();
      this.unregisterMetrics?.();
      // The I/O threads close what they serve and detach from the engine, then end.
      await Promise.all(
        this.threads.map(
          (t) =>
            new Promise<void>((resolve) => {
              t.worker.once('exit', () => resolve());
              t.worker.postMessage({ type: 'stop' } satisfies ToTcpWorker);
              setTimeout(() => void t.worker.terminate(), 10_000).unref();
            }),
        ),
      );
      await closed;
    })());
  }
}
