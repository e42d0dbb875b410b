import { describe, expect, it } from 'vitest';
import { PciFunction, type InterruptMessage } from '../../src/pci/index.js';
import { isTlpwireError } from '../../src/core/index.js';
import { cfgRead, cfgWrite } from './cfg-access.js';

const le32 = (v: number): Uint8Array => new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]);
const BAR = 0xfe00_0000;

function msixFunction(vectors = 4): { f: PciFunction; cap: number; released: InterruptMessage[] } {
  const f = new PciFunction({
    vendorId: 1,
    deviceId: 2,
    classCode: 0xff0000,
    bars: [{ index: 0, kind: 'mem32', size: 0x4000 }],
    msix: { vectors, tableBar: 0, tableOffset: 0x2000, pbaBar: 0, pbaOffset: 0x3000 },
  });
  const released: InterruptMessage[] = [];
  f.onInterruptMessage = (m) => released.push(m);
  cfgWrite(f, 0x10, 4, BAR);
  cfgWrite(f, 0x04, 2, 0x6); // MSE + BME
  const cap = f.capabilities.find(0x11) ?? -1;
  return { f, cap, released };
}

/** Programs table entry v as a driver does, through BAR writes. */
function program(f: PciFunction, v: number, address: number, data: number, masked: boolean): void {
  const e = BAR + 0x2000 + 16 * v;
  expect(f.memoryWrite(e, le32(address >>> 0))).toBe(true);
  expect(f.memoryWrite(e + 4, le32(Math.floor(address / 2 ** 32)))).toBe(true);
  expect(f.memoryWrite(e + 8, le32(data))).toBe(true);
  expect(f.memoryWrite(e + 12, le32(masked ? 1 : 0))).toBe(true);
}

function pba(f: PciFunction): number {
  const b = f.memoryRead(BAR + 0x3000, 8);
  return b === null ? -1 : (b[0] ?? 0) | ((b[1] ?? 0) << 8);
}

