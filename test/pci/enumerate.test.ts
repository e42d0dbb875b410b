import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TlpwireError } from '../../src/core/index.js';
import {
  PciDevice,
  PciFunction,
  enumerateDevice,
  formatLspciTree,
  planBarAssignment,
  readConfigSpace,
  type AddressWindows,
  type BarRequest,
  type ConfigAccess,
  type EnumeratedFunction,
  type InterruptAllocator,
  type MmioAccess,
} from '../../src/pci/index.js';

// Register offsets and bits written out from the PCIe spec (not imported from src/spec).
const COMMAND = 0x04;
const CMD_IO = 1 << 0;
const CMD_MEM = 1 << 1;
const CMD_BME = 1 << 2;

/** Config and MMIO straight into a PciDevice on bus `bus`, device 0 — no link. */
function directAccess(device: PciDevice, bus: number): ConfigAccess & { reads: number[] } {
  const reads: number[] = [];
  const present = (bdf: number): boolean => bdf >> 8 === bus && ((bdf >> 3) & 0x1f) === 0 && device.function(bdf & 7) !== null;
  return {
    reads,
    cfgRead(bdf, reg) {
      reads.push(bdf);
      if (!present(bdf)) return Promise.reject(new TlpwireError('ERR_CPL_UR', 'no such function'));
      return Promise.resolve(device.configRead(bdf & 7, reg)!);
    },
    cfgWrite(bdf, reg, value, be) {
      if (!present(bdf)) return Promise.reject(new TlpwireError('ERR_CPL_UR', 'no such function'));
      device.configWrite(bdf & 7, reg, value, be);
      return Promise.resolve();
    },
  };
}

function directMmio(device: PciDevice): MmioAccess {
  return {
    write32(address, value) {
      const hit = device.claims(address, 4);
      if (hit !== null) {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setUint32(0, value >>> 0, true);
        device.function(hit.function)!.memoryWrite(address, b);
      }
      return Promise.resolve();
    },
    read32(address) {
      const hit = device.claims(address, 4);
      const d = hit === null ? null : device.function(hit.function)!.memoryRead(address, 4);
      return Promise.resolve(d === null ? 0xffffffff : new DataView(d.buffer, d.byteOffset).getUint32(0, true));
    },
  };
}

/** Hands out MSI-X messages at 0xFEE0_0000 + 4n with data n. */
function allocator(): InterruptAllocator & { given: number } {
  const a = {
    given: 0,
    allocateMsix(_bdf: number, count: number) {
      const out = [];
      for (let i = 0; i < count; i++) {
        out.push({ address: 0xfee0_0000 + 4 * a.given, data: a.given });
        a.given++;
      }
      return out;
    },
  };
  return a;
}

function multiFunctionDevice(): PciDevice {
  const f0 = new PciFunction({
    vendorId: 0x1234,
    deviceId: 0x0001,
    classCode: 0xff0000,
    bars: [
      { index: 0, kind: 'mem32', size: 4096 },
      { index: 1, kind: 'mem64', size: 1 << 20, prefetchable: true },
      { index: 3, kind: 'io', size: 256 },
    ],
    msix: { vectors: 8, tableBar: 0, tableOffset: 0x800, pbaBar: 0, pbaOffset: 0xc00 },
    pcie: { maxPayloadSupported: 1024 },
    serialNumber: 0x0102030405060708n,
  });
  const f2 = new PciFunction({
    vendorId: 0x1234,
    deviceId: 0x0002,
    classCode: 0x020000,
    bars: [{ index: 2, kind: 'mem32', size: 128 }],
    pcie: { maxPayloadSupported: 128, tag10BitRequester: false, tag10BitCompleter: false, completionTimeoutRanges: ['A', 'B'] },
  });
  const f5 = new PciFunction({ vendorId: 0x1234, deviceId: 0x0005, classCode: 0xff0000, pcie: false, aer: false });
  return new PciDevice([f0, undefined, f2, undefined, undefined, f5]);
}

