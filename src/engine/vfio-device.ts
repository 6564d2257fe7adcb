/**
 * The composition root of a PCIe controller reached through VFIO: a DMA
 * arena, the VFIO transport (BAR0 mapped, the arena mapped through the
 * IOMMU) and the host driver brought up over it. A failure at any step
 * closes what the steps before it opened.
 */
import { DmaArena } from './dma-arena.js';
import { NvmeDriver, type DriverOptions } from './host/driver.js';
import { invalidArgument } from './host/arguments.js';
import { VfioTransport } from './transport/vfio/vfio-transport.js';
import type { OpenedDevice } from './remote-device.js';

export interface VfioController {
  driver: NvmeDriver;
  transport: VfioTransport;
  /** Shuts the controller down, then unmaps and closes everything. */
  close(): Promise<void>;
}

export interface OpenControllerOptions {
  /** PCI address of a function bound to vfio-pci: 0000:00:04.0. */
  pci: string;
  /** The IOMMU group device (/dev/vfio/<n>); found through sysfs by default. */
  group?: string;
  /** DMA arena bytes (default 32 MiB). */
  arenaSize?: number;
  driver?: DriverOptions;
}

export async function openController(opts: OpenControllerOptions): Promise<VfioController> {
  const arenaSize = opts.arenaSize ?? 32 * 1024 * 1024;
  if (!Number.isSafeInteger(arenaSize) || arenaSize < 1 << 20 || arenaSize > 2 ** 40 || arenaSize % 4096 !== 0) {
    throw invalidArgument('arenaSize', 'a multiple of 4096 bytes from 1 MiB to 1 TiB', arenaSize);
  }
  const arena = new DmaArena({ sizeBytes: arenaSize });
  const transport = VfioTransport.open({ pci: opts.pci, group: opts.group }, arena);
  try {
    const driver = await NvmeDriver.attach(transport, opts.driver);
    return {
      driver,
      transport,
      close: () => driver.close().finally(() => transport.close()),
    };
  } catch (e) {
    await transport.close();
    throw e;
  }
}

/** openController() for an engine: the arena sized for its threads, undone entirely by `abandon()`. */
export async function openVfioDevice(pci: string, arenaSize: number, driver: DriverOptions): Promise<OpenedDevice> {
  const c = await openController({ pci, arenaSize, driver });
  return { driver: c.driver, vfio: c.transport, abandon: c.close };
}
