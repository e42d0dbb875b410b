import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StagingRing } from '../../src/transaction/staging.js';

describe('StagingRing', () => {
  it('hands out regions that never overlap a region still taken, and gives them back in order', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 1, max: 700 }), fc.constant(0)), { maxLength: 200 }), (ops) => {
        const ring = new StagingRing(2048);
        const live: { r: Uint8Array; mark: number }[] = [];
        let mark = 1;
        for (const op of ops) {
          if (op === 0) {
            const oldest = live.shift();
            if (oldest === undefined) continue;
            expect(oldest.r.every((b) => b === oldest.mark)).toBe(true); // nobody wrote over it
            ring.giveBack();
            continue;
          }
          const r = ring.take(op);
          if (r === undefined) {
            // Refused only when it really cannot fit: not while empty.
            expect(live.length).toBeGreaterThan(0);
            continue;
          }
          expect(r.length).toBe(op);
          const m = mark++ & 0xff || 1;
          r.fill(m);
          live.push({ r, mark: m });
        }
        for (const { r, mark: m } of live) expect(r.every((b) => b === m)).toBe(true);
        expect(ring.regions).toBe(live.length);
      }),
    );
  });

  it('refuses what is larger than the ring, and starts over when reset', () => {
    const ring = new StagingRing(1024);
    expect(ring.take(1025)).toBeUndefined();
    expect(ring.take(1024)).toBeDefined();
    expect(ring.take(1)).toBeUndefined();
    ring.reset();
    expect(ring.regions).toBe(0);
    expect(ring.take(1024)).toBeDefined();
  });
});
