/**
 * An independent TLP builder for golden tests: each header DW is a list of [widthBits, value]
 * fields copied from the header figures of the PCIe Base Specification (non-flit mode, bit 31
 * first), and the ECRC is a bit-serial register written from the text of §2.7.1. It shares no
 * code or constants with src/tlp, so the encoder under test cannot agree with it by accident.
 */
import type { Tlp } from '../../src/tlp/index.js';

export type Field = readonly [widthBits: number, value: number];

/** Packs MSB-first fields (summing to 32 bits) into 4 big-endian bytes. */
export function packDw(fields: readonly Field[]): number[] {
  let width = 0;
  let v = 0;
  for (const [w, x] of fields) {
    if (!Number.isInteger(x) || x < 0 || x >= 2 ** w) throw new RangeError(`value ${x} does not fit ${w} bits`);
    v = v * 2 ** w + x;
    width += w;
  }
  if (width !== 32) throw new RangeError(`fields add up to ${width} bits, not 32`);
  return [Math.floor(v / 2 ** 24) % 256, Math.floor(v / 2 ** 16) % 256, Math.floor(v / 2 ** 8) % 256, v % 256];
}

/**
 * §2.7.1 literally: a 32-bit register seeded with all ones, polynomial 04C1_1DB7h, fed bit 0
 * to bit 7 of each byte, with Type[0] (byte 0 bit 0) and EP (byte 2 bit 6) taken as 1; the
 * complemented result bit n goes to bit position (n & ~7) + 7 − (n & 7) of the digest field
 * (Table 2-55). Returns the digest's 4 wire bytes (field bits 31:24 first).
 */
export function goldenEcrcBytes(tlp: Uint8Array): number[] {
  let reg = 0xffffffff;
  tlp.forEach((byte, i) => {
    let b = byte;
    if (i === 0) b |= 0b0000_0001;
    if (i === 2) b |= 0b0100_0000;
    for (let bit = 0; bit < 8; bit++) {
      const feedback = ((reg >>> 31) & 1) ^ ((b >> bit) & 1);
      reg = (reg << 1) >>> 0;
      if (feedback) reg = (reg ^ 0x04c11db7) >>> 0;
    }
  });
  const result = ~reg >>> 0;
  let field = 0;
  for (let n = 0; n < 32; n++) {
    const pos = (n & ~7) + 7 - (n & 7);
    if ((result >>> n) & 1) field += 2 ** pos;
  }
  return [Math.floor(field / 2 ** 24) % 256, Math.floor(field / 2 ** 16) % 256, Math.floor(field / 2 ** 8) % 256, field % 256];
}

/** Table 2-3, typed in by hand: [Fmt, Type] per kind (messages: Type 10rrr). */
const FMT_TYPE: Readonly<Record<Tlp['kind'], readonly [number, number]>> = {
  MRd: [0b000, 0b00000],
  MRd64: [0b001, 0b00000],
  MRdLk: [0b000, 0b00001],
  MRdLk64: [0b001, 0b00001],
  MWr: [0b010, 0b00000],
  MWr64: [0b011, 0b00000],
  IORd: [0b000, 0b00010],
  IOWr: [0b010, 0b00010],
  CfgRd0: [0b000, 0b00100],
  CfgWr0: [0b010, 0b00100],
  CfgRd1: [0b000, 0b00101],
  CfgWr1: [0b010, 0b00101],
  Cpl: [0b000, 0b01010],
  CplD: [0b010, 0b01010],
  CplLk: [0b000, 0b01011],
  CplDLk: [0b010, 0b01011],
  Msg: [0b001, 0b10000],
  MsgD: [0b011, 0b10000],
  FetchAdd: [0b010, 0b01100],
  FetchAdd64: [0b011, 0b01100],
  Swap: [0b010, 0b01101],
  Swap64: [0b011, 0b01101],
  CAS: [0b010, 0b01110],
  CAS64: [0b011, 0b01110],
};

const STATUS_CODE = { SC: 0b000, UR: 0b001, CRS: 0b010, CA: 0b100 } as const;

