/**
 * What the engine's worker pool and attached threads need of the controller
 * they run, local or remote: a handle a thread attaches with, and what to
 * forget when a thread dies. An in-process controller also lets threads
 * share a queue pair (each runs the controller in itself); a remote one
 * does not: each I/O queue is a connection, owned by one thread.
 */
import type { ControllerHandle, NvmeController } from './device/controller.js';
import type { TcpTransport } from './transport/tcp/tcp-transport.js';
import type { TcpThreadHandle } from './transport/tcp/thread-transport.js';
import type { VfioTransport } from './transport/vfio/vfio-transport.js';
import type { VfioThreadHandle } from './transport/vfio/thread-transport.js';

/** What a thread attaches with (structured-cloneable). */
export type DeviceHandle = ControllerHandle | TcpThreadHandle | VfioThreadHandle;

export interface EngineDevice {
  handle(): DeviceHandle;
  /** A thread died: forgets the commands it was executing. Returns how many. */
  abandonThread(threadSlot: number): number;
  /** The commands of an SQ whose only executing thread died complete as aborted. Returns how many. */
  abandonInflight(qid: number): number;
  /** The queue executor of an in-process controller; absent for a remote one, whose queues are never shared. */
  readonly executor?: NvmeController['executor'];
  /** A remote controller's current association, sent with each grant (it changes at every reset). */
  association?(): { cntlid: number; inCapsule: number; epoch: number };
}

/**
 * A controller whose I/O queues each belong to one thread and are executed
 * outside this process's threads (a remote target, a PCIe device): a dead
 * thread leaves nothing here to forget, since closing its connection or
 * deleting its SQ ends what it had queued.
 */
class ThreadOwnedQueues implements EngineDevice {
  constructor(private readonly threadHandle: () => DeviceHandle) {}
  handle(): DeviceHandle {
    return this.threadHandle();
  }
  abandonThread(): number {
    return 0;
  }
  abandonInflight(): number {
    return 0;
  }
}

/** A remote controller as the engine's threads see it: each thread connects its own queue. */
export class RemoteEngineDevice extends ThreadOwnedQueues {
  constructor(private readonly transport: TcpTransport) {
    super(() => transport.threadHandle());
  }
  association(): { cntlid: number; inCapsule: number; epoch: number } {
    return this.transport.association();
  }
}

/** A PCIe controller reached through VFIO: each thread maps BAR0 itself and handles its own queue (its MSI-X vector, or polling). */
export class VfioEngineDevice extends ThreadOwnedQueues {
  constructor(transport: VfioTransport) {
    super(() => transport.threadHandle());
  }
}
