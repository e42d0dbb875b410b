/**
 * Read bursts: a DMA read's turn at the requester goes to the end of its 4 KiB block, its MRRS
 * pieces sent one after another (the completer answers them as one run). What must hold: every MRd on
 * the wire is the one memReadTlp builds for its piece (the codec is golden-tested elsewhere),
 * the pieces of each read come in address order, and when the link stops taking requests
 * (credits, congestion) the rest wait in the queues and every read still completes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CreditScales, type CreditValues } from '../../src/link/index.js';
import { decodeTlp, encodeTlp, memReadTlp, type MemTlp } from '../../src/tlp/index.js';
import { RamTarget, linkedPair, patterned, tapTlps } from './harness.js';

const RAM_BASE = 0x10_0000;
const RAM_BYTES = 1 << 20;
const MRRS = 512;

function setup(o: { rcCredits?: Partial<CreditValues>; rcScales?: Partial<CreditScales>; highWaterBytes?: number; latencyNs?: number; tags?: number } = {}) {
  // A tap on the endpoint's wire: every MRd it sends, as bytes.
  const mrds: Uint8Array[] = [];
  const ram = new RamTarget(RAM_BASE, patterned(RAM_BYTES, 9));
  const { tags, ...link } = o;
  const pair = linkedPair({
    ...link,
    epConfig: { maxReadRequestSize: MRRS, ...(tags === undefined ? {} : { maxOutstandingTags: tags }) },
    rcTargets: [ram],
    tap: (_rc, ep) =>
      tapTlps(ep, (b) => {
        if (b[0] === 0x00 || b[0] === 0x20) mrds.push(b);
      }),
  });
  return { ...pair, ram, mrds };
}

/** The MRRS pieces of a read, in address order, as [address, length]. */
function pieces(address: number, length: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = address; a < address + length; ) {
    const e = Math.min(address + length, a - (a % MRRS) + MRRS);
    out.push([a, e - a]);
    a = e;
  }
  return out;
}

/** Checks the wire: each MRd is memReadTlp's for its piece; each read's pieces in order. */
function checkWire(mrds: readonly Uint8Array[], reads: readonly [number, number][]): void {
  const want = new Map<number, [number, number][]>(); // a read's first address → pieces still due
  for (const [address, length] of reads) want.set(address, pieces(address, length));
  const next = new Map<number, number>(); // piece address → the read it belongs to
  for (const [address] of reads) next.set(address, address);
  for (const bytes of mrds) {
    const t = decodeTlp(bytes) as MemTlp;
    const lead = t.firstBe & 1 ? 0 : t.firstBe & 2 ? 1 : t.firstBe & 4 ? 2 : 3;
    const address = t.addressHi * 0x1_0000_0000 + t.addressLo + lead;
    const owner = next.get(address);
    expect(owner, `MRd at 0x${address.toString(16)} is the next piece of a read`).toBeDefined();
    const due = want.get(owner!)!;
    const [pa, pl] = due.shift()!;
    expect(address).toBe(pa);
    next.delete(address);
    if (due.length > 0) next.set(due[0]![0], owner!);
    // The bytes memReadTlp builds for this piece with the tag the wire carries.
    expect(bytes).toEqual(encodeTlp(memReadTlp({ requesterId: 0x0100, tag: t.tag, address: pa, byteLength: pl })));
  }
  for (const due of want.values()) expect(due).toEqual([]);
}

