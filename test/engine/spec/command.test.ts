/**
 * SQE / CQE encoding and the field accessors of layout.ts.
 */
import { describe, it, expect } from 'vitest';
import {
  Cqe,
  CQE_SIZE,
  Cc,
  Fuse,
  IdCtrl,
  Psdt,
  RwCdw12,
  Sqe,
  SQE_SIZE,
  SmartLog,
  bitsOf,
  decodeCommand,
  decodeCommandWords,
  decodeCompletion,
  encodeCommand,
  encodeCompletion,
  makeStatus,
  readAscii,
  readField,
  readU128,
  readU64,
  struct,
  withBits,
  writeAscii,
  writeField,
  writeU128,
  writeU64,
  DNR,
  MORE,
  type Command,
  type Completion,
} from '../../../src/engine/spec/index.js';

function dv(n: number, fill = 0): DataView {
  const b = new Uint8Array(n);
  b.fill(fill);
  return new DataView(b.buffer);
}
function bytesOf(v: DataView, from: number, to: number): number[] {
  return [...new Uint8Array(v.buffer, from, to - from)];
}

describe('encodeCommand / decodeCommand', () => {
  it('keeps the low 16 bits of PRP1 / PRP2 at or above 2^53, where a double cannot hold the address', () => {
    // Found by the fuzzer: Create I/O CQ with PRP1 0x44ad464b_dba29054 failed with Data Transfer Error, since
    // the rounded address looked page aligned; its offset makes it PRP Offset Invalid.
    const w = new Uint32Array(16);
    w[6] = 0xdba29054;
    w[7] = 0x44ad464b;
    w[8] = 0x00000ffc;
    w[9] = 0xffffffff;
    const c = decodeCommandWords(w, 0);
    expect(c.prp1 % 4096).toBe(0x054);
    expect(c.prp1 >= 2 ** 52).toBe(true);
    expect(c.prp2 % 4096).toBe(0xffc);
    expect(Number.isSafeInteger(c.prp1) && Number.isSafeInteger(c.prp2)).toBe(true);
    // Below 2^53 addresses stay exact.
    w[7] = 0x1fffff;
    expect(decodeCommandWords(w, 0).prp1).toBe(0x1fffff * 2 ** 32 + 0xdba29054);
  });

  const full: Command = {
    opcode: 0xff,
    fuse: Fuse.SECOND,
    psdt: Psdt.SGL_MPTR_CONTIG,
    cid: 0xffff,
    nsid: 0xffffffff,
    cdw2: 0x89abcdef,
    cdw3: 0x01234567,
    mptr: 0x0000_7fff_fedc_b000, // above 2^32 and 2^46
    prp1: 0x1_2345_6789_a000, // above 2^32
    prp2: 2 ** 52 + 0x3000, // far above 2^32, still exact
    cdw10: 0xdeadbeef,
    cdw11: 0x80000001,
    cdw12: 0x7fffffff,
    cdw13: 0x00000000,
    cdw14: 0xffffffff,
    cdw15: 0x5a5a5a5a,
  };

  it('round trips every field, including 64-bit pointers above 2^32 and CID 0xffff', () => {
    const v = dv(SQE_SIZE);
    encodeCommand(v, 0, full);
    expect(decodeCommand(v, 0)).toEqual(full);
  });

  it('round trips at an offset inside a larger ring without touching neighbouring entries', () => {
    const v = dv(SQE_SIZE * 3, 0xaa);
    encodeCommand(v, SQE_SIZE, full);
    expect(decodeCommand(v, SQE_SIZE)).toEqual(full);
    expect(bytesOf(v, 0, SQE_SIZE).every((x) => x === 0xaa)).toBe(true);
    expect(bytesOf(v, 2 * SQE_SIZE, 3 * SQE_SIZE).every((x) => x === 0xaa)).toBe(true);
  });

  it('lays CDW0 out as OPC 7:0, FUSE 9:8, PSDT 15:14, CID 31:16', () => {
    const v = dv(SQE_SIZE);
    encodeCommand(v, 0, { opcode: 0x02, cid: 0x1234, fuse: Fuse.FIRST, psdt: Psdt.SGL_MPTR_SGL });
    expect(v.getUint32(0, true)).toBe((0x1234 << 16) | (0b10 << 14) | (0b01 << 8) | 0x02);
    expect(readField(v, 0, Sqe.OPC)).toBe(0x02);
    expect(readField(v, 0, Sqe.FUSE)).toBe(Fuse.FIRST);
    expect(readField(v, 0, Sqe.PSDT)).toBe(Psdt.SGL_MPTR_SGL);
    expect(readField(v, 0, Sqe.CID)).toBe(0x1234);
  });

  it('writes 64-bit pointers little endian, low dword first', () => {
    const v = dv(SQE_SIZE);
    encodeCommand(v, 0, { opcode: 1, cid: 1, prp1: 0x1_2345_6789_a000, prp2: 0xabcd_0000_1000, mptr: 0x2_0000_0000 });
    expect(v.getUint32(24, true)).toBe(0x6789a000);
    expect(v.getUint32(28, true)).toBe(0x00012345);
    expect(v.getUint32(32, true)).toBe(0x00001000);
    expect(v.getUint32(36, true)).toBe(0x0000abcd);
    expect(v.getUint32(16, true)).toBe(0);
    expect(v.getUint32(20, true)).toBe(2);
    expect(readField(v, 0, Sqe.PRP1)).toBe(0x1_2345_6789_a000);
    expect(readField(v, 0, Sqe.PRP2)).toBe(0xabcd_0000_1000);
    expect(readField(v, 0, Sqe.MPTR)).toBe(0x2_0000_0000);
  });

  it('CID 0xffff does not bleed into the opcode, FUSE or PSDT', () => {
    const v = dv(SQE_SIZE);
    encodeCommand(v, 0, { opcode: 0, cid: 0xffff });
    const c = decodeCommand(v, 0);
    expect(c.cid).toBe(0xffff);
    expect(c.opcode).toBe(0);
    expect(c.fuse).toBe(0);
    expect(c.psdt).toBe(0);
    expect(bytesOf(v, 0, 2)).toEqual([0, 0]);
  });

  it('zeroes every field not given, even over a dirty slot', () => {
    const v = dv(SQE_SIZE, 0xff);
    encodeCommand(v, 0, { opcode: 0x06, cid: 7 });
    expect(decodeCommand(v, 0)).toEqual({
      opcode: 0x06,
      fuse: 0,
      psdt: 0,
      cid: 7,
      nsid: 0,
      cdw2: 0,
      cdw3: 0,
      mptr: 0,
      prp1: 0,
      prp2: 0,
      cdw10: 0,
      cdw11: 0,
      cdw12: 0,
      cdw13: 0,
      cdw14: 0,
      cdw15: 0,
    });
    // Every one of the 64 bytes but CDW0 is written.
    expect(bytesOf(v, 4, SQE_SIZE).every((x) => x === 0)).toBe(true);
  });

  it('puts each command dword at its spec offset', () => {
    const v = dv(SQE_SIZE);
    encodeCommand(v, 0, { opcode: 1, cid: 2, nsid: 0x11, cdw2: 0x22, cdw3: 0x33, cdw10: 0xa0, cdw11: 0xb0, cdw12: 0xc0, cdw13: 0xd0, cdw14: 0xe0, cdw15: 0xf0 });
    expect(v.getUint32(4, true)).toBe(0x11);
    expect(v.getUint32(8, true)).toBe(0x22);
    expect(v.getUint32(12, true)).toBe(0x33);
    expect(v.getUint32(40, true)).toBe(0xa0);
    expect(v.getUint32(44, true)).toBe(0xb0);
    expect(v.getUint32(48, true)).toBe(0xc0);
    expect(v.getUint32(52, true)).toBe(0xd0);
    expect(v.getUint32(56, true)).toBe(0xe0);
    expect(v.getUint32(60, true)).toBe(0xf0);
  });

  it('decodes dwords as unsigned numbers', () => {
    const v = dv(SQE_SIZE, 0xff);
    const c = decodeCommand(v, 0);
    expect(c.nsid).toBe(0xffffffff);
    expect(c.cdw10).toBe(0xffffffff);
    expect(c.cid).toBe(0xffff);
    expect(c.prp1).toBe(2 ** 53 - 1); // past 2^53 the low 16 bits are kept just under 2^53 (layout.ts addressOf); nothing negative
    expect(c.prp1).toBeGreaterThan(0);
  });

  it('PSDT and FUSE constants (4.2, Figure 104)', () => {
    expect(Psdt).toEqual({ PRP: 0b00, SGL_MPTR_CONTIG: 0b01, SGL_MPTR_SGL: 0b10 });
    expect(Fuse).toEqual({ NORMAL: 0b00, FIRST: 0b01, SECOND: 0b10 });
  });
});

