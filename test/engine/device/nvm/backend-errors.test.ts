/**
 * NVM command set: backend failures (a closed backend, a file size limit)
 * become completions with errors, and the controller still drains. Rigs and
 * conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { bringUp, tempDir, pattern } from '../../../helpers/harness.js';
import { MemoryBackend } from '../../../../src/engine/device/backends/memory.js';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import type { IoQueuePair } from '../../../../src/engine/host/io-queue-pair.js';
import type { Completion } from '../../../../src/engine/spec/command.js';
import { PS, status, WRITE_FAULT, WRITE_PROTECTED, OP, FUA, DEAC, DSM_AD, withRig, rwFields, prpsFor, contiguous, dsmRanges, expectStatus, expectBytes, isZero } from './helpers.js';

/** The current RLIMIT_FSIZE of this process as prlimit(1) prints it, or undefined without prlimit. */
function fsizeLimit(): { soft: string; hard: string } | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const out = execFileSync('prlimit', ['--pid', String(process.pid), '--fsize', '--raw', '--noheadings', '--output=SOFT,HARD'], { encoding: 'utf8' }).trim();
    const [soft, hard] = out.split(/\s+/);
    return soft && hard ? { soft, hard } : undefined;
  } catch {
    return undefined;
  }
}

const fsize = fsizeLimit();
const LIMIT = 4 << 20;
const canLimit = fsize !== undefined && (fsize.hard === 'unlimited' || Number(fsize.hard) >= LIMIT * 2);

