import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import { decodeTlp, encodeTlp, tlpWireLength, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { goldenEncode, hex } from './golden-builder.js';

const bits = { tc: 0, ido: false, ro: false, ns: false, ln: false, th: false, td: false, ep: false, at: 0 };

function mrd(over: Partial<MemTlp>): MemTlp {
  return { kind: 'MRd', ...bits, lengthDw: 1, requesterId: 0x100, tag: 1, firstBe: 0xf, lastBe: 0, addressHi: 0, addressLo: 0x1000, ph: 0, ...over };
}

function mwr(over: Partial<MemTlp>): MemTlp {
  const lengthDw = over.lengthDw ?? 1;
  return { kind: 'MWr', ...bits, lengthDw, requesterId: 0x100, tag: 0, firstBe: 0xf, lastBe: lengthDw > 1 ? 0xf : 0, addressHi: 0, addressLo: 0x1000, ph: 0, data: new Uint8Array(lengthDw * 4), ...over };
}

/** Decoding the golden bytes of `t` throws `code` at `offset`. */
function expectDecodeError(bytes: Uint8Array, code: string, offset?: number): TlpwireError {
  try {
    decodeTlp(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(TlpwireError);
    const err = e as TlpwireError;
    expect(err.code).toBe(code);
    if (offset !== undefined) expect(err.offset).toBe(offset);
    return err;
  }
  throw new Error(`expected ${code}`);
}

function expectBoth(t: Tlp, code: string, offset: number): void {
  expectDecodeError(goldenEncode(t), code, offset);
  expect(() => encodeTlp(t)).toThrow(expect.objectContaining({ code, offset }));
}

describe('decodeTlp: sizes', () => {
  it('rejects fewer than 4 bytes and a short header as ERR_TLP_TRUNCATED at the end of the input', () => {
    expectDecodeError(new Uint8Array(0), 'ERR_TLP_TRUNCATED', 0);
    expectDecodeError(hex('000000'), 'ERR_TLP_TRUNCATED', 3);
    expectDecodeError(hex('00000001 00000000 0000'), 'ERR_TLP_TRUNCATED', 10);
    expectDecodeError(hex('20000001 00000000 00000001'), 'ERR_TLP_TRUNCATED', 12); // MRd64 has a 16-byte header
  });

  it('rejects a payload that disagrees with Length (both ways) as ERR_TLP_LENGTH at the Length field', () => {
    const good = goldenEncode(mwr({ lengthDw: 2, addressLo: 0x1000 }));
    expectDecodeError(good.subarray(0, good.length - 4), 'ERR_TLP_LENGTH', 2);
    const longer = new Uint8Array(good.length + 4);
    longer.set(good);
    expectDecodeError(longer, 'ERR_TLP_LENGTH', 2);
    // A read carries no payload whatever its Length.
    expectDecodeError(hex('00000010 00000fff 00001000 00000000'), 'ERR_TLP_LENGTH', 2);
  });

  it('rejects TD set without a digest (or a digest without TD) as ERR_TLP_LENGTH', () => {
    const t = goldenEncode(mrd({}));
    const td = t.slice();
    td[2]! |= 0x80;
    expectDecodeError(td, 'ERR_TLP_LENGTH', 2);
    const extra = new Uint8Array(16);
    extra.set(t);
    expectDecodeError(extra, 'ERR_TLP_LENGTH', 2);
  });

  it('decodes a TLP inside a larger buffer at an offset, reporting offsets in that buffer', () => {
    const t = goldenEncode(mwr({ lengthDw: 1 }));
    const buf = new Uint8Array(100);
    buf.set(t, 40);
    expect(decodeTlp(buf, 40, t.length).kind).toBe('MWr');
    buf[40 + 7] = 0xff; // lastBe on a 1-DW request
    expect(() => decodeTlp(buf, 40, t.length)).toThrow(expect.objectContaining({ code: 'ERR_TLP_BYTE_ENABLES', offset: 47 }));
    expect(() => decodeTlp(buf, 90, 20)).toThrow(expect.objectContaining({ code: 'ERR_TLP_TRUNCATED' }));
  });

  it('tlpWireLength reads the size a TLP announces', () => {
    expect(tlpWireLength(goldenEncode(mwr({ lengthDw: 3, firstBe: 0xf, lastBe: 0xf })))).toBe(12 + 12);
    expect(tlpWireLength(hex('60008002'))).toBe(16 + 8 + 4);
    expect(tlpWireLength(hex('40000000'))).toBe(12 + 4096);
    expect(() => tlpWireLength(hex('4000'))).toThrow(expect.objectContaining({ code: 'ERR_TLP_TRUNCATED' }));
    expect(() => tlpWireLength(hex('90000000'))).toThrow(expect.objectContaining({ code: 'ERR_TLP_RESERVED' }));
  });
});

describe('decodeTlp: Fmt/Type', () => {
  it('rejects TLP prefixes (Fmt=100b) clearly', () => {
    const err = expectDecodeError(hex('90000000 00000000 00000000 00000000'), 'ERR_TLP_RESERVED', 0);
    expect(err.message).toMatch(/prefix/i);
  });

  it('rejects reserved Fmt values and reserved Fmt/Type combinations', () => {
    for (const b0 of [0xa0, 0xc0, 0xe0]) expectDecodeError(Uint8Array.from([b0, 0, 0, 0, ...new Array<number>(12).fill(0)]), 'ERR_TLP_RESERVED', 0);
    const reserved = [
      0x03, // Fmt 000 Type 00011
      0x06, 0x07, 0x08, 0x09,
      0x0c, // FetchAdd without data
      0x2a, // Cpl with a 4DW header
      0x6a, // CplD 4DW
      0x24, // Cfg with a 4DW header
      0x62, // IOWr 4DW
      0x1b, // deprecated TCfgRd
      0x10, // Msg with a 3DW header
      0x50, // MsgD with a 3DW header
      0x0f, 0x1f,
    ];
    for (const b0 of reserved) expectDecodeError(Uint8Array.from([b0, 0, 0, 1, ...new Array<number>(16).fill(0)]), 'ERR_TLP_RESERVED', 0);
  });

  it('says DMWr is not supported', () => {
    expect(expectDecodeError(hex('5b000001 00000000 00000000 00000000'), 'ERR_TLP_RESERVED', 0).message).toMatch(/DMWr/);
  });

  it('accepts all eight message routings (110b/111b are Reserved routings that terminate at the receiver)', () => {
    for (let r = 0; r < 8; r++) {
      const t = decodeTlp(Uint8Array.from([0x30 | r, 0, 0, 0, 0, 0, 0, 0x7f, ...new Array<number>(8).fill(0)]));
      expect(t).toMatchObject({ kind: 'Msg', routing: r, messageCode: 0x7f });
    }
  });
});

describe('byte enables (§2.2.5.1)', () => {
  it('allows a zero-length read and a zero-length write (1 DW, firstBe 0)', () => {
    expect(decodeTlp(goldenEncode(mrd({ firstBe: 0 })))).toMatchObject({ kind: 'MRd', lengthDw: 1, firstBe: 0, lastBe: 0 });
    expect(decodeTlp(goldenEncode(mwr({ firstBe: 0 })))).toMatchObject({ kind: 'MWr', firstBe: 0 });
  });

  it('allows non-contiguous First BE on a 1-DW request', () => {
    for (const be of [0b1010, 0b0101, 0b1001, 0b1011, 0b1101]) expect(decodeTlp(goldenEncode(mrd({ firstBe: be })))).toMatchObject({ firstBe: be });
  });

  it('requires lastBe 0 for 1 DW, and non-zero first and last BE beyond 1 DW', () => {
    expectBoth(mrd({ lastBe: 0xf }), 'ERR_TLP_BYTE_ENABLES', 7);
    expectBoth(mrd({ lengthDw: 2, firstBe: 0, lastBe: 0xf }), 'ERR_TLP_BYTE_ENABLES', 7);
    expectBoth(mrd({ lengthDw: 2, firstBe: 0xf, lastBe: 0 }), 'ERR_TLP_BYTE_ENABLES', 7);
  });

  it('allows non-contiguous BEs only for a QW-aligned 2-DW request', () => {
    expect(decodeTlp(goldenEncode(mwr({ lengthDw: 2, addressLo: 0x1008, firstBe: 0b0101, lastBe: 0b1010 })))).toMatchObject({ firstBe: 0b0101 });
    expectBoth(mwr({ lengthDw: 2, addressLo: 0x1004, firstBe: 0b0101, lastBe: 0b1111 }), 'ERR_TLP_BYTE_ENABLES', 7);
    expectBoth(mwr({ lengthDw: 2, addressLo: 0x1004, firstBe: 0b1111, lastBe: 0b1110 }), 'ERR_TLP_BYTE_ENABLES', 7);
    expect(decodeTlp(goldenEncode(mwr({ lengthDw: 2, addressLo: 0x1004, firstBe: 0b1100, lastBe: 0b0111 })))).toMatchObject({ lastBe: 0b0111 });
  });

  it('requires contiguous BEs for 3 DW and more', () => {
    expect(decodeTlp(goldenEncode(mrd({ lengthDw: 3, firstBe: 0b1000, lastBe: 0b0001 })))).toMatchObject({ lengthDw: 3 });
    expectBoth(mrd({ lengthDw: 3, firstBe: 0b0111, lastBe: 0b1111 }), 'ERR_TLP_BYTE_ENABLES', 7);
    expectBoth(mrd({ lengthDw: 3, firstBe: 0b1111, lastBe: 0b1000 }), 'ERR_TLP_BYTE_ENABLES', 7);
    expectBoth(mrd({ lengthDw: 8, addressLo: 0x1000, firstBe: 0b1010, lastBe: 0b0101 }), 'ERR_TLP_BYTE_ENABLES', 7);
  });

  it('does not apply BE rules to a read with TH set (the BE byte carries ST[7:0])', () => {
    expect(decodeTlp(goldenEncode(mrd({ th: true, lengthDw: 1, firstBe: 0x5, lastBe: 0xa })))).toMatchObject({ lastBe: 0xa });
    expect(decodeTlp(goldenEncode(mrd({ th: true, lengthDw: 4, firstBe: 0, lastBe: 0 })))).toMatchObject({ firstBe: 0 });
    // A write with TH carries ST in the Tag field: its BEs are still checked.
    expectBoth(mwr({ th: true, lengthDw: 1, lastBe: 1 }), 'ERR_TLP_BYTE_ENABLES', 7);
  });
});

describe('4 KB boundary (§2.2.7.1)', () => {
  it('rejects memory requests that cross a 4 KB page, at the address field', () => {
    expectBoth(mrd({ lengthDw: 2, addressLo: 0x1ffc, firstBe: 0xf, lastBe: 0xf }), 'ERR_TLP_4K_CROSSING', 8);
    expectBoth(mrd({ kind: 'MRd64', lengthDw: 1024, addressHi: 1, addressLo: 0x4, firstBe: 0xf, lastBe: 0xf }), 'ERR_TLP_4K_CROSSING', 12);
    expectBoth(mwr({ lengthDw: 3, addressLo: 0xff8 }), 'ERR_TLP_4K_CROSSING', 8);
  });

  it('accepts requests that end exactly on the boundary, including 1024 DW from a page start', () => {
    expect(decodeTlp(goldenEncode(mrd({ lengthDw: 2, addressLo: 0x1ff8, firstBe: 0xf, lastBe: 0xf })))).toMatchObject({ addressLo: 0x1ff8 });
    expect(decodeTlp(goldenEncode(mrd({ lengthDw: 1024, addressLo: 0x3000, firstBe: 0xf, lastBe: 0xf })))).toMatchObject({ lengthDw: 1024 });
  });
});

describe('I/O and configuration restrictions (§2.2.7.1)', () => {
  const cfg = { kind: 'CfgRd0' as const, ...bits, lengthDw: 1, requesterId: 0, tag: 0, firstBe: 0xf, lastBe: 0, bus: 0, device: 0, function: 0, register: 0 };
  const io = { kind: 'IORd' as const, ...bits, lengthDw: 1, requesterId: 0, tag: 0, firstBe: 0xf, lastBe: 0, addressHi: 0, addressLo: 0x60, ph: 0 };

  it('require Length 1 and Last BE 0', () => {
    expectBoth({ ...cfg, lengthDw: 2 }, 'ERR_TLP_LENGTH', 2);
    expectBoth({ ...cfg, lastBe: 1 }, 'ERR_TLP_BYTE_ENABLES', 7);
    expectBoth({ ...io, lengthDw: 2 }, 'ERR_TLP_LENGTH', 2);
    expectBoth({ ...io, lastBe: 8 }, 'ERR_TLP_BYTE_ENABLES', 7);
  });

  it('require TC0 and Attr[1:0] clear, but do not check the Reserved IDO, TH or the AT field', () => {
    expectBoth({ ...cfg, tc: 1 }, 'ERR_TLP_FIELD', 1);
    expectBoth({ ...cfg, ro: true }, 'ERR_TLP_FIELD', 2);
    expectBoth({ ...io, ns: true }, 'ERR_TLP_FIELD', 2);
    expect(decodeTlp(goldenEncode({ ...cfg, ido: true, th: true, at: 1 }))).toMatchObject({ ido: true, th: true, at: 1 });
  });

  it('keep reserved configuration DW2 bits so re-encoding is exact', () => {
    const wire = hex('04000001 0000010f 0100f003');
    const t = decodeTlp(wire);
    expect(t).toMatchObject({ kind: 'CfgRd0', bus: 1, register: 0, reserved: 0xf003 });
    expect(encodeTlp(t)).toEqual(wire);
  });
});

describe('AtomicOps (§2.2.7.1 Table 2-15)', () => {
  const fa = { kind: 'FetchAdd' as const, ...bits, lengthDw: 1, requesterId: 1, tag: 1, firstBe: 0, lastBe: 0, addressHi: 0, addressLo: 0x100, ph: 0, data: new Uint8Array(4) };

  it('accept only architected operand sizes', () => {
    expectBoth({ ...fa, lengthDw: 4, data: new Uint8Array(16) }, 'ERR_TLP_LENGTH', 2);
    expectBoth({ ...fa, kind: 'CAS', lengthDw: 1, data: new Uint8Array(4) }, 'ERR_TLP_LENGTH', 2);
    expectBoth({ ...fa, kind: 'CAS', lengthDw: 3, data: new Uint8Array(12) }, 'ERR_TLP_LENGTH', 2);
    expect(decodeTlp(goldenEncode({ ...fa, kind: 'CAS', lengthDw: 8, addressLo: 0x110, data: new Uint8Array(32) }))).toMatchObject({ lengthDw: 8 });
  });

  it('require the address aligned to the operand (CAS: half the payload)', () => {
    expectBoth({ ...fa, lengthDw: 2, addressLo: 0x104, data: new Uint8Array(8) }, 'ERR_TLP_FIELD', 8);
    expectBoth({ ...fa, kind: 'CAS', lengthDw: 8, addressLo: 0x108, data: new Uint8Array(32) }, 'ERR_TLP_FIELD', 8);
    expect(decodeTlp(goldenEncode({ ...fa, kind: 'CAS', lengthDw: 4, addressLo: 0x108, data: new Uint8Array(16) }))).toMatchObject({ addressLo: 0x108 });
  });

  it('do not check the Reserved byte enables', () => {
    expect(decodeTlp(goldenEncode({ ...fa, firstBe: 0xa, lastBe: 0x5 }))).toMatchObject({ firstBe: 0xa });
  });
});

describe('completions (§2.2.9.1)', () => {
  it('rejects a reserved Completion Status as ERR_TLP_RESERVED at byte 6', () => {
    for (const status of [3, 5, 6, 7]) {
      const wire = hex('0a000000 01000004 00000000');
      wire[6] = status << 5;
      expectDecodeError(wire, 'ERR_TLP_RESERVED', 6);
    }
  });

  it('decodes every defined status and keeps a set reserved DW2 bit 7', () => {
    expect(decodeTlp(hex('0a000000 01002004 00000000')).kind).toBe('Cpl');
    expect(decodeTlp(hex('0a000000 01002004 00000000'))).toMatchObject({ status: 'UR' });
    expect(decodeTlp(hex('0a000000 01004004 00000000'))).toMatchObject({ status: 'CRS' });
    expect(decodeTlp(hex('0a000000 01008004 00000000'))).toMatchObject({ status: 'CA' });
    const wire = hex('0a000000 01000004 000001ff');
    expect(decodeTlp(wire)).toMatchObject({ lowerAddress: 0x7f, reserved: 0x80, tag: 1 });
    expect(encodeTlp(decodeTlp(wire))).toEqual(wire);
  });
});

describe('messages (§2.2.8)', () => {
  it('require TC0 for INTx, PM, error, Unlock and Set_Slot_Power_Limit messages', () => {
    const msg = { kind: 'Msg' as const, ...bits, lengthDw: 0, requesterId: 0x100, tag: 0, routing: 4, messageCode: 0x20, headerDw2: 0, headerDw3: 0 };
    expectBoth({ ...msg, tc: 1 }, 'ERR_TLP_FIELD', 1);
    expectBoth({ ...msg, routing: 0, messageCode: 0x30, tc: 2 }, 'ERR_TLP_FIELD', 1);
    expect(decodeTlp(goldenEncode({ ...msg, messageCode: 0x7e, tc: 5 })).tc).toBe(5);
  });
});

describe('ECRC on decode', () => {
  it('rejects a wrong digest at the digest offset; a corrupted header or payload is caught the same way', () => {
    const t = goldenEncode(mwr({ td: true, lengthDw: 2, firstBe: 0xf, lastBe: 0xf }));
    expect(decodeTlp(t).ecrc).toBeDefined();
    for (const at of [3, 9, 13, 17, 20]) {
      const bad = t.slice();
      bad[at]! ^= 0x10;
      const err = expectDecodeError(bad, at === 3 ? 'ERR_TLP_LENGTH' : 'ERR_TLP_ECRC');
      if (err.code === 'ERR_TLP_ECRC') expect(err.offset).toBe(20);
    }
  });
});

describe('zero-copy payloads', () => {
  it('returns data as a view of the input', () => {
    const wire = goldenEncode(mwr({ lengthDw: 1, data: hex('01020304') }));
    const t = decodeTlp(wire);
    expect(t.data?.buffer).toBe(wire.buffer);
    wire[12] = 0xaa;
    expect(t.data?.[0]).toBe(0xaa);
  });
});
