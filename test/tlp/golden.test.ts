import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { computeEcrc, decodeTlp, encodeTlp, type Tlp } from '../../src/tlp/index.js';
import { goldenEcrcBytes, goldenEncode, hex } from './golden-builder.js';

const bits = { tc: 0, ido: false, ro: false, ns: false, ln: false, th: false, td: false, ep: false, at: 0 };

/** Hand-written samples of every kind, exercising each field with non-trivial values. */
const SAMPLES: readonly Tlp[] = [
  { kind: 'MRd', ...bits, tc: 1, lengthDw: 64, requesterId: 37219, tag: 59, firstBe: 15, lastBe: 15, addressHi: 0, addressLo: 0x167124c8, ph: 0 },
  { kind: 'MRd', ...bits, lengthDw: 1, requesterId: 0x0100, tag: 0x3ff, firstBe: 0, lastBe: 0, addressHi: 0, addressLo: 0xfee00000, ph: 0 },
  { kind: 'MRd', ...bits, th: true, lengthDw: 3, requesterId: 0x0008, tag: 0x2a5, firstBe: 0x5a & 0xf, lastBe: 0x5, addressHi: 0, addressLo: 0x1000, ph: 2 },
  { kind: 'MRd64', ...bits, ido: true, ro: true, ns: true, at: 2, lengthDw: 1024, requesterId: 0xbeef, tag: 0x1ff, firstBe: 0xf, lastBe: 0xf, addressHi: 0x12345678, addressLo: 0x9abcd000, ph: 3 },
  { kind: 'MRdLk', ...bits, lengthDw: 2, requesterId: 1, tag: 2, firstBe: 0b1010, lastBe: 0b0101, addressHi: 0, addressLo: 0x2000, ph: 0 },
  { kind: 'MRdLk64', ...bits, lengthDw: 4, requesterId: 1, tag: 0x100, firstBe: 0b1100, lastBe: 0b0011, addressHi: 1, addressLo: 0xff0, ph: 1 },
  { kind: 'MWr', ...bits, ln: true, ep: true, lengthDw: 1, requesterId: 0x0200, tag: 0, firstBe: 0b1001, lastBe: 0, addressHi: 0, addressLo: 0xfee01004, ph: 0, data: hex('11223344') },
  { kind: 'MWr64', ...bits, tc: 7, td: true, lengthDw: 2, requesterId: 0x0300, tag: 0x55, firstBe: 0xf, lastBe: 0xf, addressHi: 0xffffffff, addressLo: 0xfffffff8, ph: 0, data: hex('0102030405060708') },
  { kind: 'IORd', ...bits, lengthDw: 1, requesterId: 0x0000, tag: 7, firstBe: 0b0011, lastBe: 0, addressHi: 0, addressLo: 0xcf8, ph: 0 },
  { kind: 'IOWr', ...bits, td: true, lengthDw: 1, requesterId: 0x0000, tag: 8, firstBe: 0b1111, lastBe: 0, addressHi: 0, addressLo: 0xcfc, ph: 0, data: hex('80000000') },
  { kind: 'CfgRd0', ...bits, lengthDw: 1, requesterId: 0, tag: 1, firstBe: 0xf, lastBe: 0, bus: 1, device: 0, function: 0, register: 0 },
  { kind: 'CfgWr0', ...bits, lengthDw: 1, requesterId: 0, tag: 0x3ff, firstBe: 0b0011, lastBe: 0, bus: 0xff, device: 31, function: 7, register: 1023, data: hex('ffffffff') },
  { kind: 'CfgRd1', ...bits, td: true, ido: true, lengthDw: 1, requesterId: 0x0010, tag: 3, firstBe: 0xf, lastBe: 0, bus: 2, device: 3, function: 4, register: 0x1a5, reserved: 0xf003 },
  { kind: 'CfgWr1', ...bits, lengthDw: 1, requesterId: 0x0010, tag: 4, firstBe: 0xf, lastBe: 0, bus: 5, device: 17, function: 2, register: 64, data: hex('deadbeef') },
  { kind: 'Cpl', ...bits, lengthDw: 0, completerId: 0x0100, status: 'UR', bcm: false, byteCount: 4, requesterId: 0, tag: 1, lowerAddress: 0 },
  { kind: 'CplD', ...bits, tc: 1, lengthDw: 1, completerId: 0x0100, status: 'SC', bcm: true, byteCount: 4096, requesterId: 37219, tag: 0x33b, lowerAddress: 0x48, data: hex('cafef00d') },
  { kind: 'CplLk', ...bits, lengthDw: 5, completerId: 1, status: 'CA', bcm: false, byteCount: 1, requesterId: 2, tag: 3, lowerAddress: 127, reserved: 0x80 },
  { kind: 'CplDLk', ...bits, td: true, lengthDw: 2, completerId: 1, status: 'CRS', bcm: false, byteCount: 4095, requesterId: 2, tag: 3, lowerAddress: 4, data: hex('0011223344556677') },
  { kind: 'Msg', ...bits, lengthDw: 0, requesterId: 0x0100, tag: 0, routing: 4, messageCode: 0x20, headerDw2: 0, headerDw3: 0 },
  { kind: 'Msg', ...bits, tc: 3, lengthDw: 0, requesterId: 0x0100, tag: 0x200, routing: 2, messageCode: 0x7f, headerDw2: 0x02000001, headerDw3: 0x08000000 },
  { kind: 'Msg', ...bits, lengthDw: 0, requesterId: 0x0100, tag: 0, routing: 7, messageCode: 0x99, headerDw2: 1, headerDw3: 2 },
  { kind: 'MsgD', ...bits, lengthDw: 1, requesterId: 0x0000, tag: 0, routing: 4, messageCode: 0x50, headerDw2: 0, headerDw3: 0, data: hex('000000fa') },
  { kind: 'FetchAdd', ...bits, lengthDw: 1, requesterId: 1, tag: 2, firstBe: 0, lastBe: 0, addressHi: 0, addressLo: 0x1004, ph: 0, data: hex('01000000') },
  { kind: 'FetchAdd64', ...bits, th: true, lengthDw: 2, requesterId: 1, tag: 2, firstBe: 0xa, lastBe: 0x5, addressHi: 7, addressLo: 0x1008, ph: 1, data: hex('0100000000000000') },
  { kind: 'Swap', ...bits, lengthDw: 2, requesterId: 1, tag: 2, firstBe: 0, lastBe: 0, addressHi: 0, addressLo: 0x2008, ph: 0, data: hex('0102030405060708') },
  { kind: 'Swap64', ...bits, lengthDw: 1, requesterId: 1, tag: 2, firstBe: 0, lastBe: 0, addressHi: 1, addressLo: 0x4, ph: 0, data: hex('aabbccdd') },
  { kind: 'CAS', ...bits, lengthDw: 8, requesterId: 1, tag: 2, firstBe: 0, lastBe: 0, addressHi: 0, addressLo: 0x3010, ph: 0, data: new Uint8Array(32).map((_, i) => i) },
  { kind: 'CAS64', ...bits, td: true, lengthDw: 4, requesterId: 1, tag: 2, firstBe: 0, lastBe: 0, addressHi: 0x80000000, addressLo: 0x8, ph: 0, data: new Uint8Array(16).map((_, i) => 255 - i) },
];

