#!/usr/bin/env node
// The long fuzz run: random and mutated SQEs, admin commands, register and doorbell writes against memory
// and file namespaces (test/engine/device/fuzz/long-run.fuzz.ts, run by vitest), until --commands have run.
//   node bench/fuzz.mjs [--commands 1000000] [--seed S] [--worlds memory,file/io_uring,file/portable] [--file-share 0.05]
//   node bench/fuzz.mjs --seed S --property NAME --path P      (replays one failure, as the failure report says)
// Prints commands/s as it goes, then counts per status and per input kind. Exit status 1 on a failure.
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

const { values } = parseArgs({
  options: {
    commands: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    worlds: { type: 'string' },
    'file-share': { type: 'string' },
    property: { type: 'string' },
    path: { type: 'string' },
  },
});
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const env = { ...process.env, NVMQ_FUZZ_COMMANDS: values.commands };
if (values.seed !== undefined) env.NVMQ_FUZZ_SEED = values.seed;
if (values.worlds !== undefined) env.NVMQ_FUZZ_WORLDS = values.worlds;
if (values['file-share'] !== undefined) env.NVMQ_FUZZ_FILE_SHARE = values['file-share'];
if (values.property !== undefined) env.NVMQ_FUZZ_PROPERTY = values.property;
if (values.path !== undefined) env.NVMQ_FUZZ_PATH = values.path;
const t0 = Date.now();
const r = spawnSync(process.execPath, [path.join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'vitest.fuzz.config.ts', '--reporter', 'dot'], { cwd: root, env, stdio: 'inherit' });
console.log(`fuzz: ${r.status === 0 ? 'passed' : 'FAILED'} after ${((Date.now() - t0) / 1000).toFixed(0)} s (wall clock, vitest start-up included)`);
process.exit(r.status ?? 1);
