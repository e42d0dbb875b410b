import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Counters } from '../../src/core/index.js';

describe('Counters', () => {
  it('held counters and adds by name count into the same place; a snapshot shows exactly the counters added to', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c', 'tlp.sent.MWr'), fc.nat(5), fc.boolean()), { maxLength: 40 }),
        fc.subarray(['a', 'b', 'c', 'd', 'tlp.sent.MWr']),
        (ops, held) => {
          const c = new Counters();
          // Taking a counter adds nothing: an untouched one stays out of the snapshot.
          const handles = new Map(held.map((name) => [name, c.counter(name)]));
          const want: Record<string, number> = {};
          for (const [name, n, byHandle] of ops) {
            const h = handles.get(name);
            if (byHandle && h !== undefined) h.add(n);
            else c.add(name, n);
            want[name] = (want[name] ?? 0) + n;
          }
          const snap = c.snapshot();
          expect(snap).toEqual(want);
          expect(Object.keys(snap)).toEqual(Object.keys(want).sort());
          for (const name of ['a', 'b', 'c', 'd', 'tlp.sent.MWr']) expect(c.get(name)).toBe(want[name] ?? 0);
        },
      ),
    );
  });
});
