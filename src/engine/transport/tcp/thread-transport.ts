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
  cntlid: number;
  /** In-capsule data the target takes on I/O queues. */
  inCapsule: number;
  dstrd: number;
  arena: DmaArenaHandle;
  /** The BroadcastChannel on which a thread says its connection died (the main thread's transport listens). */
  lostChannel: string;
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
  ) {}

  /**
   * Connects the granted queue (`rings`, its CQ raising `vector`) and
   * bridges it; `range` is the thread's part of the arena. Rejects with
   * one line when the target refuses, nothing left open.
   */
  static async open(h: TcpThreadHandle, range: { offset: number; size: number }, rings: BridgedRings, vector: number): Promise<ThreadTcpTransport> {
    const arena = new DmaArena({ ...h.arena, range });
    const bridge = new QueueBridge(arena, h.dstrd);
    const conn = await connectIoQueue({ target: h.target, identity: h.identity, cntlid: h.cntlid, inCapsule: h.inCapsule }, rings.qid, rings.entries);
    // Its commands have ended with a path error; the main thread treats the association as broken and reconnects.
    conn.onFailure = (err) => {
      const channel = new BroadcastChannel(h.lostChannel);
      channel.postMessage(err.message);
      channel.close();
    };
    const { qid, entries } = rings;
    bridge.queues.set(qid, { qid, sqOffset: rings.sq.offset, entries, cq: { qid, offset: rings.cq.offset, entries, vector, interrupts: true, tail: 0, phase: 1 }, conn, head: 0, dead: false });
    return new ThreadTcpTransport(arena, bridge);
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
    return this.bridge.dropQueues();
  }
}
