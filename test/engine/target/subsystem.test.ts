/**
 * Subsystem.connect(): admin and I/O queue Connect over a real local
 * controller, every rejection with its status and IATTR / IPO (NVMe over
 * Fabrics 1.1, Connect command, Figures 19 - 22).
 */
import { formatStatus } from '../../../src/engine/spec/status.js';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { openController } from '../../../src/engine/local-device.js';
import type { NvmeDriver } from '../../../src/engine/host/driver.js';
import { Subsystem, connectTo, DiscoveryService, type FabricsController } from '../../../src/engine/target/index.js';
import { CC_ENABLE, FakeLink, HOST_A, HOST_B, SUBNQN, adminSqe, connectData, connectSqe, hostId, propertySqe, st, type ConnectArgs } from './helpers.js';

let driver: NvmeDriver;
beforeAll(async () => {
  driver = await openController({ namespaces: [{ backend: 'memory', size: 8 << 20 }] });
});
afterAll(async () => {
  await driver.close();
});

const port = { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: '4420', adrfam: 'ipv4' } as const;
const mkSub = (o: Partial<ConstructorParameters<typeof Subsystem>[0]> = {}): Subsystem => new Subsystem({ subnqn: SUBNQN, driver, port, maxIoQueues: 4, maxQueueSize: 128, allowAnyHost: !o.allowHosts, ...o });

function connect(sub: Subsystem, a: ConnectArgs = {}, link = new FakeLink()) {
  const hostid = a.hostid ?? hostId();
  return sub.connect(connectSqe(a), connectData({ ...a, hostid }), link);
}

/** IATTR (DW0 23:16) and IPO (DW0 15:0) of a Connect Invalid Parameters response. */
function where(dw0: number): { iattr: number; ipo: number } {
  return { iattr: (dw0 >>> 16) & 0xff, ipo: dw0 & 0xffff };
}

async function enable(c: FabricsController): Promise<void> {
  const r = await c.execute(propertySqe(0x00, 0x14, false, BigInt(CC_ENABLE)));
  expect(r.status).toBe(0);
  expect(c.enabled).toBe(true);
}

