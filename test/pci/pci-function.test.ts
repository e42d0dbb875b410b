import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  MemoryRegion,
  PciDevice,
  PciFunction,
  type BarRegion,
  type PciFunctionOptions,
} from '../../src/pci/index.js';
import { isTlpwireError } from '../../src/core/index.js';
import { cfgRead, cfgWrite } from './cfg-access.js';

const OPTIONS: PciFunctionOptions = {
  vendorId: 0x1af4,
  deviceId: 0x1041,
  revisionId: 1,
  classCode: 0x020000,
  bars: [
    { index: 0, kind: 'io', size: 32 },
    { index: 1, kind: 'mem32', size: 4096 },
    { index: 2, kind: 'mem64', size: 1 << 20, prefetchable: true },
  ],
  msix: { vectors: 4, tableBar: 1, tableOffset: 0x800, pbaBar: 1, pbaOffset: 0xc00 },
  serialNumber: 0xaabbn,
};

function assigned(): PciFunction {
  const f = new PciFunction(OPTIONS);
  cfgWrite(f, 0x10, 4, 0xc000);
  cfgWrite(f, 0x14, 4, 0xfe00_0000);
  cfgWrite(f, 0x18, 4, 0x0010_0000);
  cfgWrite(f, 0x1c, 4, 0x1);
  return f;
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return isTlpwireError(e) ? e.code : 'other';
  }
  return undefined;
}

describe('PciFunction BARs and the Command register', () => {
  it('decodes the BAR addresses software programmed', () => {
    const f = assigned();
    expect(f.decodeBar(0)).toEqual({ index: 0, kind: 'io', size: 32, prefetchable: false, base: 0xc000 });
    expect(f.decodeBar(1)).toEqual({ index: 1, kind: 'mem32', size: 4096, prefetchable: false, base: 0xfe00_0000 });
    expect(f.decodeBar(2)).toEqual({ index: 2, kind: 'mem64', size: 1 << 20, prefetchable: true, base: 0x1_0010_0000 });
    expect(f.decodeBar(3)).toBeNull();
    expect(f.decodeBar(5)).toBeNull();
    expect(f.barDefinitions.map((b) => b.index)).toEqual([0, 1, 2]);
  });

  it('Memory Space Enable clear: no memory address is claimed (the completer answers UR)', () => {
    const f = assigned();
    expect(f.memorySpaceEnabled).toBe(false);
    expect(f.claims(0xfe00_0000)).toBeNull();
    expect(f.memoryRead(0xfe00_0000, 4)).toBeNull();
    expect(f.memoryWrite(0xfe00_0000, new Uint8Array(4))).toBe(false);
    cfgWrite(f, 0x04, 2, 0x2);
    expect(f.claims(0xfe00_0000, 4)).toEqual({ bar: 1, offset: 0 });
    expect(f.claims(0x1_0010_0000 + 100, 8)).toEqual({ bar: 2, offset: 100 });
    expect(f.claims(0xfe00_0ffe, 4)).toBeNull(); // crosses the end of the BAR
    expect(f.claims(0xfe00_1000)).toBeNull();
    expect(f.claimsIo(0xc000)).toBeNull(); // I/O Space Enable still clear
    cfgWrite(f, 0x04, 2, 0x3);
    expect(f.claimsIo(0xc01f)).toEqual({ bar: 0, offset: 31 });
    expect(f.claims(0xc000)).toBeNull(); // I/O BARs do not decode memory
  });

  it('memory reads and writes reach the BAR region, the MSI-X table and PBA where mapped', () => {
    const f = assigned();
    cfgWrite(f, 0x04, 2, 0x2);
    expect(f.memoryWrite(0xfe00_0010, new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect([...(f.memoryRead(0xfe00_000e, 8) ?? [])]).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    expect([...(f.memoryRead(0xfe00_080c, 4) ?? [])]).toEqual([1, 0, 0, 0]); // vector 0 masked
    // An access straddling region and table is split between them.
    expect([...(f.memoryRead(0xfe00_07fe, 4) ?? [])]).toEqual([0, 0, 0, 0]);
  });

  it('user regions get offsets relative to the BAR', () => {
    const seen: [string, number, number][] = [];
    const region: BarRegion = {
      read: (o, l) => {
        seen.push(['r', o, l]);
        return new Uint8Array(l).fill(0xab);
      },
      write: (o, d) => {
        seen.push(['w', o, d.length]);
      },
    };
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, bars: [{ index: 3, kind: 'mem32', size: 256, region }] });
    cfgWrite(f, 0x1c, 4, 0x8000_0000);
    cfgWrite(f, 0x04, 2, 0x2);
    expect([...(f.memoryRead(0x8000_0004, 2) ?? [])]).toEqual([0xab, 0xab]);
    f.memoryWrite(0x8000_00fc, new Uint8Array(4));
    expect(seen).toEqual([
      ['r', 4, 2],
      ['w', 0xfc, 4],
    ]);
  });

  it('Bus Master Enable is what the DMA engine checks', () => {
    const f = assigned();
    expect(f.busMasterEnabled).toBe(false);
    cfgWrite(f, 0x04, 2, 0x4);
    expect(f.busMasterEnabled).toBe(true);
    cfgWrite(f, 0x04, 2, 0x0);
    expect(f.busMasterEnabled).toBe(false);
  });

  it('refuses bad BAR definitions', () => {
    const bad: PciFunctionOptions['bars'][] = [
      [{ index: 5, kind: 'mem64', size: 4096 }],
      [{ index: 6, kind: 'mem32', size: 4096 }],
      [{ index: 0, kind: 'mem32', size: 64 }],
      [{ index: 0, kind: 'mem32', size: 3000 }],
      [{ index: 0, kind: 'io', size: 512 }],
      [{ index: 0, kind: 'io', size: 16, prefetchable: true }],
      [
        { index: 0, kind: 'mem64', size: 4096 },
        { index: 1, kind: 'mem32', size: 4096 },
      ],
    ];
    for (const bars of bad) {
      expect(codeOf(() => new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, ...(bars ? { bars } : {}) })), JSON.stringify(bars)).toBe(
        'ERR_CONFIG',
      );
    }
    expect(codeOf(() => new PciFunction({ vendorId: 0x10000, deviceId: 2, classCode: 0 }))).toBe('ERR_CONFIG');
    expect(codeOf(() => new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0x1000000 }))).toBe('ERR_CONFIG');
    expect(codeOf(() => new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, pcie: false, aer: true }))).toBe(
      'ERR_CONFIG',
    );
  });
});

