import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import {
  COMPLETION_PARTS_MAX,
  CompletionParts,
  CompletionView,
  MemReadView,
  MemWriteRun,
  MemWriteView,
  encodeTlp,
  encodeMemReadInto,
  memReadTlp,
  parseMemRead,
  type MemReadFields,
  checkCompletionFields,
  checkMemWriteFields,
  completionTlp,
  decodeTlp,
  encodeCompletionDataInto,
  encodeMemWriteInto,
  memWriteTlp,
  parseCompletionData,
  parseMemWrite,
  type CompletionFields,
  type CplTlp,
  type MemTlp,
  type MemWriteFields,
} from '../../src/tlp/index.js';
import { arbMemWriteFields, arbTlpOfKind } from './arbitraries.js';
import { goldenEncode } from './golden-builder.js';

const FOUR_GIB = 0x1_0000_0000;


/** A whole-DW write that does not cross 4 KiB, below or above 4 GiB. */
const arbWrite = fc
  .record({
    page: fc.oneof(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 0x100000, max: 0x1fffffff })),
    dwOffset: fc.integer({ min: 0, max: 1023 }),
    lengthDw: fc.integer({ min: 1, max: 1024 }),
    srcLead: fc.integer({ min: 0, max: 64 }),
  })
  .map(({ page, dwOffset, lengthDw, srcLead }) => {
    const dw = Math.min(lengthDw, 1024 - dwOffset);
    return { address: page * 4096 + dwOffset * 4, length: dw * 4, srcLead };
  });

const arbCompletionFields: fc.Arbitrary<CompletionFields> = fc.record({
  completerId: fc.integer({ min: 0, max: 0xffff }),
  requesterId: fc.integer({ min: 0, max: 0xffff }),
  tag: fc.integer({ min: 0, max: 0x3ff }),
  tc: fc.integer({ min: 0, max: 7 }),
  ro: fc.boolean(),
  ns: fc.boolean(),
  ido: fc.boolean(),
  locked: fc.boolean(),
});

describe('encodeMemWriteInto', () => {
  it('writes the golden bytes of the TLP memWriteTlp makes for the same write, from any offset of the source', () => {
    fc.assert(
      fc.property(arbMemWriteFields, arbWrite, fc.integer({ min: 0, max: 7 }), (f, w, outAt) => {
        const src = new Uint8Array(w.srcLead + w.length + 8).map((_, i) => (i * 31 + 7) & 0xff);
        const out = new Uint8Array(outAt + 16 + w.length + 4).fill(0xee);
        const n = encodeMemWriteInto(out, outAt, f, w.address, src, w.srcLead, w.length);
        const want = goldenEncode(memWriteTlp({ ...f, address: w.address, data: src.slice(w.srcLead, w.srcLead + w.length) }));
        expect(n).toBe(want.length);
        expect(out.subarray(outAt, outAt + n)).toEqual(want);
        expect(out[outAt + n]).toBe(0xee); // nothing written past the TLP
      }),
      { numRuns: 300 },
    );
  });

  it('refuses what memWriteTlp would not make on this path (partial DWs, 4 KiB crossing, bad fields, no room)', () => {
    const f: MemWriteFields = { requesterId: 1, tc: 0, ro: false, ns: false, ido: false, th: false };
    const src = new Uint8Array(8192);
    const out = new Uint8Array(8192);
    const code = (fn: () => void): string | undefined => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(TlpwireError);
        return (e as TlpwireError).code;
      }
      return undefined;
    };
    expect(code(() => encodeMemWriteInto(out, 0, f, 0x1002, src, 0, 8))).toBe('ERR_TLP_FIELD');
    expect(code(() => encodeMemWriteInto(out, 0, f, 0x1000, src, 0, 6))).toBe('ERR_TLP_FIELD');
    expect(code(() => encodeMemWriteInto(out, 0, f, 0x1000, src, 0, 0))).toBe('ERR_TLP_FIELD');
    expect(code(() => encodeMemWriteInto(out, 0, f, 0x1f00, src, 0, 512))).toBe('ERR_TLP_4K_CROSSING');
    expect(code(() => encodeMemWriteInto(out, 8100, f, 0x1000, src, 0, 256))).toBe('ERR_TLP_TRUNCATED');
    expect(code(() => encodeMemWriteInto(out, 0, f, 0x1000, src, 8000, 256))).toBe('ERR_TLP_FIELD');
    expect(code(() => checkMemWriteFields({ ...f, requesterId: 0x10000 }))).toBe('ERR_TLP_FIELD');
    expect(code(() => checkMemWriteFields({ ...f, tc: 8 }))).toBe('ERR_TLP_FIELD');
    expect(code(() => checkMemWriteFields({ ...f, ro: 1 as unknown as boolean }))).toBe('ERR_TLP_FIELD');
    expect(code(() => checkMemWriteFields(f))).toBeUndefined();
  });
});

