import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadNative, nativeStatus, type NativeBinding } from '../../../src/engine/uring/native.js';
import { dataPathStatus, resolveDataPath } from '../../../src/engine/uring/data-path.js';

const EBADF = -9;
const EINVAL = -22;
const EOPNOTSUPP = -95;

// NVMQ_SKIP_NATIVE=1 means the install step deliberately skipped the addon
// build (the fallback-path CI job). Otherwise the addon must be present.
const skipNative = process.env.NVMQ_SKIP_NATIVE === '1';

function mustLoad(): NativeBinding {
  const n = loadNative();
  if (n === null) {
    throw new Error(
      `native addon not loaded (${nativeStatus().reason}); run npm install, or set NVMQ_SKIP_NATIVE=1 to test the fallback`,
    );
  }
  return n;
}

/** Non-zero pattern: byte i is (i % 251) + 1, never 0. */
function pattern(len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i % 251) + 1;
  return b;
}

describe('native addon availability', () => {
  if (skipNative) {
    it('is not loaded when NVMQ_SKIP_NATIVE=1', () => {
      expect(loadNative()).toBeNull();
      const st = nativeStatus();
      expect(st.loaded).toBe(false);
      expect(st.reason).toMatch(/not built/);
    });
  } else {
    it('is built and loads', () => {
      const n = mustLoad();
      expect(typeof n.fallocate).toBe('function');
      expect(nativeStatus()).toEqual({ loaded: true });
      expect(loadNative()).toBe(n); // cached
    });
  }

  it('NVMQ_DISABLE_NATIVE=1 forces the portable path', () => {
    const prev = process.env.NVMQ_DISABLE_NATIVE;
    process.env.NVMQ_DISABLE_NATIVE = '1';
    try {
      expect(loadNative()).toBeNull();
      expect(nativeStatus()).toEqual({ loaded: false, reason: 'disabled by NVMQ_DISABLE_NATIVE=1' });
    } finally {
      if (prev === undefined) delete process.env.NVMQ_DISABLE_NATIVE;
      else process.env.NVMQ_DISABLE_NATIVE = prev;
    }
    expect(loadNative() === null).toBe(skipNative);
  });
});

describe.skipIf(skipNative)('native fallocate on a real file', () => {
  const SIZE = 1024 * 1024;
  const HOLE_OFF = 256 * 1024;
  const HOLE_LEN = 512 * 1024;
  let dir: string;
  let file: string;
  let fd: number;
  let data: Buffer;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-native-'));
    file = path.join(dir, 'data.bin');
    data = pattern(SIZE);
    fs.writeFileSync(file, data);
    fd = fs.openSync(file, 'r+');
    fs.fsyncSync(fd);
  });

  afterEach(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function readAll(): Buffer {
    return fs.readFileSync(file);
  }

  /** Asserts [off, off+len) is zero and everything else equals the original pattern. */
  function expectZeroedRange(buf: Buffer, off: number, len: number): void {
    expect(buf.length).toBe(SIZE);
    expect(buf.subarray(0, off).equals(data.subarray(0, off))).toBe(true);
    expect(buf.subarray(off, off + len).equals(Buffer.alloc(len))).toBe(true);
    expect(buf.subarray(off + len).equals(data.subarray(off + len))).toBe(true);
  }

  it.runIf(process.platform === 'linux')('exposes the Linux FALLOC_FL_* values', () => {
    const n = mustLoad();
    expect(n.FALLOC_FL_KEEP_SIZE).toBe(0x01);
    expect(n.FALLOC_FL_PUNCH_HOLE).toBe(0x02);
    expect(n.FALLOC_FL_ZERO_RANGE).toBe(0x10);
  });

  // When the file system lacks a mode (ZERO_RANGE on tmpfs, say) the call reports EOPNOTSUPP exactly and leaves the data untouched.
  const zeroing: Array<[string, (n: NativeBinding) => number, number, number]> = [
    ['PUNCH_HOLE|KEEP_SIZE zeroes the range, keeps the rest and the size', (n) => n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE, HOLE_OFF, HOLE_LEN],
    ['PUNCH_HOLE|KEEP_SIZE zeroes an unaligned range exactly', (n) => n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE, 4096 * 3 + 123, 4096 * 5 + 77],
    ['ZERO_RANGE zeroes the range, keeps the rest and the size', (n) => n.FALLOC_FL_ZERO_RANGE, HOLE_OFF, HOLE_LEN],
  ];
  it.each(zeroing)('%s', (_name, mode, off, len) => {
    const n = mustLoad();
    const rc = n.fallocate(fd, mode(n), off, len);
    if (rc === EOPNOTSUPP) {
      expect(readAll().equals(data)).toBe(true);
      return;
    }
    expect(rc).toBe(0);
    expect(fs.fstatSync(fd).size).toBe(SIZE);
    expectZeroedRange(readAll(), off, len);
  });

  it('mode 0 past EOF grows the file; KEEP_SIZE past EOF does not', () => {
    const n = mustLoad();
    expect(n.fallocate(fd, n.FALLOC_FL_KEEP_SIZE, SIZE, 64 * 1024)).toBe(0);
    expect(fs.fstatSync(fd).size).toBe(SIZE);
    expect(n.fallocate(fd, 0, SIZE, 64 * 1024)).toBe(0);
    expect(fs.fstatSync(fd).size).toBe(SIZE + 64 * 1024);
    const buf = readAll();
    expect(buf.subarray(0, SIZE).equals(data)).toBe(true);
    expect(buf.subarray(SIZE).equals(Buffer.alloc(64 * 1024))).toBe(true);
  });

  it('returns negative errno for kernel errors instead of throwing', () => {
    const n = mustLoad();
    expect(n.fallocate(999999, 0, 0, 4096)).toBe(EBADF);
    expect(n.fallocate(-1, 0, 0, 4096)).toBe(EBADF);
    expect(n.fallocate(fd, 0, -4096, 4096)).toBe(EINVAL); // negative offset
    expect(n.fallocate(fd, 0, 0, 0)).toBe(EINVAL); // zero length
    // PUNCH_HOLE without KEEP_SIZE is rejected by the VFS.
    expect(n.fallocate(fd, n.FALLOC_FL_PUNCH_HOLE, 0, 4096)).toBe(EOPNOTSUPP);
    const ro = fs.openSync(file, 'r');
    try {
      expect(n.fallocate(ro, 0, 0, 4096)).toBe(EBADF); // not open for writing
    } finally {
      fs.closeSync(ro);
    }
    expect(readAll().equals(data)).toBe(true);
  });

  it('throws TypeError for bad argument types and RangeError for non-integers', () => {
    const n = mustLoad();
    const f = n.fallocate as unknown as (...args: unknown[]) => unknown;
    expect(() => f(String(fd), 0, 0, 4096)).toThrow(TypeError);
    expect(() => f(fd, 0, 0n, 4096)).toThrow(TypeError);
    expect(() => f(fd, null, 0, 4096)).toThrow(TypeError);
    expect(() => f(fd, 0, 0)).toThrow(TypeError);
    expect(() => f()).toThrow(TypeError);
    expect(() => f(fd, 0, 0.5, 4096)).toThrow(RangeError);
    expect(() => f(fd, 0, 0, Number.NaN)).toThrow(RangeError);
    expect(() => f(fd, 0, 0, Infinity)).toThrow(RangeError);
    expect(() => f(2 ** 31, 0, 0, 4096)).toThrow(RangeError);
    expect(() => f(fd, 0, 2 ** 53, 4096)).toThrow(RangeError);
    expect(readAll().equals(data)).toBe(true);
  });
});

