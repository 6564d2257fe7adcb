/**
 * Controller conformance: the admin command set (NVMe 1.4, section 5). For
 * every implemented admin command, the good case and each rejection with its
 * exact status: SCT, SC, DNR (and More / CRD clear).
 *
 * Commands go through `driver.adminPassthru()`, which returns the whole CQE.
 * Opcodes, status values and structure offsets are written out from the spec
 * here rather than taken from src/engine/spec.
 */
import { describe, it, expect, afterEach } from 'vitest';
import * as path from 'node:path';
import { bringUp, memoryNamespace, tempDir, tick, pattern, stalledBackend, DATA_PATHS, type Harness, type HarnessOptions, type StalledDevice } from '../../helpers/harness.js';
import type { DataPath } from '../../../src/engine/uring/data-path.js';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import type { Completion } from '../../../src/engine/spec/command.js';
import type { CommandFields, DataSpec } from '../../../src/engine/host/queue-pair.js';

// ------------------------------------------------------------------ spec constants

const OPC = {
  DELETE_SQ: 0x00,
  CREATE_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_CQ: 0x04,
  CREATE_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  AER: 0x0c,
} as const;
const IMPLEMENTED_ADMIN = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c];
const IMPLEMENTED_IO = [0x00, 0x01, 0x02, 0x08, 0x09]; // Flush, Write, Read, Write Zeroes, Dataset Management

const FID = { ARBITRATION: 0x01, TEMPERATURE: 0x04, VWC: 0x06, NUM_QUEUES: 0x07, AEC: 0x0b } as const;
const LID = { ERROR: 0x01, SMART: 0x02, EFFECTS: 0x05 } as const;
const CRITICAL_WARNING_TEMPERATURE = 1 << 1;

interface StatusFields {
  sct: number;
  sc: number;
  dnr: boolean;
  more: boolean;
  crd: number;
}
/** The CQE status field without the phase tag: DNR 14, M 13, CRD 12:11, SCT 10:8, SC 7:0. */
function st(c: Completion): StatusFields {
  return { sct: (c.status >>> 8) & 0x7, sc: c.status & 0xff, dnr: (c.status & (1 << 14)) !== 0, more: (c.status & (1 << 13)) !== 0, crd: (c.status >>> 11) & 0x3 };
}
const S = (sct: number, sc: number, dnr: boolean): StatusFields => ({ sct, sc, dnr, more: false, crd: 0 });

const SUCCESS = S(0, 0x00, false);
const INVALID_OPCODE = S(0, 0x01, true);
const INVALID_FIELD = S(0, 0x02, true);
const DATA_TRANSFER_ERROR = S(0, 0x04, true);
const ABORT_REQUESTED = S(0, 0x07, false);
const ABORTED_SQ_DELETION = S(0, 0x08, false);
const INVALID_NAMESPACE = S(0, 0x0b, true);
const COMMAND_SEQUENCE_ERROR = S(0, 0x0c, true);
const PRP_OFFSET_INVALID = S(0, 0x13, true);
const LBA_OUT_OF_RANGE = S(0, 0x80, true);
const COMPLETION_QUEUE_INVALID = S(1, 0x00, true);
const INVALID_QUEUE_IDENTIFIER = S(1, 0x01, true);
const INVALID_QUEUE_SIZE = S(1, 0x02, true);
const AER_LIMIT_EXCEEDED = S(1, 0x05, true);
const INVALID_INTERRUPT_VECTOR = S(1, 0x08, true);
const INVALID_LOG_PAGE = S(1, 0x09, true);
const INVALID_QUEUE_DELETION = S(1, 0x0c, true);
const FEATURE_NOT_SAVEABLE = S(1, 0x0d, true);

// ------------------------------------------------------------------ helpers

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** A controller brought up by the driver; disabled and closed at the end of the test whatever state it is in. */
async function up(opts: HarnessOptions = {}): Promise<Harness> {
  const h = await bringUp(opts);
  cleanups.push(async () => {
    h.transport.write32(0x14, 0); // CC.EN = 0
    await h.controller.close();
  });
  return h;
}

function fileBackend(size = 16 << 20): FileBackend {
  const tmp = tempDir();
  const backend = new FileBackend({ path: path.join(tmp.dir, 'ns.img'), size });
  cleanups.push(async () => {
    await backend.close();
    tmp.cleanup();
  });
  return backend;
}

/** A file namespace whose commands stay in flight (see stalledDevice). */
function stalledFile(dataPath: DataPath): { backend: FileBackend; device: StalledDevice } {
  return stalledBackend(dataPath, (o) => new FileBackend(o), cleanups);
}

function admin(h: Harness, cmd: CommandFields, data?: DataSpec): Promise<Completion> {
  return h.driver.adminPassthru(cmd, data);
}

/** A buffer inside the DMA arena (zero copy), pre-filled so that every byte the controller writes is visible. */
function arenaBuffer(h: Harness, n: number, fill = 0xa5): Uint8Array {
  const b = h.arena.alloc(n);
  b.bytes.fill(fill);
  return b.bytes.subarray(0, n);
}

function fromDevice(buffer: Uint8Array): DataSpec {
  return { buffer, direction: 'from-device' };
}

function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
}
function u16(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(at, true);
}
function u64(b: Uint8Array, at: number): number {
  return u32(b, at) + u32(b, at + 4) * 0x1_0000_0000;
}
function ascii(b: Uint8Array, at: number, n: number): string {
  return Buffer.from(b.subarray(at, at + n)).toString('latin1');
}

function identify(h: Harness, cns: number, nsid: number, buffer = arenaBuffer(h, 4096)): Promise<Completion> {
  return admin(h, { opcode: OPC.IDENTIFY, nsid, cdw10: cns }, fromDevice(buffer));
}

interface CqArgs {
  qid: number;
  qsize: number;
  prp1: number;
  pc?: number;
  ien?: number;
  iv?: number;
}
function createCq(h: Harness, a: CqArgs): Promise<Completion> {
  return admin(h, {
    opcode: OPC.CREATE_CQ,
    prp1: a.prp1,
    cdw10: ((a.qsize << 16) | a.qid) >>> 0,
    cdw11: (((a.iv ?? 0) << 16) | ((a.ien ?? 1) << 1) | (a.pc ?? 1)) >>> 0,
  });
}

interface SqArgs {
  qid: number;
  qsize: number;
  cqid: number;
  prp1: number;
  pc?: number;
  qprio?: number;
}
function createSq(h: Harness, a: SqArgs): Promise<Completion> {
  return admin(h, {
    opcode: OPC.CREATE_SQ,
    prp1: a.prp1,
    cdw10: ((a.qsize << 16) | a.qid) >>> 0,
    cdw11: ((a.cqid << 16) | ((a.qprio ?? 0) << 1) | (a.pc ?? 1)) >>> 0,
  });
}