const b = (x: boolean): number => (x ? 1 : 0);

/** Figure 2-5: the first DW of every non-flit-mode TLP. */
function dw0(t: Tlp, type: number, fmt: number): Field[] {
  return [
    [3, fmt],
    [5, type],
    [1, (t.tag >> 9) & 1], // T9
    [3, t.tc],
    [1, (t.tag >> 8) & 1], // T8
    [1, b(t.ido)], // Attr[2]
    [1, b(t.ln)], // R (formerly LN)
    [1, b(t.th)],
    [1, b(t.td)],
    [1, b(t.ep)],
    [1, b(t.ro)], // Attr[1]
    [1, b(t.ns)], // Attr[0]
    [2, t.at],
    [10, t.lengthDw % 1024], // 1024 DW is encoded as 0
  ];
}

/** The header DWs of `t` as field lists, straight from the spec's header figures. */
export function goldenHeader(t: Tlp): Field[][] {
  const [fmt, baseType] = FMT_TYPE[t.kind];
  switch (t.kind) {
    case 'Cpl':
    case 'CplD':
    case 'CplLk':
    case 'CplDLk':
      // Figure 2-79.
      return [
        dw0(t, baseType, fmt),
        [[16, t.completerId], [3, STATUS_CODE[t.status]], [1, b(t.bcm)], [12, t.byteCount % 4096]],
        [[16, t.requesterId], [8, t.tag & 0xff], [1, t.reserved === undefined ? 0 : 1], [7, t.lowerAddress]],
      ];
    case 'Msg':
    case 'MsgD':
      // Figure 2-49.
      return [
        dw0(t, baseType + t.routing, fmt),
        [[16, t.requesterId], [8, t.tag & 0xff], [8, t.messageCode]],
        [[32, t.headerDw2]],
        [[32, t.headerDw3]],
      ];
    case 'CfgRd0':
    case 'CfgWr0':
    case 'CfgRd1':
    case 'CfgWr1': {
      // Figure 2-39.
      const r = t.reserved ?? 0;
      return [
        dw0(t, baseType, fmt),
        [[16, t.requesterId], [8, t.tag & 0xff], [4, t.lastBe], [4, t.firstBe]],
        [[8, t.bus], [5, t.device], [3, t.function], [4, (r >>> 12) & 0xf], [4, t.register >> 6], [6, t.register & 0x3f], [2, r & 3]],
      ];
    }
    default: {
      // Figures 2-36/2-37 (memory, AtomicOp) and 2-38 (I/O): address bits 1:0 carry PH.
      const dw1: Field[] = [[16, t.requesterId], [8, t.tag & 0xff], [4, t.lastBe], [4, t.firstBe]];
      const low: Field[] = [[30, t.addressLo / 4], [2, t.ph]];
      return fmt & 1 ? [dw0(t, baseType, fmt), dw1, [[32, t.addressHi]], low] : [dw0(t, baseType, fmt), dw1, low];
    }
  }
}

/** The complete wire bytes: header, payload, and the digest (t.ecrc if given, else computed). */
export function goldenEncode(t: Tlp): Uint8Array {
  const bytes: number[] = [];
  for (const dw of goldenHeader(t)) bytes.push(...packDw(dw));
  if (t.data !== undefined) bytes.push(...t.data);
  if (t.td) {
    bytes.push(...(t.ecrc === undefined ? goldenEcrcBytes(Uint8Array.from(bytes)) : packDw([[32, t.ecrc]])));
  }
  return Uint8Array.from(bytes);
}

/** The ECRC of `t` as the big-endian digest DW value (what decodeTlp puts in `ecrc`). */
export function goldenEcrcValue(t: Tlp): number {
  const withoutDigest = goldenEncode({ ...t, td: true, ecrc: 0 } as Tlp).subarray(0, -4);
  const [a, b1, c, d] = goldenEcrcBytes(withoutDigest) as [number, number, number, number];
  return ((a << 24) | (b1 << 16) | (c << 8) | d) >>> 0;
}

/** Hex helper for readable vectors in tests: spaces allowed. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
}
