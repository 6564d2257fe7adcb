/**
 * Which controller an engine runs, and bringing it up: an in-process one
 * over `namespaces`, a remote one over NVMe/TCP (`target`), or a PCIe one
 * through VFIO (`pci`). The DMA arena is sized here for every thread's rings
 * and buffer pool; on a PCIe controller it is the memory the IOMMU maps.
 */
import { openLocal } from './local-device.js';
import { openRemoteDevice, type OpenedDevice } from './remote-device.js';
import { openVfioDevice } from './vfio-device.js';
import { NvmqError } from './errors.js';
import type { EngineOptions } from './engine-options.js';

export interface EngineShape {
  workers: number;
  queueDepth: number;
  poolSize: number;
}

/** Brings up the controller `opts` names, with an arena and queue count for `shape`. */
export async function openEngineDevice(opts: EngineOptions, shape: EngineShape): Promise<OpenedDevice> {
  const { workers, queueDepth: depth, poolSize } = shape;
  // Rings, PRP pages and pools for every worker, plus room for replacements and the admin queue.
  const perQueue = depth * (64 + 16) + depth * 4096 * 2;
  // Workers and their replacements, the main thread's queue, and the admin queue.
  const maxIoQueues = opts.controller?.maxIoQueues ?? Math.max(64, workers * 2 + 1);
  const arenaSize = Math.ceil(((workers * 2 + 1) * (poolSize + perQueue) + (8 << 20)) / 4096) * 4096;
  // Every queue the controller has: workers, their replacements, the main thread, attached threads.
  const driver = { ioQueues: maxIoQueues, ioTimeoutMs: opts.ioTimeoutMs, adminTimeoutMs: opts.adminTimeoutMs };
  if (opts.target !== undefined) return openRemoteDevice(opts.target, arenaSize, driver);
  if (opts.pci !== undefined) return openVfioDevice(opts.pci, arenaSize, driver);
  return openLocal({
    namespaces: opts.namespaces!,
    arenaSize,
    controller: {
      maxIoQueues,
      // Doorbells 64 bytes apart (CAP.DSTRD 4): each worker writes its queue's doorbells per command, and
      // 4-byte neighbours would put every queue's doorbells in one cache line that all workers write.
      dstrd: 4,
      ...opts.controller,
    },
    driver,
  });
}

/**
 * A remote or PCIe controller's I/O queues are each owned by one thread (a
 * connection, or rings and an MSI-X vector handled by the thread that rings
 * them): no sharing, so every worker and the main thread need one of their
 * own.
 */
export function checkOwnQueues(device: OpenedDevice, workers: number, queues: number, asked: number | undefined): void {
  const granted = device.driver.grantedIoQueues;
  if (!device.remote && !device.vfio) return;
  if (queues >= workers && granted >= workers + 1) return;
  const what = device.remote ? 'the NVMe/TCP target grants' : `the PCIe controller ${device.vfio!.pci} grants`;
  const engine = device.remote ? 'a remote engine' : 'an engine on a PCIe controller';
  throw new NvmqError(
    'NVMQ_NO_QUEUE',
    `${what} ${granted} I/O queues; ${engine} needs one per worker and one for the main thread (${workers} workers${asked !== undefined ? `, queues: ${asked}` : ''}): use at most ${Math.max(0, Math.min(granted - 1, queues))} workers`,
  );
}