describe('encodeCompletionDataInto', () => {
  it('writes the golden bytes of the CplD completionTlp makes with the zero-padded payload completionsFor uses', () => {
    fc.assert(
      fc.property(
        arbCompletionFields,
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 4092 }),
        fc.integer({ min: 0, max: 4096 }),
        fc.integer({ min: 0, max: 127 }),
        (f, lead, bytes, extra, lowerAddress) => {
          const payload = (lead + bytes + 3) & ~3;
          const byteCount = Math.min(4096, bytes + extra);
          const src = new Uint8Array(bytes + 9).map((_, i) => (i * 13 + 5) & 0xff);
          const out = new Uint8Array(12 + payload + 4).fill(0xee);
          const n = encodeCompletionDataInto(out, 0, f, byteCount, lowerAddress, src, 9, lead, bytes);
          const data = new Uint8Array(payload);
          data.set(src.subarray(9, 9 + bytes), lead);
          const { locked, ...rest } = f;
          const want = goldenEncode(completionTlp({ ...rest, locked, byteCount, lowerAddress, data }));
          expect(n).toBe(want.length);
          expect(out.subarray(0, n)).toEqual(want);
          expect(out[n]).toBe(0xee);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses bad per-completion values and bad fields', () => {
    const f: CompletionFields = { completerId: 0, requesterId: 1, tag: 5, tc: 0, ro: false, ns: false, ido: false, locked: false };
    const src = new Uint8Array(4096);
    const out = new Uint8Array(8192);
    expect(() => encodeCompletionDataInto(out, 0, f, 0, 0, src, 0, 0, 4)).toThrow(TlpwireError);
    expect(() => encodeCompletionDataInto(out, 0, f, 4097, 0, src, 0, 0, 4)).toThrow(TlpwireError);
    expect(() => encodeCompletionDataInto(out, 0, f, 4, 128, src, 0, 0, 4)).toThrow(TlpwireError);
    expect(() => encodeCompletionDataInto(out, 0, f, 4, 0, src, 0, 4, 4)).toThrow(TlpwireError);
    expect(() => encodeCompletionDataInto(out, 0, f, 4096, 0, src, 0, 1, 4096)).toThrow(TlpwireError);
    expect(() => checkCompletionFields({ ...f, tag: 1024 })).toThrow(TlpwireError);
    expect(() => checkCompletionFields({ ...f, completerId: -1 })).toThrow(TlpwireError);
    for (const k of ['ro', 'ns', 'ido', 'locked'] as const) {
      expect(() => checkCompletionFields({ ...f, [k]: 1 } as unknown as CompletionFields)).toThrow(new RegExp(`${k} must be a boolean`));
    }
    expect(() => checkCompletionFields(f)).not.toThrow();
  });
});

/** The header fields a fast parser's view shares with the decoded TLP. */
const HEADER_FIELDS = ['requesterId', 'tag', 'tc', 'ido', 'ro', 'ns', 'ln', 'at', 'lengthDw', 'firstBe', 'lastBe', 'addressHi', 'addressLo', 'ph'] as const;

function headerOf(x: object): Record<string, unknown> {
  return Object.fromEntries(HEADER_FIELDS.map((k) => [k, (x as Record<string, unknown>)[k]]));
}

/** decodeTlp's answer for the bytes, or undefined when it throws. */
function decoded(bytes: Uint8Array): MemTlp | CplTlp | undefined {
  try {
    return decodeTlp(bytes) as MemTlp | CplTlp;
  } catch {
    return undefined;
  }
}

/** Mutations that keep the kind (byte 0) but may break anything else. */
function mutate(bytes: Uint8Array, flips: readonly { at: number; xor: number }[], cut: number): Uint8Array {
  const b = bytes.slice(0, Math.max(1, bytes.length - cut));
  for (const { at, xor } of flips) if (at >= 1 && at < b.length) b[at] = b[at]! ^ xor;
  return b;
}

const arbFlips = fc.array(fc.record({ at: fc.integer({ min: 1, max: 24 }), xor: fc.integer({ min: 1, max: 255 }) }), { maxLength: 3 });

describe('parseMemWrite', () => {
  it('accepts an MWr/MWr64 without digest exactly when decodeTlp does, with the same fields', () => {
    fc.assert(
      fc.property(fc.oneof(arbTlpOfKind('MWr'), arbTlpOfKind('MWr64')), arbFlips, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 5 }), (t, flips, cut, at) => {
        const clean = goldenEncode(t);
        const bytes = flips.length === 0 && cut === 0 ? clean : mutate(clean, flips, cut * 4);
        const buf = new Uint8Array(at + bytes.length + 3);
        buf.set(bytes, at);
        const v = new MemWriteView();
        const ok = parseMemWrite(buf, at, bytes.length, v);
        const d = decoded(bytes) as MemTlp | undefined;
        const fastCase = d !== undefined && !d.td && (d.kind === 'MWr' || d.kind === 'MWr64');
        expect(ok).toBe(fastCase);
        if (!ok || d === undefined) return;
        expect({ kind: v.wide ? 'MWr64' : 'MWr', th: v.th, ep: v.ep, ...headerOf(v) }).toEqual({ kind: d.kind, th: d.th, ep: d.ep, ...headerOf(d) });
        expect(buf.subarray(v.dataOffset, v.dataOffset + v.dataLength)).toEqual(d.data);
      }),
      { numRuns: 1000 },
    );
  });

  it('declines every other kind', () => {
    fc.assert(
      fc.property(fc.oneof(arbTlpOfKind('MRd'), arbTlpOfKind('CplD'), arbTlpOfKind('MsgD'), arbTlpOfKind('CfgWr0')), (t) => {
        const b = goldenEncode(t);
        expect(parseMemWrite(b, 0, b.length, new MemWriteView())).toBe(false);
      }),
    );
  });
});

