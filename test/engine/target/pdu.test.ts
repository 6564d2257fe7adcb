/**
 * The NVMe/TCP wire layer: PduReader, the encoders and the header decoders.
 * Round trips of every PDU type in any chunking, each header check with the
 * FES / FEI the spec wants in the termination request, digests, and a fuzz of
 * random and mutated streams.
 */
import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import { PduReader, PduError, type Pdu, type PduReaderOptions } from '../../../src/engine/target/pdu.js';
import { decodeIcReq, decodeIcResp, decodeTermReq, decodeDataPdu, decodeR2T, capsuleEntry } from '../../../src/engine/target/pdu-fields.js';
import {
  encodeIcReq,
  encodeIcResp,
  encodeCapsuleCmd,
  encodeCapsuleResp,
  encodeH2CData,
  encodeC2HData,
  encodeR2T,
  encodeC2HTermReq,
  encodeH2CTermReq,
  concatSegments,
  MAX_HEADER_SEGMENT,
  type WireOptions,
} from '../../../src/engine/target/pdu-encode.js';
import { crc32c } from '../../../src/engine/shared/crc32c.js';

// Spec values written out here, not imported: CH byte offsets and codes.
const FES_INVALID_HEADER_FIELD = 0x01;
const FES_PDU_SEQUENCE_ERROR = 0x02;
const FES_HEADER_DIGEST_ERROR = 0x03;
const FES_DATA_TRANSFER_LIMIT_EXCEEDED = 0x05;
const FES_UNSUPPORTED_PARAMETER = 0x06;
const AT_TYPE = 0;
const AT_FLAGS = 1;
const AT_HLEN = 2;
const AT_PDO = 3;
const AT_PLEN = 4;
const MAX = 64 * 1024;

/** A deterministic pseudo-random generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
function bytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}
const sqe = (cid: number): Uint8Array => {
  const s = bytes(64, cid + 1);
  s[2] = cid & 0xff;
  s[3] = cid >>> 8;
  return s;
};

/** What a PDU said, copied out (its views expire with the next next()). */
interface Seen {
  type: number;
  flags: number;
  pdo: number;
  plen: number;
  header: number[];
  data: number[];
  dataDigestError: boolean;
}
const seen = (p: Pdu): Seen => ({ type: p.type, flags: p.flags, pdo: p.pdo, plen: p.plen, header: [...p.header], data: [...p.data], dataDigestError: p.dataDigestError });

/** Pushes `stream` cut at `cuts` and drains after every push. */
function readAll(reader: PduReader, stream: Uint8Array, cuts: number[], onPdu?: (p: Pdu) => void): Seen[] {
  const out: Seen[] = [];
  let from = 0;
  for (const to of [...cuts.filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length]) {
    reader.push(stream.slice(from, to));
    from = to;
    for (let p = reader.next(); p !== null; p = reader.next()) {
      onPdu?.(p);
      out.push(seen(p));
    }
  }
  return out;
}
const everyByte = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const randomCuts = (n: number, seed: number): number[] => {
  const r = rng(seed);
  return Array.from({ length: 1 + Math.floor(r() * 12) }, () => Math.floor(r() * n));
};

/** A controller's reader that has taken an ICReq asking for `wire`'s digests. */
function controller(wire: WireOptions = {}, opts: Partial<PduReaderOptions> = {}): PduReader {
  const r = new PduReader({ maxPduBytes: MAX, ...opts });
  r.push(encodeIcReq({ hpda: 0, hdgst: wire.hdgst === true, ddgst: wire.ddgst === true, maxr2t: 0 }));
  expect(r.next()?.type).toBe(0x00);
  r.setDigests(wire.hdgst === true, wire.ddgst === true);
  return r;
}
function host(wire: WireOptions = {}, opts: Partial<PduReaderOptions> = {}): PduReader {
  const r = new PduReader({ maxPduBytes: MAX, side: 'host', ...opts });
  r.push(encodeIcResp({ cpda: 0, hdgst: wire.hdgst === true, ddgst: wire.ddgst === true, maxh2cdata: 8192 }));
  expect(r.next()?.type).toBe(0x01);
  r.setDigests(wire.hdgst === true, wire.ddgst === true);
  return r;
}