describe('enumerateDevice over direct config access', () => {
  it('finds every function of a multi-function device, sizes, places and programs its BARs', async () => {
    const device = multiFunctionDevice();
    const access = directAccess(device, 3);
    const result = await enumerateDevice(access, {
      bus: 3,
      mmio: directMmio(device),
      interrupts: allocator(),
      windows: { io: { base: 0x1000, limit: 0x10000 } },
      maxPayloadSize: 512,
      linkMaxPayloadSize: 4096,
    });
    expect(result.functions.map((f) => [f.bdf, f.deviceId])).toEqual([
      [0x0300, 0x0001],
      [0x0302, 0x0002],
      [0x0305, 0x0005],
    ]);
    const f0 = result.functions[0]!;
    expect(f0.multiFunction).toBe(true);
    expect(f0.bars.map((b) => [b.index, b.kind, b.size, b.prefetchable])).toEqual([
      [0, 'mem32', 4096, false],
      [1, 'mem64', 1 << 20, true],
      [3, 'io', 256, false],
    ]);
    // What enumeration reports is what the function decodes now.
    for (const f of result.functions) {
      const fn = device.function(f.function)!;
      for (const b of f.bars) {
        expect(b.address).not.toBeNull();
        expect(b.address! % b.size).toBe(0);
        expect(fn.decodeBar(b.index)?.base).toBe(b.address);
      }
    }
    // Without a 64-bit window the prefetchable 64-bit BAR still lands below 4 GiB.
    expect(f0.bars[1]!.address!).toBeLessThan(2 ** 32);
    expect(f0.bars[2]!.address!).toBeGreaterThanOrEqual(0x1000);
    expect(f0.bars[2]!.address!).toBeLessThan(0x10000);
    expect(result.ranges).toHaveLength(4);
  });

  it('programs MPS from the link and the root port when every function supports more', async () => {
    const device = new PciDevice([new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, pcie: { maxPayloadSupported: 1024 } })]);
    const result = await enumerateDevice(directAccess(device, 1), { bus: 1, maxPayloadSize: 512, linkMaxPayloadSize: 256 });
    expect(result.maxPayloadSize).toBe(256);
    expect(device.function(0)!.pcie!.maxPayloadSizeBytes).toBe(256);
  });

  it('enables decoding and bus mastering, and programs MPS, MRRS, tags and the completion timeout', async () => {
    const device = multiFunctionDevice();
    const result = await enumerateDevice(directAccess(device, 1), {
      bus: 1,
      mmio: directMmio(device),
      interrupts: allocator(),
      windows: { io: { base: 0x1000, limit: 0x10000 } },
      maxPayloadSize: 512,
      linkMaxPayloadSize: 256,
      maxReadRequestSize: 1024,
    });
    const fn0 = device.function(0)!;
    const cmd0 = fn0.configRead(COMMAND >> 2) & 0xffff;
    expect(cmd0 & (CMD_MEM | CMD_IO | CMD_BME)).toBe(CMD_MEM | CMD_IO | CMD_BME);
    // One MPS for the device: the smallest of every function (1024, 128), root port (512) and link (256).
    expect(result.maxPayloadSize).toBe(128);
    expect(fn0.pcie!.maxPayloadSizeBytes).toBe(128);
    expect(result.functions[0]!.pcie!.maxPayloadSupported).toBe(1024);
    expect(fn0.pcie!.maxReadRequestSizeBytes).toBe(1024);
    expect(fn0.pcie!.extendedTagEnabled).toBe(true);
    expect(fn0.pcie!.tag10BitRequesterEnabled).toBe(true);
    expect(fn0.pcie!.completionTimeout.rangeNs).toEqual([260_000_000, 900_000_000]);
    const fn2 = device.function(2)!;
    expect(fn2.pcie!.maxPayloadSizeBytes).toBe(128);
    expect(fn2.pcie!.tag10BitRequesterEnabled).toBe(false);
    // Range C is not supported there: the default range stays.
    expect(result.functions[1]!.pcie!.completionTimeoutValue).toBe(0);
    expect(result.functions[0]!.serialNumber).toBe(0x0102030405060708n);
    const names = result.functions[0]!.capabilities.map((c) => c.name);
    expect(names).toEqual(['Power Management', 'PCI Express', 'MSI-X']);
    expect(result.functions[0]!.extendedCapabilities.map((c) => c.name)).toEqual(['Advanced Error Reporting', 'Device Serial Number']);
    expect(result.functions[2]!.pcie).toBeNull();
  });

  it('programs every MSI-X entry through the BAR, unmasks it and enables MSI-X without the function mask', async () => {
    const device = multiFunctionDevice();
    const result = await enumerateDevice(directAccess(device, 1), { bus: 1, mmio: directMmio(device), interrupts: allocator() });
    const fn0 = device.function(0)!;
    expect(fn0.msix!.enabled).toBe(true);
    expect(fn0.msix!.functionMasked).toBe(false);
    const msix = result.functions[0]!.msix!;
    expect(msix.tableSize).toBe(8);
    expect(msix.vectors).toHaveLength(8);
    for (let v = 0; v < 8; v++) {
      expect(fn0.msixTable!.isMasked(v)).toBe(false);
      expect(fn0.msixTable!.entry(v)).toEqual({ vector: v, address: 0xfee0_0000 + 4 * v, data: v });
    }
    // The function can now signal: the message is what the host allocated.
    expect(fn0.raiseMsix(5)).toEqual({ vector: 5, address: 0xfee0_0014, data: 5 });
  });

  it('reports nothing when function 0 answers UR, and probes only function 0 of a single-function device', async () => {
    const single = new PciDevice([new PciFunction({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 })]);
    const absent = directAccess(single, 2);
    expect((await enumerateDevice(absent, { bus: 1 })).functions).toEqual([]);
    const access = directAccess(single, 1);
    const result = await enumerateDevice(access, { bus: 1 });
    expect(result.functions).toHaveLength(1);
    expect(new Set(access.reads)).toEqual(new Set([0x0100]));
  });

  it('places prefetchable 64-bit BARs above 4 GiB only when a 64-bit window is given', async () => {
    const device = new PciDevice([
      new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, bars: [{ index: 0, kind: 'mem64', size: 1 << 24, prefetchable: true }] }),
    ]);
    const result = await enumerateDevice(directAccess(device, 1), {
      bus: 1,
      windows: { mem64: { base: 0x40_0000_0000, limit: 0x80_0000_0000 } },
    });
    expect(result.functions[0]!.bars[0]!.address).toBe(0x40_0000_0000);
    expect(device.function(0)!.decodeBar(0)!.base).toBe(0x40_0000_0000);
  });

  it('restores a BAR it sized and fails cleanly when the window is too small', async () => {
    const device = new PciDevice([new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, bars: [{ index: 0, kind: 'mem32', size: 1 << 20 }] })]);
    const err = await enumerateDevice(directAccess(device, 1), { bus: 1, windows: { mem32: { base: 0xc000_0000, limit: 0xc008_0000 } } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlpwireError);
    expect((err as TlpwireError).code).toBe('ERR_MEMORY_EXHAUSTED');
    expect(device.function(0)!.decodeBar(0)!.base).toBe(0);
  });

  it('reads a 4096-byte config image equal to the function config space', async () => {
    const device = multiFunctionDevice();
    const image = await readConfigSpace(directAccess(device, 1), 0x0100);
    expect(image).toHaveLength(4096);
    const dv = new DataView(image.buffer);
    for (let r = 0; r < 1024; r++) expect(dv.getUint32(r * 4, true)).toBe(device.function(0)!.configRead(r));
  });
});

