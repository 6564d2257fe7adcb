import { describe, it, expect, afterEach } from 'vitest';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { bringUp, memoryNamespace, pattern, sameBytes, stalledDevice, tempDirsPerTest, DATA_PATHS, type Harness } from '../../helpers/harness.js';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import { NvmeStatusError, NvmqError } from '../../../src/engine/errors.js';

const mk = tempDirsPerTest();
let h: Harness | undefined;
afterEach(async () => {
  await h?.close().catch(() => {});
  h = undefined;
});

describe('I/O queue pairs', () => {
  it('moves data without a copy for arena buffers and through a bounce buffer otherwise', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    const inArena = h.arena.alloc(3 * 4096);
    inArena.bytes.set(pattern(3 * 4096, 7));
    const free0 = h.arena.freePages();
    await q.write(1, 5, 3, inArena.bytes);
    expect(h.arena.freePages()).toBe(free0);
    const plain = new Uint8Array(3 * 4096);
    await q.read(1, 5, 3, plain);
    expect(plain).toEqual(inArena.bytes);
    expect(h.arena.freePages()).toBe(free0);
  });

  it('batches submissions behind one doorbell with plug / unplug', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 64 });
    const before = q.stats.sqDoorbells;
    q.plug();
    const writes = Array.from({ length: 20 }, (_, i) => q.write(1, i, 1, pattern(4096, i)));
    expect(q.stats.sqDoorbells).toBe(before);
    q.unplug();
    await Promise.all(writes);
    expect(q.stats.sqDoorbells).toBe(before + 1);
    for (let i = 0; i < 20; i++) {
      const b = new Uint8Array(4096);
      await q.read(1, i, 1, b);
      expect(b).toEqual(pattern(4096, i));
    }
  });

  it('queues submitters when every slot is taken and loses none', async () => {
    h = await bringUp({ namespaces: [{ backend: new FileBackend({ path: path.join(mk(), 'q.img'), size: 4 << 20 }), lbaSize: 4096 }] });
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    expect(q.slots).toBe(3);
    const ops = Array.from({ length: 40 }, (_, i) => q.write(1, i, 1, pattern(4096, 100 + i)));
    await Promise.all(ops);
    expect(q.outstanding).toBe(0);
    const b = new Uint8Array(4096);
    for (let i = 0; i < 40; i++) {
      await q.read(1, i, 1, b);
      expect(b).toEqual(pattern(4096, 100 + i));
    }
  });

  it('blockingWait on a full table never blocks the thread on its own completions', async () => {
    h = await bringUp({ namespaces: [{ backend: new FileBackend({ path: path.join(mk(), 'b.img'), size: 4 << 20 }), lbaSize: 4096 }] });
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    q.blockingWait = true;
    // 40 writes on 3 slots: the file completions arrive through this thread's event loop, which must stay free.
    await Promise.all(Array.from({ length: 40 }, (_, i) => q.write(1, i, 1, pattern(4096, 500 + i))));
    const b = new Uint8Array(4096);
    await q.read(1, 39, 1, b);
    expect(sameBytes(b, pattern(4096, 539))).toBe('equal');
    expect(q.outstanding).toBe(0);
  });

  it('a malformed command field fails that submission only: no slot leaks and the queue keeps working', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    await expect(q.passthru({ opcode: 0x02, nsid: 1, cdw12: 1n as unknown as number })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    expect(q.outstanding).toBe(0);
    await q.write(1, 0, 1, pattern(4096, 1));
  });

  it('throws typed errors with stable codes for failed commands', async () => {
    h = await bringUp({ namespaces: [memoryNamespace(1 << 20)] });
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    const err = await q.read(1, 256, 1, new Uint8Array(4096)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err).toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE', sct: 0, sc: 0x80, dnr: true, statusName: 'LBA Out of Range', qid: 1 });
    expect((err as Error).message).toBe('Read (0x02) failed: LBA Out of Range (SCT 0, SC 0x80), DNR');
    await expect(q.read(7, 0, 1, new Uint8Array(4096))).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    await expect(q.read(1, 0, 2, new Uint8Array(4096))).rejects.toBeInstanceOf(NvmqError);
  });

  it('counts a completion for a CID that is not outstanding as spurious and delivers nothing', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    await q.flush(1);
    // Forge a CQE the controller never posted, with the phase the host expects next.
    const at = q.cq.offset + 1 * 16;
    const dv = h.arena.view;
    dv.setUint16(at + 12, 5, true);
    dv.setUint16(at + 14, 1, true);
    expect(q.processCompletions()).toBe(1);
    expect(q.stats.spurious).toBe(1);
  });
});

