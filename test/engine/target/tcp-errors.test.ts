/**
 * The NVMe/TCP target when things go wrong, over real sockets with a real
 * Engine: digest errors, transfers that cross MDTS or do not match their
 * SGL, LBA out of range, every Connect refusal on the wire, commands before
 * Connect, keep-alive expiry, a host that vanishes mid-R2T, truncated and
 * oversized PDUs, PDUs out of order. Each either fails its command with the
 * status the spec gives, or ends the connection with the C2HTermReq FES the
 * spec gives; neither crashes the process nor touches blocks outside the
 * command's range.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { encodeCapsuleCmd, encodeH2CData, encodeH2CTermReq, encodeIcReq, concatSegments } from '../../../src/engine/target/pdu-encode.js';
import { PduType } from '../../../src/engine/spec/tcp-pdu.js';
import { HOST_A, HOST_B, adminSqe, connectData, connectSqe, hostId, st } from './helpers.js';
import { NS, TcpHost, destroyAll, pattern, rwSqe, setSgl, startTarget, until, type LiveTarget } from './tcp-host.js';
import { TcpTarget } from '../../../dist/engine/target/tcp-target.js';
import { MAX_HELD_BYTES } from '../../../dist/engine/target/tcp-env.js';

let t: LiveTarget;
const uncaught: unknown[] = [];
const onUncaught = (e: unknown): void => void uncaught.push(e);
beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  // Served on the main thread (no I/O threads), whose DMA pool the lifetime tests can look into.
  t = await startTarget({ ioThreads: 0 });
});
afterEach(async () => {
  await destroyAll();
  // Every test starts from a target with no connection and no controller.
  expect(await until(() => t.target.connectionCount === 0 && t.target.subsystem.activeControllers.size === 0)).toBe(true);
});
afterAll(async () => {
  await t?.stop();
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
  expect(uncaught).toEqual([]);
});

const HOSTID = new Uint8Array(16).fill(0x42);

async function ioHost(o: { hdgst?: boolean; ddgst?: boolean } = {}): Promise<[TcpHost, TcpHost]> {
  const admin = await TcpHost.open(t.port, o);
  await admin.adminUp({ hostid: HOSTID });
  const io = await TcpHost.open(t.port, o);
  const r = await io.connect({ qid: 1, cntlid: admin.cntlid, hostid: HOSTID });
  expect(r.status).toBe(0);
  return [admin, io];
}

/** Fills [slba - 2, slba + nlb + 2) with a sentinel pattern, for the neighbour checks. */
async function sentinels(nsid: number, slba: number, nlb: number, lba: number, seed: number): Promise<Uint8Array> {
  const s = pattern(slba - 2, nlb + 4, lba, seed);
  const step = Math.floor(t.engine.driver.controller.maxTransferBytes / lba);
  for (let at = 0; at < nlb + 4; at += step) await t.engine.write(nsid, slba - 2 + at, s.subarray(at * lba, Math.min(nlb + 4, at + step) * lba));
  return s;
}

async function unchanged(nsid: number, slba: number, nlb: number, s: Uint8Array): Promise<boolean> {
  const lba = s.length / (nlb + 4);
  const step = Math.floor(t.engine.driver.controller.maxTransferBytes / lba);
  for (let at = 0; at < nlb + 4; at += step) {
    const n = Math.min(nlb + 4 - at, step);
    if (!Buffer.from(await t.engine.read(nsid, slba - 2 + at, n)).equals(Buffer.from(s.subarray(at * lba, (at + n) * lba)))) return false;
  }
  return true;
}

const arenaFree = async (): Promise<number> => ((await t.engine.queue()) as unknown as { arena: { freePages(): number } }).arena.freePages();

