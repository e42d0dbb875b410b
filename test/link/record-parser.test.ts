import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TlpwireError } from '../../src/core/index.js';
import { RecordParser } from '../../src/link/index.js';

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function collect(max = 1024): { parser: RecordParser; records: number[][]; errors: TlpwireError[] } {
  const records: number[][] = [];
  const errors: TlpwireError[] = [];
  const parser = new RecordParser(max, (r) => records.push([...r]), (e) => errors.push(e));
  return { parser, records, errors };
}

/** The records as a stream: each a 4-byte big-endian length, then its bytes (written here, not by recordPrefix). */
function framed(recs: readonly Uint8Array[]): Uint8Array {
  const stream = new Uint8Array(recs.reduce((n, r) => n + 4 + r.length, 0));
  const dv = new DataView(stream.buffer);
  let o = 0;
  for (const r of recs) {
    dv.setUint32(o, r.length);
    stream.set(r, o + 4);
    o += 4 + r.length;
  }
  return stream;
}

// Three records written by hand: 3 bytes, empty, 5 bytes.
const STREAM = hex('00000003 aabbcc  00000000  00000005 0102030405');
const EXPECTED = [[0xaa, 0xbb, 0xcc], [], [1, 2, 3, 4, 5]];

describe('RecordParser (tcp/unix framing)', () => {
  it('parses a stream delivered in one chunk', () => {
    const c = collect();
    c.parser.push(STREAM);
    expect(c.records).toEqual(EXPECTED);
  });

  it('parses the stream split once at every offset', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const c = collect();
      c.parser.push(STREAM.subarray(0, cut));
      c.parser.push(STREAM.subarray(cut));
      expect(c.records, `cut at ${cut}`).toEqual(EXPECTED);
    }
  });

  it('parses the stream split at every pair of offsets', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      for (let j = i; j <= STREAM.length; j++) {
        const c = collect();
        c.parser.push(STREAM.subarray(0, i));
        c.parser.push(STREAM.subarray(i, j));
        c.parser.push(STREAM.subarray(j));
        expect(c.records, `cuts at ${i}, ${j}`).toEqual(EXPECTED);
      }
    }
  });

  it('parses the stream one byte at a time', () => {
    const c = collect();
    for (const b of STREAM) c.parser.push(Uint8Array.of(b));
    expect(c.records).toEqual(EXPECTED);
  });

  it('delivers a record inside one chunk without copying it', () => {
    const views: Uint8Array[] = [];
    const p = new RecordParser(100, (r) => views.push(r), () => {});
    p.push(STREAM);
    expect(views[0]!.buffer).toBe(STREAM.buffer);
    expect(views[2]!.byteOffset).toBe(STREAM.byteOffset + 15);
  });

  it('random records cut into random chunks come out whole and in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 50 }),
        (recs, cuts) => {
          const stream = framed(recs);
          const c = collect(1000);
          let at = 0;
          let k = 0;
          while (at < stream.length) {
            const n = cuts[k++ % cuts.length]!;
            c.parser.push(stream.subarray(at, at + n));
            at += n;
          }
          expect(c.records).toEqual(recs.map((r) => [...r]));
          expect(c.errors).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("'reused' assembly: records come out whole when every chunk is read into one buffer that the next read overwrites", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 700 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 50 }),
        (recs, cuts) => {
          const stream = framed(recs);
          // The receiver keeps nothing it is given: it copies during the call, as the link does.
          const records: number[][] = [];
          const assemblies = new Set<ArrayBufferLike>();
          const assembledLengths: number[] = [];
          const p = new RecordParser(
            1000,
            (r) => {
              records.push([...r]);
              if (r.buffer === socketBuffer.buffer) return;
              assemblies.add(r.buffer);
              assembledLengths.push(r.length);
            },
            () => {
              throw new Error('no error expected');
            },
            undefined,
            'reused',
          );
          const socketBuffer = new Uint8Array(300);
          let at = 0;
          let k = 0;
          while (at < stream.length) {
            const n = Math.min(cuts[k++ % cuts.length]!, stream.length - at);
            socketBuffer.set(stream.subarray(at, at + n));
            p.push(socketBuffer.subarray(0, n));
            socketBuffer.fill(0xee); // the next read's bytes
            at += n;
          }
          expect(records).toEqual(recs.map((r) => [...r]));
          // The assembly buffer is replaced only to grow: at most once per assembled record longer
          // than all assembled before it.
          let newMaxima = 0;
          let max = 0;
          for (const n of assembledLengths) {
            if (n > max) newMaxima++;
            max = Math.max(max, n);
          }
          expect(assemblies.size).toBeLessThanOrEqual(newMaxima);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("'reused' assembly cannot be combined with delivery in parts", () => {
    expect(() => new RecordParser(100, () => {}, () => {}, () => {}, 'reused')).toThrow(/whole records only/);
  });

  it('rejects an oversized record with ERR_LINK_PROTOCOL and stops', () => {
    const c = collect(16);
    c.parser.push(hex('00000002 0102  00000011'));
    expect(c.records).toEqual([[1, 2]]);
    expect(c.errors.length).toBe(1);
    expect(c.errors[0]!.code).toBe('ERR_LINK_PROTOCOL');
    expect(c.errors[0]!.message).toBe('record of 17 bytes exceeds the 16-byte limit (at stream byte 6)');
    expect(c.parser.stopped).toBe(true);
    c.parser.push(hex('00000001 ff'));
    expect(c.records.length).toBe(1);
  });

  it('an oversized length split across chunks is caught too (random bytes from a stranger)', () => {
    const c = collect(256 * 1024);
    c.parser.push(hex('47 45'));
    c.parser.push(hex('54 20 2f 20'));
    expect(c.errors[0]!.message).toContain('record of 1195725856 bytes');
  });

  it('stop() from inside a record callback stops delivery', () => {
    const got: number[] = [];
    const p = new RecordParser(
      100,
      (r) => {
        got.push(r.length);
        p.stop();
      },
      () => {},
    );
    p.push(STREAM);
    expect(got).toEqual([3]);
  });
});
