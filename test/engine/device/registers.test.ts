/**
 * Controller conformance: the register file and the controller state machine
 * (NVMe 1.4, sections 3.1 and 7.3 - 7.6), driven directly through the
 * transport's 32/64-bit register accesses and through the host driver.
 *
 * Register offsets and bit positions are written out here from the spec, not
 * taken from src/engine/spec, so a wrong table there fails these tests too.
 */
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bringUp, makeController, memoryNamespace, tempDir, tick, pattern, stalledBackend, DATA_PATHS, type Harness, type HarnessOptions, type StalledDevice } from '../../helpers/harness.js';
import type { DataPath } from '../../../src/engine/uring/data-path.js';
import type { IoRing } from '../../../src/engine/uring/ring.js';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import type { IoDone } from '../../../src/engine/device/backends/backend.js';
import type { NvmeController } from '../../../src/engine/device/controller.js';
import type { DmaArena } from '../../../src/engine/dma-arena.js';
import { NvmeDriver } from '../../../src/engine/host/driver.js';
import type { Transport } from '../../../src/engine/transport/transport.js';
import type { Completion } from '../../../src/engine/spec/command.js';

// ------------------------------------------------------------------ spec constants (Figure 78 and 3.1.x)

const CAP = 0x00;
const VS = 0x08;
const INTMS = 0x0c;
const INTMC = 0x10;
const CC = 0x14;
const CSTS = 0x1c;
const NSSR = 0x20;
const AQA = 0x24;
const ASQ = 0x28;
const ACQ = 0x30;

const sqTailDb = (qid: number, dstrd = 0): number => 0x1000 + 2 * qid * (4 << dstrd);
const cqHeadDb = (qid: number, dstrd = 0): number => 0x1000 + (2 * qid + 1) * (4 << dstrd);

interface CcFields {
  en: number;
  css: number;
  mps: number;
  ams: number;
  shn: number;
  iosqes: number;
  iocqes: number;
}
/** CC (3.1.5): EN 0, CSS 6:4, MPS 10:7, AMS 13:11, SHN 15:14, IOSQES 19:16, IOCQES 23:20. */
function ccValue(f: Partial<CcFields> = {}): number {
  const v = { en: 1, css: 0, mps: 0, ams: 0, shn: 0, iosqes: 6, iocqes: 4, ...f };
  return (v.en | (v.css << 4) | (v.mps << 7) | (v.ams << 11) | (v.shn << 14) | (v.iosqes << 16) | (v.iocqes << 20)) >>> 0;
}

/** CSTS (3.1.6): RDY 0, CFS 1, SHST 3:2, NSSRO 4. */
const RDY = 1 << 0;
const CFS = 1 << 1;
const NSSRO = 1 << 4;
const shst = (csts: number): number => (csts >>> 2) & 0x3;

/** "NVMe" in ASCII (3.1.7). */
const NSSR_NVME = 0x4e564d65;

/** Asynchronous Event Request completion DW0 (Figure 146): type 2:0, info 15:8, log page 23:16. */
const aerDw0 = (type: number, info: number, lid: number): number => (type | (info << 8) | (lid << 16)) >>> 0;
const AER_ERROR = 0;
const INFO_INVALID_DOORBELL_REGISTER = 0x00;
const INFO_INVALID_DOORBELL_VALUE = 0x01;
const LID_ERROR_INFORMATION = 0x01;
const LID_SMART = 0x02;

const OPC_IDENTIFY = 0x06;
const OPC_AER = 0x0c;

// ------------------------------------------------------------------ helpers

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Disables the controller and closes its backends at the end of the test, whatever state the driver is in. */
function disposeAtEnd(controller: NvmeController, transport: Transport): void {
  cleanups.push(async () => {
    transport.write32(CC, 0);
    await controller.close();
  });
}

function rawController(opts: HarnessOptions = {}): ReturnType<typeof makeController> {
  const m = makeController(opts);
  disposeAtEnd(m.controller, m.transport);
  return m;
}

async function up(opts: HarnessOptions = {}): Promise<Harness> {
  const h = await bringUp(opts);
  disposeAtEnd(h.controller, h.transport);
  return h;
}

