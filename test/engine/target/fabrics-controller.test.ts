/**
 * FabricsController over a real local controller: properties and the CC.EN /
 * CSTS.RDY / shutdown transitions, Identify Controller patched for the
 * fabric (byte offsets from NVMe 1.4 Figure 247), the Namespace
 * Identification Descriptor list, Number of Queues, features, AERs, log
 * pages, refused commands, and the keep-alive timer.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import { openController } from '../../../src/engine/local-device.js';
import type { NvmeDriver } from '../../../src/engine/host/driver.js';
import { Subsystem, type FabricsController } from '../../../src/engine/target/index.js';
import { CC_ENABLE, FakeLink, HOST_A, SUBNQN, adminSqe, connectData, connectSqe, fabricsSqe, hostId, propertySqe, st } from './helpers.js';

let driver: NvmeDriver;
beforeAll(async () => {
  driver = await openController({ namespaces: [{ backend: 'memory', size: 8 << 20 }, { backend: 'memory', size: 4 << 20 }] });
});
afterAll(async () => {
  await driver.close();
});
afterEach(() => {
  vi.useRealTimers();
});

const port = { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: '4420', adrfam: 'ipv4' } as const;
let sub: Subsystem;
function setup(kato = 0, opts: Partial<ConstructorParameters<typeof Subsystem>[0]> = {}) {
  sub = new Subsystem({ subnqn: SUBNQN, driver, port, maxIoQueues: 4, maxQueueSize: 256, inCapsuleDataBytes: 8192, keepAliveGraceMs: 100, allowAnyHost: true, ...opts });
  const link = new FakeLink();
  const hostid = hostId();
  const r = sub.connect(connectSqe({ kato }), connectData({ hostid }), link);
  return { c: r.controller!, link, hostid };
}
afterEach(() => sub?.close());

const get = (c: FabricsController, ofst: number, size8 = false) => c.execute(propertySqe(0x04, ofst, size8));
const set = (c: FabricsController, ofst: number, value: number, size8 = false) => c.execute(propertySqe(0x00, ofst, size8, BigInt(value)));

describe('properties (NVMe over Fabrics 1.1)', () => {
  it('CAP: MQES from maxQueueSize, CQR 1, TO, DSTRD 0, CSS NVM, MPSMIN 0, read as 8 bytes', async () => {
    const { c } = setup();
    const r = await get(c, 0x00, true);
    expect(r.status).toBe(0);
    const cap = BigInt(r.dw0) | (BigInt(r.dw1) << 32n);
    expect(Number(cap & 0xffffn)).toBe(255); // MQES 15:0, 0's based
    expect(Number((cap >> 16n) & 1n)).toBe(1); // CQR
    expect(Number((cap >> 24n) & 0xffn)).toBeGreaterThan(0); // TO
    expect(Number((cap >> 32n) & 0xfn)).toBe(0); // DSTRD
    expect(Number((cap >> 37n) & 0xffn)).toBe(1); // CSS bit 0: NVM
    expect(Number((cap >> 48n) & 0xfn)).toBe(0); // MPSMIN
  });

  it('VS is 1.3; CAP as 4 bytes, NSSR, reserved offsets and a bad ATTRIB: Invalid Field', async () => {
    const { c } = setup();
    expect((await get(c, 0x08)).dw0).toBe(0x00010300);
    for (const r of [await get(c, 0x00), await get(c, 0x20), await get(c, 0x18), await get(c, 0x24), await get(c, 0x08, true)]) {
      expect(st(r.status)).toEqual({ sct: 0, sc: 0x02, dnr: true });
    }
    const badAttrib = propertySqe(0x04, 0x08, false);
    badAttrib[40] = 0x02;
    expect(st((await c.execute(badAttrib)).status).sc).toBe(0x02);
  });

  it('only CC is writable: CAP, VS, CSTS, NSSR and 8-byte writes are Invalid Field', async () => {
    const { c } = setup();
    for (const r of [await set(c, 0x00, 1, true), await set(c, 0x08, 1), await set(c, 0x1c, 1), await set(c, 0x20, 0x4e564d65), await set(c, 0x14, CC_ENABLE, true)]) {
      expect(st(r.status)).toEqual({ sct: 0, sc: 0x02, dnr: true });
    }
    expect(c.enabled).toBe(false);
  });

  it('CC.EN 0 -> 1 sets CSTS.RDY; CC reads back; CC.EN 1 -> 0 clears RDY and closes I/O queues', async () => {
    const { c, hostid } = setup();
    expect((await get(c, 0x1c)).dw0).toBe(0);
    expect((await set(c, 0x14, CC_ENABLE)).status).toBe(0);
    expect((await get(c, 0x14)).dw0).toBe(CC_ENABLE);
    expect((await get(c, 0x1c)).dw0 & 1).toBe(1);
    expect(c.enabled).toBe(true);
    const ioLink = new FakeLink();
    expect(sub.connect(connectSqe({ qid: 1, sqsize: 31 }), connectData({ hostid, cntlid: c.cntlid }), ioLink).response.status).toBe(0);
    await set(c, 0x14, CC_ENABLE & ~1);
    expect((await get(c, 0x1c)).dw0 & 1).toBe(0);
    expect(c.enabled).toBe(false);
    expect(ioLink.closed).toMatch(/reset/);
    expect(c.ioQueueCount).toBe(0);
  });

  it('CC.EN with entry sizes or a page size CAP does not offer: CSTS.CFS, not ready', async () => {
    const { c } = setup();
    await set(c, 0x14, 1 | (7 << 16) | (4 << 20));
    const csts = (await get(c, 0x1c)).dw0;
    expect(csts & 1).toBe(0);
    expect((csts >> 1) & 1).toBe(1);
    expect(c.enabled).toBe(false);
  });

  it('CC.SHN normal shutdown: CSTS.SHST complete (bits 3:2 = 10b); clearing SHN clears it', async () => {
    const { c } = setup();
    await set(c, 0x14, CC_ENABLE);
    await set(c, 0x14, CC_ENABLE | (1 << 14));
    expect(((await get(c, 0x1c)).dw0 >> 2) & 3).toBe(2);
    await set(c, 0x14, CC_ENABLE);
    expect(((await get(c, 0x1c)).dw0 >> 2) & 3).toBe(0);
  });

  it('admin commands before the controller is ready: Command Sequence Error', async () => {
    const { c } = setup();
    expect(st((await c.execute(adminSqe(0x06, { cdw10: 1 }))).status)).toEqual({ sct: 0, sc: 0x0c, dnr: true });
    expect(st((await c.execute(adminSqe(0x18))).status).sc).toBe(0x0c);
  });
});

async function ready(kato = 0) {
  const s = setup(kato);
  await set(s.c, 0x14, CC_ENABLE);
  return s;
}

describe('Identify', () => {
  it('Identify Controller: the local one, with the fabric fields at their byte offsets', async () => {
    const { c } = await ready();
    const r = await c.execute(adminSqe(0x06, { cdw10: 1 }));
    expect(r.status).toBe(0);
    const id = Buffer.from(r.data!);
    expect(id.length).toBe(4096);
    expect(id.readUInt16LE(78)).toBe(c.cntlid); // CNTLID 79:78
    expect(id.readUInt32LE(80)).toBe(0x00010300); // VER
    expect(id[111]).toBe(1); // CNTRLTYPE: I/O controller
    expect(id[76]).toBe(1 << 1); // CMIC: multiple controllers, no ANA
    expect(id.readUInt16LE(256)).toBe(0); // OACS: no format, firmware, namespace management...
    expect(id[259]).toBe(3); // AERL
    expect(id[261] & 0b1010).toBe(0); // LPA: no Commands Supported and Effects, no telemetry
    expect(id.readUInt16LE(320)).toBeGreaterThan(0); // KAS (Linux: "keep-alive support is mandatory for fabrics")
    expect(id.readUInt16LE(514)).toBe(256); // MAXCMD
    expect(id.readUInt16LE(520) & ((1 << 5) | (1 << 6) | (1 << 4))).toBe(0); // ONCS: no reservations, timestamp, save/select
    const sgls = id.readUInt32LE(536);
    expect(sgls & 3).toBe(1); // SGLs supported
    expect((sgls >> 20) & 1).toBe(1); // Offset (in-capsule data)
    expect((sgls >> 21) & 1).toBe(1); // Transport SGL Data Block
    expect(id.subarray(768, 768 + SUBNQN.length).toString()).toBe(SUBNQN);
    expect(id[768 + SUBNQN.length]).toBe(0);
    expect(id.readUInt32LE(1792)).toBe((64 + 8192) / 16); // IOCCSZ
    expect(id.readUInt32LE(1796)).toBe(1); // IORCSZ
    expect(id.readUInt16LE(1800)).toBe(0); // ICDOFF: NVMe/TCP requires 0
    expect(id[1802]).toBe(0); // FCATT: dynamic model
    expect(id[1803]).toBe(1); // MSDBD
    expect(id.readUInt16LE(1804) & 1).toBe(1); // OFCS: Disconnect
    // What the local controller says about itself stays: serial, model, namespace count.
    expect(id.readUInt32LE(516)).toBe(driver.controller.nn);
    expect(id.subarray(4, 24).toString().trim()).toBe(driver.controller.serial);
    expect(id.subarray(24, 64).toString().trim()).toBe(driver.controller.model);
  });

  it('Identify Namespace is forwarded and marked shared; the active list is forwarded', async () => {
    const { c } = await ready();
    const ns = await c.execute(adminSqe(0x06, { nsid: 1, cdw10: 0 }));
    expect(ns.status).toBe(0);
    const idns = Buffer.from(ns.data!);
    expect(Number(idns.readBigUInt64LE(0))).toBe(driver.namespaces.get(1)!.blocks); // NSZE
    expect(driver.namespaces.get(1)!.blocks * driver.namespaces.get(1)!.lbaSize).toBe(8 << 20);
    expect(idns[30] & 1).toBe(1); // NMIC: shared
    const list = await c.execute(adminSqe(0x06, { nsid: 0, cdw10: 2 }));
    const ids = Buffer.from(list.data!);
    expect([ids.readUInt32LE(0), ids.readUInt32LE(4), ids.readUInt32LE(8)]).toEqual([1, 2, 0]);
  });

  it('Namespace Identification Descriptors (CNS 03h): EUI64, NGUID matching Identify Namespace, and CSI', async () => {
    const { c } = await ready();
    const idns = Buffer.from((await c.execute(adminSqe(0x06, { nsid: 2, cdw10: 0 }))).data!);
    const r = await c.execute(adminSqe(0x06, { nsid: 2, cdw10: 3 }));
    expect(r.status).toBe(0);
    const d = Buffer.from(r.data!);
    const seen = new Map<number, Buffer>();
    for (let at = 0; at < 4096 && d[at + 1] !== 0; at += 4 + d[at + 1]!) seen.set(d[at]!, d.subarray(at + 4, at + 4 + d[at + 1]!));
    expect(seen.get(1)).toEqual(idns.subarray(120, 128)); // EUI64
    expect(seen.get(2)).toEqual(idns.subarray(104, 120)); // NGUID
    expect(seen.get(4)).toEqual(Buffer.from([0])); // CSI: NVM
  });

  it('other CNS values: Invalid Field', async () => {
    const { c } = await ready();
    for (const cns of [0x10, 0x12, 0x13, 0x06]) expect(st((await c.execute(adminSqe(0x06, { cdw10: cns }))).status).sc).toBe(0x02);
  });
});

describe('features, logs, refused commands', () => {
  it('Number of Queues: grants min(requested, maxIoQueues), per controller; 65535 is invalid; Get reads the grant', async () => {
    const { c } = await ready();
    const big = await c.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 63 | (63 << 16) }));
    expect(big.dw0).toBe(3 | (3 << 16));
    expect((await c.execute(adminSqe(0x0a, { cdw10: 0x07 }))).dw0).toBe(3 | (3 << 16));
    const small = await c.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 0 | (5 << 16) }));
    expect(small.dw0).toBe(0);
    expect(c.ioQueueLimit).toBe(1);
    expect(st((await c.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 0xffff }))).status).sc).toBe(0x02);
  });

  it('Keep Alive Timer and Async Event Configuration are per controller; Host Identifier reads the HOSTID', async () => {
    const { c, hostid } = await ready(15000);
    expect((await c.execute(adminSqe(0x0a, { cdw10: 0x0f }))).dw0).toBe(15000);
    expect((await c.execute(adminSqe(0x09, { cdw10: 0x0f, cdw11: 20000 }))).status).toBe(0);
    expect(c.keepAliveTimeoutMs).toBe(20000);
    expect((await c.execute(adminSqe(0x09, { cdw10: 0x0b, cdw11: 0x1ff }))).status).toBe(0);
    expect((await c.execute(adminSqe(0x0a, { cdw10: 0x0b }))).dw0).toBe(0x1ff);
    const hid = await c.execute(adminSqe(0x0a, { cdw10: 0x81, cdw11: 1 }));
    expect(Buffer.from(hid.data!)).toEqual(Buffer.from(hostid));
    expect(st((await c.execute(adminSqe(0x0a, { cdw10: 0x81, cdw11: 0 }))).status).sc).toBe(0x02);
    expect(st((await c.execute(adminSqe(0x09, { cdw10: 0x81, cdw11: 1 }))).status).sc).toBe(0x0c);
    // Saving: Feature Identifier Not Saveable (SCT 1, SC 0Dh).
    expect(st((await c.execute(adminSqe(0x09, { cdw10: (0x0f | (1 << 31)) >>> 0, cdw11: 1000 }))).status)).toEqual({ sct: 1, sc: 0x0d, dnr: true });
  });

  it('device-wide features: Get is forwarded, Set is Feature Not Changeable', async () => {
    const { c } = await ready();
    const vwc = await c.execute(adminSqe(0x0a, { cdw10: 0x06 }));
    expect(vwc.status).toBe(0);
    expect(st((await c.execute(adminSqe(0x09, { cdw10: 0x06, cdw11: 0 }))).status)).toEqual({ sct: 1, sc: 0x0e, dnr: true });
    expect(st((await c.execute(adminSqe(0x09, { cdw10: 0x08 }))).status).sc).toBe(0x0e);
    expect(st((await c.execute(adminSqe(0x0a, { cdw10: 0x09 }))).status).sc).toBe(0x02);
  });

  it('Get Log Page: SMART and Error Information forwarded with the asked length; Changed Namespaces empty; others Invalid Log Page', async () => {
    const { c } = await ready();
    const smart = await c.execute(adminSqe(0x02, { nsid: 0xffffffff, cdw10: 0x02 | (127 << 16) }));
    expect(smart.status).toBe(0);
    expect(smart.data!.length).toBe(512);
    const err = await c.execute(adminSqe(0x02, { cdw10: 0x01 | (15 << 16) }));
    expect(err.status).toBe(0);
    expect(err.data!.length).toBe(64);
    const changed = await c.execute(adminSqe(0x02, { cdw10: 0x04 | (1023 << 16) }));
    expect(changed.data!.every((b) => b === 0)).toBe(true);
    for (const lid of [0x05, 0x70, 0xc0]) expect(st((await c.execute(adminSqe(0x02, { cdw10: lid | (3 << 16) }))).status)).toEqual({ sct: 1, sc: 0x09, dnr: true });
  });

  it('queue commands a fabric has no use for, and device-changing ones: Invalid Command Opcode', async () => {
    const { c } = await ready();
    for (const opc of [0x00, 0x01, 0x04, 0x05, 0x7c, 0x80, 0x84, 0x0d, 0x15, 0x10, 0x11, 0x81, 0x82, 0x19, 0x1a, 0x14, 0xc0]) {
      expect(st((await c.execute(adminSqe(opc))).status), `opcode 0x${opc.toString(16)}`).toEqual({ sct: 0, sc: 0x01, dnr: true });
    }
  });

  it('Abort completes with DW0 bit 0 set (not aborted)', async () => {
    const { c } = await ready();
    const r = await c.execute(adminSqe(0x08, { cdw10: 1 | (5 << 16) }));
    expect(r.status).toBe(0);
    expect(r.dw0 & 1).toBe(1);
  });

  it('Fabrics commands: Connect again is out of sequence, Disconnect on the admin queue is Invalid Queue Type, authentication unknown', async () => {
    const { c } = await ready();
    expect(st((await c.execute(fabricsSqe(0x01))).status)).toEqual({ sct: 0, sc: 0x0c, dnr: true });
    expect(st((await c.execute(fabricsSqe(0x08))).status)).toEqual({ sct: 1, sc: 0x85, dnr: true });
    expect(st((await c.execute(fabricsSqe(0x05))).status).sc).toBe(0x01);
    expect(st((await c.execute(fabricsSqe(0x02))).status).sc).toBe(0x01);
    // On an I/O queue, property commands are not valid; Disconnect forgets the queue.
    expect(st(c.fabricsCommand(propertySqe(0x04, 0x08, false), 1).status).sc).toBe(0x01);
  });

  it('Disconnect on an I/O queue forgets it', async () => {
    const { c, hostid } = await ready();
    sub.connect(connectSqe({ qid: 1, sqsize: 15 }), connectData({ hostid, cntlid: c.cntlid }), new FakeLink());
    expect(c.ioQueueCount).toBe(1);
    expect(c.fabricsCommand(fabricsSqe(0x08), 1).status).toBe(0);
    expect(c.ioQueueCount).toBe(0);
  });

  it('malformed admin capsules get a status, never an exception', async () => {
    const { c } = await ready();
    for (const n of [0, 16, 63, 65]) expect(st((await c.execute(new Uint8Array(n))).status).sc).toBe(0x02);
  });
});

describe('Asynchronous Event Requests', () => {
  it('are held, at most AERL + 1, and complete with Aborted SQ Deletion at teardown', async () => {
    const { c, link } = await ready();
    const held = [0, 1, 2, 3].map(() => c.execute(adminSqe(0x0c)));
    await Promise.resolve();
    expect(c.outstandingAsyncEvents).toBe(4);
    expect(st((await c.execute(adminSqe(0x0c))).status)).toEqual({ sct: 1, sc: 0x05, dnr: true });
    c.postAsyncEvent(2, 0, 4);
    const first = await held[0]!;
    expect(first.status).toBe(0);
    expect(first.dw0).toBe(2 | (0 << 8) | (4 << 16));
    c.teardown('test');
    for (const r of await Promise.all(held.slice(1))) expect(st(r.status)).toEqual({ sct: 0, sc: 0x08, dnr: true });
    expect(link.closed).toBe('test');
    expect(st((await c.execute(adminSqe(0x18))).status).sc).toBe(0x08);
  });

  it('an event with no request outstanding is reported by the next one', async () => {
    const { c } = await ready();
    c.postAsyncEvent(1, 2, 2);
    expect((await c.execute(adminSqe(0x0c))).dw0).toBe(1 | (2 << 8) | (2 << 16));
  });
});

describe('keep alive', () => {
  it('a host silent for KATO plus the grace loses its controller: links closed, CNTLID free', async () => {
    vi.useFakeTimers();
    const { c, link } = await ready(1000);
    vi.advanceTimersByTime(1050);
    expect(c.isGone).toBe(false);
    vi.advanceTimersByTime(60);
    expect(c.isGone).toBe(true);
    expect(link.closed).toMatch(/keep alive/);
    expect(sub.controller(c.cntlid)).toBeUndefined();
  });

  it('Keep Alive commands restart the timer', async () => {
    vi.useFakeTimers();
    const { c, link } = await ready(1000);
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(800);
      expect((await c.execute(adminSqe(0x18))).status).toBe(0);
    }
    expect(c.isGone).toBe(false);
    expect(link.closes).toBe(0);
    vi.advanceTimersByTime(1200);
    expect(c.isGone).toBe(true);
  });

  it("any admin command restarts it too (the host's bring-up precedes its first Keep Alive)", async () => {
    vi.useFakeTimers();
    const { c } = await ready(1000);
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(900);
      expect((await c.execute(propertySqe(0x04, 0x1c, false))).status).toBe(0);
    }
    expect(c.isGone).toBe(false);
  });

  it('KATO 0 means no timer on an I/O controller', async () => {
    vi.useFakeTimers();
    const { c } = await ready(0);
    vi.advanceTimersByTime(10 * 60_000);
    expect(c.isGone).toBe(false);
  });

  it('with real timers too', async () => {
    const { c, link } = await ready(30);
    await new Promise((r) => setTimeout(r, 250));
    expect(c.isGone).toBe(true);
    expect(link.closes).toBe(1);
  });
});

// The host NQN is what the I/O path labels metrics with.
it('exposes the host NQN', async () => {
  const { c } = await ready();
  expect(c.hostnqn).toBe(HOST_A);
});
