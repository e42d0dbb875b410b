/**
 * Runs of reads (Link.onMemReadRun): consecutive MRd of a batch that read one contiguous range in
 * equal pieces reach the receiver together; it takes a prefix of them and the rest come one by
 * one. Whatever it takes, the receiver must see every read exactly once, in arrival order,
 * interleaved correctly with the TLPs around it (a write after reads comes after them), with every
 * credit given back and every TLP counted once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ITEM } from '../../src/link/index.js';
import { cfgReadTlp, completionTlp, encodeTlp, memReadTlp, memWriteTlp, type MemReadRun, type Tlp } from '../../src/tlp/index.js';
import { batch, bringUp, helloObject, item, linkPair, pack, rawPeer } from './helpers.js';

const FOUR_GIB = 0x1_0000_0000;

interface Step {
  /** burst: 2..41 reads continuing the previous one, as a DMA engine sends them. */
  kind: 'read' | 'burst' | 'write' | 'cfg' | 'cpl' | 'partial';
  /** Continue the previous read (next address, same length), or start elsewhere. */
  contiguous: boolean;
  dws: number;
  requester: number;
  high: boolean;
  page: number;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.constantFrom<Step['kind']>('read', 'read', 'read', 'read', 'read', 'burst', 'write', 'cfg', 'cpl', 'partial'),
  contiguous: fc.constantFrom(true, true, true, false),
  dws: fc.constantFrom(1, 16, 128, 128, 128),
  requester: fc.constantFrom(0x0100, 0x0100, 0x0100, 0x0208),
  high: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  page: fc.integer({ min: 0, max: 255 }),
});

/** The TLPs of a scenario: reads that often continue one another, with other TLPs in between. */
function buildTlps(steps: readonly Step[]): Tlp[] {
  const out: Tlp[] = [];
  let next = 0x10_0000;
  let dws = 128;
  let requester = 0x0100;
  let n = 0;
  // Tags unique in a scenario, many of them 10-bit (T9/T8 in DW0).
  const tag = (): number => (n++ * 7 + 300) % 1024;
  for (const s of steps) {
    switch (s.kind) {
      case 'write':
        out.push(memWriteTlp({ requesterId: s.requester, address: 0x80_0000 + s.page * 64, data: new Uint8Array(64).fill(s.page) }));
        continue;
      case 'cfg':
        out.push(cfgReadTlp({ configType: 0, requesterId: s.requester, tag: tag(), bus: 1, device: 0, function: 0, register: s.page }));
        continue;
      case 'cpl':
        out.push(completionTlp({ completerId: 0x0200, requesterId: 0x0100, tag: s.page, data: new Uint8Array(16).fill(s.page) }));
        continue;
      case 'partial':
        // Not every byte enabled: never part of a run, delivered on its own (and cuts a run).
        out.push(memReadTlp({ requesterId: requester, tag: tag(), address: next + 1, byteLength: dws * 4 - 1 }));
        next += dws * 4;
        continue;
      case 'burst':
        for (let i = 0; i < (s.page % 40) + 2; i++) {
          const bytes = dws * 4;
          if ((next % 4096) + bytes > 4096) next = next - (next % 4096) + 4096;
          out.push(memReadTlp({ requesterId: requester, tag: tag(), address: next, byteLength: bytes }));
          next += bytes;
        }
        continue;
      case 'read': {
        if (!s.contiguous) {
          dws = s.dws;
          requester = s.requester;
          next = (s.high ? 0x1_2000_0000 : 0x20_0000) + s.page * 4096;
        }
        const bytes = dws * 4;
        if ((next % 4096) + bytes > 4096) next = next - (next % 4096) + 4096;
        out.push(memReadTlp({ requesterId: requester, tag: tag(), address: next, byteLength: bytes }));
        next += bytes;
      }
    }
  }
  return out;
}

function eventOf(t: Tlp): string {
  switch (t.kind) {
    case 'MRd':
    case 'MRd64':
    case 'CfgRd0':
      return `${t.kind} ${t.tag}`;
    case 'MWr':
      return `w ${t.addressLo}`;
    case 'CplD':
      return `c ${t.tag}`;
    default:
      return t.kind;
  }
}

interface Options {
  /** How many reads of a run the handler takes (of run.count). */
  take: (run: MemReadRun, call: number) => number;
  /** Reads it does not take come to onMemRead (else to onTlp). */
  useOnMemRead: boolean;
  /** Writes come in runs too (onMemWriteRun, taken). */
  useWriteRuns?: boolean;
}