describe('digests', () => {
  it('a wrong header digest: C2HTermReq FES 03h, FEI the digest received, then the close', async () => {
    const h = await TcpHost.open(t.port, { hdgst: true });
    const bytes = concatSegments(encodeCapsuleCmd(connectSqe(), connectData({ hostid: HOSTID }), h.wire));
    const dv = new DataView(bytes.buffer);
    const bad = (dv.getUint32(72, true) ^ 0x1) >>> 0;
    dv.setUint32(72, bad, true);
    h.send(bytes);
    const term = await h.expectTermReq();
    expect(term.fes).toBe(0x03);
    expect(term.fei).toBe(bad);
    expect(term.errorData[0]).toBe(PduType.CAPSULE_CMD);
    expect(await until(() => t.target.connectionCount === 0)).toBe(true);
  });

  it('a wrong data digest on in-capsule write data: Transient Transport Error, nothing written, the connection goes on', async () => {
    const [admin, io] = await ioHost({ hdgst: true, ddgst: true });
    const s = await sentinels(NS.MEM4K, 40, 2, 4096, 1);
    const r = await io.write(NS.MEM4K, 40, 2, pattern(40, 2, 4096, 2), { inCapsule: true, badDataDigest: true });
    expect(st(r.status)).toEqual({ sct: 0, sc: 0x22, dnr: false });
    expect(await unchanged(NS.MEM4K, 40, 2, s)).toBe(true);
    const ok = await io.write(NS.MEM4K, 40, 2, pattern(40, 2, 4096, 3), { inCapsule: true });
    expect(ok.status).toBe(0);
    await io.close();
    await admin.close();
  });

  it('a wrong data digest on one H2CData of several: the command fails (Transient Transport Error) once its data is in, the connection goes on', async () => {
    const [admin, io] = await ioHost({ ddgst: true });
    const s = await sentinels(NS.MEM4K, 60, 16, 4096, 4);
    const r = await io.write(NS.MEM4K, 60, 16, pattern(60, 16, 4096, 5), { chunk: 16 << 10, badDataDigest: true });
    expect(st(r.status)).toEqual({ sct: 0, sc: 0x22, dnr: false });
    expect(r.r2ts.length).toBe(1);
    expect(await unchanged(NS.MEM4K, 60, 16, s)).toBe(true);
    const again = await io.write(NS.MEM4K, 60, 16, pattern(60, 16, 4096, 6), { chunk: 16 << 10 });
    expect(again.status).toBe(0);
    expect(Buffer.from(await t.engine.read(NS.MEM4K, 60, 16)).equals(Buffer.from(pattern(60, 16, 4096, 6)))).toBe(true);
    await io.close();
    await admin.close();
  });
});

describe('transfers that do not fit', () => {
  it('past MDTS: Data SGL Length Invalid, nothing written', async () => {
    const [admin, io] = await ioHost();
    const mdts = t.engine.driver.controller.maxTransferBytes;
    expect(Number.isFinite(mdts)).toBe(true);
    const nlb = mdts / 4096 + 1;
    const s = await sentinels(NS.MEM4K, 1100, nlb, 4096, 7);
    const w = await io.write(NS.MEM4K, 1100, nlb, pattern(1100, nlb, 4096, 8));
    expect(st(w.status).sc).toBe(0x0f);
    expect(w.r2ts).toEqual([]);
    const r = await io.read(NS.MEM4K, 1100, nlb, 4096);
    expect(st(r.status).sc).toBe(0x0f);
    expect(r.data).toBeUndefined();
    expect(await unchanged(NS.MEM4K, 1100, nlb, s)).toBe(true);
    await io.close();
    await admin.close();
  });

  for (const lba of [4096, 512]) {
    const nsid = lba === 4096 ? NS.MEM4K : NS.MEM512;
    it(`${lba}-byte blocks: an SGL longer or shorter than NLB blocks: Data SGL Length Invalid, neighbours unchanged`, async () => {
      const [admin, io] = await ioHost();
      const s = await sentinels(nsid, 300, 4, lba, 9);
      // Longer, in the capsule.
      const longer = pattern(300, 5, lba, 10);
      let r = await io.command(rwSqe(0x01, nsid, 300, 4), { data: longer, inCapsule: true });
      expect(st(r.status).sc).toBe(0x0f);
      // Shorter, by R2T.
      r = await io.command(rwSqe(0x01, nsid, 300, 4), { data: pattern(300, 2, lba, 11) });
      expect(st(r.status).sc).toBe(0x0f);
      // Longer, by R2T.
      r = await io.command(rwSqe(0x01, nsid, 300, 4), { data: longer });
      expect(st(r.status).sc).toBe(0x0f);
      // A read whose SGL is shorter than NLB blocks.
      r = await io.command(rwSqe(0x02, nsid, 300, 4), { readLength: 2 * lba });
      expect(st(r.status).sc).toBe(0x0f);
      expect(r.data).toBeUndefined();
      // In-capsule data shorter than the SGL says.
      const cmd = rwSqe(0x01, nsid, 300, 4);
      new DataView(cmd.buffer).setUint16(2, 900, true);
      setSgl(cmd, true, 4 * lba);
      io.send(encodeCapsuleCmd(cmd, pattern(300, 2, lba, 12), io.wire));
      const p = await io.expect(PduType.CAPSULE_RESP);
      expect(st(p.view.getUint16(22, true) >> 1).sc).toBe(0x0f);
      expect(await unchanged(nsid, 300, 4, s)).toBe(true);
      await io.close();
      await admin.close();
    });
  }

  it('LBA out of range: the local controller answers LBA Out of Range', async () => {
    const [admin, io] = await ioHost();
    const blocks = t.engine.namespace(NS.MEM4K).blocks;
    const r = await io.read(NS.MEM4K, blocks - 1, 2, 4096);
    expect(st(r.status)).toMatchObject({ sct: 0, sc: 0x80 });
    const w = await io.write(NS.MEM4K, blocks, 1, pattern(blocks, 1, 4096, 1), { inCapsule: true });
    expect(st(w.status)).toMatchObject({ sct: 0, sc: 0x80 });
    const last = pattern(blocks - 1, 1, 4096, 13);
    expect((await io.write(NS.MEM4K, blocks - 1, 1, last)).status).toBe(0);
    expect(Buffer.from(await t.engine.read(NS.MEM4K, blocks - 1, 1)).equals(Buffer.from(last))).toBe(true);
    await io.close();
    await admin.close();
  });
});

