/**
 * The command fuzzer (commands.test.ts) against file namespaces, on every
 * data path the suite runs (io_uring and the portable node:fs path where
 * io_uring works): commands complete from the ring or libuv's pool after the
 * doorbell returns, and the namespaces are read back from the files.
 * Shorter runs than the memory world's; the long run (npm run fuzz) does more.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { DATA_PATHS } from '../../../helpers/harness.js';
import { SEED, setUpWorld, closeWorld } from './world.js';
import { stats } from './runners.js';
import { check, sanityRound } from './properties.js';

afterEach(closeWorld);

describe.each(DATA_PATHS)('fuzzing the controller on file namespaces (%s)', (dataPath) => {
  it('every property, seeded, then a verified sanity round', async () => {
    await setUpWorld({ backend: 'file', dataPath });
    const ok = stats.ioOk;
    await check('ioOneByOne', 30, SEED + 10);
    await check('ioBatched', 10, SEED + 11);
    await check('adminOneByOne', 15, SEED + 12);
    await check('ioWithRegisters', 15, SEED + 13);
    await check('registerChaos', 8, SEED + 14);
    await sanityRound();
    expect(stats.ioOk - ok).toBeGreaterThan(20);
  }, 60_000);

  it('every property, unseeded (the failure report names the seed)', async () => {
    await setUpWorld({ backend: 'file', dataPath });
    await check('ioOneByOne', 10);
    await check('ioBatched', 4);
    await check('adminOneByOne', 5);
    await check('ioWithRegisters', 5);
    await check('registerChaos', 3);
  }, 60_000);
});