describe('Power management', () => {
  it('D0 and D3hot are writable; D1/D2 writes are discarded; D3hot stops memory decoding', () => {
    const f = assigned();
    cfgWrite(f, 0x04, 2, 0x2);
    const pm = f.capabilities.find(0x01) ?? -1;
    expect(cfgRead(f, pm + 2, 2) & 0x7).toBe(3);
    expect(cfgRead(f, pm + 4, 2)).toBe(0x0008); // D0, No_Soft_Reset
    cfgWrite(f, pm + 4, 2, 0x1);
    expect(f.powerState).toBe('D0');
    cfgWrite(f, pm + 4, 2, 0x3);
    expect(f.powerState).toBe('D3hot');
    expect(f.claims(0xfe00_0000)).toBeNull();
    expect(cfgRead(f, 0x00, 4)).toBe(0x10411af4); // config still answers
    cfgWrite(f, pm + 4, 2, 0x2);
    expect(f.powerState).toBe('D3hot');
    cfgWrite(f, pm + 4, 2, 0x0);
    expect(f.claims(0xfe00_0000)).toEqual({ bar: 1, offset: 0 }); // No_Soft_Reset: state kept
    expect(f.resetCount).toBe(0);
  });

  it('without No_Soft_Reset, D3hot → D0 resets the function', () => {
    const f = new PciFunction({ ...OPTIONS, pm: { noSoftReset: false } });
    const causes: string[] = [];
    f.onReset = (c) => causes.push(c);
    cfgWrite(f, 0x14, 4, 0xfe00_0000);
    const pm = f.capabilities.find(0x01) ?? -1;
    cfgWrite(f, pm + 4, 2, 0x3);
    cfgWrite(f, pm + 4, 2, 0x0);
    expect(causes).toEqual(['d3hot-to-d0']);
    expect(cfgRead(f, 0x14, 4)).toBe(0);
  });
});

