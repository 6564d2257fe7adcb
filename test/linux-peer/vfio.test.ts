// nvmq's VFIO transport on QEMU's emulated NVMe controller, bound to vfio-pci behind an emulated IOMMU in a
// Linux guest (test/fixtures/linux-peer/vfio-guest.sh): test/fixtures/vfio-smoke.mjs runs in the guest,
// brings the controller up (CAP.TO-bounded RDY wait, admin queue, Identify), creates an I/O queue, writes
// and reads back verified blocks, shuts down and closes, and counts descriptors and mappings before and after
// (failed opens included, with a failure injected at each step, MSI-X falling back to polling when it cannot be enabled, and 100 open / close cycles with failures injected at each step in turn); the bytes written are then compared with the controller's backing image here.
// A second guest leaves the controller on the kernel's nvme driver: opening it must say how to rebind it.
// Each boots a guest (about 15 s under TCG), so the file runs only with NVMQ_LINUX_PEER=1; without QEMU or
// the kernel package the fixture exits 77 and the test is skipped, saying so (in CI it fails).
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { enabled, root, skipOrFail, vfioGuest as guest } from './vfio-guest.js';

const share = mkdtempSync(join(tmpdir(), 'nvmq-vfio-'));
afterAll(() => rmSync(share, { recursive: true, force: true }));
const vfioGuest = (env: Record<string, string>): ReturnType<typeof guest> => guest(share, env);

interface Counts {
  fds: { total: number; vfio: number; eventfd: number };
  maps: { total: number; vfio: number };
}

