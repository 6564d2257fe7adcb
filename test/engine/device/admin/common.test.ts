/**
 * Admin command set conformance: what holds for any admin command (unknown
 * opcodes, FUSE / PSDT, the completion fields), and the typed errors
 * `driver.adminCommand()` turns statuses into. Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import type { Harness } from '../../../helpers/harness.js';
import { OPC, FID, st, INVALID_OPCODE, INVALID_FIELD, up, admin, arenaBuffer, fromDevice, identify, adminSqeCid } from './helpers.js';

describe('any admin command', () => {
  for (const opcode of [0x03, 0x07, 0x0b, 0x0d, 0x10, 0x18, 0x7f, 0x80, 0xc0, 0xff]) {
    it(`unknown opcode 0x${opcode.toString(16)}: Invalid Command Opcode with DNR`, async () => {
      const h = await up();
      expect(st(await admin(h, { opcode }))).toEqual(INVALID_OPCODE);
    });
  }

  for (const [fuse, psdt] of [
    [1, 0],
    [2, 0],
    [3, 0],
    [0, 1],
    [0, 2],
    [0, 3],
  ] as const) {
    it(`FUSE ${fuse}, PSDT ${psdt}: Invalid Field in Command, and nothing is done`, async () => {
      const h = await up();
      const b = arenaBuffer(h, 4096, 0xa5);
      expect(st(await admin(h, { opcode: OPC.IDENTIFY, cdw10: 0x01, fuse, psdt }, fromDevice(b)))).toEqual(INVALID_FIELD);
      expect(b.every((x) => x === 0xa5)).toBe(true);
    });
  }

  it('the completion echoes the CID, SQID 0 and the SQ head', async () => {
    const h = await up();
    const a = await identify(h, 0x01, 0);
    const b = await identify(h, 0x01, 0);
    expect(a.sqid).toBe(0);
    expect(b.sqid).toBe(0);
    expect(b.sqhd).toBe((a.sqhd + 1) % 32);
    expect(adminSqeCid(h, (b.sqhd + 31) % 32)).toBe(b.cid);
  });
});

describe('driver.adminCommand() turns statuses into typed errors (statusToError)', () => {
  const cases: Array<{ name: string; code: string; sct: number; sc: number; dnr: boolean; run: (h: Harness) => Promise<unknown> }> = [
    { name: 'Create I/O CQ with QID 0', code: 'NVMQ_INVALID_QUEUE_IDENTIFIER', sct: 1, sc: 0x01, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova, cdw10: (7 << 16) | 0, cdw11: 1 }) },
    { name: 'Create I/O CQ with QSIZE 0', code: 'NVMQ_INVALID_QUEUE_SIZE', sct: 1, sc: 0x02, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova, cdw10: 1, cdw11: 1 }) },
    { name: 'Create I/O CQ with an unaligned PRP1', code: 'NVMQ_PRP_OFFSET_INVALID', sct: 0, sc: 0x13, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova + 4, cdw10: (7 << 16) | 1, cdw11: 1 }) },
    { name: 'Create I/O CQ with a bad vector', code: 'NVMQ_INVALID_INTERRUPT_VECTOR', sct: 1, sc: 0x08, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_CQ, prp1: h.arena.alloc(4096).iova, cdw10: (7 << 16) | 1, cdw11: (0x8000 << 16) | 1 }) },
    { name: 'Create I/O SQ on CQ 0', code: 'NVMQ_COMPLETION_QUEUE_INVALID', sct: 1, sc: 0x00, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.CREATE_SQ, prp1: h.arena.alloc(4096).iova, cdw10: (7 << 16) | 1, cdw11: 1 }) },
    { name: 'Delete I/O SQ 0', code: 'NVMQ_INVALID_QUEUE_IDENTIFIER', sct: 1, sc: 0x01, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.DELETE_SQ, cdw10: 0 }) },
    {
      name: 'Delete I/O CQ still in use',
      code: 'NVMQ_INVALID_QUEUE_DELETION',
      sct: 1,
      sc: 0x0c,
      dnr: true,
      run: async (h) => {
        const qp = await h.driver.createIoQueuePair({ entries: 8 });
        return h.driver.adminCommand({ opcode: OPC.DELETE_CQ, cdw10: qp.qid });
      },
    },
    { name: 'Identify NSID 0', code: 'NVMQ_INVALID_NAMESPACE', sct: 0, sc: 0x0b, dnr: true, run: (h) => h.driver.identify(0x00, 0) },
    { name: 'Identify with an unknown CNS', code: 'NVMQ_INVALID_FIELD', sct: 0, sc: 0x02, dnr: true, run: (h) => h.driver.identify(0xff, 0) },
    { name: 'an unknown opcode', code: 'NVMQ_INVALID_OPCODE', sct: 0, sc: 0x01, dnr: true, run: (h) => h.driver.adminCommand({ opcode: 0xff }) },
    { name: 'Get Log Page of an unknown LID', code: 'NVMQ_INVALID_LOG_PAGE', sct: 1, sc: 0x09, dnr: true, run: (h) => h.driver.getLogPage(0x00, 64) },
    { name: 'Set Features with SV', code: 'NVMQ_FEATURE_NOT_SAVEABLE', sct: 1, sc: 0x0d, dnr: true, run: (h) => h.driver.adminCommand({ opcode: OPC.SET_FEATURES, cdw10: (FID.VWC | (1 << 31)) >>> 0, cdw11: 0 }) },
    {
      name: 'Number of Queues after queue creation',
      code: 'NVMQ_COMMAND_SEQUENCE_ERROR',
      sct: 0,
      sc: 0x0c,
      dnr: true,
      run: async (h) => {
        await h.driver.createIoQueuePair({ entries: 8 });
        return h.driver.setNumberOfQueues(2);
      },
    },
    {
      name: 'one AER too many',
      code: 'NVMQ_ASYNC_EVENT_LIMIT_EXCEEDED',
      sct: 1,
      sc: 0x05,
      dnr: true,
      run: async (h) => {
        for (let i = 0; i < 4; i++) void admin(h, { opcode: OPC.AER });
        return h.driver.adminCommand({ opcode: OPC.AER });
      },
    },
  ];
  for (const c of cases) {
    it(`${c.name} → ${c.code}`, async () => {
      const h = await up();
      await expect(c.run(h)).rejects.toMatchObject({ name: 'NvmeStatusError', code: c.code, sct: c.sct, sc: c.sc, dnr: c.dnr, qid: 0 });
    });
  }

  it('the error names the command and the status', async () => {
    const h = await up();
    const err = await h.driver.adminCommand({ opcode: OPC.DELETE_SQ, cdw10: 9 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ opcode: OPC.DELETE_SQ, status: (1 << 14) | (1 << 8) | 0x01 });
    expect((err as Error).message).toBe('Delete I/O Submission Queue (0x00) failed: Invalid Queue Identifier (SCT 1, SC 0x01), DNR');
  });
});
