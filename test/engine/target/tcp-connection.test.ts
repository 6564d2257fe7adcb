/**
 * The NVMe/TCP target over real loopback sockets, a real Engine behind it:
 * ICReq / ICResp, Connect, Property Get / Set, Identify, and NVM I/O with
 * in-capsule data and R2T → H2CData (split into several PDUs), reads by
 * C2HData, digests on and off, data checked back through the target and
 * through the engine itself, on 4096- and 512-byte LBA namespaces and a file
 * namespace; two hosts at once; discovery.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { PduType } from '../../../src/engine/spec/tcp-pdu.js';
import { decodeIcResp } from '../../../src/engine/target/pdu-fields.js';
import { HOST_A, HOST_B, SUBNQN, adminSqe, st } from './helpers.js';
import { DISCOVERY_NQN, LBA, NS, PROP, TcpHost, asPdu, destroyAll, pattern, sqe, startTarget, until, type LiveTarget } from './tcp-host.js';

let t: LiveTarget;
beforeAll(async () => {
  t = await startTarget();
});
afterEach(async () => {
  await destroyAll();
  expect(await until(() => t.target.connectionCount === 0 && t.target.subsystem.activeControllers.size === 0)).toBe(true);
});
afterAll(async () => {
  await t?.stop();
});

/** A host with an admin queue up and I/O queue 1 connected: [admin, io]. */
async function ioHost(o: { hdgst?: boolean; ddgst?: boolean; hpda?: number; hostnqn?: string; halfOpen?: boolean } = {}): Promise<[TcpHost, TcpHost]> {
  const admin = await TcpHost.open(t.port, o);
  const hostid = new Uint8Array(16).fill(0x5a);
  await admin.adminUp({ hostnqn: o.hostnqn, hostid, kato: 0 });
  const io = await TcpHost.open(t.port, o);
  const r = await io.connect({ qid: 1, cntlid: admin.cntlid, hostnqn: o.hostnqn, hostid });
  expect(st(r.status)).toEqual({ sct: 0, sc: 0, dnr: false });
  return [admin, io];
}

describe('connection initialization', () => {
  it('answers an ICReq with an ICResp: PFV 0, CPDA 0, digests as asked, MAXH2CDATA', async () => {
    for (const [hdgst, ddgst] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const h = await TcpHost.open(t.port, { hdgst, ddgst });
      expect(h.icResp).toEqual({ pfv: 0, cpda: 0, hdgst, ddgst, maxh2cdata: 128 << 10 });
      await h.close();
    }
  });

  it('sends the ICResp with PLEN 128 and no digest', async () => {
    const h = await TcpHost.open(t.port, { noIcReq: true, hdgst: true });
    const { encodeIcReq } = await import('../../../src/engine/target/pdu-encode.js');
    h.send(encodeIcReq({ hpda: 0, hdgst: true, ddgst: true, maxr2t: 0 }));
    const p = await h.expect(PduType.IC_RESP);
    expect(p.plen).toBe(128);
    expect(p.flags).toBe(0);
    expect(decodeIcResp(asPdu(p)).hdgst).toBe(true);
    await h.close();
  });
});

