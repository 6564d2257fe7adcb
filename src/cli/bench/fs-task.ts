/**
 * `--compare node-fs`: the same closed loop as job-task.ts, in a plain worker
 * thread, through what Node offers: `node:fs/promises` FileHandle.read / write
 * on the same file (libuv's thread pool).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { open, constants } from 'node:fs/promises';
import { runLoop, type LoopArgs } from './loop.js';

export interface FsTaskArgs extends LoopArgs {
  path: string;
  direct: boolean;
  writes: boolean;
}

const args = workerData as FsTaskArgs;
const flags = (args.writes ? constants.O_RDWR : constants.O_RDONLY) | (args.direct ? (constants.O_DIRECT ?? 0) : 0);
const fh = await open(args.path, flags);
try {
  const result = await runLoop(
    {
      read: (pos, buf) => fh.read(buf, 0, buf.length, pos),
      write: (pos, buf) => fh.write(buf, 0, buf.length, pos),
      plug: () => {},
      unplug: () => {},
      alloc: (bytes) => new Uint8Array(new ArrayBuffer(bytes)),
      release: () => {},
    },
    args,
  );
  parentPort!.postMessage({ ok: true, result });
} catch (e) {
  parentPort!.postMessage({ ok: false, message: e instanceof Error ? e.message : String(e) });
} finally {
  await fh.close();
}