function getFeature(h: Harness, fid: number, sel = 0, cdw11 = 0): Promise<Completion> {
  return admin(h, { opcode: OPC.GET_FEATURES, cdw10: (fid | (sel << 8)) >>> 0, cdw11 });
}
function setFeature(h: Harness, fid: number, cdw11: number, save = false): Promise<Completion> {
  return admin(h, { opcode: OPC.SET_FEATURES, cdw10: (fid | (save ? 1 << 31 : 0)) >>> 0, cdw11 });
}

function getLogPage(h: Harness, lid: number, buffer: Uint8Array, o: { nsid?: number; offset?: number; rae?: boolean } = {}): Promise<Completion> {
  const numd = buffer.length / 4 - 1;
  const offset = o.offset ?? 0;
  return admin(
    h,
    {
      opcode: OPC.GET_LOG_PAGE,
      nsid: o.nsid ?? 0xffffffff,
      cdw10: (lid | (o.rae ? 1 << 15 : 0) | ((numd & 0xffff) << 16)) >>> 0,
      cdw11: numd >>> 16,
      cdw12: offset % 0x1_0000_0000,
      cdw13: Math.floor(offset / 0x1_0000_0000),
    },
    fromDevice(buffer),
  );
}

/** Temperature Threshold CDW11 (Figure 292): TMPTH 15:0, TMPSEL 19:16, THSEL 21:20. */
const tempDw = (tmpth: number, tmpsel = 0, thsel = 0): number => (tmpth | (tmpsel << 16) | (thsel << 20)) >>> 0;

function track<T>(p: Promise<T>): { settled: boolean; value: T | undefined } {
  const s: { settled: boolean; value: T | undefined } = { settled: false, value: undefined };
  void p.then((v) => {
    s.settled = true;
    s.value = v;
  });
  return s;
}

/**
 * The admin SQ slot the next command will occupy: the SQHD of a completion is
 * the controller's SQ head after fetching, so the command after it goes there.
 */
async function nextAdminSlot(h: Harness): Promise<number> {
  const c = await identify(h, 0x01, 0);
  return c.sqhd;
}
/** The CID the host wrote into slot `slot` of the admin SQ (found through the ASQ register). */
function adminSqeCid(h: Harness, slot: number): number {
  const asq = h.transport.read64(0x28);
  const off = h.arena.translate(asq + slot * 64, 64);
  return h.arena.view.getUint16(off + 2, true);
}

// ------------------------------------------------------------------ Identify

describe('Identify', () => {
  const twoNamespaces = (): HarnessOptions => ({ namespaces: [memoryNamespace(8 << 20, 4096, 1), memoryNamespace(4 << 20, 512, 3)] });

  it('CNS 00h for an active NSID returns its Identify Namespace structure', async () => {
    const h = await up(twoNamespaces());
    const b1 = arenaBuffer(h, 4096);
    expect(st(await identify(h, 0x00, 1, b1))).toEqual(SUCCESS);
    expect(u64(b1, 0)).toBe((8 << 20) / 4096); // NSZE
    expect(u64(b1, 8)).toBe((8 << 20) / 4096); // NCAP
    expect(u64(b1, 16)).toBe((8 << 20) / 4096); // NUSE
    expect(b1[25]).toBe(0); // NLBAF: one format
    expect(b1[26]! & 0xf).toBe(0); // FLBAS: format 0
    expect((u32(b1, 128) >>> 16) & 0xff).toBe(12); // LBAF0.LBADS: 4096 bytes
    expect(u32(b1, 128) & 0xffff).toBe(0); // LBAF0.MS: no metadata
    expect(b1[33]! & 0x7).toBe(1); // DLFEAT: deallocated blocks read as zeroes

    const b3 = arenaBuffer(h, 4096);
    expect(st(await identify(h, 0x00, 3, b3))).toEqual(SUCCESS);
    expect(u64(b3, 0)).toBe((4 << 20) / 512);
    expect((u32(b3, 128) >>> 16) & 0xff).toBe(9);
    // Every namespace has its own globally unique identifiers.
    expect(Buffer.from(b1.subarray(104, 120)).equals(Buffer.from(b3.subarray(104, 120)))).toBe(false);
    expect(Buffer.from(b1.subarray(104, 120)).equals(Buffer.alloc(16))).toBe(false);
  });

  it('CNS 00h for an inactive NSID (<= NN) returns a zero-filled structure', async () => {
    const h = await up(twoNamespaces());
    const b = arenaBuffer(h, 4096, 0xa5);
    expect(st(await identify(h, 0x00, 2, b))).toEqual(SUCCESS);
    expect(b.every((x) => x === 0)).toBe(true);
  });

  for (const nsid of [0, 0xffffffff, 4, 0xfffffffe]) {
    it(`CNS 00h with NSID 0x${nsid.toString(16)}: Invalid Namespace or Format, no data written`, async () => {
      const h = await up(twoNamespaces());
      const b = arenaBuffer(h, 4096, 0xa5);
      expect(st(await identify(h, 0x00, nsid, b))).toEqual(INVALID_NAMESPACE);
      expect(b.every((x) => x === 0xa5)).toBe(true);
    });
  }

  it('CNS 01h returns the Identify Controller fields', async () => {
    const h = await up({
      namespaces: [memoryNamespace(8 << 20, 4096, 1), memoryNamespace(4 << 20, 512, 3)],
      controller: { mdts: 5, mqes: 1023, identity: { serial: 'SN-42', model: 'Conformance Model', firmware: 'FW1' } },
    });
    const b = arenaBuffer(h, 4096);
    expect(st(await identify(h, 0x01, 0, b))).toEqual(SUCCESS);
    expect(u16(b, 0)).toBe(0x1b36); // VID
    expect(ascii(b, 4, 20)).toBe('SN-42'.padEnd(20, ' ')); // SN, space padded
    expect(ascii(b, 24, 40)).toBe('Conformance Model'.padEnd(40, ' ')); // MN
    expect(ascii(b, 64, 8)).toBe('FW1'.padEnd(8, ' ')); // FR
    expect(b[77]).toBe(5); // MDTS
    expect(u16(b, 78)).toBe(1); // CNTLID
    expect(u32(b, 80)).toBe(0x00010400); // VER = VS
    expect(b[111]).toBe(1); // CNTRLTYPE: I/O controller
    expect(b[258]).toBe(3); // ACL (0's based)
    expect(b[259]).toBe(3); // AERL (0's based)
    expect(b[261]! & 0x02).toBe(0x02); // LPA: Commands Supported and Effects log
    expect(b[262]).toBe(63); // ELPE: 64 error log entries
    expect(u16(b, 266)).toBe(343); // WCTEMP
    expect(u16(b, 268)).toBe(373); // CCTEMP
    expect(b[512]).toBe(0x66); // SQES: 64-byte entries required and maximum
    expect(b[513]).toBe(0x44); // CQES: 16 bytes
    expect(u16(b, 514)).toBe(1024); // MAXCMD
    expect(u32(b, 516)).toBe(3); // NN: the largest NSID
    expect(u16(b, 520)).toBe(0x1c); // ONCS: DSM, Write Zeroes, Save/Select
    expect(u16(b, 522)).toBe(0); // FUSES: no fused operations
    expect(b[525]! & 0x01).toBe(0x01); // VWC present
    expect(u32(b, 536)).toBe(0); // SGLS: no SGLs
    // SUBNQN is a UTF-8 null-terminated string, not a space-padded one like SN / MN / FR.
    const nqn = 'nqn.2026-11.io.nvmq:SN-42';
    expect(ascii(b, 768, nqn.length)).toBe(nqn);
    expect(b.subarray(768 + nqn.length, 1024).every((x) => x === 0)).toBe(true);
    expect(u16(b, 2048)).toBe(2500); // PSD0.MP
  });

  it('CNS 02h lists the active NSIDs greater than NSID, ascending, zero-terminated', async () => {
    const h = await up(twoNamespaces());
    const list = async (nsid: number): Promise<number[]> => {
      const b = arenaBuffer(h, 4096, 0xa5);
      expect(st(await identify(h, 0x02, nsid, b))).toEqual(SUCCESS);
      const ids: number[] = [];
      for (let i = 0; i < 1024; i++) ids.push(u32(b, i * 4));
      const end = ids.indexOf(0);
      expect(end).toBeGreaterThanOrEqual(0);
      expect(ids.slice(end).every((x) => x === 0)).toBe(true);
      return ids.slice(0, end);
    };
    expect(await list(0)).toEqual([1, 3]);
    expect(await list(1)).toEqual([3]);
    expect(await list(2)).toEqual([3]);
    expect(await list(3)).toEqual([]);
    expect(await list(0xfffffffd)).toEqual([]);
  });

  for (const nsid of [0xfffffffe, 0xffffffff]) {
    it(`CNS 02h with NSID 0x${nsid.toString(16)}: Invalid Namespace or Format`, async () => {
      const h = await up(twoNamespaces());
      expect(st(await identify(h, 0x02, nsid))).toEqual(INVALID_NAMESPACE);
    });
  }

  for (const cns of [0x0e, 0x1f, 0xff]) {
    it(`unknown CNS 0x${cns.toString(16)}: Invalid Field in Command`, async () => {
      const h = await up();
      expect(st(await identify(h, cns, 0))).toEqual(INVALID_FIELD);
    });
  }
});