describe('encodeCompletion / decodeCompletion', () => {
  const cases: Completion[] = [
    { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0, phase: 0 },
    { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0, phase: 1 },
    { dw0: 0xffffffff, dw1: 0x80000000, sqhd: 0xffff, sqid: 0xffff, cid: 0xffff, status: 0x7fff, phase: 1 },
    { dw0: 0x12345678, dw1: 0x9abcdef0, sqhd: 17, sqid: 3, cid: 0xfffe, status: makeStatus(0, 0x80, true), phase: 0 },
    { dw0: 1, dw1: 0, sqhd: 1023, sqid: 65535, cid: 0, status: makeStatus(2, 0x81) | MORE, phase: 1 },
  ];
  for (const c of cases) {
    it(`round trips status 0x${c.status.toString(16)} with phase ${c.phase}`, () => {
      const v = dv(CQE_SIZE * 2, 0x55);
      encodeCompletion(v, CQE_SIZE, c);
      expect(decodeCompletion(v, CQE_SIZE)).toEqual(c);
      expect(bytesOf(v, 0, CQE_SIZE).every((x) => x === 0x55)).toBe(true);
    });
  }

  it('stores the phase tag in bit 0 and the status field in bits 15:1 of the last word', () => {
    const v = dv(CQE_SIZE);
    encodeCompletion(v, 0, { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: DNR | makeStatus(1, 0x02), phase: 1 });
    expect(v.getUint16(14, true)).toBe(((DNR | 0x102) << 1) | 1);
    expect(v.getUint8(15) & 0x80).toBe(0x80); // DNR is DW3 bit 31
    expect(readField(v, 0, Cqe.P)).toBe(1);
    expect(readField(v, 0, Cqe.SF)).toBe(DNR | 0x102);
  });

  it('the phase tag does not leak into the status and vice versa', () => {
    const v = dv(CQE_SIZE);
    encodeCompletion(v, 0, { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0, phase: 1 });
    expect(decodeCompletion(v, 0).status).toBe(0);
    encodeCompletion(v, 0, { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0x7fff, phase: 0 });
    expect(decodeCompletion(v, 0).phase).toBe(0);
    expect(decodeCompletion(v, 0).status).toBe(0x7fff);
  });

  it('places DW0, DW1, SQHD, SQID and CID at their spec offsets', () => {
    const v = dv(CQE_SIZE);
    encodeCompletion(v, 0, { dw0: 0x11223344, dw1: 0x55667788, sqhd: 0x99aa, sqid: 0xbbcc, cid: 0xddee, status: 0, phase: 0 });
    expect(bytesOf(v, 0, CQE_SIZE)).toEqual([0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 0xaa, 0x99, 0xcc, 0xbb, 0xee, 0xdd, 0, 0]);
  });
});

