/**
 * The composition root of an in-process device: options checked, a DMA arena,
 * namespaces over memory or files, a controller, and the host driver brought
 * up on it. `openController()` and `Engine.open()` both build through
 * `openLocal()`, so a failure at any step undoes every step before it: files,
 * directories and locks the open created are removed, nothing stays open or
 * waiting.
 */
import { DmaArena } from './dma-arena.js';
import { NvmeController, type ControllerOptions } from './device/controller.js';
import { MemoryBackend } from './device/backends/memory.js';
import { FileBackend } from './device/backends/file.js';
import type { Backend } from './device/backends/backend.js';
import { SUPPORTED_LBA_SIZES, type LbaSize } from './device/namespace.js';
import { LocalTransport } from './transport/local.js';
import { NvmeDriver, type DriverOptions } from './host/driver.js';
import { NvmqError } from './errors.js';
import { invalidArgument } from './host/arguments.js';
import { openRemote } from './remote-device.js';
import type { TcpTarget } from './transport/tcp/tcp-transport.js';

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

/** What `openLocal()` builds; `driver.close()` takes all of it down. */
export interface LocalDevice {
  driver: NvmeDriver;
  controller: NvmeController;
  /** Undoes the open after a later step failed: shuts the driver down and removes what the open created. */
  abandon(): Promise<void>;
}

/** Largest namespace or arena nvmq asks for: 2^48 bytes (a SharedArrayBuffer or file beyond that is not a typo we should honour). */
const MAX_BYTES = 2 ** 48;
/** Largest NSID a controller accepts (NVMe 1.4, 6.1: FFFFFFF0h and above are reserved or broadcast). */
const MAX_NSID = 0xffffffef;

function checkBool(where: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw invalidArgument(`${where}.${name}`, 'true or false', v);
}

/** A namespace's size: whole blocks. A size for a new image (defaultSize) may be any byte count: it is rounded up to whole blocks. */
function checkSize(where: string, name: string, v: unknown, lbaSize: number, wholeBlocks: boolean): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (wholeBlocks ? lbaSize : 1) || v > MAX_BYTES || (wholeBlocks && v % lbaSize !== 0)) {
    const accepted = wholeBlocks ? `a whole number of ${lbaSize}-byte blocks from ${lbaSize} to 2^48 bytes` : 'a byte count from 1 to 2^48 (rounded up to whole blocks)';
    throw invalidArgument(`${where}.${name}`, accepted, v);
  }
}

/** Throws NVMQ_INVALID_ARGUMENT naming the first bad field of the namespace list. */
export function checkNamespaceSpecs(specs: unknown): asserts specs is NamespaceSpec[] {
  if (!Array.isArray(specs) || specs.length === 0) throw invalidArgument('namespaces', "a non-empty array of { backend: 'memory' | 'file', ... }", specs);
  const nsids = new Set<number>();
  let next = 1;
  specs.forEach((s: unknown, i) => {
    const where = `namespaces[${i}]`;
    if (typeof s !== 'object' || s === null) throw invalidArgument(where, 'an object', s);
    const spec = s as Record<string, unknown>;
    const lbaSize = spec.lbaSize ?? 4096;
    if (!(SUPPORTED_LBA_SIZES as readonly unknown[]).includes(lbaSize)) throw invalidArgument(`${where}.lbaSize`, '512 or 4096', spec.lbaSize);
    const nsid = spec.nsid ?? next;
    if (typeof nsid !== 'number' || !Number.isInteger(nsid) || nsid < 1 || nsid > MAX_NSID) throw invalidArgument(`${where}.nsid`, `1..${MAX_NSID}`, spec.nsid);
    if (nsids.has(nsid)) throw invalidArgument(`${where}.nsid`, 'an NSID no other namespace has', nsid);
    nsids.add(nsid);
    next = nsid + 1;
    if (spec.backend === 'memory') {
      if (spec.size === undefined) throw invalidArgument(`${where}.size`, 'given for a memory namespace', undefined);
      checkSize(where, 'size', spec.size, lbaSize as number, true);
    } else if (spec.backend === 'file') {
      if (typeof spec.path !== 'string' || spec.path.length === 0 || spec.path.includes('\0')) throw invalidArgument(`${where}.path`, 'a non-empty file or device path', spec.path);
      checkSize(where, 'size', spec.size, lbaSize as number, true);
      checkSize(where, 'defaultSize', spec.defaultSize, lbaSize as number, false);
      for (const flag of ['create', 'force', 'readOnly', 'direct']) checkBool(where, flag, spec[flag]);
    } else {
      throw invalidArgument(`${where}.backend`, "'memory' or 'file'", spec.backend);
    }
  });
}

