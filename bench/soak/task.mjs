// The soak's pool task: verified random I/O on its region (io.mjs) with the worker's queue pair, until its
// deadline; or, with { flushOnly: nsid }, one flush whose outcome ('ok' or the error's code) it returns.
import { runRegion, BS } from './io.mjs';

export default async function soakTask(queue, args) {
  if (args.flushOnly) return queue.flush(args.flushOnly).then(() => 'ok', (e) => e.code ?? String(e));
  const io = {
    read: (nsid, lba, buf) => queue.read(nsid, lba, 1, buf),
    write: (nsid, lba, buf) => queue.write(nsid, lba, 1, buf),
    deallocate: (nsid, lba) => queue.deallocate(nsid, [{ slba: lba, nlb: 1 }]),
    flush: (nsid) => queue.flush(nsid),
    alloc: () => queue.allocBuffer(BS),
  };
  const r = await runRegion(io, args);
  return { codes: r.codes, mismatches: r.mismatches };
}