describe('parseCompletionData', () => {
  it('accepts a CplD/CplDLk without digest exactly when decodeTlp does, with the same fields', () => {
    fc.assert(
      fc.property(fc.oneof(arbTlpOfKind('CplD'), arbTlpOfKind('CplDLk')), arbFlips, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 5 }), (t, flips, cut, at) => {
        const clean = goldenEncode(t);
        const bytes = flips.length === 0 && cut === 0 ? clean : mutate(clean, flips, cut * 4);
        const buf = new Uint8Array(at + bytes.length + 3);
        buf.set(bytes, at);
        const v = new CompletionView();
        const ok = parseCompletionData(buf, at, bytes.length, v);
        const d = decoded(bytes) as CplTlp | undefined;
        const fastCase = d !== undefined && !d.td && (d.kind === 'CplD' || d.kind === 'CplDLk');
        expect(ok).toBe(fastCase);
        if (!ok || d === undefined) return;
        const STATUS = ['SC', 'UR', 'CRS', undefined, 'CA'];
        expect({
          kind: v.locked ? 'CplDLk' : 'CplD',
          completerId: v.completerId,
          status: STATUS[v.status],
          bcm: v.bcm,
          byteCount: v.byteCount,
          requesterId: v.requesterId,
          tag: v.tag,
          lowerAddress: v.lowerAddress,
          tc: v.tc,
          ido: v.ido,
          ro: v.ro,
          ns: v.ns,
          ep: v.ep,
          lengthDw: v.lengthDw,
        }).toEqual({
          kind: d.kind,
          completerId: d.completerId,
          status: d.status,
          bcm: d.bcm,
          byteCount: d.byteCount,
          requesterId: d.requesterId,
          tag: d.tag,
          lowerAddress: d.lowerAddress,
          tc: d.tc,
          ido: d.ido,
          ro: d.ro,
          ns: d.ns,
          ep: d.ep,
          lengthDw: d.lengthDw,
        });
        expect(buf.subarray(v.dataOffset, v.dataOffset + v.dataLength)).toEqual(d.data);
      }),
      { numRuns: 1000 },
    );
  });

  it('declines every other kind', () => {
    fc.assert(
      fc.property(fc.oneof(arbTlpOfKind('Cpl'), arbTlpOfKind('MWr'), arbTlpOfKind('CplLk')), (t) => {
        const b = goldenEncode(t);
        expect(parseCompletionData(b, 0, b.length, new CompletionView())).toBe(false);
      }),
    );
  });
});

