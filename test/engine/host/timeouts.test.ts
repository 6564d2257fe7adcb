/**
 * Host command timeouts against a device that really stalls (a file on a
 * frozen file system: its writes wait in the kernel until the thaw): the
 * command past its deadline is aborted, then the controller is reset if the
 * Abort does not end it; it ends once, with NVMQ_TIMEOUT, and the controller
 * goes on serving.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import { Cc, Regs } from '../../../src/engine/spec/registers.js';
import { bitsOf } from '../../../src/engine/spec/layout.js';
import { NvmeDriver } from '../../../src/engine/host/driver.js';
import { DEFAULT_ADMIN_TIMEOUT_MS, DEFAULT_IO_TIMEOUT_MS } from '../../../src/engine/host/deadlines.js';
import { bringUp, makeController, pattern, recordAborts, scratch, tick, waitFor, DATA_PATHS, type Harness } from '../../helpers/harness.js';
import { freezableFs } from '../../helpers/frozen.js';
import type { NvmqError } from '../../../src/engine/errors.js';

const { cleanups, dir } = scratch();

async function stalled(dataPath: (typeof DATA_PATHS)[number], ioTimeoutMs: number): Promise<{ h: Harness; dev: ReturnType<typeof freezableFs> }> {
  const dev = freezableFs(dir(), cleanups);
  const backend = new FileBackend({ path: path.join(dev.dir, 'ns.img'), size: 4 << 20 });
  const h = await bringUp({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath }, driver: { ioTimeoutMs } });
  cleanups.push(() => h.close());
  return { h, dev };
}

/** How a Promise settled: "ok", or the error's code and message. */
function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: NvmqError) => `${e.code}: ${e.message}`,
  );
}

describe('command timeouts', () => {
  it.each(DATA_PATHS)('a stalled write times out, the Abort ends it, the queue keeps serving (%s)', async (dataPath) => {
    const { h, dev } = await stalled(dataPath, 1000);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    await q.write(1, 0, 1, pattern(4096, 1));
    const aborts = recordAborts(h.driver);
    dev.freeze();
    const buffer = new Uint8Array(4096);
    let calls = 0;
    const write = outcome(q.write(1, 0, 1, pattern(4096, 3)));
    q.writeCallback(1, 1, 1, pattern(4096, 4), (err) => {
      calls++;
      expect((err as NvmqError | null)?.code).toBe('NVMQ_TIMEOUT');
    });
    // The Abort goes out once the deadline has passed (one per command); the device answers within the grace period.
    await waitFor(() => aborts.length === 2, 'the Aborts', 10_000);
    expect(await Promise.all(aborts)).toEqual([true, true]);
    expect(bitsOf(h.transport.read32(Regs.CC.offset), Cc.EN)).toBe(1);
    dev.thaw();
    const r = await write;
    expect(r).toMatch(/^NVMQ_TIMEOUT: qid 1 cid \d+: opcode 01h did not complete within its 1000 ms timeout/);
    await waitFor(() => calls === 1, 'the callback');
    // The queue serves on, no reset happened.
    await q.write(1, 2, 1, pattern(4096, 5));
    expect(await q.read(1, 2, 1, buffer)).toBeDefined();
    expect(buffer).toEqual(pattern(4096, 5));
    expect(q.outstanding).toBe(0);
    await tick(1200);
    expect(calls).toBe(1);
    expect(aborts.length).toBe(2);
  });

  it.each(DATA_PATHS)('an Abort that does not help resets the controller; the command ends once (%s)', async (dataPath) => {
    const { h, dev } = await stalled(dataPath, 200);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    dev.freeze();
    let resets = 0;
    const reset = h.driver.resetForTimeout;
    h.driver.resetForTimeout = () => {
      resets++;
      return reset();
    };
    const write = outcome(q.write(1, 0, 1, pattern(4096, 6)));
    // Deadline (200 ms), Abort (not enough: the kernel still holds the write), one more timeout, reset. The
    // reset waits for what the device holds (on io_uring inside the kernel, this thread blocked), so the
    // device comes back well after the reset has begun, from another process.
    dev.thawAfter(3000);
    expect(await write).toMatch(/^NVMQ_TIMEOUT: qid 1 cid \d+: opcode 01h/);
    await waitFor(() => h.driver.namespaces.size === 1 && bitsOf(h.transport.read32(Regs.CC.offset), Cc.EN) === 1, 'the bring-up');
    expect(resets).toBe(1);
    await expect(q.flush(1)).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_RESET' });
    // The controller serves again.
    await waitFor(() => h.driver.freeIoQueues > 0, 'queues after the reset');
    const q2 = await h.driver.createIoQueuePair({ entries: 8 });
    await q2.write(1, 0, 1, pattern(4096, 2));
    const back = new Uint8Array(4096);
    await q2.read(1, 0, 1, back);
    expect(back).toEqual(pattern(4096, 2));
  });

  it('no timeout, no Abort: a stalled command waits for the device', async () => {
    const dataPath = DATA_PATHS[0]!;
    const { h, dev } = await stalled(dataPath, 0);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    expect(q.deadlines).toBeUndefined();
    dev.freeze();
    let settled = false;
    const write = q.write(1, 0, 1, pattern(4096, 7)).finally(() => (settled = true));
    await tick(500);
    expect(settled).toBe(false);
    expect(bitsOf(h.transport.read32(Regs.CC.offset), Cc.EN)).toBe(1);
    dev.thaw();
    await expect(write).resolves.toBeDefined();
  });

  it("defaults to Linux's timeouts, and checks the options", async () => {
    expect(DEFAULT_IO_TIMEOUT_MS).toBe(30_000);
    expect(DEFAULT_ADMIN_TIMEOUT_MS).toBe(60_000);
    const h = await bringUp();
    cleanups.push(() => h.close());
    expect(h.driver.ioTimeoutMs).toBe(30_000);
    expect(h.driver.adminTimeoutMs).toBe(60_000);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    expect(q.deadlines?.timeoutMs).toBe(30_000);
    const none = await h.driver.createIoQueuePair({ entries: 8, timeoutMs: Infinity });
    expect(none.deadlines).toBeUndefined();
    for (const bad of [-1, NaN, '5']) {
      const { transport } = makeController();
      await expect(NvmeDriver.attach(transport, { ioTimeoutMs: bad as number })).rejects.toThrow(/^ioTimeoutMs must be a number of milliseconds > 0, or 0 or Infinity for none, got/);
      await transport.close();
    }
  });
});
