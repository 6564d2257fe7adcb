// Engine task: a closed loop keeping `depth` 4 KiB random reads (or writes) in flight for `seconds`, as fio
// does. With `batch: 'plug'` completions that arrive together are resubmitted together behind one doorbell
// write (one io_uring_enter): each lane's completion queues it, and one microtask refills every queued lane
// between plug() and unplug(). With `batch: 'each'` every completion resubmits its lane at once, one
// doorbell per command (fio's default, iodepth_batch_submit=1). With `batch: 'wait'` too, and the worker
// waits for completions inside io_uring_enter (queue.wait()) rather than in its event loop, as fio does;
// it gives the event loop a turn only when wait() had nothing to wait for. `spinUs` > 0 makes those waits
// hybrid polling (queue.wait(10, spinUs)): the worker polls the ring that long before it sleeps.
// With `api: 'callback'` commands go through readCallback / writeCallback (no Promise per command), else
// through read / write. Buffers come from the worker's DMA pool (zero copy). The first `ramp` seconds run
// the same loop unmeasured (fio's ramp_time): they take the JIT compilers' work out of the measured window.
// Returns the I/Os done in the measured `seconds` (those submitted after the ramp) and their median
// latency (µs).
export default async function job(queue, { nsid, blocks, lbaSize, depth, seconds, write, batch = 'plug', api = 'promise', ramp = 0, spinUs = 0 }) {
  const bufs = Array.from({ length: depth }, () => queue.allocBuffer(lbaSize));
  let x = (Math.random() * 0x7fffffff) | 1;
  const rnd = () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) % blocks;
  };
  const lat = new Float64Array(1 << 20);
  let nlat = 0;
  let ios = 0;
  const started = new Float64Array(depth);
  const from = performance.now() + ramp * 1000;
  const end = from + seconds * 1000;
  let ready = [];
  let scheduled = false;
  let inflight = 0;
  let finish;
  const finished = new Promise((r) => (finish = r));
  // One callback per lane, made once.
  const callbacks = Array.from({ length: depth }, (_, lane) => (err) => {
    if (err) console.error(err);
    done(lane);
  });
  const submit = (lane) => {
    started[lane] = performance.now();
    inflight++;
    if (api === 'callback') {
      if (write) queue.writeCallback(nsid, rnd(), 1, bufs[lane], callbacks[lane]);
      else queue.readCallback(nsid, rnd(), 1, bufs[lane], callbacks[lane]);
      return;
    }
    const p = write ? queue.write(nsid, rnd(), 1, bufs[lane]) : queue.read(nsid, rnd(), 1, bufs[lane]);
    p.then(() => done(lane), (e) => { console.error(e); done(lane); });
  };
  const refill = () => {
    scheduled = false;
    const lanes = ready;
    ready = [];
    if (performance.now() >= end) {
      if (inflight === 0) finish();
      return;
    }
    queue.plug();
    for (const lane of lanes) submit(lane);
    queue.unplug();
  };
  const done = (lane) => {
    inflight--;
    if (started[lane] >= from) {
      ios++;
      if (nlat < lat.length) lat[nlat++] = (performance.now() - started[lane]) * 1000;
    }
    if (batch === 'each' || batch === 'wait') {
      if (performance.now() < end) submit(lane);
      else if (inflight === 0) finish();
      return;
    }
    ready.push(lane);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(refill);
    }
  };
  queue.plug();
  for (let lane = 0; lane < depth; lane++) submit(lane);
  queue.unplug();
  if (batch === 'wait') {
    // Each completion resubmits its lane from inside wait() (a doorbell per command, as with 'each').
    // Resubmitting a wait's completions together behind one doorbell was slower on this virtual disk
    // (98k vs 120k IOPS at depth 32): the kernel then hands the device a plugged batch, which it
    // completes together.
    while (inflight > 0) {
      if (queue.wait(10, spinUs) === 0) await new Promise((r) => setImmediate(r));
    }
  }
  await finished;
  for (const b of bufs) queue.releaseBuffer(b);
  const sample = lat.slice(0, nlat).sort();
  return { ios, p50: sample[Math.floor(nlat / 2)] ?? 0, doorbells: queue.stats.sqDoorbells };
}
