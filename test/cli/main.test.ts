import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/harness.js';

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function nvmq(cwd: string, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('nvmq command', () => {
  beforeAll(() => {
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build (npm test does)`);
  });

  it('creates the default image on first use and passes its verified check job', () => {
    const t = tempDir();
    try {
      const r = nvmq(t.dir, '--count', '64');
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toContain('verify ok');
      const img = path.join(t.dir, 'nvmq-data', 'default.img');
      expect(fs.statSync(img).size).toBe(1 << 30);
      // Sparse: far less than 1 GiB allocated.
      expect(fs.statSync(img).blocks * 512).toBeLessThan(64 << 20);
      expect(JSON.parse(fs.readFileSync(img + '.nvmq.json', 'utf8'))).toMatchObject({ format: 'nvmq-image', size: 1 << 30 });
      // A second run reuses it.
      expect(nvmq(t.dir, '--count', '16').code).toBe(0);
    } finally {
      t.cleanup();
    }
  });

  it('refuses to write to a file it did not create, unless --force', () => {
    const t = tempDir();
    try {
      const f = path.join(t.dir, 'mine.bin');
      fs.writeFileSync(f, Buffer.alloc(8 << 20, 7));
      const r = nvmq(t.dir, '--filename', f, '--count', '8');
      expect(r.code).toBe(1);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toContain('refusing to write');
      expect(fs.readFileSync(f).every((b) => b === 7)).toBe(true);
      const forced = nvmq(t.dir, '--filename', f, '--count', '8', '--force');
      expect(forced.code).toBe(0);
    } finally {
      t.cleanup();
    }
  });

  it('names a bad option value in one line and exits 2', () => {
    const t = tempDir();
    try {
      for (const [args, needle] of [
        [['--bs', '3k'], '--bs'],
        [['--size', 'huge'], '--size'],
        [['--count', '0'], '--count'],
        [['--nope'], '--nope'],
        [['frobnicate'], 'frobnicate'],
      ] as const) {
        const r = nvmq(t.dir, ...args);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.err.trim().split('\n'), args.join(' ')).toHaveLength(1);
        expect(r.err).toContain(needle);
      }
      const help = nvmq(t.dir, '--help');
      expect(help.code).toBe(0);
      for (const o of ['--filename', '--size', '--bs', '--count', '--force']) expect(help.out).toContain(o);
    } finally {
      t.cleanup();
    }
  });

  it('prints identify and smart-log', () => {
    const t = tempDir();
    try {
      const id = nvmq(t.dir, 'identify', '--size', '16M', '--filename', 'x.img');
      expect(id.code).toBe(0);
      expect(id.out).toMatch(/namespace 1 +nsze 4096 +lba 4096 B/);
      const smart = nvmq(t.dir, 'smart-log', '--filename', 'x.img');
      expect(smart.code).toBe(0);
      expect(JSON.parse(smart.out.slice(smart.out.indexOf('{')))).toMatchObject({ availableSpare: 100, powerCycles: 1 });
    } finally {
      t.cleanup();
    }
  });
});
