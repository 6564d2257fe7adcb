/**
 * The target's send side over a real loopback socket: within one corked
 * turn, every WRITE_THROUGH_EVERY completions go to the socket at once (the
 * host can start on them while the target works on the rest of a chunk),
 * gathered or sent by reference alike, and the host receives every PDU, in
 * order, byte for byte.
 */
import { describe, it, expect, afterEach, vi } from 'vitest';
import * as net from 'node:net';
import { TcpSender, WRITE_THROUGH_EVERY } from '../../../src/engine/target/tcp-sender.js';
import { C2HDataPdu, TcpCommonHeader, PduType } from '../../../src/engine/spec/tcp-pdu.js';
import type { WireOptions } from '../../../src/engine/target/pdu-encode.js';

const BLOCK = 4096;
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A connected loopback pair: the sending socket, with its uncork() calls counted, and everything its peer receives. */
async function pair(): Promise<{ socket: net.Socket; uncorks: () => number; received: () => Buffer; receivedBytes: () => number }> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  const server = net.createServer((s) => s.on('data', (c: Buffer) => { chunks.push(c); bytes += c.length; }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  cleanup.push(() => { socket.destroy(); server.close(); });
  let n = 0;
  const uncork = socket.uncork.bind(socket);
  socket.uncork = () => { n++; uncork(); };
  return { socket, uncorks: () => n, received: () => Buffer.concat(chunks), receivedBytes: () => bytes };
}

const dataOf = (cid: number): Uint8Array => new Uint8Array(BLOCK).fill(cid & 0xff).fill(cid >> 8, 0, 2);

/** The C2HData PDUs in `bytes` (SUCCESS set, no response capsules): their CCCIDs, each checked against its data. */
function c2hCids(bytes: Buffer, wire: WireOptions): number[] {
  const cids: number[] = [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let at = 0; at < bytes.length; ) {
    expect(bytes[at + TcpCommonHeader.PDU_TYPE.offset]).toBe(PduType.C2H_DATA);
    const plen = v.getUint32(at + TcpCommonHeader.PLEN.offset, true);
    const pdo = bytes[at + TcpCommonHeader.PDO.offset]!;
    const cid = v.getUint16(at + C2HDataPdu.CCCID.offset, true);
    expect(Buffer.from(bytes.subarray(at + pdo, at + pdo + BLOCK)).equals(Buffer.from(dataOf(cid)))).toBe(true);
    expect(plen).toBe(pdo + BLOCK + (wire.ddgst ? 4 : 0));
    cids.push(cid);
    at += plen;
  }
  return cids;
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('TcpSender', () => {
  for (const [name, wire] of [['gathered', {}], ['by reference (digests)', { hdgst: true, ddgst: true }]] as const) {
    it(`writes every ${WRITE_THROUGH_EVERY} completions of a turn through at once, ${name}`, async () => {
      const { socket, uncorks, received, receivedBytes } = await pair();
      const sender = new TcpSender(socket, () => true, { uncork: 'microtasks' });
      const total = 2 * WRITE_THROUGH_EVERY + 8;
      const seen: number[] = [];
      // Bytes the socket has handed on to be written (its bytesWritten counts what it still holds too).
      const dispatched: number[] = [];
      for (let cid = 0; cid < total; cid++) {
        const data = dataOf(cid);
        if (sender.gather(wire, cid, 1, 0, 0, 0, 0, data, true) === undefined) sender.sendCompletion(wire, cid, 1, 0, 0, 0, 0, data, true, () => {});
        seen.push(uncorks());
        dispatched.push(socket.bytesWritten - socket.writableLength);
      }
      // Nothing left before the WRITE_THROUGH_EVERY-th completion; then all of them, inside the turn.
      expect(dispatched[WRITE_THROUGH_EVERY - 2]).toBe(0);
      expect(dispatched[WRITE_THROUGH_EVERY - 1]).toBeGreaterThanOrEqual(WRITE_THROUGH_EVERY * (BLOCK + 24));
      // Nothing before the WRITE_THROUGH_EVERY-th completion, then one write-through per WRITE_THROUGH_EVERY, all inside the turn.
      expect(seen[WRITE_THROUGH_EVERY - 2]).toBe(0);
      expect(seen[WRITE_THROUGH_EVERY - 1]).toBe(1);
      expect(seen[2 * WRITE_THROUGH_EVERY - 1]).toBe(2);
      expect(seen[total - 1]).toBe(2);
      // The turn's uncork sends the rest.
      await new Promise((r) => setImmediate(r));
      expect(uncorks()).toBe(3);
      await until(() => receivedBytes() >= total * BLOCK);
      expect(c2hCids(received(), wire)).toEqual(Array.from({ length: total }, (_, i) => i));
    });
  }

  it('keeps one output buffer for a turn across its write-throughs', async () => {
    const { socket, received, receivedBytes } = await pair();
    const sender = new TcpSender(socket, () => true, { uncork: 'microtasks' });
    const alloc = vi.spyOn(Buffer, 'allocUnsafeSlow');
    const total = 3 * WRITE_THROUGH_EVERY;
    try {
      for (let cid = 0; cid < total; cid++) sender.gather({}, cid, 1, cid, 0, cid, 0, undefined, false);
      await new Promise((r) => setImmediate(r));
      // A turn of responses: one buffer, however many write-throughs.
      expect(alloc).toHaveBeenCalledTimes(1);
    } finally {
      alloc.mockRestore();
    }
    await until(() => receivedBytes() >= total * 24);
    const bytes = received();
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    // Every CapsuleResp once, in order (CID at byte 8 + 12 of the CQE, DW0 at 8).
    const cids = Array.from({ length: bytes.length / 24 }, (_, i) => v.getUint16(i * 24 + 8 + 12, true));
    const dw0s = Array.from({ length: bytes.length / 24 }, (_, i) => v.getUint32(i * 24 + 8, true));
    expect(cids).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(dw0s).toEqual(cids);
  });

  it('starts counting again at each turn', async () => {
    const { socket, uncorks } = await pair();
    const sender = new TcpSender(socket, () => true, { uncork: 'microtasks' });
    for (let turn = 0; turn < 3; turn++) {
      for (let cid = 0; cid < WRITE_THROUGH_EVERY - 1; cid++) sender.gather({}, cid, 1, 0, 0, 0, 0, undefined, false);
      await new Promise((r) => setImmediate(r));
    }
    // Three turns of one completion fewer than WRITE_THROUGH_EVERY: only the turns' own uncorks.
    expect(uncorks()).toBe(3);
  });
});
