/**
 * The main thread's own I/O queue pair: engine.read / write / flush /
 * writeZeroes / deallocate and engine.queue() run the controller in the
 * main thread, with no worker in the path.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'node:path';
import { Engine, NvmqError, NvmeStatusError } from '../../dist/index.js';
import { allBytes, deferPerTest, pattern, sameBytes, tempDirsPerTest, DATA_PATHS } from '../helpers/harness.js';

const busyTask = new URL('../fixtures/busy-task.mjs', import.meta.url).href;
// Registered first, so its directories go after the engines are closed (after-hooks run last in, first out).
const dir = tempDirsPerTest();
const defer = deferPerTest();

/** An engine closed after the test (closing twice is harmless). */
async function openEngine(opts: Parameters<typeof Engine.open>[0]): Promise<Engine> {
  const e = await Engine.open(opts);
  defer(() => e.close());
  return e;
}

const BLOCK = 4096;

for (const dataPath of DATA_PATHS) {
  describe(`the main thread's queue pair (${dataPath})`, () => {
    const open = async (workers = 1): Promise<Engine> =>
      openEngine({ namespaces: [{ backend: 'file', path: path.join(dir(), 'm.img'), size: 32 << 20 }], workers, controller: { dataPath } });

    it('verified writes and reads from 256 concurrent callers', async () => {
      const e = await open();
      const lbas = Array.from({ length: 256 }, (_, i) => i * 7);
      await Promise.all(lbas.map((lba) => e.write(1, lba, pattern(BLOCK, lba))));
      const back = await Promise.all(lbas.map((lba) => e.read(1, lba, 1)));
      back.forEach((b, i) => expect(sameBytes(b, pattern(BLOCK, lbas[i]!))).toBe('equal'));
      // Several blocks at once, and FUA.
      const big = pattern(16 * BLOCK, 3);
      await e.write(1, 5000, big, { fua: true });
      expect(sameBytes(await e.read(1, 5000, 16), big)).toBe('equal');
      await e.flush();
      await e.flush(1);
    });

    it('needs no worker: I/O completes while the only worker is busy', async () => {
      const e = await open(1);
      const main = await e.queue();
      expect(e.threadIds.map((t) => e.queueOf(t))).not.toContain(main.qid);
      const busy = e.run<number>(busyTask, { ms: 1500 });
      // Let the task start, then do I/O: through a worker it would wait for the task to end.
      await new Promise((r) => setTimeout(r, 200));
      const t0 = performance.now();
      for (let i = 0; i < 50; i++) await e.write(1, i, pattern(BLOCK, i));
      expect(sameBytes(await e.read(1, 49, 1), pattern(BLOCK, 49))).toBe('equal');
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(await busy).toBeGreaterThan(0);
    });

    it('engine.read into the caller\'s buffer: the data lands there, nothing outside it changes', async () => {
      const e = await open();
      await e.write(1, 60, pattern(2 * BLOCK, 60));
      const mem = new Uint8Array(4 * BLOCK).fill(0xee);
      const into = mem.subarray(BLOCK, 3 * BLOCK);
      expect(await e.read(1, 60, 2, into)).toBe(into);
      expect(sameBytes(into, pattern(2 * BLOCK, 60))).toBe('equal');
      expect(allBytes(mem.subarray(0, BLOCK), 0xee) && allBytes(mem.subarray(3 * BLOCK), 0xee)).toBe(true);
      // Also in a batch, mixed with a read into a new buffer.
      const one = new Uint8Array(BLOCK);
      const [x, y] = await e.batch([
        { op: 'read', nsid: 1, slba: 61, nlb: 1, buffer: one },
        { op: 'read', nsid: 1, slba: 60, nlb: 1 },
      ]);
      expect(x).toBe(one);
      expect(sameBytes(one, pattern(2 * BLOCK, 60).subarray(BLOCK))).toBe('equal');
      expect(sameBytes(y!, pattern(BLOCK, 60))).toBe('equal');
      // A buffer of the wrong length is refused, in one line, and left as it was.
      const short = new Uint8Array(BLOCK).fill(1);
      await expect(e.read(1, 60, 2, short)).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('buffer') });
      expect(allBytes(short, 1)).toBe(true);
    });

    it('engine.batch: writes, a flush and reads behind one doorbell, the reads\' data in order', async () => {
      const e = await open();
      const q = await e.queue();
      const before = q.stats.sqDoorbells;
      const out = await e.batch([
        { op: 'write', nsid: 1, slba: 40, data: pattern(2 * BLOCK, 40) },
        { op: 'write', nsid: 1, slba: 42, data: pattern(BLOCK, 42), fua: true },
        { op: 'flush' },
      ]);
      expect(out).toEqual([undefined, undefined, undefined]);
      const [a, b] = await e.batch([
        { op: 'read', nsid: 1, slba: 40, nlb: 2 },
        { op: 'read', nsid: 1, slba: 42, nlb: 1 },
      ]);
      expect(q.stats.sqDoorbells - before).toBe(2);
      expect(sameBytes(a!, pattern(2 * BLOCK, 40))).toBe('equal');
      expect(sameBytes(b!, pattern(BLOCK, 42))).toBe('equal');
      await expect(e.batch([{ op: 'write', nsid: 1, slba: 0, data: new Uint8Array(10) }])).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('ops[0].data') });
    });

    it('write zeroes and deallocate read back as zeroes; the rest is untouched', async () => {
      const e = await open();
      await e.write(1, 100, pattern(8 * BLOCK, 5));
      await e.writeZeroes(1, 101, 2);
      await e.deallocate(1, [{ slba: 105, nlb: 1 }]);
      const got = await e.read(1, 100, 8);
      const want = pattern(8 * BLOCK, 5);
      want.fill(0, BLOCK, 3 * BLOCK);
      want.fill(0, 5 * BLOCK, 6 * BLOCK);
      expect(sameBytes(got, want)).toBe('equal');
    });
  });
}

