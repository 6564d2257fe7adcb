/**
 * The discovery service: its controllers' Identify, the Discovery Log Page
 * (NVMe over Fabrics 1.1, offsets written from the spec) read whole and in pieces as hosts read it, and keep alive.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import { openController } from '../../../src/engine/local-device.js';
import type { NvmeDriver } from '../../../src/engine/host/driver.js';
import { DiscoveryService, Subsystem, type DiscoveryController } from '../../../src/engine/target/index.js';
import { CC_ENABLE, FakeLink, HOST_A, HOST_B, adminSqe, connectData, connectSqe, hostId, propertySqe, st } from './helpers.js';

const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';
let driver: NvmeDriver;
beforeAll(async () => {
  driver = await openController({ namespaces: [{ backend: 'memory', size: 4 << 20 }] });
});
afterAll(async () => {
  await driver.close();
});
afterEach(() => vi.useRealTimers());

function setup(kato = 0) {
  const disc = new DiscoveryService({ port: { trtype: 'tcp', traddr: '192.0.2.1', trsvcid: '8009', adrfam: 'ipv4' } });
  const open = new Subsystem({ subnqn: 'nqn.2026-12.io.nvmq:open', driver, allowAnyHost: true, port: { trtype: 'tcp', traddr: '192.0.2.1', trsvcid: '4420', adrfam: 'ipv4', portid: 7 } });
  const onlyB = new Subsystem({ subnqn: 'nqn.2026-12.io.nvmq:only-b', driver, allowHosts: [HOST_B], port: { trtype: 'tcp', traddr: '2001:db8::1', trsvcid: '4421', adrfam: 'ipv6', portid: 2 } });
  disc.add(open);
  disc.add(onlyB);
  const link = new FakeLink();
  const r = disc.connect(connectSqe({ kato }), connectData({ hostid: hostId(), subnqn: DISCOVERY, hostnqn: HOST_A }), link);
  return { disc, open, onlyB, r, c: r.controller!, link };
}

async function enable(c: DiscoveryController): Promise<void> {
  expect((await c.execute(propertySqe(0x00, 0x14, false, BigInt(CC_ENABLE)))).status).toBe(0);
}

/** Get Log Page 70h: NUMDL in CDW10 31:16, LPOL CDW12, LPOU CDW13. */
const logSqe = (bytes: number, offset = 0) => adminSqe(0x02, { cdw10: 0x70 | ((bytes / 4 - 1) << 16), cdw12: offset });