describe('Function Level Reset', () => {
  it('restores every non-sticky register to power-on values (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1023 }), fc.nat({ max: 0xffffffff }), fc.integer({ min: 0, max: 15 })), {
          maxLength: 60,
        }),
        (writes) => {
          const fresh = new PciFunction(OPTIONS).config.snapshot();
          const f = new PciFunction(OPTIONS);
          const aer = f.aer?.offset ?? -1;
          const pcie = f.pcie?.offset ?? -1;
          let resets = 0;
          f.onReset = () => resets++;
          for (const [reg, value, be] of writes) {
            // Skip Initiate FLR itself; the test resets once at the end.
            if (reg === (pcie + 8) >> 2) continue;
            f.configWrite(reg, value, be);
          }
          f.functionLevelReset();
          expect(resets).toBe(1);
          const after = f.config.snapshot();
          for (let i = 0; i < 4096; i++) {
            const sticky = (i >= aer + 4 && i < aer + 0x2c) || i === pcie + 8 || (i >= pcie + 0x10 && i < pcie + 0x14) ||
              (i >= pcie + 0x30 && i < pcie + 0x34);
            if (sticky) continue;
            if (after[i] !== fresh[i]) expect(`byte 0x${i.toString(16)} = ${after[i]}`).toBe(`byte 0x${i.toString(16)} = ${fresh[i]}`);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('clears BAR state and the regions, deasserts INTx, calls the reset hook', () => {
    const f = assigned();
    const ram = f.barRegion(1);
    cfgWrite(f, 0x04, 2, 0x7);
    f.memoryWrite(0xfe00_0000, new Uint8Array([9, 9]));
    const wire: boolean[] = [];
    f.onIntx = (a) => wire.push(a);
    f.setInterruptLevel(true);
    const causes: string[] = [];
    f.onReset = (c) => causes.push(c);
    const pcie = f.pcie?.offset ?? -1;
    cfgWrite(f, pcie + 8, 2, 0x8000);
    expect(causes).toEqual(['flr']);
    expect(wire).toEqual([true, false]);
    expect(cfgRead(f, 0x04, 2)).toBe(0);
    expect(cfgRead(f, 0x06, 2) & 0x8).toBe(0);
    expect([0x10, 0x14, 0x18, 0x1c].map((o) => cfgRead(f, o, 4))).toEqual([0x1, 0x0, 0xc, 0x0]);
    expect(f.claims(0xfe00_0000)).toBeNull();
    expect([...(ram?.read(0, 2) ?? [])]).toEqual([0, 0]);
    expect(f.resetCount).toBe(1);
  });

  it('keeps AER status (sticky) but a power-on reset clears it', () => {
    const f = new PciFunction(OPTIONS);
    f.errors.malformedTlp(new Uint8Array(16));
    f.functionLevelReset();
    expect(f.aer?.uncorrectableStatus).toBe(1 << 18);
    f.powerOnReset();
    expect(f.aer?.uncorrectableStatus).toBe(0);
  });
});

describe('PciDevice', () => {
  it('sets the Multi-Function bit in every function of a multi-function device', () => {
    const f0 = new PciFunction(OPTIONS);
    const f3 = new PciFunction({ ...OPTIONS, deviceId: 0x1042 });
    const dev = new PciDevice([f0, undefined, undefined, f3]);
    expect(dev.multiFunction).toBe(true);
    expect(cfgRead(f0, 0x0e, 1)).toBe(0x80);
    expect(cfgRead(f3, 0x0e, 1)).toBe(0x80);
    expect(dev.functions.map(([n]) => n)).toEqual([0, 3]);
    expect(dev.configRead(3, 0)).toBe(0x10421af4);
    expect(dev.configRead(1, 0)).toBeNull();
    expect(dev.configWrite(2, 1, 0x6, 0x3)).toBe(false);
    // The bit survives an FLR: it is the power-on value.
    f0.functionLevelReset();
    expect(cfgRead(f0, 0x0e, 1)).toBe(0x80);
  });

  it('a single-function device leaves Header Type 0x00', () => {
    const f0 = new PciFunction(OPTIONS);
    const dev = new PciDevice([f0]);
    expect(dev.multiFunction).toBe(false);
    expect(cfgRead(f0, 0x0e, 1)).toBe(0);
  });

  it('routes a memory access to the function whose BAR claims it', () => {
    const f0 = new PciFunction({ vendorId: 1, deviceId: 1, classCode: 0, bars: [{ index: 0, kind: 'mem32', size: 4096 }] });
    const f1 = new PciFunction({
      vendorId: 1,
      deviceId: 2,
      classCode: 0,
      bars: [{ index: 0, kind: 'mem32', size: 4096, region: new MemoryRegion(4096) }],
    });
    const dev = new PciDevice([f0, f1]);
    cfgWrite(f0, 0x10, 4, 0xe000_0000);
    cfgWrite(f1, 0x10, 4, 0xe000_1000);
    cfgWrite(f0, 0x04, 2, 2);
    cfgWrite(f1, 0x04, 2, 2);
    expect(dev.claims(0xe000_1004)).toEqual({ function: 1, bar: 0, offset: 4 });
    expect(dev.claims(0xe000_2000)).toBeNull();
  });

  it('refuses a device without function 0 or with more than 8', () => {
    const f = new PciFunction(OPTIONS);
    expect(codeOf(() => new PciDevice([undefined, f]))).toBe('ERR_CONFIG');
    expect(codeOf(() => new PciDevice(Array.from({ length: 9 }, () => new PciFunction(OPTIONS))))).toBe('ERR_CONFIG');
    expect(codeOf(() => new PciDevice([f, f]))).toBe('ERR_CONFIG');
  });
});
