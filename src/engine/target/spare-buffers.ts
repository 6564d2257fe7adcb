/**
 * A connection's spare DMA buffers: those its finished commands gave back,
 * kept by size for its next commands, so that a command neither allocates
 * from the arena nor has a buffer zero-filled. They belong to one queue
 * pair's arena; when the pair changes (a reset failed it) or the connection
 * ends, they go back to the arena.
 */
import type { IoQueuePair } from '../host/io-queue-pair.js';

export class SpareBuffers {
  private readonly bySize = new Map<number, Uint8Array[]>();
  private owner: IoQueuePair | undefined;

  /** At most `perSize` buffers of each size are kept (a queue's worth). */
  constructor(private readonly perSize: () => number) {}

  /** A buffer of `bytes` in q's arena: a spare one, else a new one. */
  take(q: IoQueuePair, bytes: number): Uint8Array {
    if (q !== this.owner) this.drop();
    this.owner = q;
    return this.bySize.get(bytes)?.pop() ?? q.allocBuffer(bytes);
  }

  /** `buffer` (of q's arena) is free again: kept while q serves and there is room, else back to the arena. */
  give(q: IoQueuePair, buffer: Uint8Array, keep: boolean): void {
    if (keep && q === this.owner && !q.failed) {
      let list = this.bySize.get(buffer.length);
      if (!list) this.bySize.set(buffer.length, (list = []));
      if (list.length < this.perSize()) return void list.push(buffer);
    }
    free(q, buffer);
  }

  /** Every spare buffer back to the arena. */
  drop(): void {
    const q = this.owner;
    if (q) for (const list of this.bySize.values()) for (const b of list) free(q, b);
    this.bySize.clear();
    this.owner = undefined;
  }
}

function free(q: IoQueuePair, buffer: Uint8Array): void {
  try {
    q.releaseBuffer(buffer);
  } catch {
    // The pair was failed by a reset: its arena memory went with it.
  }
}
