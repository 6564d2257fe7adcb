#!/usr/bin/env node
// CRC32C cost per buffer: the implementation crc32c() loaded (the addon where it loads) against the
// JavaScript fallback, over a plain ArrayBuffer and a SharedArrayBuffer view (the DMA arena's kind).
//   node bench/crc32c.mjs [--sizes 72,4096,131072] [--ms 300] [--runs 3]
// Prints the median time per call and the throughput; runs alternate between the implementations.
import { parseArgs } from 'node:util';
import { crc32c, crc32cJavaScript, crc32cImplementation } from '../dist/engine/shared/crc32c.js';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '72,4096,131072' }, ms: { type: 'string', default: '300' }, runs: { type: 'string', default: '3' } } });
const sizes = values.sizes.split(',').map(Number);
const ms = Number(values.ms);
const runs = Number(values.runs);

function nsPerCall(fn, buf) {
  for (let i = 0; i < 1000; i++) fn(buf);
  let calls = 0;
  let sink = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 100; i++) sink ^= fn(buf);
    calls += 100;
  }
  if (sink === 0.5) console.log(sink);
  return ((performance.now() - t0) * 1e6) / calls;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

console.log(`crc32c implementation: ${crc32cImplementation}`);
for (const size of sizes) {
  const plain = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
  const shared = new Uint8Array(new SharedArrayBuffer(size));
  shared.set(plain);
  const rows = { [`${crc32cImplementation}`]: [], [`${crc32cImplementation}, shared`]: [], javascript: [] };
  for (let r = 0; r < runs; r++) {
    rows[crc32cImplementation].push(nsPerCall(crc32c, plain));
    rows[`${crc32cImplementation}, shared`].push(nsPerCall(crc32c, shared));
    rows.javascript.push(nsPerCall(crc32cJavaScript, plain));
  }
  for (const [name, xs] of Object.entries(rows)) {
    const ns = median(xs);
    console.log(`${String(size).padStart(7)} B  ${name.padEnd(16)} ${ns.toFixed(0).padStart(8)} ns  ${(size / ns).toFixed(2)} GB/s`);
  }
}
