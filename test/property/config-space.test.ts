import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ConfigSpace, PciFunction, type BarDefinition, type BarKind } from '../../src/pci/index.js';
import { cfgRead, cfgWrite } from '../pci/cfg-access.js';

/** Bit-level model of one DW: what the spec says each attribute does on a write. */
function modelWrite(old: number, value: number, be: number, rw: number, w1c: number): number {
  let out = 0;
  for (let bit = 0; bit < 32; bit++) {
    const m = 2 ** bit;
    const has = (x: number): boolean => Math.floor((x >>> 0) / m) % 2 === 1;
    const enabled = (be >> (bit >> 3)) & 1;
    let b = has(old);
    if (enabled) {
      if (has(rw)) b = has(value);
      else if (has(w1c) && has(value)) b = false;
    }
    if (b) out += m;
  }
  return out;
}

describe('config space register semantics (property)', () => {
  it('every write follows RO / RW / RW1C per bit, with byte enables', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1023 }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.array(fc.tuple(fc.nat({ max: 0xffffffff }), fc.integer({ min: 0, max: 15 })), { maxLength: 20 }),
        (reg, init, rwRaw, w1cRaw, writes) => {
          const rw = rwRaw >>> 0;
          const w1c = (w1cRaw & ~rw) >>> 0;
          const s = new ConfigSpace();
          s.define(reg * 4, 4, init, { rw, w1c });
          let model = init >>> 0;
          const seen: [number, number][] = [];
          s.onWrite(reg, (e) => seen.push([e.before, e.after]));
          for (const [value, be] of writes) {
            const before = model;
            model = modelWrite(model, value, be, rw, w1c);
            s.write(reg, value, be);
            expect(s.read(reg)).toBe(model);
            expect(seen[seen.length - 1]).toEqual([before, model]);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

const KINDS: BarKind[] = ['io', 'mem32', 'mem64'];

function sizesOf(kind: BarKind): number[] {
  const [lo, hi] = kind === 'io' ? [2, 8] : kind === 'mem32' ? [7, 31] : [7, 48];
  const out: number[] = [];
  for (let e = lo; e <= hi; e++) out.push(2 ** e);
  return out;
}

/** What the spec says a BAR reads after software writes all ones (low DW, high DW). */
function expectedSizingReadback(kind: BarKind, size: number, prefetchable: boolean): [number, number] {
  if (kind === 'io') return [((0x1_0000_0000 - size) | 0x1) >>> 0, 0];
  const flags = (kind === 'mem64' ? 0x4 : 0) | (prefetchable ? 0x8 : 0);
  if (size < 0x1_0000_0000) {
    return [((0x1_0000_0000 - size) | flags) >>> 0, kind === 'mem64' ? 0xffffffff : 0];
  }
  return [flags, (0x1_0000_0000 - size / 0x1_0000_0000) >>> 0];
}

/** Linux's __pci_read_base arithmetic: size from the all-ones read-back. */
function sizeFromReadback(kind: BarKind, lo: number, hi: number): number {
  if (kind === 'io') return (~(lo & 0xfffffffc) + 1) & 0xffff_ffff;
  const low = (lo & 0xfffffff0) >>> 0;
  if (kind === 'mem32') return 0x1_0000_0000 - low;
  const mask = BigInt(hi >>> 0) * 0x1_0000_0000n + BigInt(low);
  return Number((~mask & 0xffff_ffff_ffff_ffffn) + 1n);
}

describe('BAR sizing (every type and size)', () => {
  for (const kind of KINDS) {
    it(`${kind}: all-ones read-back encodes the size and type; an address reads back aligned`, () => {
      for (const size of sizesOf(kind)) {
        for (const prefetchable of kind === 'io' ? [false] : [false, true]) {
          const maxIndex = kind === 'mem64' ? 4 : 5;
          for (let index = 0; index <= maxIndex; index++) {
            const def: BarDefinition = { index, kind, size, prefetchable };
            const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0xff0000, bars: [def] });
            const lo = 0x10 + 4 * index;
            cfgWrite(f, lo, 4, 0xffffffff);
            if (kind === 'mem64') cfgWrite(f, lo + 4, 4, 0xffffffff);
            const got: [number, number] = [cfgRead(f, lo, 4), kind === 'mem64' ? cfgRead(f, lo + 4, 4) : 0];
            expect(got, `${kind} ${size} pf=${prefetchable} BAR${index}`).toEqual(
              expectedSizingReadback(kind, size, prefetchable),
            );
            expect(sizeFromReadback(kind, got[0], got[1])).toBe(size);
            // Other BAR slots stay unimplemented (read 0 after all ones).
            for (let j = 0; j < 6; j++) {
              if (j === index || (kind === 'mem64' && j === index + 1)) continue;
              cfgWrite(f, 0x10 + 4 * j, 4, 0xffffffff);
              expect(cfgRead(f, 0x10 + 4 * j, 4)).toBe(0);
            }
          }
        }
      }
    });
  }

  it('a programmed address reads back size-aligned and the function decodes it (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...KINDS),
        fc.nat({ max: 41 }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xfffff }),
        fc.boolean(),
        (kind, sizeIdx, addrLo, addrHi, prefetchable) => {
          const sizes = sizesOf(kind);
          const size = sizes[sizeIdx % sizes.length] ?? 128;
          const f = new PciFunction({
            vendorId: 1,
            deviceId: 2,
            classCode: 0xff0000,
            bars: [{ index: 0, kind, size, prefetchable: kind !== 'io' && prefetchable }],
          });
          cfgWrite(f, 0x10, 4, addrLo);
          if (kind === 'mem64') cfgWrite(f, 0x14, 4, addrHi);
          const bar = f.decodeBar(0);
          expect(bar).not.toBeNull();
          const base = bar?.base ?? -1;
          const want =
            kind === 'mem64'
              ? Math.floor((addrHi * 0x1_0000_0000 + addrLo) / size) * size
              : Math.floor((addrLo >>> 0) / size) * size;
          expect(base).toBe(want);
          // Only with the matching space enable does the function claim the address.
          expect(kind === 'io' ? f.claimsIo(base) : f.claims(base)).toBeNull();
          cfgWrite(f, 0x04, 2, 0x3);
          const claim = kind === 'io' ? f.claimsIo(base + size - 1) : f.claims(base + size - 1);
          expect(claim).toEqual({ bar: 0, offset: size - 1 });
          expect(kind === 'io' ? f.claimsIo(base + size) : f.claims(base + size)).toBeNull();
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('Type 0 header attributes (property)', () => {
  const ro: [number, 1 | 2 | 4][] = [
    [0x00, 2],
    [0x02, 2],
    [0x08, 4],
    [0x0d, 1],
    [0x0e, 1],
    [0x0f, 1],
    [0x28, 4],
    [0x2c, 2],
    [0x2e, 2],
    [0x30, 4],
    [0x34, 1],
    [0x3d, 1],
    [0x3e, 2],
  ];

  it('RO header registers ignore every write; Cache Line Size and Interrupt Line are RW', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xff }), (v, b) => {
        const f = new PciFunction({
          vendorId: 0x1234,
          deviceId: 0x5678,
          revisionId: 3,
          classCode: 0x020000,
          subsystemVendorId: 0x1af4,
          subsystemId: 7,
          bars: [{ index: 0, kind: 'mem32', size: 4096 }],
        });
        const before = ro.map(([o, w]) => cfgRead(f, o, w));
        for (const [o, w] of ro) cfgWrite(f, o, w, w === 4 ? v : w === 2 ? v & 0xffff : v & 0xff);
        expect(ro.map(([o, w]) => cfgRead(f, o, w))).toEqual(before);
        expect(before).toEqual([0x1234, 0x5678, 0x02000003, 0, 0, 0, 0, 0x1af4, 7, 0, 0x40, 1, 0]);
        cfgWrite(f, 0x0c, 1, b);
        cfgWrite(f, 0x3c, 1, b);
        expect(cfgRead(f, 0x0c, 1)).toBe(b);
        expect(cfgRead(f, 0x3c, 1)).toBe(b);
      }),
      { numRuns: 200 },
    );
  });

  it('Command keeps only its implemented RW bits; Status error bits are RW1C, the rest RO', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: 0xffff }), fc.nat({ max: 0xffff })), { minLength: 1, maxLength: 10 }),
        fc.nat({ max: 0xffff }),
        (writes, hwStatus) => {
          const f = new PciFunction({
            vendorId: 1,
            deviceId: 2,
            classCode: 0xff0000,
            bars: [
              { index: 0, kind: 'io', size: 16 },
              { index: 1, kind: 'mem32', size: 4096 },
            ],
          });
          // Implemented: I/O, Memory, Bus Master, Parity Error Response, SERR#, INTx Disable.
          const cmdRw = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | 0x0400;
          const w1c = 0xf900;
          f.config.hwSet(0x06, 2, hwStatus & w1c);
          let status = (hwStatus & w1c) | 0x0010;
          for (const [cmd, st] of writes) {
            f.configWrite(1, (cmd | (st << 16)) >>> 0, 0xf);
            status &= ~(st & w1c);
            expect(cfgRead(f, 0x04, 2)).toBe(cmd & cmdRw);
            expect(cfgRead(f, 0x06, 2)).toBe(status);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
