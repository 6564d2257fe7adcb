/**
 * A controller in fatal status (CSTS.CFS) while I/O is outstanding: the
 * command past its deadline resets the controller at once (an Abort would
 * find no controller to answer it), and the driver serves on after the
 * reset. A controller the reset does not clear is reported once, through
 * the driver's onFailed, and is out of service: no reset loop, every command refused
 * with the reason.
 */
import { describe, expect, it } from 'vitest';
import { Csts, Regs, Cc } from '../../../src/engine/spec/registers.js';
import { bitsOf } from '../../../src/engine/spec/layout.js';
import type { NvmqError } from '../../../src/engine/errors.js';
import { bringUp, pattern, recordAborts, scratch, waitFor } from '../../helpers/harness.js';

const { cleanups } = scratch();

const IO_TIMEOUT_MS = 300;

/** A driver with short I/O timeouts whose fatal-status reports and timeout resets are recorded. */
async function fatalHarness(): Promise<{ h: Awaited<ReturnType<typeof bringUp>>; failed: NvmqError[]; resets: { count: number } }> {
  const failed: NvmqError[] = [];
  const h = await bringUp({ driver: { ioTimeoutMs: IO_TIMEOUT_MS } });
  h.driver.onFailed = (e) => failed.push(e);
  cleanups.push(() => h.close());
  const resets = { count: 0 };
  const reset = h.driver.reset.bind(h.driver);
  h.driver.resetForTimeout = () => {
    resets.count++;
    return reset();
  };
  return { h, failed, resets };
}

describe('controller fatal status', () => {
  it('a command outstanding on a fatal controller resets it without an Abort; I/O goes on afterwards', async () => {
    const { h, failed, resets } = await fatalHarness();
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    await q.write(1, 0, 1, pattern(4096, 1));
    const aborts = recordAborts(h.driver);

    h.controller.fail('injected');
    expect(bitsOf(h.transport.read32(Regs.CSTS.offset), Csts.CFS)).toBe(1);
    const write = q.write(1, 1, 1, pattern(4096, 2)).then(
      () => 'ok',
      (e: NvmqError) => e.code,
    );
    // The write never completes on the failed controller: its deadline brings the reset, which fails it.
    const outcome = await write;
    expect(['NVMQ_TIMEOUT', 'NVMQ_CONTROLLER_RESET']).toContain(outcome);
    await waitFor(() => resets.count === 1 && bitsOf(h.transport.read32(Regs.CSTS.offset), Csts.RDY) === 1, 'the reset', 5000);
    expect(aborts).toHaveLength(0);
    expect(failed).toHaveLength(0);
    expect(bitsOf(h.transport.read32(Regs.CSTS.offset), Csts.CFS)).toBe(0);

    // Fresh queues after the reset; what was written before it is there.
    const q2 = await h.driver.createIoQueuePair({ entries: 8 });
    const back = new Uint8Array(4096);
    await q2.read(1, 0, 1, back);
    expect(Buffer.from(back).equals(Buffer.from(pattern(4096, 1)))).toBe(true);
    await q2.write(1, 2, 1, pattern(4096, 3));
  });

  it('a fatal status the reset does not clear is reported once and the controller is out of service', async () => {
    const { h, failed, resets } = await fatalHarness();
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    // The fault persists: each time the host enables the controller again, it goes fatal again.
    const write32 = h.transport.write32.bind(h.transport);
    h.transport.write32 = (offset, value) => {
      write32(offset, value);
      if (offset === Regs.CC.offset && bitsOf(value, Cc.EN) === 1) h.controller.fail('injected again at enable');
    };

    h.controller.fail('injected');
    const outcomes = await Promise.all(
      [3, 4].map((lba) =>
        q.write(1, lba, 1, pattern(4096, lba)).then(
          () => 'ok',
          (e: NvmqError) => e.code,
        ),
      ),
    );
    for (const o of outcomes) expect(['NVMQ_TIMEOUT', 'NVMQ_CONTROLLER_RESET']).toContain(o);
    await waitFor(() => failed.length === 1, 'the report', 5000);
    expect(failed[0]!.code).toBe('NVMQ_CONTROLLER_FATAL');
    expect(failed[0]!.message).toMatch(/CSTS\.CFS.*a controller reset did not clear it/);
    // Out of service: commands are refused with the reason, and no other reset is tried.
    await expect(h.driver.identifyNamespace(1)).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_FATAL' });
    await expect(h.driver.createIoQueuePair({ entries: 8 })).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_FATAL' });
    await new Promise((r) => setTimeout(r, IO_TIMEOUT_MS * 3));
    expect(resets.count).toBe(1);
    expect(failed).toHaveLength(1);
  });

  it('a controller gone (CSTS all ones) under I/O: the outstanding command still ends, the loss is reported once, close() closes', async () => {
    const failed: NvmqError[] = [];
    const h = await bringUp({ driver: { ioTimeoutMs: IO_TIMEOUT_MS } });
    h.driver.onFailed = (e) => failed.push(e);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    h.controller.fail('injected');
    // From here every register reads all ones, as a device that left the bus.
    const read32 = h.transport.read32.bind(h.transport);
    h.transport.read32 = (offset) => (offset === Regs.CSTS.offset ? 0xffffffff : read32(offset));
    const outcome = await q.write(1, 5, 1, pattern(4096, 5)).then(
      () => 'ok',
      (e: NvmqError) => e.code,
    );
    expect(['NVMQ_TIMEOUT', 'NVMQ_CONTROLLER_RESET']).toContain(outcome);
    await waitFor(() => failed.length === 1, 'the report', 5000);
    expect(failed[0]!.code).toBe('NVMQ_CONTROLLER_GONE');
    expect(failed[0]!.message).toMatch(/^CSTS reads all ones: the controller is gone; a controller reset did not clear it/);
    await expect(h.driver.createIoQueuePair({ entries: 8 })).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_GONE' });
    let closed = false;
    const close = h.transport.close.bind(h.transport);
    h.transport.close = () => {
      closed = true;
      return close();
    };
    await h.driver.close();
    expect(closed).toBe(true);
    expect(failed).toHaveLength(1);
  });
});