// ------------------------------------------------------------------ Create / Delete I/O queues

describe('Create I/O Completion Queue', () => {
  const opts: HarnessOptions = { controller: { maxIoQueues: 4, mqes: 63 }, driver: { ioQueues: 2 } };

  it('good case: the CQ receives the completions of an SQ bound to it', async () => {
    const h = await up(opts);
    const cq = h.arena.alloc(8 * 16);
    const sq = h.arena.alloc(8 * 64);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: cq.iova, iv: 1 }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: sq.iova }))).toEqual(SUCCESS);

    // A Flush written by hand into SQ slot 0 completes in CQ slot 0.
    const dv = h.arena.view;
    dv.setUint32(sq.offset, (0x00 | (0x77 << 16)) >>> 0, true);
    dv.setUint32(sq.offset + 4, 1, true);
    h.transport.write32(0x1000 + 2 * 1 * 4, 1);
    expect(dv.getUint16(cq.offset + 14, true)).toBe(1); // phase 1, status 0
    expect(dv.getUint16(cq.offset + 12, true)).toBe(0x77); // CID
    expect(dv.getUint16(cq.offset + 10, true)).toBe(1); // SQID
    expect(dv.getUint16(cq.offset + 8, true)).toBe(1); // SQHD
  });

  it('the largest QID granted and the largest size (MQES + 1) are accepted', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 2, qsize: 63, prp1: h.arena.alloc(64 * 16).iova }))).toEqual(SUCCESS);
  });

  it('QID 0: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 0, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('QID above the number granted by Number of Queues: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 3, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await createCq(h, { qid: 0xffff, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('a QID already in use: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('QSIZE 0 (one entry): Invalid Queue Size', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_SIZE);
  });

  it('QSIZE above CAP.MQES: Invalid Queue Size', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 64, prp1: h.arena.alloc(65 * 16).iova }))).toEqual(INVALID_QUEUE_SIZE);
  });

  it('PC = 0 while CAP.CQR = 1: Invalid Field in Command', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 7, pc: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_FIELD);
  });

  it('IV beyond the interrupt vectors: Invalid Interrupt Vector', async () => {
    const h = await up(opts); // 4 I/O queues: 5 vectors by default
    expect(st(await createCq(h, { qid: 1, qsize: 7, iv: 4, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createCq(h, { qid: 2, qsize: 7, iv: 5, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_INTERRUPT_VECTOR);
    expect(st(await createCq(h, { qid: 2, qsize: 7, iv: 0xffff, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_INTERRUPT_VECTOR);
  });

  it('PRP1 zero or not page aligned: PRP Offset Invalid', async () => {
    const h = await up(opts);
    const mem = h.arena.alloc(4096);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: 0 }))).toEqual(PRP_OFFSET_INVALID);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: mem.iova + 16 }))).toEqual(PRP_OFFSET_INVALID);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: mem.iova + 2048 }))).toEqual(PRP_OFFSET_INVALID);
  });

  it('a queue outside host memory: Data Transfer Error', async () => {
    const h = await up({ controller: { maxIoQueues: 4 } });
    const a = h.arena;
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: a.base + a.size }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: a.base - 4096 }))).toEqual(DATA_TRANSFER_ERROR);
    // Starts in the last page, ends past it: 512 entries of 16 bytes.
    expect(st(await createCq(h, { qid: 1, qsize: 511, prp1: a.base + a.size - 4096 }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createCq(h, { qid: 1, qsize: 255, prp1: a.base + a.size - 4096 }))).toEqual(SUCCESS);
  });
});

