/**
 * Shared by the NVM command set tests in this folder (NVMe 1.4, section 6,
 * through the host driver): Read, Write, Flush, Write Zeroes and Dataset
 * Management on memory and file namespaces, the PRP shapes a driver builds
 * (and hand-built ones through passthrough), and every rejection with its
 * exact status. Media contents are checked in the backends themselves (the
 * memory namespace's buffer, the image file on disk), not only through reads.
 *
 * Here: the statuses and opcodes written out from the spec, the rigs
 * (`withRig`), raw command and PRP builders, and the medium checks.
 */
import { expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bringUp, memoryNamespace, tempDir, type Harness, type HarnessOptions } from '../../../helpers/harness.js';
import { MemoryBackend } from '../../../../src/engine/device/backends/memory.js';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import type { Backend } from '../../../../src/engine/device/backends/backend.js';
import type { LbaSize } from '../../../../src/engine/device/namespace.js';
import type { DmaBuffer } from '../../../../src/engine/dma-arena.js';
import type { IoQueuePair } from '../../../../src/engine/host/io-queue-pair.js';
import type { Completion } from '../../../../src/engine/spec/command.js';

export const PS = 4096;
export const TWO32 = 0x1_0000_0000;

// Statuses written out from the spec (Figures 126-128): DNR bit 14, SCT bits 10:8, SC bits 7:0.
export const status = (sct: number, sc: number, dnr: boolean): number => (dnr ? 1 << 14 : 0) | (sct << 8) | sc;
export const INVALID_OPCODE = status(0, 0x01, true);
export const INVALID_FIELD = status(0, 0x02, true);
export const DATA_TRANSFER_ERROR = status(0, 0x04, true);
export const INVALID_NAMESPACE = status(0, 0x0b, true);
export const PRP_OFFSET_INVALID = status(0, 0x13, true);
export const WRITE_PROTECTED = status(0, 0x20, true);
export const LBA_OUT_OF_RANGE = status(0, 0x80, true);
export const WRITE_FAULT = status(2, 0x80, false);

export const OP = { FLUSH: 0x00, WRITE: 0x01, READ: 0x02, WRITE_ZEROES: 0x08, DSM: 0x09 } as const;
export const FUA = 1 << 30;
export const DEAC = 1 << 25;
export const DSM_AD = 1 << 2;
export const DSM_IDR = 1 << 0;
export const DSM_IDW = 1 << 1;

// ------------------------------------------------------------------ rigs

type Kind = 'memory' | 'file';

interface NsHandle {
  nsid: number;
  kind: Kind;
  lbaSize: LbaSize;
  size: number;
  backend: Backend;
  path?: string;
  /** What the medium holds right now (the memory buffer, or the image file read from disk). */
  bytes(): Uint8Array;
  /** Overwrites the medium directly, behind the controller's back (test setup only). */
  fill(data: Uint8Array): void;
}

interface Rig {
  h: Harness;
  qp: IoQueuePair;
  ns: Map<number, NsHandle>;
  dir: string;
}

export interface NsSpec {
  kind: Kind;
  lbaSize: LbaSize;
  size: number;
  nsid?: number;
}

function makeNs(dir: string, spec: NsSpec, nsid: number): NsHandle {
  if (spec.kind === 'memory') {
    const backend = memoryNamespace(spec.size, spec.lbaSize, nsid).backend as MemoryBackend;
    const view = new Uint8Array(backend.buffer);
    return { nsid, kind: 'memory', lbaSize: spec.lbaSize, size: spec.size, backend, bytes: () => view.slice(), fill: (d) => view.set(d) };
  }
  const p = path.join(dir, `ns${nsid}.img`);
  const backend = new FileBackend({ path: p, size: spec.size });
  return {
    nsid,
    kind: 'file',
    lbaSize: spec.lbaSize,
    size: spec.size,
    backend,
    path: p,
    bytes: () => new Uint8Array(fs.readFileSync(p)),
    fill: (d) => fs.writeFileSync(p, d, { flag: 'r+' }),
  };
}

/** Brings up a controller over the given namespaces (NSIDs 1, 2, ... unless given) with one I/O queue pair, runs `fn`, tears down. */
export async function withRig(specs: NsSpec[], fn: (r: Rig) => Promise<void>, extra: Omit<HarnessOptions, 'namespaces'> = {}): Promise<void> {
  const t = tempDir();
  let h: Harness | undefined;
  try {
    const ns = new Map<number, NsHandle>();
    let next = 1;
    for (const s of specs) {
      const nsid = s.nsid ?? next;
      ns.set(nsid, makeNs(t.dir, s, nsid));
      next = nsid + 1;
    }
    h = await bringUp({ ...extra, namespaces: [...ns.values()].map((n) => ({ backend: n.backend, lbaSize: n.lbaSize, nsid: n.nsid })) });
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    await fn({ h, qp, ns, dir: t.dir });
  } finally {
    await h?.close();
    t.cleanup();
  }
}

export const KINDS: Kind[] = ['memory', 'file'];
export const LBA_SIZES: LbaSize[] = [512, 4096];

// ------------------------------------------------------------------ raw commands and PRPs

