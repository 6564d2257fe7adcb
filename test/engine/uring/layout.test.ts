/**
 * The staged-operation layout and the limits that src/engine/uring/ring.ts
 * and native/ring.h each write down: the addon reads the Float64Array of
 * operations and segments by ring.h's indices, so the two must agree value
 * for value. This reads the header as text (no compiler needed, so it runs
 * on the portable build too) and checks it against ring.ts's exports, both
 * ways: a field, opcode or limit added, removed or renumbered on one side
 * alone fails here.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as ring from '../../../src/engine/uring/ring.js';

const header = stripComments(fs.readFileSync(new URL('../../../native/ring.h', import.meta.url), 'utf8'));

function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
}

function parseInteger(text: string): number {
  const digits = text.replace(/'/g, '').replace(/[uUlL]+$/, '');
  const n = Number(digits);
  if (!Number.isSafeInteger(n)) throw new Error(`ring.h: not an integer literal: ${text}`);
  return n;
}

/** The enumerators of `enum name`, each with the value written beside it (ring.h writes every one). */
function enumerators(name: string): Map<string, number> {
  const body = new RegExp(`enum\\s+${name}\\b[^{]*\\{([^}]*)\\}`).exec(header)?.[1];
  if (body === undefined) throw new Error(`ring.h: no enum ${name}`);
  const out = new Map<string, number>();
  for (const entry of body.split(',').map((e) => e.trim()).filter(Boolean)) {
    const m = /^(\w+)\s*=\s*([0-9'xXa-fA-F]+[uUlL]*)$/.exec(entry);
    if (!m) throw new Error(`ring.h: enum ${name}: "${entry}" has no explicit value`);
    out.set(m[1]!, parseInteger(m[2]!));
  }
  return out;
}

/** `constexpr <type> name = value;` */
function constant(name: string): number {
  const m = new RegExp(`constexpr\\s+[\\w\\s]+?\\b${name}\\s*=\\s*([0-9'xXa-fA-F]+[uUlL]*)\\s*;`).exec(header);
  if (!m) throw new Error(`ring.h: no constexpr ${name}`);
  return parseInteger(m[1]!);
}

/** kOpFixed -> FIXED, kRingWritev -> WRITEV: the C++ name's tail in TypeScript's spelling. */
function screaming(camel: string): string {
  return camel.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** ring.ts's exports whose names match `pattern`, by name. */
function exports(pattern: RegExp): Map<string, unknown> {
  return new Map(Object.entries(ring).filter(([name]) => pattern.test(name)));
}

describe('native/ring.h and src/engine/uring/ring.ts agree', () => {
  it('on the staged operation: its size and the index of every field', () => {
    const native = enumerators('RingField');
    // kOpWords closes the enum: the count, not a field.
    const words = native.get('kOpWords');
    native.delete('kOpWords');
    expect(words, 'kOpWords').toBe(ring.OP_WORDS);
    const expected = new Map([...native].map(([name, value]) => [`F_${screaming(name.replace(/^kOp/, ''))}`, value]));
    expect(exports(/^F_/)).toEqual(expected);
    // Every field its own double, inside the operation.
    const indices = [...native.values()].sort((a, b) => a - b);
    expect(indices).toEqual(Array.from({ length: ring.OP_WORDS }, (_, i) => i));
  });

  it('on the opcodes', () => {
    const native = enumerators('RingOpcode');
    const expected = new Map([...native].map(([name, value]) => [`OP_${screaming(name.replace(/^kRing/, ''))}`, value]));
    expect(exports(/^OP_(?!WORDS$)/)).toEqual(expected);
    expect(new Set(native.values()).size).toBe(native.size);
    // 0 is no opcode: a slot the host forgot to fill is refused, not read as one.
    expect([...native.values()]).not.toContain(0);
  });

  it('on the segment layout and the limits the addon enforces', () => {
    expect(constant('kSegWords'), 'kSegWords').toBe(ring.SEG_WORDS);
    expect(constant('kMaxSegments'), 'kMaxSegments').toBe(ring.MAX_IOV);
    expect(constant('kMaxEntries'), 'kMaxEntries').toBe(ring.MAX_RING_ENTRIES);
    expect(constant('kMaxSpinUs'), 'kMaxSpinUs').toBe(ring.MAX_SPIN_US);
  });
});