describe('admin queue Connect', () => {
  it('creates a controller with a dynamic CNTLID and returns it in DW0 and the response capsule', () => {
    const sub = mkSub();
    const r = connect(sub, { cid: 0x1234, kato: 5000 });
    expect(r.response.status).toBe(0);
    expect(r.controller).toBeDefined();
    const cntlid = r.controller!.cntlid;
    expect(cntlid).toBeGreaterThanOrEqual(1);
    expect(cntlid).toBeLessThanOrEqual(0xffef);
    // DW0 15:0 CNTLID, 17:16 AUTHREQ = 0 (no authentication).
    expect(r.response.dw0).toBe(cntlid);
    const cqe = Buffer.from(r.cqe);
    expect(cqe.length).toBe(16);
    expect(cqe.readUInt32LE(0)).toBe(cntlid);
    expect(cqe.readUInt16LE(10)).toBe(0); // SQID
    expect(cqe.readUInt16LE(12)).toBe(0x1234); // CID
    expect(cqe.readUInt16LE(14)).toBe(0); // status + phase
    expect(r.queue).toEqual({ qid: 0, entries: 32, sqFlowControlDisabled: false });
    expect(r.controller!.hostnqn).toBe(HOST_A);
    expect(r.controller!.keepAliveTimeoutMs).toBe(5000);
    sub.close();
  });

  it('two hosts get distinct CNTLIDs and independent properties', async () => {
    const sub = mkSub({ allowHosts: [HOST_A, HOST_B] });
    const a = connect(sub, { hostnqn: HOST_A }).controller!;
    const b = connect(sub, { hostnqn: HOST_B }).controller!;
    expect(a.cntlid).not.toBe(b.cntlid);
    expect(sub.activeControllers.size).toBe(2);
    await enable(a);
    expect(b.enabled).toBe(false);
    const csts = await b.execute(propertySqe(0x04, 0x1c, false));
    expect(csts.dw0 & 1).toBe(0);
    sub.close();
    expect(sub.activeControllers.size).toBe(0);
  });

  it('two hosts get independent Number of Queues grants', async () => {
    const sub = mkSub();
    const a = connect(sub).controller!;
    const b = connect(sub).controller!;
    await enable(a);
    await enable(b);
    expect((await a.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 0 }))).dw0).toBe(0);
    expect((await b.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 2 | (2 << 16) }))).dw0).toBe(2 | (2 << 16));
    expect([a.ioQueueLimit, b.ioQueueLimit]).toEqual([1, 3]);
    sub.close();
  });

  it('a torn down controller frees its CNTLID', () => {
    const sub = mkSub();
    const link = new FakeLink();
    const c = connect(sub, {}, link).controller!;
    c.teardown('test');
    expect(link.closed).toBe('test');
    expect(sub.controller(c.cntlid)).toBeUndefined();
    expect(sub.activeControllers.size).toBe(0);
  });

  it('RECFMT other than 0: Incompatible Format (SCT 1, SC 80h), DNR', () => {
    const r = connect(mkSub(), { recfmt: 1 });
    expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x80, dnr: true });
    expect(r.controller).toBeUndefined();
  });

  it('unknown SUBNQN: Connect Invalid Parameters pointing at SUBNQN in the data (IATTR 1, IPO 256)', () => {
    const r = connect(mkSub(), { subnqn: 'nqn.2026-12.io.nvmq:other' });
    expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(where(r.response.dw0)).toEqual({ iattr: 1, ipo: 256 });
  });

  it('host not on the allow list: Connect Invalid Host pointing at HOSTNQN (IATTR 1, IPO 512)', () => {
    const sub = mkSub({ allowHosts: [HOST_A] });
    const r = connect(sub, { hostnqn: HOST_B });
    expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x84, dnr: true });
    expect(where(r.response.dw0)).toEqual({ iattr: 1, ipo: 512 });
    expect(connect(sub, { hostnqn: HOST_A }).response.status).toBe(0);
    expect(sub.allows(HOST_B)).toBe(false);
    sub.close();
  });

  it('allowAnyHost lets any host in; without it or an allow list, no host gets in', () => {
    const any = mkSub({ allowHosts: [HOST_A], allowAnyHost: true });
    expect(connect(any, { hostnqn: HOST_B }).response.status).toBe(0);
    any.close();
    const closed = mkSub({ allowAnyHost: false });
    const r = connect(closed, { hostnqn: HOST_B });
    expect(formatStatus(r.response.status, 'fabrics')).toMatch(/^Connect Invalid Host/);
    closed.close();
  });

  it('CNTLID other than FFFFh on an admin Connect: Connect Invalid Parameters at CNTLID (IATTR 1, IPO 16)', () => {
    for (const cntlid of [0xfffe, 1, 0]) {
      const r = connect(mkSub(), { cntlid });
      expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
      expect(where(r.response.dw0)).toEqual({ iattr: 1, ipo: 16 });
    }
  });

  it('SQSIZE 0 or past the admin queue size: Connect Invalid Parameters at SQSIZE in the SQE (IATTR 0, IPO 44)', () => {
    for (const sqsize of [0, 32, 0xffff]) {
      const r = connect(mkSub(), { sqsize });
      expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
      expect(where(r.response.dw0)).toEqual({ iattr: 0, ipo: 44 });
    }
    expect(connect(mkSub(), { sqsize: 1 }).response.status).toBe(0);
  });

  it('an all-zero HOSTID: Connect Invalid Parameters at HOSTID (IATTR 1, IPO 0)', () => {
    const r = connect(mkSub(), { hostid: new Uint8Array(16) });
    expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(where(r.response.dw0)).toEqual({ iattr: 1, ipo: 0 });
  });

  it('malformed capsules get a status, never an exception', () => {
    const sub = mkSub();
    const link = new FakeLink();
    const hostid = hostId();
    // Connect data shorter than 1024 bytes: Data SGL Length Invalid (SCT 0, SC 0Fh).
    expect(st(sub.connect(connectSqe(), connectData({ hostid }).subarray(0, 512), link).response.status)).toEqual({ sct: 0, sc: 0x0f, dnr: true });
    expect(st(sub.connect(connectSqe(), undefined, link).response.status)).toEqual({ sct: 0, sc: 0x0f, dnr: true });
    // An SQE that is not 64 bytes: Invalid Field.
    expect(st(sub.connect(new Uint8Array(10), connectData({ hostid }), link).response.status)).toEqual({ sct: 0, sc: 0x02, dnr: true });
    // Not a Fabrics command / not a Connect.
    expect(st(sub.connect(adminSqe(0x06), connectData({ hostid }), link).response.status)).toEqual({ sct: 0, sc: 0x01, dnr: true });
    const notConnect = connectSqe();
    notConnect[4] = 0x04;
    expect(st(sub.connect(notConnect, connectData({ hostid }), link).response.status)).toEqual({ sct: 0, sc: 0x02, dnr: true });
    // A HOSTNQN that is not UTF-8, an empty one: Invalid Parameters at HOSTNQN.
    const bad = connectData({ hostid });
    bad.fill(0xff, 512, 520);
    expect(where(sub.connect(connectSqe(), bad, link).response.dw0)).toEqual({ iattr: 1, ipo: 512 });
    const empty = connectData({ hostid });
    empty.fill(0, 512, 768);
    expect(where(sub.connect(connectSqe(), empty, link).response.dw0)).toEqual({ iattr: 1, ipo: 512 });
    // Garbage of every size.
    for (const n of [0, 1, 63, 65]) expect(() => sub.connect(new Uint8Array(n), new Uint8Array(n), link)).not.toThrow();
    expect(sub.activeControllers.size).toBe(0);
    expect(link.closes).toBe(0);
  });

  it('refuses bad options with NVMQ_INVALID_ARGUMENT', () => {
    expect(() => mkSub({ subnqn: '' })).toThrow(/subnqn/);
    expect(() => mkSub({ subnqn: 'nqn.2014-08.org.nvmexpress.discovery' })).toThrow(/discovery/);
    expect(() => mkSub({ maxQueueSize: 1 })).toThrow(/maxQueueSize/);
    expect(() => mkSub({ inCapsuleDataBytes: 10 })).toThrow(/multiple of 16/);
    expect(() => mkSub({ port: { ...port, trtype: 'rdma' as 'tcp' } })).toThrow(/port/);
  });
});

