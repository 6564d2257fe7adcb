import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openController } from '../../../src/engine/local.js';
import type { NvmeDriver } from '../../../src/engine/host/driver.js';

let driver: NvmeDriver | undefined;
afterEach(async () => {
  await driver?.close();
  driver = undefined;
});

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

describe('data round trips', () => {
  for (const lbaSize of [512, 4096] as const) {
    it(`memory namespace, ${lbaSize}-byte blocks`, async () => {
      driver = await openController({ namespaces: [{ backend: 'memory', size: 8 << 20, lbaSize }] });
      const q = await driver.createIoQueuePair({ entries: 16 });
      const ns = driver.namespaces.get(1)!;
      expect(ns.lbaSize).toBe(lbaSize);
      expect(ns.blocks).toBe((8 << 20) / lbaSize);
      const nlb = (64 * 1024) / lbaSize;
      const data = pattern(nlb * lbaSize, 1);
      await q.write(1, 10, nlb, data);
      const back = new Uint8Array(data.length);
      await q.read(1, 10, nlb, back);
      expect(back).toEqual(data);
    });
  }

  it('file namespace', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-'));
    const file = path.join(dir, 'ns.img');
    driver = await openController({ namespaces: [{ backend: 'file', path: file, size: 16 << 20 }] });
    const q = await driver.createIoQueuePair();
    const data = pattern(8 * 4096, 3);
    await q.write(1, 100, 8, data, { fua: true });
    await q.flush(1);
    const back = new Uint8Array(data.length);
    await q.read(1, 100, 8, back);
    expect(back).toEqual(data);
    const onDisk = fs.readFileSync(file).subarray(100 * 4096, 108 * 4096);
    expect(new Uint8Array(onDisk)).toEqual(data);
  });
});