describe('the fast paths between themselves', () => {
  it('a write encoded by encodeMemWriteInto parses back to its fields (above 4 GiB too)', () => {
    const f: MemWriteFields = { requesterId: 0x0100, tc: 3, ro: true, ns: false, ido: true, th: false };
    for (const address of [0x1000, 0xffff_f000, FOUR_GIB, 7 * FOUR_GIB + 0x1234_5000]) {
      const src = new Uint8Array(256).map((_, i) => i);
      const out = new Uint8Array(300);
      const n = encodeMemWriteInto(out, 0, f, address, src, 0, 256);
      const v = new MemWriteView();
      expect(parseMemWrite(out, 0, n, v)).toBe(true);
      expect(v.addressHi * FOUR_GIB + v.addressLo).toBe(address);
      expect([v.wide, v.requesterId, v.tc, v.ro, v.ido, v.lengthDw, v.firstBe, v.lastBe]).toEqual([address >= FOUR_GIB, 0x0100, 3, true, true, 64, 0xf, 0xf]);
      expect(out.subarray(v.dataOffset, v.dataOffset + v.dataLength)).toEqual(src);
    }
  });
});

const arbReadFields: fc.Arbitrary<MemReadFields> = fc.record({
  requesterId: fc.integer({ min: 0, max: 0xffff }),
  tc: fc.integer({ min: 0, max: 7 }),
  ro: fc.boolean(),
  ns: fc.boolean(),
  ido: fc.boolean(),
});

/** A read of 1..4096 bytes at any byte address that does not cross 4 KiB, below or above 4 GiB. */
const arbRead = fc
  .record({
    page: fc.oneof(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 0x100000, max: 0x1fffffff })),
    offset: fc.integer({ min: 0, max: 4095 }),
    length: fc.integer({ min: 1, max: 4096 }),
  })
  .map(({ page, offset, length }) => ({ address: page * 4096 + offset, byteLength: Math.min(length, 4096 - offset) }));

