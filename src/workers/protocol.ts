/**
 * What the engine's main thread and its pool workers say to each other: the
 * boot data a worker starts with, the grant protocol on the pool's channel
 * (attach → grant / refused → attached / attach-failed), and the tasks a
 * worker runs.
 */
import type { ControllerHandle } from '../engine/device/controller.js';
import type { QueuePairHandle } from '../engine/host/queue-pair.js';
import type { NamespaceInfo } from '../engine/host/identify.js';
import type { WireError } from '../engine/errors.js';

/** What a worker receives when it starts. */
export interface WorkerBoot {
  channel: string;
  controller: ControllerHandle;
  namespaces: NamespaceInfo[];
}

/** The main thread's answer to a worker asking for its queue. */
export interface QueueGrant {
  threadId: number;
  /** Where the worker counts the commands it executes (so a death can be accounted for). */
  threadSlot: number;
  queue: QueuePairHandle;
  vector: number;
  pool: { offset: number; size: number };
}

/** What workers post on the pool's channel. */
export type WorkerMessage = { type: 'attach' | 'attached'; threadId: number } | { type: 'attach-failed'; threadId: number; error: WireError };

/** A task for a pool worker: a module of the application's, run with the worker's queue pair. */
export interface IoTask {
  kind: 'run';
  module: string;
  args: unknown;
}