export function rwFields(opcode: number, nsid: number, slba: number, nlb: number, cdw12Extra = 0): { opcode: number; nsid: number; cdw10: number; cdw11: number; cdw12: number } {
  return { opcode, nsid, cdw10: slba % TWO32, cdw11: Math.floor(slba / TWO32), cdw12: ((nlb - 1) | cdw12Extra) >>> 0 };
}

/** A 64-bit PRP entry at an arena offset. */
export function putEntry(h: Harness, offset: number, value: number): void {
  h.arena.view.setUint32(offset, value % TWO32, true);
  h.arena.view.setUint32(offset + 4, Math.floor(value / TWO32), true);
}

/**
 * PRP1 / PRP2 for data at the given addresses: `data[0]` is PRP1 (any dword
 * offset), the others are page addresses in transfer order. Lists go into
 * freshly allocated arena pages, chained when one page of entries is not
 * enough (the last entry of a full list page points to the next one).
 */
export function prpsFor(h: Harness, data: readonly number[]): { prp1: number; prp2: number; listPages: DmaBuffer[] } {
  const [prp1, ...rest] = data;
  if (rest.length === 0) return { prp1: prp1!, prp2: 0, listPages: [] };
  if (rest.length === 1) return { prp1: prp1!, prp2: rest[0]!, listPages: [] };
  const perPage = PS / 8;
  const listPages: DmaBuffer[] = [h.arena.alloc(PS)];
  let slot = 0;
  for (let i = 0; i < rest.length; i++) {
    const left = rest.length - i;
    if (slot === perPage - 1 && left > 1) {
      const next = h.arena.alloc(PS);
      putEntry(h, listPages[listPages.length - 1]!.offset + slot * 8, next.iova);
      listPages.push(next);
      slot = 0;
    }
    putEntry(h, listPages[listPages.length - 1]!.offset + slot * 8, rest[i]!);
    slot++;
  }
  return { prp1: prp1!, prp2: listPages[0]!.iova, listPages };
}

/** Data addresses of a contiguous region inside an arena buffer. */
export function contiguous(buf: DmaBuffer, offset: number, length: number): number[] {
  const out = [buf.iova + offset];
  for (let p = Math.floor(offset / PS + 1) * PS; p < offset + length; p += PS) out.push(buf.iova + p);
  return out;
}

/** Captures the SQE the host writes for a command: the one 64-byte ring entry that changed. */
export async function capturedSqe<T>(qp: IoQueuePair, fn: () => Promise<T>): Promise<{ result: T; prp1: number; prp2: number; cdw12: number; opcode: number }> {
  const before = qp.sq.bytes.slice();
  const result = await fn();
  const after = qp.sq.bytes;
  for (let i = 0; i < qp.entries; i++) {
    const a = after.subarray(i * 64, i * 64 + 64);
    if (!Buffer.from(a).equals(Buffer.from(before.subarray(i * 64, i * 64 + 64)))) {
      const dv = new DataView(a.buffer, a.byteOffset, 64);
      const u64 = (o: number): number => dv.getUint32(o, true) + dv.getUint32(o + 4, true) * TWO32;
      return { result, opcode: a[0]!, prp1: u64(24), prp2: u64(32), cdw12: dv.getUint32(48, true) };
    }
  }
  throw new Error('no SQE was written');
}

export function u64At(h: Harness, iova: number): number {
  const off = iova - h.arena.base;
  return h.arena.view.getUint32(off, true) + h.arena.view.getUint32(off + 4, true) * TWO32;
}

export function dsmRanges(ranges: ReadonlyArray<{ slba: number; nlb: number }>): Uint8Array {
  const data = new Uint8Array(ranges.length * 16);
  const dv = new DataView(data.buffer);
  ranges.forEach((r, i) => {
    dv.setUint32(i * 16 + 4, r.nlb >>> 0, true);
    dv.setUint32(i * 16 + 8, r.slba % TWO32, true);
    dv.setUint32(i * 16 + 12, Math.floor(r.slba / TWO32), true);
  });
  return data;
}

export function expectStatus(c: Completion, want: number): void {
  expect(`0x${c.status.toString(16)}`).toBe(`0x${want.toString(16)}`);
}

/** Asserts the medium equals `model`, naming the first differing LBA. */
export function expectMedium(ns: NsHandle, model: Uint8Array): void {
  const got = ns.bytes();
  expect(got.length).toBe(model.length);
  if (Buffer.from(got).equals(Buffer.from(model))) return;
  let i = 0;
  while (got[i] === model[i]) i++;
  expect.fail(`namespace ${ns.nsid} differs at byte ${i} (LBA ${Math.floor(i / ns.lbaSize)}): ${got[i]} instead of ${model[i]}`);
}

/** Byte-for-byte equality, fast on large buffers, naming the first difference. */
export function expectBytes(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBe(want.length);
  if (Buffer.from(got.buffer, got.byteOffset, got.length).equals(Buffer.from(want.buffer, want.byteOffset, want.length))) return;
  let i = 0;
  while (got[i] === want[i]) i++;
  expect.fail(`bytes differ at ${i}: ${got[i]} instead of ${want[i]}`);
}

export function isZero(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.length).equals(Buffer.alloc(b.length));
}