function scenario(tlps: readonly Tlp[], o: Options) {
  const p = linkPair();
  bringUp(p);
  const events: string[] = [];
  const runs: number[] = [];
  let calls = 0;
  p.b.onMemReadRun = (run) => {
    runs.push(run.count);
    const k = o.take(run, calls++);
    for (let i = 0; i < k; i++) {
      events.push(`${run.wide ? 'MRd64' : 'MRd'} ${run.tags[i]!}`);
      p.b.releaseCredits('NP', 0);
    }
    return k;
  };
  if (o.useWriteRuns === true) {
    p.b.onMemWriteRun = (run) => {
      let a = run.address;
      for (let i = 0; i < run.count; i++) {
        events.push(`w ${a}`);
        a += run.dataLengths[i]!;
      }
      return true;
    };
  }
  if (o.useOnMemRead) {
    p.b.onMemRead = (_bytes, v) => {
      events.push(`${v.wide ? 'MRd64' : 'MRd'} ${v.tag}`);
      p.b.releaseCredits('NP', 0);
      return true;
    };
  }
  p.b.onTlp = (t) => {
    events.push(eventOf(t));
    if (t.kind === 'MWr') p.b.releaseCredits('P', t.data!.length);
    else if (t.kind === 'CplD') p.b.releaseCredits('Cpl', t.data!.length);
    else p.b.releaseCredits('NP', 0);
  };
  for (const t of tlps) p.a.sendTlp(t);
  p.clock.run();
  return { p, events, runs };
}

