/**
 * The NVMe/TCP transport of a thread attached to a remote engine (a pool
 * worker or an application's thread): it opens its own I/O queue's
 * connection and Connects it to the engine's controller, then bridges that
 * queue's ring as the main thread's transport bridges its own
 * (queue-bridge.ts). The main thread created the queue without a connection
 * (`queueOwnedElsewhere`), so each I/O queue is one connection, in the
 * thread that uses it, and no I/O waits on another thread.
 *
 * It has no registers: reading one gives 0, writing one other than a
 * doorbell does nothing (the main thread owns the controller).
 */
import { BroadcastChannel } from 'node:worker_threads';
import type { Transport } from '../transport.js';
import { DmaArena, type DmaArenaHandle } from '../../dma-arena.js';
import type { HostIdentity } from './fabrics-host.js';
import type { ResolvedTcpTarget } from './target-options.js';
import { DOORBELLS, QueueBridge, connectIoQueue } from './queue-bridge.js';

/** What a thread needs to bridge its own I/O queue to the engine's remote controller (structured-cloneable). */
export interface TcpThreadHandle {
  kind: 'tcp';
  target: ResolvedTcpTarget;
  identity: HostIdentity;
  dstrd: number;
  arena: DmaArenaHandle;
  /**
   * The BroadcastChannel of the association: a thread says there that its
   * connection died; the main thread says there that the association
   * broke (each thread then ends its connection). Messages name the
   * association (`LossReport`), so none outlives it.
   */
  lostChannel: string;
}

/** What goes over `lostChannel`: `epoch` numbers the association (a restarted target may give out the same controller ID again). */
export interface LossReport {
  epoch: number;
  code: string;
  message: string;
}

export function isTcpThreadHandle(h: object): h is TcpThreadHandle {
  return (h as { kind?: unknown }).kind === 'tcp';
}

/** The granted queue's rings, as QueuePair.handle() gives them. */
export interface BridgedRings {
  qid: number;
  entries: number;
  sq: { offset: number };
  cq: { offset: number };
}

export class ThreadTcpTransport implements Transport {
  readonly name = 'tcp';
  readonly dataPointer = 'sgl';

  private constructor(
    readonly arena: DmaArena,
    private readonly bridge: QueueBridge,
    private readonly channel: BroadcastChannel,
  ) {}

  /**
   * Connects the granted queue (`rings`, its CQ raising `vector`) and
   * bridges it; `range` is the thread's part of the arena. Rejects with
   * one line when the target refuses, nothing left open.
   */
  static async open(h: TcpThreadHandle, association: { cntlid: number; inCapsule: number; epoch: number }, range: { offset: number; size: number }, rings: BridgedRings, vector: number): Promise<ThreadTcpTransport> {
    const arena = new DmaArena({ ...h.arena, range });
    const bridge = new QueueBridge(arena, h.dstrd);
    const { epoch } = association;
    const conn = await connectIoQueue({ target: h.target, identity: h.identity, cntlid: association.cntlid, inCapsule: association.inCapsule }, rings.qid, rings.entries);
    const channel = new BroadcastChannel(h.lostChannel);
    channel.unref();
    // Its commands have ended with a path error; the main thread treats the association as broken and reconnects.
    conn.onFailure = (err) => channel.postMessage({ epoch, code: err.code, message: err.message } satisfies LossReport);
    // The association broke elsewhere: this connection ends too, its commands with a path error (the queue stays
    // the host's: the reset that follows fails it).
    channel.onmessage = (ev) => {
      if (((ev as MessageEvent).data as LossReport).epoch === epoch) void conn.close();
    };
    const { qid, entries } = rings;
    bridge.queues.set(qid, { qid, sqOffset: rings.sq.offset, entries, cq: { qid, offset: rings.cq.offset, entries, vector, interrupts: true, tail: 0, phase: 1 }, conn, head: 0, dead: false, records: [] });
    return new ThreadTcpTransport(arena, bridge, channel);
  }

  read32(): number {
    return 0;
  }
  read64(): number {
    return 0;
  }
  write32(offset: number, value: number): void {
    if (offset >= DOORBELLS) this.bridge.doorbell(offset, value);
  }
  write64(): void {}

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    this.bridge.setInterruptHandler(vector, handler);
  }

  /** Closes the queue's connection: what is outstanding completes with a path error, and the target deletes the queue. */
  close(): Promise<void> {
    this.channel.close();
    return this.bridge.dropQueues();
  }
}