describe('MSI-X', () => {
  it('describes the table and PBA location and size in the capability', () => {
    const { f, cap } = msixFunction(5);
    expect(cfgRead(f, cap + 2, 2)).toBe(4); // Table Size N-1, function mask and enable clear
    expect(cfgRead(f, cap + 4, 4)).toBe(0x2000 | 0);
    expect(cfgRead(f, cap + 8, 4)).toBe(0x3000 | 0);
    cfgWrite(f, cap + 2, 2, 0xffff);
    expect(cfgRead(f, cap + 2, 2)).toBe(0xc004); // only Enable and Function Mask are writable
  });

  it('entries start masked; the table is read/write through the BAR and the PBA is read-only', () => {
    const { f } = msixFunction();
    expect([...(f.memoryRead(BAR + 0x2000, 16) ?? [])]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    program(f, 1, 0x1_fee0_1000, 0x4021, false);
    expect([...(f.memoryRead(BAR + 0x2010, 16) ?? [])]).toEqual([
      0x00, 0x10, 0xe0, 0xfe, 0x01, 0, 0, 0, 0x21, 0x40, 0, 0, 0, 0, 0, 0,
    ]);
    // Reserved Vector Control bits stay 0.
    f.memoryWrite(BAR + 0x201c, le32(0xfffffffe));
    expect(f.msixTable?.isMasked(1)).toBe(false);
    expect([...(f.memoryRead(BAR + 0x201c, 4) ?? [])]).toEqual([0, 0, 0, 0]);
    f.memoryWrite(BAR + 0x3000, le32(0xffffffff));
    expect(pba(f)).toBe(0);
  });

  it('trigger: delivers when enabled and unmasked; otherwise pends until unmasked', () => {
    const { f, cap, released } = msixFunction();
    program(f, 0, 0xfee0_0000, 0x30, false);
    program(f, 2, 0xfee0_0004, 0x32, true);
    // MSI-X disabled: the message pends.
    expect(f.raiseMsix(0)).toBeNull();
    expect(pba(f)).toBe(0b0001);
    cfgWrite(f, cap + 2, 2, 0x8000); // enable → the pending vector 0 is released
    expect(released).toEqual([{ vector: 0, address: 0xfee0_0000, data: 0x30 }]);
    expect(pba(f)).toBe(0);
    expect(f.raiseMsix(0)).toEqual({ vector: 0, address: 0xfee0_0000, data: 0x30 });
    // Vector 2 is masked: pending bit, no message.
    expect(f.raiseMsix(2)).toBeNull();
    expect(pba(f)).toBe(0b0100);
    f.memoryWrite(BAR + 0x2000 + 32 + 12, le32(0)); // unmask vector 2
    expect(released.at(-1)).toEqual({ vector: 2, address: 0xfee0_0004, data: 0x32 });
    expect(pba(f)).toBe(0);
  });

  it('Function Mask holds every vector; clearing it releases them in order', () => {
    const { f, cap, released } = msixFunction();
    for (let v = 0; v < 4; v++) program(f, v, 0xfee0_0000 + 4 * v, v, false);
    cfgWrite(f, cap + 2, 2, 0xc000);
    expect(f.raiseMsix(3)).toBeNull();
    expect(f.raiseMsix(1)).toBeNull();
    expect(released).toEqual([]);
    expect(pba(f)).toBe(0b1010);
    cfgWrite(f, cap + 2, 2, 0x8000);
    expect(released.map((m) => m.vector)).toEqual([1, 3]);
  });

  it('with Bus Master Enable clear nothing is sent; setting BME releases pending vectors', () => {
    const { f, cap, released } = msixFunction();
    program(f, 0, 0xfee0_0000, 7, false);
    cfgWrite(f, cap + 2, 2, 0x8000);
    cfgWrite(f, 0x04, 2, 0x2); // BME off
    expect(f.busMasterEnabled).toBe(false);
    expect(f.raiseMsix(0)).toBeNull();
    expect(released).toEqual([]);
    cfgWrite(f, 0x04, 2, 0x6);
    expect(released).toEqual([{ vector: 0, address: 0xfee0_0000, data: 7 }]);
  });

  it('clearPending drops a pending message; out-of-range vectors are refused', () => {
    const { f, released } = msixFunction();
    f.raiseMsix(1);
    f.msixTable?.clearPending(1);
    expect(pba(f)).toBe(0);
    let code: string | undefined;
    try {
      f.raiseMsix(4);
    } catch (e) {
      code = isTlpwireError(e) ? e.code : 'other';
    }
    expect(code).toBe('ERR_CONFIG');
    expect(released).toEqual([]);
  });

  it('FLR masks every entry again and clears the PBA and the capability', () => {
    const { f, cap } = msixFunction();
    program(f, 0, 0xfee0_0000, 1, false);
    cfgWrite(f, cap + 2, 2, 0x4000);
    f.raiseMsix(0);
    f.functionLevelReset();
    cfgWrite(f, 0x10, 4, BAR);
    cfgWrite(f, 0x04, 2, 0x6);
    expect(cfgRead(f, cap + 2, 2)).toBe(3);
    expect(f.msixTable?.isMasked(0)).toBe(true);
    expect(f.msixTable?.entry(0)).toEqual({ vector: 0, address: 0, data: 0 });
    expect(pba(f)).toBe(0);
  });

  it('refuses tables that do not fit their BAR or overlap the PBA', () => {
    const bad = [
      { vectors: 4, tableBar: 1, tableOffset: 0, pbaBar: 0, pbaOffset: 0x100 },
      { vectors: 4, tableBar: 0, tableOffset: 0xff8, pbaBar: 0, pbaOffset: 0 },
      { vectors: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x20 },
      { vectors: 4, tableBar: 0, tableOffset: 4, pbaBar: 0, pbaOffset: 0x100 },
      { vectors: 0, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x100 },
      { vectors: 2049, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x100 },
    ];
    for (const msix of bad) {
      let code: string | undefined;
      try {
        new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, bars: [{ index: 0, kind: 'mem32', size: 4096 }], msix });
      } catch (e) {
        code = isTlpwireError(e) ? e.code : 'other';
      }
      expect(code, JSON.stringify(msix)).toBe('ERR_CONFIG');
    }
  });
});

