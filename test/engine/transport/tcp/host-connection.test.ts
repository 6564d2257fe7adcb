/**
 * One host connection against a scripted target on a loopback socket: the
 * PDUs of commands (C2HData, CapsuleResp, R2T) arrive cut at every byte
 * boundary and still land whole (read data straight into the command's
 * buffer); a PDU the fast path does not take (a C2HTermReq, a malformed
 * header) goes through the PDU reader, which ends the connection as the
 * binding asks, and every outstanding command completes once with a path
 * error.
 */
import { describe, it, expect, afterEach } from 'vitest';
import * as net from 'node:net';
import { HostConnection, PATH_ERROR_STATUS, type HostCommand } from '../../../../dist/engine/transport/tcp/host-connection.js';
import { encodeIcResp, encodeC2HData, encodeCapsuleResp, encodeR2T, encodeC2HTermReq, concatSegments } from '../../../../dist/engine/target/pdu-encode.js';
import { encodeResponse } from '../../../../dist/engine/target/capsule.js';
import { Fes, PduType } from '../../../../dist/engine/spec/tcp-pdu.js';

const ICREQ_BYTES = 128;
const CAPSULE_BYTES = 72;
const MAXH2CDATA = 8192;

/** The target's side of one connection: bytes the host sent, taken in order. */
class Peer {
  private buffered = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, c]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  /** The next `n` bytes the host sent. */
  async take(n: number): Promise<Buffer> {
    while (this.buffered.length < n) {
      if (this.ended) throw new Error(`the host closed the connection with ${this.buffered.length} of ${n} bytes`);
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  /** Writes `bytes` in pieces of `piece` bytes, one write (and a turn of the loop) each, so the host reads them apart. */
  async send(bytes: Uint8Array, piece = bytes.length): Promise<void> {
    for (let at = 0; at < bytes.length; at += piece) {
      this.socket.write(bytes.subarray(at, Math.min(bytes.length, at + piece)));
      await new Promise((r) => setImmediate(r));
    }
  }
}

let server: net.Server | undefined;
let conn: HostConnection | undefined;
afterEach(async () => {
  await conn?.close();
  conn = undefined;
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A connection to a scripted target that answered the ICReq; `peer` is the target's side. */
async function connect(): Promise<{ conn: HostConnection; peer: Peer }> {
  let accepted!: (p: Peer) => void;
  const peerReady = new Promise<Peer>((r) => (accepted = r));
  server = net.createServer((s) => {
    const p = new Peer(s);
    void p.take(ICREQ_BYTES).then(() => {
      s.write(encodeIcResp({ cpda: 0, hdgst: false, ddgst: false, maxh2cdata: MAXH2CDATA }));
      accepted(p);
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  conn = await HostConnection.open({ host: '127.0.0.1', port, label: 'I/O queue 1', hdgst: false, ddgst: false, connectTimeoutMs: 2000, maxPduBytes: 1 << 20, maxOutstanding: 32 });
  return { conn, peer: await peerReady };
}

/** A Read SQE of CID `cid`, and a command recording how it completed. */
function command(cid: number, dir: { in?: Uint8Array; out?: Uint8Array }): { sqe: Uint8Array; cmd: HostCommand; ends: Array<[number, number]> } {
  const sqe = new Uint8Array(64);
  sqe[0] = dir.out ? 0x01 : 0x02;
  sqe[2] = cid & 0xff;
  sqe[3] = cid >> 8;
  const ends: Array<[number, number]> = [];
  return { sqe, cmd: { cid, ...dir, done: (status, dw0) => void ends.push([status, dw0]) }, ends };
}

const fill = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const resp = (cid: number, status: number, dw0 = 0): Uint8Array => encodeCapsuleResp(encodeResponse({ status, dw0, dw1: 0 }, cid, 1, 0));
const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
};

/** A connection with one read of `bytes` (CID 1) at the target, the connection's failures recorded. */
async function oneRead(bytes: number): Promise<{ peer: Peer; a: ReturnType<typeof command>; failures: string[] }> {
  const { conn, peer } = await connect();
  const failures: string[] = [];
  conn.onFailure = (e) => failures.push(e.message);
  const a = command(1, { in: new Uint8Array(bytes) });
  conn.send(a.sqe, a.cmd);
  await peer.take(CAPSULE_BYTES);
  return { peer, a, failures };
}

describe('HostConnection', () => {
  it('read data and responses cut at every byte boundary land whole, each command completes once', async () => {
    const { conn, peer } = await connect();
    for (const piece of [1, 5, 23, 24, 25, 4095, 4121]) {
      const a = command(1, { in: new Uint8Array(4096) });
      const b = command(2, { in: new Uint8Array(100) });
      const c = command(3, { in: new Uint8Array(8192) });
      for (const x of [a, b, c]) conn.send(x.sqe, x.cmd);
      // The three capsules, each 72 bytes, SGL1's length the command's.
      const capsules = await peer.take(3 * CAPSULE_BYTES);
      expect([0, 1, 2].map((i) => capsules[i * CAPSULE_BYTES])).toEqual([PduType.CAPSULE_CMD, PduType.CAPSULE_CMD, PduType.CAPSULE_CMD]);
      expect(capsules.readUInt32LE(CAPSULE_BYTES + 8 + 24 + 8)).toBe(100);
      const da = fill(4096, piece);
      const db = fill(100, piece + 1);
      const dc = fill(8192, piece + 2);
      const stream = concatSegments([
        ...encodeC2HData({ cccid: 1, datao: 0, data: da, last: true, success: true }),
        // Two data PDUs, out of order, then the response.
        ...encodeC2HData({ cccid: 2, datao: 60, data: db.subarray(60), last: true }),
        ...encodeC2HData({ cccid: 2, datao: 0, data: db.subarray(0, 60), last: false }),
        resp(2, 0, 7),
        ...encodeC2HData({ cccid: 3, datao: 0, data: dc, last: true }),
        resp(3, 0x281, 9),
      ]);
      await peer.send(stream, piece);
      await until(() => c.ends.length > 0);
      expect(a.ends).toEqual([[0, 0]]);
      expect(b.ends).toEqual([[0, 7]]);
      expect(c.ends).toEqual([[0x281, 9]]);
      expect(a.cmd.in).toEqual(da);
      expect(b.cmd.in).toEqual(db);
      expect(c.cmd.in).toEqual(dc);
      expect(conn.outstanding).toBe(0);
    }
    expect(conn.failed).toBeUndefined();
  });

  it("answers an R2T cut in two with H2CData of at most MAXH2CDATA, in order", async () => {
    const { conn, peer } = await connect();
    const data = fill(20000, 3);
    const w = command(4, { out: data });
    conn.send(w.sqe, w.cmd);
    const capsule = await peer.take(CAPSULE_BYTES);
    expect(capsule[0]).toBe(PduType.CAPSULE_CMD);
    await peer.send(encodeR2T({ cccid: 4, ttag: 9, r2to: 0, r2tl: 20000 }), 10);
    const got: number[] = [];
    for (let at = 0; at < 20000; ) {
      const h = await peer.take(24);
      expect(h[0]).toBe(PduType.H2C_DATA);
      expect(h.readUInt16LE(8)).toBe(4);
      expect(h.readUInt16LE(10)).toBe(9);
      expect(h.readUInt32LE(12)).toBe(at);
      const n = h.readUInt32LE(16);
      expect(n).toBeLessThanOrEqual(MAXH2CDATA);
      expect(Buffer.from(await peer.take(n))).toEqual(Buffer.from(data.subarray(at, at + n)));
      got.push(n);
      at += n;
    }
    expect(got).toEqual([8192, 8192, 3616]);
    await peer.send(resp(4, 0));
    await until(() => w.ends.length > 0);
    expect(w.ends).toEqual([[0, 0]]);
  });

  it('a C2HTermReq cut across reads ends the connection: the outstanding command completes once with a path error', async () => {
    const { conn, peer } = await connect();
    const failures: string[] = [];
    conn.onFailure = (e) => failures.push(`${e.code}: ${e.message}`);
    const a = command(1, { in: new Uint8Array(512) });
    const b = command(2, { in: new Uint8Array(512) });
    conn.send(a.sqe, a.cmd);
    conn.send(b.sqe, b.cmd);
    await peer.take(2 * CAPSULE_BYTES);
    const term = encodeC2HTermReq({ fes: Fes.UNSUPPORTED_PARAMETER, fei: 0, offendingHeader: new Uint8Array(24) });
    // A's data ends 5 bytes into the chunk that starts the TermReq.
    const stream = concatSegments([...encodeC2HData({ cccid: 1, datao: 0, data: fill(512, 1), last: true, success: true }), term]);
    const cut = stream.length - term.length + 5;
    await peer.send(stream.subarray(0, cut));
    await peer.send(stream.subarray(cut));
    await until(() => failures.length > 0 && b.ends.length > 0);
    expect(a.ends).toEqual([[0, 0]]);
    expect(b.ends).toEqual([[PATH_ERROR_STATUS, 0]]);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(/^NVMQ_TARGET_PROTOCOL: I\/O queue 1: the target ended the connection: Unsupported Parameter/);
    // Later commands complete at once, with the same path error.
    const c = command(3, { in: new Uint8Array(8) });
    conn.send(c.sqe, c.cmd);
    expect(c.ends).toEqual([[PATH_ERROR_STATUS, 0]]);
  });

  it('a C2HData whose DATAL is not its data is refused as the PDU reader refuses it, with an H2CTermReq', async () => {
    const { peer, a, failures } = await oneRead(64);
    const bad = concatSegments(encodeC2HData({ cccid: 1, datao: 0, data: fill(64, 0), last: true, success: true }));
    new DataView(bad.buffer, bad.byteOffset).setUint32(16, 63, true);
    await peer.send(bad, 7);
    const term = await peer.take(24);
    expect(term[0]).toBe(PduType.H2C_TERM_REQ);
    await until(() => a.ends.length > 0);
    expect(a.ends).toEqual([[PATH_ERROR_STATUS, 0]]);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(/broke the NVMe\/TCP binding: C2HData \(0x07\): DATAL 63 with 64 bytes of data \(Invalid Header Field \(0x01\), FEI 0x10\)$/);
  });

  it('C2HData for a CID with nothing to read ends the connection, naming the CID', async () => {
    const { peer, a, failures } = await oneRead(64);
    await peer.send(concatSegments(encodeC2HData({ cccid: 5, datao: 0, data: fill(64, 0), last: true, success: true })));
    await until(() => a.ends.length > 0);
    expect(a.ends).toEqual([[PATH_ERROR_STATUS, 0]]);
    expect(failures).toEqual([expect.stringMatching(/C2HData for CID 5, which reads nothing/)]);
  });
});
