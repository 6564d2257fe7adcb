/**
 * Capsule builders for the Fabrics command layer tests. Offsets here are
 * written from NVMe over Fabrics 1.1 (Connect, Property Get / Set) and NVMe 1.4,
 * not taken from the source tables, so a wrong table fails the tests.
 */
import { randomUUID } from 'node:crypto';
import type { QueueLink } from '../../../src/engine/target/index.js';

export const SUBNQN = 'nqn.2026-12.io.nvmq:test';
export const HOST_A = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-000000000001';
export const HOST_B = 'nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-000000000002';

export function hostId(): Uint8Array {
  return Uint8Array.from(Buffer.from(randomUUID().replaceAll('-', ''), 'hex'));
}

export interface ConnectArgs {
  cid?: number;
  qid?: number;
  sqsize?: number;
  cattr?: number;
  kato?: number;
  recfmt?: number;
  hostid?: Uint8Array;
  cntlid?: number;
  subnqn?: string;
  hostnqn?: string;
}

/** A Connect capsule: opcode 7Fh, FCTYPE 01h at byte 4, RECFMT 41:40, QID 43:42, SQSIZE 45:44, CATTR 46, KATO 51:48. */
export function connectSqe(a: ConnectArgs = {}): Uint8Array {
  const b = Buffer.alloc(64);
  b[0] = 0x7f;
  b.writeUInt16LE(a.cid ?? 7, 2);
  b[4] = 0x01;
  // SGL1: in-capsule data block, offset subtype, 1024 bytes.
  b.writeUInt32LE(1024, 24 + 8);
  b[24 + 15] = 0x01;
  b.writeUInt16LE(a.recfmt ?? 0, 40);
  b.writeUInt16LE(a.qid ?? 0, 42);
  b.writeUInt16LE(a.sqsize ?? 31, 44);
  b[46] = a.cattr ?? 0;
  b.writeUInt32LE(a.kato ?? 0, 48);
  return new Uint8Array(b);
}

/** Connect data: HOSTID 15:0, CNTLID 17:16, SUBNQN 511:256, HOSTNQN 767:512. */
export function connectData(a: ConnectArgs & { hostid: Uint8Array }): Uint8Array {
  const b = Buffer.alloc(1024);
  Buffer.from(a.hostid).copy(b, 0);
  b.writeUInt16LE(a.cntlid ?? 0xffff, 16);
  b.write(a.subnqn ?? SUBNQN, 256, 'utf8');
  b.write(a.hostnqn ?? HOST_A, 512, 'utf8');
  return new Uint8Array(b);
}

/** Property Get (FCTYPE 04h) / Set (00h): ATTRIB byte 40, OFST 47:44, VALUE 55:48. */
export function propertySqe(fctype: 0x00 | 0x04, ofst: number, size8: boolean, value = 0n): Uint8Array {
  const b = Buffer.alloc(64);
  b[0] = 0x7f;
  b[4] = fctype;
  b[40] = size8 ? 1 : 0;
  b.writeUInt32LE(ofst, 44);
  b.writeBigUInt64LE(value, 48);
  return new Uint8Array(b);
}

export function fabricsSqe(fctype: number): Uint8Array {
  const b = Buffer.alloc(64);
  b[0] = 0x7f;
  b[4] = fctype;
  return new Uint8Array(b);
}

/** An admin SQE: OPC byte 0, NSID 7:4, CDW10..CDW15 at 40, 44, ... 60. */
export function adminSqe(opc: number, f: { nsid?: number; cdw10?: number; cdw11?: number; cdw12?: number; cdw13?: number; cdw14?: number } = {}): Uint8Array {
  const b = Buffer.alloc(64);
  b[0] = opc;
  b.writeUInt32LE(f.nsid ?? 0, 4);
  b.writeUInt32LE(f.cdw10 ?? 0, 40);
  b.writeUInt32LE(f.cdw11 ?? 0, 44);
  b.writeUInt32LE(f.cdw12 ?? 0, 48);
  b.writeUInt32LE(f.cdw13 ?? 0, 52);
  b.writeUInt32LE(f.cdw14 ?? 0, 56);
  return new Uint8Array(b);
}

/** Status field as (SCT, SC, DNR). */
export function st(status: number): { sct: number; sc: number; dnr: boolean } {
  return { sct: (status >> 8) & 7, sc: status & 0xff, dnr: (status & 0x4000) !== 0 };
}

/** A link that records its closing. */
export class FakeLink implements QueueLink {
  closed: string | undefined;
  closes = 0;
  close(reason: string): void {
    this.closed = reason;
    this.closes++;
  }
}

/** CC with EN=1, CSS NVM, MPS 0, IOSQES 6, IOCQES 4: what Linux writes (bits 0, 6:4, 10:7, 19:16, 23:20). */
export const CC_ENABLE = 1 | (6 << 16) | (4 << 20);