describe('golden: encodeTlp and decodeTlp agree with the independent spec-figure builder', () => {
  it('covers every TLP kind', () => {
    const kinds = new Set(SAMPLES.map((t) => t.kind));
    expect(kinds.size).toBe(24);
  });

  for (const t of SAMPLES) {
    it(`${t.kind} ${t.kind.startsWith('Msg') ? `code 0x${(t as { messageCode: number }).messageCode.toString(16)}` : ''}`, () => {
      const golden = goldenEncode(t);
      expect(encodeTlp(t)).toEqual(golden);
      const decoded = decodeTlp(golden);
      // decodeTlp fills in the digest it read; the sample otherwise round-trips exactly.
      const expected = t.td ? { ...t, ecrc: decoded.ecrc } : t;
      expect(decoded).toEqual(expected);
      if (t.td) {
        const digest = golden.subarray(-4);
        expect(decoded.ecrc).toBe(((digest[0]! << 24) | (digest[1]! << 16) | (digest[2]! << 8) | digest[3]!) >>> 0);
      }
    });
  }
});

describe('golden: hand-written hex vectors', () => {
  it('SPEC-FACTS example: MRd, TC1, 64 DW, requester 0x9163, tag 0x3b', () => {
    const t = decodeTlp(hex('00100040 91633bff 167124c8'));
    expect(t).toMatchObject({ kind: 'MRd', tc: 1, lengthDw: 64, requesterId: 37219, tag: 59, firstBe: 15, lastBe: 15, addressHi: 0, addressLo: 0x167124c8, ph: 0 });
  });

  it('CfgRd0 to 01:00.0 register 0 from 00:00.0 tag 1', () => {
    // Fmt 000 Type 00100 | TC0 | Length 1; Requester 0000, Tag 01, BE 0 / F; Bus 01, Dev 0 Fn 0, Reg 0.
    expect(encodeTlp({ kind: 'CfgRd0', ...bits, lengthDw: 1, requesterId: 0, tag: 1, firstBe: 0xf, lastBe: 0, bus: 1, device: 0, function: 0, register: 0 })).toEqual(
      hex('04000001 0000010f 01000000'),
    );
  });

  it('CfgWr0 extended register 0x100 (byte offset 0x400): ext reg in byte 10, reg in byte 11 bits 7:2', () => {
    const t = decodeTlp(hex('44000001 0000020f 00080100 78563412'));
    expect(t).toMatchObject({ kind: 'CfgWr0', bus: 0, device: 1, function: 0, register: 0x40, firstBe: 0xf });
    const ext = decodeTlp(hex('44000001 0000020f 00080100 78563412'.replace('00080100', '00080400')));
    expect(ext).toMatchObject({ register: 0x100 });
  });

  it('Assert_INTA: Msg, local routing 100b, code 0x20', () => {
    expect(decodeTlp(hex('34000000 01000020 00000000 00000000'))).toMatchObject({ kind: 'Msg', routing: 4, messageCode: 0x20, requesterId: 0x0100, lengthDw: 0 });
  });

  it('CplD with 10-bit tag 0x2ff: T9 in byte 1 bit 7, T8 in byte 1 bit 3', () => {
    // Byte 1 = 1000_1000b: T9=1, TC=0, T8=1 → tag bits 9:8 = 11b; byte 10 = 0xff.
    expect(decodeTlp(hex('4a880001 01000004 0000ff00 00000000'))).toMatchObject({ kind: 'CplD', tag: 0x3ff });
    expect(decodeTlp(hex('4a800001 01000004 0000ff00 00000000'))).toMatchObject({ kind: 'CplD', tag: 0x2ff });
  });

  it('byte count 0 means 4096 and length 0 means 1024', () => {
    const cpl = decodeTlp(hex('0a000000 01000000 00000000'));
    expect(cpl).toMatchObject({ kind: 'Cpl', byteCount: 4096, lengthDw: 0 });
    const rd = decodeTlp(hex('00000000 0000 00ff 00000000'));
    expect(rd).toMatchObject({ kind: 'MRd', lengthDw: 1024 });
  });
});