describe('read bursts (a read’s turn to the end of its 4 KiB block)', () => {
  it('reads of any size and alignment, several at once: each MRd on the wire is memReadTlp’s for its piece, in order, and the data comes back', async () => {
    const readArb = fc.record({ offset: fc.integer({ min: 0, max: RAM_BYTES / 4 - 1 }), length: fc.integer({ min: 1, max: 20_000 }) });
    await fc.assert(
      fc.asyncProperty(fc.array(readArb, { minLength: 1, maxLength: 4 }), async (rs) => {
        const s = setup();
        const reads = rs.map((r, i): [number, number] => [RAM_BASE + i * (RAM_BYTES / 4) + r.offset, Math.min(r.length, RAM_BYTES / 4 - r.offset)]);
        const got = await s.settle(Promise.all(reads.map(([a, n]) => s.ep.requester.memRead(a, n))));
        for (const [i, [a, n]] of reads.entries()) expect(got[i]).toEqual(s.ram.bytes.subarray(a - RAM_BASE, a - RAM_BASE + n));
        checkWire(s.mrds, reads);
        const count = reads.reduce((k, [a, n]) => k + pieces(a, n).length, 0);
        expect(s.epLink.counters.get('tlp.sent.MRd')).toBe(count);
        expect(s.rcLink.counters.get('tlp.received.MRd')).toBe(count);
      }),
      { numRuns: 40 },
    );
  });

  it('two 64 KiB reads sharing 16 tags take turns, each turn a burst of consecutive MRds that ends at a 4 KiB boundary', async () => {
    const s = setup({ tags: 16 });
    const reads: [number, number][] = [
      [RAM_BASE, 65536],
      [RAM_BASE + 0x4_0000, 65536],
    ];
    await s.settle(Promise.all(reads.map(([a, n]) => s.ep.requester.memRead(a, n))));
    checkWire(s.mrds, reads);
    // Whose is each MRd, in wire order: runs of one read's MRds, taking turns.
    const wire = s.mrds.map((b) => (decodeTlp(b) as MemTlp).addressLo);
    const owner = (a: number): number => (a >= RAM_BASE + 0x4_0000 ? 1 : 0);
    const runs: number[][] = [];
    for (const a of wire) {
      const last = runs[runs.length - 1];
      if (last !== undefined && owner(last[0]!) === owner(a)) last.push(a);
      else runs.push([a]);
    }
    expect(runs.length).toBeGreaterThan(8); // they take turns: neither waits for the other to finish
    // While both have more to read, a turn ends where a 4 KiB block does (or where the tags ran out:
    // then the same read's next turn finishes that block).
    for (const run of runs.slice(1, -1)) {
      const end = run[run.length - 1]! + MRRS;
      const next = runs[runs.indexOf(run) + 2]?.[0];
      expect(end % 4096 === 0 || next === end).toBe(true);
    }
  });

  it('with few non-posted credits at the completer, a burst sends what the credits allow, the rest wait in the queues, and every read completes', async () => {
    const s = setup({ rcCredits: { NPH: 3 }, rcScales: { NPH: 1 } });
    const reads: [number, number][] = [
      [RAM_BASE, 65536],
      [RAM_BASE + 0x2_0000 + 64, 30_000],
      [RAM_BASE + 0x8_0000, 4096],
    ];
    const got = await s.settle(Promise.all(reads.map(([a, n]) => s.ep.requester.memRead(a, n))));
    for (const [i, [a, n]] of reads.entries()) expect(got[i]).toEqual(s.ram.bytes.subarray(a - RAM_BASE, a - RAM_BASE + n));
    checkWire(s.mrds, reads);
    expect(s.epLink.counters.get('stalls.credits')).toBeGreaterThan(0);
    s.clock.runUntil(() => s.rcLink.creditsHeld('NPH') === 0, 100_000);
    expect(s.rcLink.creditsHeld('NPH')).toBe(0);
    expect(s.ep.requester.stats().tagsInUse).toBe(0);
  });

  it('when the transport is congested, the requests that cannot go wait in the queues, and every read completes', async () => {
    const s = setup({ highWaterBytes: 64, latencyNs: 20_000 });
    const reads: [number, number][] = [
      [RAM_BASE, 65536],
      [RAM_BASE + 0x4_0000, 65536],
    ];
    // The first read's MRds leave in one batch, which congests the transport; the second read
    // starts while that batch is still on its way.
    const before = s.epLink.counters.get('batches.sent') ?? 0;
    const first = s.ep.requester.memRead(reads[0]![0], reads[0]![1]);
    s.clock.runUntil(() => (s.epLink.counters.get('batches.sent') ?? 0) > before, 1_000);
    const second = s.ep.requester.memRead(reads[1]![0], reads[1]![1]);
    const got = await s.settle(Promise.all([first, second]));
    for (const [i, [a, n]] of reads.entries()) expect(got[i]).toEqual(s.ram.bytes.subarray(a - RAM_BASE, a - RAM_BASE + n));
    checkWire(s.mrds, reads);
    expect(s.epLink.counters.get('stalls.transport')).toBeGreaterThan(0);
  });
});
