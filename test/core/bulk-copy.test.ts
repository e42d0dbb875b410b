/**
 * The bulk copies (src/core/bulk-copy.ts): the JavaScript ones, and the native addon's when it
 * was built, must do the same thing; the native ones must refuse bad ranges without copying.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeferredCopies, copyManyJs, gatherJs, loadNativeBulkCopy, type CopyManyFn, type GatherFn } from '../../src/core/index.js';

const native = loadNativeBulkCopy();
const skipped = typeof native === 'string' ? ` — skipped: ${native}` : '';
const COPIES: [string, GatherFn, CopyManyFn][] = [['js', gatherJs, copyManyJs]];
if (typeof native !== 'string') COPIES.push(['native', native.gather, native.copyMany]);

/** Pieces of random lengths at random, non-overlapping places in a buffer of `room` bytes. */
const pieces = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 40 })), { minLength: 0, maxLength: 30 })
  .map((ps) => {
    const offsets: number[] = [];
    const lengths: number[] = [];
    let o = 0;
    for (const [n, gap] of ps) {
      o += gap;
      offsets.push(o);
      lengths.push(n);
      o += n;
    }
    return { offsets: Int32Array.from(offsets), lengths: Int32Array.from(lengths), room: o };
  });

describe('bulk copies', () => {
  it(`gather moves each piece where a byte-by-byte copy would, and copyMany puts them back (${COPIES.map((c) => c[0]).join(', ')})`, () => {
    fc.assert(
      fc.property(pieces, fc.integer({ min: 0, max: 20 }), fc.constantFrom(...COPIES), ({ offsets, lengths, room }, at, [, gather, copyMany]) => {
        const total = lengths.reduce((a, b) => a + b, 0);
        const src = Uint8Array.from({ length: room + 3 }, (_, i) => (i * 37 + 11) & 0xff);
        const packed = new Uint8Array(at + total + 5).fill(0xee);
        gather(packed, at, src, offsets, lengths, lengths.length);
        const want = new Uint8Array(at + total + 5).fill(0xee);
        let p = at;
        lengths.forEach((n, i) => {
          for (let k = 0; k < n; k++) want[p++] = src[offsets[i]! + k]!;
        });
        expect(packed).toEqual(want);
        const back = new Uint8Array(room + 3);
        const n = lengths.length;
        const packedAt = new Int32Array(n);
        for (let i = 0, o = at; i < n; o += lengths[i]!, i++) packedAt[i] = o;
        copyMany([back], new Int32Array(n), offsets, [packed], new Int32Array(n), packedAt, lengths, n);
        lengths.forEach((n, i) => expect(back.subarray(offsets[i]!, offsets[i]! + n)).toEqual(src.subarray(offsets[i]!, offsets[i]! + n)));
      }),
      { numRuns: 300 },
    );
  });

  it(`deferred copies between many buffers land as the same copies done at once, in order (${COPIES.map((c) => c[0]).join(', ')})`, () => {
    const copy = fc.record({ dst: fc.nat(3), dstOffset: fc.nat(200), src: fc.nat(3), srcOffset: fc.nat(200), length: fc.nat(56) });
    fc.assert(
      fc.property(fc.array(copy, { maxLength: 60 }), fc.integer({ min: 1, max: 8 }), fc.constantFrom(...COPIES), (copies, capacity, [, , copyMany]) => {
        const make = (): Uint8Array[] => [0, 1, 2, 3].map((k) => Uint8Array.from({ length: 256 }, (_, i) => (i * 7 + k * 50) & 0xff));
        const [dsts, srcs] = [make(), make().map((b) => b.map((x) => x ^ 0xff))];
        const [want, wantSrcs] = [make(), make().map((b) => b.map((x) => x ^ 0xff))];
        const later = new DeferredCopies(copyMany, capacity);
        for (const c of copies) {
          later.add(dsts[c.dst]!, c.dstOffset, srcs[c.src]!, c.srcOffset, c.length);
          want[c.dst]!.set(wantSrcs[c.src]!.subarray(c.srcOffset, c.srcOffset + c.length), c.dstOffset);
        }
        later.run();
        expect(later.pending).toBe(0);
        expect(dsts).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });

  it(`one copy that cannot be done costs only itself (${COPIES.map((c) => c[0]).join(', ')})`, () => {
    for (const [, , copyMany] of COPIES) {
      const src = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
      const a = new Uint8Array(16);
      const b = new Uint8Array(16);
      const gone = new Uint8Array(new ArrayBuffer(16));
      structuredClone(gone.buffer, { transfer: [gone.buffer] }); // a read's buffer transferred away
      const later = new DeferredCopies(copyMany);
      later.add(a, 0, src, 0, 8);
      later.add(gone, 0, src, 8, 8);
      later.add(b, 8, src, 16, 8);
      expect(later.run()).toBe(1);
      expect([...a.subarray(0, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect([...b.subarray(8, 16)]).toEqual([17, 18, 19, 20, 21, 22, 23, 24]);
      expect(later.pending).toBe(0);
    }
  });

  it(`a copy that cannot be done in the run add() makes when full is reported by the next run() (${COPIES.map((c) => c[0]).join(', ')})`, () => {
    for (const [, , copyMany] of COPIES) {
      const src = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
      const a = new Uint8Array(16);
      const gone = new Uint8Array(new ArrayBuffer(16));
      structuredClone(gone.buffer, { transfer: [gone.buffer] });
      const later = new DeferredCopies(copyMany, 2);
      later.add(gone, 0, src, 0, 8);
      later.add(a, 0, src, 8, 8);
      later.add(a, 8, src, 16, 8); // full: the first two are done now, one of them failing
      expect(later.pending).toBe(1);
      expect(later.run()).toBe(1);
      expect(later.run()).toBe(0);
      expect([...a]).toEqual([9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
    }
  });

  it.skipIf(typeof native === 'string')(`the native copies check every range and copy nothing when one is wrong${skipped}`, () => {
    if (typeof native === 'string') return;
    const { gather } = native;
    const src = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
    const dst = new Uint8Array(32);
    const bad: [string, () => void][] = [
      ['gather: a piece past src', () => gather(dst, 0, src, Int32Array.of(0, 63), Int32Array.of(1, 2), 2)],
      ['gather: a negative offset', () => gather(dst, 0, src, Int32Array.of(-1), Int32Array.of(1), 1)],
      ['gather: more than dst holds', () => gather(dst, 20, src, Int32Array.of(0, 0), Int32Array.of(8, 8), 2)],
      ['gather: count past the arrays', () => gather(dst, 0, src, Int32Array.of(0), Int32Array.of(1), 2)],
      ['gather: a fractional offset', () => gather(dst, 0.5, src, Int32Array.of(0), Int32Array.of(1), 1)],
    ];
    const { copyMany } = native;
    const one = Int32Array.of(0);
    bad.push(
      ['copyMany: a dst index past dsts', () => copyMany([dst], Int32Array.of(1), one, [src], one, one, Int32Array.of(1), 1)],
      ['copyMany: a piece past its src', () => copyMany([dst], one, one, [src], one, Int32Array.of(60), Int32Array.of(8), 1)],
      ['copyMany: count past the arrays', () => copyMany([dst], one, one, [src], one, one, one, 2)],
      ['copyMany: a negative length', () => copyMany([dst], one, one, [src], one, one, Int32Array.of(-1), 1)],
      ['copyMany: a negative offset', () => copyMany([dst], one, Int32Array.of(-1), [src], one, one, Int32Array.of(1), 1)],
      // The first piece is fine, the second is not: neither is copied.
      ['copyMany: the second piece past its dst', () => copyMany([dst], Int32Array.of(0, 0), Int32Array.of(0, 30), [src], Int32Array.of(0, 0), Int32Array.of(0, 0), Int32Array.of(4, 4), 2)],
    );
    for (const [name, fn] of bad) {
      dst.fill(0);
      expect(fn, name).toThrow(RangeError);
      expect(dst.every((b) => b === 0), name).toBe(true);
    }
    expect(() => gather(new Uint16Array(4) as unknown as Uint8Array, 0, src, Int32Array.of(0), Int32Array.of(1), 1)).toThrow(TypeError);
    expect(() => copyMany([new Uint16Array(4) as unknown as Uint8Array], one, one, [src], one, one, Int32Array.of(1), 1)).toThrow(TypeError);
    expect(() => copyMany([dst], new Uint32Array(1) as unknown as Int32Array, one, [src], one, one, Int32Array.of(1), 1)).toThrow(TypeError);
    // The lengths checked are the lengths used, even when the copies overwrite the array they
    // came from: piece 0 lands on lengths[1], piece 1 still copies the 4 bytes it was checked for.
    const shared = new ArrayBuffer(16);
    const into = new Uint8Array(shared);
    const lens = new Int32Array(shared, 0, 2);
    lens.set([4, 4]);
    const from = new Uint8Array(8).fill(0x7f);
    gather(into, 4, from, Int32Array.of(0, 4), lens, 2);
    expect([...into.subarray(4, 12)]).toEqual(new Array(8).fill(0x7f));
    expect([...into.subarray(12, 16)]).toEqual([0, 0, 0, 0]);
  });
});
