/**
 * Test harness: a real controller over real backends, reached through the
 * in-process transport, with the host driver brought up on it. Tests keep
 * handles on every layer so they can poke registers, send raw commands and
 * inspect memory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DmaArena } from '../../src/engine/dma-arena.js';
import { NvmeController, type ControllerOptions } from '../../src/engine/device/controller.js';
import { MemoryBackend } from '../../src/engine/device/backends/memory.js';
import type { Backend } from '../../src/engine/device/backends/backend.js';
import type { LbaSize } from '../../src/engine/device/namespace.js';
import { LocalTransport } from '../../src/engine/transport/local.js';
import { NvmeDriver, type DriverOptions } from '../../src/engine/host/driver.js';

export interface HarnessOptions {
  /** Namespaces; default one 16 MiB memory namespace with 4 KiB blocks. */
  namespaces?: Array<{ backend: Backend; lbaSize?: LbaSize; nsid?: number }>;
  arenaSize?: number;
  controller?: Omit<ControllerOptions, 'arena' | 'namespaces'>;
  driver?: DriverOptions;
}

export interface Harness {
  arena: DmaArena;
  controller: NvmeController;
  transport: LocalTransport;
  driver: NvmeDriver;
  close(): Promise<void>;
}

export function memoryNamespace(size = 16 << 20, lbaSize: LbaSize = 4096, nsid?: number): { backend: Backend; lbaSize: LbaSize; nsid?: number } {
  return { backend: new MemoryBackend({ size }), lbaSize, ...(nsid !== undefined ? { nsid } : {}) };
}

/** Controller and transport only, not brought up: for register-level tests. */
export function makeController(opts: HarnessOptions = {}): { arena: DmaArena; controller: NvmeController; transport: LocalTransport } {
  const arena = new DmaArena({ sizeBytes: opts.arenaSize ?? 16 << 20 });
  const controller = new NvmeController({ ...opts.controller, arena, namespaces: opts.namespaces ?? [memoryNamespace()] });
  return { arena, controller, transport: new LocalTransport(controller) };
}

export async function bringUp(opts: HarnessOptions = {}): Promise<Harness> {
  const { arena, controller, transport } = makeController(opts);
  const driver = await NvmeDriver.attach(transport, opts.driver);
  return { arena, controller, transport, driver, close: () => driver.close() };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-test-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic bytes for data checks. */
export function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Resolves after pending microtasks and one macrotask turn (interrupt delivery, fs callbacks). */
export function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Fast byte comparison for large buffers; on a mismatch the message names the first differing offset. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): string {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`;
  if (Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.length), Buffer.from(expected.buffer, expected.byteOffset, expected.length)) === 0) return 'equal';
  let i = 0;
  while (actual[i] === expected[i]) i++;
  return `differ first at byte ${i}: ${actual[i]} != ${expected[i]}`;
}

/** True when every byte of `b` is `value`. */
export function allBytes(b: Uint8Array, value: number): boolean {
  return b.every((x) => x === value);
}