describe('I/O queue Connect', () => {
  async function admin(sub: Subsystem, hostnqn = HOST_A) {
    const hostid = hostId();
    const r = sub.connect(connectSqe({ kato: 0 }), connectData({ hostid, hostnqn }), new FakeLink());
    return { c: r.controller!, hostid, hostnqn };
  }
  const io = (sub: Subsystem, a: ConnectArgs & { hostid: Uint8Array }, link = new FakeLink()) => sub.connect(connectSqe({ qid: 1, sqsize: 127, ...a }), connectData(a), link);

  it('connects QIDs 1..granted to an enabled controller with the same host NQN and HOSTID', async () => {
    const sub = mkSub();
    const { c, hostid } = await admin(sub);
    await enable(c);
    const r = io(sub, { hostid, cntlid: c.cntlid, qid: 1, cid: 3 });
    expect(r.response.status).toBe(0);
    expect(r.response.dw0).toBe(c.cntlid);
    expect(r.controller).toBe(c);
    expect(r.queue).toEqual({ qid: 1, entries: 128, sqFlowControlDisabled: false });
    expect(Buffer.from(r.cqe).readUInt16LE(10)).toBe(1);
    expect(c.queueEntries(1)).toBe(128);
    expect(io(sub, { hostid, cntlid: c.cntlid, qid: 4, cattr: 0x04 }).queue?.sqFlowControlDisabled).toBe(true);
    expect(c.ioQueueCount).toBe(2);
    sub.close();
  });

  it('an unknown CNTLID: Connect Invalid Parameters at CNTLID (IATTR 1, IPO 16)', async () => {
    const sub = mkSub();
    const { c, hostid } = await admin(sub);
    await enable(c);
    const r = io(sub, { hostid, cntlid: c.cntlid + 100 });
    expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(where(r.response.dw0)).toEqual({ iattr: 1, ipo: 16 });
    sub.close();
  });

  it("another host's NQN or HOSTID: Connect Invalid Parameters at HOSTNQN (IPO 512) / HOSTID (IPO 0)", async () => {
    const sub = mkSub({ allowHosts: [HOST_A, HOST_B] });
    const { c, hostid } = await admin(sub);
    await enable(c);
    const r1 = io(sub, { hostid, cntlid: c.cntlid, hostnqn: HOST_B });
    expect(st(r1.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(where(r1.response.dw0)).toEqual({ iattr: 1, ipo: 512 });
    const r2 = io(sub, { hostid: hostId(), cntlid: c.cntlid });
    expect(where(r2.response.dw0)).toEqual({ iattr: 1, ipo: 0 });
    sub.close();
  });

  it('before CC.EN = 1 and CSTS.RDY = 1: Command Sequence Error', async () => {
    const sub = mkSub();
    const { c, hostid } = await admin(sub);
    const r = io(sub, { hostid, cntlid: c.cntlid });
    expect(st(r.response.status)).toEqual({ sct: 0, sc: 0x0c, dnr: true });
    sub.close();
  });

  it('a QID past the granted Number of Queues: Invalid Queue Identifier with IPO at QID (IATTR 0, IPO 42)', async () => {
    const sub = mkSub();
    const { c, hostid } = await admin(sub);
    await enable(c);
    // Set Features Number of Queues: ask for 2 (0's based 1).
    const nq = await c.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 1 | (1 << 16) }));
    expect(nq.status).toBe(0);
    expect(nq.dw0).toBe(1 | (1 << 16));
    expect(io(sub, { hostid, cntlid: c.cntlid, qid: 2 }).response.status).toBe(0);
    const r = io(sub, { hostid, cntlid: c.cntlid, qid: 3 });
    expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x01, dnr: true });
    expect(where(r.response.dw0)).toEqual({ iattr: 0, ipo: 42 });
    sub.close();
  });

  it('a QID already connected: Command Sequence Error; after removeIoQueue it connects again', async () => {
    const sub = mkSub();
    const { c, hostid } = await admin(sub);
    await enable(c);
    expect(io(sub, { hostid, cntlid: c.cntlid, qid: 1 }).response.status).toBe(0);
    expect(st(io(sub, { hostid, cntlid: c.cntlid, qid: 1 }).response.status)).toEqual({ sct: 0, sc: 0x0c, dnr: true });
    c.removeIoQueue(1);
    expect(io(sub, { hostid, cntlid: c.cntlid, qid: 1 }).response.status).toBe(0);
    sub.close();
  });

  it('SQSIZE 0 or past CAP.MQES: Connect Invalid Parameters at SQSIZE (IATTR 0, IPO 44)', async () => {
    const sub = mkSub({ maxQueueSize: 64 });
    const { c, hostid } = await admin(sub);
    await enable(c);
    for (const sqsize of [0, 64, 1000]) {
      const r = io(sub, { hostid, cntlid: c.cntlid, sqsize });
      expect(st(r.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
      expect(where(r.response.dw0)).toEqual({ iattr: 0, ipo: 44 });
    }
    expect(io(sub, { hostid, cntlid: c.cntlid, sqsize: 63 }).response.status).toBe(0);
    sub.close();
  });

  it('teardown closes every queue link, I/O queues before the admin queue', async () => {
    const sub = mkSub();
    const order: string[] = [];
    const hostid = hostId();
    const c = sub.connect(connectSqe(), connectData({ hostid }), { close: () => order.push('admin') }).controller!;
    await enable(c);
    sub.connect(connectSqe({ qid: 1, sqsize: 15 }), connectData({ hostid, cntlid: c.cntlid }), { close: () => order.push('io1') });
    sub.connect(connectSqe({ qid: 2, sqsize: 15 }), connectData({ hostid, cntlid: c.cntlid }), { close: () => order.push('io2') });
    c.disconnect();
    expect(order).toEqual(['io2', 'io1', 'admin']);
    expect(c.isGone).toBe(true);
    // An I/O Connect naming the gone controller is refused.
    const again = sub.connect(connectSqe({ qid: 1, sqsize: 15 }), connectData({ hostid, cntlid: c.cntlid }), new FakeLink());
    expect(where(again.response.dw0)).toEqual({ iattr: 1, ipo: 16 });
  });
});

describe('connectTo()', () => {
  it('routes by SUBNQN; an unknown one gets Connect Invalid Parameters at SUBNQN', () => {
    const sub = mkSub();
    const disc = new DiscoveryService({ port: { ...port, trsvcid: '8009' } });
    const hostid = hostId();
    const link = new FakeLink();
    const r1 = connectTo([disc, sub], connectSqe(), connectData({ hostid }), link);
    expect(r1.response.status).toBe(0);
    expect(sub.activeControllers.size).toBe(1);
    const r2 = connectTo([disc, sub], connectSqe(), connectData({ hostid, subnqn: 'nqn.2014-08.org.nvmexpress.discovery' }), link);
    expect(r2.response.status).toBe(0);
    expect(disc.activeControllers.size).toBe(1);
    const r3 = connectTo([disc, sub], connectSqe(), connectData({ hostid, subnqn: 'nqn.x:none' }), link);
    expect(st(r3.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(where(r3.response.dw0)).toEqual({ iattr: 1, ipo: 256 });
    expect(st(connectTo([sub], new Uint8Array(3), undefined, link).response.status).sc).toBe(0x02);
    sub.close();
    disc.close();
  });
});