describe('Create I/O Submission Queue', () => {
  const opts: HarnessOptions = { controller: { maxIoQueues: 4, mqes: 63 }, driver: { ioQueues: 2 } };

  async function withCq(h: Harness, qid = 1): Promise<void> {
    expect(st(await createCq(h, { qid, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
  }

  it('good case, including several SQs on one CQ and the largest size', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 2, qsize: 63, cqid: 1, qprio: 3, prp1: h.arena.alloc(64 * 64).iova }))).toEqual(SUCCESS);
  });

  it('QID 0, above the number granted, or in use: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 0, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await createSq(h, { qid: 3, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('CQID 0 (the admin CQ) or a CQ that does not exist: Completion Queue Invalid', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(COMPLETION_QUEUE_INVALID);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 2, prp1: h.arena.alloc(4096).iova }))).toEqual(COMPLETION_QUEUE_INVALID);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 0xffff, prp1: h.arena.alloc(4096).iova }))).toEqual(COMPLETION_QUEUE_INVALID);
  });

  it('QSIZE 0 or above CAP.MQES: Invalid Queue Size', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 0, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_SIZE);
    expect(st(await createSq(h, { qid: 1, qsize: 64, cqid: 1, prp1: h.arena.alloc(65 * 64).iova }))).toEqual(INVALID_QUEUE_SIZE);
  });

  it('PC = 0: Invalid Field in Command', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, pc: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_FIELD);
  });

  it('PRP1 zero or not page aligned: PRP Offset Invalid', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: 0 }))).toEqual(PRP_OFFSET_INVALID);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova + 64 }))).toEqual(PRP_OFFSET_INVALID);
  });

  it('a queue outside host memory: Data Transfer Error', async () => {
    const h = await up({ controller: { maxIoQueues: 4 } });
    await withCq(h);
    const a = h.arena;
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: a.base + a.size }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: a.base - 8192 }))).toEqual(DATA_TRANSFER_ERROR);
    // Starts in the last page, ends past it: 128 entries of 64 bytes.
    expect(st(await createSq(h, { qid: 1, qsize: 127, cqid: 1, prp1: a.base + a.size - 4096 }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createSq(h, { qid: 1, qsize: 63, cqid: 1, prp1: a.base + a.size - 4096 }))).toEqual(SUCCESS);
  });
});

describe('Delete I/O Submission / Completion Queue', () => {
  const opts: HarnessOptions = { controller: { maxIoQueues: 4 }, driver: { ioQueues: 2 } };

  it('good case: SQ then CQ; the QIDs can be used again', async () => {
    const h = await up(opts);
    const cqMem = h.arena.alloc(4096);
    const sqMem = h.arena.alloc(4096);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: cqMem.iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: sqMem.iova }))).toEqual(SUCCESS);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 1 }))).toEqual(SUCCESS);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 1 }))).toEqual(SUCCESS);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: cqMem.iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: sqMem.iova }))).toEqual(SUCCESS);
  });

  it('Delete I/O SQ with QID 0 or a QID that does not exist: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 0 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 1 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 0xffff }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }))).toEqual(SUCCESS);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('Delete I/O CQ with QID 0 or a QID that does not exist: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 0 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 2 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('Delete I/O CQ while an SQ still uses it: Invalid Queue Deletion; the queues keep working', async () => {
    const h = await up(opts);
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: qp.qid }))).toEqual(INVALID_QUEUE_DELETION);
    await qp.write(1, 0, 1, pattern(4096, 1));
    await h.driver.deleteIoQueuePair(qp);
  });

  it.each(DATA_PATHS)('commands in flight on a file namespace complete with Command Aborted due to SQ Deletion before the delete completes (%s)', async (dataPath) => {
    const { backend } = stalledFile(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    const ios = Array.from({ length: 6 }, (_, i) => qp.passthru({ opcode: 0x02, nsid: 1, cdw10: i * 32, cdw12: 31 }, { buffer: new Uint8Array(32 * 4096), direction: 'from-device' }));
    // When the delete's completion reaches the host, the aborted commands' CQEs are already in the I/O CQ (phase tag 1).
    let postedBefore = -1;
    const del = admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }).then((c) => {
      postedBefore = Array.from({ length: 16 }, (_, i) => qp.cq.bytes[i * 16 + 14]! & 1).filter((p) => p === 1).length;
      return c;
    });
    const d = await del;
    expect(st(d)).toEqual(SUCCESS);
    const done = await Promise.all(ios);
    for (const c of done) {
      expect(st(c)).toEqual(ABORTED_SQ_DELETION);
      expect(c.sqid).toBe(qp.qid);
    }
    expect(postedBefore).toBe(ios.length);
    // The SQ is gone; its CQ can now be deleted.
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: qp.qid }))).toEqual(SUCCESS);
  });
});

// ------------------------------------------------------------------ Get / Set Features

