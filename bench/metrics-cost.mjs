#!/usr/bin/env node
// The cost of metrics through the whole engine: 4 KiB random reads on a memory namespace from `--workers`
// workers (depth 32 each, batches behind one doorbell), Engine.open({ metrics: false }) and with the
// default counting, alternating in one invocation (the order swapped every round). Prints each round's
// IOPS and on / off ratio, then the medians. Run `npm run build` first.
//   node bench/metrics-cost.mjs [--workers 2] [--seconds 2] [--rounds 8] [--depth 32]
import { parseArgs } from 'node:util';
import { Engine } from '../dist/engine/engine.js';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '2' }, seconds: { type: 'string', default: '2' },
  rounds: { type: 'string', default: '8' }, depth: { type: 'string', default: '32' },
} });
const workers = Number(values.workers);
const seconds = Number(values.seconds);
const depth = Number(values.depth);
const size = 256 << 20;
const task = new URL('./tasks/randread.mjs', import.meta.url).href;

async function run(metrics) {
  const e = await Engine.open({ namespaces: [{ backend: 'memory', size }], workers, queueDepth: depth + 1, metrics });
  try {
    const out = await Promise.all(Array.from({ length: workers }, () => e.run(task, { nsid: 1, blocks: size / 4096, lbaSize: 4096, depth, seconds })));
    return out.reduce((s, r) => s + r.ios, 0) / seconds;
  } finally {
    await e.close();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const k = (v) => `${Math.round(v / 1000)}k`;
const off = [];
const on = [];
for (let r = 0; r < Number(values.rounds); r++) {
  for (const m of r % 2 === 0 ? [false, true] : [true, false]) (m ? on : off).push(await run(m));
  console.log(`round ${r + 1}: off ${k(off[r])}, on ${k(on[r])}, on / off ${(on[r] / off[r]).toFixed(3)}`);
}
console.log(`${workers} worker(s), memory namespace, 4 KiB reads, depth ${depth}, ${process.version}: median off ${k(median(off))}, on ${k(median(on))} IOPS; on / off ${(median(on) / median(off)).toFixed(3)} (ratio of medians), ${median(on.map((v, i) => v / off[i])).toFixed(3)} (median of the rounds' ratios)`);
