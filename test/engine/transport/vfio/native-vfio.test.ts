// The addon's VFIO class on a machine without the device: each failure is one line with its errno and
// leaves no descriptor open. (Opening a real device is test/linux-peer/vfio.test.ts's, in a QEMU guest.)
import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { loadVfio } from '../../../../src/engine/uring/native.js';
import { VfioTransport } from '../../../../src/engine/transport/vfio/vfio-transport.js';
import { DmaArena } from '../../../../src/engine/dma-arena.js';

const skipNative = process.env.NVMQ_SKIP_NATIVE === '1';
const fdCount = (): number => readdirSync('/proc/self/fd').length;

describe('VFIO in the native addon', () => {
  it.skipIf(skipNative)('exports the Vfio class; a failed open throws one line with errno and leaves no fd behind', () => {
    const v = loadVfio();
    if ('reason' in v) throw new Error(v.reason);
    const before = fdCount();
    for (let i = 0; i < 20; i++) {
      let err: (Error & { errno?: number }) | undefined;
      try {
        new v.Vfio('/dev/vfio/nvmq-no-such-group', '0000:00:04.0');
      } catch (e) {
        err = e as Error & { errno?: number };
      }
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).not.toContain('\n');
      expect(err!.errno).toBeLessThan(0);
    }
    expect(fdCount()).toBe(before);
  });

  it.skipIf(skipNative)('argument errors are TypeErrors', () => {
    const v = loadVfio();
    if ('reason' in v) throw new Error(v.reason);
    expect(() => new (v.Vfio as unknown as new () => unknown)()).toThrow(TypeError);
  });

  it.runIf(skipNative)('without the addon, the transport says why VFIO is unavailable', () => {
    const v = loadVfio();
    expect('reason' in v && v.reason).toMatch(/native addon/);
    expect(() => VfioTransport.open({ pci: '0000:00:04.0' }, new DmaArena({ sizeBytes: 1 << 20 }))).toThrow(/VFIO unavailable: native addon/);
  });

  it('a malformed PCI address is refused before anything is opened', () => {
    expect(() => VfioTransport.open({ pci: 'nvme0' }, new DmaArena({ sizeBytes: 1 << 20 }))).toThrow(/PCI address such as 0000:00:04.0/);
  });
});
