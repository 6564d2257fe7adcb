// Opening images: a failed open leaves the directory exactly as it was, discard() takes back a successful
// one, read-only opens create nothing, and bad arguments are one-line errors with stable codes.
// Real files, real directories, a real tmpfs (root, as CI has).
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import { MemoryBackend } from '../../../../src/engine/device/backends/memory.js';
import { ImageError } from '../../../../src/engine/device/backends/backend.js';
import { openImage, closeImage, isNvmqImage } from '../../../../src/engine/device/backends/image.js';
import { NvmqError } from '../../../../src/engine/errors.js';
import { openController } from '../../../../src/engine/local-device.js';
// Engine runs its workers from the build (worker threads cannot run TypeScript): tests take it from there too.
import { Engine } from '../../../../dist/index.js';
import { loadNative } from '../../../../src/engine/uring/native.js';
import { bringUp, scratch, treeOf } from '../../../helpers/harness.js';

const { cleanups, dir } = scratch();

/** A directory with some unrelated content, so "as before" means more than "empty". */
function populated(): string {
  const d = dir();
  fs.writeFileSync(path.join(d, 'keep.txt'), 'not nvmq\n');
  fs.mkdirSync(path.join(d, 'existing'));
  return d;
}

/** Runs `open`, expects it to throw an error with `code` (and a one-line message matching `message`), and the tree to be unchanged. */
function expectCleanFailure(d: string, open: () => unknown, code: string, message?: RegExp): ImageError {
  const before = treeOf(d);
  let caught: unknown;
  try {
    open();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ImageError);
  expect(caught).toBeInstanceOf(NvmqError);
  const err = caught as ImageError;
  expect(err.code).toBe(code);
  expect(err.message).not.toContain('\n');
  if (message) expect(err.message).toMatch(message);
  expect(treeOf(d)).toEqual(before);
  return err;
}

