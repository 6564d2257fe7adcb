/**
 * What `Engine.open()` takes, and the argument checks of the engine's
 * main-thread I/O calls.
 */
import type { ControllerOptions } from './device/controller.js';
import type { IoQueuePair } from './host/io-queue-pair.js';
import type { WaitMode } from './host/waiter.js';
import type { NamespaceSpec } from './local-device.js';
import type { MetricsServerOptions } from './metrics/server.js';
import { invalidArgument } from './host/arguments.js';
import type { TcpTarget } from './transport/tcp/target-options.js';

export interface EngineOptions {
  /** The namespaces of an in-process controller; or `target` instead. */
  namespaces?: NamespaceSpec[];
  /**
   * A remote controller instead of namespaces: NVMe/TCP (README, "NVMe/TCP
   * host"). Each thread that does I/O connects its own I/O queue.
   */
  target?: TcpTarget;
  /**
   * A PCIe NVMe controller bound to vfio-pci instead of namespaces: its PCI
   * address (0000:00:04.0). Each thread that does I/O gets an I/O queue pair
   * of its own on it (README, "VFIO").
   */
  pci?: string;
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
  /**
   * How worker threads' queue pairs learn of completions (see README):
   * 'adaptive' (default) waits in the ring for a bounded time after each
   * event-loop turn that left I/O in flight; 'event-loop', 'ring' and 'poll'
   * pin one way. The main thread always waits through its event loop.
   */
  waitMode?: WaitMode;
  /** Controller tuning (MDTS, MQES, identity, ...). */
  controller?: Omit<ControllerOptions, 'arena' | 'namespaces'>;
  /**
   * Prometheus metrics: counted unless false (default true); an object also
   * serves them at http://host:port/metrics (default 127.0.0.1:9469), with
   * its connection limits (timeouts, maxConnections: see MetricsServerOptions).
   */
  metrics?: boolean | MetricsServerOptions;
  /**
   * Milliseconds an I/O command may stay outstanding, in every thread (default 30000, Linux's io_timeout;
   * 0 or Infinity: none): past it, Abort; one more timeout later, a reset (README, "Command timeouts").
   */
  ioTimeoutMs?: number;
  /** The same for admin commands (default 60000, Linux's admin_timeout): past it, the engine resets. */
  adminTimeoutMs?: number;
}

/** Namespaces (an in-process controller), a target (a remote one) or a PCI address, one of them; controller tuning only for the first. */
export function checkDeviceChoice(opts: EngineOptions): void {
  // None: the namespaces' own check says what is missing.
  const given = (['namespaces', 'target', 'pci'] as const).filter((k) => opts[k] !== undefined);
  if (given.length > 1) {
    throw invalidArgument(given.join(' / '), 'one of them: namespaces for an in-process controller, target for a remote one, pci for a PCIe one', given.join(' and '));
  }
  if (opts.pci !== undefined && typeof opts.pci !== 'string') throw invalidArgument('pci', 'a PCI address such as 0000:00:04.0', opts.pci);
  const other = opts.target !== undefined ? 'target' : opts.pci !== undefined ? 'pci' : undefined;
  if (other && opts.controller !== undefined) throw invalidArgument('controller', `absent with ${other} (that controller is tuned on its own side)`, opts.controller);
}

/**
 * The buffer a main-thread read returns, for `nlb` blocks. A count the queue
 * refuses gets an empty one, so the queue's one-line error names the count
 * before any large buffer is made.
 */
export function resultBuffer(q: IoQueuePair, nlb: number, lbaSize: number): Uint8Array {
  return new Uint8Array(Number.isSafeInteger(nlb) && nlb > 0 && nlb * lbaSize <= q.maxTransfer ? nlb * lbaSize : 0);
}

/** How many `lbaSize` blocks `data` holds; an error naming `name` unless it is a Uint8Array of whole blocks. */
export function wholeBlocks(name: string, data: Uint8Array, lbaSize: number): number {
  if (!(data instanceof Uint8Array) || data.length === 0 || data.length % lbaSize !== 0) {
    throw invalidArgument(name, `a Uint8Array of whole ${lbaSize}-byte blocks`, data);
  }
  return data.length / lbaSize;
}

/** One command of `engine.batch()`: reads return their data (in `buffer` when given). */
export type EngineBatchOp =
  | { op: 'read'; nsid: number; slba: number; nlb: number; buffer?: Uint8Array }
  | { op: 'write'; nsid: number; slba: number; data: Uint8Array; fua?: boolean }
  | { op: 'flush'; nsid?: number }
  | { op: 'writeZeroes'; nsid: number; slba: number; nlb: number; deallocate?: boolean; fua?: boolean };
