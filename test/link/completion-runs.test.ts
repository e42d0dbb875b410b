/**
 * Link.sendCompletionRun: the completions of reads one after another, from one read's parts. What
 * must hold: the same TLP items as sendCompletionData read by read, every read whole or not at
 * all, and nothing sent where it cannot hold (finite completion credits, a bad stride or range).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bulkCopy } from '../../src/core/index.js';
import { CompletionParts, type CompletionFields } from '../../src/tlp/index.js';
import { bringUp, linkPair, type Pair } from './helpers.js';

/** The TLP items `p.a` sends while `send` runs, as hex, batch by batch (one array per batch). */
function batches(p: Pair, send: () => void): string[][] {
  const out: string[][] = [];
  const orig = p.ta.send.bind(p.ta);
  p.ta.send = (chunks, done) => {
    const items: string[] = [];
    for (const c of chunks) {
      for (let off = 4; off < c.length; ) {
        const len = (c[off + 2]! << 8) | c[off + 3]!;
        if (c[off] === 0x01) items.push(Buffer.from(c.subarray(off + 4, off + 4 + len)).toString('hex'));
        off += 4 + len;
      }
    }
    if (items.length > 0) out.push(items);
    return orig(chunks, done);
  };
  send();
  p.a.flush();
  p.ta.send = orig;
  return out;
}

/** The TLP items `p.a` sends while `send` runs, as hex, batch by batch joined. */
function wire(p: Pair, send: () => void): string[] {
  return batches(p, send).flat();
}

/** One read's parts at RCB 64 and MPS `mps`: `total` bytes at `start`, src offset `base`. */
function partsOf(start: number, total: number, base: number, mps: number): CompletionParts {
  const parts = new CompletionParts();
  const end = start + total;
  for (let s = start; s < end; ) {
    // As completionsFor splits: at RCB multiples, never past an MPS block.
    const e = Math.min(end, s - (s % mps) + mps);
    parts.push(end - s, s & 0x7f, base + s - start, s & 3, e - s);
    s = e;
  }
  return parts;
}

const fields = (): CompletionFields => ({ completerId: 0, requesterId: 0x0100, tag: 0, tc: 1, ro: false, ns: true, ido: false, locked: false });

