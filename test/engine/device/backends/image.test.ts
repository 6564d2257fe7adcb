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
import { Engine } from '../../../../src/engine/engine.js';
import { loadNative } from '../../../../src/engine/native.js';
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
      expectCleanFailure(dir(), () => new FileBackend({ path: path.join(dir(), 'a.img'), size: 1 << 20, direct: true }), 'NVMQ_DIRECT_UNSUPPORTED');
      return;
    }
    const mnt = dir();
    execFileSync('mount', ['-t', 'ramfs', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    fs.writeFileSync(path.join(mnt, 'keep.txt'), 'x');
    const err = expectCleanFailure(mnt, () => new FileBackend({ path: path.join(mnt, 'a', 'b', 'c.img'), size: 1 << 20, direct: true }), 'NVMQ_DIRECT_UNSUPPORTED', /refuses O_DIRECT/);
    expect(err.message).toContain(path.join(mnt, 'a', 'b', 'c.img'));
  });

  it('a failure after the image is made (its sidecar cannot be written) removes the image and the directories', () => {
    const d = populated();
    const img = path.join(d, 'new', 'a.img');
    // Only the sidecar's name is taken, by a directory: everything before it succeeds.
    fs.mkdirSync(path.join(d, 'new'));
    fs.mkdirSync(img + '.nvmq.json');
    const before = treeOf(d);
    expect(() => new FileBackend({ path: img, size: 1 << 20 })).toThrow(/EISDIR/);
    expect(treeOf(d)).toEqual(before);
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
