// A thread's own view of a VFIO device's BAR0 (ThreadVfioTransport over the addon's VfioBar), on a machine
// without the device: /dev/zero's pages stand in for BAR0 (a shared mapping of a file descriptor, as the
// device fd is). Doorbell writes reach the mapping and count the thread's queue; other register writes do
// not; close() unmaps. Engine.open({ pci }) refuses bad choices in one line, nothing left open.
// (The real device is test/linux-peer/vfio-engine.test.ts's, in a QEMU guest.)
import { describe, expect, it } from 'vitest';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { loadVfio } from '../../../../src/engine/uring/native.js';
import { ThreadVfioTransport } from '../../../../src/engine/transport/vfio/thread-transport.js';
import { DmaArena } from '../../../../src/engine/dma-arena.js';
import { Engine } from '../../../../src/engine/engine.js';
import { Regs, cqHeadDoorbell, sqTailDoorbell } from '../../../../src/engine/spec/registers.js';

const skipNative = process.env.NVMQ_SKIP_NATIVE === '1';
const zeroMaps = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/dev/zero')).length;

describe('ThreadVfioTransport', () => {
  it.skipIf(skipNative)('rings its own queue through a mapping of its own, drops other register writes, and unmaps on close', async () => {
    const fd = openSync('/dev/zero', 'r+');
    try {
      const arena = new DmaArena({ sizeBytes: 1 << 20 });
      const cq = arena.alloc(8 * 16);
      const before = zeroMaps();
      const t = ThreadVfioTransport.open({ kind: 'vfio', pci: '0000:00:04.0', deviceFd: fd, bar0: { offset: 0, size: 0x4000 }, eventfds: [], arena: arena.handle() }, { offset: 0, size: 1 << 20 }, { qid: 3, entries: 8, cq: { offset: cq.offset } });
      expect(zeroMaps()).toBe(before + 1);
      // CAP reads 0 here: DSTRD 0, doorbells 4 bytes apart.
      t.write32(sqTailDoorbell(3, 0), 6);
      expect(t.read32(sqTailDoorbell(3, 0))).toBe(6);
      expect(t.inflight).toBe(6);
      t.write32(sqTailDoorbell(3, 0), 2); // wraps past 8 entries: 4 more
      expect(t.inflight).toBe(10);
      t.write32(cqHeadDoorbell(3, 0), 7);
      expect(t.inflight).toBe(3);
      expect(t.waitable()).toBe(3);
      // wait() spins on the phase tag of the CQE at the head (7 here, phase 1 until the head wraps).
      const dw3 = (slot: number): number => (cq.offset + slot * 16 + 12) >> 2;
      let t0 = performance.now();
      t.wait(30);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(29);
      Atomics.store(arena.u32, dw3(7), 1 << 16);
      t0 = performance.now();
      t.wait(1000);
      expect(performance.now() - t0).toBeLessThan(100);
      t.write32(cqHeadDoorbell(3, 0), 0); // wrapped: phase 0 is new now, and slot 0 still holds 0
      t0 = performance.now();
      t.wait(1000);
      expect(performance.now() - t0).toBeLessThan(100);
      Atomics.store(arena.u32, dw3(1), 1 << 16); // slot 1 as the first pass left it: not new in phase 0
      t.write32(cqHeadDoorbell(3, 0), 1);
      t0 = performance.now();
      t.wait(20);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(19);
      t.write32(Regs.CC.offset, 1); // the main thread's register: not written from here
      expect(t.read32(Regs.CC.offset)).toBe(0);
      let polled = 0;
      t.setInterruptHandler(3, () => polled++);
      await new Promise((r) => setTimeout(r, 5));
      expect(polled).toBeGreaterThan(0);
      await t.close();
      expect(zeroMaps()).toBe(before);
      expect(() => t.read32(0)).toThrow();
    } finally {
      closeSync(fd);
    }
  });

  it.skipIf(skipNative)('a mapping that cannot be made is one line, and nothing is left mapped', () => {
    const v = loadVfio();
    if ('reason' in v) throw new Error(v.reason);
    const arena = new DmaArena({ sizeBytes: 1 << 20 });
    const before = zeroMaps();
    expect(() => ThreadVfioTransport.open({ kind: 'vfio', pci: '0000:00:04.0', deviceFd: 987654, bar0: { offset: 0, size: 0x4000 }, eventfds: [], arena: arena.handle() }, { offset: 0, size: 1 << 20 }, { qid: 1, entries: 8, cq: { offset: 0 } })).toThrow(/^0000:00:04\.0: this thread cannot map BAR0: cannot mmap BAR0: Bad file descriptor$/);
    expect(() => new v.VfioBar(0, 0, 100)).toThrow(RangeError);
    expect(zeroMaps()).toBe(before);
  });
});

describe('Engine.open({ pci })', () => {
  it('refuses pci with namespaces or controller tuning, and a malformed or absent function, in one line', async () => {
    await expect(Engine.open({ pci: '0000:00:04.0', namespaces: [{ backend: 'memory', size: 1 << 20 }], workers: 1 })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('namespaces / pci') });
    await expect(Engine.open({ pci: '0000:00:04.0', controller: { mdts: 5 }, workers: 1 })).rejects.toThrow(/controller must be absent with pci/);
    await expect(Engine.open({ pci: 'nvme0', workers: 1 })).rejects.toThrow(/^pci must be a PCI address such as 0000:00:04\.0, got 'nvme0'$/);
    // Without the addon VFIO is unavailable before any function is looked for.
    const vfio = loadVfio();
    const absent = 'reason' in vfio ? { code: 'NVMQ_VFIO_UNAVAILABLE', message: `VFIO unavailable: ${vfio.reason}` } : { code: 'NVMQ_VFIO_NO_DEVICE', message: 'no PCI function 0000:00:1f.7 (nothing at /sys/bus/pci/devices/0000:00:1f.7)' };
    await expect(Engine.open({ pci: '0000:00:1f.7', workers: 1 })).rejects.toMatchObject(absent);
  });
});
