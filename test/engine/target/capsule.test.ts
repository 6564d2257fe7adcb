/**
 * Response capsules and SGL1 as the transport reads and writes them (NVMe
 * over Fabrics 1.1: the response capsule is a CQE; NVMe 1.4 section
 * 4.4: the SGL descriptor).
 */
import { describe, it, expect } from 'vitest';
import { encodeResponse, readSgl1, capsuleCid } from '../../../src/engine/target/index.js';
import { connectSqe } from './helpers.js';

describe('encodeResponse', () => {
  it('DW0, DW1, SQHD, SQID, CID, then the status field above a zero phase bit', () => {
    const cqe = Buffer.from(encodeResponse({ status: 0x4182, dw0: 0x0001_0100, dw1: 0xdeadbeef }, 0xabcd, 3, 17));
    expect(cqe.readUInt32LE(0)).toBe(0x0001_0100);
    expect(cqe.readUInt32LE(4)).toBe(0xdeadbeef);
    expect(cqe.readUInt16LE(8)).toBe(17);
    expect(cqe.readUInt16LE(10)).toBe(3);
    expect(cqe.readUInt16LE(12)).toBe(0xabcd);
    expect(cqe.readUInt16LE(14)).toBe(0x4182 << 1);
  });
});

describe('readSgl1', () => {
  it('a Connect carries its data in the capsule: SGL Data Block, Offset subtype, 1024 bytes', () => {
    expect(readSgl1(connectSqe())).toEqual({ type: 0, subtype: 1, address: 0, length: 1024 });
    expect(capsuleCid(connectSqe({ cid: 9 }))).toBe(9);
  });
  it('a Transport SGL Data Block (5Ah) for data moved by R2T / C2HData', () => {
    const sqe = Buffer.alloc(64);
    sqe.writeUInt32LE(65536, 32);
    sqe[39] = 0x5a;
    expect(readSgl1(new Uint8Array(sqe))).toEqual({ type: 5, subtype: 0xa, address: 0, length: 65536 });
    expect(readSgl1(new Uint8Array(10))).toBeUndefined();
    expect(capsuleCid(new Uint8Array(3))).toBe(0);
  });
});