describe('MSI', () => {
  function msiFunction(perVectorMasking: boolean): { f: PciFunction; cap: number; released: InterruptMessage[] } {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, msi: { vectors: 8, perVectorMasking } });
    const released: InterruptMessage[] = [];
    f.onInterruptMessage = (m) => released.push(m);
    cfgWrite(f, 0x04, 2, 0x4);
    return { f, cap: f.capabilities.find(0x05) ?? -1, released };
  }

  it('Message Control: capable count and 64-bit are RO, enable and MME are RW', () => {
    const { f, cap } = msiFunction(false);
    expect(cfgRead(f, cap + 2, 2)).toBe((3 << 1) | 0x80);
    cfgWrite(f, cap + 2, 2, 0xffff);
    expect(cfgRead(f, cap + 2, 2)).toBe((3 << 1) | 0x80 | 0x1 | 0x70);
  });

  it('vector v replaces the low log2(enabled) bits of Message Data', () => {
    const { f, cap } = msiFunction(false);
    cfgWrite(f, cap + 4, 4, 0xfee0_100f); // bits 1:0 are RO 0
    cfgWrite(f, cap + 8, 4, 0x2);
    cfgWrite(f, cap + 0xc, 2, 0x4127);
    expect(f.raiseMsi(0)).toBeNull(); // not enabled
    cfgWrite(f, cap + 2, 2, 0x1 | (2 << 4)); // enable 4 vectors
    expect(f.msi?.vectorsEnabled).toBe(4);
    expect(f.raiseMsi(2)).toEqual({ vector: 2, address: 0x2_fee0_100c, data: 0x4126 });
    expect(f.raiseMsi(4)).toBeNull();
    cfgWrite(f, 0x04, 2, 0); // BME off: no message at all
    expect(f.raiseMsi(1)).toBeNull();
  });

  it('per-vector masking: a masked vector pends and unmasking releases it', () => {
    const { f, cap, released } = msiFunction(true);
    cfgWrite(f, cap + 4, 4, 0xfee0_0000);
    cfgWrite(f, cap + 0xc, 2, 0x40);
    cfgWrite(f, cap + 2, 2, 0x1 | (3 << 4));
    cfgWrite(f, cap + 0x10, 4, 0b100);
    expect(f.raiseMsi(2)).toBeNull();
    expect(cfgRead(f, cap + 0x14, 4)).toBe(0b100);
    cfgWrite(f, cap + 0x14, 4, 0); // Pending Bits are RO
    expect(cfgRead(f, cap + 0x14, 4)).toBe(0b100);
    cfgWrite(f, cap + 0x10, 4, 0);
    expect(released).toEqual([{ vector: 2, address: 0xfee0_0000, data: 0x42 }]);
    expect(cfgRead(f, cap + 0x14, 4)).toBe(0);
    // Bus Master Enable clear holds the vector pending; setting it releases the message.
    cfgWrite(f, 0x04, 2, 0);
    expect(f.raiseMsi(5)).toBeNull();
    expect(cfgRead(f, cap + 0x14, 4)).toBe(0b100000);
    cfgWrite(f, 0x04, 2, 0x4);
    expect(released.at(-1)).toEqual({ vector: 5, address: 0xfee0_0000, data: 0x45 });
  });
});

describe('MSI, 32-bit address form', () => {
  it('has no upper address; Message Data follows the address', () => {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, msi: { vectors: 2, address64: false } });
    cfgWrite(f, 0x04, 2, 0x4);
    const cap = f.capabilities.find(0x05) ?? -1;
    expect(cfgRead(f, cap + 2, 2)).toBe(1 << 1);
    cfgWrite(f, cap + 4, 4, 0xfee0_0000);
    cfgWrite(f, cap + 8, 2, 0x20);
    cfgWrite(f, cap + 2, 2, 0x1 | (1 << 4));
    expect(f.raiseMsi(1)).toEqual({ vector: 1, address: 0xfee0_0000, data: 0x21 });
  });
});

describe('INTx', () => {
  it('Interrupt Status follows the level; the wire needs INTx Disable clear and no MSI/MSI-X', () => {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, msi: { vectors: 1 } });
    const wire: [boolean, number][] = [];
    f.onIntx = (a, pin) => wire.push([a, pin]);
    f.setInterruptLevel(true);
    expect(cfgRead(f, 0x06, 2) & 0x8).toBe(0x8);
    expect(wire).toEqual([[true, 1]]);
    cfgWrite(f, 0x04, 2, 0x400); // INTx Disable → Deassert
    expect(wire).toEqual([
      [true, 1],
      [false, 1],
    ]);
    expect(cfgRead(f, 0x06, 2) & 0x8).toBe(0x8); // status still reflects the condition
    cfgWrite(f, 0x04, 2, 0);
    expect(f.intxAsserted).toBe(true);
    const cap = f.capabilities.find(0x05) ?? -1;
    cfgWrite(f, cap + 2, 2, 1); // MSI enabled → INTx deasserted
    expect(f.intxAsserted).toBe(false);
    cfgWrite(f, cap + 2, 2, 0);
    f.setInterruptLevel(false);
    expect(wire.at(-1)).toEqual([false, 1]);
    expect(cfgRead(f, 0x06, 2) & 0x8).toBe(0);
  });

  it('a function without an interrupt pin never asserts INTx', () => {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, interruptPin: 0 });
    let calls = 0;
    f.onIntx = () => calls++;
    f.setInterruptLevel(true);
    expect(calls).toBe(0);
    expect(cfgRead(f, 0x3d, 1)).toBe(0);
  });
});
