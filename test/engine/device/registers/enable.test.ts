/**
 * Controller registers: CAP and VS, enabling the controller (CC.EN 0 -> 1)
 * and the ready delay against CAP.TO (NVMe 1.4, 3.1.1, 3.1.2, 3.1.5, 7.6.1).
 * Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { tick, waitFor } from '../../../helpers/harness.js';
import type { DmaArena } from '../../../../src/engine/dma-arena.js';
import { NvmeDriver } from '../../../../src/engine/host/driver.js';
import { CAP, VS, CC, AQA, ASQ, ACQ, sqTailDb, type CcFields, ccValue, RDY, CFS, shst, OPC_IDENTIFY, rawController, up, programAdminQueues, csts, attachOutcome, TamperingTransport } from './helpers.js';

describe('CAP and VS', () => {
  it('CAP reports the defaults: MQES 4095, CQR, no optional arbitration, TO 10, DSTRD 0, NSSRS, NVM command set, MPSMIN 0, MPSMAX 4', () => {
    const { transport: t } = rawController();
    const lo = t.read32(CAP);
    const hi = t.read32(CAP + 4);
    expect(lo & 0xffff).toBe(4095); // MQES
    expect((lo >>> 16) & 1).toBe(1); // CQR
    expect((lo >>> 17) & 0x3).toBe(0); // AMS
    expect((lo >>> 24) & 0xff).toBe(10); // TO
    expect(hi & 0xf).toBe(0); // DSTRD (bits 35:32)
    expect((hi >>> 4) & 1).toBe(1); // NSSRS (bit 36)
    expect((hi >>> 5) & 0xff).toBe(0x01); // CSS (bits 44:37): NVM command set only
    expect((hi >>> 16) & 0xf).toBe(0); // MPSMIN (bits 51:48)
    expect((hi >>> 20) & 0xf).toBe(4); // MPSMAX (bits 55:52)
    expect(lo >>> 0).toBe(0x0a010fff);
    expect(hi >>> 0).toBe(0x00400030);
    expect(t.read64(CAP)).toBe(0x00400030 * 0x1_0000_0000 + 0x0a010fff);
  });

  it('CAP follows the controller options (mqes, timeout, dstrd)', () => {
    const { transport: t } = rawController({ controller: { mqes: 63, timeout: 1, dstrd: 2 } });
    const lo = t.read32(CAP);
    const hi = t.read32(CAP + 4);
    expect(lo & 0xffff).toBe(63);
    expect((lo >>> 24) & 0xff).toBe(1);
    expect(hi & 0xf).toBe(2);
  });

  it('VS reports NVMe 1.4.0', () => {
    const { transport: t } = rawController();
    expect(t.read32(VS)).toBe(0x00010400);
  });

  it('CAP and VS are read-only', () => {
    const { transport: t } = rawController();
    const cap = t.read64(CAP);
    t.write32(CAP, 0);
    t.write32(CAP + 4, 0);
    t.write64(CAP, 0);
    t.write32(VS, 0x00020000);
    expect(t.read64(CAP)).toBe(cap);
    expect(t.read32(VS)).toBe(0x00010400);
  });

  it('a fresh controller is disabled: CC 0, CSTS 0', () => {
    const { transport: t } = rawController();
    expect(t.read32(CC)).toBe(0);
    expect(csts(t)).toBe(0);
  });
});

// ------------------------------------------------------------------ CC.EN 0 -> 1

describe('enabling (CC.EN 0 -> 1)', () => {
  it('a valid configuration sets CSTS.RDY and the admin queues run from ASQ / ACQ', () => {
    const { arena, transport: t } = rawController();
    const { asq, acq } = programAdminQueues(t, arena, 8);
    t.write32(CC, ccValue());
    expect(t.read32(CC)).toBe(ccValue());
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
    expect(shst(csts(t))).toBe(0);

    // An Identify Controller placed by hand in ASQ slot 0 completes in ACQ slot 0.
    const data = arena.alloc(4096);
    const dv = arena.view;
    dv.setUint32(asq.offset, (OPC_IDENTIFY | (0x1234 << 16)) >>> 0, true);
    dv.setUint32(asq.offset + 24, data.iova % 0x1_0000_0000, true);
    dv.setUint32(asq.offset + 28, Math.floor(data.iova / 0x1_0000_0000), true);
    dv.setUint32(asq.offset + 40, 0x01, true); // CNS 01h
    t.write32(sqTailDb(0), 1);
    const status = dv.getUint16(acq.offset + 14, true);
    expect(status & 1).toBe(1); // phase tag of the first pass
    expect(status >>> 1).toBe(0);
    expect(dv.getUint16(acq.offset + 12, true)).toBe(0x1234); // CID
    expect(dv.getUint16(acq.offset + 10, true)).toBe(0); // SQID
    expect(dv.getUint16(acq.offset + 8, true)).toBe(1); // SQHD
    expect(dv.getUint16(data.offset, true)).toBe(0x1b36); // Identify Controller VID landed in host memory
  });

  it('IOSQES / IOCQES may be left 0 at enable (they are only needed before I/O queues are created)', () => {
    const { arena, transport: t } = rawController();
    programAdminQueues(t, arena);
    t.write32(CC, ccValue({ iosqes: 0, iocqes: 0 }));
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
  });

  interface BadConfig {
    name: string;
    mqes?: number;
    cc?: Partial<CcFields>;
    aqa?: (value: number) => number;
    asq?: (iova: number, arena: DmaArena) => number;
    acq?: (iova: number, arena: DmaArena) => number;
  }
  const badConfigs: BadConfig[] = [
    { name: 'CC.MPS above CAP.MPSMAX', cc: { mps: 5 } },
    { name: 'CC.MPS 15', cc: { mps: 15 } },
    { name: 'CC.CSS 001b (reserved)', cc: { css: 1 } },
    { name: 'CC.CSS 111b (admin only) without CAP.CSS bit 7', cc: { css: 7 } },
    { name: 'CC.AMS weighted round robin without CAP.AMS support', cc: { ams: 1 } },
    { name: 'CC.AMS vendor specific without CAP.AMS support', cc: { ams: 7 } },
    { name: 'CC.IOSQES 7 (not 64-byte entries)', cc: { iosqes: 7 } },
    { name: 'CC.IOSQES 5', cc: { iosqes: 5 } },
    { name: 'CC.IOCQES 5 (not 16-byte entries)', cc: { iocqes: 5 } },
    { name: 'CC.IOCQES 6', cc: { iocqes: 6 } },
    { name: 'AQA.ASQS 0 (one-entry admin SQ)', aqa: (v) => (v & ~0xfff) >>> 0 },
    { name: 'AQA.ACQS 0 (one-entry admin CQ)', aqa: (v) => (v & ~(0xfff << 16)) >>> 0 },
    { name: 'AQA.ASQS above CAP.MQES', mqes: 63, aqa: (v) => ((v & ~0xfff) | 64) >>> 0 },
    { name: 'AQA.ACQS above CAP.MQES', mqes: 63, aqa: (v) => ((v & ~(0xfff << 16)) | (64 << 16)) >>> 0 },
    { name: 'ASQ zero', asq: () => 0 },
    { name: 'ASQ not page aligned', asq: (v) => v + 64 },
    { name: 'ASQ past the end of host memory', asq: (_v, a) => a.base + a.size },
    { name: 'ASQ below host memory', asq: (_v, a) => a.base - 4096 },
    { name: 'ACQ zero', acq: () => 0 },
    { name: 'ACQ not page aligned', acq: (v) => v + 0x200 },
    { name: 'ACQ past the end of host memory', acq: (_v, a) => a.base + a.size },
    { name: 'ACQ below host memory', acq: (_v, a) => a.base - 4096 },
  ];

  for (const bad of badConfigs) {
    it(`${bad.name}: CSTS.CFS, never CSTS.RDY (registers)`, async () => {
      const { arena, transport: t } = rawController({ controller: bad.mqes !== undefined ? { mqes: bad.mqes } : {} });
      const entries = 8;
      const asq = arena.alloc(entries * 64);
      const acq = arena.alloc(entries * 16);
      const aqa = (((entries - 1) << 16) | (entries - 1)) >>> 0;
      t.write32(AQA, bad.aqa ? bad.aqa(aqa) : aqa);
      t.write64(ASQ, bad.asq ? bad.asq(asq.iova, arena) : asq.iova);
      t.write64(ACQ, bad.acq ? bad.acq(acq.iova, arena) : acq.iova);
      t.write32(CC, ccValue(bad.cc));
      expect(csts(t) & CFS).toBe(CFS);
      expect(csts(t) & RDY).toBe(0);
      await tick(20);
      expect(csts(t) & RDY).toBe(0);
    });

    it(`${bad.name}: the driver's attach rejects with NVMQ_CONTROLLER_FATAL`, async () => {
      const { arena, controller, transport } = rawController({ controller: bad.mqes !== undefined ? { mqes: bad.mqes } : {} });
      const tampered = new TamperingTransport(
        transport,
        (offset, value) => {
          if (offset === CC && value & 1 && bad.cc) return ccValue(bad.cc);
          if (offset === AQA && bad.aqa) return bad.aqa(value);
          return value;
        },
        (offset, value) => {
          if (offset === ASQ && bad.asq) return bad.asq(value, arena);
          if (offset === ACQ && bad.acq) return bad.acq(value, arena);
          return value;
        },
      );
      expect(await attachOutcome(tampered)).toBe('NVMQ_CONTROLLER_FATAL');
      expect(csts(transport) & (RDY | CFS)).toBe(CFS);
      expect(controller.state).not.toBe('ready');
    });
  }

  it('after a fatal enable, CC.EN = 0 clears CSTS.CFS and a valid configuration then comes up', () => {
    const { arena, transport: t } = rawController();
    programAdminQueues(t, arena);
    t.write32(CC, ccValue({ mps: 5 }));
    expect(csts(t) & (RDY | CFS)).toBe(CFS);
    t.write32(CC, 0);
    expect(csts(t) & (RDY | CFS)).toBe(0);
    t.write32(CC, ccValue());
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
  });

  it('the driver also recovers a controller left in the fatal state', async () => {
    const { arena, controller, transport: t } = rawController();
    programAdminQueues(t, arena);
    t.write32(CC, ccValue({ css: 1 }));
    expect(csts(t) & CFS).toBe(CFS);
    const driver = await NvmeDriver.attach(t);
    expect(csts(t) & (RDY | CFS)).toBe(RDY);
    expect(driver.controller.vid).toBe(0x1b36);
    expect(controller.state).toBe('ready');
  });
});

// ------------------------------------------------------------------ CAP.TO and a slow controller

describe('ready delay and CAP.TO', () => {
  it('with readyDelayMs, CSTS.RDY follows CC.EN only after the delay (registers)', async () => {
    const { arena, transport: t } = rawController({ controller: { readyDelayMs: 100 } });
    programAdminQueues(t, arena);
    const start = performance.now();
    t.write32(CC, ccValue());
    expect(csts(t) & (RDY | CFS)).toBe(0);
    await tick(30);
    expect(csts(t) & RDY).toBe(0);
    await waitFor(() => (csts(t) & RDY) !== 0, 'CSTS.RDY');
    expect(performance.now() - start).toBeGreaterThanOrEqual(90);
  });

  it('the driver waits for CSTS.RDY before its first admin command', async () => {
    const start = performance.now();
    const h = await up({ controller: { readyDelayMs: 150 } });
    expect(performance.now() - start).toBeGreaterThanOrEqual(140);
    expect(csts(h.transport) & RDY).toBe(RDY);
    expect(h.driver.controller.vid).toBe(0x1b36);
    expect(h.driver.namespaces.size).toBe(1);
  });

  it('a controller that never becomes ready within CAP.TO (1 = 500 ms): attach rejects with NVMQ_TIMEOUT', async () => {
    const { transport } = rawController({ controller: { timeout: 1, readyDelayMs: 60_000 } });
    const start = performance.now();
    expect(await attachOutcome(transport)).toBe('NVMQ_TIMEOUT');
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(490);
    expect(elapsed).toBeLessThan(5000);
    expect(csts(transport) & RDY).toBe(0);
  });
});
