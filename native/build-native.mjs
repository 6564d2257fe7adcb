#!/usr/bin/env node
// Builds nvmq's optional native addon (build/Release/nvmq_native.node) with
// the node-gyp from node_modules. Run as the package's "install" script.
//
// This script must NEVER fail an install: when the build is skipped or fails
// it removes any stale addon, prints one line saying the portable path will
// be used, and exits 0. The full node-gyp output of a failed build is kept in
// build/nvmq-native-build.log.
//
//   NVMQ_SKIP_NATIVE=1   skip the build (e.g. so CI can test the fallback).
//
// node-gyp reads the Node headers location from npm's config (npm exports
// ~/.npmrc's `nodedir` as npm_config_nodedir); this script passes the
// environment through untouched. Run it through npm (`npm run install`)
// rather than `node scripts/build-native.mjs` so that config is applied.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const buildDir = join(root, 'build');
const addon = join(buildDir, 'Release', 'nvmq_native.node');
const logFile = join(buildDir, 'nvmq-native-build.log');
const FALLBACK = 'the portable (pure JS) path will be used';

function removeStaleAddon() {
  try {
    rmSync(addon, { force: true });
  } catch {
    // best effort
  }
}

function fallback(why) {
  removeStaleAddon();
  console.log(`nvmq: native addon could not be built (${why}); ${FALLBACK}.`);
}

function findNodeGyp() {
  // Resolve like require() would, so a hoisted node-gyp (when nvmq is itself
  // a dependency) is found too; fall back to the local path.
  try {
    const pkg = createRequire(join(root, 'package.json')).resolve('node-gyp/package.json');
    const bin = join(dirname(pkg), 'bin', 'node-gyp.js');
    if (existsSync(bin)) return bin;
  } catch {
    // not resolvable
  }
  const local = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(local) ? local : null;
}

function main() {
  if (process.env.NVMQ_SKIP_NATIVE === '1') {
    removeStaleAddon();
    console.log(`nvmq: NVMQ_SKIP_NATIVE=1, native addon build skipped; ${FALLBACK}.`);
    return;
  }

  const nodeGyp = findNodeGyp();
  if (nodeGyp === null) {
    fallback('node-gyp not found in node_modules');
    return;
  }

  const res = spawnSync(process.execPath, [nodeGyp, 'rebuild'], {
    cwd: root,
    env: process.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });

  if (res.status === 0 && existsSync(addon)) {
    console.log(`nvmq: native addon built (${addon}).`);
    return;
  }

  let why = res.error
    ? `could not run node-gyp: ${res.error.message}`
    : res.status === 0
      ? 'node-gyp produced no nvmq_native.node'
      : `node-gyp exited with ${res.status ?? res.signal}`;
  try {
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(logFile, `${res.stdout ?? ''}\n${res.stderr ?? ''}`);
    why += `, see ${logFile}`;
  } catch {
    // log is best effort
  }
  fallback(why);
}

try {
  main();
} catch (err) {
  fallback(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
}
process.exitCode = 0;