// The data path file namespaces take. CI runs the suite with io_uring (it installs liburing-dev), then the
// fallback variants: NVMQ_NO_URING=1 (addon built without liburing) and NVMQ_SKIP_NATIVE=1 (no addon).
describe('data path', () => {
  afterEach(() => {
    delete process.env.NVMQ_DISABLE_NATIVE;
  });

  it('is io_uring where liburing and the kernel allow it, else portable with the reason', () => {
    const st = dataPathStatus();
    if (skipNative) expect(st).toMatchObject({ path: 'portable', reason: expect.stringMatching(/not built/) });
    else if (process.env.NVMQ_NO_URING === '1') expect(st).toMatchObject({ path: 'portable', reason: expect.stringMatching(/without liburing/) });
    else if (process.env.CI) expect(st).toEqual({ path: 'io_uring' });
    else expect(['io_uring', 'portable']).toContain(st.path);
    expect(st.path === 'io_uring').toBe(loadNative()?.ioUring === true && st.reason === undefined);
  });

  it('io_uring asked for but unavailable is an error; auto falls back to the portable path', () => {
    process.env.NVMQ_DISABLE_NATIVE = '1';
    expect(dataPathStatus()).toMatchObject({ path: 'portable', reason: expect.stringContaining('NVMQ_DISABLE_NATIVE') });
    expect(() => resolveDataPath('io_uring')).toThrow(expect.objectContaining({ code: 'NVMQ_IO_URING_UNAVAILABLE' }));
    expect(resolveDataPath('auto')).toBe('portable');
    expect(resolveDataPath('portable')).toBe('portable');
  });
});

describe.skipIf(skipNative)('copyBytes', () => {
  it('copies between shared and plain memory at the views\' own offsets', () => {
    const { copyBytes } = mustLoad();
    const shared = new Uint8Array(new SharedArrayBuffer(8192)).subarray(100);
    const plain = pattern(5000).subarray(10);
    copyBytes!(shared, 50, plain, 20, 4096);
    expect(Buffer.from(shared.subarray(50, 4146)).equals(plain.subarray(20, 4116))).toBe(true);
    expect(shared.subarray(0, 50).every((x) => x === 0) && shared.subarray(4146).every((x) => x === 0)).toBe(true);
    const back = new Uint8Array(4096);
    copyBytes!(back, 0, shared, 50, 4096);
    expect(Buffer.from(back).equals(plain.subarray(20, 4116))).toBe(true);
  });

  it('refuses a range outside either view, or what is not a Uint8Array, copying nothing', () => {
    const { copyBytes } = mustLoad();
    const dst = new Uint8Array(100);
    const src = pattern(100);
    expect(() => copyBytes!(dst, 1, src, 0, 100)).toThrow(RangeError);
    expect(() => copyBytes!(dst, 0, src, 1, 100)).toThrow(RangeError);
    expect(() => copyBytes!(dst, -1, src, 0, 10)).toThrow(RangeError);
    expect(() => copyBytes!(dst, 0.5, src, 0, 10)).toThrow(RangeError);
    expect(() => copyBytes!(dst, 0, src, 0, NaN)).toThrow(RangeError);
    expect(() => copyBytes!(new Uint16Array(10) as unknown as Uint8Array, 0, src, 0, 10)).toThrow(TypeError);
    expect(() => copyBytes!(dst, '0' as unknown as number, src, 0, 10)).toThrow(TypeError);
    expect(dst.every((x) => x === 0)).toBe(true);
  });
});