/** Admin queue rings in the arena, with AQA / ASQ / ACQ programmed for them (the host side of 7.6.1 steps 3-4). */
function programAdminQueues(t: Transport, arena: DmaArena, entries = 8): { asq: ReturnType<DmaArena['alloc']>; acq: ReturnType<DmaArena['alloc']> } {
  const asq = arena.alloc(entries * 64);
  const acq = arena.alloc(entries * 16);
  t.write32(AQA, (((entries - 1) << 16) | (entries - 1)) >>> 0);
  t.write64(ASQ, asq.iova);
  t.write64(ACQ, acq.iova);
  return { asq, acq };
}

function csts(t: Transport): number {
  return t.read32(CSTS);
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

/** How an attach ended: 'attached' or the error code (never the driver itself: printing it would dump the arena). */
function attachOutcome(t: Transport): Promise<string> {
  return NvmeDriver.attach(t).then(
    () => 'attached',
    (e: unknown) => String((e as { code?: unknown }).code),
  );
}

function track<T>(p: Promise<T>): { settled: boolean; value: T | undefined; error: unknown } {
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
async function heldAer(h: Harness): Promise<{ done: Promise<Completion> }> {
  const done = h.driver.adminPassthru({ opcode: OPC_AER });
  const s = track(done);
  await tick(5);
  expect(s.settled, 'an AER with no event to report must stay outstanding').toBe(false);
  return { done };
}

/** A transport that rewrites some of the host's register writes: how the driver is made to program a bad configuration. */
class TamperingTransport implements Transport {
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
function stalledNamespace(dataPath: DataPath): { backend: WatchedFileBackend; device: StalledDevice } {
  return stalledBackend(dataPath, (o) => new WatchedFileBackend(o), cleanups);
}

function fileNamespace(size = 16 << 20): { backend: WatchedFileBackend; file: string } {
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

// ------------------------------------------------------------------ CAP / VS

describe('CAP and VS', () => {
  it('CAP reports the defaults: MQES 4095, CQR, no optional arbitration, TO 10, DSTRD 0, NSSRS, NVM command set, MPSMIN 0, MPSMAX 4', () => {
    const { transport: t } = rawController();
    const lo = t.read32(CAP);
    const hi = t.read32(CAP + 4);
    expect(lo & 0xffff).toBe(4095); // MQES
    expect((lo >>> 16) & 1).toBe(1); // CQR
    expect((lo >>> 17) & 0x3).toBe(0); // AMS
    expect((lo >>> 24) & 0xff).toBe(10); // TO
    expect(hi & 0xf).toBe(0); // DSTRD (bits 35:32)
    expect((hi >>> 4) & 1).toBe(1); // NSSRS (bit 36)
    expect((hi >>> 5) & 0xff).toBe(0x01); // CSS (bits 44:37): NVM command set only
    expect((hi >>> 16) & 0xf).toBe(0); // MPSMIN (bits 51:48)
    expect((hi >>> 20) & 0xf).toBe(4); // MPSMAX (bits 55:52)
    expect(lo >>> 0).toBe(0x0a010fff);
    expect(hi >>> 0).toBe(0x00400030);
    expect(t.read64(CAP)).toBe(0x00400030 * 0x1_0000_0000 + 0x0a010fff);
  });

  it('CAP follows the controller options (mqes, timeout, dstrd)', () => {
    const { transport: t } = rawController({ controller: { mqes: 63, timeout: 1, dstrd: 2 } });
    const lo = t.read32(CAP);
    const hi = t.read32(CAP + 4);
    expect(lo & 0xffff).toBe(63);
    expect((lo >>> 24) & 0xff).toBe(1);
    expect(hi & 0xf).toBe(2);
  });

  it('VS reports NVMe 1.4.0', () => {
    const { transport: t } = rawController();
    expect(t.read32(VS)).toBe(0x00010400);
  });

  it('CAP and VS are read-only', () => {
    const { transport: t } = rawController();
    const cap = t.read64(CAP);
    t.write32(CAP, 0);
    t.write32(CAP + 4, 0);
    t.write64(CAP, 0);
    t.write32(VS, 0x00020000);
    expect(t.read64(CAP)).toBe(cap);
    expect(t.read32(VS)).toBe(0x00010400);
  });

  it('a fresh controller is disabled: CC 0, CSTS 0', () => {
    const { transport: t } = rawController();
    expect(t.read32(CC)).toBe(0);
    expect(csts(t)).toBe(0);
  });
});

// ------------------------------------------------------------------ CC.EN 0 -> 1

describe('enabling (CC.EN 0 -> 1)', () => {
  it('a valid configuration sets CSTS.RDY and the admin queues run from ASQ / ACQ', () => {
    const { arena, transport: t } = rawController();
    const { asq, acq } = programAdminQueues(t, arena, 8);
    t.write32(CC, ccValue());
    expect(t.read32(CC)).toBe(ccValue());
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
    expect(shst(csts(t))).toBe(0);

    // An Identify Controller placed by hand in ASQ slot 0 completes in ACQ slot 0.
    const data = arena.alloc(4096);
    const dv = arena.view;
    dv.setUint32(asq.offset, (OPC_IDENTIFY | (0x1234 << 16)) >>> 0, true);
    dv.setUint32(asq.offset + 24, data.iova % 0x1_0000_0000, true);
    dv.setUint32(asq.offset + 28, Math.floor(data.iova / 0x1_0000_0000), true);
    dv.setUint32(asq.offset + 40, 0x01, true); // CNS 01h
    t.write32(sqTailDb(0), 1);
    const status = dv.getUint16(acq.offset + 14, true);
    expect(status & 1).toBe(1); // phase tag of the first pass
    expect(status >>> 1).toBe(0);
    expect(dv.getUint16(acq.offset + 12, true)).toBe(0x1234); // CID
    expect(dv.getUint16(acq.offset + 10, true)).toBe(0); // SQID
    expect(dv.getUint16(acq.offset + 8, true)).toBe(1); // SQHD
    expect(dv.getUint16(data.offset, true)).toBe(0x1b36); // Identify Controller VID landed in host memory
  });

  it('IOSQES / IOCQES may be left 0 at enable (they are only needed before I/O queues are created)', () => {
    const { arena, transport: t } = rawController();
    programAdminQueues(t, arena);
    t.write32(CC, ccValue({ iosqes: 0, iocqes: 0 }));
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
  });

  interface BadConfig {
    name: string;
    mqes?: number;
    cc?: Partial<CcFields>;
    aqa?: (value: number) => number;
    asq?: (iova: number, arena: DmaArena) => number;
    acq?: (iova: number, arena: DmaArena) => number;
  }
  const badConfigs: BadConfig[] = [
    { name: 'CC.MPS above CAP.MPSMAX', cc: { mps: 5 } },
    { name: 'CC.MPS 15', cc: { mps: 15 } },
    { name: 'CC.CSS 001b (reserved)', cc: { css: 1 } },
    { name: 'CC.CSS 111b (admin only) without CAP.CSS bit 7', cc: { css: 7 } },
    { name: 'CC.AMS weighted round robin without CAP.AMS support', cc: { ams: 1 } },
    { name: 'CC.AMS vendor specific without CAP.AMS support', cc: { ams: 7 } },
    { name: 'CC.IOSQES 7 (not 64-byte entries)', cc: { iosqes: 7 } },
    { name: 'CC.IOSQES 5', cc: { iosqes: 5 } },
    { name: 'CC.IOCQES 5 (not 16-byte entries)', cc: { iocqes: 5 } },
    { name: 'CC.IOCQES 6', cc: { iocqes: 6 } },
    { name: 'AQA.ASQS 0 (one-entry admin SQ)', aqa: (v) => (v & ~0xfff) >>> 0 },
    { name: 'AQA.ACQS 0 (one-entry admin CQ)', aqa: (v) => (v & ~(0xfff << 16)) >>> 0 },
    { name: 'AQA.ASQS above CAP.MQES', mqes: 63, aqa: (v) => ((v & ~0xfff) | 64) >>> 0 },
    { name: 'AQA.ACQS above CAP.MQES', mqes: 63, aqa: (v) => ((v & ~(0xfff << 16)) | (64 << 16)) >>> 0 },
    { name: 'ASQ zero', asq: () => 0 },
    { name: 'ASQ not page aligned', asq: (v) => v + 64 },
    { name: 'ASQ past the end of host memory', asq: (_v, a) => a.base + a.size },
    { name: 'ASQ below host memory', asq: (_v, a) => a.base - 4096 },
    { name: 'ACQ zero', acq: () => 0 },
    { name: 'ACQ not page aligned', acq: (v) => v + 0x200 },
    { name: 'ACQ past the end of host memory', acq: (_v, a) => a.base + a.size },
    { name: 'ACQ below host memory', acq: (_v, a) => a.base - 4096 },
  ];

  for (const bad of badConfigs) {
    it(`${bad.name}: CSTS.CFS, never CSTS.RDY (registers)`, async () => {
      const { arena, transport: t } = rawController({ controller: bad.mqes !== undefined ? { mqes: bad.mqes } : {} });
      const entries = 8;
      const asq = arena.alloc(entries * 64);
      const acq = arena.alloc(entries * 16);
      const aqa = (((entries - 1) << 16) | (entries - 1)) >>> 0;
      t.write32(AQA, bad.aqa ? bad.aqa(aqa) : aqa);
      t.write64(ASQ, bad.asq ? bad.asq(asq.iova, arena) : asq.iova);
      t.write64(ACQ, bad.acq ? bad.acq(acq.iova, arena) : acq.iova);
      t.write32(CC, ccValue(bad.cc));
      expect(csts(t) & CFS).toBe(CFS);
      expect(csts(t) & RDY).toBe(0);
      await tick(20);
      expect(csts(t) & RDY).toBe(0);
    });

    it(`${bad.name}: the driver's attach rejects with NVMQ_CONTROLLER_FATAL`, async () => {
      const { arena, controller, transport } = rawController({ controller: bad.mqes !== undefined ? { mqes: bad.mqes } : {} });
      const tampered = new TamperingTransport(
        transport,
        (offset, value) => {
          if (offset === CC && value & 1 && bad.cc) return ccValue(bad.cc);
          if (offset === AQA && bad.aqa) return bad.aqa(value);
          return value;
        },
        (offset, value) => {
          if (offset === ASQ && bad.asq) return bad.asq(value, arena);
          if (offset === ACQ && bad.acq) return bad.acq(value, arena);
          return value;
        },
      );
      expect(await attachOutcome(tampered)).toBe('NVMQ_CONTROLLER_FATAL');
      expect(csts(transport) & (RDY | CFS)).toBe(CFS);
      expect(controller.state).not.toBe('ready');
    });
  }

  it('after a fatal enable, CC.EN = 0 clears CSTS.CFS and a valid configuration then comes up', () => {
    const { arena, transport: t } = rawController();
    programAdminQueues(t, arena);
    t.write32(CC, ccValue({ mps: 5 }));
    expect(csts(t) & (RDY | CFS)).toBe(CFS);
    t.write32(CC, 0);
    expect(csts(t) & (RDY | CFS)).toBe(0);
    t.write32(CC, ccValue());
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
  });

  it('the driver also recovers a controller left in the fatal state', async () => {
    const { arena, controller, transport: t } = rawController();
    programAdminQueues(t, arena);
    t.write32(CC, ccValue({ css: 1 }));
    expect(csts(t) & CFS).toBe(CFS);
    const driver = await NvmeDriver.attach(t);
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
    expect(driver.controller.vid).toBe(0x1b36);
    expect(controller.state).toBe('ready');
  });
});

// ------------------------------------------------------------------ CAP.TO and a slow controller

describe('ready delay and CAP.TO', () => {
  it('with readyDelayMs, CSTS.RDY follows CC.EN only after the delay (registers)', async () => {
    const { arena, transport: t } = rawController({ controller: { readyDelayMs: 100 } });
    programAdminQueues(t, arena);
    const start = performance.now();
    t.write32(CC, ccValue());
    expect(csts(t) & (RDY | CFS)).toBe(0);
    await tick(30);
    expect(csts(t) & RDY).toBe(0);
    await waitFor(() => (csts(t) & RDY) !== 0, 'CSTS.RDY');
    expect(performance.now() - start).toBeGreaterThanOrEqual(90);
  });

  it('the driver waits for CSTS.RDY before its first admin command', async () => {
    const start = performance.now();
    const h = await up({ controller: { readyDelayMs: 150 } });
    expect(performance.now() - start).toBeGreaterThanOrEqual(140);
    expect(csts(h.transport) & RDY).toBe(RDY);
    expect(h.driver.controller.vid).toBe(0x1b36);
    expect(h.driver.namespaces.size).toBe(1);
  });

  it('a controller that never becomes ready within CAP.TO (1 = 500 ms): attach rejects with NVMQ_TIMEOUT', async () => {
    const { transport } = rawController({ controller: { timeout: 1, readyDelayMs: 60_000 } });
    const start = performance.now();
    expect(await attachOutcome(transport)).toBe('NVMQ_TIMEOUT');
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(490);
    expect(elapsed).toBeLessThan(5000);
    expect(csts(transport) & RDY).toBe(0);
  });
});

// ------------------------------------------------------------------ CC.EN 1 -> 0

describe('controller reset (CC.EN 1 -> 0)', () => {
  it('clears CSTS.RDY and deletes the I/O queues: a later doorbell write to one raises an error event', async () => {
    const h = await up({ namespaces: [memoryNamespace()] });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    await qp.write(1, 0, 1, pattern(4096, 1));
    expect(csts(t) & RDY).toBe(RDY);

    t.write32(CC, t.read32(CC) & ~1);
    // Nothing was in flight on a memory namespace, so the reset is complete at once.
    expect(csts(t) & (RDY | CFS)).toBe(0);
    expect(h.controller.state).toBe('disabled');

    await h.driver.reset();
    expect(csts(t) & RDY).toBe(RDY);
    const { done: aer } = await heldAer(h);
    t.write32(sqTailDb(1), 1);
    const c = await aer;
    expect(c.status).toBe(0);
    expect(c.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));

    // And the CQ is gone too: an SQ cannot be attached to it.
    const sqMem = h.arena.alloc(8 * 64);
    const create = await h.driver.adminPassthru({ opcode: 0x01, prp1: sqMem.iova, cdw10: (7 << 16) | 1, cdw11: (1 << 16) | 1 });
    expect(create.status).toBe((1 << 14) | (1 << 8) | 0x00); // Completion Queue Invalid, DNR
  });

  it.each(DATA_PATHS)('commands in flight on a file namespace are dropped: CSTS.RDY clears, no completion is posted, the host fails them on reset (%s)', async (dataPath) => {
    const { backend } = stalledNamespace(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    const reads = Array.from({ length: 8 }, (_, i) => track(qp.passthru({ opcode: 0x02, nsid: 1, cdw10: i * 16, cdw12: 15 }, { buffer: new Uint8Array(16 * 4096), direction: 'from-device' })));
    t.write32(CC, t.read32(CC) & ~1);
    await waitFor(() => (csts(t) & RDY) === 0, 'CSTS.RDY to clear');
    await tick(20);
    // No CQE was written to the I/O CQ: every status word still has phase tag 0.
    const cq = qp.cq.bytes;
    for (let i = 0; i < 16; i++) expect(cq[i * 16 + 14]! & 1).toBe(0);
    expect(reads.some((r) => r.settled)).toBe(false);
    expect(h.controller.state).toBe('disabled');

    // The host's reset fails what it had outstanding.
    await h.driver.reset();
    await tick();
    for (const r of reads) {
      expect(r.settled).toBe(true);
      expect(r.error).toMatchObject({ code: 'NVMQ_CONTROLLER_RESET' });
    }
  });
});

// ------------------------------------------------------------------ CC.SHN

describe('shutdown (CC.SHN)', () => {
  it('normal shutdown through the registers: SHST reaches 10b only after the namespaces are flushed', async () => {
    const { backend, file } = fileNamespace();
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }] });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const data = pattern(4 * 4096, 7);
    await qp.write(1, 10, 4, data);
    backend.flushes = 0;
    backend.watch = () => shst(csts(t));

    t.write32(CC, (t.read32(CC) | (1 << 14)) >>> 0);
    // The flush is still running in libuv's pool, so the shutdown cannot be complete yet.
    expect(shst(csts(t))).not.toBe(2);
    await waitFor(() => shst(csts(t)) === 2, 'CSTS.SHST = 10b');
    expect(backend.flushes).toBeGreaterThanOrEqual(1);
    expect(backend.shstWhenFlushed.length).toBe(backend.flushes);
    expect(backend.shstWhenFlushed.every((s) => s !== 2)).toBe(true);
    expect(new Uint8Array(fs.readFileSync(file).subarray(10 * 4096, 14 * 4096))).toEqual(data);
  });

  it('driver.shutdown(): SHST = 10b after a flush of the file namespace, then RDY clears', async () => {
    const { backend, file } = fileNamespace();
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }] });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const data = pattern(8 * 4096, 9);
    await qp.write(1, 100, 8, data);
    backend.flushes = 0;
    backend.watch = () => shst(csts(t));

    await h.driver.shutdown();
    expect(backend.flushes).toBeGreaterThanOrEqual(1);
    expect(backend.shstWhenFlushed.every((s) => s !== 2)).toBe(true);
    expect(shst(csts(t))).toBe(2);
    expect(csts(t) & RDY).toBe(0);
    expect(new Uint8Array(fs.readFileSync(file).subarray(100 * 4096, 108 * 4096))).toEqual(data);
  });

  it('a memory-only controller reports the shutdown complete at once', async () => {
    const h = await up();
    const t = h.transport;
    t.write32(CC, (t.read32(CC) | (1 << 14)) >>> 0);
    expect(shst(csts(t))).toBe(2);
  });
});

