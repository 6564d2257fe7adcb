/**
 * NVM command set: read-only file namespaces, and the Error Information log
 * entries failed NVM commands leave. Rigs and conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bringUp, tempDir, pattern } from '../../../helpers/harness.js';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import type { IoQueuePair } from '../../../../src/engine/host/io-queue-pair.js';
import type { Completion } from '../../../../src/engine/spec/command.js';
import { PS, INVALID_OPCODE, INVALID_NAMESPACE, PRP_OFFSET_INVALID, WRITE_PROTECTED, LBA_OUT_OF_RANGE, OP, FUA, DEAC, DSM_IDR, withRig, rwFields, dsmRanges, expectStatus, expectBytes } from './helpers.js';

describe('read-only file namespace', () => {
  it('writes, write zeroes and deallocation are Namespace is Write Protected; reads and flushes work; the file is untouched', async () => {
    const t = tempDir();
    try {
      const p = path.join(t.dir, 'ro.img');
      // An nvmq image with known contents.
      const creator = new FileBackend({ path: p, size: 1 << 20 });
      await creator.close();
      const content = pattern(1 << 20, 13);
      fs.writeFileSync(p, content, { flag: 'r+' });

      const backend = new FileBackend({ path: p, readOnly: true });
      expect(backend.readOnly).toBe(true);
      const h = await bringUp({ namespaces: [{ backend, lbaSize: 512 }] });
      try {
        const qp = await h.driver.createIoQueuePair({ entries: 8 });
        const buf = h.arena.alloc(PS);
        buf.bytes.fill(0x99);
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 0, 8), prp1: buf.iova }), WRITE_PROTECTED);
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 100, 1, FUA), prp1: buf.iova }), WRITE_PROTECTED);
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE_ZEROES, 1, 0, 8) }), WRITE_PROTECTED);
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE_ZEROES, 1, 0, 8, DEAC) }), WRITE_PROTECTED);
        await expect(qp.deallocate(1, [{ slba: 0, nlb: 8 }])).rejects.toMatchObject({ code: 'NVMQ_NAMESPACE_WRITE_PROTECTED', sct: 0, sc: 0x20, dnr: true });
        await expect(qp.write(1, 5, 1, new Uint8Array(512))).rejects.toMatchObject({ code: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
        // Reads and flushes are fine.
        const back = new Uint8Array(16 * 512);
        await qp.read(1, 3, 16, back);
        expectBytes(back, content.subarray(3 * 512, 19 * 512));
        await qp.flush(1);
        await qp.flush(0xffffffff);
        // Dataset Management with only hints has nothing to write.
        expectStatus(await qp.passthru({ opcode: OP.DSM, nsid: 1, cdw10: 0, cdw11: DSM_IDR }, { buffer: dsmRanges([{ slba: 0, nlb: 1 }]), direction: 'to-device' }), 0);
      } finally {
        await h.close();
      }
      expectBytes(new Uint8Array(fs.readFileSync(p)), content);
    } finally {
      t.cleanup();
    }
  });
});

describe('error log', () => {
  it('records each failed command (SQID, CID, status, NSID, LBA), newest first; successes add nothing', async () => {
    await withRig(
      [
        { kind: 'memory', lbaSize: 4096, size: 1 << 20, nsid: 1 },
        { kind: 'file', lbaSize: 512, size: 1 << 20, nsid: 2 },
      ],
      async ({ h, qp }) => {
        const buf = h.arena.alloc(PS);
        const before = await h.driver.errorLog();
        const smartBefore = await h.driver.smartLog();
        const failures: Array<{ c: Completion; status: number; nsid: number; lba?: number }> = [];
        const run = async (cmd: Parameters<IoQueuePair['passthru']>[0], want: number, nsid: number, lba?: number): Promise<void> => {
          const c = await qp.passthru(cmd);
          expectStatus(c, want);
          failures.push({ c, status: want, nsid, lba });
        };
        await run({ ...rwFields(OP.WRITE, 2, 5000, 4), prp1: buf.iova }, LBA_OUT_OF_RANGE, 2, 5000);
        expectStatus(await qp.passthru({ ...rwFields(OP.READ, 1, 3, 1), prp1: buf.iova }), 0);
        await run({ ...rwFields(OP.READ, 7, 0, 1), prp1: buf.iova }, INVALID_NAMESPACE, 7);
        await run({ ...rwFields(0x7e, 1, 0, 1) }, INVALID_OPCODE, 1);
        await run({ ...rwFields(OP.READ, 1, 2, 1), prp1: buf.iova + 1 }, PRP_OFFSET_INVALID, 1, 2);
        await run({ ...rwFields(OP.WRITE_ZEROES, 1, 256, 1) }, LBA_OUT_OF_RANGE, 1, 256);
        await run({ ...rwFields(OP.READ, 1, 0x1_0000_0002, 1), prp1: buf.iova }, LBA_OUT_OF_RANGE, 1, 0x1_0000_0002);
        await qp.flush(0xffffffff);

        const log = await h.driver.errorLog();
        expect(log.length).toBe(before.length + failures.length);
        const newest = log.slice(0, failures.length);
        const base = before[0]?.errorCount ?? 0;
        failures.reverse().forEach((f, i) => {
          const e = newest[i]!;
          expect(e.errorCount).toBe(base + failures.length - i);
          expect(e.sqid).toBe(qp.qid);
          expect(e.cid).toBe(f.c.cid);
          expect(e.status).toBe(f.status);
          expect(e.nsid).toBe(f.nsid);
          if (f.lba !== undefined) expect(e.lba).toBe(f.lba);
        });
        const smart = await h.driver.smartLog();
        expect(smart.errorLogEntries - smartBefore.errorLogEntries).toBe(failures.length);
        // None of these is a media error.
        expect(smart.mediaErrors).toBe(smartBefore.mediaErrors);
      },
    );
  });
});