describe('Link.sendCompletionRun', () => {
  it('sends the items sendCompletionData sends read by read, each read whole', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(128, 256, 512),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 0, max: 31 }).map((dw) => dw * 4),
        // Where in its MPS block each read of the run starts (Lower Address then not 0).
        fc.integer({ min: 0, max: 127 }).map((dw) => dw * 4),
        (mps, blocks, count, lead, skew) => {
          const shift = skew % mps;
          const stride = mps * blocks;
          const src = new Uint8Array((count + 2) * stride + 64).map((_, i) => (i * 7 + 3) & 0xff);
          const tags = Uint16Array.from({ length: count + 3 }, (_, i) => 256 + ((i * 37) % 768));
          const start = 0x4_0000 + lead;
          const total = stride - lead; // the first read starts `lead` into its block, the rest whole
          const byRun = linkPair();
          bringUp(byRun);
          const one = linkPair();
          bringUp(one);
          let sent = 0;
          const a = wire(byRun, () => {
            // Reads 2.. are whole blocks; read 1 is its own (it starts `lead` in).
            sent = byRun.a.sendCompletionRun({ ...fields(), tag: 0 }, tags, 3, count, src, partsOf(start + total + shift, stride, lead + total + shift, mps), stride);
          });
          expect(sent).toBe(count);
          const b = wire(one, () => {
            for (let r = 0; r < count; r++) {
              const q = partsOf(start + total + shift + r * stride, stride, lead + total + shift + r * stride, mps);
              expect(one.a.sendCompletionData({ ...fields(), tag: tags[3 + r]! }, src, q)).toBe(q.count);
            }
          });
          expect(a).toEqual(b);
          // Each read is `blocks` MPS-sized completions, one more when it starts inside a block.
          expect(a.length).toBe(count * (blocks + (shift === 0 ? 0 : 1)));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('makes the batches its JavaScript loop makes, none past batchBytes', () => {
    // With the addon, sendCompletionRun places reads many at a time (completionRun); without it,
    // or with a bulkCopy that lacks it, one by one. The same batches either way.
    const { completionRun: _native, ...withoutRun } = bulkCopy();
    fc.assert(
      fc.property(
        fc.constantFrom(128, 256, 512),
        // reads of up to 4 KiB (the largest MRRS)
        fc.integer({ min: 1, max: 32 }),
        fc.integer({ min: 1, max: 120 }),
        fc.integer({ min: 16_392, max: 80_000 }),
        fc.integer({ min: 0, max: 3 }),
        (mps, blocksWanted, count, batchBytes, before) => {
          const stride = mps * Math.min(blocksWanted, 4096 / mps);
          const src = new Uint8Array(count * stride).map((_, i) => (i * 5 + 1) & 0xff);
          const tags = Uint16Array.from({ length: count }, (_, i) => (i * 7) % 1024);
          const parts = partsOf(0x2_0000, stride, 0, mps);
          const send = (p: Pair): string[][] =>
            batches(p, () => {
              // Some single completions first, so that a run starts in a batch partly filled.
              for (let i = 0; i < before; i++) p.a.sendCompletionData({ ...fields(), tag: 1000 + i }, src, partsOf(0x1_0000, 64, 0, mps));
              expect(p.a.sendCompletionRun(fields(), tags, 0, count, src, parts, stride)).toBe(count);
            });
          const native = linkPair({ batchBytes });
          bringUp(native);
          const js = linkPair({ batchBytes, bulkCopy: withoutRun });
          bringUp(js);
          const a = send(native);
          expect(a).toEqual(send(js));
          // A read (at most 4 KiB and its headers) is smaller than any batch: none goes past batchBytes.
          for (const batch of a) expect(4 + batch.reduce((n, hex) => n + 4 + hex.length / 2, 0)).toBeLessThanOrEqual(batchBytes);
          expect(a.flat().length).toBe(before + count * parts.count);
        },
      ),
      {
        numRuns: 80,
        // batchBytes a whole number of reads past the batch header (and a little more): where a
        // batch just holds its last read
        examples: [
          [128, 1, 114, 16_416, 0],
          [128, 1, 120, 4 + 114 * 144, 0],
          [128, 1, 120, 4 + 114 * 144 + 3, 0],
          [256, 1, 120, 4 + 61 * 272, 0],
          [512, 2, 40, 4 + 16 * (2 * (4 + 12 + 512)), 0],
        ],
      },
    );
  });

  it('sends nothing with finite completion credits, and refuses a stride or a range it cannot take', () => {
    const finite = linkPair({}, { credits: { CplH: 8, CplD: 256 }, scales: { CplH: 1, CplD: 1 } });
    bringUp(finite);
    const src = new Uint8Array(8192);
    const tags = Uint16Array.from({ length: 8 }, (_, i) => 300 + i);
    expect(finite.a.sendCompletionRun(fields(), tags, 0, 4, src, partsOf(0x1000, 512, 0, 256), 512)).toBe(0);
    const p = linkPair();
    bringUp(p);
    // ERR_INTERNAL (a caller's bug), each naming the method.
    expect(() => p.a.sendCompletionRun(fields(), tags, 0, 4, src, partsOf(0x1000, 512, 0, 256), 500)).toThrow(/sendCompletionRun: 4 reads 500 bytes apart/);
    expect(() => p.a.sendCompletionRun(fields(), tags, 6, 4, src, partsOf(0x1000, 512, 0, 256), 512)).toThrow(/from tag index 6 of 8/);
    expect(() => p.a.sendCompletionRun(fields(), tags, 0, 8, src.subarray(0, 3000), partsOf(0x1000, 512, 0, 256), 512)).toThrow(/outside its 3000-byte buffer/);
    expect(p.a.counters.get('tlp.sent.CplD') ?? 0).toBe(0);
  });

  it('stops between reads, never inside one, when the transport is congested', () => {
    const p = linkPair({ batchBytes: 16392 }, {}, { highWaterBytes: 1024, latencyNs: 10_000 });
    bringUp(p);
    const src = new Uint8Array(64 * 512).fill(9);
    const tags = Uint16Array.from({ length: 64 }, (_, i) => 256 + i);
    const parts = partsOf(0x8000, 512, 0, 256);
    const sent = p.a.sendCompletionRun(fields(), tags, 0, 64, src, parts, 512);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(64);
    expect(p.a.counters.get('tlp.sent.CplD')).toBe(sent * parts.count);
  });
});