// ------------------------------------------------------------------ NSSR

describe('NVM subsystem reset (NSSR)', () => {
  it('"NVMe" resets the controller and sets CSTS.NSSRO; any other value does nothing; NSSR reads 0', async () => {
    const h = await up();
    const t = h.transport;
    await h.driver.createIoQueuePair({ entries: 8 });
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY);

    t.write32(NSSR, 0x12345678);
    t.write32(NSSR, 0x654d564e); // the bytes reversed
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY);

    t.write32(NSSR, NSSR_NVME);
    expect(csts(t) & NSSRO).toBe(NSSRO);
    expect(csts(t) & RDY).toBe(0);
    expect(t.read32(CC) & 1).toBe(0);
    expect(t.read32(NSSR)).toBe(0);

    // The controller comes back up, without the I/O queue it had.
    await h.driver.reset();
    expect(csts(t) & RDY).toBe(RDY);
    const { done: aer } = await heldAer(h);
    t.write32(cqHeadDb(1), 0);
    expect((await aer).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });

  it('CSTS.NSSRO is write-1-to-clear and the rest of CSTS is read-only', async () => {
    const h = await up();
    const t = h.transport;
    t.write32(NSSR, NSSR_NVME);
    await h.driver.reset();
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY | NSSRO);

    t.write32(CSTS, 0);
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY | NSSRO);
    t.write32(CSTS, ~NSSRO >>> 0);
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY | NSSRO);
    expect(csts(t) & CFS).toBe(0);
    t.write32(CSTS, NSSRO);
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY);
    t.write32(CSTS, 0xffffffff);
    expect(csts(t) & (RDY | CFS | NSSRO)).toBe(RDY);
  });
});

