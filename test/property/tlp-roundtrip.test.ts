import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TlpwireError, type ErrorCode } from '../../src/core/index.js';
import { decodeTlp, encodeTlp, encodeTlpInto, encodedLength, tlpFromJson, tlpToJson, tlpWireLength, type Tlp } from '../../src/tlp/index.js';
import { ALL_KINDS, arbTlp, arbTlpOfKind } from '../tlp/arbitraries.js';
import { goldenEncode } from '../tlp/golden-builder.js';

const TLP_CODES: readonly ErrorCode[] = [
  'ERR_TLP_TRUNCATED',
  'ERR_TLP_MALFORMED',
  'ERR_TLP_RESERVED',
  'ERR_TLP_LENGTH',
  'ERR_TLP_4K_CROSSING',
  'ERR_TLP_BYTE_ENABLES',
  'ERR_TLP_ECRC',
  'ERR_TLP_FIELD',
];

/** decodeTlp either returns a TLP that re-encodes to exactly the input, or throws a TLP error located inside it. */
function decodeIsTotal(bytes: Uint8Array): void {
  let tlp: Tlp;
  try {
    tlp = decodeTlp(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(TlpwireError);
    const err = e as TlpwireError;
    expect(TLP_CODES).toContain(err.code);
    expect(err.offset).toBeGreaterThanOrEqual(0);
    expect(err.offset).toBeLessThanOrEqual(bytes.length);
    return;
  }
  expect(encodeTlp(tlp)).toEqual(bytes);
}

describe('TLP codec properties', () => {
  for (const kind of ALL_KINDS) {
    it(`${kind}: decode(encode(x)) = x, and encode(x) = the golden builder's bytes`, () => {
      fc.assert(
        fc.property(arbTlpOfKind(kind), (t) => {
          const bytes = encodeTlp(t);
          expect(bytes).toEqual(goldenEncode(t));
          expect(bytes.length).toBe(encodedLength(t));
          expect(tlpWireLength(bytes)).toBe(bytes.length);
          expect(decodeTlp(bytes)).toEqual(t);
        }),
        { numRuns: 150 },
      );
    });
  }

  it('encode(decode(bytes)) = bytes for valid encodings', () => {
    fc.assert(
      fc.property(arbTlp, (t) => {
        const bytes = goldenEncode(t);
        expect(encodeTlp(decodeTlp(bytes))).toEqual(bytes);
      }),
      { numRuns: 500 },
    );
  });

  it('packs many TLPs into one buffer with encodeTlpInto and reads them back with decodeTlp(offset, length)', () => {
    fc.assert(
      fc.property(fc.array(arbTlp, { minLength: 1, maxLength: 12 }), fc.nat({ max: 7 }), (tlps, lead) => {
        const total = tlps.reduce((n, t) => n + encodedLength(t), lead);
        const buf = new Uint8Array(total + 3).fill(0xee);
        let at = lead;
        const spans: [number, number][] = [];
        for (const t of tlps) {
          const n = encodeTlpInto(t, buf, at);
          spans.push([at, n]);
          at += n;
        }
        expect(at).toBe(total);
        expect(buf.subarray(total)).toEqual(new Uint8Array([0xee, 0xee, 0xee]));
        spans.forEach(([off, n], i) => {
          expect(tlpWireLength(buf, off)).toBe(n);
          expect(decodeTlp(buf, off, n)).toEqual(tlps[i]);
        });
      }),
      { numRuns: 100 },
    );
  });

  it('JSON form round-trips: tlpFromJson(JSON.parse(JSON.stringify(tlpToJson(x)))) = x', () => {
    fc.assert(
      fc.property(arbTlp, (t) => {
        const json = JSON.parse(JSON.stringify(tlpToJson(t))) as unknown;
        expect(tlpFromJson(json)).toEqual(t);
      }),
      { numRuns: 300 },
    );
  });

  it('random bytes never make decodeTlp throw anything but a located TLP error', () => {
    const header = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 40 }),
      // Plausible first bytes so the decoder gets past Fmt/Type often.
      fc.tuple(fc.constantFrom(0x00, 0x20, 0x40, 0x60, 0x01, 0x02, 0x42, 0x04, 0x44, 0x05, 0x0a, 0x4a, 0x0b, 0x4b, 0x30, 0x74, 0x4c, 0x6d, 0x4e), fc.uint8Array({ minLength: 0, maxLength: 60 })).map(
        ([b0, rest]) => Uint8Array.from([b0, ...rest]),
      ),
    );
    fc.assert(fc.property(header, decodeIsTotal), { numRuns: 3000 });
  });

  it('mutated valid encodings (bit flips, truncation, extension) decode or fail with a located TLP error', () => {
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
      fc.record({ op: fc.constant('cut' as const), at: fc.nat(), bit: fc.constant(0) }),
      fc.record({ op: fc.constant('grow' as const), at: fc.nat({ max: 8 }), bit: fc.constant(0) }),
    );
    fc.assert(
      fc.property(arbTlp, fc.array(mutation, { minLength: 1, maxLength: 3 }), (t, muts) => {
        let bytes = encodeTlp(t).slice();
        for (const m of muts) {
          if (m.op === 'flip' && bytes.length > 0) bytes[m.at % bytes.length]! ^= 1 << m.bit;
          else if (m.op === 'cut') bytes = bytes.slice(0, m.at % (bytes.length + 1));
          else if (m.op === 'grow') bytes = Uint8Array.from([...bytes, ...new Array<number>(m.at).fill(0x5a)]);
        }
        decodeIsTotal(bytes);
      }),
      { numRuns: 2000 },
    );
  });
});
