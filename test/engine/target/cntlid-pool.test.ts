/**
 * CNTLIDs of the dynamic controller model: 1..FFEFh, a freed one not handed
 * out again at once, none left = undefined (the Connect then gets Controller
 * Busy).
 */
import { describe, it, expect } from 'vitest';
import { CntlidPool } from '../../../src/engine/target/cntlid-pool.js';

describe('CntlidPool', () => {
  it('hands out 1, 2, 3... and by default stays within 1..FFEFh', () => {
    const p = new CntlidPool();
    expect([p.take(), p.take(), p.take()]).toEqual([1, 2, 3]);
    expect(p.inUse).toBe(3);
  });

  it('does not reuse a freed ID before the others have had their turn', () => {
    const p = new CntlidPool(1, 4);
    expect([p.take(), p.take()]).toEqual([1, 2]);
    p.release(1);
    expect(p.take()).toBe(3);
    expect(p.take()).toBe(4);
    expect(p.take()).toBe(1);
    expect(p.take()).toBeUndefined();
    p.release(3);
    expect(p.take()).toBe(3);
  });

  it('wraps at the top of the range', () => {
    const p = new CntlidPool(0xffee, 0xffef);
    expect([p.take(), p.take(), p.take()]).toEqual([0xffee, 0xffef, undefined]);
  });
});
