import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgv, makeJob, makeSettings, SHAPE_OPTIONS } from '../../src/cli/options.js';

const read = (p: string): string => fs.readFileSync(fileURLToPath(new URL(`../../${p}`, import.meta.url)), 'utf8');
const README = read('README.md');

/** The README between a heading and the next one of the same level. */
function section(heading: string): string {
  const start = README.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const level = heading.split(' ')[0]!;
  const end = README.indexOf(`\n${level} `, start + heading.length + 2);
  return README.slice(start, end < 0 ? undefined : end);
}

describe('README: the nvmq command', () => {
  it('every example command parses, with its options accepted together', () => {
    const examples = section('## The `nvmq` command')
      .split('```')
      .filter((block) => block.startsWith('sh\n'))
      .flatMap((block) => block.split('\n'))
      .filter((l) => l.startsWith('nvmq '))
      .flatMap((l) => l.replace(/\s+#.*$/, '').replace(/\s*>.*$/, '').split('&&'))
      .map((c) => c.trim().split(/\s+/).slice(1));
    expect(examples.length).toBeGreaterThan(5);
    for (const args of examples) {
      const { command, options } = parseArgv(args);
      if (command === 'bench' && SHAPE_OPTIONS.some((k) => options[k] !== undefined)) makeJob(options);
      expect(() => makeSettings(options, command), args.join(' ')).not.toThrow();
    }
  });
});

describe('README: benchmarks', () => {
  it('regression: the multiqueue file row names the data path bench/multiqueue.mjs runs it on', () => {
    // The script leaves the data path to the engine: io_uring where available, node:fs only when asked for.
    expect(read('bench/multiqueue.mjs')).not.toMatch(/dataPath/);
    const rows = section('## Benchmarks')
      .split('\n')
      .filter((l) => l.startsWith('| nvmq file (warm cache'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain('node:fs path: `NVMQ_DISABLE_NATIVE=1`');
  });
});