describe('Get / Set Features', () => {
  describe('Number of Queues (07h)', () => {
    it('defaults to the controller maximum; the grant is capped and reported in DW0 (0\'s based)', async () => {
      const h = await up({ controller: { maxIoQueues: 4 } });
      const def = await getFeature(h, FID.NUM_QUEUES);
      expect(st(def)).toEqual(SUCCESS);
      expect(def.dw0).toBe(0x00030003);

      const set = await setFeature(h, FID.NUM_QUEUES, (9 << 16) | 1); // NCQR 10, NSQR 2
      expect(st(set)).toEqual(SUCCESS);
      expect(set.dw0).toBe(0x00030001); // NCQA 4 (capped), NSQA 2
      expect((await getFeature(h, FID.NUM_QUEUES)).dw0).toBe(0x00030001);
      expect((await getFeature(h, FID.NUM_QUEUES, 1)).dw0).toBe(0x00030003); // default unchanged

      // The grant is what the queue commands check.
      expect(st(await createCq(h, { qid: 4, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
      expect(st(await createSq(h, { qid: 3, qsize: 7, cqid: 4, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
      expect(st(await createSq(h, { qid: 2, qsize: 7, cqid: 4, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    });

    it('NSQR or NCQR of 65535: Invalid Field in Command', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x0000ffff))).toEqual(INVALID_FIELD);
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0xffff0000))).toEqual(INVALID_FIELD);
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0xffffffff))).toEqual(INVALID_FIELD);
      expect((await getFeature(h, FID.NUM_QUEUES)).dw0).toBe(0x003f003f);
    });

    it('after an I/O queue was created: Command Sequence Error, until a controller reset', async () => {
      const h = await up({ controller: { maxIoQueues: 4 } });
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00010001))).toEqual(SUCCESS);
      expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00000000))).toEqual(COMMAND_SEQUENCE_ERROR);
      expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 1 }))).toEqual(SUCCESS);
      // Deleting the queues again does not reopen the window.
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00000000))).toEqual(COMMAND_SEQUENCE_ERROR);
      expect((await getFeature(h, FID.NUM_QUEUES)).dw0).toBe(0x00010001);
      await h.driver.reset();
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00000000))).toEqual(SUCCESS);
    });
  });

  describe('Volatile Write Cache (06h)', () => {
    it('enabled by default; Set changes the current value only', async () => {
      const h = await up();
      expect((await getFeature(h, FID.VWC)).dw0).toBe(1);
      expect(st(await setFeature(h, FID.VWC, 0))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.VWC, 0)).dw0).toBe(0);
      expect((await getFeature(h, FID.VWC, 1)).dw0).toBe(1);
      expect(st(await setFeature(h, FID.VWC, 1))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.VWC)).dw0).toBe(1);
    });
  });

  describe('Arbitration (01h)', () => {
    it('round robin by default; Set stores AB and the weights, reserved bits 7:3 read 0', async () => {
      const h = await up();
      expect((await getFeature(h, FID.ARBITRATION)).dw0).toBe(0);
      expect(st(await setFeature(h, FID.ARBITRATION, 0x04030207))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.ARBITRATION)).dw0).toBe(0x04030207);
      expect(st(await setFeature(h, FID.ARBITRATION, 0x000000fa))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.ARBITRATION)).dw0).toBe(0x02);
      expect((await getFeature(h, FID.ARBITRATION, 1)).dw0).toBe(0);
    });
  });

  describe('Temperature Threshold (04h)', () => {
    it('the composite over temperature threshold defaults to WCTEMP and can be set', async () => {
      const h = await up();
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0))).dw0 & 0xffff).toBe(343);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(350)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0))).dw0 & 0xffff).toBe(350);
      expect((await getFeature(h, FID.TEMPERATURE, 1, tempDw(0))).dw0 & 0xffff).toBe(343);
    });

    it('the composite under temperature threshold (WCTEMP is non-zero) defaults to 0 and is kept apart from the over threshold', async () => {
      const h = await up();
      expect(st(await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(250, 0, 1)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(250);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(343);
      expect((await getFeature(h, FID.TEMPERATURE, 1, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
    });

    it('Temperature Sensor 1, which the SMART log reports, has its own thresholds (over FFFFh, under 0h by default)', async () => {
      const h = await up();
      const smart = new Uint8Array(512);
      await getLogPage(h, LID.SMART, smart);
      expect(u16(smart, 200)).not.toBe(0); // Temperature Sensor 1 is implemented
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(0xffff);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 1))).dw0 & 0xffff).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(360, 1, 0)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(360);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(343);
    });

    it('TMPSEL 1111b sets the threshold of every implemented sensor (Set only)', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(330, 0xf, 0)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(330);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(330);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
      expect(st(await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0xf, 0)))).toEqual(INVALID_FIELD);
    });

    it('thresholds return to their defaults after a controller reset', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(350)))).toEqual(SUCCESS);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(250, 0, 1)))).toEqual(SUCCESS);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(360, 1, 0)))).toEqual(SUCCESS);
      await h.driver.reset();
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(343);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(0xffff);
    });

    it('TMPSEL of a sensor that is not implemented, or a reserved THSEL: Invalid Field in Command (Set and Get)', async () => {
      const h = await up();
      for (const dw of [tempDw(300, 2, 0), tempDw(300, 8, 1), tempDw(300, 9, 0), tempDw(300, 0, 2), tempDw(300, 0, 3)]) {
        expect(st(await setFeature(h, FID.TEMPERATURE, dw))).toEqual(INVALID_FIELD);
        expect(st(await getFeature(h, FID.TEMPERATURE, 0, dw))).toEqual(INVALID_FIELD);
      }
      expect((await getFeature(h, FID.TEMPERATURE)).dw0 & 0xffff).toBe(343);
    });

    it('a threshold the composite temperature crosses sets SMART Critical Warning bit 1, and clears it when moved back', async () => {
      const h = await up();
      const warning = async (): Promise<number> => {
        const b = new Uint8Array(512);
        expect(st(await getLogPage(h, LID.SMART, b))).toEqual(SUCCESS);
        return b[0]! & CRITICAL_WARNING_TEMPERATURE;
      };
      const smart = new Uint8Array(512);
      await getLogPage(h, LID.SMART, smart);
      const kelvin = u16(smart, 1);
      expect(kelvin).toBeGreaterThan(0);
      expect(await warning()).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(kelvin)))).toEqual(SUCCESS); // >= over threshold
      expect(await warning()).toBe(CRITICAL_WARNING_TEMPERATURE);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(kelvin + 1)))).toEqual(SUCCESS);
      expect(await warning()).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(kelvin, 0, 1)))).toEqual(SUCCESS); // <= under threshold
      expect(await warning()).toBe(CRITICAL_WARNING_TEMPERATURE);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(0, 0, 1)))).toEqual(SUCCESS);
      expect(await warning()).toBe(0);
    });

    it('with SMART temperature warnings enabled in Async Event Config, crossing a threshold completes an AER (SMART / Health, Temperature Threshold, log 02h)', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.AEC, CRITICAL_WARNING_TEMPERATURE))).toEqual(SUCCESS);
      const aer = track(admin(h, { opcode: OPC.AER }));
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(200)))).toEqual(SUCCESS);
      await tick(5);
      expect(aer.settled).toBe(true);
      expect(st(aer.value!)).toEqual(SUCCESS);
      expect(aer.value!.dw0).toBe((1 | (0x01 << 8) | (0x02 << 16)) >>> 0);

      // Still over a threshold: moving it does not report the same condition again.
      const aer2 = track(admin(h, { opcode: OPC.AER }));
      const smart = new Uint8Array(512);
      expect(st(await getLogPage(h, LID.SMART, smart))).toEqual(SUCCESS); // clears the SMART / Health event
      expect(smart[0]! & CRITICAL_WARNING_TEMPERATURE).toBe(CRITICAL_WARNING_TEMPERATURE);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(210)))).toEqual(SUCCESS);
      await tick(5);
      expect(aer2.settled).toBe(false);
    });

    it('without the Async Event Config bit, crossing a threshold raises no event', async () => {
      const h = await up();
      const aer = track(admin(h, { opcode: OPC.AER }));
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(200)))).toEqual(SUCCESS);
      await tick(5);
      expect(aer.settled).toBe(false);
    });
  });

  describe('Asynchronous Event Configuration (0Bh)', () => {
    it('defaults to 0 and keeps what is set', async () => {
      const h = await up();
      expect((await getFeature(h, FID.AEC)).dw0).toBe(0);
      expect(st(await setFeature(h, FID.AEC, 0x1f))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.AEC)).dw0).toBe(0x1f);
      expect((await getFeature(h, FID.AEC, 1)).dw0).toBe(0);
    });
  });

  describe('SEL, SV and unknown features', () => {
    it('SEL current / default / saved / supported capabilities', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.ARBITRATION, 0x00000003))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.ARBITRATION, 0)).dw0).toBe(3);
      expect((await getFeature(h, FID.ARBITRATION, 1)).dw0).toBe(0);
      // Nothing is saveable, so the saved value is the default one.
      expect((await getFeature(h, FID.ARBITRATION, 2)).dw0).toBe(0);
      for (const fid of [FID.ARBITRATION, FID.TEMPERATURE, FID.VWC, FID.NUM_QUEUES, FID.AEC]) {
        const caps = await getFeature(h, fid, 3);
        expect(st(caps)).toEqual(SUCCESS);
        // Bit 0 saveable: no; bit 1 namespace specific: no; bit 2 changeable: yes.
        expect(caps.dw0 & 0x7).toBe(0x4);
      }
    });

    for (const sel of [4, 5, 6, 7]) {
      it(`reserved SEL ${sel}: Invalid Field in Command`, async () => {
        const h = await up();
        expect(st(await getFeature(h, FID.VWC, sel))).toEqual(INVALID_FIELD);
      });
    }

    it('SV = 1: Feature Identifier Not Saveable, and the value is not changed', async () => {
      const h = await up();
      for (const [fid, value] of [
        [FID.ARBITRATION, 0x01],
        [FID.TEMPERATURE, tempDw(300)],
        [FID.VWC, 0],
        [FID.NUM_QUEUES, 0],
        [FID.AEC, 0x02],
      ] as const) {
        const before = (await getFeature(h, fid)).dw0;
        expect(st(await setFeature(h, fid, value, true))).toEqual(FEATURE_NOT_SAVEABLE);
        expect((await getFeature(h, fid)).dw0).toBe(before);
      }
    });

    for (const fid of [0x00, 0x50, 0x7f, 0xff]) {
      it(`unknown FID 0x${fid.toString(16)}: Invalid Field in Command (Get and Set)`, async () => {
        const h = await up();
        expect(st(await getFeature(h, fid))).toEqual(INVALID_FIELD);
        expect(st(await setFeature(h, fid, 0))).toEqual(INVALID_FIELD);
      });
    }
  });
});