describe('readField / writeField', () => {
  const T = struct('T', 32, {
    B: [0, 1],
    H: [2, 2],
    W: [4, 4],
    Q: [8, 8],
    X: [16, 16],
    LO: [4, 4, 0, 4],
    MID: [4, 4, 12, 8],
    TOP: [4, 4, 31, 1],
    NIB: [0, 1, 4, 4],
    HB: [2, 2, 15, 1],
    ALL: [4, 4, 0, 32],
  });

  it('reads and writes 1, 2, 4 and 8 byte fields little endian', () => {
    const v = dv(32);
    writeField(v, 0, T.B, 0xab);
    writeField(v, 0, T.H, 0xbeef);
    writeField(v, 0, T.W, 0xcafef00d);
    writeField(v, 0, T.Q, 0x1234_5678_9abc);
    expect(bytesOf(v, 0, 16)).toEqual([0xab, 0, 0xef, 0xbe, 0x0d, 0xf0, 0xfe, 0xca, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0]);
    expect(readField(v, 0, T.B)).toBe(0xab);
    expect(readField(v, 0, T.H)).toBe(0xbeef);
    expect(readField(v, 0, T.W)).toBe(0xcafef00d);
    expect(readField(v, 0, T.Q)).toBe(0x1234_5678_9abc);
  });

  it('honours the base offset', () => {
    const v = dv(64);
    writeField(v, 32, T.W, 0x01020304);
    expect(v.getUint32(36, true)).toBe(0x01020304);
    expect(readField(v, 32, T.W)).toBe(0x01020304);
    expect(readField(v, 0, T.W)).toBe(0);
  });

  it('reads a 4-byte field with bit 31 set as a positive number', () => {
    const v = dv(32);
    writeField(v, 0, T.W, 0x80000000);
    expect(readField(v, 0, T.W)).toBe(0x80000000);
    writeField(v, 0, T.W, -1);
    expect(readField(v, 0, T.W)).toBe(0xffffffff);
    expect(readField(v, 0, T.ALL)).toBe(0xffffffff);
  });

  it('a 16-byte field holds a counter in its low 64 bits', () => {
    const v = dv(32, 0xff);
    writeField(v, 0, T.X, 2 ** 40 + 5);
    expect(readU64(v, 16)).toBe(2 ** 40 + 5);
    expect(readU64(v, 24)).toBe(0);
    expect(readU128(v, 16)).toBe(2 ** 40 + 5);
  });

  it('bit field writes keep every neighbouring bit', () => {
    const v = dv(32, 0xff);
    writeField(v, 0, T.MID, 0);
    expect(v.getUint32(4, true)).toBe(0xfff00fff);
    writeField(v, 0, T.MID, 0x5a);
    expect(v.getUint32(4, true)).toBe(0xfff5afff);
    writeField(v, 0, T.LO, 0);
    expect(v.getUint32(4, true)).toBe(0xfff5aff0);
    writeField(v, 0, T.TOP, 0);
    expect(v.getUint32(4, true)).toBe(0x7ff5aff0);
    expect(readField(v, 0, T.MID)).toBe(0x5a);
    expect(readField(v, 0, T.LO)).toBe(0);
    expect(readField(v, 0, T.TOP)).toBe(0);
    // neighbouring words untouched
    expect(v.getUint32(0, true)).toBe(0xffffffff);
    expect(v.getUint32(8, true)).toBe(0xffffffff);
  });

  it('bit fields in 1- and 2-byte words keep their neighbours too', () => {
    const v = dv(32);
    v.setUint8(0, 0x0f);
    writeField(v, 0, T.NIB, 0xa);
    expect(v.getUint8(0)).toBe(0xaf);
    expect(v.getUint8(1)).toBe(0);
    v.setUint16(2, 0x7fff, true);
    writeField(v, 0, T.HB, 1);
    expect(v.getUint16(2, true)).toBe(0xffff);
    writeField(v, 0, T.HB, 0);
    expect(v.getUint16(2, true)).toBe(0x7fff);
    expect(readField(v, 0, T.NIB)).toBe(0xa);
    expect(readField(v, 0, T.HB)).toBe(0);
  });

  it('a value wider than the bit field is cut to the field', () => {
    const v = dv(32);
    writeField(v, 0, T.MID, 0xfff);
    expect(v.getUint32(4, true)).toBe(0x000ff000);
    writeField(v, 0, T.LO, 0x1f);
    expect(v.getUint32(4, true)).toBe(0x000ff00f);
  });

  it('the top bit of a word writes and reads unsigned', () => {
    const v = dv(32);
    writeField(v, 0, T.TOP, 1);
    expect(v.getUint32(4, true)).toBe(0x80000000);
    expect(readField(v, 0, T.TOP)).toBe(1);
  });

  it('works on real fields: CC.SHN next to CC.EN and CC.AMS', () => {
    const v = dv(4);
    writeField(v, 0, Cc.EN, 1);
    writeField(v, 0, Cc.AMS, 0b111);
    writeField(v, 0, Cc.IOSQES, 6);
    writeField(v, 0, Cc.IOCQES, 4);
    writeField(v, 0, Cc.SHN, 0b01);
    expect(v.getUint32(0, true)).toBe(1 | (0b111 << 11) | (0b01 << 14) | (6 << 16) | (4 << 20));
    writeField(v, 0, Cc.SHN, 0);
    expect(v.getUint32(0, true)).toBe(1 | (0b111 << 11) | (6 << 16) | (4 << 20));
  });

  it('refuses fields that are not numbers', () => {
    const v = dv(4096);
    expect(() => readField(v, 0, IdCtrl.SN)).toThrow();
    expect(() => writeField(v, 0, IdCtrl.SN, 1)).toThrow();
    expect(() => readField(v, 0, SmartLog.DATA_UNITS_READ)).toThrow();
    const Q = struct('Q', 8, { F: [0, 8, 4, 4] });
    expect(() => readField(dv(8), 0, Q.F)).toThrow();
  });
});