describe.skipIf(!enabled)('VFIO transport on QEMU NVMe behind an emulated IOMMU (NVMQ_LINUX_PEER=1: boots QEMU guests)', () => {
  it('brings the controller up, identifies it, writes and reads back verified blocks, releases every fd and mapping', ({ skip }) => {
    const image = join(share, 'nvme0.img');
    writeFileSync(image, '');
    truncateSync(image, 64 << 20);
    const r = vfioGuest({
      LP_NVME_IMAGE: image,
      LP_NVME_OPTS: 'max_ioqpairs=4,mdts=5',
      LP_GUEST_CMD:
        'node test/fixtures/vfio-smoke.mjs --pci "$NVMQ_VFIO_PCI" --group "$NVMQ_VFIO_GROUP" --out "$LP_SHARE_DIR/vfio-smoke.json" && ' +
        'node dist/cli/main.js identify --filename "pci:$NVMQ_VFIO_PCI" > "$LP_SHARE_DIR/identify.txt" 2>&1',
    });
    if (r.status === 77) skipOrFail(skip, r.stderr);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const res = JSON.parse(readFileSync(join(share, 'vfio-smoke.json'), 'utf8'));
    expect(res.ok, JSON.stringify(res.error)).toBe(true);
    expect(res.controller.model).toBe('QEMU NVMe Ctrl');
    // nvmq identify by the device's pci: address, in the same guest after the smoke test closed it.
    const identify = readFileSync(join(share, 'identify.txt'), 'utf8');
    expect(identify).toMatch(/^mn\s+: QEMU NVMe Ctrl$/m);
    expect(identify).toMatch(/^sn\s+: nvmq-lp-0001$/m);
    expect(identify).toMatch(/^data path : VFIO, PCIe function [0-9a-f:.]+ \(completions: MSI-X interrupts \(\d+ vectors\)\)$/m);
    // MSI-X: an eventfd attached to each of the device's vectors (QEMU's controller has 65 by default), and
    // the main thread's duplicate of the admin queue's (vector 0) that it watches.
    expect(res.msix.polled).toBe(false);
    expect(res.msix.vectors).toBeGreaterThan(1);
    expect(res.msix.completions).toBe(`MSI-X interrupts (${res.msix.vectors} vectors)`);
    expect(res.open.fds.eventfd - res.before.fds.eventfd).toBe(res.msix.vectors + 1);
    // When VFIO cannot attach them (failure injected at that step), the open polls instead, says why, and holds no eventfd.
    expect(res.msixFailed).toMatchObject({ polled: true, vectors: 0, completions: 'polled: MSI-X cannot be enabled (injected failure 9 (MSI-X enabled))' });
    expect(res.msixFailed.fds.eventfd).toBe(res.before.fds.eventfd);
    expect(res.controller.serial).toBe('nvmq-lp-0001');
    expect(res.controller.maxTransferBytes).toBe(128 * 1024); // mdts=5, 4 KiB pages
    expect(res.namespaces).toEqual([{ nsid: 1, blocks: (64 << 20) / 512, lbaSize: 512 }]);
    expect(res.io).toMatchObject({ writes: 32, verified: 32, mismatches: 0, largestBlocks: 256 });
    expect(res.secondModel).toBe('QEMU NVMe Ctrl');
    expect(res.barDetachedAfterClose).toBe(true);
    // Failed opens: one line each, with a code; nothing left open or mapped.
    expect(res.failures.map((f: { code: string }) => f.code)).toEqual(['NVMQ_VFIO_NO_GROUP', 'NVMQ_VFIO_NO_DEVICE', 'NVMQ_VFIO']);
    for (const f of res.failures) expect(f.message).not.toContain('\n');
    // A failure injected at each step of an open (container, group, attach, type 1, device, regions, DMA map, BAR0 map).
    expect(res.injected).toHaveLength(8);
    res.injected.forEach((m: string, i: number) => expect(m).toMatch(new RegExp(`injected failure ${i + 1} \\(`)));
    const before = res.before as Counts;
    expect((res.afterFailures as Counts).fds).toEqual(before.fds);
    // Open: the container, the group and the device; BAR0 mapped once.
    expect((res.open as Counts).fds.vfio).toBe(3);
    expect((res.open as Counts).maps.vfio).toBe(1);
    // 100 cycles: failures injected at each of the 8 steps in turn, every ninth open a whole bring-up and close.
    expect(res.cycles).toBe(100);
    expect(res.cycleOutcomes.opened).toBe(12);
    expect(Object.keys(res.cycleOutcomes.failedAtStep)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
    expect(Object.values(res.cycleOutcomes.failedAtStep).reduce((a: number, b) => a + (b as number), 0)).toBe(88);
    for (const k of ['after', 'afterSecond', 'afterCycles'] as const) {
      expect((res[k] as Counts).fds).toEqual(before.fds);
      expect((res[k] as Counts).maps.vfio).toBe(0);
    }
    // What the guest wrote is what the controller stored in its backing image.
    const fd = openSync(image, 'r');
    try {
      for (const w of res.io.ranges as Array<{ slba: number; nlb: number; sum: string }>) {
        const buf = Buffer.alloc(w.nlb * 512);
        readSync(fd, buf, 0, buf.length, w.slba * 512);
        expect(createHash('sha256').update(buf).digest('hex'), `LBA ${w.slba} +${w.nlb}`).toBe(w.sum);
      }
    } finally {
      closeSync(fd);
    }
  }, 310_000);

  it('a controller left on the kernel nvme driver is refused in one line that says how to rebind it', ({ skip }) => {
    const r = vfioGuest({
      LP_NVME_DRIVER: 'nvme',
      LP_GUEST_CMD: `pci=$(basename "$(readlink -f /sys/class/nvme/nvme0/device)")
node --input-type=module -e "import('${root}dist/engine/vfio-device.js').then((m) => m.openController({ pci: '$pci' })).then(() => console.log('OPENED'), (e) => console.log('REFUSED ' + e.code + ' ' + e.message))"`,
    });
    if (r.status === 77) skipOrFail(skip, r.stderr);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^REFUSED NVMQ_VFIO_DRIVER 0000:00:0\d\.0 is bound to the nvme driver, not vfio-pci; rebind it \(as root\): echo .*driver_override; echo .* > \/sys\/bus\/pci\/drivers_probe$/m);
  }, 310_000);
});
