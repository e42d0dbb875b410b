/**
 * Runs of posted writes (Link.onMemWriteRun): consecutive MWr of a batch that continue one
 * another reach the receiver together. Whatever the receiver does with a run — take it, or
 * decline it so that its writes come one by one — memory must end up as if every TLP had been
 * applied alone, in arrival order, interleaved correctly with the TLPs around it, with every
 * credit given back and every TLP counted once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { forEachEnabledRun } from '../../src/transaction/index.js';
import { memReadTlp, memWriteTlp, type MemTlp, type MemWriteRun, type Tlp } from '../../src/tlp/index.js';
import { bringUp, linkPair } from './helpers.js';

const FOUR_GIB = 0x1_0000_0000;

/** Sparse byte memory: what the TLPs wrote, address → byte. */
type Mem = Map<number, number>;

function apply(mem: Mem, tlp: MemTlp): void {
  const address = tlp.addressHi * FOUR_GIB + tlp.addressLo;
  forEachEnabledRun(address, tlp.data!, tlp.firstBe, tlp.lastBe, (a, bytes) => {
    for (let i = 0; i < bytes.length; i++) mem.set(a + i, bytes[i]!);
  });
}

interface Step {
  kind: 'write' | 'read';
  /** Continue the previous write (next address), or start elsewhere. */
  contiguous: boolean;
  dws: number;
  requester: number;
  partialBe: boolean;
  poisoned: boolean;
  high: boolean;
  fill: number;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.constantFrom<'write' | 'read'>('write', 'write', 'write', 'write', 'read'),
  contiguous: fc.boolean(),
  dws: fc.integer({ min: 1, max: 64 }),
  requester: fc.constantFrom(0x0100, 0x0100, 0x0208),
  partialBe: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  poisoned: fc.integer({ min: 0, max: 19 }).map((n) => n === 0),
  high: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  fill: fc.integer({ min: 0, max: 255 }),
});

/** The TLPs of a scenario: writes that often continue one another, and reads in between. */
function buildTlps(steps: readonly Step[]): Tlp[] {
  const out: Tlp[] = [];
  let next = 0x10_0000;
  let tag = 0;
  for (const s of steps) {
    if (s.kind === 'read') {
      out.push(memReadTlp({ requesterId: s.requester, tag: tag++ & 0xff, address: 0x2000, byteLength: 16 }));
      continue;
    }
    let address = s.contiguous ? next : (s.high ? 0x1_2000_0000 : 0x20_0000) + (s.fill << 12);
    const bytes = s.dws * 4;
    // A write does not cross 4 KiB: restart at the next page if it would.
    if ((address % 4096) + bytes > 4096) address = address - (address % 4096) + 4096;
    const data = new Uint8Array(bytes).map((_, i) => (s.fill + i * 7) & 0xff);
    // Partial byte enables: leave out the first byte (the write then starts one byte in).
    const tlp = s.partialBe && bytes > 4 ? memWriteTlp({ requesterId: s.requester, address: address + 1, data: data.subarray(1) }) : memWriteTlp({ requesterId: s.requester, address, data, ep: s.poisoned });
    out.push(tlp);
    next = address + bytes;
  }
  return out;
}

function scenario(tlps: readonly Tlp[], decline: (run: MemWriteRun) => boolean) {
  const p = linkPair();
  bringUp(p);
  const mem: Mem = new Map();
  const events: string[] = [];
  let runs = 0;
  let longest = 0;
  p.b.onMemWriteRun = (run) => {
    if (decline(run)) return false;
    runs++;
    longest = Math.max(longest, run.count);
    let a = run.address;
    for (let i = 0; i < run.count; i++) {
      const off = run.dataOffsets[i]!;
      const len = run.dataLengths[i]!;
      for (let k = 0; k < len; k++) mem.set(a + k, run.bytes[off + k]!);
      events.push(`w ${a} ${len}`);
      a += len;
    }
    return true;
  };
  p.b.onTlp = (t) => {
    if (t.kind === 'MWr' || t.kind === 'MWr64') {
      if (!t.ep) {
        apply(mem, t);
        const address = t.addressHi * FOUR_GIB + t.addressLo;
        events.push(t.firstBe === 0xf && (t.lastBe === 0xf || (t.lengthDw === 1 && t.lastBe === 0)) ? `w ${address} ${t.data!.length}` : `p ${address}`);
      } else events.push('poisoned');
      p.b.releaseCredits('P', t.data!.length);
    } else {
      events.push(`r ${t.tag}`);
      p.b.releaseCredits('NP', 0);
    }
  };
  for (const t of tlps) p.a.sendTlp(t);
  p.clock.run();
  return { p, mem, events, runs, longest };
}

