/**
 * One call from options to a ready driver: a DMA arena, namespaces over memory
 * or files, an in-process controller, and the host driver brought up on it.
 */
import { DmaArena } from './dma-arena.js';
import { NvmeController, type ControllerOptions } from './device/controller.js';
import { MemoryBackend } from './device/backends/memory.js';
import { FileBackend } from './device/backends/file.js';
import type { Backend } from './device/backends/backend.js';
import type { LbaSize } from './device/namespace.js';
import { LocalTransport } from './transport/local.js';
import { NvmeDriver, type DriverOptions } from './host/driver.js';
import { NvmqError } from './host/errors.js';

export type NamespaceSpec =
  | { backend: 'memory'; size: number; lbaSize?: LbaSize; nsid?: number }
  | { backend: 'file'; path: string; size?: number; defaultSize?: number; create?: boolean; force?: boolean; readOnly?: boolean; direct?: boolean; lbaSize?: LbaSize; nsid?: number };

export interface OpenControllerOptions extends DriverOptions {
  namespaces: NamespaceSpec[];
  /** DMA arena size in bytes (default 64 MiB). */
  arenaSize?: number;
  /** Controller tuning: MDTS, MQES, queue count, ready delay, identity. */
  controller?: Omit<ControllerOptions, 'arena' | 'namespaces'>;
}

export function makeBackend(spec: NamespaceSpec): Backend {
  if (spec.backend === 'memory') return new MemoryBackend({ size: spec.size });
  if (spec.backend === 'file') return new FileBackend(spec);
  throw new NvmqError('NVMQ_INVALID_ARGUMENT', `unknown backend ${(spec as { backend: unknown }).backend}: use memory or file`);
}

/** Opens the namespaces, starts a local controller and attaches the driver to it. */
export async function openController(opts: OpenControllerOptions): Promise<NvmeDriver> {
  const arena = new DmaArena({ sizeBytes: opts.arenaSize ?? 64 * 1024 * 1024 });
  const backends: Backend[] = [];
  try {
    for (const ns of opts.namespaces) backends.push(makeBackend(ns));
    const controller = new NvmeController({
      ...opts.controller,
      arena,
      namespaces: backends.map((backend, i) => ({ backend, lbaSize: opts.namespaces[i]!.lbaSize, nsid: opts.namespaces[i]!.nsid })),
    });
    return await NvmeDriver.attach(new LocalTransport(controller), opts);
  } catch (e) {
    await Promise.all(backends.map((b) => b.close()));
    throw e;
  }
}
