import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PciFunction, walkCapabilities, type PciFunctionOptions } from '../../src/pci/index.js';
import { isTlpwireError } from '../../src/core/index.js';

const optionsArb = fc.record({
  pcie: fc.boolean(),
  pm: fc.boolean(),
  msi: fc.option(fc.record({ vectors: fc.constantFrom(1, 2, 4, 8, 16, 32), perVectorMasking: fc.boolean(), address64: fc.boolean() }), {
    nil: undefined,
  }),
  msixVectors: fc.option(fc.integer({ min: 1, max: 2048 }), { nil: undefined }),
  dsn: fc.option(fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }), { nil: undefined }),
  vendorLengths: fc.array(fc.integer({ min: 3, max: 40 }), { maxLength: 8 }),
});

describe('capability chains (property)', () => {
  it('every capability is found exactly once, DW-aligned, in range, without overlap or loop', () => {
    fc.assert(
      fc.property(optionsArb, (o) => {
        const opts: PciFunctionOptions = {
          vendorId: 0x1234,
          deviceId: 0x5678,
          classCode: 0xff0000,
          bars: [{ index: 0, kind: 'mem64', size: 2 ** 16 }],
          pcie: o.pcie ? {} : false,
          pm: o.pm ? {} : false,
          aer: o.pcie,
          vendorCapabilities: o.vendorLengths.map((length) => ({ length })),
        };
        if (o.msi !== undefined) opts.msi = o.msi;
        if (o.msixVectors !== undefined) {
          opts.msix = { vectors: o.msixVectors, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x8000 };
        }
        if (o.dsn !== undefined) opts.serialNumber = o.dsn;
        let f: PciFunction;
        try {
          f = new PciFunction(opts);
        } catch (e) {
          // Too many vendor capabilities for 192 bytes: refused, never overlapped.
          expect(isTlpwireError(e, 'ERR_CONFIG')).toBe(true);
          return;
        }
        const walk = walkCapabilities(f.config.snapshot());
        expect(walk.problems).toEqual([]);
        const std = f.capabilities.standard;
        expect(walk.standard).toEqual(std.map((c) => ({ id: c.id, offset: c.offset })));
        expect(walk.extended).toEqual(f.capabilities.extended.map((c) => ({ id: c.id, version: c.version, offset: c.offset })));
        const expectedIds = [
          ...(o.pm ? [0x01] : []),
          ...(o.msi !== undefined ? [0x05] : []),
          ...(o.pcie ? [0x10] : []),
          ...(o.msixVectors !== undefined ? [0x11] : []),
          ...o.vendorLengths.map(() => 0x09),
        ];
        expect(walk.standard.map((c) => c.id)).toEqual(expectedIds);
        expect(walk.extended.map((c) => c.id)).toEqual([...(o.pcie ? [1] : []), ...(o.dsn !== undefined ? [3] : [])]);
        const ranges = [...std, ...f.capabilities.extended].map((c) => [c.offset, c.offset + c.length] as const);
        for (const [a, b] of ranges) {
          expect(a % 4).toBe(0);
          expect(a >= 0x40 && b <= 0x1000).toBe(true);
          expect(a < 0x100 ? b <= 0x100 : true).toBe(true);
        }
        const sorted = [...ranges].sort((x, y) => x[0] - y[0]);
        for (let i = 1; i < sorted.length; i++) expect((sorted[i]?.[0] ?? 0) >= (sorted[i - 1]?.[1] ?? 0)).toBe(true);
        // Vendor capabilities carry their length at byte 2.
        const vendor = std.filter((c) => c.id === 0x09);
        vendor.forEach((c, i) => expect(f.config.u8(c.offset + 2)).toBe(o.vendorLengths[i]));
        // DSN reads back as written.
        if (f.dsn !== null && o.dsn !== undefined) {
          const lo = f.config.u32(f.dsn.offset + 4);
          const hi = f.config.u32(f.dsn.offset + 8);
          expect((BigInt(hi) << 32n) | BigInt(lo)).toBe(o.dsn);
        }
      }),
      { numRuns: 300 },
    );
  });
});
