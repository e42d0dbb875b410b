/**
 * The IOMMU against a reference model: random mappings and DMA; a DMA either moves exactly the
 * bytes the reference says, or faults and moves nothing.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DmaFaultError, HostRam, Iommu } from '../../src/memory/index.js';

const PAGE = 4096;
const RID = 0x0108;

type Op =
  | { k: 'map'; vpage: number; ppage: number; n: number; perms: 'r' | 'w' | 'rw' }
  | { k: 'unmap'; vpage: number; n: number }
  | { k: 'write'; vpage: number; off: number; len: number; fill: number }
  | { k: 'read'; vpage: number; off: number; len: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant('map' as const),
    vpage: fc.integer({ min: 0, max: 15 }),
    ppage: fc.integer({ min: 0, max: 30 }),
    n: fc.integer({ min: 1, max: 3 }),
    perms: fc.constantFrom<'r' | 'w' | 'rw'>('r', 'w', 'rw'),
  }),
  fc.record({ k: fc.constant('unmap' as const), vpage: fc.integer({ min: 0, max: 15 }), n: fc.integer({ min: 1, max: 4 }) }),
  fc.record({
    k: fc.constant('write' as const),
    vpage: fc.integer({ min: 0, max: 15 }),
    off: fc.integer({ min: 0, max: PAGE - 1 }),
    len: fc.integer({ min: 0, max: 3 * PAGE }),
    fill: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ k: fc.constant('read' as const), vpage: fc.integer({ min: 0, max: 15 }), off: fc.integer({ min: 0, max: PAGE - 1 }), len: fc.integer({ min: 0, max: 3 * PAGE }) }),
);

describe('Iommu', () => {
  it('matches a page-table reference model: exact bytes, or a fault that moves nothing', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 5, maxLength: 60 }), (ops) => {
        const ram = new HostRam({ size: 32 * PAGE, pageSize: PAGE });
        const iommu = new Iommu({ ram });
        iommu.setMode(RID, 'enabled');
        const IOVA0 = 0x4000_0000;
        const table = new Map<number, { ppage: number; perms: string }>();
        const ref = new Uint8Array(32 * PAGE);
        let faults = 0;
        for (const o of ops) {
          if (o.k === 'map') {
            const free = [...Array(o.n).keys()].every((i) => !table.has(o.vpage + i));
            const inRam = (o.ppage + o.n) * PAGE <= ram.size;
            let threw = false;
            try {
              iommu.map(RID, IOVA0 + o.vpage * PAGE, o.ppage * PAGE, o.n * PAGE, o.perms);
            } catch {
              threw = true;
            }
            expect(threw).toBe(!(free && inRam));
            if (!threw) for (let i = 0; i < o.n; i++) table.set(o.vpage + i, { ppage: o.ppage + i, perms: o.perms });
          } else if (o.k === 'unmap') {
            let n = 0;
            for (let i = 0; i < o.n; i++) if (table.delete(o.vpage + i)) n += PAGE;
            expect(iommu.unmap(RID, IOVA0 + o.vpage * PAGE, o.n * PAGE)).toBe(n);
          } else {
            const write = o.k === 'write';
            const iova = IOVA0 + o.vpage * PAGE + o.off;
            // Reference: every page of the range must be mapped with the permission.
            let ok = true;
            const phys: number[] = [];
            for (let a = o.off; a < o.off + o.len; a++) {
              const e = table.get(o.vpage + Math.floor(a / PAGE));
              if (e === undefined || !e.perms.includes(write ? 'w' : 'r')) {
                ok = false;
                break;
              }
              phys.push(e.ppage * PAGE + (a % PAGE));
            }
            const before = ram.readBytes(0, ram.size);
            try {
              if (write) {
                iommu.target(RID).write(iova, new Uint8Array(o.len).fill(o.fill));
                for (const p of phys) ref[p] = o.fill;
              } else {
                const got = iommu.target(RID).read(iova, o.len);
                expect(Array.from(got)).toEqual(phys.map((p) => ref[p]!));
              }
              expect(ok).toBe(true);
            } catch (e) {
              expect(e).toBeInstanceOf(DmaFaultError);
              expect(ok).toBe(false);
              faults++;
              expect(Buffer.from(ram.readBytes(0, ram.size)).equals(Buffer.from(before))).toBe(true);
            }
            expect(Buffer.from(ram.readBytes(0, ram.size)).equals(Buffer.from(ref))).toBe(true);
          }
        }
        expect(iommu.faultCount).toBe(faults);
      }),
      { numRuns: 150 },
    );
  });
});