// ------------------------------------------------------------------ Get Log Page

describe('Get Log Page', () => {
  it('Error Information lists failed commands newest first with error count, SQID, CID, status and phase, LBA, NSID', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const first = await admin(h, { opcode: 0x03 }); // reserved opcode
    const second = await identify(h, 0xff, 0);
    const third = await qp.passthru({ opcode: 0x02, nsid: 1, cdw10: 0x10_0000, cdw12: 0 }, { buffer: new Uint8Array(4096), direction: 'from-device' });
    expect(st(first)).toEqual(INVALID_OPCODE);
    expect(st(second)).toEqual(INVALID_FIELD);
    expect(st(third)).toEqual(LBA_OUT_OF_RANGE);

    const log = arenaBuffer(h, 64 * 64);
    expect(st(await getLogPage(h, LID.ERROR, log))).toEqual(SUCCESS);
    const entry = (i: number): Record<string, number> => {
      const b = i * 64;
      return { count: u64(log, b), sqid: u16(log, b + 8), cid: u16(log, b + 10), status: u16(log, b + 12) >>> 1, phase: u16(log, b + 12) & 1, lba: u64(log, b + 16), nsid: u32(log, b + 24) };
    };
    expect(entry(0)).toMatchObject({ count: 3, sqid: qp.qid, cid: third.cid, status: third.status, phase: third.phase, lba: 0x10_0000, nsid: 1 });
    expect(entry(1)).toMatchObject({ count: 2, sqid: 0, cid: second.cid, status: second.status, phase: second.phase });
    expect(entry(2)).toMatchObject({ count: 1, sqid: 0, cid: first.cid, status: first.status, phase: first.phase });
    for (let i = 3; i < 64; i++) expect(entry(i).count).toBe(0);

    // The driver's parser agrees, and the SMART log counts the entries.
    const parsed = await h.driver.errorLog();
    expect(parsed.map((e) => e.errorCount)).toEqual([3, 2, 1]);
    expect((await h.driver.smartLog()).errorLogEntries).toBe(3);
  });

  it('SMART / Health counts host read and write commands and data units (thousands of 512 bytes, rounded up) exactly', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    const s0 = await h.driver.smartLog();
    expect([s0.hostReadCommands, s0.hostWriteCommands, s0.dataUnitsRead, s0.dataUnitsWritten]).toEqual([0, 0, 0, 0]);

    await qp.write(1, 0, 125, pattern(125 * 4096, 1)); // 1000 units of 512 bytes
    let s = await h.driver.smartLog();
    expect([s.hostWriteCommands, s.dataUnitsWritten]).toEqual([1, 1]);
    await qp.write(1, 200, 1, pattern(4096, 2)); // 1008 units
    s = await h.driver.smartLog();
    expect([s.hostWriteCommands, s.dataUnitsWritten]).toEqual([2, 2]);

    await qp.read(1, 0, 125, new Uint8Array(125 * 4096));
    s = await h.driver.smartLog();
    expect([s.hostReadCommands, s.dataUnitsRead]).toEqual([1, 1]);
    await qp.read(1, 0, 1, new Uint8Array(4096));
    s = await h.driver.smartLog();
    expect([s.hostReadCommands, s.dataUnitsRead]).toEqual([2, 2]);

    // Flush, Write Zeroes and Dataset Management are neither reads nor writes for these counters.
    await qp.flush(1);
    await qp.writeZeroes(1, 300, 200);
    await qp.deallocate(1, [{ slba: 0, nlb: 10 }]);
    s = await h.driver.smartLog();
    expect([s.hostReadCommands, s.hostWriteCommands, s.dataUnitsRead, s.dataUnitsWritten]).toEqual([2, 2, 2, 2]);
    expect(s.powerCycles).toBe(1);
    expect(s.temperatureKelvin).toBeGreaterThan(0);
  });

  for (const nsid of [1, 2, 0xfffffffe]) {
    it(`SMART / Health with NSID 0x${nsid.toString(16)} (no per-namespace data): Invalid Field in Command`, async () => {
      const h = await up();
      expect(st(await getLogPage(h, LID.SMART, new Uint8Array(512), { nsid }))).toEqual(INVALID_FIELD);
    });
  }

  it('SMART / Health with NSID 0 or FFFFFFFFh succeeds', async () => {
    const h = await up();
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(512), { nsid: 0 }))).toEqual(SUCCESS);
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(512), { nsid: 0xffffffff }))).toEqual(SUCCESS);
  });

  it('Commands Supported and Effects lists exactly the implemented admin and I/O opcodes', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const log = arenaBuffer(h, 4096);
    expect(st(await getLogPage(h, LID.EFFECTS, log))).toEqual(SUCCESS);
    const acs = (op: number): number => u32(log, op * 4);
    const iocs = (op: number): number => u32(log, 1024 + op * 4);
    for (let op = 0; op < 256; op++) {
      expect(acs(op) & 1, `admin opcode 0x${op.toString(16)} CSUPP`).toBe(IMPLEMENTED_ADMIN.includes(op) ? 1 : 0);
      expect(iocs(op) & 1, `I/O opcode 0x${op.toString(16)} CSUPP`).toBe(IMPLEMENTED_IO.includes(op) ? 1 : 0);
      if (!IMPLEMENTED_ADMIN.includes(op)) expect(acs(op)).toBe(0);
      if (!IMPLEMENTED_IO.includes(op)) expect(iocs(op)).toBe(0);
    }
    // Write, Write Zeroes and Dataset Management change logical block content; Read and Flush do not.
    expect(iocs(0x01) & 2).toBe(2);
    expect(iocs(0x08) & 2).toBe(2);
    expect(iocs(0x09) & 2).toBe(2);
    expect(iocs(0x02) & 2).toBe(0);
    expect(iocs(0x00) & 2).toBe(0);
    expect(log.subarray(2048).every((x) => x === 0)).toBe(true); // reserved

    // And every opcode not listed is really rejected as an invalid opcode.
    for (let op = 0; op < 256; op++) {
      if (!IMPLEMENTED_ADMIN.includes(op)) expect(st(await admin(h, { opcode: op })), `admin 0x${op.toString(16)}`).toEqual(INVALID_OPCODE);
      if (!IMPLEMENTED_IO.includes(op)) expect(st(await qp.passthru({ opcode: op, nsid: 1 })), `I/O 0x${op.toString(16)}`).toEqual(INVALID_OPCODE);
    }
  });

  it('a dword-aligned offset returns the log from there; bytes past the end of the log read as zero', async () => {
    const h = await up();
    const whole = arenaBuffer(h, 512);
    expect(st(await getLogPage(h, LID.SMART, whole))).toEqual(SUCCESS);
    const part = arenaBuffer(h, 16, 0xa5);
    expect(st(await getLogPage(h, LID.SMART, part, { offset: 500 }))).toEqual(SUCCESS);
    expect(Array.from(part.subarray(0, 12))).toEqual(Array.from(whole.subarray(500, 512)));
    expect(Array.from(part.subarray(12))).toEqual([0, 0, 0, 0]);
  });

  for (const offset of [1, 2, 3, 6]) {
    it(`an offset that is not dword aligned (${offset}): Invalid Field in Command`, async () => {
      const h = await up();
      expect(st(await getLogPage(h, LID.SMART, new Uint8Array(8), { offset }))).toEqual(INVALID_FIELD);
    });
  }

  it('an offset beyond the end of the log: Invalid Field in Command', async () => {
    const h = await up();
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(8), { offset: 516 }))).toEqual(INVALID_FIELD);
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(8), { offset: 0x1_0000_0000 }))).toEqual(INVALID_FIELD);
    expect(st(await getLogPage(h, LID.ERROR, new Uint8Array(64), { offset: 64 * 64 + 64 }))).toEqual(INVALID_FIELD);
    expect(st(await getLogPage(h, LID.EFFECTS, new Uint8Array(8), { offset: 8192 }))).toEqual(INVALID_FIELD);
  });

  for (const lid of [0x00, 0x6f, 0xc0]) {
    it(`unknown LID 0x${lid.toString(16)}: Invalid Log Page`, async () => {
      const h = await up();
      expect(st(await getLogPage(h, lid, new Uint8Array(64)))).toEqual(INVALID_LOG_PAGE);
    });
  }
});