describe('ECRC (§2.7.1)', () => {
  it('matches a digest computed independently with Python zlib.crc32 (variant bits set, little-endian bytes)', () => {
    // MRd above with TD set; CRC input has byte 0 |= 0x01 and byte 2 |= 0x40:
    // zlib.crc32(bytes.fromhex('0110c04091633bff167124c8')) = 0x51103098 → digest bytes 98 30 10 51.
    const wire = hex('00108040 91633bff 167124c8 98301051');
    const t = decodeTlp(wire);
    expect(t.ecrc).toBe(0x98301051);
    expect(computeEcrc(wire, 0, 12)).toBe(0x98301051);
    expect(Array.from(goldenEcrcBytes(wire.subarray(0, 12)))).toEqual([0x98, 0x30, 0x10, 0x51]);
  });

  it('agrees with the bit-serial spec register and with Node zlib.crc32 on random TLP-sized buffers', () => {
    const require = createRequire(import.meta.url);
    const zlib = require('node:zlib') as { crc32?: (data: Uint8Array) => number };
    let seed = 12345;
    const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
    for (let n = 0; n < 200; n++) {
      const len = 12 + 4 * (n % 40);
      const buf = Uint8Array.from({ length: len }, rnd);
      const ours = computeEcrc(buf, 0, len);
      const g = goldenEcrcBytes(buf);
      expect([ours >>> 24, (ours >>> 16) & 0xff, (ours >>> 8) & 0xff, ours & 0xff]).toEqual(g);
      if (zlib.crc32 !== undefined) {
        const v = buf.slice();
        v[0]! |= 0x01;
        v[2]! |= 0x40;
        const z = zlib.crc32(v) >>> 0;
        expect(g).toEqual([z & 0xff, (z >>> 8) & 0xff, (z >>> 16) & 0xff, z >>> 24]);
      }
    }
  });

  it('ignores the variant bits: Type[0] (CfgRd1 → CfgRd0) and EP do not change the ECRC', () => {
    const cfg1 = encodeTlp({ kind: 'CfgRd1', ...bits, td: true, lengthDw: 1, requesterId: 0, tag: 1, firstBe: 0xf, lastBe: 0, bus: 1, device: 0, function: 0, register: 0 });
    const cfg0 = encodeTlp({ kind: 'CfgRd0', ...bits, td: true, lengthDw: 1, requesterId: 0, tag: 1, firstBe: 0xf, lastBe: 0, bus: 1, device: 0, function: 0, register: 0 });
    expect(cfg1.subarray(12)).toEqual(cfg0.subarray(12));
    // A switch converting Type 1 to Type 0 keeps the digest valid.
    expect(decodeTlp(cfg0).kind).toBe('CfgRd0');
    const flipped = cfg1.slice();
    flipped[0] = cfg0[0]!;
    expect(decodeTlp(flipped).kind).toBe('CfgRd0');
    const poisoned = flipped.slice();
    poisoned[2]! |= 0x40; // EP
    expect(decodeTlp(poisoned).ep).toBe(true);
    // Any invariant bit does matter.
    const bad = flipped.slice();
    bad[5]! ^= 0x01;
    expect(() => decodeTlp(bad)).toThrow(expect.objectContaining({ code: 'ERR_TLP_ECRC', offset: 12 }));
  });
});
