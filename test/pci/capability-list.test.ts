import { describe, expect, it } from 'vitest';
import {
  CapabilityList,
  ConfigSpace,
  PciFunction,
  walkCapabilities,
} from '../../src/pci/index.js';
import { isTlpwireError } from '../../src/core/index.js';
import { cfgRead } from './cfg-access.js';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return isTlpwireError(e) ? e.code : 'other';
  }
  return undefined;
}

describe('CapabilityList', () => {
  it('links standard capabilities from the Capabilities Pointer and sets Status.Capabilities List', () => {
    const s = new ConfigSpace();
    const caps = new CapabilityList(s);
    expect(s.u16(0x06) & 0x10).toBe(0);
    const a = caps.add(0x01, 8);
    const b = caps.add(0x05, 10);
    const c = caps.add(0x09, 3);
    expect([a, b, c]).toEqual([0x40, 0x48, 0x54]);
    expect(s.u8(0x34)).toBe(0x40);
    expect(s.u16(0x06) & 0x10).toBe(0x10);
    expect([s.u8(0x40), s.u8(0x41), s.u8(0x48), s.u8(0x49), s.u8(0x54), s.u8(0x55)]).toEqual([
      0x01, 0x48, 0x05, 0x54, 0x09, 0x00,
    ]);
    expect(caps.find(0x05)).toBe(0x48);
    expect(caps.find(0x10)).toBeNull();
  });

  it('puts the first extended capability at 0x100 and chains the 12-bit next pointers', () => {
    const s = new ConfigSpace();
    const caps = new CapabilityList(s);
    const aer = caps.addExtended(0x0001, 2, 0x38);
    const dsn = caps.addExtended(0x0003, 1, 0x0c);
    expect(aer).toBe(0x100);
    expect(dsn).toBe(0x138);
    // ID[15:0] | version[19:16] | next[31:20]
    expect(s.u32(0x100)).toBe((0x0001 | (2 << 16) | (0x138 << 20)) >>> 0);
    expect(s.u32(0x138)).toBe(0x0003 | (1 << 16));
    expect(codeOf(() => new CapabilityList(new ConfigSpace()).addExtended(1, 1, 8, { at: 0x200 }))).toBe('ERR_CONFIG');
  });

  it('pins offsets on request and refuses overlaps, misalignment and overflow', () => {
    const s = new ConfigSpace();
    const caps = new CapabilityList(s);
    expect(caps.add(0x11, 12, { at: 0x80 })).toBe(0x80);
    expect(codeOf(() => caps.add(0x05, 8, { at: 0x88 }))).toBe('ERR_CONFIG');
    expect(codeOf(() => caps.add(0x05, 8, { at: 0x42 }))).toBe('ERR_CONFIG');
    expect(codeOf(() => caps.add(0x05, 8, { at: 0xfc }))).toBe('ERR_CONFIG');
    expect(caps.add(0x05, 8)).toBe(0x40);
    expect(codeOf(() => caps.add(0x09, 0xc0))).toBe('ERR_CONFIG');
    // The chain follows insertion order, not address order.
    expect(walkCapabilities(s.snapshot()).standard).toEqual([
      { id: 0x11, offset: 0x80 },
      { id: 0x05, offset: 0x40 },
    ]);
  });

  it('the capability headers are read-only to software', () => {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0xff0000, serialNumber: 5n });
    const before = f.config.snapshot();
    const headers: [number, number][] = [[0x34, 0x1]];
    for (const c of f.capabilities.standard) headers.push([c.offset, 0x3]);
    for (const c of f.capabilities.extended) headers.push([c.offset, 0xf]);
    for (const [off, be] of headers) f.configWrite(off >> 2, 0xffffffff, be);
    for (const [off] of headers) {
      expect(cfgRead(f, off, 4), `header at 0x${off.toString(16)}`).toBe(
        ((before[off] ?? 0) | ((before[off + 1] ?? 0) << 8) | ((before[off + 2] ?? 0) << 16) | ((before[off + 3] ?? 0) << 24)) >>> 0,
      );
    }
  });
});

