/**
 * Split reads reassemble: for random sizes, alignments, MPS (128..4096), MRRS (128..4096) and
 * RCB (64/128), the requester's read pieces, completed by completionsFor at random legal split
 * points and delivered in a random legal order (parts of one request in order, different
 * requests interleaved any way), give back exactly the bytes in memory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { joinAddress, type CplTlp, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { Requester, completionsFor, firstEnabledOffset, readByteCount } from '../../src/transaction/index.js';
import { EP_BASE, makePair, patterned } from '../transaction/harness.js';

const MEM_BASE = 0x8000_0000;
const MEM = patterned(96 * 1024, 5);
const SIZES = [128, 256, 512, 1024, 2048, 4096];

const readArb = fc.record({
  offset: fc.nat(MEM.length - 1),
  length: fc.nat(24 * 1024),
});

const caseArb = fc.record({
  mps: fc.constantFrom(...SIZES),
  mrrs: fc.constantFrom(...SIZES),
  rcb: fc.constantFrom(64, 128),
  reads: fc.array(readArb, { minLength: 1, maxLength: 5 }),
  maxTags: fc.constantFrom(undefined, 1, 3, 256),
  seed: fc.integer(),
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

describe('split reads reassemble', () => {
  it('through completionsFor with random splits and random interleaving of requests', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ mps, mrrs, rcb, reads, maxTags, seed }) => {
        const rng = new SeededRng(seed);
        const issued: MemTlp[] = [];
        const requester = new Requester(
          { enqueue: (t: Tlp) => void issued.push(t as MemTlp) },
          {
            clock: new VirtualClock(),
            config: {
              requesterId: 0x0100,
              maxPayloadSize: mps,
              maxReadRequestSize: mrrs,
              rcb,
              cplTimeout: { range: 0b0110 },
              tag10Bit: false,
              ...(maxTags === undefined ? {} : { maxOutstandingTags: maxTags }),
            },
          },
        );
        const problems: string[] = [];
        requester.onCompletionError = (e) => problems.push(`${e.kind}: ${e.reason}`);
        const results = reads.map((r) => {
          const length = Math.min(r.length, MEM.length - r.offset);
          return { ...r, length, p: requester.memRead(MEM_BASE + r.offset, length) };
        });
        const streams: CplTlp[][] = [];
        for (;;) {
          for (const req of issued.splice(0)) {
            const dw = joinAddress(req.addressHi, req.addressLo);
            if (req.lengthDw * 4 > mrrs) problems.push(`read of ${req.lengthDw} DW exceeds MRRS ${mrrs}`);
            if (Math.floor(dw / 4096) !== Math.floor((dw + req.lengthDw * 4 - 1) / 4096)) {
              problems.push(`read at 0x${dw.toString(16)} crosses 4 KiB`);
            }
            const start = dw + firstEnabledOffset(req.firstBe);
            const isZero = req.lengthDw === 1 && req.firstBe === 0;
            const n = isZero ? 0 : readByteCount(req.firstBe, req.lastBe, req.lengthDw);
            const data = MEM.subarray(start - MEM_BASE, start - MEM_BASE + n);
            streams.push(completionsFor(req, data, { completerId: 0, rcb, mps, rng }));
          }
          if (streams.length === 0) break;
          const i = rng.int(streams.length);
          const s = streams[i]!;
          requester.handleCompletion(s.shift()!);
          if (s.length === 0) streams.splice(i, 1);
        }
        for (const r of results) {
          const got = await r.p;
          if (!sameBytes(got, MEM.subarray(r.offset, r.offset + r.length))) problems.push(`read ${r.offset}+${r.length} differs`);
        }
        expect(problems).toEqual([]);
        expect(requester.stats().tagsInUse).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it('end to end over the fake link with adversarial ordering, hold-back and random completion splits', async () => {
    const seen = { readPassedRead: 0, cplPassedCpl: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          mps: fc.constantFrom(...SIZES),
          mrrs: fc.constantFrom(...SIZES),
          rcb: fc.constantFrom(64, 128),
          reads: fc.array(fc.record({ offset: fc.nat(58 * 1024), length: fc.nat(6000) }), { minLength: 1, maxLength: 6 }),
          seed: fc.integer(),
        }),
        async ({ mps, mrrs, rcb, reads, seed }) => {
          const config = { maxPayloadSize: mps, maxReadRequestSize: mrrs, rcb };
          const pair = makePair({
            seed,
            ordering: { mode: 'adversarial', holdBack: { probability: 0.5, maxNs: 2000 } },
            rcConfig: config,
            epConfig: config,
            link: { b: { credits: { NP: { hdr: 8, data: 8 } } } },
          });
          const problems: string[] = [];
          pair.rc.onCompletionError = (e) => problems.push(e.reason);
          const ps = reads.map((r) => pair.rc.requester.memRead(EP_BASE + r.offset, r.length));
          const got = await pair.settle(Promise.all(ps));
          reads.forEach((r, i) => {
            if (!sameBytes(got[i]!, pair.epRam.bytes.subarray(r.offset, r.offset + r.length))) problems.push(`read ${i} differs`);
          });
          expect(problems).toEqual([]);
          seen.readPassedRead += pair.rc.queues.reorderings()['read-passed-read'];
          seen.cplPassedCpl += pair.ep.queues.reorderings()['cpl-passed-cpl'];
        },
      ),
      { numRuns: 25 },
    );
    // The runs did exercise reordering: reads passed reads, completions of different reads passed each other.
    expect(seen.readPassedRead).toBeGreaterThan(0);
    expect(seen.cplPassedCpl).toBeGreaterThan(0);
  });
});
