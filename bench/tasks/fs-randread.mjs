// node:fs promises baseline, run in a worker thread: random 4 KiB reads on the same file at the same depth.
import { workerData, parentPort } from 'node:worker_threads';
import { open } from 'node:fs/promises';

const { path, blocks, lbaSize, depth, seconds } = workerData;
const fh = await open(path, 'r');
let ios = 0;
const end = performance.now() + seconds * 1000;
await Promise.all(Array.from({ length: depth }, async () => {
  const buf = Buffer.alloc(lbaSize);
  while (performance.now() < end) {
    await fh.read(buf, 0, lbaSize, Math.floor(Math.random() * blocks) * lbaSize);
    ios++;
  }
}));
await fh.close();
parentPort.postMessage({ ios });