// ------------------------------------------------------------------ INTMS / INTMC

describe('interrupt mask (INTMS / INTMC)', () => {
  it('INTMS sets and INTMC clears mask bits; both read back the current mask', () => {
    const { transport: t } = rawController();
    expect(t.read32(INTMS)).toBe(0);
    expect(t.read32(INTMC)).toBe(0);
    t.write32(INTMS, 0b0110);
    expect(t.read32(INTMS)).toBe(0b0110);
    expect(t.read32(INTMC)).toBe(0b0110);
    t.write32(INTMS, 0b1000);
    expect(t.read32(INTMS)).toBe(0b1110);
    t.write32(INTMS, 0);
    expect(t.read32(INTMS)).toBe(0b1110);
    t.write32(INTMC, 0b0100);
    expect(t.read32(INTMC)).toBe(0b1010);
    expect(t.read32(INTMS)).toBe(0b1010);
    t.write32(INTMC, 0);
    expect(t.read32(INTMS)).toBe(0b1010);
    t.write32(INTMC, 0xffffffff);
    expect(t.read32(INTMS)).toBe(0);
  });

  it('a masked vector is held and raised when INTMC unmasks it; other vectors are not affected', async () => {
    const h = await up();
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 }); // vector 1
    const seen: number[] = [];
    const raise = h.controller.interrupts.onInterrupt;
    h.controller.interrupts.onInterrupt = (v) => {
      seen.push(v);
      raise(v);
    };

    t.write32(INTMS, 1 << 1);
    await qp.write(1, 0, 1, pattern(4096, 2)); // completes inside the doorbell write and is reaped by polling
    expect(seen.filter((v) => v === 1)).toEqual([]);
    await h.driver.identify(0x01, 0);
    expect(seen.filter((v) => v === 0).length).toBeGreaterThanOrEqual(1);

    t.write32(INTMC, 1 << 1);
    expect(seen.filter((v) => v === 1)).toEqual([1]);
    t.write32(INTMC, 1 << 1);
    expect(seen.filter((v) => v === 1)).toEqual([1]);

    // Unmasked again: the next completion raises vector 1 straight away.
    await qp.write(1, 1, 1, pattern(4096, 3));
    expect(seen.filter((v) => v === 1)).toEqual([1, 1]);
  });

  it.each(DATA_PATHS)('a completion on a masked vector reaches the host only when INTMC unmasks it (file namespace, %s)', async (dataPath) => {
    const { backend, device } = stalledNamespace(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    t.write32(INTMS, 1 << 1);
    const read = track(qp.read(1, 0, 1, new Uint8Array(4096)));
    await device.feed(4096);
    // Wait for the CQE itself (phase tag 1 in slot 0), then a little longer.
    await waitFor(() => (qp.cq.bytes[14]! & 1) === 1, 'the CQE to be posted');
    await tick(20);
    expect(read.settled).toBe(false);
    t.write32(INTMC, 1 << 1);
    await tick();
    expect(read.settled).toBe(true);
    expect(read.error).toBeUndefined();
  });
});