function expectPduError(fn: () => unknown, fes: number, fei: number): PduError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PduError);
    const err = e as PduError;
    expect({ fes: err.fes, fei: err.fei }).toEqual({ fes, fei });
    return err;
  }
  throw new Error('no PduError');
}

const WIRES: Array<[string, WireOptions]> = [
  ['no digests', {}],
  ['header digest', { hdgst: true }],
  ['data digest', { ddgst: true }],
  ['both digests', { hdgst: true, ddgst: true }],
  ['both digests, 32-byte data alignment', { hdgst: true, ddgst: true, pda: 7 }],
];

describe('round trips: host-to-controller PDUs through a controller reader', () => {
  for (const [name, wire] of WIRES) {
    const opts = { pda: wire.pda ?? 0 };
    const pdus = (): Uint8Array[] => [
      concatSegments(encodeCapsuleCmd(sqe(1), undefined, wire)),
      concatSegments(encodeCapsuleCmd(sqe(2), bytes(4096, 2), wire)),
      concatSegments(encodeH2CData({ cccid: 3, ttag: 7, datao: 8192, data: bytes(1000, 3), last: true }, wire)),
      concatSegments(encodeH2CData({ cccid: 3, ttag: 8, datao: 0, data: bytes(3, 4), last: false }, wire)),
      encodeH2CTermReq({ fes: 0x03, fei: 0xdeadbeef, offendingHeader: bytes(72, 5) }),
    ];
    const check = (got: Seen[]): void => {
      expect(got.map((p) => p.type)).toEqual([0x04, 0x04, 0x06, 0x06, 0x02]);
      expect(got.every((p) => !p.dataDigestError)).toBe(true);
      expect(got[0]!.header.slice(8)).toEqual([...sqe(1)]);
      expect(got[0]!.data).toEqual([]);
      expect(got[0]!.pdo).toBe(0);
      expect(got[1]!.data).toEqual([...bytes(4096, 2)]);
      expect(got[2]!.data).toEqual([...bytes(1000, 3)]);
      expect(got[3]!.data).toEqual([...bytes(3, 4)]);
      expect(got[4]!.data).toEqual([...bytes(72, 5)]);
      const align = ((wire.pda ?? 0) + 1) * 4;
      for (const p of got.slice(1, 4)) expect(p.pdo % align).toBe(0);
    };
    const fields = (r: PduReader, stream: Uint8Array, cuts: number[]): unknown[] => {
      const f: unknown[] = [];
      readAll(r, stream, cuts, (p) => {
        if (p.type === 0x04) f.push([...capsuleEntry(p)]);
        if (p.type === 0x06) f.push(decodeDataPdu(p));
        if (p.type === 0x02) f.push({ ...decodeTermReq(p), errorData: [...decodeTermReq(p).errorData] });
      });
      return f;
    };
    const want = [
      [...sqe(1)],
      [...sqe(2)],
      { cccid: 3, ttag: 7, datao: 8192, datal: 1000, last: true, success: false },
      { cccid: 3, ttag: 8, datao: 0, datal: 3, last: false, success: false },
      { fes: 0x03, fei: 0xdeadbeef, errorData: [...bytes(72, 5)] },
    ];

    it(`${name}: in one chunk, byte by byte, in random splits`, () => {
      const stream = concatSegments(pdus());
      check(readAll(controller(wire, opts), stream, []));
      check(readAll(controller(wire, opts), stream, everyByte(stream.length)));
      for (let seed = 1; seed <= 20; seed++) check(readAll(controller(wire, opts), stream, randomCuts(stream.length, seed)));
      expect(fields(controller(wire, opts), stream, randomCuts(stream.length, 99))).toEqual(want);
    });
  }

  it('reusedChunks: each chunk is overwritten once the reader has returned null, and every PDU still comes out whole', () => {
    const wire = { hdgst: true, ddgst: true };
    const stream = concatSegments([
      concatSegments(encodeCapsuleCmd(sqe(1), undefined, wire)),
      concatSegments(encodeCapsuleCmd(sqe(2), bytes(4096, 2), wire)),
      concatSegments(encodeH2CData({ cccid: 3, ttag: 7, datao: 8192, data: bytes(1000, 3), last: true }, wire)),
    ]);
    for (let seed = 1; seed <= 20; seed++) {
      const r = controller(wire, { reusedChunks: true });
      // One buffer, as a socket with onread: every chunk is read into it, and garbage follows each drain.
      const into = new Uint8Array(stream.length);
      const got: Seen[] = [];
      let from = 0;
      for (const to of [...randomCuts(stream.length, seed).filter((c) => c > 0).sort((a, b) => a - b), stream.length]) {
        if (to <= from) continue;
        into.set(stream.subarray(from, to));
        r.push(into.subarray(0, to - from));
        from = to;
        for (let p = r.next(); p !== null; p = r.next()) got.push(seen(p));
        into.fill(0xee);
      }
      expect(got.map((p) => p.type)).toEqual([0x04, 0x04, 0x06]);
      expect(got.every((p) => !p.dataDigestError)).toBe(true);
      expect(got[1]!.data).toEqual([...bytes(4096, 2)]);
      expect(got[2]!.data).toEqual([...bytes(1000, 3)]);
    }
  });

  it('reusedChunks: a PDU arriving a byte at a time is copied about once, not once per chunk', () => {
    // 2 x 64 KiB of H2CData a byte per chunk: copying everything kept at every chunk would move 2^32 bytes.
    const big = 64 * 1024;
    const wire = { hdgst: false, ddgst: true };
    const r = controller(wire, { reusedChunks: true, maxPduBytes: big + 1024 });
    const sent = [bytes(big, 11), bytes(big, 12)];
    const stream = concatSegments(sent.map((data, i) => concatSegments(encodeH2CData({ cccid: i, ttag: i, datao: 0, data, last: true }, wire))));
    const into = new Uint8Array(1);
    const got: Array<{ data: Uint8Array; digestError: boolean }> = [];
    // Every byte the reader copies goes through TypedArray.prototype.set.
    const set = vi.spyOn(Uint8Array.prototype, 'set');
    let copied = 0;
    try {
      for (let i = 0; i < stream.length; i++) {
        into[0] = stream[i]!;
        r.push(into);
        for (let p = r.next(); p !== null; p = r.next()) got.push({ data: p.data.slice(), digestError: p.dataDigestError });
        into[0] = 0xee;
      }
      for (const [src] of set.mock.calls) copied += (src as ArrayLike<number>).length;
    } finally {
      set.mockRestore();
    }
    expect(got.map((p) => p.digestError)).toEqual([false, false]);
    expect(got.map((p, i) => Buffer.from(p.data).equals(Buffer.from(sent[i]!)))).toEqual([true, true]);
    // The stream once, the store's doublings, and each PDU once more where it straddles the last chunk.
    expect(copied).toBeLessThan(8 * stream.length);
  });

  it('ICReq fields', () => {
    const r = new PduReader({ maxPduBytes: MAX });
    const pdu = encodeIcReq({ hpda: 3, hdgst: true, ddgst: false, maxr2t: 15 });
    expect(pdu.length).toBe(128);
    r.push(pdu);
    expect(decodeIcReq(r.next()!)).toEqual({ pfv: 0, hpda: 3, hdgst: true, ddgst: false, maxr2t: 15 });
  });
});