export function makeBackend(spec: NamespaceSpec): Backend {
  if (spec.backend === 'memory') return new MemoryBackend({ size: spec.size });
  // The LBA size the namespace will use, so the image is checked against it before anything is created.
  if (spec.backend === 'file') return new FileBackend({ ...spec, lbaSize: spec.lbaSize ?? 4096 });
  throw invalidArgument('backend', "'memory' or 'file'", (spec as { backend: unknown }).backend);
}

/** A RangeError or TypeError from a constructor is a bad option: give it the engine's code. */
function asArgumentError(e: unknown): unknown {
  if (e instanceof RangeError || e instanceof TypeError) return new NvmqError('NVMQ_INVALID_ARGUMENT', e.message, { cause: e });
  return e;
}

/**
 * Builds the device and brings the driver up on it. On failure every step
 * taken is undone (backends discarded: what this open created is removed)
 * before the error goes on.
 */
export async function openLocal(opts: {
  namespaces: NamespaceSpec[];
  arenaSize: number;
  controller?: Omit<ControllerOptions, 'arena' | 'namespaces'> | undefined;
  driver: DriverOptions;
}): Promise<LocalDevice> {
  checkNamespaceSpecs(opts.namespaces);
  if (!Number.isSafeInteger(opts.arenaSize) || opts.arenaSize < 1 << 20 || opts.arenaSize > MAX_BYTES) {
    throw invalidArgument('arenaSize', '1 MiB to 2^48 bytes', opts.arenaSize);
  }
  const backends: Backend[] = [];
  let transport: LocalTransport | undefined;
  const undo = async (): Promise<void> => {
    // The transport closes the controller (its event watcher and rings) and with it the backends; then
    // each backend removes what its open created, the last first (a later image may sit in a directory
    // an earlier one created). discard() never rejects.
    // Marked first: a marked backend's close() keeps the lock on an image this open created, so nothing
    // else can open it before discard() removes it.
    for (const b of backends) b.prepareDiscard?.();
    if (transport) await transport.close().catch(() => {});
    for (const b of backends.reverse()) await b.discard();
  };
  try {
    const arena = new DmaArena({ sizeBytes: opts.arenaSize });
    for (const ns of opts.namespaces) backends.push(makeBackend(ns));
    const controller = new NvmeController({
      ...opts.controller,
      arena,
      namespaces: backends.map((backend, i) => ({ backend, lbaSize: opts.namespaces[i]!.lbaSize, nsid: opts.namespaces[i]!.nsid })),
    });
    transport = new LocalTransport(controller);
    const driver = await NvmeDriver.attach(transport, opts.driver);
    const abandon = async (): Promise<void> => {
      await driver.shutdown().catch(() => {});
      await undo();
    };
    return { driver, controller, abandon };
  } catch (e) {
    await undo();
    throw asArgumentError(e);
  }
}

/** A remote controller: the target instead of namespaces. */
export interface OpenRemoteControllerOptions extends DriverOptions {
  target: TcpTarget;
  /** DMA arena size in bytes (default 64 MiB). */
  arenaSize?: number;
}

/**
 * Opens the namespaces, starts a local controller and attaches the driver to
 * it; or, with `target`, connects to a remote controller and attaches the
 * driver to that.
 */
export async function openController(opts: OpenControllerOptions | OpenRemoteControllerOptions): Promise<NvmeDriver> {
  if ('target' in opts) {
    const { target, arenaSize, ...driver } = opts;
    return (await openRemote({ target, arenaSize: arenaSize ?? 64 * 1024 * 1024, driver })).driver;
  }
  const { namespaces, arenaSize, controller, ...driver } = opts;
  return (await openLocal({ namespaces, arenaSize: arenaSize ?? 64 * 1024 * 1024, controller, driver })).driver;
}
