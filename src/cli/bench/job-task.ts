/**
 * The engine task `nvmq bench` runs in each worker (`engine.run(url, args)`):
 * the closed loop over this worker's queue pair, with buffers from its DMA
 * pool (the controller moves data straight in and out of them).
 */
import type { IoQueuePair } from '../../engine/host/io-queue-pair.js';
import { runLoop, type LoopArgs, type LoopResult } from './loop.js';

export interface JobTaskArgs extends LoopArgs {
  nsid: number;
}

export default async function jobTask(queue: IoQueuePair, args: JobTaskArgs): Promise<LoopResult & { qid: number }> {
  const { nsid, lbaSize, bs } = args;
  const nlb = bs / lbaSize;
  const result = await runLoop(
    {
      read: (pos, buf) => queue.read(nsid, pos / lbaSize, nlb, buf),
      write: (pos, buf) => queue.write(nsid, pos / lbaSize, nlb, buf),
      plug: () => queue.plug(),
      unplug: () => queue.unplug(),
      alloc: (bytes) => queue.allocBuffer(bytes),
      release: (buf) => queue.releaseBuffer(buf),
    },
    args,
  );
  return { ...result, qid: queue.qid };
}