describe('a failed open leaves the directory as it was', () => {
  it('bad arguments are refused before anything is created, each with a code, the argument and its range', () => {
    const d = populated();
    const img = path.join(d, 'new', 'deeper', 'a.img');
    const max4k = Math.floor(Number.MAX_SAFE_INTEGER / 4096) * 4096;
    expectCleanFailure(d, () => new FileBackend({ path: img, size: 1 << 20, lbaSize: 1000 }), 'NVMQ_INVALID_ARGUMENT', /^lbaSize must be 512 or 4096, got 1000$/);
    expectCleanFailure(d, () => new FileBackend({ path: img, size: 6000, lbaSize: 4096 }), 'NVMQ_INVALID_ARGUMENT', new RegExp(`^size must be a whole number of 4096-byte LBAs, 4096\\.\\.${max4k} bytes, got 6000$`));
    // A size too small for the LBA size.
    expectCleanFailure(d, () => new FileBackend({ path: img, size: 512, lbaSize: 4096 }), 'NVMQ_INVALID_ARGUMENT', /got 512$/);
    for (const size of [0, -4096, 1.5, Number.NaN, 2 ** 60]) {
      expectCleanFailure(d, () => new FileBackend({ path: img, size }), 'NVMQ_INVALID_ARGUMENT', /^size must be a whole number of 512-byte LBAs/);
    }
    for (const defaultSize of [0, -1, 0.5]) {
      expectCleanFailure(d, () => new FileBackend({ path: img, defaultSize }), 'NVMQ_INVALID_ARGUMENT', /^defaultSize must be 1\.\.\d+ bytes/);
    }
    expectCleanFailure(d, () => new FileBackend({ path: img }), 'NVMQ_INVALID_ARGUMENT', /needs size/);
  });

  it('a file too small for one LBA, a size mismatch and a foreign file are refused and leave no lock behind', async () => {
    const d = populated();
    const small = path.join(d, 'small.img');
    fs.writeFileSync(small, Buffer.alloc(100));
    fs.writeFileSync(small + '.nvmq.json', JSON.stringify({ format: 'nvmq-image', version: 1, size: 100 }));
    expectCleanFailure(d, () => new FileBackend({ path: small }), 'NVMQ_IMAGE_TOO_SMALL', /small\.img is 100 bytes: it holds no 512-byte LBA$/);
    expectCleanFailure(d, () => new FileBackend({ path: small, readOnly: true }), 'NVMQ_IMAGE_TOO_SMALL');
    const img = path.join(d, 'a.img');
    await new FileBackend({ path: img, size: 1 << 20 }).close();
    expectCleanFailure(d, () => new FileBackend({ path: img, size: 2 << 20 }), 'NVMQ_IMAGE_SIZE_MISMATCH', /is 1048576 bytes, not the 2097152 asked for$/);
    expectCleanFailure(d, () => new FileBackend({ path: img, lbaSize: 4096, size: 8192 }), 'NVMQ_IMAGE_SIZE_MISMATCH');
    expectCleanFailure(d, () => new FileBackend({ path: path.join(d, 'keep.txt') }), 'NVMQ_REFUSING_TO_OVERWRITE');
    expectCleanFailure(d, () => new FileBackend({ path: path.join(d, 'existing') }), 'NVMQ_INVALID_ARGUMENT', /neither a regular file nor a block device/);
  });

  it('a file system that refuses O_DIRECT: the image, its sidecar and the directories made for it are removed', () => {
    if (!loadNative()) {
      // Without the addon direct: true is refused before anything is touched.
      const d = populated();
      expectCleanFailure(d, () => new FileBackend({ path: path.join(d, 'new', 'a.img'), size: 1 << 20, direct: true }), 'NVMQ_DIRECT_UNSUPPORTED');
      return;
    }
    const mnt = dir();
    execFileSync('mount', ['-t', 'ramfs', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    fs.writeFileSync(path.join(mnt, 'keep.txt'), 'x');
    const err = expectCleanFailure(mnt, () => new FileBackend({ path: path.join(mnt, 'a', 'b', 'c.img'), size: 1 << 20, direct: true }), 'NVMQ_DIRECT_UNSUPPORTED', /refuses O_DIRECT/);
    expect(err.message).toContain(path.join(mnt, 'a', 'b', 'c.img'));
  });

  it('a failure after the image is made (its sidecar cannot be created) removes the image and the lock', () => {
    // A tmpfs with inodes for its root, the lock and the image only: creating the sidecar fails with ENOSPC.
    const mnt = dir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=3', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    expect(() => new FileBackend({ path: path.join(mnt, 'a.img'), size: 1 << 20 })).toThrow(/ENOSPC/);
    expect(treeOf(mnt)).toEqual({});
  });

  it('openController and Engine.open with a bad namespace leave nothing behind', async () => {
    const d = populated();
    const img = path.join(d, 'data', 'ns1.img');
    const before = treeOf(d);
    await expect(openController({ namespaces: [{ backend: 'file', path: img, size: 1 << 20, lbaSize: 1000 as 4096 }] })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    await expect(openController({ namespaces: [{ backend: 'file', path: img, size: 512, lbaSize: 4096 }] })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    await expect(Engine.open({ workers: 1, metrics: false, namespaces: [{ backend: 'file', path: img, size: 1 << 20, lbaSize: 1000 as 4096 }] })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    expect(treeOf(d)).toEqual(before);
  });
});

describe('a sidecar beside a missing image is never written over or removed', () => {
  const SIDECAR_EXISTS = /^(\S+) does not exist but \1\.nvmq\.json does: nvmq will not replace or remove a file it did not create; .*remove it, or use another path$/;

  it.each([
    ['a stale sidecar (its image deleted by hand)', (sc: string) => fs.writeFileSync(sc, JSON.stringify({ format: 'nvmq-image', version: 1, size: 4096 }))],
    ['a file that is not a sidecar', (sc: string) => fs.writeFileSync(sc, 'precious, not nvmq\'s\n')],
    ['a directory', (sc: string) => fs.mkdirSync(sc)],
  ] as const)('%s is refused with NVMQ_IMAGE_SIDECAR_EXISTS and survives byte for byte', async (_what, make) => {
    const d = populated();
    const img = path.join(d, 'a.img');
    make(img + '.nvmq.json');
    const err = expectCleanFailure(d, () => new FileBackend({ path: img, size: 1 << 20 }), 'NVMQ_IMAGE_SIDECAR_EXISTS', SIDECAR_EXISTS);
    expect(err.path).toBe(img);
    expect(err.message).toContain(`${img}.nvmq.json`);
    await expect(openController({ namespaces: [{ backend: 'file', path: img, size: 1 << 20 }] })).rejects.toMatchObject({ code: 'NVMQ_IMAGE_SIDECAR_EXISTS' });
    expect(fs.readdirSync(d).sort()).toEqual(['a.img.nvmq.json', 'existing', 'keep.txt']);
    // Once the leftover is removed, as the message says, the image is created as usual.
    fs.rmSync(img + '.nvmq.json', { recursive: true });
    const backend = new FileBackend({ path: img, size: 1 << 20 });
    expect(backend.image.created).toBe(true);
    expect(isNvmqImage(img)).toBe(true);
    await backend.close();
  });

  it('a symlink at the sidecar name: its target is never written, a dangling one never created', () => {
    const d = populated();
    const elsewhere = dir();
    const target = path.join(elsewhere, 'precious.json');
    fs.writeFileSync(target, 'someone else\'s\n');
    const img = path.join(d, 'a.img');
    fs.symlinkSync(target, img + '.nvmq.json');
    const outside = treeOf(elsewhere);
    expectCleanFailure(d, () => new FileBackend({ path: img, size: 1 << 20 }), 'NVMQ_IMAGE_SIDECAR_EXISTS', SIDECAR_EXISTS);
    expect(treeOf(elsewhere)).toEqual(outside);

    const img2 = path.join(d, 'b.img');
    const dangling = path.join(elsewhere, 'not-there.json');
    fs.symlinkSync(dangling, img2 + '.nvmq.json');
    expectCleanFailure(d, () => new FileBackend({ path: img2, size: 1 << 20 }), 'NVMQ_IMAGE_SIDECAR_EXISTS', SIDECAR_EXISTS);
    expect(fs.existsSync(dangling)).toBe(false);
    expect(treeOf(elsewhere)).toEqual(outside);
  });

  it('the normal create path writes a fresh sidecar, and discard() removes that one only', async () => {
    const d = populated();
    const before = treeOf(d);
    const img = path.join(d, 'new', 'a.img');
    const backend = new FileBackend({ path: img, size: 1 << 20 });
    const meta = JSON.parse(fs.readFileSync(img + '.nvmq.json', 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ format: 'nvmq-image', version: 1, size: 1 << 20 });
    expect(fs.lstatSync(img + '.nvmq.json').mode & 0o777).toBe(0o644);
    await backend.discard();
    expect(treeOf(d)).toEqual(before);

    // A sidecar that replaced the one this open created is not this open's: it stays (and so does the directory holding it).
    const again = new FileBackend({ path: img, size: 1 << 20 });
    // (Moved aside, not deleted: a deleted file's inode number could be given to the new one.)
    fs.renameSync(img + '.nvmq.json', path.join(d, 'moved-aside.json'));
    fs.writeFileSync(img + '.nvmq.json', 'replaced\n');
    await again.discard();
    expect(Object.keys(treeOf(d)).sort()).toEqual(['existing', 'keep.txt', 'moved-aside.json', 'new', 'new/a.img.nvmq.json']);
    expect(fs.readFileSync(img + '.nvmq.json', 'utf8')).toBe('replaced\n');
  });
});

describe('discard() undoes an open', () => {
  it('removes an image this open created, its sidecar, its lock and the directories it made', async () => {
    const d = populated();
    const before = treeOf(d);
    const backend = new FileBackend({ path: path.join(d, 'new', 'deeper', 'a.img'), size: 1 << 20 });
    expect(backend.image.created).toBe(true);
    expect(Object.keys(treeOf(d))).toEqual(expect.arrayContaining(['new/deeper/a.img', 'new/deeper/a.img.nvmq.json', 'new/deeper/a.img.nvmq.lock']));
    await backend.discard();
    expect(treeOf(d)).toEqual(before);
    await backend.discard();
    await backend.close();
  });

  it('works after close(), as when a failed open has already closed its controller', async () => {
    const d = populated();
    const before = treeOf(d);
    const backend = new FileBackend({ path: path.join(d, 'new', 'a.img'), size: 1 << 20 });
    // The namespace refuses it (512 bytes hold no 4096-byte block): the open fails after the backend was made.
    const small = new FileBackend({ path: path.join(d, 'new', 'b.img'), size: 512 });
    await expect(bringUp({ namespaces: [{ backend, lbaSize: 4096 }, { backend: small, lbaSize: 4096 }] })).rejects.toThrow(/holds no 4096-byte block/);
    await backend.close();
    await small.close();
    // Last made, first undone: b.img sits in the directory a.img's open made.
    await small.discard();
    await backend.discard();
    expect(treeOf(d)).toEqual(before);
  });

  it('keeps directories that are no longer empty, and an image it did not create', async () => {
    const d = populated();
    const backend = new FileBackend({ path: path.join(d, 'new', 'sub', 'a.img'), size: 1 << 20 });
    fs.writeFileSync(path.join(d, 'new', 'other.txt'), 'someone else');
    await backend.discard();
    expect(Object.keys(treeOf(d)).sort()).toEqual(['existing', 'keep.txt', 'new', 'new/other.txt']);

    const img = path.join(d, 'b.img');
    await new FileBackend({ path: img, size: 1 << 20 }).close();
    const before = treeOf(d);
    const reopened = new FileBackend({ path: img });
    expect(reopened.image.created).toBe(false);
    await reopened.discard();
    expect(treeOf(d)).toEqual(before);
    // Its lock is gone: it opens again.
    await new FileBackend({ path: img }).close();
  });

  it('after prepareDiscard(), close() keeps the claim: nobody can open the image before discard() removes it', async () => {
    const d = populated();
    const before = treeOf(d);
    const img = path.join(d, 'new', 'a.img');
    const backend = new FileBackend({ path: img, size: 1 << 20 });
    backend.prepareDiscard();
    // As when a failed open closes its controller, and with it the backend, before discarding.
    await backend.close();
    expect(backend.descriptor).toBe(-1);
    expect(fs.existsSync(img + '.nvmq.lock')).toBe(true);
    expect(() => new FileBackend({ path: img })).toThrow(expect.objectContaining({ code: 'NVMQ_IMAGE_BUSY' }));
    await backend.discard();
    expect(treeOf(d)).toEqual(before);
    await backend.discard();
  });

  it('prepareDiscard() on an image the open did not create: close() releases as usual', async () => {
    const d = dir();
    const img = path.join(d, 'a.img');
    await new FileBackend({ path: img, size: 1 << 20 }).close();
    const reopened = new FileBackend({ path: img });
    reopened.prepareDiscard();
    await reopened.close();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
    await new FileBackend({ path: img }).close();
    await reopened.discard();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });

  it('after close(), an image someone else has opened since is theirs and stays', async () => {
    const d = dir();
    const img = path.join(d, 'a.img');
    const first = new FileBackend({ path: img, size: 1 << 20 });
    await first.close();
    const second = new FileBackend({ path: img });
    await first.discard();
    expect(isNvmqImage(img)).toBe(true);
    expect(fs.existsSync(img + '.nvmq.lock')).toBe(true);
    await second.close();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });

  it('is close() for memory and for views made from a handle', async () => {
    await new MemoryBackend({ size: 4096 }).discard();
    const d = dir();
    const owner = new FileBackend({ path: path.join(d, 'a.img'), size: 1 << 20 });
    const view = new FileBackend({ handle: owner.handle() as Extract<ReturnType<FileBackend['handle']>, { kind: 'file' }> });
    await view.discard();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json', 'a.img.nvmq.lock']);
    await owner.close();
  });

  it('openImage / closeImage: the claim ends with closeImage', () => {
    const d = dir();
    const img = openImage({ path: path.join(d, 'a.img'), size: 1 << 20 });
    expect(() => openImage({ path: path.join(d, 'a.img') })).toThrow(expect.objectContaining({ code: 'NVMQ_IMAGE_BUSY' }));
    closeImage(img);
    closeImage(openImage({ path: path.join(d, 'a.img') }));
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });
});

describe('read-only opens and missing images', () => {
  it('never create anything: no image, no sidecar, no directory, no lock', async () => {
    const d = populated();
    const before = treeOf(d);
    expectCleanFailure(d, () => new FileBackend({ path: path.join(d, 'missing', 'a.img'), readOnly: true, size: 1 << 20 }), 'NVMQ_IMAGE_NOT_FOUND', /missing\/a\.img does not exist \(read-only: nothing is created\)$/);
    const foreign = path.join(d, 'keep.txt');
    fs.writeFileSync(foreign, Buffer.alloc(4096, 7));
    const snapshot = treeOf(d);
    const ro = new FileBackend({ path: foreign, readOnly: true });
    expect(ro.readOnly).toBe(true);
    expect(treeOf(d)).toEqual(snapshot);
    await ro.discard();
    expect(treeOf(d)).toEqual(snapshot);
    expect(Object.keys(before)).toEqual(Object.keys(snapshot));
  });

  it('create: false on a missing image is NVMQ_IMAGE_NOT_FOUND, in one line, with nothing created', async () => {
    const d = populated();
    const img = path.join(d, 'missing', 'a.img');
    expectCleanFailure(d, () => new FileBackend({ path: img, size: 1 << 20, create: false }), 'NVMQ_IMAGE_NOT_FOUND', new RegExp(`^${img.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} does not exist \\(create: false\\)$`));
    await expect(openController({ namespaces: [{ backend: 'file', path: img, create: false }] })).rejects.toMatchObject({ code: 'NVMQ_IMAGE_NOT_FOUND' });
    expect(fs.existsSync(path.join(d, 'missing'))).toBe(false);
  });
});