describe("the main thread's queue pair: errors, close and reset", () => {
  const open = (): Promise<Engine> => openEngine({ namespaces: [{ backend: 'memory', size: 8 << 20 }], workers: 1 });

  it('bad arguments and device errors are typed, one line each', async () => {
    const e = await open();
    await expect(e.read(9, 0, 1)).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('nsid') });
    await expect(e.read(1, 0, 0)).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('nlb') });
    await expect(e.read(1, 0, 1 << 20)).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('nlb') });
    await expect(e.write(1, 0, new Uint8Array(100))).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    const past = await e.read(1, 2048, 1).catch((x: unknown) => x);
    expect(past).toBeInstanceOf(NvmeStatusError);
    expect(past).toBeInstanceOf(NvmqError);
    expect((past as NvmeStatusError).code).toBe('NVMQ_LBA_OUT_OF_RANGE');
  });

  it('close with main-thread I/O in flight: every call settles once, later calls are refused', async () => {
    const e = await open();
    await e.read(1, 0, 1);
    let settled = 0;
    let written = 0;
    // More than the pair's 127 request slots: some wait for a slot when close() is called.
    const calls = Array.from({ length: 300 }, (_, i) =>
      e.write(1, i, pattern(BLOCK, i)).then(
        () => (settled++, written++),
        () => settled++,
      ),
    );
    await e.close();
    await Promise.all(calls);
    expect(settled).toBe(300);
    // Called before close(): every one was written, those that waited for a slot included.
    expect(written).toBe(300);
    await expect(e.read(1, 0, 1)).rejects.toMatchObject({ code: 'NVMQ_ENGINE_CLOSED' });
  });

  it('reset: commands in flight fail with NVMQ_CONTROLLER_RESET or complete; the next call gets a fresh queue', async () => {
    const e = await open();
    await e.write(1, 7, pattern(BLOCK, 7));
    const before = await e.queue();
    const inflight = Array.from({ length: 100 }, (_, i) => e.write(1, 100 + i, pattern(BLOCK, i)).then(
      () => 'ok',
      (x: unknown) => (x as NvmqError).code,
    ));
    await e.reset();
    for (const r of await Promise.all(inflight)) expect(['ok', 'NVMQ_CONTROLLER_RESET']).toContain(r);
    expect(sameBytes(await e.read(1, 7, 1), pattern(BLOCK, 7))).toBe('equal');
    const after = await e.queue();
    expect(after).not.toBe(before);
    expect(sameBytes(await e.read(1, 7, 1), pattern(BLOCK, 7))).toBe('equal');
  });

  it('a main-thread read issued while a reset runs waits for the reset, not for its grace period', async () => {
    const e = await open();
    await e.write(1, 3, pattern(BLOCK, 3));
    const t0 = performance.now();
    const reset = e.reset();
    const read = e.read(1, 3, 1).catch((x: unknown) => (x as NvmqError).code);
    await reset;
    const got = await read;
    // Either it ran before the reset took the pair, or after it on a fresh pair; never 5 s later.
    if (typeof got !== 'string') expect(sameBytes(got, pattern(BLOCK, 3))).toBe('equal');
    else expect(got).toBe('NVMQ_CONTROLLER_RESET');
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});
