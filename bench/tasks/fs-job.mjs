// node:fs promises baseline, in a worker thread: `depth` concurrent 4 KiB random reads (or writes) on the
// same file for `seconds`, after `ramp` seconds unmeasured. With O_DIRECT the buffers sit on page boundaries (placed with nvmq's addon,
// which Node has no way to do).
import { workerData, parentPort } from 'node:worker_threads';
import { open, constants } from 'node:fs/promises';
import { loadNative } from '../../dist/engine/uring/native.js';

const { path, blocks, lbaSize, depth, seconds, write, direct, ramp = 0 } = workerData;
const fh = await open(path, (write ? constants.O_RDWR : constants.O_RDONLY) | (direct ? constants.O_DIRECT : 0));
const sab = new SharedArrayBuffer((depth + 1) * lbaSize);
const skew = direct ? (4096 - loadNative().pageOffsetOf(new Uint8Array(sab))) % 4096 : 0;
let ios = 0;
const lat = [];
const from = performance.now() + ramp * 1000;
const end = from + seconds * 1000;
await Promise.all(Array.from({ length: depth }, async (_, lane) => {
  const buf = new Uint8Array(sab, skew + lane * lbaSize, lbaSize).fill(0x5a);
  while (performance.now() < end) {
    const pos = Math.floor(Math.random() * blocks) * lbaSize;
    const t0 = performance.now();
    if (write) await fh.write(buf, 0, lbaSize, pos);
    else await fh.read(buf, 0, lbaSize, pos);
    if (t0 < from) continue;
    if (lat.length < 1 << 20) lat.push((performance.now() - t0) * 1000);
    ios++;
  }
}));
await fh.close();
lat.sort((a, b) => a - b);
parentPort.postMessage({ ios, p50: lat[Math.floor(lat.length / 2)] ?? 0 });
