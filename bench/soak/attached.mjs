// The soak's application worker thread: attaches with its handle and runs verified random I/O on its region
// (io.mjs). When a reset fails its queue it detaches, waits for the main thread to say the reset is over
// ({ epoch }), and attaches again with the same handle. The stop word in shared memory ends it: it detaches
// and reports. Asked to (io.mjs), it ends its thread with writes in flight, without detaching.
import { workerData, parentPort } from 'node:worker_threads';
import { runRegion, BS } from './io.mjs';

const { handle, dist, args } = workerData;
const { attach } = await import(dist);
// Resets that had resolved before this thread started (it may be a replacement for one that exited).
let epoch = workerData.epoch ?? 0;
parentPort.on('message', (m) => {
  if (typeof m.epoch === 'number') epoch = Math.max(epoch, m.epoch);
});
const codes = {};
const mismatches = [];
let attaches = 0;
const stopped = () => Atomics.load(args.control, args.region * 2) !== 0;
while (!stopped()) {
  const seen = epoch;
  let q;
  try {
    q = await attach(handle);
    attaches++;
  } catch (e) {
    codes[`attach:${e.code}`] = (codes[`attach:${e.code}`] ?? 0) + 1;
    await new Promise((r) => setTimeout(r, 50));
    continue;
  }
  const bufs = [];
  const io = {
    read: (nsid, lba, buf) => q.read(nsid, lba, 1, buf),
    write: (nsid, lba, buf) => q.write(nsid, lba, 1, buf),
    deallocate: (nsid, lba) => q.deallocate(nsid, [{ slba: lba, nlb: 1 }]),
    flush: (nsid) => q.flush(nsid),
    alloc: () => {
      const b = q.allocBuffer(BS);
      bufs.push(b);
      return b;
    },
  };
  const r = await runRegion(io, { ...args, deadline: Infinity, stopOnReset: true, seed: args.seed + attaches });
  for (const [k, v] of Object.entries(r.codes)) codes[k] = (codes[k] ?? 0) + v;
  mismatches.push(...r.mismatches.slice(0, 10 - mismatches.length));
  try {
    for (const b of bufs) q.releaseBuffer(b);
  } catch {}
  await q.detach().catch((e) => {
    codes[`detach:${e.code}`] = (codes[`detach:${e.code}`] ?? 0) + 1;
  });
  if (r.ended === 'reset') while (epoch === seen && !stopped()) await new Promise((res) => setTimeout(res, 10));
}
parentPort.postMessage({ done: true, codes, mismatches, attaches });
