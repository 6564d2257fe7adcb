/**
 * Shared by the controller conformance tests in this folder: the register
 * file and the controller state machine (NVMe 1.4, sections 3.1 and 7.3 -
 * 7.6), driven directly through the transport's 32/64-bit register accesses
 * and through the host driver.
 *
 * Register offsets and bit positions are written out here from the spec, not
 * taken from src/engine/spec, so a wrong table there fails these tests too.
 *
 * Importing this module registers an afterEach hook in the test file that
 * runs the clean-ups the controller and namespace helpers register.
 */
import { expect } from 'vitest';
import * as path from 'node:path';
import { bringUp, scratch, makeController, tempDir, tick, stalledBackend, type Harness, type HarnessOptions, type StalledDevice } from '../../../helpers/harness.js';
import type { DataPath } from '../../../../src/engine/uring/data-path.js';
import type { IoRing } from '../../../../src/engine/uring/ring.js';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import type { IoDone } from '../../../../src/engine/device/backends/backend.js';
import type { NvmeController } from '../../../../src/engine/device/controller.js';
import type { DmaArena } from '../../../../src/engine/dma-arena.js';
import { NvmeDriver } from '../../../../src/engine/host/driver.js';
import type { Transport } from '../../../../src/engine/transport/transport.js';
import type { Completion } from '../../../../src/engine/spec/command.js';

// ------------------------------------------------------------------ spec constants (Figure 78 and 3.1.x)

export const CAP = 0x00;
export const VS = 0x08;
export const INTMS = 0x0c;
export const INTMC = 0x10;
export const CC = 0x14;
export const CSTS = 0x1c;
export const NSSR = 0x20;
export const AQA = 0x24;
export const ASQ = 0x28;
export const ACQ = 0x30;

export const sqTailDb = (qid: number, dstrd = 0): number => 0x1000 + 2 * qid * (4 << dstrd);
export const cqHeadDb = (qid: number, dstrd = 0): number => 0x1000 + (2 * qid + 1) * (4 << dstrd);

export interface CcFields {
  en: number;
  css: number;
  mps: number;
  ams: number;
  shn: number;
  iosqes: number;
  iocqes: number;
}
/** CC (3.1.5): EN 0, CSS 6:4, MPS 10:7, AMS 13:11, SHN 15:14, IOSQES 19:16, IOCQES 23:20. */
export function ccValue(f: Partial<CcFields> = {}): number {
  const v = { en: 1, css: 0, mps: 0, ams: 0, shn: 0, iosqes: 6, iocqes: 4, ...f };
  return (v.en | (v.css << 4) | (v.mps << 7) | (v.ams << 11) | (v.shn << 14) | (v.iosqes << 16) | (v.iocqes << 20)) >>> 0;
}

/** CSTS (3.1.6): RDY 0, CFS 1, SHST 3:2, NSSRO 4. */
export const RDY = 1 << 0;
export const CFS = 1 << 1;
export const NSSRO = 1 << 4;
export const shst = (csts: number): number => (csts >>> 2) & 0x3;

/** "NVMe" in ASCII (3.1.7). */
export const NSSR_NVME = 0x4e564d65;

/** Asynchronous Event Request completion DW0 (Figure 146): type 2:0, info 15:8, log page 23:16. */
export const aerDw0 = (type: number, info: number, lid: number): number => (type | (info << 8) | (lid << 16)) >>> 0;
export const AER_ERROR = 0;
export const INFO_INVALID_DOORBELL_REGISTER = 0x00;
export const INFO_INVALID_DOORBELL_VALUE = 0x01;
export const LID_ERROR_INFORMATION = 0x01;
export const LID_SMART = 0x02;

export const OPC_IDENTIFY = 0x06;
export const OPC_AER = 0x0c;

// ------------------------------------------------------------------ helpers

/** Clean-ups run after each test of the importing file, the last registered first. */
const { cleanups } = scratch();

/** Disables the controller and closes its backends at the end of the test, whatever state the driver is in. */
function disposeAtEnd(controller: NvmeController, transport: Transport): void {
  cleanups.push(async () => {
    transport.write32(CC, 0);
    await controller.close();
  });
}