describe('round trips: controller-to-host PDUs through a host reader', () => {
  for (const [name, wire] of WIRES) {
    it(`${name}: CapsuleResp, C2HData, R2T, C2HTermReq`, () => {
      const cqe = bytes(16, 9);
      const stream = concatSegments([
        encodeCapsuleResp(cqe, wire),
        ...encodeC2HData({ cccid: 5, datao: 4096, data: bytes(512, 6), last: true, success: true }, wire),
        ...encodeC2HData({ cccid: 6, datao: 0, data: bytes(1, 7), last: false }, wire),
        encodeR2T({ cccid: 7, ttag: 2, r2to: 65536, r2tl: 131072 }, wire),
        encodeC2HTermReq({ fes: 0x01, fei: 2, offendingHeader: bytes(200, 8) }),
      ]);
      for (const cuts of [[], everyByte(stream.length), randomCuts(stream.length, 5)]) {
        const f: unknown[] = [];
        const got = readAll(host(wire, { pda: wire.pda ?? 0 }), stream, cuts, (p) => {
          if (p.type === 0x05) f.push([...capsuleEntry(p)]);
          if (p.type === 0x07) f.push({ ...decodeDataPdu(p), data: [...p.data] });
          if (p.type === 0x09) f.push(decodeR2T(p));
          if (p.type === 0x03) f.push({ ...decodeTermReq(p), errorData: [...decodeTermReq(p).errorData] });
        });
        expect(got.map((p) => p.type)).toEqual([0x05, 0x07, 0x07, 0x09, 0x03]);
        expect(f).toEqual([
          [...cqe],
          { cccid: 5, ttag: 0, datao: 4096, datal: 512, last: true, success: true, data: [...bytes(512, 6)] },
          { cccid: 6, ttag: 0, datao: 0, datal: 1, last: false, success: false, data: [...bytes(1, 7)] },
          { cccid: 7, ttag: 2, r2to: 65536, r2tl: 131072 },
          // Error data is cut to 128 bytes: PLEN 152.
          { fes: 0x01, fei: 2, errorData: [...bytes(128, 8)] },
        ]);
        expect(got[4]!.plen).toBe(152);
      }
    });
  }

  it('ICResp fields, PLEN 128, no digest flags', () => {
    const pdu = encodeIcResp({ cpda: 0, hdgst: true, ddgst: true, maxh2cdata: 131072 });
    expect(pdu.length).toBe(128);
    expect([...pdu.subarray(0, 8)]).toEqual([0x01, 0, 128, 0, 128, 0, 0, 0]);
    const r = new PduReader({ maxPduBytes: MAX, side: 'host' });
    r.push(pdu);
    expect(decodeIcResp(r.next()!)).toEqual({ pfv: 0, cpda: 0, hdgst: true, ddgst: true, maxh2cdata: 131072 });
  });
});