describe('admin queue', () => {
  it('Connect, Property Get CAP / VS, Set CC.EN, CSTS.RDY, Identify Controller with the CNTLID and SUBNQN', async () => {
    const h = await TcpHost.open(t.port);
    const c = await h.connect({ kato: 0 });
    expect(c.status).toBe(0);
    expect(c.sqid).toBe(0);
    const cntlid = c.dw0 & 0xffff;
    expect(cntlid).toBeGreaterThanOrEqual(1);
    expect(cntlid).toBeLessThanOrEqual(0xffef);
    // Admin commands before CC.EN: Command Sequence Error.
    const early = await h.identify(1);
    expect(st(early.status).sc).toBe(0x0c);
    const cap = await h.propertyGet(PROP.CAP, true);
    expect(cap.status).toBe(0);
    expect(cap.dw0 & 0xffff).toBeGreaterThan(0); // MQES
    const vs = await h.propertyGet(PROP.VS);
    expect(vs.dw0).toBe(0x00010300);
    await h.enable();
    const id = await h.identify(1);
    expect(id.status).toBe(0);
    expect(id.data!.length).toBe(4096);
    const b = Buffer.from(id.data!);
    expect(b.readUInt16LE(78)).toBe(cntlid); // CNTLID
    expect(b.subarray(768, 768 + SUBNQN.length).toString()).toBe(SUBNQN);
    // SQHD advances with each capsule (SQ flow control on).
    expect(id.sqhd).toBeGreaterThan(0);
    await h.close();
    expect(await until(() => t.target.subsystem.activeControllers.size === 0)).toBe(true);
  });

  it('a command before Connect gets Command Sequence Error and the connection stays', async () => {
    const h = await TcpHost.open(t.port);
    const r = await h.command(adminSqe(0x06, { cdw10: 1 }), { readLength: 4096 });
    expect(st(r.status).sc).toBe(0x0c);
    expect(r.data).toBeUndefined();
    const c = await h.connect();
    expect(c.status).toBe(0);
    await h.close();
  });
});

describe('I/O', () => {
  const sizes = [
    { nsid: NS.MEM4K, name: '4096-byte memory namespace' },
    { nsid: NS.MEM512, name: '512-byte memory namespace' },
    { nsid: NS.FILE, name: '4096-byte file namespace' },
  ];
  for (const digests of [false, true]) {
    for (const { nsid, name } of sizes) {
      it(`${name}, digests ${digests ? 'on' : 'off'}: in-capsule and R2T writes, reads through the target and the engine`, async () => {
        const [admin, io] = await ioHost({ hdgst: digests, ddgst: digests, hpda: digests ? 3 : 0 });
        const lba = LBA[nsid]!;
        const seed = digests ? 7 : 3;
        // In-capsule: up to 8 KiB.
        const small = pattern(10, 8192 / lba, lba, seed);
        const w1 = await io.write(nsid, 10, 8192 / lba, small, { inCapsule: true });
        expect(w1.status).toBe(0);
        expect(w1.r2ts).toEqual([]);
        // R2T: 300 KiB in H2CData PDUs of 64 KiB.
        const nlb = (300 << 10) / lba;
        const big = pattern(100, nlb, lba, seed);
        const w2 = await io.write(nsid, 100, nlb, big, { chunk: 64 << 10 });
        expect(w2.status).toBe(0);
        expect(w2.r2ts).toEqual([{ ttag: expect.any(Number), r2to: 0, r2tl: 300 << 10 }]);
        const r1 = await io.read(nsid, 10, 8192 / lba, lba);
        expect(r1.status).toBe(0);
        expect(Buffer.from(r1.data!).equals(Buffer.from(small))).toBe(true);
        const r2 = await io.read(nsid, 100, nlb, lba);
        expect(r2.status).toBe(0);
        expect(r2.c2h.at(-1)!.last).toBe(true);
        expect(Buffer.from(r2.data!).equals(Buffer.from(big))).toBe(true);
        // The engine sees the same blocks.
        expect(Buffer.from(await t.engine.read(nsid, 100, nlb)).equals(Buffer.from(big))).toBe(true);
        expect(Buffer.from(await t.engine.read(nsid, 10, 8192 / lba)).equals(Buffer.from(small))).toBe(true);
        // And the target sees what the engine writes.
        const local = pattern(500, 4, lba, seed + 1);
        await t.engine.write(nsid, 500, local);
        const r3 = await io.read(nsid, 500, 4, lba);
        expect(Buffer.from(r3.data!).equals(Buffer.from(local))).toBe(true);
        await io.close();
        await admin.close();
      });
    }
  }

  it('Flush, Write Zeroes and Dataset Management (deallocate) complete and do what they say', async () => {
    const [admin, io] = await ioHost();
    const nsid = NS.MEM4K;
    await t.engine.write(nsid, 200, pattern(200, 8, 4096, 9));
    expect((await io.flush(nsid)).status).toBe(0);
    expect((await io.writeZeroes(nsid, 202, 2)).status).toBe(0);
    const after = Buffer.from(await t.engine.read(nsid, 200, 8));
    expect(after.subarray(2 * 4096, 4 * 4096).every((x) => x === 0)).toBe(true);
    expect(after.subarray(0, 2 * 4096).equals(Buffer.from(pattern(200, 2, 4096, 9)))).toBe(true);
    expect(after.subarray(4 * 4096).equals(Buffer.from(pattern(200, 8, 4096, 9)).subarray(4 * 4096))).toBe(true);
    const d = await io.deallocate(nsid, [{ slba: 204, nlb: 2 }, { slba: 300, nlb: 1 }]);
    expect(d.status).toBe(0);
    // DSM by R2T too.
    const d2 = await io.deallocate(nsid, [{ slba: 206, nlb: 1 }], { inCapsule: false });
    expect(d2.status).toBe(0);
    expect(d2.r2ts.length).toBe(1);
    await io.close();
    await admin.close();
  });

  it('SQ flow control disabled: reads end with C2HData SUCCESS and no response capsule', async () => {
    const admin = await TcpHost.open(t.port);
    const hostid = new Uint8Array(16).fill(0x11);
    await admin.adminUp({ hostid });
    const io = await TcpHost.open(t.port);
    const c = await io.connect({ qid: 1, cntlid: admin.cntlid, hostid, cattr: 1 << 2 });
    expect(c.status).toBe(0);
    expect(c.sqhd).toBe(0xffff);
    const data = pattern(50, 2, 4096, 4);
    const w = await io.write(NS.MEM4K, 50, 2, data, { inCapsule: true });
    expect(w.sqhd).toBe(0xffff);
    const r = await io.read(NS.MEM4K, 50, 2, 4096);
    expect(r.impliedBySuccess).toBe(true);
    expect(r.c2h).toEqual([{ datao: 0, datal: 8192, last: true, success: true }]);
    expect(Buffer.from(r.data!).equals(Buffer.from(data))).toBe(true);
    // The next command's response is its own (no stray CapsuleResp for the read).
    const f = await io.flush(NS.MEM4K);
    expect(f.status).toBe(0);
    await io.close();
    await admin.close();
  });
});

