/**
 * Shared by the admin command set tests in this folder (controller
 * conformance, NVMe 1.4 section 5): for every implemented admin command, the
 * good case and each rejection with its exact status: SCT, SC, DNR (and
 * More / CRD clear).
 *
 * Commands go through `driver.adminPassthru()`, which returns the whole CQE.
 * Opcodes, status values and structure offsets are written out from the spec
 * here rather than taken from src/engine/spec.
 *
 * Importing this module registers an afterEach hook in the test file that
 * runs the clean-ups `up()` and the namespace helpers register.
 */
import * as path from 'node:path';
import { bringUp, scratch, tempDir, stalledBackend, type Harness, type HarnessOptions, type StalledDevice } from '../../../helpers/harness.js';
import type { DataPath } from '../../../../src/engine/uring/data-path.js';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import type { Completion } from '../../../../src/engine/spec/command.js';
import type { CommandFields, DataSpec } from '../../../../src/engine/host/queue-pair.js';

// ------------------------------------------------------------------ spec constants

export const OPC = {
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
export const IMPLEMENTED_ADMIN = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c];
export const IMPLEMENTED_IO = [0x00, 0x01, 0x02, 0x08, 0x09]; // Flush, Write, Read, Write Zeroes, Dataset Management

export const FID = { ARBITRATION: 0x01, TEMPERATURE: 0x04, VWC: 0x06, NUM_QUEUES: 0x07, AEC: 0x0b } as const;
export const LID = { ERROR: 0x01, SMART: 0x02, EFFECTS: 0x05 } as const;
export const CRITICAL_WARNING_TEMPERATURE = 1 << 1;

interface StatusFields {
  sct: number;
  sc: number;
  dnr: boolean;
  more: boolean;
  crd: number;
}
/** The CQE status field without the phase tag: DNR 14, M 13, CRD 12:11, SCT 10:8, SC 7:0. */
export function st(c: Completion): StatusFields {
  return { sct: (c.status >>> 8) & 0x7, sc: c.status & 0xff, dnr: (c.status & (1 << 14)) !== 0, more: (c.status & (1 << 13)) !== 0, crd: (c.status >>> 11) & 0x3 };
}
const S = (sct: number, sc: number, dnr: boolean): StatusFields => ({ sct, sc, dnr, more: false, crd: 0 });

export const SUCCESS = S(0, 0x00, false);
export const INVALID_OPCODE = S(0, 0x01, true);
export const INVALID_FIELD = S(0, 0x02, true);
export const DATA_TRANSFER_ERROR = S(0, 0x04, true);
export const ABORT_REQUESTED = S(0, 0x07, false);
export const ABORTED_SQ_DELETION = S(0, 0x08, false);
export const INVALID_NAMESPACE = S(0, 0x0b, true);
export const COMMAND_SEQUENCE_ERROR = S(0, 0x0c, true);
export const PRP_OFFSET_INVALID = S(0, 0x13, true);
export const LBA_OUT_OF_RANGE = S(0, 0x80, true);
export const COMPLETION_QUEUE_INVALID = S(1, 0x00, true);
export const INVALID_QUEUE_IDENTIFIER = S(1, 0x01, true);
export const INVALID_QUEUE_SIZE = S(1, 0x02, true);
export const AER_LIMIT_EXCEEDED = S(1, 0x05, true);
export const INVALID_INTERRUPT_VECTOR = S(1, 0x08, true);
export const INVALID_LOG_PAGE = S(1, 0x09, true);
export const INVALID_QUEUE_DELETION = S(1, 0x0c, true);
export const FEATURE_NOT_SAVEABLE = S(1, 0x0d, true);

// ------------------------------------------------------------------ helpers

/** Clean-ups run after each test of the importing file, the last registered first. */
const { cleanups } = scratch();

/** A controller brought up by the driver; disabled and closed at the end of the test whatever state it is in. */
export async function up(opts: HarnessOptions = {}): Promise<Harness> {
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
export function stalledFile(dataPath: DataPath): { backend: FileBackend; device: StalledDevice } {
  return stalledBackend(dataPath, (o) => new FileBackend(o), cleanups);
}

export function admin(h: Harness, cmd: CommandFields, data?: DataSpec): Promise<Completion> {
  return h.driver.adminPassthru(cmd, data);
}

/** A buffer inside the DMA arena (zero copy), pre-filled so that every byte the controller writes is visible. */
export function arenaBuffer(h: Harness, n: number, fill = 0xa5): Uint8Array {
  const b = h.arena.alloc(n);
  b.bytes.fill(fill);
  return b.bytes.subarray(0, n);
}

export function fromDevice(buffer: Uint8Array): DataSpec {
  return { buffer, direction: 'from-device' };
}

export function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
}
export function u16(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(at, true);
}
export function u64(b: Uint8Array, at: number): number {
  return u32(b, at) + u32(b, at + 4) * 0x1_0000_0000;
}
export function ascii(b: Uint8Array, at: number, n: number): string {
  return Buffer.from(b.subarray(at, at + n)).toString('latin1');
}

export function identify(h: Harness, cns: number, nsid: number, buffer = arenaBuffer(h, 4096)): Promise<Completion> {
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
export function createCq(h: Harness, a: CqArgs): Promise<Completion> {
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
export function createSq(h: Harness, a: SqArgs): Promise<Completion> {
  return admin(h, {
    opcode: OPC.CREATE_SQ,
    prp1: a.prp1,
    cdw10: ((a.qsize << 16) | a.qid) >>> 0,
    cdw11: ((a.cqid << 16) | ((a.qprio ?? 0) << 1) | (a.pc ?? 1)) >>> 0,
  });
}

export function getFeature(h: Harness, fid: number, sel = 0, cdw11 = 0): Promise<Completion> {
  return admin(h, { opcode: OPC.GET_FEATURES, cdw10: (fid | (sel << 8)) >>> 0, cdw11 });
}
export function setFeature(h: Harness, fid: number, cdw11: number, save = false): Promise<Completion> {
  return admin(h, { opcode: OPC.SET_FEATURES, cdw10: (fid | (save ? 1 << 31 : 0)) >>> 0, cdw11 });
}

export function getLogPage(h: Harness, lid: number, buffer: Uint8Array, o: { nsid?: number; offset?: number; rae?: boolean } = {}): Promise<Completion> {
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
export const tempDw = (tmpth: number, tmpsel = 0, thsel = 0): number => (tmpth | (tmpsel << 16) | (thsel << 20)) >>> 0;

export function track<T>(p: Promise<T>): { settled: boolean; value: T | undefined } {
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
export async function nextAdminSlot(h: Harness): Promise<number> {
  const c = await identify(h, 0x01, 0);
  return c.sqhd;
}
/** The CID the host wrote into slot `slot` of the admin SQ (found through the ASQ register). */
export function adminSqeCid(h: Harness, slot: number): number {
  const asq = h.transport.read64(0x28);
  const off = h.arena.translate(asq + slot * 64, 64);
  return h.arena.view.getUint16(off + 2, true);
}
