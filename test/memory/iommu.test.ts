import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Counters, type Logger, isTlpwireError } from '../../src/core/index.js';
import { DmaFaultError, HostRam, Iommu, type IommuOptions, ridString } from '../../src/memory/index.js';

const RID = 0x0100; // 01:00.0
const OTHER = 0x0200;

function capturingLogger(lines: string[]): Logger {
  const log = (objOrMsg: object | string, msg?: string): void => {
    lines.push(typeof objOrMsg === 'string' ? objOrMsg : (msg ?? ''));
  };
  const logger: Logger = { trace: log, debug: log, info: log, warn: log, error: log, child: () => logger };
  return logger;
}

function setup(extra: Partial<IommuOptions> = {}) {
  const ram = new HostRam({ size: 1 << 20, pageSize: 4096 });
  const counters = new Counters();
  const lines: string[] = [];
  const iommu = new Iommu({ ram, counters, logger: capturingLogger(lines), ...extra });
  return { ram, counters, lines, iommu };
}

function faultOf(fn: () => unknown): DmaFaultError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaFaultError) return e;
    throw e;
  }
  throw new Error('expected a DmaFaultError');
}

describe('Iommu', () => {
  it('passes DMA through untranslated when disabled, and refuses addresses with no RAM', () => {
    const { ram, iommu, counters } = setup();
    const t = iommu.target(RID);
    t.write(0x5000, Uint8Array.of(1, 2, 3));
    expect([...ram.readBytes(0x5000, 3)]).toEqual([1, 2, 3]);
    expect([...t.read(0x5001, 2)]).toEqual([2, 3]);
    const f = faultOf(() => t.read(0xffffe, 4));
    expect(f.code).toBe('ERR_MEMORY_RANGE');
    expect(f.fault.reason).toBe('outside-ram');
    expect(counters.get('memory.dma_outside_ram')).toBe(1);
    expect(counters.get('iommu.faults')).toBe(0);
    expect(iommu.mode(RID)).toBe('disabled');
    expect(iommu.isIdentity(RID)).toBe(true);
  });

  it('faults an unmapped DMA: counted, logged, recorded, and nothing written', () => {
    const { ram, iommu, counters, lines } = setup();
    iommu.setMode(RID, 'enabled');
    ram.write32(0x100000 - 4, 0); // keep RAM at a known state
    const before = ram.readBytes(0, 1 << 20);
    const f = faultOf(() => iommu.target(RID).write(0x200000, Uint8Array.of(9, 9)));
    expect(f.code).toBe('ERR_IOMMU_FAULT');
    expect(isTlpwireError(f, 'ERR_IOMMU_FAULT')).toBe(true);
    expect(f.fault).toMatchObject({ rid: RID, address: 0x200000, length: 2, write: true, reason: 'unmapped', faultAddress: 0x200000 });
    expect(Buffer.from(ram.readBytes(0, 1 << 20)).equals(Buffer.from(before))).toBe(true);
    expect(ram.dmaWriteSeq).toBe(0);
    expect(counters.get('iommu.faults')).toBe(1);
    expect(counters.get('iommu.faults.unmapped')).toBe(1);
    expect(iommu.faultCount).toBe(1);
    expect(iommu.recentFaults()).toHaveLength(1);
    expect(lines.some((l) => l.includes('unmapped') && l.includes(ridString(RID)))).toBe(true);
  });

  it('moves no byte when only part of a range is mapped', () => {
    const { ram, iommu } = setup();
    iommu.setMode(RID, 'enabled');
    iommu.map(RID, 0x200000, 0x8000, 0x1000, 'rw');
    const f = faultOf(() => iommu.target(RID).write(0x200ff0, new Uint8Array(0x20).fill(0xaa)));
    expect(f.fault.reason).toBe('unmapped');
    expect(f.fault.faultAddress).toBe(0x201000);
    expect(ram.read32(0x8ff0)).toBe(0);
    expect(faultOf(() => iommu.target(RID).read(0x200ff0, 0x20)).fault.write).toBe(false);
  });

  it('enforces read and write permissions', () => {
    const { iommu, counters } = setup();
    iommu.setMode(RID, 'enabled');
    iommu.map(RID, 0x200000, 0x8000, 0x1000, 'r');
    iommu.map(RID, 0x300000, 0x9000, 0x1000, 'w');
    const t = iommu.target(RID);
    expect(t.read(0x200000, 4)).toHaveLength(4);
    expect(faultOf(() => t.write(0x200000, Uint8Array.of(1))).fault.reason).toBe('permission');
    t.write(0x300000, Uint8Array.of(1));
    expect(faultOf(() => t.read(0x300000, 1)).fault.reason).toBe('permission');
    expect(counters.get('iommu.faults.permission')).toBe(2);
    expect(t.check(0x300000, 1, true)).toBeUndefined();
    expect(t.check(0x300000, 1, false)?.reason).toBe('permission');
  });

  it('splits a DMA across pages that map to scattered physical pages', () => {
    const { ram, iommu } = setup();
    iommu.setMode(RID, 'enabled');
    // IOVA pages 0x100000, 0x101000, 0x102000 → physical 0x30000, 0x10000, 0x11000.
    iommu.map(RID, 0x100000, 0x30000, 0x1000, 'rw');
    iommu.map(RID, 0x101000, 0x10000, 0x2000, 'rw');
    const data = new Uint8Array(0x1010).map((_, i) => (i * 7) & 0xff);
    const seq0 = ram.dmaWriteSeq;
    iommu.target(RID).write(0x100ff8, data);
    // Two physically contiguous runs: 8 bytes in the first page, the rest in 0x10000..
    expect(ram.dmaWriteSeq - seq0).toBe(2);
    expect(ram.readBytes(0x30ff8, 8)).toEqual(data.subarray(0, 8));
    expect(ram.readBytes(0x10000, 0x1008)).toEqual(data.subarray(8));
    expect(iommu.target(RID).read(0x100ff8, 0x1010)).toEqual(data);
    const into = new Uint8Array(0x20);
    iommu.target(RID).readInto(0x100ff0, into, 4, 0x18);
    expect(into.subarray(12, 28)).toEqual(data.subarray(0, 16));
    expect(iommu.translate(RID, 0x101004, 8, false)).toBe(0x10004);
    expect(iommu.translate(RID, 0x100ff8, 16, true)).toBe(0x30ff8);
  });

  it('translate reports a fault without recording it', () => {
    const { iommu, counters } = setup();
    iommu.setMode(RID, 'enabled');
    const r = iommu.translate(RID, 0x5000, 4, false);
    expect(typeof r === 'number' ? r : r.reason).toBe('unmapped');
    expect(counters.get('iommu.faults')).toBe(0);
    expect(iommu.faultCount).toBe(0);
  });

  it('keeps modes and mappings per requester ID', () => {
    const { ram, iommu } = setup();
    iommu.setMode(RID, 'enabled');
    iommu.setMode(OTHER, 'passthrough');
    iommu.map(RID, 0x200000, 0x8000, 0x1000, 'rw');
    iommu.target(OTHER).write(0x8000, Uint8Array.of(5));
    expect(ram.read8(0x8000)).toBe(5);
    expect([...iommu.target(RID).read(0x200000, 1)]).toEqual([5]);
    expect(faultOf(() => iommu.target(OTHER).read(0x200000, 1)).fault.reason).toBe('outside-ram');
    expect(faultOf(() => iommu.target(0x0300 + 1).read(0x200000, 1)).fault.reason).toBe('outside-ram');
    expect(iommu.mode(OTHER)).toBe('passthrough');
    expect(iommu.mappedBytes(RID)).toBe(0x1000);
    expect(iommu.mappedBytes(OTHER)).toBe(0);
  });

  it('validates mappings', () => {
    const { iommu } = setup();
    const code = (fn: () => void): string | undefined => {
      try {
        fn();
      } catch (e) {
        return isTlpwireError(e) ? e.code : 'other';
      }
      return undefined;
    };
    expect(code(() => iommu.map(RID, 0x1001, 0x1000, 0x1000, 'rw'))).toBe('ERR_IOMMU_MAP');
    expect(code(() => iommu.map(RID, 0x1000, 0x1000, 0x800, 'rw'))).toBe('ERR_IOMMU_MAP');
    expect(code(() => iommu.map(RID, 0x1000, 0x100000, 0x1000, 'rw'))).toBe('ERR_IOMMU_MAP');
    expect(code(() => iommu.map(0x10000, 0x1000, 0x1000, 0x1000, 'rw'))).toBe('ERR_IOMMU_MAP');
    iommu.map(RID, 0x1000, 0x1000, 0x2000, 'rw');
    expect(code(() => iommu.map(RID, 0x2000, 0x5000, 0x1000, 'rw'))).toBe('ERR_IOMMU_MAP');
    expect(iommu.unmap(RID, 0x0, 0x4000)).toBe(0x2000);
    expect(iommu.unmap(OTHER, 0x0, 0x4000)).toBe(0);
    iommu.map(RID, 0x2000, 0x5000, 0x1000, 'rw');
  });

  it('maps and unmaps buffers like dma_map_single, keeping the offset within the page', () => {
    const { ram, iommu } = setup();
    iommu.setMode(RID, 'enabled');
    ram.writeBytes(0x12345, Uint8Array.of(1, 2, 3, 4));
    const iova = iommu.dmaMap(RID, 0x12345, 0x1000, 'rw');
    expect(iova % 0x1000).toBe(0x345);
    expect(iova).toBeGreaterThanOrEqual(0x100000);
    expect([...iommu.target(RID).read(iova, 4)]).toEqual([1, 2, 3, 4]);
    // 0x12345 + 0x1000 spans two pages.
    expect(iommu.mappedBytes(RID)).toBe(0x2000);
    const second = iommu.dmaMap(RID, 0x40000, 16, 'r');
    expect(second).not.toBe(iova);
    iommu.dmaUnmap(RID, iova);
    expect(faultOf(() => iommu.target(RID).read(iova, 4)).fault.reason).toBe('unmapped');
    expect(iommu.mappedBytes(RID)).toBe(0x1000);
    expect(() => iommu.dmaUnmap(RID, iova)).toThrow();
    iommu.setMode(OTHER, 'passthrough');
    expect(iommu.dmaMap(OTHER, 0x12345, 4, 'rw')).toBe(0x12345);
  });

  it('translates IOVAs above 4 GiB', () => {
    const { ram, iommu } = setup();
    iommu.setMode(RID, 'enabled');
    const iova = 0x7_ffff_f000;
    iommu.map(RID, iova, 0x20000, 0x2000, 'rw');
    iommu.target(RID).write(iova + 0xffe, Uint8Array.of(1, 2, 3, 4));
    expect([...ram.readBytes(0x20ffe, 4)]).toEqual([1, 2, 3, 4]);
    expect(faultOf(() => iommu.target(RID).read(2 ** 48 - 2, 4)).fault.reason).toBe('bad-address');
  });

  it('allocates IOVA space per requester and accepts zero-length DMA', () => {
    const { iommu } = setup();
    const a = iommu.allocIova(RID, 100);
    const b = iommu.allocIova(OTHER, 100);
    expect(a).toBe(b); // separate spaces
    expect(iommu.allocIova(RID, 0x2000, 0x4000) % 0x4000).toBe(0);
    expect(iommu.freeIova(RID, a)).toBe(0x1000);
    iommu.setMode(RID, 'enabled');
    expect(iommu.target(RID).read(0x999000, 0)).toHaveLength(0);
  });

  it('keeps a bounded list of recent faults', () => {
    const { iommu } = setup({ maxFaultRecords: 3 });
    iommu.setMode(RID, 'enabled');
    for (let i = 0; i < 5; i++) faultOf(() => iommu.target(RID).read(0x1000 * i, 1));
    expect(iommu.faultCount).toBe(5);
    expect(iommu.recentFaults().map((f) => f.address)).toEqual([0x2000, 0x3000, 0x4000]);
  });

  it('reads in place (dmaReadSpan) exactly what dmaRead reads, or declines having recorded nothing', () => {
    // Pages: IOVA 0x100000 → phys 0x30000 (rw), 0x101000 → 0x10000 (read-only), 0x102000 write-only,
    // 0x103000 unmapped; phys 0x30000.. is written, 0x10000.. only partly (4 KiB RAM pages).
    const { ram, iommu } = setup();
    for (let i = 0; i < 0x1000; i++) ram.write8(0x30000 + i, (i * 7) & 0xff);
    ram.write8(0x10010, 0x5a);
    iommu.setMode(RID, 'enabled');
    iommu.map(RID, 0x100000, 0x30000, 0x1000, 'rw');
    iommu.map(RID, 0x101000, 0x10000, 0x1000, 'r');
    iommu.map(RID, 0x102000, 0x20000, 0x1000, 'w');
    fc.assert(
      fc.property(fc.integer({ min: 0x0ff000, max: 0x104000 }), fc.integer({ min: 0, max: 600 }), fc.boolean(), (address, length, identity) => {
        const rid = identity ? OTHER : RID; // OTHER has no domain: untranslated
        const faults = iommu.faultCount;
        const page = iommu.dmaReadSpan(rid, address, length);
        expect(iommu.faultCount).toBe(faults);
        if (page === undefined) return;
        const want = new Uint8Array(length);
        iommu.dmaRead(rid, address, want, 0, length);
        expect(page.subarray(iommu.spanOffset, iommu.spanOffset + length)).toEqual(want);
      }),
      { numRuns: 2000 },
    );
    // In one mapped, written page it is taken; across IOMMU pages, unwritten, or refused it is not.
    expect(iommu.dmaReadSpan(RID, 0x100100, 512)).toBeDefined();
    expect(iommu.dmaReadSpan(RID, 0x100f00, 512)).toBeUndefined();
    expect(iommu.dmaReadSpan(RID, 0x102000, 4)).toBeUndefined();
    expect(iommu.dmaReadSpan(RID, 0x103000, 4)).toBeUndefined();
    expect(iommu.dmaReadSpan(OTHER, 0x50000, 4)).toBeUndefined();
    expect(iommu.faultCount).toBe(0);
  });
});