describe('bitsOf / withBits', () => {
  it('bitsOf extracts a field of a dword in hand', () => {
    const cdw12 = (1 << 31) | (1 << 30) | (0xa << 26) | (1 << 25) | (0x3 << 20) | 0xfffe;
    expect(bitsOf(cdw12, RwCdw12.NLB)).toBe(0xfffe);
    expect(bitsOf(cdw12, RwCdw12.DTYPE)).toBe(0x3);
    expect(bitsOf(cdw12, RwCdw12.DEAC)).toBe(1);
    expect(bitsOf(cdw12, RwCdw12.PRINFO)).toBe(0xa);
    expect(bitsOf(cdw12, RwCdw12.FUA)).toBe(1);
    expect(bitsOf(cdw12, RwCdw12.LR)).toBe(1);
    expect(bitsOf(0x7fffffff, RwCdw12.LR)).toBe(0);
  });

  it('bitsOf of a whole field is the unsigned dword', () => {
    const W = struct('W', 4, { W: [0, 4] });
    expect(bitsOf(-1, W.W)).toBe(0xffffffff);
  });

  it('withBits replaces only the field', () => {
    expect(withBits(0xffffffff, RwCdw12.NLB, 0)).toBe(0xffff0000);
    expect(withBits(0, RwCdw12.NLB, 7)).toBe(7);
    expect(withBits(0xffffffff, RwCdw12.DEAC, 0)).toBe(0xfdffffff);
    expect(withBits(0x12345678, RwCdw12.DTYPE, 0xf)).toBe(0x12f45678);
  });

  it('withBits returns an unsigned dword when it sets bit 31', () => {
    expect(withBits(0, RwCdw12.LR, 1)).toBe(0x80000000);
    expect(withBits(0x0000ffff, RwCdw12.LR, 1)).toBe(0x8000ffff);
  });

  it('withBits cuts an oversized value to the field', () => {
    expect(withBits(0, RwCdw12.FUA, 3)).toBe(1 << 30);
    expect(withBits(0, RwCdw12.DTYPE, 0x1f)).toBe(0xf << 20);
  });

  it('withBits and bitsOf agree on every field of a dword', () => {
    let dw = 0;
    dw = withBits(dw, RwCdw12.NLB, 0x1234);
    dw = withBits(dw, RwCdw12.PRINFO, 0x5);
    dw = withBits(dw, RwCdw12.FUA, 1);
    expect(bitsOf(dw, RwCdw12.NLB)).toBe(0x1234);
    expect(bitsOf(dw, RwCdw12.PRINFO)).toBe(0x5);
    expect(bitsOf(dw, RwCdw12.FUA)).toBe(1);
    expect(bitsOf(dw, RwCdw12.LR)).toBe(0);
    expect(bitsOf(dw, RwCdw12.DEAC)).toBe(0);
  });
});