describe('encoders', () => {
  it('C2HData comes as [header + digest + padding, the caller’s data, data digest]', () => {
    const data = new Uint8Array(new SharedArrayBuffer(4096));
    data.set(bytes(4096, 1));
    const segs = encodeC2HData({ cccid: 1, datao: 0, data, last: true }, { hdgst: true, ddgst: true, pda: 7 });
    expect(segs).toHaveLength(3);
    expect(segs[1]).toBe(data);
    // HLEN 24 + HDGST 4 = 28, padded to the 32-byte alignment HPDA 7 asks for.
    expect(segs[0]!.length).toBe(32);
    expect([...segs[0]!.subarray(0, 4)]).toEqual([0x07, 0b0111, 24, 32]);
    expect(new DataView(segs[0]!.buffer).getUint32(4, true)).toBe(32 + 4096 + 4);
    expect(new DataView(segs[0]!.buffer).getUint32(24, true)).toBe(crc32c(segs[0]!.subarray(0, 24)));
    expect(new DataView(segs[2]!.buffer).getUint32(0, true)).toBe(crc32c(data));
  });
  it('without digests, C2HData data follows the 24-byte header', () => {
    const segs = encodeC2HData({ cccid: 1, datao: 0, data: bytes(8, 1), last: false }, {});
    expect(segs).toHaveLength(2);
    expect([...segs[0]!]).toEqual([0x07, 0, 24, 24, 32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
  });
  it('write into a caller’s buffer when given one, the same bytes as fresh ones', () => {
    const into = new Uint8Array(MAX_HEADER_SEGMENT).fill(0xee);
    const wire = { hdgst: true, ddgst: true, pda: 31 };
    const data = bytes(100, 1);
    const fresh = encodeC2HData({ cccid: 1, datao: 0, data, last: true }, wire);
    const reused = encodeC2HData({ cccid: 1, datao: 0, data, last: true }, wire, into);
    expect(reused.map((s) => [...s])).toEqual(fresh.map((s) => [...s]));
    expect(reused[0]!.buffer).toBe(into.buffer);
    expect(reused[2]!.buffer).toBe(into.buffer);
    const resp = encodeCapsuleResp(bytes(16, 2), wire, into);
    expect([...resp]).toEqual([...encodeCapsuleResp(bytes(16, 2), wire)]);
    expect(resp.buffer).toBe(into.buffer);
    const r2t = { cccid: 1, ttag: 2, r2to: 0, r2tl: 4096 };
    expect([...encodeR2T(r2t, wire, into)]).toEqual([...encodeR2T(r2t, wire)]);
    expect(() => encodeR2T(r2t, wire, new Uint8Array(27))).toThrow(RangeError);
  });
  it('refuse what the spec forbids', () => {
    expect(() => encodeC2HData({ cccid: 1, datao: 0, data: bytes(8, 1), last: false, success: true })).toThrow(/LAST_PDU/);
    expect(() => encodeC2HData({ cccid: 1, datao: 0, data: new Uint8Array(0), last: true })).toThrow(RangeError);
    expect(() => encodeIcResp({ cpda: 0, hdgst: false, ddgst: false, maxh2cdata: 4095 })).toThrow(/MAXH2CDATA/);
    expect(() => encodeIcResp({ cpda: 32, hdgst: false, ddgst: false, maxh2cdata: 4096 })).toThrow(RangeError);
    expect(() => encodeCapsuleResp(new Uint8Array(15))).toThrow(/CQE/);
    expect(() => encodeR2T({ cccid: 1, ttag: 1, r2to: 0, r2tl: 0 })).toThrow(RangeError);
  });
  it('a PduError becomes the C2HTermReq the host reads', () => {
    const r = controller();
    const bad = concatSegments(encodeCapsuleCmd(sqe(1)));
    bad[AT_HLEN] = 70;
    r.push(bad);
    const err = expectPduError(() => r.next(), FES_INVALID_HEADER_FIELD, AT_HLEN);
    const h = host();
    h.push(encodeC2HTermReq(err));
    const t = decodeTermReq(h.next()!);
    expect({ fes: t.fes, fei: t.fei }).toEqual({ fes: FES_INVALID_HEADER_FIELD, fei: AT_HLEN });
    expect([...t.errorData]).toEqual([...bad.subarray(0, 70)]);
  });
});

describe('header checks: FES and FEI', () => {
  const cmd = (wire: WireOptions = {}, data?: Uint8Array): Uint8Array => concatSegments(encodeCapsuleCmd(sqe(1), data, wire));
  const setPlen = (b: Uint8Array, v: number): Uint8Array => {
    new DataView(b.buffer, b.byteOffset).setUint32(AT_PLEN, v, true);
    return b;
  };
  const cases: Array<[string, () => PduReader, () => Uint8Array, number, number]> = [
    ['a controller-to-host type (CapsuleResp)', controller, () => encodeCapsuleResp(new Uint8Array(16)), FES_INVALID_HEADER_FIELD, AT_TYPE],
    ['an undefined type (08h)', controller, () => Object.assign(cmd(), { [AT_TYPE]: 0x08 }), FES_INVALID_HEADER_FIELD, AT_TYPE],
    ['a CapsuleCmd before the ICReq', () => new PduReader({ maxPduBytes: MAX }), () => cmd(), FES_PDU_SEQUENCE_ERROR, AT_TYPE],
    ['a second ICReq', controller, () => encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }), FES_PDU_SEQUENCE_ERROR, AT_TYPE],
    ['an R2T before the ICResp, on a host reader', () => new PduReader({ maxPduBytes: MAX, side: 'host' }), () => encodeR2T({ cccid: 1, ttag: 1, r2to: 0, r2tl: 1 }), FES_PDU_SEQUENCE_ERROR, AT_TYPE],
    ['LAST_PDU on a CapsuleCmd', controller, () => Object.assign(cmd(), { [AT_FLAGS]: 0x04 }), FES_INVALID_HEADER_FIELD, AT_FLAGS],
    ['HDGSTF without header digests', controller, () => cmd({ hdgst: true }), FES_INVALID_HEADER_FIELD, AT_FLAGS],
    ['no HDGSTF with header digests', () => controller({ hdgst: true }), () => cmd(), FES_INVALID_HEADER_FIELD, AT_FLAGS],
    ['DDGSTF without data digests', controller, () => cmd({ ddgst: true }, bytes(16, 1)), FES_INVALID_HEADER_FIELD, AT_FLAGS],
    ['no DDGSTF on data with data digests', () => controller({ ddgst: true }), () => cmd({}, bytes(16, 1)), FES_INVALID_HEADER_FIELD, AT_FLAGS],
    ['HLEN 70 for a CapsuleCmd', controller, () => Object.assign(cmd(), { [AT_HLEN]: 70 }), FES_INVALID_HEADER_FIELD, AT_HLEN],
    ['HLEN 24 for an ICReq', () => new PduReader({ maxPduBytes: MAX }), () => Object.assign(encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }), { [AT_HLEN]: 24 }), FES_INVALID_HEADER_FIELD, AT_HLEN],
    ['PDO inside the header', controller, () => Object.assign(cmd({}, bytes(16, 1)), { [AT_PDO]: 68 }), FES_INVALID_HEADER_FIELD, AT_PDO],
    ['PDO inside the header digest', () => controller({ hdgst: true }), () => Object.assign(cmd({ hdgst: true }, bytes(16, 1)), { [AT_PDO]: 72 }), FES_INVALID_HEADER_FIELD, AT_PDO],
    ['PDO off the 32-byte CPDA alignment', () => controller({}, { pda: 7 }), () => cmd({}, bytes(16, 1)), FES_INVALID_HEADER_FIELD, AT_PDO],
    ['PDO past PLEN', controller, () => Object.assign(cmd({}, bytes(16, 1)), { [AT_PDO]: 92 }), FES_INVALID_HEADER_FIELD, AT_PDO],
    ['PDO on a TermReq', controller, () => Object.assign(encodeH2CTermReq({ fes: 1, fei: 0, offendingHeader: bytes(8, 1) }), { [AT_PDO]: 24 }), FES_INVALID_HEADER_FIELD, AT_PDO],
    ['ICReq PLEN 132', () => new PduReader({ maxPduBytes: MAX }), () => setPlen(encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }), 132), FES_INVALID_HEADER_FIELD, AT_PLEN],
    ['CapsuleCmd PLEN shorter than its header', controller, () => setPlen(cmd(), 40), FES_INVALID_HEADER_FIELD, AT_PLEN],
    ['a data digest with no data before it', () => controller({ ddgst: true }), () => setPlen(cmd({ ddgst: true }, bytes(16, 1)), 72 + 4), FES_INVALID_HEADER_FIELD, AT_PLEN],
    ['PLEN over maxPduBytes', controller, () => cmd({}, bytes(MAX, 1)), FES_DATA_TRANSFER_LIMIT_EXCEEDED, AT_PLEN],
    ['ICReq PFV 1', () => new PduReader({ maxPduBytes: MAX }), () => encodeIcReq({ pfv: 1, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }), FES_UNSUPPORTED_PARAMETER, 8],
    ['ICReq HPDA 32', () => new PduReader({ maxPduBytes: MAX }), () => Object.assign(encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }), { 10: 32 }), FES_INVALID_HEADER_FIELD, 10],
    ['H2CData DATAL not its data length', controller, () => Object.assign(concatSegments(encodeH2CData({ cccid: 1, ttag: 1, datao: 0, data: bytes(16, 1), last: true })), { 16: 15 }), FES_INVALID_HEADER_FIELD, 16],
  ];
  for (const [name, reader, pdu, fes, fei] of cases) {
    it(`${name}: FES 0x${fes.toString(16)}, FEI ${fei}`, () => {
      const r = reader();
      const b = pdu();
      r.push(b);
      const err = expectPduError(() => r.next(), fes, fei);
      expect(err.sendTermReq).toBe(b[AT_TYPE] !== 0x02);
      expect(err.code).toMatch(/^NVMQ_TCP_/);
      expect(err.offendingHeader.length).toBeGreaterThanOrEqual(8);
      expect([...err.offendingHeader]).toEqual([...b.subarray(0, err.offendingHeader.length)]);
      // The connection is over: the same error again, pushes ignored.
      r.push(cmd());
      expect(() => r.next()).toThrow(err);
    });
  }

  it('an oversized PLEN is refused from the common header alone, before its data is buffered', () => {
    const r = controller();
    r.push(cmd({}, bytes(MAX, 1)).subarray(0, 8));
    expectPduError(() => r.next(), FES_DATA_TRANSFER_LIMIT_EXCEEDED, AT_PLEN);
  });

  it('an H2CTermReq with PLEN over 152 closes the connection without a C2HTermReq', () => {
    const r = controller();
    r.push(setPlen(encodeH2CTermReq({ fes: 1, fei: 0, offendingHeader: bytes(128, 1) }), 153));
    const err = expectPduError(() => r.next(), FES_INVALID_HEADER_FIELD, AT_PLEN);
    expect(err.sendTermReq).toBe(false);
  });

  it('a malformed H2CTermReq is not answered either', () => {
    const r = controller();
    r.push(Object.assign(encodeH2CTermReq({ fes: 1, fei: 0, offendingHeader: bytes(8, 1) }), { [AT_HLEN]: 28 }));
    expect(expectPduError(() => r.next(), FES_INVALID_HEADER_FIELD, AT_HLEN).sendTermReq).toBe(false);
  });

  it('a TermReq never carries digests, whatever was negotiated', () => {
    const r = controller({ hdgst: true, ddgst: true });
    r.push(encodeH2CTermReq({ fes: 1, fei: 0, offendingHeader: bytes(30, 1) }));
    expect(r.next()?.type).toBe(0x02);
  });
});