describe('Disconnect', () => {
  it('on an I/O queue: success, then the target closes that connection; the admin queue lives on and the QID can be connected again', async () => {
    const [admin, io] = await ioHost();
    const r = await io.command(sqe(0x7f, { cdw10: 0 }).map((b, i) => (i === 4 ? 0x08 : i === 1 ? 0 : b)));
    expect(r.status).toBe(0);
    await io.expectClosed();
    expect(await until(() => t.target.connectionCount === 1)).toBe(true);
    expect(t.target.subsystem.activeControllers.size).toBe(1);
    const again = await TcpHost.open(t.port);
    const c = await again.connect({ qid: 1, cntlid: admin.cntlid, hostid: new Uint8Array(16).fill(0x5a) });
    expect(c.status).toBe(0);
    expect((await again.flush(NS.MEM4K)).status).toBe(0);
    await again.close();
    await admin.close();
  });
});

describe('Disconnect, then the host keeps its socket open', () => {
  it('the disconnected connection runs no more commands, and its late close does not drop the QID another connection now holds', async () => {
    const [admin, io1] = await ioHost({ halfOpen: true });
    const hostid = new Uint8Array(16).fill(0x5a);
    const disc = sqe(0x7f);
    disc[1] = 0;
    disc[4] = 0x08;
    expect((await io1.command(disc)).status).toBe(0);
    // The host has not closed its end yet: its QID is free again, and taken by a new connection.
    const io2 = await TcpHost.open(t.port);
    expect((await io2.connect({ qid: 1, cntlid: admin.cntlid, hostid })).status).toBe(0);
    // A write on the disconnected queue must not reach the namespace.
    const before = await t.engine.read(NS.MEM4K, 900, 1);
    const w = pattern(900, 1, 4096, 77);
    const late = await io1.write(NS.MEM4K, 900, 1, w, { inCapsule: true, timeoutMs: 300 }).catch(() => undefined);
    if (late) expect(late.status).not.toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(Buffer.from(await t.engine.read(NS.MEM4K, 900, 1)).equals(Buffer.from(before))).toBe(true);
    // The old connection goes; QID 1 is still io2's: a third Connect for it is refused.
    await io1.close();
    expect(await until(() => t.target.connectionCount === 2)).toBe(true);
    const io3 = await TcpHost.open(t.port);
    const third = await io3.connect({ qid: 1, cntlid: admin.cntlid, hostid });
    expect(st(third.status)).toMatchObject({ sct: 0, sc: 0x0c });
    expect((await io2.flush(NS.MEM4K)).status).toBe(0);
    await Promise.all([io3.close(), io2.close()]);
    await admin.close();
  });
});