describe('readU64 / writeU64', () => {
  for (const value of [0, 1, 0xffffffff, 2 ** 32, 2 ** 32 + 1, 0x1_0000_1000, 2 ** 48 - 1, Number.MAX_SAFE_INTEGER]) {
    it(`round trips ${value}`, () => {
      const v = dv(16, 0xee);
      writeU64(v, 4, value);
      expect(readU64(v, 4)).toBe(value);
      expect(bytesOf(v, 0, 4)).toEqual([0xee, 0xee, 0xee, 0xee]);
      expect(bytesOf(v, 12, 16)).toEqual([0xee, 0xee, 0xee, 0xee]);
    });
  }

  it('is little endian', () => {
    const v = dv(8);
    writeU64(v, 0, 0x0102_0304_0506);
    expect(bytesOf(v, 0, 8)).toEqual([0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0, 0]);
  });

  it('writeU128 writes the value low and zeroes the high 64 bits', () => {
    const v = dv(16, 0xff);
    writeU128(v, 0, 12345);
    expect(readU64(v, 0)).toBe(12345);
    expect(bytesOf(v, 8, 16).every((x) => x === 0)).toBe(true);
  });
});

describe('writeAscii / readAscii', () => {
  const A = struct('A', 16, { S: [2, 8] });

  it('pads with spaces to the field width', () => {
    const v = dv(16);
    writeAscii(v, 0, A.S, 'abc');
    expect(bytesOf(v, 2, 10)).toEqual([0x61, 0x62, 0x63, 0x20, 0x20, 0x20, 0x20, 0x20]);
    expect(readAscii(v, 0, A.S)).toBe('abc');
  });

  it('truncates text longer than the field without writing past it', () => {
    const v = dv(16, 0x11);
    writeAscii(v, 0, A.S, 'ABCDEFGHIJKL');
    expect(readAscii(v, 0, A.S)).toBe('ABCDEFGH');
    expect(v.getUint8(1)).toBe(0x11);
    expect(v.getUint8(10)).toBe(0x11);
  });

  it('replaces characters outside printable ASCII with "?"', () => {
    const v = dv(16);
    writeAscii(v, 0, A.S, 'a\u00e9\n\u007fz');
    expect(readAscii(v, 0, A.S)).toBe('a???z');
  });

  it('readAscii strips trailing spaces and NULs but keeps leading and inner spaces', () => {
    const v = dv(16);
    writeAscii(v, 0, A.S, ' a b');
    expect(readAscii(v, 0, A.S)).toBe(' a b');
    const w = dv(16);
    w.setUint8(2, 0x58);
    expect(readAscii(w, 0, A.S)).toBe('X');
  });

  it('fills the Identify Controller SN, MN and FR fields', () => {
    const v = dv(4096);
    writeAscii(v, 0, IdCtrl.SN, 'NVMQ0001');
    writeAscii(v, 0, IdCtrl.MN, 'nvmq virtual controller');
    writeAscii(v, 0, IdCtrl.FR, '0.1.0');
    expect(readAscii(v, 0, IdCtrl.SN)).toBe('NVMQ0001');
    expect(readAscii(v, 0, IdCtrl.MN)).toBe('nvmq virtual controller');
    expect(readAscii(v, 0, IdCtrl.FR)).toBe('0.1.0');
    expect(v.getUint8(23)).toBe(0x20); // SN padded to its last byte
    expect(v.getUint8(63)).toBe(0x20);
    expect(v.getUint8(71)).toBe(0x20);
    expect(v.getUint8(72)).toBe(0); // RAB untouched
  });
});
