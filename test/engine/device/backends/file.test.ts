import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import { loadNative } from '../../../../src/engine/uring/native.js';
import { bringUp, pattern, sameBytes, tempDir } from '../../../helpers/harness.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  delete process.env.NVMQ_DISABLE_NATIVE;
  for (const c of cleanups.splice(0).reverse()) c();
});

function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

async function fillThenClear(file: string, how: 'zeroes' | 'deallocate'): Promise<{ before: number; after: number; data: Buffer }> {
  const h = await bringUp({ namespaces: [{ backend: new FileBackend({ path: file, size: 8 << 20 }), lbaSize: 4096 }] });
  try {
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    for (let i = 0; i < 8; i++) await q.write(1, i * 128, 128, pattern(512 * 1024, i));
    await q.flush(1);
    const before = fs.statSync(file).blocks;
    if (how === 'zeroes') await q.writeZeroes(1, 256, 512, { deallocate: true });
    else await q.deallocate(1, [{ slba: 256, nlb: 256 }, { slba: 512, nlb: 256 }]);
    await q.flush(1);
    return { before, after: fs.statSync(file).blocks, data: fs.readFileSync(file) };
  } finally {
    await h.close();
  }
}

function checkCleared(data: Buffer): void {
  // LBAs 256..767 read as zero; the blocks around them keep their data.
  expect(sameBytes(data.subarray(256 * 4096, 768 * 4096), new Uint8Array(512 * 4096))).toBe('equal');
  expect(sameBytes(data.subarray(0, 128 * 4096), pattern(512 * 1024, 0))).toBe('equal');
  expect(sameBytes(data.subarray(768 * 4096, 896 * 4096), pattern(512 * 1024, 6))).toBe('equal');
}

describe('file backend', () => {
  it('punches holes for Deallocate and Write Zeroes with DEAC when the native addon is loaded', async () => {
    if (!loadNative()) {
      expect(process.env.NVMQ_SKIP_NATIVE).toBe('1');
      return;
    }
    for (const how of ['zeroes', 'deallocate'] as const) {
      const r = await fillThenClear(path.join(dir(), `${how}.img`), how);
      checkCleared(r.data);
      // 2 MiB of 8 went back to the file system.
      expect(r.before - r.after).toBeGreaterThanOrEqual((2 << 20) / 512);
    }
  });

  it('falls back to writing zeroes without the native addon', async () => {
    process.env.NVMQ_DISABLE_NATIVE = '1';
    expect(loadNative()).toBeNull();
    for (const how of ['zeroes', 'deallocate'] as const) {
      const r = await fillThenClear(path.join(dir(), `${how}.img`), how);
      checkCleared(r.data);
      expect(r.after).toBeGreaterThanOrEqual(r.before);
    }
  });

  it('opens an existing image read-only without force and refuses writes with Namespace Is Write Protected', async () => {
    const file = path.join(dir(), 'ro.bin');
    fs.writeFileSync(file, Buffer.alloc(1 << 20, 3));
    const h = await bringUp({ namespaces: [{ backend: new FileBackend({ path: file, readOnly: true }), lbaSize: 512 }] });
    try {
      const q = await h.driver.createIoQueuePair({ entries: 4 });
      const b = new Uint8Array(512);
      await q.read(1, 7, 1, b);
      expect(b.every((x) => x === 3)).toBe(true);
      await expect(q.write(1, 7, 1, b.fill(9))).rejects.toMatchObject({ code: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
      await expect(q.writeZeroes(1, 0, 1)).rejects.toMatchObject({ code: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
      await expect(q.deallocate(1, [{ slba: 0, nlb: 1 }])).rejects.toMatchObject({ code: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
    } finally {
      await h.close();
    }
    expect(fs.readFileSync(file).every((x) => x === 3)).toBe(true);
  });
});