describe('callback forms (readCallback / writeCallback)', () => {
  type Outcome = { err: Error | null; status: number | undefined; sync: boolean };
  /** Runs one callback-form command; records whether its callback ran inside the call. */
  function once(start: (done: (err: Error | null, c: { status: number } | undefined) => void) => void): Promise<Outcome> {
    return new Promise((resolve) => {
      let inside = true;
      let calls = 0;
      start((err, c) => {
        calls++;
        expect(calls).toBe(1);
        resolve({ err, status: c?.status, sync: inside });
      });
      inside = false;
    });
  }

  it.each(DATA_PATHS)('move the same bytes as the Promise forms, each callback once and never inside the call (%s)', async (dataPath) => {
    const file = path.join(mk(), 'cb.img');
    h = await bringUp({ namespaces: [{ backend: new FileBackend({ path: file, size: 4 << 20 }), lbaSize: 4096 }], controller: { dataPath } });
    const q = await h.driver.createIoQueuePair({ entries: 16 });
    const w = h.arena.alloc(4096).bytes.subarray(0, 4096);
    w.set(pattern(4096, 41));
    expect(await once((done) => q.writeCallback(1, 9, 1, w, done, { fua: true }))).toEqual({ err: null, status: 0, sync: false });
    const r = h.arena.alloc(4096).bytes.subarray(0, 4096);
    expect(await once((done) => q.readCallback(1, 9, 1, r, done))).toEqual({ err: null, status: 0, sync: false });
    expect(sameBytes(r, pattern(4096, 41))).toBe('equal');
    // A buffer outside the arena goes through a bounce buffer, as with read().
    const plain = new Uint8Array(4096);
    await once((done) => q.readCallback(1, 9, 1, plain, done));
    expect(sameBytes(plain, pattern(4096, 41))).toBe('equal');
    expect(q.outstanding).toBe(0);
  });

  it('report a failed command as its typed error with the completion, and bad arguments the same way', async () => {
    h = await bringUp({ namespaces: [memoryNamespace(1 << 20)] });
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    const out = await once((done) => q.readCallback(1, 256, 1, new Uint8Array(4096), done));
    expect(out.err).toBeInstanceOf(NvmeStatusError);
    expect(out.err).toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
    expect(out.status).not.toBe(0);
    expect(out.sync).toBe(false);
    const badLength = await once((done) => q.readCallback(1, 0, 2, new Uint8Array(4096), done));
    expect(badLength).toMatchObject({ sync: false, status: undefined });
    expect(badLength.err).toBeInstanceOf(NvmqError);
    const badNamespace = await once((done) => q.writeCallback(7, 0, 1, new Uint8Array(4096), done));
    expect(badNamespace).toMatchObject({ sync: false, status: undefined, err: { code: 'NVMQ_INVALID_ARGUMENT', message: 'nsid must be an active NSID (1), got 7' } });
    expect(q.outstanding).toBe(0);
  });

  it('a closed loop resubmitting from its callbacks iterates instead of recursing', async () => {
    // The first read completes later (through the interrupt, whose reap runs callbacks at once); every
    // resubmission from a callback then completes inside its doorbell, as a memory namespace does.
    const mem = memoryNamespace(1 << 20);
    let first = true;
    const backend = new Proxy(mem.backend, {
      get(target, key) {
        if (key === 'read') {
          return (...args: Parameters<typeof target.read>) => {
            if (!first) return target.read(...args);
            first = false;
            setImmediate(() => target.read(...args));
          };
        }
        const v = Reflect.get(target, key, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    h = await bringUp({ namespaces: [{ ...mem, backend }] });
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    const buf = h.arena.alloc(4096).bytes.subarray(0, 4096);
    // 50,000 commands one after another: nested reaps would overflow the stack long before.
    const total = 50_000;
    const done = await new Promise<number>((resolve, reject) => {
      let n = 0;
      const next = (err: Error | null): void => {
        if (err) return reject(err);
        if (++n === total) return resolve(n);
        q.readCallback(1, n % 256, 1, buf, next);
      };
      q.readCallback(1, 0, 1, buf, next);
    });
    expect(done).toBe(total);
    // All of them found by the reap the first interrupt started, going round once per resubmission.
    expect(q.stats.interrupted).toBe(total);
    expect(q.outstanding).toBe(0);
  });

  it('a callback that throws does not strand the completions reaped with it; its error is uncaught', async () => {
    const w = new Worker(new URL('../../fixtures/throwing-callback-worker.mjs', import.meta.url));
    const message = new Promise((resolve) => w.once('message', resolve));
    const error = new Promise<Error>((resolve) => w.once('error', resolve));
    expect(await message).toEqual({ called: [0, 1, 2, 3], outstanding: 0 });
    expect((await error).message).toBe('boom from callback 0');
    await w.terminate();
  });

  it.each(DATA_PATHS)('a reset fails the commands in flight through their callbacks (%s)', async (dataPath) => {
    const device = stalledDevice(dataPath, mk(), 8 << 20);
    h = await bringUp({ namespaces: [{ backend: new FileBackend(device.options), lbaSize: 4096 }], controller: { dataPath } });
    const q = await h.driver.createIoQueuePair({ entries: 16 });
    const outcomes = Array.from({ length: 8 }, (_, i) => once((done) => q.readCallback(1, i, 1, new Uint8Array(4096), done)));
    await h.driver.reset();
    const results = await Promise.all(outcomes);
    expect(results.map((o) => (o.err as NvmqError | null)?.code)).toEqual(Array(8).fill('NVMQ_CONTROLLER_RESET'));
    // The dead queue refuses at once, through the callback.
    expect(await once((done) => q.readCallback(1, 0, 1, new Uint8Array(4096), done))).toMatchObject({ sync: false, status: undefined });
    await h.driver.close();
    device.close();
  });
});