/** What applying each TLP alone gives. */
function reference(tlps: readonly Tlp[]): { mem: Mem; events: string[] } {
  const mem: Mem = new Map();
  const events: string[] = [];
  for (const t of tlps) {
    if (t.kind === 'MRd') events.push(`r ${t.tag}`);
    else if (t.kind === 'MWr' || t.kind === 'MWr64') {
      if (t.ep) {
        events.push('poisoned');
        continue;
      }
      apply(mem, t);
      const address = t.addressHi * FOUR_GIB + t.addressLo;
      events.push(t.firstBe === 0xf && (t.lastBe === 0xf || (t.lengthDw === 1 && t.lastBe === 0)) ? `w ${address} ${t.data!.length}` : `p ${address}`);
    }
  }
  return { mem, events };
}

describe('runs of posted writes', () => {
  it('taken or declined, memory and the order of events are those of the TLPs one by one; credits all come back', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 120 }), fc.integer({ min: 0, max: 2 }), (steps, declineMode) => {
        const tlps = buildTlps(steps);
        const decline = (run: MemWriteRun): boolean => (declineMode === 0 ? false : declineMode === 1 ? true : run.count % 2 === 1);
        const got = scenario(tlps, decline);
        const want = reference(tlps);
        expect(got.events).toEqual(want.events);
        expect([...got.mem.entries()].sort((x, y) => x[0] - y[0])).toEqual([...want.mem.entries()].sort((x, y) => x[0] - y[0]));
        for (const t of ['PH', 'PD', 'NPH'] as const) expect(got.p.b.creditsHeld(t)).toBe(0);
        const writes = tlps.filter((t) => t.kind === 'MWr').length;
        expect(got.p.b.counters.get('tlp.received.MWr')).toBe(writes);
        expect(got.p.b.counters.get('tlp.received.MWr64')).toBe(tlps.filter((t) => t.kind === 'MWr64').length);
        if (declineMode === 1) expect(got.runs).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('a DMA-sized stream of 256-byte writes arrives as runs of many TLPs, split only by a batch or another requester', () => {
    const tlps: Tlp[] = [];
    for (let i = 0; i < 200; i++) {
      tlps.push(memWriteTlp({ requesterId: i < 100 ? 0x0100 : 0x0101, address: 0x40_0000 + i * 256, data: new Uint8Array(256).fill(i) }));
    }
    const got = scenario(tlps, () => false);
    expect(got.runs).toBe(2);
    expect(got.longest).toBe(100);
    expect(got.events).toEqual(reference(tlps).events);
    expect(got.p.b.creditsHeld('PD')).toBe(0);
  });

  it('a run handler that throws loses the writes but not the link or the credits', () => {
    const p = linkPair();
    bringUp(p);
    p.b.onMemWriteRun = () => {
      throw new Error('consumer bug');
    };
    for (let i = 0; i < 4; i++) p.a.sendTlp(memWriteTlp({ requesterId: 1, address: 0x1000 + i * 64, data: new Uint8Array(64) }));
    p.clock.run();
    expect(p.b.state).toBe('up');
    expect(p.b.counters.get('errors.consumer')).toBe(1);
    expect(p.b.creditsHeld('PH')).toBe(0);
    expect(p.b.creditsHeld('PD')).toBe(0);
  });
});
