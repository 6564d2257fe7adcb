// Addresses and the sysfs checks made before VFIO opens a device, on a fake sysfs tree.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizePciAddress, vfioGroupOf } from '../../../../src/engine/transport/vfio/sysfs.js';

const root = mkdtempSync(join(tmpdir(), 'nvmq-sysfs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function device(pci: string, driver: string | undefined, group: string | undefined, cls = '0x010802'): void {
  const dev = join(root, pci);
  mkdirSync(dev);
  writeFileSync(join(dev, 'class'), `${cls}\n`);
  if (driver) symlinkSync(`../../../bus/pci/drivers/${driver}`, join(dev, 'driver'));
  if (group) symlinkSync(`../../../../kernel/iommu_groups/${group}`, join(dev, 'iommu_group'));
}

describe('VFIO sysfs checks', () => {
  it('normalizes the address forms', () => {
    expect(normalizePciAddress('0000:00:04.0')).toBe('0000:00:04.0');
    expect(normalizePciAddress('00:04.0')).toBe('0000:00:04.0');
    expect(normalizePciAddress('pci:0000:3B:00.1')).toBe('0000:3b:00.1');
    expect(normalizePciAddress('/sys/bus/pci/devices/0000:00:04.0')).toBe('0000:00:04.0');
    expect(() => normalizePciAddress('0000:00:04')).toThrow(/PCI address/);
  });

  it('finds the group of a function bound to vfio-pci', () => {
    device('0000:00:04.0', 'vfio-pci', '7');
    expect(vfioGroupOf('0000:00:04.0', root)).toBe('/dev/vfio/7');
  });

  it('says how to rebind a function bound to nvme, in one line', () => {
    device('0000:00:05.0', 'nvme', '8');
    let msg = '';
    try {
      vfioGroupOf('0000:00:05.0', root);
    } catch (e) {
      msg = (e as Error).message;
      expect((e as { code?: string }).code).toBe('NVMQ_VFIO_DRIVER');
    }
    expect(msg).toMatch(/bound to the nvme driver, not vfio-pci; rebind it/);
    expect(msg).toContain('echo vfio-pci > /sys/bus/pci/devices/0000:00:05.0/driver_override');
    expect(msg).not.toContain('\n');
  });

  it('refuses a function that is not an NVMe controller before any rebinding advice', () => {
    device('0000:00:09.0', 'virtio-pci', '10', '0x020000');
    expect(() => vfioGroupOf('0000:00:09.0', root)).toThrow(/^0000:00:09\.0 is not an NVMe controller \(PCI class 0x020000, NVMe is 0x010802\)$/);
  });

  it('reports no driver, no IOMMU group and no device', () => {
    device('0000:00:06.0', undefined, '9');
    expect(() => vfioGroupOf('0000:00:06.0', root)).toThrow(/bound to no driver; bind it to vfio-pci/);
    device('0000:00:07.0', 'vfio-pci', undefined);
    expect(() => vfioGroupOf('0000:00:07.0', root)).toThrow(/has no IOMMU group \(is the IOMMU on\?/);
    expect(() => vfioGroupOf('0000:00:08.0', root)).toThrow(/no PCI function 0000:00:08.0/);
  });
});