describe('walkCapabilities', () => {
  it('finds every capability of a full function, in chain order, without problems', () => {
    const f = new PciFunction({
      vendorId: 1,
      deviceId: 2,
      classCode: 0xff0000,
      bars: [{ index: 0, kind: 'mem32', size: 8192 }],
      msi: { vectors: 4 },
      msix: { vectors: 8, tableBar: 0, tableOffset: 0x1000, pbaBar: 0, pbaOffset: 0x1800 },
      vendorCapabilities: [{ length: 16 }, { length: 20 }],
      serialNumber: 0x1234n,
    });
    const walk = walkCapabilities(f.config.snapshot());
    expect(walk.problems).toEqual([]);
    expect(walk.standard.map((c) => c.id)).toEqual([0x01, 0x05, 0x10, 0x11, 0x09, 0x09]);
    expect(walk.extended.map((c) => [c.id, c.version])).toEqual([
      [0x0001, 2],
      [0x0003, 1],
    ]);
    expect(walk.standard.map((c) => c.offset)).toEqual(f.capabilities.standard.map((c) => c.offset));
  });

  it('reports a loop instead of walking forever', () => {
    const s = new ConfigSpace();
    const caps = new CapabilityList(s);
    const a = caps.add(0x01, 8);
    const b = caps.add(0x05, 8);
    s.hwWrite(b + 1, 1, a);
    const ext = caps.addExtended(0x0001, 1, 8);
    s.hwWrite(ext, 4, 0x0001 | (1 << 16) | (0x100 << 20));
    const walk = walkCapabilities(s.snapshot());
    expect(walk.standard).toHaveLength(2);
    expect(walk.extended).toHaveLength(1);
    expect(walk.problems).toHaveLength(2);
    expect(walk.problems[0]).toMatch(/loops at 0x40/);
    expect(walk.problems[1]).toMatch(/loops at 0x100/);
  });

  it('a function without capabilities has an empty walk', () => {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, pcie: false, pm: false, aer: false });
    expect(cfgRead(f, 0x06, 2) & 0x10).toBe(0);
    expect(walkCapabilities(f.config.snapshot())).toEqual({ standard: [], extended: [], problems: [] });
  });
});

describe('vendor-specific capability', () => {
  it('carries its length and body, and its user can make fields writable and hook them', () => {
    const f = new PciFunction({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
    // A virtio_pci_cap-shaped body: cfg_type 5 (PCI config access), bar, id, padding, offset, length.
    const vc = f.addVendorCapability({ length: 20, body: new Uint8Array([5, 0, 0, 0, 0]) });
    expect(cfgRead(f, vc.offset, 1)).toBe(0x09);
    expect(cfgRead(f, vc.offset + 2, 1)).toBe(20);
    expect(cfgRead(f, vc.offset + 3, 1)).toBe(5);
    const writes: number[] = [];
    f.config.define(vc.offset + 16, 4, 0, { rw: 0xffffffff });
    f.config.onWrite((vc.offset + 16) >> 2, (e) => writes.push(e.after));
    f.configWrite((vc.offset + 16) >> 2, 0xcafe, 0x3);
    expect(writes).toEqual([0xcafe]);
    const header = cfgRead(f, vc.offset, 4);
    f.configWrite(vc.offset >> 2, 0xffffffff, 0xf); // ID, next, length and cfg_type stay
    expect(cfgRead(f, vc.offset, 4)).toBe(header);
    expect(header & 0xffff00ff).toBe((0x09 | (20 << 16) | (5 << 24)) >>> 0);
    expect(walkCapabilities(f.config.snapshot()).standard.at(-1)).toEqual({ id: 0x09, offset: vc.offset });
  });
});

