/**
 * The composition root of a remote controller: a DMA arena for the host's
 * rings and buffers, the NVMe/TCP transport connected to the target, and
 * the host driver brought up over it. A failure at any step closes what the
 * steps before it opened.
 */
import { DmaArena } from './dma-arena.js';
import { NvmeDriver, type DriverOptions } from './host/driver.js';
import { invalidArgument } from './host/arguments.js';
import { TcpTransport, type TcpTarget } from './transport/tcp/tcp-transport.js';
import type { NvmeController } from './device/controller.js';
import type { VfioTransport } from './transport/vfio/vfio-transport.js';

export interface RemoteDevice {
  driver: NvmeDriver;
  transport: TcpTransport;
}

/** A controller brought up for an engine: in this process (`controller`), or remote. `abandon()` undoes the open. */
export interface OpenedDevice {
  driver: NvmeDriver;
  controller?: NvmeController;
  remote?: TcpTransport;
  /** A PCIe controller reached through VFIO. */
  vfio?: VfioTransport;
  abandon(): Promise<void>;
}

/** openRemote() for an engine. */
export async function openRemoteDevice(target: TcpTarget, arenaSize: number, driver: DriverOptions): Promise<OpenedDevice> {
  const r = await openRemote({ target, arenaSize, driver });
  return { driver: r.driver, remote: r.transport, abandon: () => r.driver.close().catch(() => r.transport.close()) };
}

export async function openRemote(opts: { target: TcpTarget; arenaSize: number; driver: DriverOptions }): Promise<RemoteDevice> {
  if (!Number.isSafeInteger(opts.arenaSize) || opts.arenaSize < 1 << 20 || opts.arenaSize > 2 ** 48) {
    throw invalidArgument('arenaSize', '1 MiB to 2^48 bytes', opts.arenaSize);
  }
  const arena = new DmaArena({ sizeBytes: opts.arenaSize });
  const transport = await TcpTransport.connect(opts.target, arena);
  try {
    const driver = await NvmeDriver.attach(transport, opts.driver);
    return { driver, transport };
  } catch (e) {
    await transport.close();
    throw transport.lost ?? e;
  }
}