describe('truncation and digests', () => {
  it('a truncated PDU waits for its bytes: no error, no output', () => {
    const r = controller({ hdgst: true, ddgst: true });
    const b = concatSegments(encodeCapsuleCmd(sqe(1), bytes(100, 1), { hdgst: true, ddgst: true }));
    for (const n of [0, 1, 7, 8, 9, 71, 75, 76, 100, b.length - 1]) {
      const t = controller({ hdgst: true, ddgst: true });
      t.push(b.subarray(0, n));
      expect(t.next()).toBeNull();
      expect(t.next()).toBeNull();
      expect(t.bufferedBytes).toBe(n);
    }
    r.push(b.subarray(0, 50));
    expect(r.next()).toBeNull();
    r.push(b.subarray(50));
    expect(r.next()?.data).toEqual(bytes(100, 1));
    expect(r.bufferedBytes).toBe(0);
  });

  it('a PDU inside one chunk is a view of it; one split across chunks is assembled once', () => {
    const r = controller();
    const chunk = concatSegments(encodeCapsuleCmd(sqe(1), bytes(4096, 1)));
    r.push(chunk);
    const whole = r.next()!;
    expect(whole.data.buffer).toBe(chunk.buffer);
    expect(whole.header.buffer).toBe(chunk.buffer);
    r.push(chunk.subarray(0, 1000));
    expect(r.next()).toBeNull();
    r.push(chunk.subarray(1000));
    const split = r.next()!;
    expect(split.data.buffer).not.toBe(chunk.buffer);
    expect(split.data).toEqual(bytes(4096, 1));
  });

  it('a header digest error is fatal: FES 03h, FEI the digest received', () => {
    const r = controller({ hdgst: true });
    const b = concatSegments(encodeCapsuleCmd(sqe(1), undefined, { hdgst: true }));
    const received = new DataView(b.buffer).getUint32(72, true);
    b[40] ^= 1;
    r.push(b);
    const err = expectPduError(() => r.next(), FES_HEADER_DIGEST_ERROR, received);
    expect(err.code).toBe('NVMQ_TCP_HEADER_DIGEST_ERROR');
    expect([...err.offendingHeader]).toEqual([...b.subarray(0, 76)]);
  });

  it('a data digest error is reported on the PDU, and the connection carries on', () => {
    const r = controller({ hdgst: true, ddgst: true });
    const bad = concatSegments(encodeH2CData({ cccid: 1, ttag: 1, datao: 0, data: bytes(4096, 1), last: true }, { hdgst: true, ddgst: true }));
    bad[28 + 100] ^= 0x80;
    const good = concatSegments(encodeCapsuleCmd(sqe(2), bytes(64, 2), { hdgst: true, ddgst: true }));
    const got = readAll(r, concatSegments([bad, good]), randomCuts(bad.length + good.length, 3));
    expect(got.map((p) => [p.type, p.dataDigestError])).toEqual([[0x06, true], [0x04, false]]);
  });
});

