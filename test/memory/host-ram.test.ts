import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gatherJs, isTlpwireError, loadNativeBulkCopy, type GatherFn } from '../../src/core/index.js';
import { HostRam, Iommu, RangeAllocator, type RamWriteObserver } from '../../src/memory/index.js';

/** The bulk copies HostRam can use: JavaScript always, the native addon when it was built. */
const native = loadNativeBulkCopy();
const nativeGather = typeof native === 'string' ? native : native.gather;
const GATHERS: [string, GatherFn][] = typeof nativeGather === 'string' ? [['js', gatherJs]] : [['js', gatherJs], ['native', nativeGather]];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isTlpwireError(e) ? e.code : `not a TlpwireError: ${String(e)}`;
  }
  return undefined;
}

describe('HostRam', () => {
  it('defaults to 64 MiB and allocates backing pages lazily', () => {
    expect(new HostRam().size).toBe(64 * 1024 * 1024);
    const big = new HostRam({ size: 1024 * 1024 * 1024 });
    expect(big.pagesAllocated).toBe(0);
    expect(big.read32(0x3000_0000)).toBe(0);
    big.fill(0x1000, 1 << 20, 0);
    expect(big.pagesAllocated).toBe(0);
    big.write8(0x3fff_ffff, 7);
    expect(big.pagesAllocated).toBe(1);
    expect(big.read8(0x3fff_ffff)).toBe(7);
  });

  it('is little-endian at every width (bytes written by hand)', () => {
    const ram = new HostRam({ size: 1 << 20 });
    ram.writeBytes(0x100, Uint8Array.of(0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x05));
    expect(ram.read8(0x100)).toBe(0x44);
    expect(ram.read16(0x100)).toBe(0x3344);
    expect(ram.read32(0x100)).toBe(0x11223344);
    expect(ram.read32(0x104)).toBe(0x05667788);
    expect(ram.read64(0x100)).toBe(0x05667788 * 2 ** 32 + 0x11223344);
    ram.write32(0x200, 0xdeadbeef);
    expect([...ram.readBytes(0x200, 4)]).toEqual([0xef, 0xbe, 0xad, 0xde]);
    ram.write16(0x210, 0xabcd);
    expect([...ram.readBytes(0x210, 2)]).toEqual([0xcd, 0xab]);
  });

  it('handles accesses that cross a backing page', () => {
    const ram = new HostRam({ size: 1 << 20, pageSize: 4096 });
    ram.write32(4094, 0xaabbccdd);
    expect([...ram.readBytes(4094, 4)]).toEqual([0xdd, 0xcc, 0xbb, 0xaa]);
    expect(ram.read32(4094)).toBe(0xaabbccdd);
    ram.write16(8191, 0x1234);
    expect(ram.read16(8191)).toBe(0x1234);
    ram.write64(4092, 2 ** 52 + 3);
    expect(ram.read64(4092)).toBe(2 ** 52 + 3);
    const src = new Uint8Array(10_000).map((_, i) => i & 0xff);
    ram.writeBytes(100, src);
    expect(ram.readBytes(100, 10_000)).toEqual(src);
    const dst = new Uint8Array(20);
    ram.readInto(4090, dst, 5, 10);
    expect([...dst.subarray(5, 15)]).toEqual([...src.subarray(3990, 4000)]);
    expect([...dst.subarray(0, 5)]).toEqual([0, 0, 0, 0, 0]);
  });

  it('stores u64 from a safe integer or from two halves', () => {
    const ram = new HostRam({ size: 1 << 16 });
    ram.write64(8, 2 ** 53 - 1);
    expect(ram.read64(8)).toBe(2 ** 53 - 1);
    expect(ram.read32(8)).toBe(0xffffffff);
    expect(ram.read32(12)).toBe(0x1fffff);
    ram.write64Halves(16, 0x89abcdef, 0xfedcba98);
    expect(ram.read32(16)).toBe(0x89abcdef);
    expect(ram.read32(20)).toBe(0xfedcba98);
    expect(codeOf(() => ram.write64(0, -1))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.write64(0, 2 ** 53))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.write64(0, 1.5))).toBe('ERR_MEMORY_RANGE');
  });

  it('bounds-checks every access with ERR_MEMORY_RANGE and the offending offset', () => {
    const ram = new HostRam({ size: 0x10000 });
    expect(codeOf(() => ram.read32(0xfffe))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.read8(0x10000))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.write16(-2, 0))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.read32(Number.NaN))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.read32(1.5))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.writeBytes(0xfff0, new Uint8Array(17)))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.dmaWrite(0xffff, new Uint8Array(2)))).toBe('ERR_MEMORY_RANGE');
    try {
      ram.read32(0xfffe);
    } catch (e) {
      expect(isTlpwireError(e) && e.offset).toBe(0xfffe);
    }
    expect(ram.read32(0xfffc)).toBe(0);
  });

  it('rejects invalid geometry', () => {
    expect(codeOf(() => new HostRam({ size: 0 }))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => new HostRam({ size: 2 ** 40 }))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => new HostRam({ pageSize: 3000 }))).toBe('ERR_MEMORY_RANGE');
  });

  it('tells observers about device writes before they land, numbering them', () => {
    const ram = new HostRam({ size: 1 << 16 });
    ram.write32(0x40, 0x11111111);
    const seen: string[] = [];
    const obs: RamWriteObserver = {
      beforeDeviceWrite: (a, n, seq) => seen.push(`dev ${a} ${n} #${seq} old=${ram.read32(0x40).toString(16)}`),
      afterCpuStore: (a, n) => seen.push(`cpu ${a} ${n}`),
    };
    const remove = ram.addObserver(obs);
    ram.dmaWrite(0x40, Uint8Array.of(2, 2, 2, 2));
    ram.notifyCpuStore(0x44, 4);
    ram.write32(0x48, 5); // plain writes are not device writes
    expect(ram.dmaWriteSeq).toBe(1);
    remove();
    ram.dmaWrite(0x40, Uint8Array.of(3));
    expect(ram.dmaWriteSeq).toBe(2);
    expect(seen).toEqual(['dev 64 4 #1 old=11111111', 'cpu 68 4']);
    expect(ram.read32(0x40)).toBe(0x02020203);
  });

  it('allocates aligned physical memory above the reserved low region', () => {
    const ram = new HostRam({ size: 1 << 20, reserveLow: 0x10000 });
    const a = ram.allocate(100);
    expect(a % 4096).toBe(0);
    expect(a).toBeGreaterThanOrEqual(0x10000);
    const b = ram.allocate(0x3000, 0x4000);
    expect(b % 0x4000).toBe(0);
    expect(b >= a + 100 || b + 0x3000 <= a).toBe(true);
    expect(ram.bytesAllocated).toBe(100 + 0x3000);
    expect(ram.free(a)).toBe(100);
    expect(codeOf(() => ram.free(a))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.allocate(1 << 20))).toBe('ERR_MEMORY_EXHAUSTED');
    expect(codeOf(() => ram.allocate(16, 3))).toBe('ERR_MEMORY_RANGE');
    expect(codeOf(() => ram.allocate(0))).toBe('ERR_MEMORY_RANGE');
  });
});