describe('Connect refusals on the wire', () => {
  const iattrIpo = (dw0: number): [number, number] => [(dw0 >>> 16) & 0xff, dw0 & 0xffff];

  it('unknown SUBNQN: Connect Invalid Parameters at SUBNQN; the connection can try again', async () => {
    const h = await TcpHost.open(t.port);
    const r = await h.connect({ subnqn: 'nqn.2026-12.io.nvmq:nobody' });
    expect(st(r.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(iattrIpo(r.dw0)).toEqual([1, 256]);
    expect((await h.connect()).status).toBe(0);
    await h.close();
  });

  it('a host not allowed: Connect Invalid Host at HOSTNQN', async () => {
    const only = await TcpTarget.listen(t.engine, { port: 0, subnqn: 'nqn.2026-12.io.nvmq:only-a', allowHosts: [HOST_A] });
    try {
      const h = await TcpHost.open(only.address.port);
      const r = await h.connect({ subnqn: 'nqn.2026-12.io.nvmq:only-a', hostnqn: HOST_B });
      expect(st(r.status)).toEqual({ sct: 1, sc: 0x84, dnr: true });
      expect(iattrIpo(r.dw0)).toEqual([1, 512]);
      expect(only.subsystem.activeControllers.size).toBe(0);
      const ok = await h.connect({ subnqn: 'nqn.2026-12.io.nvmq:only-a', hostnqn: HOST_A });
      expect(ok.status).toBe(0);
      await h.close();
    } finally {
      await only.close();
    }
  });

  it('an I/O Connect before CC.EN: Command Sequence Error', async () => {
    const admin = await TcpHost.open(t.port);
    expect((await admin.connect({ hostid: HOSTID })).status).toBe(0);
    const io = await TcpHost.open(t.port);
    const r = await io.connect({ qid: 1, cntlid: admin.cntlid, hostid: HOSTID });
    expect(st(r.status)).toMatchObject({ sct: 0, sc: 0x0c });
    // Still unconnected: an NVM command is a Command Sequence Error too.
    const w = await io.command(rwSqe(0x02, NS.MEM4K, 0, 1), { readLength: 4096 });
    expect(st(w.status).sc).toBe(0x0c);
    await io.close();
    await admin.close();
  });

  it('a bad QID (past the granted queues): Invalid Queue Identifier at QID; a QID connected twice: Command Sequence Error', async () => {
    const [admin, io] = await ioHost();
    const other = await TcpHost.open(t.port);
    const r = await other.connect({ qid: 1000, cntlid: admin.cntlid, hostid: HOSTID });
    expect(st(r.status)).toEqual({ sct: 1, sc: 0x01, dnr: true });
    expect(iattrIpo(r.dw0)).toEqual([0, 42]);
    const twice = await other.connect({ qid: 1, cntlid: admin.cntlid, hostid: HOSTID });
    expect(st(twice.status)).toMatchObject({ sct: 0, sc: 0x0c });
    const wrong = await other.connect({ qid: 2, cntlid: 0xfff0, hostid: HOSTID });
    expect(st(wrong.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(iattrIpo(wrong.dw0)).toEqual([1, 16]);
    await Promise.all([other.close(), io.close(), admin.close()]);
  });

  it('a command before Connect: Command Sequence Error, on admin and NVM opcodes alike', async () => {
    const h = await TcpHost.open(t.port);
    for (const s of [adminSqe(0x06, { cdw10: 1 }), rwSqe(0x01, NS.MEM4K, 0, 1), adminSqe(0x18)]) {
      const r = await h.command(s, s[0] === 0x01 ? { data: new Uint8Array(4096), inCapsule: true } : s[0] === 0x06 ? { readLength: 4096 } : {});
      expect(st(r.status).sc).toBe(0x0c);
    }
    expect(t.target.subsystem.activeControllers.size).toBe(0);
    await h.close();
  });
});

describe('lifetimes', () => {
  it('keep-alive expiry closes the admin and I/O connections; the target keeps serving others', async () => {
    const other = await ioHost();
    const admin = await TcpHost.open(t.port);
    const hostid = hostId();
    await admin.adminUp({ hostid, kato: 200 });
    const io = await TcpHost.open(t.port);
    expect((await io.connect({ qid: 1, cntlid: admin.cntlid, hostid })).status).toBe(0);
    const before = t.target.subsystem.activeControllers.size;
    // KATO 200 ms plus the 1 s grace.
    await Promise.race([Promise.all([admin.closed, io.closed]), new Promise((_, reject) => setTimeout(() => reject(new Error('not closed')), 4000))]);
    expect(await until(() => t.target.subsystem.activeControllers.size === before - 1)).toBe(true);
    const r = await other[1].write(NS.MEM4K, 7, 1, pattern(7, 1, 4096, 1), { inCapsule: true });
    expect(r.status).toBe(0);
    await other[1].close();
    await other[0].close();
  });

  // Regression: setTimeout(KATO + grace) overflowed past 2^31 - 1 ms and Node fired it after 1 ms, so a host
  // asking for a long (legal, 32-bit) KATO lost its controller at once.
  it('a KATO past 2^31 ms does not expire the controller at once', async () => {
    const h = await TcpHost.open(t.port);
    await h.adminUp({ hostid: hostId(), kato: 0xf0000000 });
    await new Promise((r) => setTimeout(r, 100));
    const r = await h.propertyGet(0x1c);
    expect(r.status).toBe(0);
  });

  it('a host that vanishes mid-R2T leaves no connection, controller or DMA buffer behind', async () => {
    const free = await arenaFree();
    const [admin, io] = await ioHost();
    const s = await sentinels(NS.MEM4K, 700, 64, 4096, 14);
    const cmd = rwSqe(0x01, NS.MEM4K, 700, 64);
    setSgl(cmd, false, 64 * 4096);
    io.send(encodeCapsuleCmd(cmd, undefined, io.wire));
    await io.expect(PduType.R2T);
    expect(await arenaFree()).toBeLessThan(free);
    io.destroy();
    expect(await until(() => t.target.connectionCount === 1)).toBe(true);
    admin.destroy();
    expect(await until(() => t.target.connectionCount === 0 && t.target.subsystem.activeControllers.size === 0)).toBe(true);
    expect(await arenaFree()).toBe(free);
    expect(await unchanged(NS.MEM4K, 700, 64, s)).toBe(true);
    // The engine and the target still serve I/O.
    await t.engine.write(NS.MEM4K, 700, pattern(700, 1, 4096, 15));
    const [a2, io2] = await ioHost();
    const r = await io2.read(NS.MEM4K, 700, 1, 4096);
    expect(Buffer.from(r.data!).equals(Buffer.from(pattern(700, 1, 4096, 15)))).toBe(true);
    await io2.close();
    await a2.close();
  });

  it('a host that vanishes with reads in flight leaves no DMA buffer behind', async () => {
    const free = await arenaFree();
    const [admin, io] = await ioHost();
    const mdtsBlocks = t.engine.driver.controller.maxTransferBytes / 4096;
    const capsules: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) {
      const cmd = rwSqe(0x02, NS.MEM4K, 0, mdtsBlocks);
      new DataView(cmd.buffer).setUint16(2, 100 + i, true);
      setSgl(cmd, false, mdtsBlocks * 4096);
      capsules.push(concatSegments(encodeCapsuleCmd(cmd, undefined, io.wire)));
    }
    io.send(concatSegments(capsules));
    // The first data is on its way: the rest is running or queued in the socket.
    await io.expect(PduType.C2H_DATA);
    io.destroy();
    admin.destroy();
    expect(await until(() => t.target.connectionCount === 0 && t.target.subsystem.activeControllers.size === 0)).toBe(true);
    expect(await until(() => false, 100)).toBe(false);
    expect(await arenaFree()).toBe(free);
  });

  it('R2T writes a host sends no data for hold at most MAX_HELD_BYTES: the rest wait for their turn, the next is asked for once one has its data; all buffers come back', async () => {
    const free = await arenaFree();
    const [admin, io] = await ioHost();
    const mdts = t.engine.driver.controller.maxTransferBytes;
    const asked = Math.max(1, Math.floor(MAX_HELD_BYTES / mdts));
    const n = asked + 4;
    const cids: number[] = [];
    const capsules: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const cmd = rwSqe(0x01, NS.MEM4K, i * (mdts / 4096), mdts / 4096);
      new DataView(cmd.buffer).setUint16(2, 200 + i, true);
      cids.push(200 + i);
      setSgl(cmd, false, mdts);
      capsules.push(concatSegments(encodeCapsuleCmd(cmd, undefined, io.wire)));
    }
    io.send(concatSegments(capsules));
    const r2ts: Array<{ cccid: number; ttag: number }> = [];
    for (let i = 0; i < asked; i++) {
      const p = await io.expect(PduType.R2T);
      r2ts.push({ cccid: p.view.getUint16(8, true), ttag: p.view.getUint16(10, true) });
    }
    // And nothing more: the others wait.
    await expect(io.next(300)).rejects.toThrow(/no PDU within 300 ms/);
    // Only the first writes were asked for their data; nothing was refused.
    expect(r2ts.map((r) => r.cccid)).toEqual(cids.slice(0, asked));
    expect((free - (await arenaFree())) * 4096).toBeLessThanOrEqual(MAX_HELD_BYTES);
    // The data of the first: it completes, and the next write is asked for its data.
    const data = pattern(0, mdts / 4096, 4096, 21);
    const maxh2c = 128 << 10;
    for (let at = 0; at < mdts; at += maxh2c) {
      const piece = data.subarray(at, Math.min(mdts, at + maxh2c));
      io.send(concatSegments(encodeH2CData({ cccid: r2ts[0]!.cccid, ttag: r2ts[0]!.ttag, datao: at, last: at + piece.length === mdts, data: piece }, io.wire)));
    }
    const got: number[] = [];
    for (let i = 0; i < 2; i++) got.push((await io.next())!.type);
    expect(got.sort()).toEqual([PduType.CAPSULE_RESP, PduType.R2T].sort());
    io.destroy();
    await admin.close();
    expect(await until(() => t.target.connectionCount === 0)).toBe(true);
    expect(await until(() => false, 50)).toBe(false);
    expect(await arenaFree()).toBe(free);
  });

  it('an H2CTermReq ends the connection, unanswered', async () => {
    const h = await TcpHost.open(t.port);
    expect((await h.connect()).status).toBe(0);
    h.send(encodeH2CTermReq({ fes: 1, fei: 0, offendingHeader: new Uint8Array(8) }));
    await h.expectClosed();
    expect(await until(() => t.target.subsystem.activeControllers.size === 0)).toBe(true);
  });
});

describe('malformed and out-of-order PDUs', () => {
  it('a truncated PDU waits for the rest (cut in the common header, the SQE, the digest, the data)', async () => {
    for (const cut of [4, 30, 72, 74, 500]) {
      const h = await TcpHost.open(t.port, { hdgst: true, ddgst: true });
      const bytes = concatSegments(encodeCapsuleCmd(connectSqe({ cid: 3 }), connectData({ hostid: HOSTID }), h.wire));
      h.send(bytes.subarray(0, cut));
      await expect(h.next(100)).rejects.toThrow(/no PDU/);
      expect(h.isClosed).toBe(false);
      h.send(bytes.subarray(cut));
      const p = await h.expect(PduType.CAPSULE_RESP);
      expect(p.view.getUint16(20, true)).toBe(3);
      expect(p.view.getUint16(22, true) >> 1).toBe(0);
      await h.close();
    }
  });

  it('PDUs split byte by byte still work', async () => {
    const h = await TcpHost.open(t.port);
    const bytes = concatSegments(encodeCapsuleCmd(connectSqe({ cid: 4 }), connectData({ hostid: HOSTID }), h.wire));
    for (let i = 0; i < 80; i++) h.send(bytes.subarray(i, i + 1));
    h.send(bytes.subarray(80));
    const p = await h.expect(PduType.CAPSULE_RESP);
    expect(p.view.getUint16(22, true) >> 1).toBe(0);
    await h.close();
  });

  it('an oversized PLEN: C2HTermReq Data Transfer Limit Exceeded at PLEN, before its data is waited for', async () => {
    const h = await TcpHost.open(t.port);
    const ch = Buffer.alloc(8);
    ch[0] = PduType.CAPSULE_CMD;
    ch[2] = 72;
    ch[3] = 72;
    ch.writeUInt32LE(16 << 20, 4);
    h.send(new Uint8Array(ch));
    const term = await h.expectTermReq();
    expect(term.fes).toBe(0x05);
    expect(term.fei).toBe(4);
  });

  it('H2CData for an unknown TTAG: C2HTermReq Invalid Header Field at TTAG', async () => {
    const [admin, io] = await ioHost();
    io.send(encodeH2CData({ cccid: 5, ttag: 77, datao: 0, data: new Uint8Array(4096), last: true }, io.wire));
    const term = await io.expectTermReq();
    expect(term.fes).toBe(0x01);
    expect(term.fei).toBe(10);
    await admin.close();
  });

  it('H2CData at the wrong offset: C2HTermReq Data Transfer Out of Range', async () => {
    const [admin, io] = await ioHost();
    const cmd = rwSqe(0x01, NS.MEM4K, 800, 4);
    new DataView(cmd.buffer).setUint16(2, 21, true);
    setSgl(cmd, false, 4 * 4096);
    io.send(encodeCapsuleCmd(cmd, undefined, io.wire));
    const r2t = await io.expect(PduType.R2T);
    const ttag = r2t.view.getUint16(10, true);
    io.send(encodeH2CData({ cccid: 21, ttag, datao: 4096, data: new Uint8Array(4096), last: false }, io.wire));
    const term = await io.expectTermReq();
    expect(term.fes).toBe(0x04);
    await admin.close();
    expect(await until(() => t.target.connectionCount === 0)).toBe(true);
  });

  it('H2CData with LAST_PDU on a PDU that is not the last, or without it on the last: C2HTermReq Invalid Header Field at FLAGS', async () => {
    for (const [datao, last] of [
      [0, true],
      [0, false],
    ] as const) {
      const [admin, io] = await ioHost();
      const cmd = rwSqe(0x01, NS.MEM4K, 800, 2);
      new DataView(cmd.buffer).setUint16(2, 23, true);
      setSgl(cmd, false, 2 * 4096);
      io.send(encodeCapsuleCmd(cmd, undefined, io.wire));
      const r2t = await io.expect(PduType.R2T);
      const ttag = r2t.view.getUint16(10, true);
      // Half the data flagged last; or all of it, unflagged.
      const data = new Uint8Array(last ? 4096 : 2 * 4096);
      io.send(encodeH2CData({ cccid: 23, ttag, datao, data, last }, io.wire));
      const term = await io.expectTermReq();
      expect(term.fes).toBe(0x01);
      expect(term.fei).toBe(1);
      await admin.close();
      expect(await until(() => t.target.connectionCount === 0)).toBe(true);
    }
  });

  it('H2CData longer than MAXH2CDATA: C2HTermReq Data Transfer Limit Exceeded', async () => {
    const [admin, io] = await ioHost();
    const max = io.icResp!.maxh2cdata;
    const nlb = (2 * max) / 4096;
    const cmd = rwSqe(0x01, NS.MEM4K, 800, nlb);
    new DataView(cmd.buffer).setUint16(2, 22, true);
    setSgl(cmd, false, nlb * 4096);
    io.send(encodeCapsuleCmd(cmd, undefined, io.wire));
    const r2t = await io.expect(PduType.R2T);
    const ttag = r2t.view.getUint16(10, true);
    io.send(encodeH2CData({ cccid: 22, ttag, datao: 0, data: new Uint8Array(max + 4096), last: false }, io.wire));
    const term = await io.expectTermReq();
    expect(term.fes).toBe(0x05);
    await admin.close();
  });

  it('H2CData a little over MAXH2CDATA (a PDU the reader still takes): Data Transfer Limit Exceeded, not Out of Range', async () => {
    const [admin, io] = await ioHost();
    const max = io.icResp!.maxh2cdata;
    const nlb = (2 * max) / 4096;
    const cmd = rwSqe(0x01, NS.MEM4K, 800, nlb);
    new DataView(cmd.buffer).setUint16(2, 23, true);
    setSgl(cmd, false, nlb * 4096);
    io.send(encodeCapsuleCmd(cmd, undefined, io.wire));
    const r2t = await io.expect(PduType.R2T);
    const ttag = r2t.view.getUint16(10, true);
    io.send(encodeH2CData({ cccid: 23, ttag, datao: 0, data: new Uint8Array(max + 128), last: false }, io.wire));
    const term = await io.expectTermReq();
    expect(term.fes).toBe(0x05);
    expect(term.fei).toBe(16); // DATAL
    await admin.close();
  });

  it('a second ICReq: C2HTermReq PDU Sequence Error', async () => {
    const h = await TcpHost.open(t.port);
    h.send(encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }));
    const term = await h.expectTermReq();
    expect(term.fes).toBe(0x02);
    expect(term.fei).toBe(0);
  });

  it('a capsule or data before the ICReq: C2HTermReq PDU Sequence Error', async () => {
    for (const first of [concatSegments(encodeCapsuleCmd(connectSqe(), connectData({ hostid: HOSTID }))), concatSegments(encodeH2CData({ cccid: 1, ttag: 0, datao: 0, data: new Uint8Array(8), last: true }))]) {
      const h = await TcpHost.open(t.port, { noIcReq: true });
      h.send(first);
      const term = await h.expectTermReq();
      expect(term.fes).toBe(0x02);
    }
  });

  it('an ICReq with PFV 1: C2HTermReq Unsupported Parameter at PFV; HPDA 32: Invalid Header Field at HPDA', async () => {
    let h = await TcpHost.open(t.port, { noIcReq: true });
    h.send(encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0, pfv: 1 }));
    let term = await h.expectTermReq();
    expect(term.fes).toBe(0x06);
    expect(term.fei).toBe(8);
    expect(term.errorData.length).toBe(128);
    expect(term.errorData[0]).toBe(PduType.IC_REQ);
    h = await TcpHost.open(t.port, { noIcReq: true });
    const bad = encodeIcReq({ hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 });
    bad[10] = 32;
    h.send(bad);
    term = await h.expectTermReq();
    expect(term.fes).toBe(0x01);
    expect(term.fei).toBe(10);
  });

  it('a PDU type a controller never receives: C2HTermReq Invalid Header Field at PDU-TYPE', async () => {
    const h = await TcpHost.open(t.port);
    const b = new Uint8Array(24);
    b[0] = PduType.R2T;
    b[2] = 24;
    new DataView(b.buffer).setUint32(4, 24, true);
    h.send(b);
    const term = await h.expectTermReq();
    expect(term.fes).toBe(0x01);
    expect(term.fei).toBe(0);
  });

  it('after all of it: no connection left, no controller left', async () => {
    expect(await until(() => t.target.connectionCount === 0 && t.target.subsystem.activeControllers.size === 0)).toBe(true);
  });
});
