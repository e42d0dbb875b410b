import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import { TagPool } from '../../src/transaction/index.js';

describe('TagPool', () => {
  it('hands out 256 8-bit tags, then -1; frees reuse the oldest free tag first', () => {
    const pool = new TagPool();
    const tags = Array.from({ length: 256 }, () => pool.tryAlloc());
    expect(new Set(tags).size).toBe(256);
    expect(Math.max(...tags)).toBe(255);
    expect(pool.tryAlloc()).toBe(-1);
    expect(pool.free(7)).toBe(true);
    expect(pool.free(7)).toBe(false);
    pool.free(3);
    expect(pool.tryAlloc()).toBe(7);
    expect(pool.tryAlloc()).toBe(3);
  });

  it('10-bit mode uses 256..1023 (768 tags, never Tag[9:8] = 00b)', () => {
    const pool = new TagPool();
    pool.set10Bit(true);
    expect(pool.capacity).toBe(768);
    const tags = Array.from({ length: 768 }, () => pool.tryAlloc());
    expect(Math.min(...tags)).toBe(256);
    expect(Math.max(...tags)).toBe(1023);
    expect(pool.tryAlloc()).toBe(-1);
  });

  it('maxOutstanding caps the tags in use', () => {
    const pool = new TagPool({ maxOutstanding: 2 });
    expect([pool.tryAlloc(), pool.tryAlloc(), pool.tryAlloc()]).toEqual([0, 1, -1]);
    expect(pool.inUse).toBe(2);
    expect(() => new TagPool({ maxOutstanding: 0 })).toThrow(TlpwireError);
  });
});