export function rawController(opts: HarnessOptions = {}): ReturnType<typeof makeController> {
  const m = makeController(opts);
  disposeAtEnd(m.controller, m.transport);
  return m;
}

export async function up(opts: HarnessOptions = {}): Promise<Harness> {
  const h = await bringUp(opts);
  disposeAtEnd(h.controller, h.transport);
  return h;
}

/** Admin queue rings in the arena, with AQA / ASQ / ACQ programmed for them (the host side of 7.6.1 steps 3-4). */
export function programAdminQueues(t: Transport, arena: DmaArena, entries = 8): { asq: ReturnType<DmaArena['alloc']>; acq: ReturnType<DmaArena['alloc']> } {
  const asq = arena.alloc(entries * 64);
  const acq = arena.alloc(entries * 16);
  t.write32(AQA, (((entries - 1) << 16) | (entries - 1)) >>> 0);
  t.write64(ASQ, asq.iova);
  t.write64(ACQ, acq.iova);
  return { asq, acq };
}

export function csts(t: Transport): number {
  return t.read32(CSTS);
}

/** How an attach ended: 'attached' or the error code (never the driver itself: printing it would dump the arena). */
export function attachOutcome(t: Transport): Promise<string> {
  return NvmeDriver.attach(t).then(
    () => 'attached',
    (e: unknown) => String((e as { code?: unknown }).code),
  );
}

export function track<T>(p: Promise<T>): { settled: boolean; value: T | undefined; error: unknown } {
  const s: { settled: boolean; value: T | undefined; error: unknown } = { settled: false, value: undefined, error: undefined };
  p.then(
    (v) => {
      s.settled = true;
      s.value = v;
    },
    (e: unknown) => {
      s.settled = true;
      s.error = e;
    },
  );
  return s;
}

/** Submits an Asynchronous Event Request and checks that the controller holds it; `done` is its completion. */
export async function heldAer(h: Harness): Promise<{ done: Promise<Completion> }> {
  const done = h.driver.adminPassthru({ opcode: OPC_AER });
  const s = track(done);
  await tick(5);
  expect(s.settled, 'an AER with no event to report must stay outstanding').toBe(false);
  return { done };
}

/** A transport that rewrites some of the host's register writes: how the driver is made to program a bad configuration. */
export class TamperingTransport implements Transport {
  readonly name = 'tampering';
  constructor(
    private readonly inner: Transport,
    private readonly w32: (offset: number, value: number) => number,
    private readonly w64: (offset: number, value: number) => number,
  ) {}
  get arena(): DmaArena {
    return this.inner.arena;
  }
  read32(offset: number): number {
    return this.inner.read32(offset);
  }
  read64(offset: number): number {
    return this.inner.read64(offset);
  }
  write32(offset: number, value: number): void {
    this.inner.write32(offset, this.w32(offset, value));
  }
  write64(offset: number, value: number): void {
    this.inner.write64(offset, this.w64(offset, value));
  }
  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    this.inner.setInterruptHandler(vector, handler);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A file backend that counts flushes and records CSTS.SHST at the moment each flush finishes. */
class WatchedFileBackend extends FileBackend {
  flushes = 0;
  shstWhenFlushed: number[] = [];
  watch: (() => number) | undefined;
  override flush(done: IoDone, ring?: IoRing): void {
    this.flushes++;
    super.flush((err) => {
      if (this.watch) this.shstWhenFlushed.push(this.watch());
      done(err);
    }, ring);
  }
}

/** A file namespace whose commands stay in flight (see stalledDevice). */
export function stalledNamespace(dataPath: DataPath): { backend: WatchedFileBackend; device: StalledDevice } {
  return stalledBackend(dataPath, (o) => new WatchedFileBackend(o), cleanups);
}

export function fileNamespace(size = 16 << 20): { backend: WatchedFileBackend; file: string } {
  const tmp = tempDir();
  const file = path.join(tmp.dir, 'ns.img');
  const backend = new WatchedFileBackend({ path: file, size });
  // Registered before the controller's disposal, so it runs after it (cleanups run in reverse).
  cleanups.push(async () => {
    await backend.close();
    tmp.cleanup();
  });
  return { backend, file };
}
