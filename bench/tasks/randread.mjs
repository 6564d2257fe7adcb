// Engine task: random 4 KiB reads (or writes) at a given depth for a given time, in batches of `depth`
// submissions behind one doorbell write (plug / unplug). Buffers come from the worker's DMA pool (zero copy).
export default async function randread(queue, { nsid, blocks, lbaSize, depth, seconds, write }) {
  const bufs = Array.from({ length: depth }, () => queue.allocBuffer(lbaSize));
  const nlb = 1;
  let ios = 0;
  let x = (Math.random() * 0x7fffffff) | 1;
  const rnd = () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) % blocks;
  };
  const end = performance.now() + seconds * 1000;
  const pending = new Array(depth);
  while (performance.now() < end) {
    for (let rep = 0; rep < 64; rep++) {
      queue.plug();
      for (let i = 0; i < depth; i++) pending[i] = write ? queue.write(nsid, rnd(), nlb, bufs[i]) : queue.read(nsid, rnd(), nlb, bufs[i]);
      queue.unplug();
      await Promise.all(pending);
      ios += depth;
    }
  }
  for (const b of bufs) queue.releaseBuffer(b);
  return { ios, doorbells: queue.stats.sqDoorbells };
}