describe('two hosts', () => {
  it('each gets its own CNTLID and its own I/O queues, at the same time', async () => {
    const [[a1, a2], [b1, b2]] = await Promise.all([ioHost({ hostnqn: HOST_A }), ioHost({ hostnqn: HOST_B })]);
    expect(a1.cntlid).not.toBe(b1.cntlid);
    expect(t.target.subsystem.activeControllers.size).toBe(2);
    const da = pattern(1000, 4, 4096, 1);
    const db = pattern(1004, 4, 4096, 2);
    await Promise.all([a2.write(NS.MEM4K, 1000, 4, da), b2.write(NS.MEM4K, 1004, 4, db)]);
    const [ra, rb] = await Promise.all([b2.read(NS.MEM4K, 1000, 4, 4096), a2.read(NS.MEM4K, 1004, 4, 4096)]);
    expect(Buffer.from(ra.data!).equals(Buffer.from(da))).toBe(true);
    expect(Buffer.from(rb.data!).equals(Buffer.from(db))).toBe(true);
    await Promise.all([a2.close(), b2.close(), a1.close(), b1.close()]);
    expect(await until(() => t.target.connectionCount === 0 && t.target.subsystem.activeControllers.size === 0)).toBe(true);
  });
});

describe('discovery', () => {
  it('Connect to the discovery NQN, Get Log Page 70h lists the subsystem', async () => {
    const h = await TcpHost.open(t.port);
    await h.adminUp({ subnqn: DISCOVERY_NQN });
    const hdr = await h.command(sqe(0x02, { cdw10: 0x70 | (((1024 / 4 - 1) & 0xffff) << 16) }), { readLength: 1024 });
    expect(hdr.status).toBe(0);
    const numrec = Number(Buffer.from(hdr.data!).readBigUInt64LE(8));
    expect(numrec).toBeGreaterThanOrEqual(1);
    const total = 1024 + numrec * 1024;
    const log = await h.command(sqe(0x02, { cdw10: 0x70 | (((total / 4 - 1) & 0xffff) << 16), cdw11: ((total / 4 - 1) >>> 16) & 0xffff }), { readLength: total });
    expect(log.status).toBe(0);
    const b = Buffer.from(log.data!);
    const subnqns: string[] = [];
    for (let i = 0; i < numrec; i++) {
      const e = b.subarray(1024 + i * 1024, 2048 + i * 1024);
      subnqns.push(e.subarray(256, 512).toString().replace(/\0+$/, ''));
      if (e.subarray(256, 512).toString().startsWith(SUBNQN)) {
        expect(e[0]).toBe(3); // TRTYPE TCP
        expect(e[2]).toBe(2); // SUBTYPE NVM
        expect(e.subarray(32, 64).toString().replace(/[\0 ]+$/, '')).toBe(String(t.port)); // TRSVCID
      }
    }
    expect(subnqns).toContain(SUBNQN);
    await h.close();
  });
});
