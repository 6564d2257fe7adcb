#!/usr/bin/env node
// The submission / completion path in one thread, no workers: 4 KiB random reads on a memory namespace
// at depth 32, in batches behind one doorbell write. Measures what one queue pair costs per command.
//   node bench/hotpath.mjs [--seconds 3] [--depth 32] [--runs 3]
import { parseArgs } from 'node:util';
import { openController } from '../dist/engine/local.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, depth: { type: 'string', default: '32' }, runs: { type: 'string', default: '3' } } });
const seconds = Number(values.seconds);
const depth = Number(values.depth);
const blocks = (64 << 20) / 4096;
const results = [];
for (let r = 0; r < Number(values.runs); r++) {
  const d = await openController({ namespaces: [{ backend: 'memory', size: 64 << 20 }] });
  const q = await d.createIoQueuePair({ entries: depth + 1 });
  const bufs = Array.from({ length: depth }, () => q.allocBuffer(4096));
  const pending = new Array(depth);
  let ios = 0;
  let x = 12345;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    q.plug();
    for (let i = 0; i < depth; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      pending[i] = q.read(1, x % blocks, 1, bufs[i]);
    }
    q.unplug();
    await Promise.all(pending);
    ios += depth;
  }
  results.push(ios / ((performance.now() - t0) / 1000));
  await d.close();
}
results.sort((a, b) => a - b);
console.log(`one queue pair, one thread, memory namespace, 4 KiB reads, depth ${depth}: median ${Math.round(results[Math.floor(results.length / 2)] / 1000)}k IOPS (runs: ${results.map((v) => Math.round(v / 1000) + 'k').join(', ')})`);
