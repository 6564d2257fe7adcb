/**
 * The in-place encoders a sender gathers a turn's PDUs with (putC2HData,
 * putCapsuleResp): byte for byte what the allocating encoders make, at any
 * offset of a larger buffer, for every data alignment; none with digests.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  encodeC2HData,
  encodeCapsuleResp,
  concatSegments,
  putC2HData,
  putC2HDataBytes,
  putCapsuleResp,
  putCapsuleRespBytes,
} from '../../../src/engine/target/pdu-encode.js';
import { encodeResponse } from '../../../src/engine/target/capsule.js';

describe('in-place PDU encoders', () => {
  it('write what encodeC2HData() and encodeCapsuleResp() make', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 31 }),
        fc.integer({ min: 0, max: 300 }),
        fc.uint8Array({ minLength: 1, maxLength: 600 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.boolean(),
        fc.record({ status: fc.integer({ min: 0, max: 0x7fff }), dw0: fc.nat(0xffffffff), dw1: fc.nat(0xffffffff), sqhd: fc.integer({ min: 0, max: 0xffff }), sqid: fc.integer({ min: 0, max: 0xffff }) }),
        (pda, at, data, cid, success, r) => {
          const wire = { pda };
          const out = new Uint8Array(at + 2000).fill(0xee);
          const view = new DataView(out.buffer);
          const n = putC2HData(out, view, at, cid, data, success, wire);
          expect(n).toBe(putC2HDataBytes(data.length, wire));
          expect(out.subarray(at, at + n)).toEqual(concatSegments(encodeC2HData({ cccid: cid, datao: 0, data, last: true, success }, wire)));
          const m = putCapsuleResp(out, view, at + n, cid, r.sqid, r.sqhd, r.status, r.dw0, r.dw1);
          expect(m).toBe(putCapsuleRespBytes(wire));
          expect(out.subarray(at + n, at + n + m)).toEqual(encodeCapsuleResp(encodeResponse(r, cid, r.sqid, r.sqhd), wire));
          // Nothing before or after is touched.
          expect(out.subarray(0, at).every((b) => b === 0xee)).toBe(true);
          expect(out.subarray(at + n + m).every((b) => b === 0xee)).toBe(true);
        },
      ),
    );
  });

  it('leave PDUs with digests to the allocating encoders', () => {
    expect(putC2HDataBytes(4096, { hdgst: true })).toBeUndefined();
    expect(putC2HDataBytes(4096, { ddgst: true })).toBeUndefined();
    expect(putCapsuleRespBytes({ hdgst: true })).toBeUndefined();
    expect(putCapsuleRespBytes({ ddgst: true })).toBe(24);
    const out = new Uint8Array(8192);
    expect(() => putC2HData(out, new DataView(out.buffer), 0, 1, new Uint8Array(16), false, { ddgst: true })).toThrow(RangeError);
  });
});