describe('RangeAllocator', () => {
  it('coalesces freed neighbours back into one range', () => {
    const r = new RangeAllocator(0x1000, 0x9000);
    const a = r.allocate(0x1000);
    const b = r.allocate(0x1000);
    const c = r.allocate(0x1000);
    expect([a, b, c]).toEqual([0x1000, 0x2000, 0x3000]);
    r.free(b);
    expect(r.freeRanges()).toEqual([
      { start: 0x2000, end: 0x3000 },
      { start: 0x4000, end: 0x9000 },
    ]);
    r.free(a);
    r.free(c);
    expect(r.freeRanges()).toEqual([{ start: 0x1000, end: 0x9000 }]);
    expect(r.bytesAllocated).toBe(0);
  });

  it('fills a hole that fits and keeps the alignment slack free', () => {
    const r = new RangeAllocator(0, 0x10000);
    const a = r.allocate(0x10);
    const b = r.allocate(0x100, 0x100);
    expect(a).toBe(0);
    expect(b).toBe(0x100);
    expect(r.allocate(0x20)).toBe(0x10); // the slack before b
    expect(r.sizeOf(b)).toBe(0x100);
  });
});

describe('HostRam.dmaWriteGather and Iommu.tryDmaWriteGather', () => {
  it('land the same bytes, with the same observer calls and write count, as one dmaWrite per piece', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 * 4096 }),
        fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom(...GATHERS),
        (start, lengths, observed, viaIommu, [, gather]) => {
          const total = lengths.reduce((a, b) => a + b, 0);
          // The pieces sit in one source buffer with gaps between them, as TLP payloads do.
          const src = new Uint8Array(total + lengths.length * 16 + 16).map((_, i) => (i * 31 + 7) & 0xff);
          const offsets = new Int32Array(lengths.length);
          const lens = Int32Array.from(lengths);
          let o = 16;
          lengths.forEach((n, i) => {
            offsets[i] = o;
            o += n + 16;
          });
          const run = (asRun: boolean): { bytes: Uint8Array; calls: string[]; seq: number } => {
            const ram = new HostRam({ size: 1 << 20, pageSize: 4096, gather });
            const calls: string[] = [];
            if (observed) ram.addObserver({ beforeDeviceWrite: (a, n, seq) => calls.push(`${a}+${n}#${seq}`), afterCpuStore: () => {} });
            const iommu = new Iommu({ ram });
            const base = 0x1000 + start;
            if (asRun) {
              if (viaIommu) expect(iommu.tryDmaWriteGather(3, base, src, offsets, lens, lens.length)).toBe(true);
              else ram.dmaWriteGather(base, src, offsets, lens, lens.length);
            } else {
              let a = base;
              lengths.forEach((n, i) => {
                ram.dmaWrite(a, src, offsets[i]!, n);
                a += n;
              });
            }
            return { bytes: ram.readBytes(0, 0x1000 + 4 * 4096 + total), calls, seq: ram.dmaWriteSeq };
          };
          const [g, one] = [run(true), run(false)];
          expect(Buffer.compare(g.bytes, one.bytes)).toBe(0);
          expect(g.calls).toEqual(one.calls);
          expect(g.seq).toBe(one.seq);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('handle every way a run meets the end of a backing page, with either copy', () => {
    const src = Uint8Array.from({ length: 256 }, (_, i) => i ^ 0x5a);
    for (const [name, gather] of GATHERS) {
      for (let start = 4096 - 24; start <= 4096 + 4; start++) {
        for (const lens of [[8, 8, 8], [4, 4, 4, 4], [1, 12, 3], [24], [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]]) {
          const offsets = Int32Array.from(lens, (_, i) => 7 + i * 20);
          const ram = new HostRam({ size: 1 << 16, pageSize: 4096, gather });
          const want = new HostRam({ size: 1 << 16, pageSize: 4096, gather });
          ram.dmaWriteGather(start, src, offsets, Int32Array.from(lens), lens.length);
          let a = start;
          lens.forEach((n, i) => {
            want.dmaWrite(a, src, offsets[i]!, n);
            a += n;
          });
          expect(ram.readBytes(4096 - 32, 64), `${name} start ${start} pieces ${lens.join(',')}`).toEqual(want.readBytes(4096 - 32, 64));
        }
      }
    }
  });

  it('through a translating IOMMU: a run that is mapped lands across its pages; one that is not is refused, nothing written or recorded', () => {
    const ram = new HostRam({ size: 1 << 20, pageSize: 4096 });
    const iommu = new Iommu({ ram });
    iommu.setMode(5, 'enabled');
    // IOVA 0x10_0000.. maps two physical pages in reverse order; the page after is read-only.
    iommu.map(5, 0x10_0000, 0x3000, 4096, 'rw');
    iommu.map(5, 0x10_1000, 0x2000, 4096, 'rw');
    iommu.map(5, 0x10_2000, 0x4000, 4096, 'r');
    const src = new Uint8Array(1024).map((_, i) => (i * 13 + 1) & 0xff);
    const offsets = Int32Array.of(0, 256, 512, 768);
    const lengths = Int32Array.of(256, 256, 256, 256);
    expect(iommu.tryDmaWriteGather(5, 0x10_0e00, src, offsets, lengths, 4)).toBe(true);
    expect(ram.readBytes(0x3e00, 512)).toEqual(src.subarray(0, 512));
    expect(ram.readBytes(0x2000, 512)).toEqual(src.subarray(512, 1024));
    const seq = ram.dmaWriteSeq;
    expect(iommu.tryDmaWriteGather(5, 0x10_1e00, src, offsets, lengths, 4)).toBe(false);
    expect(ram.readBytes(0x2e00, 512)).toEqual(new Uint8Array(512));
    expect(ram.readBytes(0x4000, 512)).toEqual(new Uint8Array(512));
    expect(ram.dmaWriteSeq).toBe(seq);
    expect(iommu.faultCount).toBe(0);
  });

  it('checks the whole range first: a run that ends outside RAM writes nothing', () => {
    const ram = new HostRam({ size: 64 * 1024, pageSize: 4096 });
    const src = new Uint8Array(512).fill(9);
    expect(() => ram.dmaWriteGather(64 * 1024 - 256, src, Int32Array.of(0, 256), Int32Array.of(256, 256), 2)).toThrow(/outside RAM/);
    expect(ram.readBytes(64 * 1024 - 256, 256)).toEqual(new Uint8Array(256));
  });
});
