/**
 * What a controller is configured with: the options a caller gives, checked
 * once and resolved to the values every part of the controller reads.
 */
import type { DmaArena } from '../dma-arena.js';
import type { NamespaceConfig } from './namespace.js';
import type { DataPath } from '../uring/data-path.js';

export interface ControllerIdentity {
  serial: string;
  model: string;
  firmware: string;
}

export interface ControllerOptions {
  arena: DmaArena;
  namespaces: Array<NamespaceConfig & { nsid?: number }>;
  /** I/O queue pairs the controller supports (Number of Queues maximum), default 64. */
  maxIoQueues?: number;
  /** CAP.MQES, 0's based largest queue size, default 4095. */
  mqes?: number;
  /** Identify MDTS: transfers up to 2^MDTS minimum-size pages; 0 = no limit. Default 7 (512 KiB). */
  mdts?: number;
  /** CAP.DSTRD, default 0 (doorbells 4 bytes apart). */
  dstrd?: number;
  /** CAP.TO in 500 ms units, default 10 (5 s). */
  timeout?: number;
  /** How long the controller takes to report CSTS.RDY after CC.EN (emulates real bring-up); default 0. */
  readyDelayMs?: number;
  /** Interrupt vectors (MSI-X table size), default maxIoQueues + 1. */
  interruptVectors?: number;
  identity?: Partial<ControllerIdentity>;
  /**
   * How file namespaces reach the kernel: 'io_uring' (one ring per I/O SQ in
   * the thread executing it; throws when unavailable), 'portable' (node:fs),
   * or 'auto' (default: io_uring when the addon and kernel allow it).
   */
  dataPath?: DataPath | 'auto';
}

/** The options as every part of the controller reads them: checked, with defaults filled in. */
export interface ControllerConfig {
  readonly maxIoQueues: number;
  readonly mqes: number;
  readonly mdts: number;
  readonly dstrd: number;
  readonly timeout: number;
  readonly readyDelayMs: number;
  readonly interruptVectors: number;
  readonly identity: ControllerIdentity;
  /** Identify ELPE + 1. */
  readonly errorLogEntries: number;
  /** Identify AERL (0's based): outstanding Asynchronous Event Requests allowed, minus one. */
  readonly aerl: number;
  /** Identify ACL (0's based). */
  readonly acl: number;
  /** The controller's one temperature, reported by both sensors. */
  readonly temperatureKelvin: number;
}

function checkRange(name: string, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${name} must be ${lo}..${hi}, got ${v}`);
  return v;
}

export function controllerConfig(opts: Omit<ControllerOptions, 'arena' | 'namespaces'>): ControllerConfig {
  const maxIoQueues = checkRange('maxIoQueues', opts.maxIoQueues ?? 64, 1, 65534);
  return {
    maxIoQueues,
    mqes: checkRange('mqes', opts.mqes ?? 4095, 1, 65535),
    mdts: checkRange('mdts', opts.mdts ?? 7, 0, 15),
    dstrd: checkRange('dstrd', opts.dstrd ?? 0, 0, 15),
    timeout: opts.timeout ?? 10,
    readyDelayMs: opts.readyDelayMs ?? 0,
    interruptVectors: opts.interruptVectors ?? maxIoQueues + 1,
    identity: {
      serial: opts.identity?.serial ?? 'NVMQ0001',
      model: opts.identity?.model ?? 'nvmq virtual controller',
      firmware: opts.identity?.firmware ?? '0.1.0',
    },
    errorLogEntries: 64,
    aerl: 3,
    acl: 3,
    temperatureKelvin: 313,
  };
}
