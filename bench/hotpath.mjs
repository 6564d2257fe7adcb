#!/usr/bin/env node
// The submission / completion path in one thread, no workers: 4 KiB random reads on a memory namespace
// at depth 32, in batches behind one doorbell write. Measures what one queue pair costs per command.
//   node bench/hotpath.mjs [--seconds 3] [--depth 32] [--runs 3] [--metrics off|on|both]
// --metrics both alternates runs without and with the I/O counters (metrics/io-metrics.ts), so the two
// medians come from the same invocation, interleaved, and prints their ratio.
import { parseArgs } from 'node:util';
import { openController } from '../dist/engine/local-device.js';
import { IoMetrics } from '../dist/engine/metrics/io-metrics.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, depth: { type: 'string', default: '32' }, runs: { type: 'string', default: '3' }, metrics: { type: 'string', default: 'off' } },
});
const seconds = Number(values.seconds);
const depth = Number(values.depth);
if (!['off', 'on', 'both'].includes(values.metrics)) throw new Error(`--metrics must be off, on or both, got ${values.metrics}`);
const modes = values.metrics === 'both' ? [false, true] : [values.metrics === 'on'];
const blocks = (64 << 20) / 4096;

async function run(withMetrics) {
  const d = await openController({ namespaces: [{ backend: 'memory', size: 64 << 20 }] });
  const metrics = withMetrics ? IoMetrics.create({ maxQid: 1, nsids: [1] }) : undefined;
  const q = await d.createIoQueuePair({ entries: depth + 1, metrics });
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
  const iops = ios / ((performance.now() - t0) / 1000);
  await d.close();
  return iops;
}

const results = new Map(modes.map((m) => [m, []]));
for (let r = 0; r < Number(values.runs); r++) {
  // Alternate the order within each round so neither mode always runs first (warm-up, a noisy neighbour).
  for (const m of r % 2 === 0 ? modes : [...modes].reverse()) results.get(m).push(await run(m));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const k = (v) => Math.round(v / 1000) + 'k';
for (const [m, xs] of results) {
  console.log(`one queue pair, one thread, memory namespace, 4 KiB reads, depth ${depth}, metrics ${m ? 'on' : 'off'}: median ${k(median(xs))} IOPS (runs: ${xs.map(k).join(', ')})`);
}
if (modes.length === 2) {
  // Also the median of each round's own ratio: a round's two runs share the machine's load at that moment.
  const paired = results.get(true).map((on, i) => on / results.get(false)[i]);
  console.log(`metrics on / off: ${(median(results.get(true)) / median(results.get(false))).toFixed(3)} (ratio of medians), ${median(paired).toFixed(3)} (median of the rounds' ratios: ${paired.map((r) => r.toFixed(3)).join(', ')})`);
}