describe('discovery controller', () => {
  it('connects with the well-known NQN and identifies as a discovery controller', async () => {
    const { r, c, disc } = setup();
    expect(r.response.status).toBe(0);
    expect(r.response.dw0).toBe(c.cntlid);
    await enable(c);
    const id = Buffer.from((await c.execute(adminSqe(0x06, { cdw10: 1 }))).data!);
    expect(id.readUInt16LE(78)).toBe(c.cntlid);
    expect(id[111]).toBe(2); // CNTRLTYPE: discovery
    expect(id.subarray(768, 768 + DISCOVERY.length).toString()).toBe(DISCOVERY);
    expect(id[261]! & 0x04).toBe(0x04); // LPA: extended data (LPO)
    expect(id.readUInt32LE(536) & 3).toBe(1); // SGLS
    expect(st((await c.execute(adminSqe(0x06, { cdw10: 0 }))).status).sc).toBe(0x02);
    disc.close();
  });

  it('refuses an I/O queue Connect and a non-dynamic CNTLID', () => {
    const { disc } = setup();
    const io = disc.connect(connectSqe({ qid: 1 }), connectData({ hostid: hostId(), subnqn: DISCOVERY }), new FakeLink());
    expect(st(io.response.status)).toEqual({ sct: 1, sc: 0x82, dnr: true });
    expect(io.response.dw0).toBe(42); // IATTR 0, IPO 42: QID
    const fixed = disc.connect(connectSqe(), connectData({ hostid: hostId(), subnqn: DISCOVERY, cntlid: 3 }), new FakeLink());
    expect(fixed.response.dw0).toBe((1 << 16) | 16);
    disc.close();
  });

  it('Discovery Log Page: header, current discovery entry first, then the subsystems this host may use', async () => {
    const { c, disc } = setup();
    await enable(c);
    const r = await c.execute(logSqe(4096));
    expect(r.status).toBe(0);
    const log = Buffer.from(r.data!);
    expect(log.length).toBe(4096);
    expect(Number(log.readBigUInt64LE(0))).toBe(disc.genctr); // GENCTR
    expect(Number(log.readBigUInt64LE(8))).toBe(2); // NUMREC: only-b is not HOST_A's
    expect(log.readUInt16LE(16)).toBe(0); // RECFMT
    const entry = (i: number) => log.subarray(1024 * (i + 1), 1024 * (i + 2));
    const str = (b: Buffer, from: number, len: number) => b.subarray(from, from + len).toString().replace(/\0+$/, '');
    const cur = entry(0);
    expect(cur[0]).toBe(3); // TRTYPE TCP
    expect(cur[1]).toBe(1); // ADRFAM IPv4
    expect(cur[2]).toBe(3); // SUBTYPE: current discovery subsystem
    expect(cur.readUInt16LE(6)).toBe(0xffff); // CNTLID: dynamic
    expect(cur.readUInt16LE(8)).toBe(32); // ASQSZ
    expect(str(cur, 32, 32)).toBe('8009'); // TRSVCID
    expect(str(cur, 256, 256)).toBe(DISCOVERY);
    expect(str(cur, 512, 256)).toBe('192.0.2.1'); // TRADDR
    const nvm = entry(1);
    expect(nvm[2]).toBe(2); // SUBTYPE: NVM subsystem
    expect(nvm.readUInt16LE(4)).toBe(7); // PORTID
    expect(nvm[3]).toBe(0); // TREQ
    expect(str(nvm, 32, 32)).toBe('4420');
    expect(str(nvm, 256, 256)).toBe('nqn.2026-12.io.nvmq:open');
    expect(nvm[768]).toBe(0); // TSAS SECTYPE: none
    // Past the records: zero.
    expect(log.subarray(3072).every((b) => b === 0)).toBe(true);
    disc.close();
  });

  it('lists subsystems by host: HOST_B sees both, IPv6 addresses as text', async () => {
    const { disc } = setup();
    const c = disc.connect(connectSqe(), connectData({ hostid: hostId(), subnqn: DISCOVERY, hostnqn: HOST_B }), new FakeLink()).controller!;
    await enable(c);
    const log = Buffer.from((await c.execute(logSqe(4096))).data!);
    expect(Number(log.readBigUInt64LE(8))).toBe(3);
    const third = log.subarray(3072, 4096);
    expect(third[1]).toBe(2); // ADRFAM IPv6
    expect(third.subarray(512, 523).toString()).toBe('2001:db8::1');
    disc.close();
  });

  it('read in pieces as hosts do: header, entries from offset 1024, header again with the same GENCTR', async () => {
    const { c, disc, onlyB } = setup();
    await enable(c);
    const head = Buffer.from((await c.execute(logSqe(1024))).data!);
    const numrec = Number(head.readBigUInt64LE(8));
    const genctr = head.readBigUInt64LE(0);
    const entries = Buffer.from((await c.execute(logSqe(numrec * 1024, 1024))).data!);
    const whole = Buffer.from((await c.execute(logSqe(1024 + numrec * 1024))).data!);
    expect(entries).toEqual(whole.subarray(1024));
    expect(Buffer.from((await c.execute(logSqe(1024))).data!).readBigUInt64LE(0)).toBe(genctr);
    // A change in the list changes GENCTR.
    disc.remove(onlyB);
    expect(Buffer.from((await c.execute(logSqe(1024))).data!).readBigUInt64LE(0)).not.toBe(genctr);
    // Small pieces at dword offsets.
    const piece = Buffer.from((await c.execute(logSqe(8, 1024 + 256))).data!);
    expect(piece).toEqual(whole.subarray(1024 + 256, 1024 + 264));
    disc.close();
  });

  it('an unaligned offset or one past the log: Invalid Field; another log page: Invalid Log Page', async () => {
    const { c, disc } = setup();
    await enable(c);
    expect(st((await c.execute(logSqe(16, 2))).status)).toEqual({ sct: 0, sc: 0x02, dnr: true });
    expect(st((await c.execute(logSqe(16, 1 << 20))).status).sc).toBe(0x02);
    expect(st((await c.execute(adminSqe(0x02, { cdw10: 0x02 | (127 << 16) }))).status)).toEqual({ sct: 1, sc: 0x09, dnr: true });
    expect(st((await c.execute(adminSqe(0x09, { cdw10: 0x07, cdw11: 0 }))).status).sc).toBe(0x01);
    disc.close();
  });

  it('KATO 0 on a discovery controller: a 120 s timer still reaps the association', async () => {
    vi.useFakeTimers();
    const { c, link, disc } = setup(0);
    expect(c.keepAliveTimeoutMs).toBe(120_000);
    vi.advanceTimersByTime(119_000);
    expect(c.isGone).toBe(false);
    vi.advanceTimersByTime(3_000);
    expect(c.isGone).toBe(true);
    expect(link.closed).toMatch(/keep alive/);
    expect(disc.activeControllers.size).toBe(0);
  });

  it('Keep Alive and AERs work on a discovery controller', async () => {
    vi.useFakeTimers();
    const { c, disc } = setup(2000);
    await enable(c);
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(1500);
      expect((await c.execute(adminSqe(0x18))).status).toBe(0);
    }
    expect(c.isGone).toBe(false);
    const aer = c.execute(adminSqe(0x0c));
    disc.close();
    expect(st((await aer).status).sc).toBe(0x08);
  });
});
