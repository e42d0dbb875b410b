import { describe, expect, it } from 'vitest';
import { BatchWriter, type Slab } from '../../src/link/framing.js';
import { MAX_MESSAGE_BYTES } from '../../src/link/constants.js';

/** Fills and finishes one batch of a 60 KB item; returns its slab. */
function batch(w: BatchWriter): Slab {
  w.appendItem(0x80, new Uint8Array(60_000));
  w.finish();
  return w.lastSlab;
}

/** Batches until one lands in a slab other than `slab`; returns the batches of `slab` and that other slab. */
function fillSlab(w: BatchWriter, slab: Slab): { count: number; next: Slab } {
  let count = 1; // the one that brought us here
  for (;;) {
    const s = batch(w);
    if (s !== slab) return { count, next: s };
    count++;
  }
}

describe('BatchWriter slabs', () => {
  it('reuses a slab once every batch carved from it has been released, and never one that is still held', () => {
    const w = new BatchWriter(1, MAX_MESSAGE_BYTES * 2);
    const a = batch(w);
    const { count: inA, next: b } = fillSlab(w, a);
    expect(b).not.toBe(a);
    expect(inA).toBeGreaterThan(1);
    for (let i = 0; i < inA; i++) w.release(a); // every batch of `a` written
    // `b` keeps its batches: when it fills up, `a` comes back, and `b` is not reused after it.
    const { next: c } = fillSlab(w, b);
    expect(c).toBe(a);
    const { next: d } = fillSlab(w, c);
    expect(d).not.toBe(b);
    expect(d).not.toBe(a);
  });
});
