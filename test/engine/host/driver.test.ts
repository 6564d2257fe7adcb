import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bringUp, memoryNamespace, pattern, sameBytes, tempDirsPerTest, tick, stalledDevice, DATA_PATHS, type Harness } from '../../helpers/harness.js';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import { NvmqError } from '../../../src/engine/errors.js';
import { Regs, Csts, Cc } from '../../../src/engine/spec/registers.js';
import { bitsOf } from '../../../src/engine/spec/layout.js';
import { openController } from '../../../src/engine/local-device.js';

const mk = tempDirsPerTest();
let h: Harness | undefined;
afterEach(async () => {
  await h?.close().catch(() => {});
  h = undefined;
});

describe('bring-up', () => {
  it('follows the initialization sequence and identifies controller and namespaces', async () => {
    h = await bringUp({ namespaces: [memoryNamespace(8 << 20, 4096), memoryNamespace(4 << 20, 512)] });
    const { driver, transport } = h;
    const csts = transport.read32(Regs.CSTS.offset);
    expect(bitsOf(csts, Csts.RDY)).toBe(1);
    expect(bitsOf(csts, Csts.CFS)).toBe(0);
    const cc = transport.read32(Regs.CC.offset);
    expect(bitsOf(cc, Cc.EN)).toBe(1);
    expect(bitsOf(cc, Cc.IOSQES)).toBe(6);
    expect(bitsOf(cc, Cc.IOCQES)).toBe(4);
    expect(driver.controller.version).toBe('1.4.0');
    expect(driver.controller.nn).toBe(2);
    expect(driver.controller.maxTransferBytes).toBe(512 * 1024);
    expect([...driver.namespaces.keys()]).toEqual([1, 2]);
    expect(driver.namespaces.get(1)).toMatchObject({ lbaSize: 4096, blocks: 2048 });
    expect(driver.namespaces.get(2)).toMatchObject({ lbaSize: 512, blocks: 8192 });
  });

  it('brings up a controller that was left enabled (reset first)', async () => {
    h = await bringUp();
    const again = await (await import('../../../src/engine/host/driver.js')).NvmeDriver.attach(h.transport);
    expect(again.namespaces.size).toBe(1);
    // The first driver's queues died with the reset the second one did.
    h = { ...h, driver: again, close: () => again.close() };
  });

  it('clears interrupt masks a previous user left set: completions still raise their vector', async () => {
    const { makeController } = await import('../../helpers/harness.js');
    const { NvmeDriver } = await import('../../../src/engine/host/driver.js');
    const m = makeController();
    m.transport.write32(Regs.INTMS.offset, 0xffffffff); // set while the controller is disabled
    const driver = await NvmeDriver.attach(m.transport);
    h = { ...m, driver, close: () => driver.close() };
    expect(m.transport.read32(Regs.INTMS.offset)).toBe(0);
    const qp = await driver.createIoQueuePair({ entries: 8 });
    let raised = 0;
    const handler = m.controller.interrupts.onInterrupt;
    m.controller.interrupts.onInterrupt = (v) => {
      if (v === 1) raised++;
      handler(v);
    };
    await qp.write(1, 0, 1, pattern(4096, 1));
    expect(raised).toBeGreaterThan(0);
  });

  it('asks for the requested number of I/O queues and is granted at most the maximum', async () => {
    h = await bringUp({ controller: { maxIoQueues: 4 }, driver: { ioQueues: 16 } });
    expect(h.driver.grantedIoQueues).toBe(4);
    const qs = [];
    for (let i = 0; i < 4; i++) qs.push(await h.driver.createIoQueuePair({ entries: 8 }));
    expect(qs.map((q) => q.qid)).toEqual([1, 2, 3, 4]);
    await expect(h.driver.createIoQueuePair()).rejects.toMatchObject({ code: 'NVMQ_NO_QUEUE' });
  });

  it('sets the volatile write cache feature', async () => {
    h = await bringUp({ driver: { volatileWriteCache: false } });
    expect(await h.driver.getFeature(0x06)).toBe(0);
    await h.driver.setVolatileWriteCache(true);
    expect(await h.driver.getFeature(0x06)).toBe(1);
  });
});

