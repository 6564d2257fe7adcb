import { defineConfig } from 'vitest/config';

/** The long fuzz run (bench/fuzz.mjs): no time limit per test, the fuzzer's own watchdog instead. */
export default defineConfig({
  test: {
    include: ['test/**/*.fuzz.ts'],
    testTimeout: 0,
    hookTimeout: 60_000,
  },
});