describe('fuzz: random and mutated streams', () => {
  const LIMIT = 8192;
  /** Feeds the stream; returns normally or with a PduError, checking the reader's bounds on the way. */
  function run(stream: Uint8Array, cuts: number[], side: 'controller' | 'host', digests: [boolean, boolean]): void {
    const r = new PduReader({ maxPduBytes: LIMIT, side });
    let from = 0;
    let pdus = 0;
    try {
      for (const to of [...cuts.filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length]) {
        r.push(stream.subarray(from, to));
        from = to;
        for (let p = r.next(); p !== null; p = r.next()) {
          if (p.type === 0x00 || p.type === 0x01) r.setDigests(...digests);
          expect(p.plen).toBeLessThanOrEqual(LIMIT);
          expect(++pdus).toBeLessThanOrEqual(stream.length / 8);
        }
        // Drained: at most a partial PDU is held, and the reader's own buffer is bounded by the limit.
        expect(r.bufferedBytes).toBeLessThan(LIMIT);
        expect((r as unknown as { scratch: Uint8Array }).scratch.length).toBeLessThanOrEqual(LIMIT);
      }
    } catch (e) {
      if (!(e instanceof PduError)) throw e;
    }
  }

  it('random bytes: only PduError, bounded memory, no endless loop', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.array(fc.nat(600)), fc.constantFrom<'controller' | 'host'>('controller', 'host'), (b, cuts, side) => {
        run(b, cuts, side, [false, false]);
        // With a valid first PDU, so the checks past the first one are reached too.
        const first = side === 'controller' ? encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }) : encodeIcResp({ cpda: 0, hdgst: false, ddgst: false, maxh2cdata: 4096 });
        run(concatSegments([first, b]), cuts, side, [false, false]);
      }),
      { numRuns: 300 },
    );
  });

  it('valid streams with bytes flipped: only PduError, bounded memory', () => {
    const wire = { hdgst: true, ddgst: true };
    const stream = concatSegments([
      encodeIcReq({ hpda: 0, hdgst: true, ddgst: true, maxr2t: 0 }),
      ...encodeCapsuleCmd(sqe(1), bytes(300, 1), wire),
      ...encodeCapsuleCmd(sqe(2), undefined, wire),
      ...encodeH2CData({ cccid: 2, ttag: 1, datao: 0, data: bytes(2000, 2), last: true }, wire),
      encodeH2CTermReq({ fes: 1, fei: 3, offendingHeader: bytes(40, 3) }),
    ]);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(stream.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.array(fc.nat(stream.length)), (flips, cuts) => {
        const b = stream.slice();
        for (const [at, x] of flips) b[at]! ^= x;
        run(b, cuts, 'controller', [true, true]);
      }),
      { numRuns: 300 },
    );
  });
});
