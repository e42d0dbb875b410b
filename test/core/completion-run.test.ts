/**
 * The native placing of a run's completions (completionRun in native/tap/bulkcopy.c, typed in
 * src/core/bulk-copy.ts) against completions built from the PCIe header layout by the independent
 * golden builder (never src/tlp's encoders), framed as tlpwire TLP items.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNativeBulkCopy, type CompletionRunFn } from '../../src/core/index.js';
import type { CplTlp } from '../../src/tlp/index.js';
import { goldenEncode } from '../tlp/golden-builder.js';

const loaded = loadNativeBulkCopy();
const place: CompletionRunFn | undefined = typeof loaded === 'string' ? undefined : loaded.completionRun;
const skipped =
  typeof loaded === 'string' ? ` — skipped: ${loaded}` : place === undefined ? ' — skipped: the addon was built without completionRun (npm run build:native)' : '';

interface Part {
  byteCount: number;
  lowerAddress: number;
  srcOffset: number;
  lead: number;
  bytes: number;
}

interface Shared {
  tc: number;
  ro: boolean;
  ns: boolean;
  ido: boolean;
  ep: boolean;
  at: number;
  completerId: number;
  requesterId: number;
  bcm: boolean;
}

function cpl(s: Shared, tag: number, p: Part, data: Uint8Array): CplTlp {
  return {
    kind: 'CplD',
    tc: s.tc,
    ido: s.ido,
    ro: s.ro,
    ns: s.ns,
    ln: false,
    th: false,
    td: false,
    ep: s.ep,
    at: s.at,
    lengthDw: data.length / 4,
    completerId: s.completerId,
    status: 'SC',
    bcm: s.bcm,
    byteCount: p.byteCount,
    requesterId: s.requesterId,
    tag,
    lowerAddress: p.lowerAddress,
    data,
  };
}

/** The items the run should be: per read, per part, [1][0][len BE] and the golden CplD. */
function expected(s: Shared, parts: readonly Part[], src: Uint8Array, tags: readonly number[], stride: number): Uint8Array {
  const out: number[] = [];
  tags.forEach((tag, r) => {
    for (const p of parts) {
      const payload = new Uint8Array((p.lead + p.bytes + 3) & ~3);
      payload.set(src.subarray(p.srcOffset + r * stride, p.srcOffset + r * stride + p.bytes), p.lead);
      const body = goldenEncode(cpl(s, tag, p, payload));
      out.push(1, 0, body.length >> 8, body.length & 0xff, ...body);
    }
  });
  return Uint8Array.from(out);
}

/** The shared words: a golden header for tag 0 with Length, Byte Count, tag and Lower Address cleared. */
function words(s: Shared): [number, number, number] {
  const h = goldenEncode(cpl(s, 0, { byteCount: 4, lowerAddress: 0, srcOffset: 0, lead: 0, bytes: 4 }, new Uint8Array(4)));
  const w = (i: number): number => ((h[i]! << 24) | (h[i + 1]! << 16) | (h[i + 2]! << 8) | h[i + 3]!) >>> 0;
  return [(w(0) & ~0x3ff) >>> 0, (w(4) & ~0xfff) >>> 0, (w(8) & 0xffff0000) >>> 0];
}

function columns(parts: readonly Part[]): Int32Array[] {
  return (['byteCount', 'lowerAddress', 'srcOffset', 'lead', 'bytes'] as const).map((k) => Int32Array.from(parts, (p) => p[k]));
}

const sharedArb: fc.Arbitrary<Shared> = fc.record({
  tc: fc.integer({ min: 0, max: 7 }),
  ro: fc.boolean(),
  ns: fc.boolean(),
  ido: fc.boolean(),
  ep: fc.boolean(),
  at: fc.integer({ min: 0, max: 3 }),
  completerId: fc.integer({ min: 0, max: 0xffff }),
  requesterId: fc.integer({ min: 0, max: 0xffff }),
  bcm: fc.boolean(),
});

const partArb: fc.Arbitrary<Part> = fc
  .record({
    byteCount: fc.integer({ min: 1, max: 4096 }),
    lowerAddress: fc.integer({ min: 0, max: 127 }),
    srcOffset: fc.integer({ min: 0, max: 300 }),
    lead: fc.integer({ min: 0, max: 3 }),
    bytes: fc.integer({ min: 1, max: 600 }),
  })
  .map((p) => ({ ...p, bytes: Math.min(p.bytes, 4096 - p.lead) }));

