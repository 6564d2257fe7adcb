/**
 * Admin command set conformance: Get / Set Features (NVMe 1.4, 5.9, 5.21).
 * Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { tick } from '../../../helpers/harness.js';
import { OPC, FID, LID, CRITICAL_WARNING_TEMPERATURE, st, SUCCESS, INVALID_FIELD, COMMAND_SEQUENCE_ERROR, INVALID_QUEUE_IDENTIFIER, FEATURE_NOT_SAVEABLE, up, admin, u16, createCq, createSq, getFeature, setFeature, getLogPage, tempDw, track } from './helpers.js';

describe('Get / Set Features', () => {
  describe('Number of Queues (07h)', () => {
    it('defaults to the controller maximum; the grant is capped and reported in DW0 (0\'s based)', async () => {
      const h = await up({ controller: { maxIoQueues: 4 } });
      const def = await getFeature(h, FID.NUM_QUEUES);
      expect(st(def)).toEqual(SUCCESS);
      expect(def.dw0).toBe(0x00030003);

      const set = await setFeature(h, FID.NUM_QUEUES, (9 << 16) | 1); // NCQR 10, NSQR 2
      expect(st(set)).toEqual(SUCCESS);
      expect(set.dw0).toBe(0x00030001); // NCQA 4 (capped), NSQA 2
      expect((await getFeature(h, FID.NUM_QUEUES)).dw0).toBe(0x00030001);
      expect((await getFeature(h, FID.NUM_QUEUES, 1)).dw0).toBe(0x00030003); // default unchanged

      // The grant is what the queue commands check.
      expect(st(await createCq(h, { qid: 4, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
      expect(st(await createSq(h, { qid: 3, qsize: 7, cqid: 4, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
      expect(st(await createSq(h, { qid: 2, qsize: 7, cqid: 4, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    });

    it('NSQR or NCQR of 65535: Invalid Field in Command', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x0000ffff))).toEqual(INVALID_FIELD);
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0xffff0000))).toEqual(INVALID_FIELD);
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0xffffffff))).toEqual(INVALID_FIELD);
      expect((await getFeature(h, FID.NUM_QUEUES)).dw0).toBe(0x003f003f);
    });

    it('after an I/O queue was created: Command Sequence Error, until a controller reset', async () => {
      const h = await up({ controller: { maxIoQueues: 4 } });
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00010001))).toEqual(SUCCESS);
      expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00000000))).toEqual(COMMAND_SEQUENCE_ERROR);
      expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 1 }))).toEqual(SUCCESS);
      // Deleting the queues again does not reopen the window.
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00000000))).toEqual(COMMAND_SEQUENCE_ERROR);
      expect((await getFeature(h, FID.NUM_QUEUES)).dw0).toBe(0x00010001);
      await h.driver.reset();
      expect(st(await setFeature(h, FID.NUM_QUEUES, 0x00000000))).toEqual(SUCCESS);
    });
  });

  describe('Volatile Write Cache (06h)', () => {
    it('enabled by default; Set changes the current value only', async () => {
      const h = await up();
      expect((await getFeature(h, FID.VWC)).dw0).toBe(1);
      expect(st(await setFeature(h, FID.VWC, 0))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.VWC, 0)).dw0).toBe(0);
      expect((await getFeature(h, FID.VWC, 1)).dw0).toBe(1);
      expect(st(await setFeature(h, FID.VWC, 1))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.VWC)).dw0).toBe(1);
    });
  });

  describe('Arbitration (01h)', () => {
    it('round robin by default; Set stores AB and the weights, reserved bits 7:3 read 0', async () => {
      const h = await up();
      expect((await getFeature(h, FID.ARBITRATION)).dw0).toBe(0);
      expect(st(await setFeature(h, FID.ARBITRATION, 0x04030207))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.ARBITRATION)).dw0).toBe(0x04030207);
      expect(st(await setFeature(h, FID.ARBITRATION, 0x000000fa))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.ARBITRATION)).dw0).toBe(0x02);
      expect((await getFeature(h, FID.ARBITRATION, 1)).dw0).toBe(0);
    });
  });

  describe('Temperature Threshold (04h)', () => {
    it('the composite over temperature threshold defaults to WCTEMP and can be set', async () => {
      const h = await up();
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0))).dw0 & 0xffff).toBe(343);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(350)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0))).dw0 & 0xffff).toBe(350);
      expect((await getFeature(h, FID.TEMPERATURE, 1, tempDw(0))).dw0 & 0xffff).toBe(343);
    });

    it('the composite under temperature threshold (WCTEMP is non-zero) defaults to 0 and is kept apart from the over threshold', async () => {
      const h = await up();
      expect(st(await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(250, 0, 1)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(250);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(343);
      expect((await getFeature(h, FID.TEMPERATURE, 1, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
    });

    it('Temperature Sensor 1, which the SMART log reports, has its own thresholds (over FFFFh, under 0h by default)', async () => {
      const h = await up();
      const smart = new Uint8Array(512);
      await getLogPage(h, LID.SMART, smart);
      expect(u16(smart, 200)).not.toBe(0); // Temperature Sensor 1 is implemented
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(0xffff);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 1))).dw0 & 0xffff).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(360, 1, 0)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(360);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(343);
    });

    it('TMPSEL 1111b sets the threshold of every implemented sensor (Set only)', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(330, 0xf, 0)))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(330);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(330);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
      expect(st(await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0xf, 0)))).toEqual(INVALID_FIELD);
    });

    it('thresholds return to their defaults after a controller reset', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(350)))).toEqual(SUCCESS);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(250, 0, 1)))).toEqual(SUCCESS);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(360, 1, 0)))).toEqual(SUCCESS);
      await h.driver.reset();
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 0))).dw0 & 0xffff).toBe(343);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 0, 1))).dw0 & 0xffff).toBe(0);
      expect((await getFeature(h, FID.TEMPERATURE, 0, tempDw(0, 1, 0))).dw0 & 0xffff).toBe(0xffff);
    });

    it('TMPSEL of a sensor that is not implemented, or a reserved THSEL: Invalid Field in Command (Set and Get)', async () => {
      const h = await up();
      for (const dw of [tempDw(300, 2, 0), tempDw(300, 8, 1), tempDw(300, 9, 0), tempDw(300, 0, 2), tempDw(300, 0, 3)]) {
        expect(st(await setFeature(h, FID.TEMPERATURE, dw))).toEqual(INVALID_FIELD);
        expect(st(await getFeature(h, FID.TEMPERATURE, 0, dw))).toEqual(INVALID_FIELD);
      }
      expect((await getFeature(h, FID.TEMPERATURE)).dw0 & 0xffff).toBe(343);
    });

    it('a threshold the composite temperature crosses sets SMART Critical Warning bit 1, and clears it when moved back', async () => {
      const h = await up();
      const warning = async (): Promise<number> => {
        const b = new Uint8Array(512);
        expect(st(await getLogPage(h, LID.SMART, b))).toEqual(SUCCESS);
        return b[0]! & CRITICAL_WARNING_TEMPERATURE;
      };
      const smart = new Uint8Array(512);
      await getLogPage(h, LID.SMART, smart);
      const kelvin = u16(smart, 1);
      expect(kelvin).toBeGreaterThan(0);
      expect(await warning()).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(kelvin)))).toEqual(SUCCESS); // >= over threshold
      expect(await warning()).toBe(CRITICAL_WARNING_TEMPERATURE);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(kelvin + 1)))).toEqual(SUCCESS);
      expect(await warning()).toBe(0);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(kelvin, 0, 1)))).toEqual(SUCCESS); // <= under threshold
      expect(await warning()).toBe(CRITICAL_WARNING_TEMPERATURE);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(0, 0, 1)))).toEqual(SUCCESS);
      expect(await warning()).toBe(0);
    });

    it('with SMART temperature warnings enabled in Async Event Config, crossing a threshold completes an AER (SMART / Health, Temperature Threshold, log 02h)', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.AEC, CRITICAL_WARNING_TEMPERATURE))).toEqual(SUCCESS);
      const aer = track(admin(h, { opcode: OPC.AER }));
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(200)))).toEqual(SUCCESS);
      await tick(5);
      expect(aer.settled).toBe(true);
      expect(st(aer.value!)).toEqual(SUCCESS);
      expect(aer.value!.dw0).toBe((1 | (0x01 << 8) | (0x02 << 16)) >>> 0);

      // Still over a threshold: moving it does not report the same condition again.
      const aer2 = track(admin(h, { opcode: OPC.AER }));
      const smart = new Uint8Array(512);
      expect(st(await getLogPage(h, LID.SMART, smart))).toEqual(SUCCESS); // clears the SMART / Health event
      expect(smart[0]! & CRITICAL_WARNING_TEMPERATURE).toBe(CRITICAL_WARNING_TEMPERATURE);
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(210)))).toEqual(SUCCESS);
      await tick(5);
      expect(aer2.settled).toBe(false);
    });

    it('without the Async Event Config bit, crossing a threshold raises no event', async () => {
      const h = await up();
      const aer = track(admin(h, { opcode: OPC.AER }));
      expect(st(await setFeature(h, FID.TEMPERATURE, tempDw(200)))).toEqual(SUCCESS);
      await tick(5);
      expect(aer.settled).toBe(false);
    });
  });

  describe('Asynchronous Event Configuration (0Bh)', () => {
    it('defaults to 0 and keeps what is set', async () => {
      const h = await up();
      expect((await getFeature(h, FID.AEC)).dw0).toBe(0);
      expect(st(await setFeature(h, FID.AEC, 0x1f))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.AEC)).dw0).toBe(0x1f);
      expect((await getFeature(h, FID.AEC, 1)).dw0).toBe(0);
    });
  });

  describe('SEL, SV and unknown features', () => {
    it('SEL current / default / saved / supported capabilities', async () => {
      const h = await up();
      expect(st(await setFeature(h, FID.ARBITRATION, 0x00000003))).toEqual(SUCCESS);
      expect((await getFeature(h, FID.ARBITRATION, 0)).dw0).toBe(3);
      expect((await getFeature(h, FID.ARBITRATION, 1)).dw0).toBe(0);
      // Nothing is saveable, so the saved value is the default one.
      expect((await getFeature(h, FID.ARBITRATION, 2)).dw0).toBe(0);
      for (const fid of [FID.ARBITRATION, FID.TEMPERATURE, FID.VWC, FID.NUM_QUEUES, FID.AEC]) {
        const caps = await getFeature(h, fid, 3);
        expect(st(caps)).toEqual(SUCCESS);
        // Bit 0 saveable: no; bit 1 namespace specific: no; bit 2 changeable: yes.
        expect(caps.dw0 & 0x7).toBe(0x4);
      }
    });

    for (const sel of [4, 5, 6, 7]) {
      it(`reserved SEL ${sel}: Invalid Field in Command`, async () => {
        const h = await up();
        expect(st(await getFeature(h, FID.VWC, sel))).toEqual(INVALID_FIELD);
      });
    }

    it('SV = 1: Feature Identifier Not Saveable, and the value is not changed', async () => {
      const h = await up();
      for (const [fid, value] of [
        [FID.ARBITRATION, 0x01],
        [FID.TEMPERATURE, tempDw(300)],
        [FID.VWC, 0],
        [FID.NUM_QUEUES, 0],
        [FID.AEC, 0x02],
      ] as const) {
        const before = (await getFeature(h, fid)).dw0;
        expect(st(await setFeature(h, fid, value, true))).toEqual(FEATURE_NOT_SAVEABLE);
        expect((await getFeature(h, fid)).dw0).toBe(before);
      }
    });

    for (const fid of [0x00, 0x50, 0x7f, 0xff]) {
      it(`unknown FID 0x${fid.toString(16)}: Invalid Field in Command (Get and Set)`, async () => {
        const h = await up();
        expect(st(await getFeature(h, fid))).toEqual(INVALID_FIELD);
        expect(st(await setFeature(h, fid, 0))).toEqual(INVALID_FIELD);
      });
    }
  });
});