describe('planBarAssignment', () => {
  const windows: AddressWindows = {
    mem32: { base: 0xc000_0000, limit: 0xc400_0000 },
    mem64: { base: 0x40_0000_0000, limit: 0x40_4000_0000 },
    io: { base: 0x1000, limit: 0x10000 },
  };
  const request = fc.record({
    kind: fc.constantFrom('mem32' as const, 'mem64' as const, 'io' as const),
    prefetchable: fc.boolean(),
    log2: fc.integer({ min: 4, max: 22 }),
  });

  it('gives every BAR a naturally aligned range inside its window, overlapping nothing (property)', () => {
    fc.assert(
      fc.property(
        fc.array(request, { maxLength: 24 }),
        fc.array(fc.record({ at: fc.integer({ min: 0, max: 63 }), log2: fc.integer({ min: 12, max: 20 }) }), { maxLength: 4 }),
        (reqs, takenSpec) => {
          const requests: BarRequest[] = reqs.map((r, i) => ({
            key: `r${i}`,
            kind: r.kind,
            prefetchable: r.kind === 'io' ? false : r.prefetchable,
            size: 2 ** (r.kind === 'io' ? Math.min(r.log2, 8) : Math.max(r.log2, 7)),
          }));
          const taken = takenSpec.map((t) => ({ base: 0xc000_0000 + t.at * 0x10_0000, end: 0xc000_0000 + t.at * 0x10_0000 + 2 ** t.log2 }));
          let plan;
          try {
            plan = planBarAssignment(requests, windows, taken);
          } catch (e) {
            // Only running out of room is an acceptable failure.
            expect((e as TlpwireError).code).toBe('ERR_MEMORY_EXHAUSTED');
            return;
          }
          const ranges: { base: number; end: number }[] = [...taken];
          for (const r of requests) {
            const p = plan.get(r.key)!;
            expect(p.address % r.size).toBe(0);
            const w = p.window === 'io' ? windows.io! : p.window === 'mem64' ? windows.mem64! : windows.mem32;
            expect(p.address).toBeGreaterThanOrEqual(w.base);
            expect(p.address + r.size).toBeLessThanOrEqual(w.limit);
            if (r.kind === 'io') expect(p.window).toBe('io');
            else if (r.kind === 'mem64' && r.prefetchable) expect(p.window).toBe('mem64');
            else expect(p.window).toBe('mem32');
            for (const o of ranges) expect(p.address + r.size <= o.base || p.address >= o.end).toBe(true);
            ranges.push({ base: p.address, end: p.address + r.size });
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('is deterministic and packs largest first', () => {
    const reqs: BarRequest[] = [
      { key: 'small', kind: 'mem32', prefetchable: false, size: 512 },
      { key: 'big', kind: 'mem32', prefetchable: false, size: 1 << 20 },
      { key: 'mid', kind: 'mem32', prefetchable: false, size: 16384 },
    ];
    const a = planBarAssignment(reqs, windows);
    expect(a.get('big')!.address).toBe(0xc000_0000);
    expect(a.get('mid')!.address).toBe(0xc010_0000);
    expect(a.get('small')!.address).toBe(0xc010_4000);
    expect(planBarAssignment(reqs, windows)).toEqual(a);
  });
});

describe('formatLspciTree', () => {
  const fn = (bus: number, f: number, vendorId: number, deviceId: number): EnumeratedFunction => ({
    bdf: (bus << 8) | f,
    bus,
    device: 0,
    function: f,
    vendorId,
    deviceId,
    revisionId: 0,
    classCode: 0xff0000,
    headerType: 0,
    multiFunction: false,
    subsystemVendorId: 0,
    subsystemId: 0,
    interruptPin: 1,
    command: 0,
    bars: [],
    capabilities: [],
    extendedCapabilities: [],
    pcie: null,
    msi: null,
    msix: null,
    serialNumber: null,
  });

  it('draws root ports with their buses and functions like lspci -tv', () => {
    const text = formatLspciTree([
      { rootPortDevice: 0, secondaryBus: 1, functions: [fn(1, 0, 0x104c, 0xb500)] },
      { rootPortDevice: 1, secondaryBus: 2, functions: [fn(2, 0, 0x1af4, 0x1041), fn(2, 1, 0x1af4, 0x1041)] },
    ]);
    expect(text).toBe(
      [
        '-[0000:00]-+-00.0-[01]----00.0  104c:b500 [ff00]',
        '           \\-01.0-[02]--+-00.0  1af4:1041 [ff00]',
        '                        \\-00.1  1af4:1041 [ff00]',
        '',
      ].join('\n'),
    );
    expect(formatLspciTree([{ rootPortDevice: 0, secondaryBus: 1, functions: [fn(1, 0, 0x104c, 0xb500)] }])).toBe(
      '-[0000:00]---00.0-[01]----00.0  104c:b500 [ff00]\n',
    );
  });
});
