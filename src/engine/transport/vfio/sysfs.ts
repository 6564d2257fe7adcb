/**
 * What sysfs says about a PCI function before VFIO opens it: its canonical
 * address, the driver it is bound to and its IOMMU group. Each problem is one
 * line that says how to fix it (rebinding to vfio-pci, turning the IOMMU on).
 */
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { NvmqError } from '../../errors.js';

const PCI_ROOT = '/sys/bus/pci/devices';
/** domain:bus:device.function, as sysfs names it. */
const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/;

/** "0000:00:04.0" from "0000:00:04.0", "00:04.0", "pci:0000:00:04.0" or "/sys/bus/pci/devices/0000:00:04.0". */
export function normalizePciAddress(pci: string): string {
  let a = String(pci).trim().toLowerCase();
  if (a.startsWith('pci:')) a = a.slice(4);
  if (a.startsWith('/')) a = basename(a);
  if (/^[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/.test(a)) a = `0000:${a}`;
  if (!PCI_ADDRESS.test(a)) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `pci must be a PCI address such as 0000:00:04.0, got '${pci}'`);
  return a;
}

function linkName(path: string): string | undefined {
  try {
    return basename(readlinkSync(path));
  } catch {
    return undefined;
  }
}

/** PCI class code of an NVM Express I/O controller: mass storage, non-volatile memory, NVMe. */
const NVME_CLASS = 0x010802;

/** The function's class code from sysfs ("0x010802"), or undefined when it cannot be read. */
function readClass(path: string): number | undefined {
  try {
    const v = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The rebinding commands for `pci`, as one line. */
export function rebindHint(pci: string): string {
  const dev = `${PCI_ROOT}/${pci}`;
  return `echo ${pci} > ${dev}/driver/unbind; echo vfio-pci > ${dev}/driver_override; echo ${pci} > /sys/bus/pci/drivers_probe`;
}

/**
 * The IOMMU group device (/dev/vfio/<n>) of `pci`, once sysfs shows the
 * function exists, is bound to vfio-pci and has a group. `sysRoot` is for tests.
 */
export function vfioGroupOf(pci: string, sysRoot = PCI_ROOT): string {
  const dev = `${sysRoot}/${pci}`;
  if (!existsSync(dev)) throw new NvmqError('NVMQ_VFIO_NO_DEVICE', `no PCI function ${pci} (nothing at ${dev})`);
  // Before any rebinding advice: is it an NVMe controller at all (class 01h, subclass 08h, interface 02h)?
  const cls = readClass(`${dev}/class`);
  if (cls !== undefined && cls !== NVME_CLASS) {
    throw new NvmqError('NVMQ_VFIO_NOT_NVME', `${pci} is not an NVMe controller (PCI class 0x${cls.toString(16).padStart(6, '0')}, NVMe is 0x010802)`);
  }
  const driver = linkName(`${dev}/driver`);
  if (driver === undefined) {
    throw new NvmqError('NVMQ_VFIO_DRIVER', `${pci} is bound to no driver; bind it to vfio-pci: echo vfio-pci > ${dev}/driver_override; echo ${pci} > /sys/bus/pci/drivers_probe`);
  }
  if (driver !== 'vfio-pci') {
    throw new NvmqError('NVMQ_VFIO_DRIVER', `${pci} is bound to the ${driver} driver, not vfio-pci; rebind it (as root): ${rebindHint(pci)}`);
  }
  const group = linkName(`${dev}/iommu_group`);
  if (group === undefined) {
    throw new NvmqError('NVMQ_VFIO_NO_GROUP', `${pci} has no IOMMU group (is the IOMMU on? boot with intel_iommu=on or amd_iommu=on)`);
  }
  return `/dev/vfio/${group}`;
}
