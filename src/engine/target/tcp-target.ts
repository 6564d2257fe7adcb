/**
 * The NVMe/TCP target: a TCP listener that exports one NVM subsystem (the
 * engine's namespaces, behind its one local controller) and the discovery
 * service, to any NVMe/TCP host (Linux's `nvme connect` / `nvme discover`).
 *
 * Each accepted connection is one queue (tcp-connection.ts). Every queue is
 * served on the thread that runs the listener, the main thread: admin
 * queues through the engine's admin queue, I/O queues on the main thread's
 * local queue pair. (Handing I/O connections to worker threads, one
 * queue pair each, is the next step; see docs/ARCHITECTURE.md.)
 *
 * Secure by default: it listens on loopback unless told otherwise, and a
 * host gets in only if its NQN is in `allowHosts` or `allowAnyHost` is set;
 * one of the two must be given.
 */
import * as net from 'node:net';
import { debuglog } from 'node:util';
import type { NvmeDriver } from '../host/driver.js';
import type { IoQueuePair } from '../host/io-queue-pair.js';
import { NvmqError } from '../errors.js';
import { invalidArgument } from '../host/arguments.js';
import { DiscoveryService } from './discovery.js';
import { Subsystem } from './subsystem.js';
import { describeListenError } from '../metrics/server.js';
import { TcpConnection, type ConnectionEnv } from './tcp-connection.js';

const trace = debuglog('nvmq');

/** NVMe/TCP's port (IANA: 4420 for NVMe/TCP I/O controllers). */
export const DEFAULT_NVME_TCP_PORT = 4420;
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
}

/** What the target needs of an engine: the local controller's driver and the main thread's queue pair. */
export interface TargetEngine {
  readonly driver: NvmeDriver;
  queue(): Promise<IoQueuePair>;
}

export class TcpTarget {
  readonly subsystem: Subsystem;
  readonly discovery: DiscoveryService;
  private readonly server: net.Server;
  private readonly connections = new Set<TcpConnection>();
  private closing: Promise<void> | undefined;

  private constructor(server: net.Server, subsystem: Subsystem, discovery: DiscoveryService) {
    this.server = server;
    this.subsystem = subsystem;
    this.discovery = discovery;
  }

  /** Listens and resolves once the port is bound; a failed bind leaves nothing behind. */
  static async listen(engine: TargetEngine, opts: TcpTargetOptions = {}): Promise<TcpTarget> {
    if (typeof opts !== 'object' || opts === null) throw invalidArgument('options', 'an object', opts);
    const host = opts.host ?? '127.0.0.1';
    const port = opts.port ?? DEFAULT_NVME_TCP_PORT;
    if (typeof host !== 'string' || net.isIP(host) === 0) throw invalidArgument('host', 'an IPv4 or IPv6 address', host);
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw invalidArgument('port', 'an integer 0..65535', port);
    const allowHosts = opts.allowHosts ?? [];
    if (!Array.isArray(allowHosts)) throw invalidArgument('allowHosts', 'an array of host NQNs', allowHosts);
    if (opts.allowAnyHost !== undefined && typeof opts.allowAnyHost !== 'boolean') throw invalidArgument('allowAnyHost', 'true or false', opts.allowAnyHost);
    if (allowHosts.length === 0 && opts.allowAnyHost !== true) {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', 'say which hosts may connect: allowHosts (host NQNs) or allowAnyHost: true');
    }
    const server = net.createServer({ noDelay: true });
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
      throw e;
    }
    const target = new TcpTarget(server, subsystem, discovery);
    const maxTransfer = engine.driver.controller.maxTransferBytes;
    const env: ConnectionEnv = {
      targets: [subsystem, discovery],
      ioQueue: () => engine.queue(),
      namespaces: engine.driver.namespaces,
      maxH2CData: DEFAULT_MAX_H2C_DATA,
      inCapsuleDataBytes: subsystem.inCapsuleDataBytes,
      maxTransferBytes: Number.isFinite(maxTransfer) ? maxTransfer : 1 << 20,
      closed: (c) => target.connections.delete(c),
    };
    server.on('connection', (socket) => {
      if (target.closing) return socket.destroy();
      target.connections.add(new TcpConnection(socket, env));
    });
    server.on('error', (e) => trace('nvme/tcp listener: %s', e.message));
    trace('nvme/tcp: listening on %s:%d, subsystem %s', bound.address, bound.port, subsystem.subnqn);
    return target;
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
      await closed;
    })());
  }
}
