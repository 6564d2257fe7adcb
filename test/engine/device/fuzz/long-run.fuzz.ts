/**
 * The long fuzz run (npm run fuzz, or node bench/fuzz.mjs): the suite's
 * properties (properties.ts) in seeded chunks until NVMQ_FUZZ_COMMANDS
 * commands have run, on the memory world and the file worlds (both data
 * paths where io_uring works), printing commands/s as it goes and, at the
 * end, counts per status and per input kind. A failure prints fast-check's
 * report (seed and path) and the command that replays it.
 *
 * Environment: NVMQ_FUZZ_COMMANDS (default 1e6), NVMQ_FUZZ_SEED (default
 * now), NVMQ_FUZZ_WORLDS (comma list of memory, file/io_uring,
 * file/portable; default all), NVMQ_FUZZ_FILE_SHARE (share of the commands
 * run on file worlds, default 0.05), NVMQ_FUZZ_PROPERTY with
 * NVMQ_FUZZ_PATH (replay one failure).
 */
import { it } from 'vitest';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { DATA_PATHS } from '../../../helpers/harness.js';
import { formatStatus } from '../../../../src/engine/spec/status.js';
import { w, setUpWorld, closeWorld, worldName, type WorldKind } from './world.js';
import { stats } from './runners.js';
import { properties, label, sanityRound, type PropertyName } from './properties.js';

const out = (s: string): void => {
  fs.writeSync(1, `${s}\n`);
};
const target = Number(process.env.NVMQ_FUZZ_COMMANDS ?? 1e6);
const seed = Number(process.env.NVMQ_FUZZ_SEED ?? Date.now() % 2 ** 31);
const fileShare = Number(process.env.NVMQ_FUZZ_FILE_SHARE ?? 0.05);
const all: WorldKind[] = [{ backend: 'memory' }, ...DATA_PATHS.map((dataPath): WorldKind => ({ backend: 'file', dataPath }))];
const wanted = process.env.NVMQ_FUZZ_WORLDS?.split(',') ?? all.map(worldName);
const worlds = all.filter((k) => wanted.includes(worldName(k)));
/** Runs per chunk of each property, in turn: about as many commands from each. */
const CHUNKS: Array<[PropertyName, number]> = [
  ['ioOneByOne', 300],
  ['ioBatched', 60],
  ['adminOneByOne', 200],
  ['ioWithRegisters', 200],
  ['registerChaos', 40],
];

function replay(): boolean {
  return process.env.NVMQ_FUZZ_PROPERTY !== undefined;
}

function share(k: WorldKind): number {
  const files = worlds.filter((x) => x.backend === 'file').length;
  const mem = worlds.length - files;
  if (k.backend === 'file') return mem === 0 ? 1 / files : fileShare / files;
  return files === 0 ? 1 : 1 - fileShare;
}

const t0 = performance.now();

for (const kind of worlds) {
  it(`fuzz ${worldName(kind)}`, async () => {
    await setUpWorld(kind);
    try {
      if (replay()) {
        const name = process.env.NVMQ_FUZZ_PROPERTY as PropertyName;
        label(name, seed);
        await fc.assert(properties[name] as fc.IAsyncProperty<[unknown]>, { seed, path: process.env.NVMQ_FUZZ_PATH, numRuns: 1 });
        out(`replayed ${name} seed ${seed} path ${process.env.NVMQ_FUZZ_PATH}: passed`);
        return;
      }
      const goal = stats.commands + Math.round(target * share(kind));
      const start = stats.commands;
      const tw = performance.now();
      let last = tw;
      let chunk = 0;
      while (stats.commands < goal) {
        const [name, numRuns] = CHUNKS[chunk % CHUNKS.length]!;
        const s = (seed + chunk) | 0;
        chunk++;
        label(name, s);
        try {
          await fc.assert(properties[name] as fc.IAsyncProperty<[unknown]>, { seed: s, numRuns, endOnFailure: true });
        } catch (e) {
          const m = /path: "([^"]*)"/.exec((e as Error).message);
          out(`\nFAILED: ${worldName(kind)}, ${name}, seed ${s}\n${(e as Error).message}`);
          out(`replay: NVMQ_FUZZ_WORLDS=${worldName(kind)} node bench/fuzz.mjs --seed ${s} --property ${name}${m ? ` --path ${m[1]}` : ''}`);
          throw e;
        }
        const now = performance.now();
        if (now - last > 10_000) {
          last = now;
          const n = stats.commands - start;
          out(`${worldName(kind)}: ${n} commands, ${Math.round((n / (now - tw)) * 1000)} commands/s (total ${stats.commands} in ${((now - t0) / 1000).toFixed(0)} s)`);
        }
      }
      await sanityRound();
      const n = stats.commands - start;
      const secs = (performance.now() - tw) / 1000;
      out(`${worldName(kind)}: done, ${n} commands in ${secs.toFixed(1)} s, ${Math.round(n / secs)} commands/s, seeds ${seed}..${seed + chunk - 1}`);
    } finally {
      w.watchdog.disarm();
      await closeWorld();
    }
  });
}

it('report', () => {
  if (replay()) return;
  const secs = (performance.now() - t0) / 1000;
  out(`\ntotal: ${stats.commands} commands in ${secs.toFixed(1)} s, ${Math.round(stats.commands / secs)} commands/s (seed ${seed})`);
  out(`I/O ${stats.io} (${stats.ioOk} succeeded), admin ${stats.admin} (${stats.adminOk} succeeded), skipped (would touch host-owned memory, or reorderable in a batch) ${stats.skipped}`);
  out('\ncompletions by status:');
  for (const [code, n] of [...stats.statuses].sort((a, b) => b[1] - a[1])) out(`  0x${code.toString(16).padStart(3, '0')} ${formatStatus(code).padEnd(48)} ${n}`);
  out('\nsuccessful I/O by kind:');
  for (const [k, n] of [...stats.okKinds].sort((a, b) => b[1] - a[1])) out(`  ${k.padEnd(48)} ${n}`);
  out(`  (through PRP lists: ${stats.okListed}, through chained lists: ${stats.okChained})`);
  out('\ninputs by kind:');
  for (const [k, n] of [...stats.kinds].sort((a, b) => b[1] - a[1])) out(`  ${k.padEnd(56)} ${n}`);
});
