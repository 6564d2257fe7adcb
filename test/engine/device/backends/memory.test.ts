/**
 * The RAM namespace's reads and writes, with the native addon's memmove and
 * with TypedArray.set() (NVMQ_DISABLE_NATIVE=1 when the backend is made):
 * the same bytes land in the same places, nothing outside the range moves,
 * and a range past the end is refused with nothing copied.
 */
import { describe, it, expect } from 'vitest';
import { MemoryBackend } from '../../../../src/engine/device/backends/memory.js';
import { loadNative } from '../../../../src/engine/uring/native.js';
import type { IoDone } from '../../../../src/engine/device/backends/backend.js';

function made(portable: boolean): MemoryBackend {
  const prev = process.env.NVMQ_DISABLE_NATIVE;
  if (portable) process.env.NVMQ_DISABLE_NATIVE = '1';
  try {
    return new MemoryBackend({ size: 1 << 16 });
  } finally {
    if (prev === undefined) delete process.env.NVMQ_DISABLE_NATIVE;
    else process.env.NVMQ_DISABLE_NATIVE = prev;
  }
}

function result(): { done: IoDone; err: () => Error | null | undefined } {
  let e: Error | null | undefined;
  return { done: (x) => { e = x; }, err: () => e };
}

const paths = [['TypedArray.set()', true]] as [string, boolean][];
if (loadNative()?.copyBytes) paths.push(['the native memmove', false]);

describe.each(paths)('MemoryBackend with %s', (_name, portable) => {
  it('writes and reads back segments at any offset, touching nothing else', () => {
    const b = made(portable);
    // The path named is the one taken.
    expect(typeof (b as unknown as { copy?: unknown }).copy).toBe(portable ? 'undefined' : 'function');
    const shared = new Uint8Array(new SharedArrayBuffer(300)).map((_, i) => (i * 7 + 1) & 0xff);
    const plain = Uint8Array.from({ length: 4096 }, (_, i) => (i * 13 + 5) & 0xff);
    const r = result();
    b.write(1000, [shared.subarray(17, 217), plain], false, r.done);
    expect(r.err()).toBeNull();
    const all = new Uint8Array(b.buffer);
    expect(all.subarray(0, 1000).every((x) => x === 0)).toBe(true);
    expect(all.subarray(1000, 1200)).toEqual(shared.subarray(17, 217));
    expect(all.subarray(1200, 5296)).toEqual(plain);
    expect(all.subarray(5296).every((x) => x === 0)).toBe(true);
    const back = [new Uint8Array(new SharedArrayBuffer(400)).subarray(100, 300), new Uint8Array(4096)];
    const r2 = result();
    b.read(1000, back, r2.done);
    expect(r2.err()).toBeNull();
    expect(back[0]).toEqual(shared.subarray(17, 217));
    expect(back[1]).toEqual(plain);
  });

  it('refuses a range past the end, copying nothing', () => {
    const b = made(portable);
    const r = result();
    b.write(b.size - 100, [new Uint8Array(200).fill(9)], false, r.done);
    expect(r.err()?.message).toMatch(/past the end/);
    expect(new Uint8Array(b.buffer).every((x) => x === 0)).toBe(true);
    const into = new Uint8Array(200).fill(7);
    const r2 = result();
    b.read(b.size - 100, [into], r2.done);
    expect(r2.err()?.message).toMatch(/past the end/);
    expect(into.every((x) => x === 7)).toBe(true);
  });
});