describe('runs of reads', () => {
  it('taking all, none or a prefix, the receiver sees every read once in the order of the TLPs one by one; credits all come back', () => {
    let runsSeen = 0;
    let longRuns = 0;
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 1, maxLength: 60, size: 'max' }),
        fc.constantFrom<'all' | 'none' | 'prefix'>('all', 'none', 'prefix'),
        fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        fc.boolean(),
        (steps, mode, picks, useOnMemRead, useWriteRuns) => {
          const tlps = buildTlps(steps);
          const take = (run: MemReadRun, call: number): number =>
            mode === 'all' ? run.count : mode === 'none' ? 0 : picks[call % picks.length]! % (run.count + 1);
          const got = scenario(tlps, { take, useOnMemRead, useWriteRuns });
          expect(got.events).toEqual(tlps.map(eventOf));
          for (const t of ['PH', 'PD', 'NPH', 'NPD', 'CplH', 'CplD'] as const) expect(got.p.b.creditsHeld(t)).toBe(0);
          const count = (k: string): number => tlps.filter((t) => t.kind === k).length;
          expect(got.p.b.counters.get('tlp.received.MRd')).toBe(count('MRd'));
          expect(got.p.b.counters.get('tlp.received.MRd64')).toBe(count('MRd64'));
          expect(got.p.b.counters.get('tlp.received.MWr')).toBe(count('MWr'));
          expect(got.p.b.counters.get('tlp.received.CfgRd0')).toBe(count('CfgRd0'));
          expect(got.p.b.counters.get('tlp.received.CplD')).toBe(count('CplD'));
          expect(got.p.b.state).toBe('up');
          // Every read with every byte enabled came in some run.
          const whole = tlps.filter((t) => (t.kind === 'MRd' || t.kind === 'MRd64') && t.firstBe === 0xf).length;
          expect(got.runs.reduce((a, b) => a + b, 0)).toBe(whole);
          runsSeen += got.runs.length;
          longRuns += got.runs.filter((n) => n >= 8).length;
        },
      ),
      { numRuns: 300 },
    );
    // The scenarios had runs, long ones among them.
    expect(runsSeen).toBeGreaterThan(1500);
    expect(longRuns).toBeGreaterThan(300);
  });

  it('a stream of 128 contiguous MRd arrives as one run, and a read after a write or another requester starts a new one', () => {
    const tlps: Tlp[] = [];
    for (let i = 0; i < 128; i++) tlps.push(memReadTlp({ requesterId: 0x0100, tag: i + 256, address: 0x40_0000 + i * 512, byteLength: 512 }));
    const got = scenario(tlps, { take: (r) => r.count, useOnMemRead: false });
    expect(got.runs).toEqual([128]);
    expect(got.events).toEqual(tlps.map(eventOf));
    expect(got.p.b.creditsHeld('NPH')).toBe(0);
    expect(got.p.b.counters.get('tlp.received.MRd')).toBe(128);

    // Continuing reads, but a write between them, or another requester: three runs.
    const mixed: Tlp[] = [];
    for (let i = 0; i < 12; i++) {
      if (i === 4) mixed.push(memWriteTlp({ requesterId: 0x0100, address: 0x50_0000, data: new Uint8Array(64) }));
      mixed.push(memReadTlp({ requesterId: i < 8 ? 0x0100 : 0x0101, tag: i, address: 0x40_0000 + i * 512, byteLength: 512 }));
    }
    const m = scenario(mixed, { take: (r) => r.count, useOnMemRead: false });
    expect(m.runs).toEqual([4, 4, 4]);
    expect(m.events).toEqual(mixed.map(eventOf));
  });

  it('the handler sees the run: its address, read length, requester and fields', () => {
    const p = linkPair();
    bringUp(p);
    const seen: unknown[] = [];
    p.b.onMemReadRun = (run) => {
      seen.push({ count: run.count, address: run.address, readLength: run.readLength, wide: run.wide, requesterId: run.requesterId, tc: run.tc, ro: run.ro, tags: [...run.tags.subarray(0, run.count)] });
      for (let i = 0; i < run.count; i++) p.b.releaseCredits('NP', 0);
      return run.count;
    };
    for (let i = 0; i < 3; i++) p.a.sendTlp(memReadTlp({ requesterId: 0x0300, tag: 1020 + i, address: 5 * FOUR_GIB + 0x1000 + i * 256, byteLength: 256, tc: 2, ro: true }));
    p.clock.run();
    expect(seen).toEqual([{ count: 3, address: 5 * FOUR_GIB + 0x1000, readLength: 256, wide: true, requesterId: 0x0300, tc: 2, ro: true, tags: [1020, 1021, 1022] }]);
    expect(p.b.counters.get('tlp.received.MRd64')).toBe(3);
  });

  it('a non-TLP item between reads ends the run before it', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    expect(r.link.state).toBe('up');
    const runs: number[] = [];
    r.link.onMemReadRun = (run) => {
      runs.push(run.count);
      for (let i = 0; i < run.count; i++) r.link.releaseCredits('NP', 0);
      return run.count;
    };
    const rd = (i: number): Uint8Array => item(ITEM.TLP, encodeTlp(memReadTlp({ requesterId: 0x0100, tag: i, address: 0x1000 + i * 64, byteLength: 64 })));
    r.raw.send([batch(1, rd(0), rd(1), item(ITEM.IGNORABLE_MIN, new Uint8Array([1, 2, 3])), rd(2), rd(3), rd(4))]);
    r.clock.run();
    expect(runs).toEqual([2, 3]);
    expect(r.link.counters.get('items.ignored')).toBe(1);
    expect(r.link.counters.get('tlp.received.MRd')).toBe(5);
  });

  it('a run handler that throws loses those reads (none delivered again) but not the link', () => {
    const p = linkPair();
    bringUp(p);
    let calls = 0;
    p.b.onMemReadRun = (run) => {
      calls++;
      if (calls === 1) throw new Error('consumer bug');
      for (let i = 0; i < run.count; i++) p.b.releaseCredits('NP', 0);
      return run.count;
    };
    const delivered: string[] = [];
    p.b.onMemRead = (_b, v) => {
      delivered.push(`MRd ${v.tag}`);
      p.b.releaseCredits('NP', 0);
      return true;
    };
    p.b.onTlp = (t) => {
      delivered.push(eventOf(t));
      p.b.releaseCredits('P', t.data?.length ?? 0);
    };
    for (let i = 0; i < 4; i++) p.a.sendTlp(memReadTlp({ requesterId: 1, tag: i, address: 0x1000 + i * 64, byteLength: 64 }));
    p.a.sendTlp(memWriteTlp({ requesterId: 1, address: 0x9000, data: new Uint8Array(8) }));
    p.clock.run();
    expect(calls).toBe(1);
    expect(p.b.state).toBe('up');
    expect(p.b.counters.get('errors.consumer')).toBe(1);
    // None of the four came again; what follows them still did.
    expect(delivered).toEqual(['w 36864']);
    expect(p.b.counters.get('tlp.received.MRd')).toBe(4);
    // Their NP credits were the handler's to release (it threw before): they stay held.
    expect(p.b.creditsHeld('NPH')).toBe(4);
    // The link goes on: the next run is handed over and taken.
    for (let i = 4; i < 8; i++) p.a.sendTlp(memReadTlp({ requesterId: 1, tag: i, address: 0x1000 + i * 64, byteLength: 64 }));
    p.clock.run();
    expect(calls).toBe(2);
    expect(p.b.counters.get('tlp.received.MRd')).toBe(8);
    expect(p.b.creditsHeld('NPH')).toBe(4);
  });
});