describe('completionRun (native placing of a run of completions)', () => {
  it.skipIf(place === undefined)(`writes the golden CplD items of every read of the run, and nothing past them${skipped}`, () => {
    if (place === undefined) return;
    fc.assert(
      fc.property(
        sharedArb,
        fc.array(partArb, { minLength: 1, maxLength: 5 }),
        // 10-bit tags, so T9 and T8 are exercised
        fc.array(fc.integer({ min: 0, max: 1023 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 700 }),
        fc.integer({ min: 0, max: 9 }),
        (s, parts, allTags, skip, stride, at) => {
          const first = Math.min(skip, allTags.length - 1);
          const tags = allTags.slice(first);
          const srcLength = Math.max(...parts.map((p) => p.srcOffset + p.bytes)) + (tags.length - 1) * stride;
          const src = Uint8Array.from({ length: srcLength }, (_, i) => (i * 131 + 7) & 0xff);
          const want = expected(s, parts, src, tags, stride);
          const out = new Uint8Array(at + want.length + 16).fill(0xa5);
          const [dw0, dw1, dw2] = words(s);
          const [bc, la, so, lead, bytes] = columns(parts);
          const n = place(out, at, src, bc!, la!, so!, lead!, bytes!, parts.length, Uint16Array.from(allTags), first, tags.length, stride, dw0, dw1, dw2);
          expect(n).toBe(want.length);
          expect(Buffer.from(out.subarray(at, at + n)).toString('hex')).toBe(Buffer.from(want).toString('hex'));
          expect(out.subarray(0, at).every((b) => b === 0xa5)).toBe(true);
          expect(out.subarray(at + n).every((b) => b === 0xa5)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it.skipIf(place === undefined)(`writes nothing for a run of no reads${skipped}`, () => {
    if (place === undefined) return;
    const out = new Uint8Array(8).fill(7);
    const one = Int32Array.of(64);
    expect(place(out, 0, new Uint8Array(0), one, Int32Array.of(0), Int32Array.of(0), Int32Array.of(0), one, 1, new Uint16Array(0), 0, 0, 64, 0, 0, 0)).toBe(0);
    expect(out.every((b) => b === 7)).toBe(true);
  });

  it.skipIf(place === undefined)(`throws on bad arguments and writes nothing${skipped}`, () => {
    if (place === undefined) return;
    const s: Shared = { tc: 1, ro: false, ns: true, ido: false, ep: false, at: 0, completerId: 0, requesterId: 0x100, bcm: false };
    const [dw0, dw1, dw2] = words(s);
    const parts: Part[] = [
      { byteCount: 128, lowerAddress: 0, srcOffset: 0, lead: 0, bytes: 64 },
      { byteCount: 64, lowerAddress: 64, srcOffset: 64, lead: 0, bytes: 64 },
    ];
    const src = new Uint8Array(256).fill(9);
    const tags = Uint16Array.of(1, 2);
    const perRead = 2 * (4 + 12 + 64);
    // room to spare, so that each bad part is refused for itself and not for want of room
    // (out starts 64 bytes into its ArrayBuffer, so that views can begin before it and end inside)
    const out = new Uint8Array(new ArrayBuffer(64 + 2 * perRead + 64), 64).fill(0xa5);
    const cols = (): Int32Array[] => columns(parts);
    type Args = Parameters<CompletionRunFn>;
    const good = (): Args => {
      const [bc, la, so, lead, bytes] = cols();
      return [out, 0, src, bc!, la!, so!, lead!, bytes!, 2, tags, 0, 2, 128, dw0, dw1, dw2];
    };
    const withArg = (i: number, v: unknown): Args => {
      const a = good();
      (a as unknown[])[i] = v;
      return a;
    };
    const withPart = (k: number, i: number, v: number): Args => {
      const a = good();
      const c = (a[3 + k] as Int32Array).slice();
      c[i] = v;
      (a as unknown[])[3 + k] = c;
      return a;
    };
    const bad: [string, Args, typeof RangeError | typeof TypeError][] = [
      ['out one byte short', withArg(0, new Uint8Array(2 * perRead - 1)), RangeError],
      ['at past room', withArg(1, 65), RangeError],
      ['negative at', withArg(1, -1), RangeError],
      ['fractional at', withArg(1, 0.5), RangeError],
      ['src too short for the last read', withArg(2, new Uint8Array(128 + 127)), RangeError],
      ['nParts beyond the parts', withArg(8, 3), RangeError],
      ['first + count beyond tags', withArg(10, 1), RangeError],
      ['count beyond tags', withArg(11, 3), RangeError],
      ['stride past src', withArg(12, 193), RangeError],
      ['a header word of 33 bits', withArg(13, 2 ** 32), RangeError],
      ['negative header word', withArg(15, -1), RangeError],
      ['lead 4', withPart(3, 0, 4), RangeError],
      ['no bytes', withPart(4, 1, 0), RangeError],
      ['payload past 4096', withPart(4, 0, 4094), RangeError],
      ['byte count 0', withPart(0, 0, 0), RangeError],
      ['byte count 4097', withPart(0, 1, 4097), RangeError],
      ['lower address 128', withPart(1, 1, 128), RangeError],
      ['negative src offset', withPart(2, 0, -1), RangeError],
      ['out not a Uint8Array', withArg(0, new Uint16Array(2 * perRead)), TypeError],
      ['src a plain array', withArg(2, [...src]), TypeError],
      ['a part not an Int32Array', withArg(5, new Uint32Array(2)), TypeError],
      ['tags not a Uint16Array', withArg(9, Int32Array.of(1, 2)), TypeError],
      // what is read while out is written must not be in out (a part's size changed mid-run)
      ['src inside out', withArg(2, out.subarray(0, 256)), RangeError],
      ['a part inside out', withArg(7, new Int32Array(out.buffer, out.byteOffset + 2 * perRead + 16, 2).fill(64)), RangeError],
      ['tags inside out', withArg(9, new Uint16Array(out.buffer, out.byteOffset + 2 * perRead + 32, 2)), RangeError],
      ['tags ending inside out', withArg(9, new Uint16Array(out.buffer, out.byteOffset - 4, 4)), RangeError],
      ['a part ending inside out', withArg(7, new Int32Array(out.buffer, out.byteOffset - 8, 4).fill(64)), RangeError],
    ];
    const outBefore = out.slice(); // (the parts placed in out's spare room above included)
    for (const [name, args, type] of bad) {
      expect(() => place(...args), name).toThrow(type);
      expect(out, name).toEqual(outBefore);
      expect(src.every((b) => b === 9), name).toBe(true);
    }
    expect(() => (place as unknown as (...a: unknown[]) => number)(...good().slice(0, 15)), 'too few arguments').toThrow(TypeError);
    expect(out).toEqual(outBefore);
    // and the same arguments, put right, place both reads
    expect(place(...good())).toBe(2 * perRead);
    expect(out[0]).toBe(1);
  });
});