describe('admin queue transfers', () => {
  /** Get Log Page, Commands Supported and Effects (05h), `bytes` long: the 4 KiB log, zeros past it. */
  const effectsLog = (bytes: number) => ({ opcode: 0x02, nsid: 0, cdw10: (0x05 | (((bytes / 4 - 1) & 0xffff) << 16)) >>> 0, cdw11: (bytes / 4 - 1) >>> 16 });

  it.each([
    [7, 512 * 1024],
    [8, 1024 * 1024],
  ])('go up to the controller\'s MDTS (MDTS %d: %d bytes), through passthrough and log pages, and after a reset', async (mdts, limit) => {
    h = await bringUp({ controller: { mdts }, arenaSize: 64 << 20 });
    expect(h.driver.controller.maxTransferBytes).toBe(limit);
    const log = await h.driver.getLogPage(0x05, 4096);
    // Identify (06h) is supported: CSUPP set in its entry.
    expect(log[0x06 * 4]! & 1).toBe(1);
    for (const round of ['first', 'after reset']) {
      const big = new Uint8Array(limit);
      const c = await h.driver.adminPassthru(effectsLog(limit), { buffer: big, direction: 'from-device' });
      expect(c.status, round).toBe(0);
      expect(sameBytes(big.subarray(0, 4096), log), round).toBe('equal');
      expect(big.subarray(4096).every((b) => b === 0), round).toBe(true);
      expect((await h.driver.getLogPage(0x05, limit)).length, round).toBe(limit);
      await expect(h.driver.adminPassthru(effectsLog(limit + 4096), { buffer: new Uint8Array(limit + 4096), direction: 'from-device' })).rejects.toMatchObject({
        code: 'NVMQ_INVALID_ARGUMENT',
        message: `data.buffer must be at most ${limit} bytes (the queue's maximum transfer), got a Uint8Array of ${limit + 4096} bytes`,
      });
      await h.driver.reset();
    }
  });

  it('a raw admin SQE with a data buffer gets its PRPs from it (Identify Controller)', async () => {
    h = await bringUp();
    const sqe = new Uint8Array(64);
    sqe[0] = 0x06;
    sqe[40] = 0x01;
    const buffer = new Uint8Array(4096);
    const c = await h.driver.adminPassthru({ raw: sqe }, { buffer, direction: 'from-device' });
    expect(c.status).toBe(0);
    expect(sameBytes(buffer, await h.driver.identify(0x01, 0))).toBe('equal');
  });
});

describe('reset and shutdown', () => {
  it.each(DATA_PATHS)('reset with I/O in flight fails every request and needs no completion (%s)', async (dataPath) => {
    const dir = mk();
    const device = stalledDevice(dataPath, dir, 8 << 20);
    h = await bringUp({ namespaces: [{ backend: new FileBackend(device.options), lbaSize: 4096 }], controller: { dataPath } });
    const q = await h.driver.createIoQueuePair({ entries: 32 });
    const inflight = Array.from({ length: 24 }, (_, i) => q.read(1, i * 8, 8, new Uint8Array(8 * 4096)).then(() => 'done', (e: NvmqError) => e.code));
    await h.driver.reset();
    const results = await Promise.all(inflight);
    // All 24 were handed to libuv (or are waiting in the ring) before the reset, so none can have completed.
    expect(results).toEqual(Array(24).fill('NVMQ_CONTROLLER_RESET'));
    expect(bitsOf(h.transport.read32(Regs.CSTS.offset), Csts.RDY)).toBe(1);
    // The old queue is dead, a new one works.
    await expect(q.flush(1)).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_RESET' });
    const q2 = await h.driver.createIoQueuePair({ entries: 8 });
    await q2.write(1, 0, 1, pattern(4096, 1));
    await h.driver.close();
    device.close();
  });

  it('shutdown flushes, reports SHST complete and leaves data on disk', async () => {
    const dir = mk();
    const file = path.join(dir, 's.img');
    h = await bringUp({ namespaces: [{ backend: new FileBackend({ path: file, size: 4 << 20 }), lbaSize: 512 }] });
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    await q.write(1, 3, 8, pattern(4096, 9));
    await h.driver.shutdown();
    expect(bitsOf(h.transport.read32(Regs.CC.offset), Cc.SHN)).toBe(1);
    expect(bitsOf(h.transport.read32(Regs.CSTS.offset), Csts.RDY)).toBe(0);
    await expect(h.driver.smartLog()).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_DOWN' });
    await h.transport.close();
    h = undefined;
    expect(new Uint8Array(fs.readFileSync(file).subarray(3 * 512, 3 * 512 + 4096))).toEqual(pattern(4096, 9));
  });

  it('reports async events to onAsyncEvent', async () => {
    const events: unknown[] = [];
    h = await bringUp({ driver: { onAsyncEvent: (e) => events.push(e) } });
    // SQ 9 does not exist: a write to an invalid doorbell register.
    h.transport.write32(0x1000 + 2 * 9 * 4, 1);
    await tick();
    expect(events).toEqual([{ type: 0, info: 0, logPage: 1 }]);
  });
});

describe('openController', () => {
  it('creates a file namespace, refuses a foreign file without force, and opens it with force', async () => {
    const dir = mk();
    const foreign = path.join(dir, 'foreign.img');
    fs.writeFileSync(foreign, Buffer.alloc(1 << 20, 0x5a));
    await expect(openController({ namespaces: [{ backend: 'file', path: foreign }] })).rejects.toMatchObject({ code: 'NVMQ_REFUSING_TO_OVERWRITE' });
    expect(fs.readFileSync(foreign).every((b) => b === 0x5a)).toBe(true);
    const d = await openController({ namespaces: [{ backend: 'file', path: foreign, force: true }] });
    expect(d.namespaces.get(1)!.blocks).toBe(256);
    await d.close();
    const mine = path.join(dir, 'mine.img');
    const d2 = await openController({ namespaces: [{ backend: 'file', path: mine, size: 1 << 20 }] });
    await d2.close();
    expect(fs.existsSync(mine + '.nvmq.json')).toBe(true);
    const d3 = await openController({ namespaces: [{ backend: 'file', path: mine }] });
    await d3.close();
  });
});