describe('encodeMemReadInto', () => {
  it('writes the golden bytes of the MRd/MRd64 memReadTlp makes for the same read', () => {
    fc.assert(
      fc.property(arbReadFields, arbRead, fc.integer({ min: 0, max: 0x3ff }), fc.integer({ min: 0, max: 7 }), (f, r, tag, outAt) => {
        const out = new Uint8Array(outAt + 20).fill(0xee);
        const n = encodeMemReadInto(out, outAt, f, tag, r.address, r.byteLength);
        const want = goldenEncode(memReadTlp({ ...f, tag, address: r.address, byteLength: r.byteLength }));
        expect(n).toBe(want.length);
        expect(out.subarray(outAt, outAt + n)).toEqual(want);
        expect(out[outAt + n]).toBe(0xee);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses zero-length and 4 KiB-crossing reads, bad tags and no room', () => {
    const f: MemReadFields = { requesterId: 1, tc: 0, ro: false, ns: false, ido: false };
    const out = new Uint8Array(16);
    expect(() => encodeMemReadInto(out, 0, f, 0, 0x1000, 0)).toThrow(TlpwireError);
    expect(() => encodeMemReadInto(out, 0, f, 0, 0x1ffc, 8)).toThrow(/4-KB/);
    expect(() => encodeMemReadInto(out, 0, f, 1024, 0x1000, 4)).toThrow(/tag/);
    expect(() => encodeMemReadInto(out, 8, f, 0, 0x1000, 4)).toThrow(/too small/);
  });
});

describe('parseMemRead', () => {
  it('accepts an MRd/MRd64 exactly when decodeTlp does and it has no digest, EP, TH or zero length, with the same fields', () => {
    fc.assert(
      fc.property(fc.oneof(arbTlpOfKind('MRd'), arbTlpOfKind('MRd64')), arbFlips, fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 5 }), (t, flips, cut, at) => {
        const clean = goldenEncode(t);
        const bytes = flips.length === 0 && cut === 0 ? clean : mutate(clean, flips, cut * 4);
        const buf = new Uint8Array(at + bytes.length + 3);
        buf.set(bytes, at);
        const v = new MemReadView();
        const ok = parseMemRead(buf, at, bytes.length, v);
        const d = decoded(bytes) as MemTlp | undefined;
        const fastCase = d !== undefined && !d.td && !d.ep && !d.th && d.firstBe !== 0 && (d.kind === 'MRd' || d.kind === 'MRd64');
        expect(ok).toBe(fastCase);
        if (!ok || d === undefined) return;
        expect({ kind: v.wide ? 'MRd64' : 'MRd', ...headerOf(v) }).toEqual({ kind: d.kind, ...headerOf(d) });
        expect(decodeTlp(buf, v.tlpOffset, v.tlpLength)).toEqual(d);
      }),
      { numRuns: 1000 },
    );
  });

  it('declines every other kind', () => {
    fc.assert(
      fc.property(fc.oneof(arbTlpOfKind('MWr'), arbTlpOfKind('MRdLk'), arbTlpOfKind('CplD'), arbTlpOfKind('CfgRd0')), (t) => {
        const b = goldenEncode(t);
        expect(parseMemRead(b, 0, b.length, new MemReadView())).toBe(false);
      }),
    );
  });
});

describe('MemWriteRun.extend', () => {
  it('adds exactly what parseMemWrite and add() would add, leaving the run as they leave it', () => {
    // Runs of MWr built by the codec, with one header bit or length flipped here and there.
    const stepArb = fc.record({
      dws: fc.integer({ min: 1, max: 64 }),
      gap: fc.constantFrom(0, 0, 0, 0, 4, 8),
      requesterId: fc.constantFrom(0x0100, 0x0100, 0x0100, 0x0208),
      ph: fc.constantFrom(0, 0, 0, 1),
      flipByte: fc.option(fc.integer({ min: 0, max: 15 }), { freq: 3 }),
      flipBit: fc.integer({ min: 0, max: 7 }),
    });
    fc.assert(
      fc.property(fc.constantFrom(0x10_0000, 0xffff_f000, 0x1_2345_6000), fc.array(stepArb, { minLength: 1, maxLength: 40 }), (start, steps) => {
        const items: Uint8Array[] = [];
        let address = start;
        for (const st of steps) {
          address += st.gap;
          if ((address % 4096) + st.dws * 4 > 4096) address = address - (address % 4096) + 4096;
          const t = memWriteTlp({ requesterId: st.requesterId, address, data: new Uint8Array(st.dws * 4).fill(st.dws) });
          if (st.ph !== 0) t.ph = st.ph;
          const b = encodeTlp(t);
          if (st.flipByte !== null && st.flipByte < b.length) b[st.flipByte]! ^= 1 << st.flipBit;
          items.push(b);
          address += st.dws * 4;
        }
        // One buffer, as a received batch: the items back to back.
        const buf = new Uint8Array(items.reduce((n, b) => n + b.length, 0));
        const offsets: number[] = [];
        let o = 0;
        for (const b of items) {
          buf.set(b, o);
          offsets.push(o);
          o += b.length;
        }
        const viaExtend = new MemWriteRun();
        const viaParse = new MemWriteRun();
        const v = new MemWriteView();
        for (let i = 0; i < items.length; i++) {
          const len = items[i]!.length;
          const ref = parseMemWrite(buf, offsets[i]!, len, v) && viaParse.add(buf, offsets[i]!, len, v);
          const got = viaExtend.count > 0 ? viaExtend.extend(buf, offsets[i]!, len) : parseMemWrite(buf, offsets[i]!, len, v) && viaExtend.add(buf, offsets[i]!, len, v);
          expect(got).toBe(ref);
          if (!ref) {
            // The link then starts a new run; both do the same.
            viaParse.clear();
            viaExtend.clear();
            const again = parseMemWrite(buf, offsets[i]!, len, v) && viaParse.add(buf, offsets[i]!, len, v);
            expect(parseMemWrite(buf, offsets[i]!, len, v) && viaExtend.add(buf, offsets[i]!, len, v)).toBe(again);
          }
          expect(runState(viaExtend)).toEqual(runState(viaParse));
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('MemWriteRun.extend at a 4 KB boundary', () => {
  it('refuses a write that continues the run but crosses a 4 KB boundary, as parseMemWrite does', () => {
    const first = encodeTlp(memWriteTlp({ requesterId: 0x0100, address: 0x10_0f00, data: new Uint8Array(128) }));
    // 256 bytes at 0x10_0f80 cross into the next page: the codec refuses to build it, so its
    // address (DW2) is patched into a valid TLP by hand.
    const crossing = encodeTlp(memWriteTlp({ requesterId: 0x0100, address: 0x10_0f00, data: new Uint8Array(256) }));
    new DataView(crossing.buffer, crossing.byteOffset).setUint32(8, 0x10_0f80);
    const buf = new Uint8Array(first.length + crossing.length);
    buf.set(first, 0);
    buf.set(crossing, first.length);
    const v = new MemWriteView();
    expect(parseMemWrite(buf, first.length, crossing.length, v)).toBe(false);
    const run = new MemWriteRun();
    expect(parseMemWrite(buf, 0, first.length, v) && run.add(buf, 0, first.length, v)).toBe(true);
    expect(run.extend(buf, first.length, crossing.length)).toBe(false);
    expect(run.count).toBe(1);
  });
});

function runState(r: MemWriteRun): unknown {
  const n = r.count;
  return {
    n,
    address: r.address,
    length: r.length,
    wide: r.wide,
    bodies: [...r.bodyOffsets.subarray(0, n)],
    lengths: [...r.bodyLengths.subarray(0, n)],
    data: [...r.dataOffsets.subarray(0, n)],
    dataLengths: [...r.dataLengths.subarray(0, n)],
  };
}

describe('CompletionParts', () => {
  it('holds the most parts a read can need (4096 bytes at RCB 64, starting inside an RCB block), and refuses more', () => {
    const p = new CompletionParts();
    // 4032 bytes from 0x1020: 32 to the first RCB boundary, then 62 blocks of 64, then 32.
    let s = 0x1020;
    const end = 0x1020 + 4032;
    while (s < end) {
      const e = Math.min(end, (s & ~63) + 64);
      expect(p.push(end - s, s & 0x7f, s - 0x1020, s & 3, e - s)).toBe(true);
      s = e;
    }
    expect(p.count).toBe(64);
    expect(p.push(1, 0, 0, 0, 1)).toBe(true);
    expect(p.count).toBe(COMPLETION_PARTS_MAX);
    expect(p.push(1, 0, 0, 0, 1)).toBe(false);
    expect(p.count).toBe(COMPLETION_PARTS_MAX);
    expect([...p.bytes.subarray(0, 3)]).toEqual([32, 64, 64]);
  });
});