describe('backend errors', () => {
  // A backend closed under a live controller makes node:fs throw synchronously (fd -1) instead of
  // calling back. Each command must still get its one completion, with an error, and the controller
  // must still drain (reset, Delete SQ and shutdown wait for in-flight commands).
  it('a namespace whose backend was closed: every command still completes, with an error, and the controller drains', async () => {
    const t = tempDir();
    let stuck = false;
    const file = new FileBackend({ path: path.join(t.dir, 'closed.img'), size: 1 << 20 });
    const mem = new MemoryBackend({ size: 1 << 20 });
    const h = await bringUp({ namespaces: [{ backend: file, lbaSize: 512 }, { backend: mem, lbaSize: 4096 }] });
    try {
      const qp = await h.driver.createIoQueuePair({ entries: 8 });
      await qp.write(1, 0, 8, pattern(PS, 1));
      await file.close();
      const buf = h.arena.alloc(PS);
      buf.bytes.set(dsmRanges([{ slba: 0, nlb: 8 }]));
      const commands: Array<[string, Parameters<IoQueuePair['passthru']>[0]]> = [
        ['read', { ...rwFields(OP.READ, 1, 0, 8), prp1: buf.iova }],
        ['write', { ...rwFields(OP.WRITE, 1, 0, 8), prp1: buf.iova }],
        ['write FUA', { ...rwFields(OP.WRITE, 1, 0, 8, FUA), prp1: buf.iova }],
        ['flush', { opcode: OP.FLUSH, nsid: 1 }],
        ['flush all', { opcode: OP.FLUSH, nsid: 0xffffffff }],
        ['write zeroes', { ...rwFields(OP.WRITE_ZEROES, 1, 0, 8) }],
        ['write zeroes DEAC FUA', { ...rwFields(OP.WRITE_ZEROES, 1, 0, 8, DEAC | FUA) }],
        ['deallocate', { opcode: OP.DSM, nsid: 1, cdw10: 0, cdw11: DSM_AD, prp1: buf.iova }],
      ];
      // Internal Error, or the media error a read or write failure maps to; once the FUA write has failed,
      // data may have been lost, and the namespace's writes are refused (Namespace is Write Protected).
      const acceptable = [status(0, 0x06, false), status(2, 0x81, false), WRITE_FAULT, WRITE_PROTECTED];
      for (const [what, cmd] of commands) {
        let timer: NodeJS.Timeout | undefined;
        const c = await Promise.race([
          qp.passthru(cmd),
          new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 1000))),
        ]);
        clearTimeout(timer);
        if (!c) stuck = true;
        expect(c, `${what}: completion`).toBeDefined();
        expect(acceptable.map((x) => `0x${x.toString(16)}`), `${what}: status`).toContain(`0x${c!.status.toString(16)}`);
      }
      // The other namespace still works.
      await qp.write(2, 1, 1, pattern(PS, 2));
      const back = new Uint8Array(PS);
      await qp.read(2, 1, 1, back);
      expectBytes(back, pattern(PS, 2));
      // Nothing is left in flight: a controller reset (which waits for that) finishes.
      await h.driver.reset();
      expect(h.driver.namespaces.size).toBe(2);
    } finally {
      // A stuck command would keep the controller from draining forever. No orderly shutdown here: see the next test.
      if (!stuck) await h.transport.close();
      t.cleanup();
    }
  });

  // The shutdown flush is guarded (RegisterFront.shutdown): a backend that throws fails its flush, it does
  // not throw out of the host's CC register write, and CSTS.SHST still reaches "complete".
  it('an orderly shutdown with a closed backend completes (CSTS.SHST = complete) without throwing out of the CC write', async () => {
    const t = tempDir();
    const file = new FileBackend({ path: path.join(t.dir, 'closed.img'), size: 1 << 20 });
    const h = await bringUp({ namespaces: [{ backend: file, lbaSize: 512 }] });
    try {
      await file.close();
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        h.driver.shutdown().then(
          () => 'done',
          (e: Error) => `threw: ${e.message}`,
        ),
        new Promise<string>((r) => (timer = setTimeout(() => r('timed out'), 2000))),
      ]);
      clearTimeout(timer);
      expect(outcome).toBe('done');
      // CSTS.SHST (bits 3:2) = 10b: shutdown processing complete.
      expect((h.transport.read32(0x1c) >>> 2) & 3).toBe(2);
    } finally {
      await h.transport.close().catch(() => {});
      t.cleanup();
    }
  });


  // A real failure from the kernel, without touching the backend's file descriptor:
  // RLIMIT_FSIZE makes writes past the limit fail with EFBIG (Node ignores SIGXFSZ).
  // Needs Linux and prlimit(1) from util-linux.
  it.skipIf(!canLimit)('a write the file system refuses (EFBIG past RLIMIT_FSIZE) completes with Write Fault', async () => {
    await withRig([{ kind: 'file', lbaSize: 4096, size: 8 << 20 }], async ({ h, qp, ns }) => {
      const n = ns.get(1)!;
      const smartBefore = await h.driver.smartLog();
      const set = (soft: string): void => {
        execFileSync('prlimit', ['--pid', String(process.pid), `--fsize=${soft}:${fsize!.hard}`]);
      };
      set(String(LIMIT));
      const results: Completion[] = [];
      try {
        const buf = h.arena.alloc(4 * PS);
        buf.bytes.set(pattern(4 * PS, 14));
        const { prp1, prp2 } = prpsFor(h, contiguous(buf, 0, 4 * PS));
        results.push(await qp.passthru({ ...rwFields(OP.WRITE, 1, 0, 4), prp1, prp2 })); // below the limit
        results.push(await qp.passthru({ ...rwFields(OP.WRITE, 1, LIMIT / PS + 10, 4), prp1, prp2 })); // past it
        results.push(await qp.passthru({ ...rwFields(OP.WRITE, 1, LIMIT / PS - 2, 4), prp1, prp2 })); // across it
      } finally {
        set(fsize!.soft);
      }
      expectStatus(results[0]!, 0);
      expectStatus(results[1]!, WRITE_FAULT);
      expectStatus(results[2]!, WRITE_FAULT);
      expectBytes(n.bytes().subarray(0, 4 * PS), pattern(4 * PS, 14));
      expect(isZero(n.bytes().subarray(LIMIT + 10 * PS, LIMIT + 14 * PS))).toBe(true);
      // Reads still work, the error log and SMART know.
      const back = new Uint8Array(4 * PS);
      await qp.read(1, 0, 4, back);
      expectBytes(back, pattern(4 * PS, 14));
      const log = await h.driver.errorLog();
      expect(log[0]).toMatchObject({ status: WRITE_FAULT, cid: results[2]!.cid, nsid: 1, lba: LIMIT / PS - 2 });
      expect(log[1]).toMatchObject({ status: WRITE_FAULT, cid: results[1]!.cid, nsid: 1, lba: LIMIT / PS + 10 });
      const smart = await h.driver.smartLog();
      expect(smart.mediaErrors - smartBefore.mediaErrors).toBe(2);
      // The typed error says what the status means.
      set(String(LIMIT));
      try {
        await expect(qp.write(1, LIMIT / PS + 20, 1, new Uint8Array(PS))).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT', sct: 2, sc: 0x80, dnr: false });
      } finally {
        set(fsize!.soft);
      }
    });
  });
});
