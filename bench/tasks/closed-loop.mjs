// Engine task: a closed loop of 4 KiB random reads at `depth`, each completion answered at once by its slot's
// next read (as bench/tcp/client.mjs drives the plain TCP limit). Callback forms, buffers from the worker's
// DMA pool. Counts from `warmup` seconds on for `seconds`, then lets what is in flight finish. The phases go
// by the clock read in the completions, not by timers: a memory namespace completes a read within the turn
// that submitted it, so a closed loop there never yields to the event loop.
// Returns { ios, seconds, p50, p99 } (latency of the measured reads, µs).
export default async function closedLoop(queue, { nsid, blocks, lbaSize, depth, seconds, warmup = 0.5 }) {
  let x = (Math.random() * 0x7fffffff) | 1;
  const rnd = () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) % blocks;
  };
  const samples = new Float64Array(1 << 22);
  let n = 0;
  let ios = 0;
  let measuring = false;
  let stopping = false;
  let inflight = 0;
  let failure;
  const started = new Float64Array(depth);
  const bufs = Array.from({ length: depth }, () => queue.allocBuffer(lbaSize));
  const issue = (slot) => {
    started[slot] = performance.now();
    inflight++;
    queue.readCallback(nsid, rnd(), 1, bufs[slot], dones[slot]);
  };
  let onIdle = () => {};
  const dones = bufs.map((_, slot) => (err) => {
    inflight--;
    if (err) failure ??= err;
    tick();
    if (measuring) {
      ios++;
      if (n < samples.length) samples[n++] = (performance.now() - started[slot]) * 1000;
    }
    if (!stopping && !failure) issue(slot);
    else if (inflight === 0) onIdle();
  });
  let t0 = 0;
  let t1 = 0;
  const begin = performance.now() + warmup * 1000;
  const stop = begin + seconds * 1000;
  let finished;
  const allDone = new Promise((r) => (finished = r));
  const tick = () => {
    const now = performance.now();
    if (!measuring && !stopping && now >= begin) {
      measuring = true;
      t0 = now;
    }
    if (!stopping && now >= stop) {
      measuring = false;
      stopping = true;
      t1 = now;
    }
  };
  for (let slot = 0; slot < depth; slot++) issue(slot);
  onIdle = () => finished();
  await allDone;
  const elapsed = (t1 - t0) / 1000;
  for (const b of bufs) queue.releaseBuffer(b);
  if (failure) throw failure;
  const lat = samples.subarray(0, n).sort();
  return { ios, seconds: elapsed, p50: lat[Math.floor(n / 2)] ?? NaN, p99: lat[Math.floor(n * 0.99)] ?? NaN };
}
