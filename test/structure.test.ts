/**
 * The shape of src/: no import cycles (type-only imports included: a cycle of
 * types is still two modules that cannot be read apart), and no file longer
 * than a maintainer can hold without a reason stated at its top.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', 'src');
/** About 500 lines; a longer file says why in its header comment, on a line starting "Long because". */
const MAX_LINES = 520;

function sources(dir = ROOT): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The relative modules a file imports or re-exports, as source paths. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s*['"](\.{1,2}\/[^'"]+)['"]/gm)) {
    out.push(path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  return out;
}

/** Every cycle found by a depth-first walk, as the chain of files (relative to src/). */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return cycles;
}

describe('src/ structure', () => {
  const files = sources();

  it('finds the source files and their imports', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(importsOf(path.join(ROOT, 'engine', 'engine.ts')).length).toBeGreaterThan(5);
  });

  it('the cycle finder finds a cycle, including one through a type import', () => {
    expect(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]))).toEqual([['a', 'b', 'c', 'a']]);
    expect(findCycles(new Map([['a', ['b']], ['b', []]]))).toEqual([]);
  });

  it('has no import cycles', () => {
    const graph = new Map(files.map((f) => [f, importsOf(f)]));
    const cycles = findCycles(graph).map((c) => c.map((f) => path.relative(ROOT, f)).join(' → '));
    expect(cycles).toEqual([]);
  });

  it(`has no file over ${MAX_LINES} lines without a reason at its top`, () => {
    const long = files.filter((f) => {
      const text = fs.readFileSync(f, 'utf8');
      const header = text.slice(0, text.indexOf('*/') + 2);
      return text.split('\n').length > MAX_LINES && !/^\s*\*\s*Long because/m.test(header);
    });
    expect(long.map((f) => path.relative(ROOT, f))).toEqual([]);
  });
});
