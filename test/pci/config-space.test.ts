import { describe, expect, it } from 'vitest';
import { ConfigSpace, type ConfigWriteEvent } from '../../src/pci/index.js';
import { isTlpwireError } from '../../src/core/index.js';

describe('ConfigSpace', () => {
  it('reads DWs little-endian and starts all zero', () => {
    const s = new ConfigSpace();
    expect(s.read(0)).toBe(0);
    s.define(0, 2, 0x1af4);
    s.define(2, 2, 0x1041);
    expect(s.read(0)).toBe(0x10411af4);
    expect(s.u8(0)).toBe(0xf4);
    expect(s.u16(2)).toBe(0x1041);
  });

  it('ignores writes to RO bits, takes RW bits, clears RW1C bits written with 1', () => {
    const s = new ConfigSpace();
    s.define(0x40, 4, 0xa5a5_0f0f, { rw: 0x0000_00ff, w1c: 0x0f0f_0000 });
    s.write(0x10, 0xffff_ff3c, 0xf);
    // byte 0 RW → 0x3c; byte 1 RO → 0x0f stays; bytes 2-3: 0xa5a5 with w1c bits 0x0f0f cleared.
    expect(s.read(0x10) >>> 0).toBe(0xa0a0_0f3c);
    s.write(0x10, 0, 0xf);
    expect(s.read(0x10) >>> 0).toBe(0xa0a0_0f00);
  });

  it('applies only the enabled bytes', () => {
    const s = new ConfigSpace();
    s.define(0x40, 4, 0, { rw: 0xffffffff });
    s.write(0x10, 0x11223344, 0b0101);
    expect(s.read(0x10)).toBe(0x00220044);
    s.write(0x10, 0xffffffff, 0);
    expect(s.read(0x10)).toBe(0x00220044);
  });

  it('runs write hooks after the masked write with before/after values', () => {
    const s = new ConfigSpace();
    s.define(0x44, 2, 0x8000, { rw: 0x00ff });
    const events: ConfigWriteEvent[] = [];
    s.onWrite(0x11, (e) => events.push(e));
    s.write(0x11, 0x1234_5678, 0x3);
    expect(events).toEqual([{ register: 0x11, value: 0x12345678, byteEnables: 3, before: 0x8000, after: 0x8078 }]);
  });

  it('hardware updates bypass the masks', () => {
    const s = new ConfigSpace();
    s.define(0x06, 2, 0, { w1c: 0xf900 });
    s.hwSet(0x06, 2, 0x0008 | 0x2000);
    expect(s.u16(0x06)).toBe(0x2008);
    s.write(1, 0x2000_0000, 0xc); // RW1C clears bit 13, the RO INTx status stays
    expect(s.u16(0x06)).toBe(0x0008);
    s.hwClear(0x06, 2, 0x0008);
    expect(s.u16(0x06)).toBe(0);
  });

  it('FLR keeps preserved bits, power-on reset restores everything', () => {
    const s = new ConfigSpace();
    s.define(0x80, 4, 0x0000_0010, { rw: 0xffff_ffff, preserveOnFlr: 0xffff_0000 });
    s.write(0x20, 0xabcd_1234, 0xf);
    s.reset('flr');
    expect(s.read(0x20) >>> 0).toBe(0xabcd_0010);
    s.reset('power-on');
    expect(s.read(0x20)).toBe(0x10);
  });

  it('rejects offsets outside config space and bits both RW and RW1C', () => {
    const s = new ConfigSpace();
    const codeOf = (f: () => void): string | undefined => {
      try {
        f();
      } catch (e) {
        return isTlpwireError(e) ? e.code : 'other';
      }
      return undefined;
    };
    expect(codeOf(() => s.read(1024))).toBe('ERR_CONFIG');
    expect(codeOf(() => s.write(-1, 0, 0xf))).toBe('ERR_CONFIG');
    expect(codeOf(() => s.define(4095, 2, 0))).toBe('ERR_CONFIG');
    expect(codeOf(() => s.define(0, 4, 0, { rw: 1, w1c: 1 }))).toBe('ERR_CONFIG');
  });

  it('snapshot is a copy of all 4096 bytes', () => {
    const s = new ConfigSpace();
    s.define(0xffc, 4, 0xdeadbeef);
    const snap = s.snapshot();
    expect(snap.length).toBe(4096);
    expect([...snap.subarray(0xffc)]).toEqual([0xef, 0xbe, 0xad, 0xde]);
    snap[0] = 1;
    expect(s.u8(0)).toBe(0);
  });
});
