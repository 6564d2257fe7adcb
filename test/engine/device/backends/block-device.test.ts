import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import { bringUp, pattern, sameBytes, tempDir } from '../../../helpers/harness.js';

// A real block device: a loop device over a file in a temp dir (needs root, as CI has).
describe('block device namespace', () => {
  it('refuses a device without force, then reads, writes and deallocates it with force', async () => {
    const t = tempDir();
    const img = path.join(t.dir, 'backing.img');
    fs.writeFileSync(img, Buffer.alloc(8 << 20, 0xee));
    const dev = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    try {
      expect(fs.statSync(dev).isBlockDevice()).toBe(true);
      expect(() => new FileBackend({ path: dev })).toThrow(/refusing to write/);
      const backend = new FileBackend({ path: dev, force: true });
      expect(backend.size).toBe(8 << 20);
      expect(backend.image.blockDevice).toBe(true);
      const h = await bringUp({ namespaces: [{ backend, lbaSize: 512 }] });
      try {
        expect(h.driver.namespaces.get(1)!.blocks).toBe((8 << 20) / 512);
        const q = await h.driver.createIoQueuePair({ entries: 16 });
        const data = pattern(64 * 1024, 5);
        await q.write(1, 2048, 128, data, { fua: true });
        const back = new Uint8Array(data.length);
        await q.read(1, 2048, 128, back);
        expect(sameBytes(back, data)).toBe('equal');
        await q.writeZeroes(1, 2048, 8);
        await q.read(1, 2048, 128, back);
        expect(back.subarray(0, 4096).every((b) => b === 0)).toBe(true);
        expect(sameBytes(back.subarray(4096), data.subarray(4096))).toBe('equal');
        // The last block is addressable, one past it is not.
        await q.write(1, (8 << 20) / 512 - 1, 1, pattern(512, 1));
        await expect(q.write(1, (8 << 20) / 512, 1, pattern(512, 1))).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
      } finally {
        await h.close();
      }
      // Everything reached the backing file through the device.
      const onDisk = fs.readFileSync(img);
      expect(onDisk.subarray(2048 * 512, 2049 * 512 + 3584).every((b) => b === 0)).toBe(true);
      expect(sameBytes(onDisk.subarray(2048 * 512 + 4096, 2048 * 512 + 65536), pattern(64 * 1024, 5).subarray(4096))).toBe('equal');
      expect(onDisk[0]).toBe(0xee);
    } finally {
      execFileSync('losetup', ['--detach', dev]);
      t.cleanup();
    }
  });
});