// ------------------------------------------------------------------ Abort and Asynchronous Event Request

describe('Abort', () => {
  it('aborting a held AER completes it with Command Abort Requested; Abort DW0 bit 0 = 0', async () => {
    const h = await up();
    const slot = await nextAdminSlot(h);
    const aer = track(admin(h, { opcode: OPC.AER }));
    await tick(5);
    expect(aer.settled).toBe(false);
    const cid = adminSqeCid(h, slot);
    const abort = await admin(h, { opcode: OPC.ABORT, cdw10: ((cid << 16) | 0) >>> 0 });
    expect(st(abort)).toEqual(SUCCESS);
    expect(abort.dw0 & 1).toBe(0);
    await tick();
    expect(aer.settled).toBe(true);
    expect(st(aer.value!)).toEqual(ABORT_REQUESTED);
    expect(aer.value!.cid).toBe(cid);
  });

  it('aborting a command that is not outstanding: success with DW0 bit 0 = 1', async () => {
    const h = await up();
    const a = await admin(h, { opcode: OPC.ABORT, cdw10: ((0xbeef << 16) | 0) >>> 0 });
    expect(st(a)).toEqual(SUCCESS);
    expect(a.dw0 & 1).toBe(1);
    const b = await admin(h, { opcode: OPC.ABORT, cdw10: ((0 << 16) | 7) >>> 0 }); // SQ 7 does not exist
    expect(st(b)).toEqual(SUCCESS);
    expect(b.dw0 & 1).toBe(1);
  });

  it.each(DATA_PATHS)('aborting an I/O command still in flight on a file namespace completes it with Command Abort Requested (%s)', async (dataPath) => {
    const { backend, device } = stalledFile(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const read = qp.passthru({ opcode: 0x02, nsid: 1, cdw10: 0, cdw12: 63 }, { buffer: new Uint8Array(64 * 4096), direction: 'from-device' });
    const cid = h.arena.view.getUint16(qp.sq.offset + 2, true); // slot 0 of the fresh SQ
    const abort = await admin(h, { opcode: OPC.ABORT, cdw10: ((cid << 16) | qp.qid) >>> 0 });
    expect(st(abort)).toEqual(SUCCESS);
    expect(abort.dw0 & 1).toBe(0);
    await device.feed(64 * 4096);
    const c = await read;
    expect(st(c)).toEqual(ABORT_REQUESTED);
    expect(c.cid).toBe(cid);
  });
});

describe('Asynchronous Event Request', () => {
  it('is held while there is nothing to report', async () => {
    const h = await up();
    const aer = track(admin(h, { opcode: OPC.AER }));
    await tick(20);
    expect(aer.settled).toBe(false);
    // Other admin commands complete around it.
    expect(st(await identify(h, 0x01, 0))).toEqual(SUCCESS);
    expect(aer.settled).toBe(false);
  });

  it('more than AERL + 1 outstanding: Asynchronous Event Request Limit Exceeded', async () => {
    const h = await up();
    const aerl = h.driver.controller.aerl;
    expect(aerl).toBe(3);
    const held = Array.from({ length: aerl + 1 }, () => track(admin(h, { opcode: OPC.AER })));
    await tick(5);
    expect(held.some((a) => a.settled)).toBe(false);
    expect(st(await admin(h, { opcode: OPC.AER }))).toEqual(AER_LIMIT_EXCEEDED);
    await tick(5);
    expect(held.some((a) => a.settled)).toBe(false);
  });
});

// ------------------------------------------------------------------ common checks

describe('any admin command', () => {
  for (const opcode of [0x03, 0x07, 0x0b, 0x0d, 0x10, 0x18, 0x7f, 0x80, 0xc0, 0xff]) {
    it(`unknown opcode 0x${opcode.toString(16)}: Invalid Command Opcode with DNR`, async () => {
      const h = await up();
      expect(st(await admin(h, { opcode }))).toEqual(INVALID_OPCODE);
    });
  }

  for (const [fuse, psdt] of [
    [1, 0],
    [2, 0],
    [3, 0],
    [0, 1],
    [0, 2],
    [0, 3],
  ] as const) {
    it(`FUSE ${fuse}, PSDT ${psdt}: Invalid Field in Command, and nothing is done`, async () => {
      const h = await up();
      const b = arenaBuffer(h, 4096, 0xa5);
      expect(st(await admin(h, { opcode: OPC.IDENTIFY, cdw10: 0x01, fuse, psdt }, fromDevice(b)))).toEqual(INVALID_FIELD);
      expect(b.every((x) => x === 0xa5)).toBe(true);
    });
  }

  it('the completion echoes the CID, SQID 0 and the SQ head', async () => {
    const h = await up();
    const a = await identify(h, 0x01, 0);
    const b = await identify(h, 0x01, 0);
    expect(a.sqid).toBe(0);
    expect(b.sqid).toBe(0);
    expect(b.sqhd).toBe((a.sqhd + 1) % 32);
    expect(adminSqeCid(h, (b.sqhd + 31) % 32)).toBe(b.cid);
  });
});

describe('driver.adminCommand() turns statuses into typed errors (statusToError)', () => {
  const cases: Array<{ name: string; code: string; sct: number; sc: number; dnr: boolean; run: (h: Harness) => Promise<unknown> }> = [
    { name: 'Create I/O CQ with QID 0', code: 'NVMQ_INVALID_QUEUE_IDENTIFIER', sct: 1, sc: 0x01, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova, cdw10: (7 << 16) | 0, cdw11: 1 }) },
    { name: 'Create I/O CQ with QSIZE 0', code: 'NVMQ_INVALID_QUEUE_SIZE', sct: 1, sc: 0x02, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova, cdw10: 1, cdw11: 1 }) },
    { name: 'Create I/O CQ with an unaligned PRP1', code: 'NVMQ_PRP_OFFSET_INVALID', sct: 0, sc: 0x13, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova + 4, cdw10: (7 << 16) | 1, cdw11: 1 }) },
    { name: 'Create I/O CQ with a bad vector', code: 'NVMQ_INVALID_INTERRUPT_VECTOR', sct: 1, sc: 0x08, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova, cdw10: (7 << 16) | 1, cdw11: (0x8000 << 16) | 1 }) },
    { name: 'Create I/O SQ on CQ 0', code: 'NVMQ_COMPLETION_QUEUE_INVALID', sct: 1, sc: 0x00, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_SQ, prp1: h.arena.alloc(4096).iova, cdw10: (7 << 16) | 1, cdw11: 1 }) },
    { name: 'Delete I/O SQ 0', code: 'NVMQ_INVALID_QUEUE_IDENTIFIER', sct: 1, sc: 0x01, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.DELETE_SQ, cdw10: 0 }) },
    {
      name: 'Delete I/O CQ still in use',
      code: 'NVMQ_INVALID_QUEUE_DELETION',
      sct: 1,
      sc: 0x0c,
      dnr: true,
      run: async (h) => {
        const qp = await h.driver.createIoQueuePair({ entries: 8 });
        return h.driver.adminCommand({ opcode: OPC.DELETE_CQ, cdw10: qp.qid });
      },
    },
    { name: 'Identify NSID 0', code: 'NVMQ_INVALID_NAMESPACE', sct: 0, sc: 0x0b, dnr: true, run: (h) => h.driver.identify(0x00, 0) },
    { name: 'Identify with an unknown CNS', code: 'NVMQ_INVALID_FIELD', sct: 0, sc: 0x02, dnr: true, run: (h) => h.driver.identify(0xff, 0) },
    { name: 'an unknown opcode', code: 'NVMQ_INVALID_OPCODE', sct: 0, sc: 0x01, dnr: true, run: (h) => h.driver.adminCommand({ opcode: 0xff }) },
    { name: 'Get Log Page of an unknown LID', code: 'NVMQ_INVALID_LOG_PAGE', sct: 1, sc: 0x09, dnr: true, run: (h) => h.driver.getLogPage(0x00, 64) },
    { name: 'Set Features with SV', code: 'NVMQ_FEATURE_NOT_SAVEABLE', sct: 1, sc: 0x0d, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.SET_FEATURES, cdw10: (FID.VWC | (1 << 31)) >>> 0, cdw11: 0 }) },
    {
      name: 'Number of Queues after queue creation',
      code: 'NVMQ_COMMAND_SEQUENCE_ERROR',
      sct: 0,
      sc: 0x0c,
      dnr: true,
      run: async (h) => {
        await h.driver.createIoQueuePair({ entries: 8 });
        return h.driver.setNumberOfQueues(2);
      },
    },
    {
      name: 'one AER too many',
      code: 'NVMQ_ASYNC_EVENT_LIMIT_EXCEEDED',
      sct: 1,
      sc: 0x05,
      dnr: true,
      run: async (h) => {
        for (let i = 0; i < 4; i++) void admin(h, { opcode: OPC.AER });
        return h.driver.adminCommand({ opcode: OPC.AER });
      },
    },
  ];
  for (const c of cases) {
    it(`${c.name} → ${c.code}`, async () => {
      const h = await up();
      await expect(c.run(h)).rejects.toMatchObject({ name: 'NvmeStatusError', code: c.code, sct: c.sct, sc: c.sc, dnr: c.dnr, qid: 0 });
    });
  }

  it('the error names the command and the status', async () => {
    const h = await up();
    const err = await h.driver.adminCommand({ opcode: OPC.DELETE_SQ, cdw10: 9 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ opcode: OPC.DELETE_SQ, status: (1 << 14) | (1 << 8) | 0x01 });
    expect((err as Error).message).toBe('Delete I/O Submission Queue (0x00) failed: Invalid Queue Identifier (SCT 1, SC 0x01), DNR');
  });
});