// ------------------------------------------------------------------ invalid doorbell writes

describe('invalid doorbell writes complete an Asynchronous Event Request', () => {
  it('SQ tail >= queue size: error event, Invalid Doorbell Write Value, Error Information log', async () => {
    const h = await up();
    const t = h.transport;
    const { done: aer } = await heldAer(h);
    t.write32(sqTailDb(0), 32); // the driver's admin SQ has 32 entries
    const c = await aer;
    expect(c.status).toBe(0);
    expect(c.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));
    // The bad value was not taken: the admin queue still works.
    await h.driver.identify(0x01, 0);

    await h.driver.errorLog(); // clears the event
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const { done: aer2 } = await heldAer(h);
    t.write32(sqTailDb(1), 8);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));
    await qp.write(1, 0, 1, pattern(4096, 4));
  });

  it('CQ head past the posted entries (or >= size): Invalid Doorbell Write Value', async () => {
    const h = await up();
    const t = h.transport;
    await h.driver.createIoQueuePair({ entries: 8 }); // nothing posted to CQ 1 yet
    const { done: aer } = await heldAer(h);
    t.write32(cqHeadDb(1), 1);
    expect((await aer).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));

    await h.driver.errorLog();
    const { done: aer2 } = await heldAer(h);
    t.write32(cqHeadDb(1), 8);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));
  });

  it('a doorbell of a queue that does not exist: Write to Invalid Doorbell Register', async () => {
    const h = await up();
    const t = h.transport;
    const { done: aer } = await heldAer(h);
    t.write32(sqTailDb(5), 1);
    expect((await aer).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));

    await h.driver.errorLog();
    const { done: aer2 } = await heldAer(h);
    t.write32(cqHeadDb(3), 0);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });

  it('a valid doorbell write raises no event', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const aer = track(h.driver.adminPassthru({ opcode: OPC_AER }));
    for (let i = 0; i < 20; i++) await qp.write(1, i, 1, pattern(4096, i)); // wraps the 8-entry rings twice
    await tick(5);
    expect(aer.settled).toBe(false);
  });

  it('the error event type stays masked until the Error Information log is read without RAE', async () => {
    const h = await up();
    const t = h.transport;
    const { done: aer1 } = await heldAer(h);
    t.write32(sqTailDb(0), 4095);
    expect((await aer1).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));

    const aer2 = track((await heldAer(h)).done);
    t.write32(sqTailDb(6), 1); // a second error while the type is masked
    await tick(5);
    expect(aer2.settled).toBe(false);

    // Reading another log page does not unmask the error type.
    await h.driver.getLogPage(LID_SMART, 512);
    await tick(5);
    expect(aer2.settled).toBe(false);

    // Reading the Error Information log with Retain Asynchronous Event keeps it masked.
    await h.driver.getLogPage(LID_ERROR_INFORMATION, 64, { retainAsyncEvent: true });
    await tick(5);
    expect(aer2.settled).toBe(false);

    // Without RAE the event is cleared and the queued one is reported.
    await h.driver.getLogPage(LID_ERROR_INFORMATION, 64);
    await tick(5);
    expect(aer2.settled).toBe(true);
    expect(aer2.value?.status).toBe(0);
    expect(aer2.value?.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });
});
