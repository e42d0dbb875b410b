/**
 * The native completion scan on the endpoint's read path (Requester.scanCompletions, the link's
 * onCompletionScan): the completions it takes must come out exactly as those the JavaScript paths
 * take one by one, and it must take nothing it should not: not a completion with an error, not
 * one for a read that has failed (its buffer is the caller's again), not one after a timeout.
 *
 * Each scenario is run twice over real Links on a virtual clock, with the scan and without it,
 * and everything the caller and the error reporting see must be the same: each read's outcome,
 * every byte of every read buffer (failed reads' included), the completion errors, the counters.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Counters, SeededRng, bulkCopy, isTlpwireError } from '../../src/core/index.js';
import { Link, createMemoryTransportPair } from '../../src/link/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { completionTlp, joinAddress, type CplTlp, type MemTlp } from '../../src/tlp/index.js';
import { TransactionLayer, completionsFor } from '../../src/transaction/index.js';
import { BASE_CONFIG, EP_ID, RC_ID, patterned, runUntilSettled } from './harness.js';

const scanBuilt = bulkCopy().scanCompletions !== undefined;
const why = scanBuilt ? '' : ` (skipped: ${bulkCopy().detail}, without the scan there is nothing to compare)`;

const RAM_BASE = 0x10_0000;
const RAM = patterned(256 * 1024, 11);

/** What the test's completer does to one read request's completions. */
type Fault = 'none' | 'poison' | 'badCount' | 'drop' | 'dup' | 'ur' | 'swap' | 'stray' | 'late';
const FAULTS: readonly Fault[] = ['poison', 'badCount', 'drop', 'dup', 'ur', 'swap', 'stray', 'late'];

interface Scenario {
  seed: number;
  /**
   * Reads: offset into RAM and length; `after`: started once the read before it settles (a new
   * read then takes the place, in the scan's list of buffers, of one that failed).
   */
  reads: { offset: number; length: number; after: boolean }[];
  /** Chance (per mille) that a request's completions get a fault. */
  faultPerMille: number;
}

interface Outcome {
  results: string[];
  dests: string[];
  events: string[];
  counters: Record<string, number>;
  scanned: number;
}

async function runScenario(s: Scenario, useScan: boolean): Promise<Outcome> {
  const clock = new VirtualClock();
  const [tr, te] = createMemoryTransportPair(clock, { latencyNs: 2_000, names: ['rc', 'ep'] });
  const rcLink = new Link(tr, { clock, role: 'rc', counters: new Counters() });
  const epCounters = new Counters();
  const epLink = new Link(te, { clock, role: 'ep', counters: epCounters });
  const ep = new TransactionLayer(epLink, { clock, counters: epCounters, config: { ...BASE_CONFIG, requesterId: EP_ID, tag10Bit: true } });
  let scanned = 0;
  const scan = epLink.onCompletionScan;
  if (!useScan) epLink.onCompletionScan = undefined;
  else if (scan !== undefined) {
    epLink.onCompletionScan = (msg, off, end, mps) => {
      const to = scan(msg, off, end, mps);
      scanned += ep.requester.lastScanCount;
      return to;
    };
  }
  const events: string[] = [];
  ep.onCompletionError = (e) => events.push(`${e.kind} ${e.tag} ${e.reason}`);
  const rng = new SeededRng(s.seed);
  const late: CplTlp[] = [];
  rcLink.onTlp = (tlp) => {
    if (tlp.kind !== 'MRd' && tlp.kind !== 'MRd64') return;
    rcLink.releaseCredits('NP', 0);
    const req = tlp as MemTlp;
    const at = joinAddress(req.addressHi, req.addressLo) - RAM_BASE;
    const cpls = completionsFor(req, RAM.slice(at, at + req.lengthDw * 4), { completerId: RC_ID, rcb: 64, mps: 256, rng });
    const fault: Fault = rng.int(1000) < s.faultPerMille ? FAULTS[rng.int(FAULTS.length)]! : 'none';
    const k = rng.int(cpls.length);
    switch (fault) {
      case 'poison':
        cpls[k] = { ...cpls[k]!, ep: true };
        break;
      case 'badCount':
        cpls[k] = { ...cpls[k]!, byteCount: cpls[k]!.byteCount - 4 };
        break;
      case 'drop':
        cpls.splice(k, 1);
        break;
      case 'dup':
        cpls.splice(k, 0, cpls[k]!);
        break;
      case 'ur':
        {
          const c = cpls[k]!;
          cpls.splice(k, cpls.length - k, completionTlp({ completerId: c.completerId, requesterId: c.requesterId, tag: c.tag, tc: c.tc, status: 'UR', byteCount: c.byteCount, lowerAddress: c.lowerAddress }));
        }
        break;
      case 'swap':
        if (cpls.length > 1) cpls.reverse();
        break;
      case 'stray':
        // A completion for a tag nobody (or someone else) is waiting on.
        cpls.push({ ...cpls[k]!, tag: 256 + rng.int(768) });
        break;
      case 'late':
        // Answered with the next request's completions (completions of different requests may pass each other).
        late.push(...cpls);
        return;
      case 'none':
        break;
    }
    for (const c of cpls) rcLink.sendTlp(c);
    for (let c = late.shift(); c !== undefined; c = late.shift()) rcLink.sendTlp(c);
  };
  rcLink.start();
  epLink.start();
  clock.runUntil(() => rcLink.state === 'up' && epLink.state === 'up', 10_000);
  const dests = s.reads.map((r) => new Uint8Array(r.length).fill(0xee));
  const outcomes: Promise<string>[] = [];
  s.reads.forEach((r, i) => {
    const read = (): Promise<string> =>
      ep.requester.memReadInto(RAM_BASE + r.offset, dests[i]!).then(
        () => 'ok',
        (e: unknown) => (isTlpwireError(e) ? e.code : String(e)),
      );
    const before = outcomes[i - 1];
    outcomes.push(r.after && before !== undefined ? before.then(read) : read());
  });
  const settled = Promise.all(outcomes);
  // Whatever was held back goes out eventually; timeouts end the rest.
  const results = await runUntilSettled(clock, settled);
  for (let c = late.shift(); c !== undefined; c = late.shift()) rcLink.sendTlp(c);
  clock.run({ untilNs: clock.nowNs() + 5_000_000 });
  const counters: Record<string, number> = {};
  for (const [k, v] of Object.entries(epCounters.snapshot())) if (/^(cpl\.|tlp\.|errors\.|rx\.)/.test(k) || k.startsWith('received.Cpl')) counters[k] = v;
  counters['tlpsReceived'] = ep.stats().tlpsReceived;
  return { results, dests: dests.map((d) => Buffer.from(d).toString('hex')), events, counters, scanned };
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  seed: fc.integer({ min: 1, max: 0x7fffffff }),
  reads: fc.array(
    fc.record({ offset: fc.integer({ min: 0, max: 200 * 1024 }), length: fc.integer({ min: 1, max: 9000 }), after: fc.boolean() }),
    { minLength: 1, maxLength: 6 },
  ),
  faultPerMille: fc.constantFrom(0, 0, 20, 100, 400),
});

describe('the native completion scan', () => {
  it.skipIf(!scanBuilt)(`takes exactly what the JavaScript paths take, faults and all: outcomes, every buffer byte, errors and counters agree${why}`, async () => {
    let scannedTotal = 0;
    let faultsSeen = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (s) => {
        const withScan = await runScenario(s, true);
        const without = await runScenario(s, false);
        expect(without.scanned).toBe(0);
        expect(withScan.results).toEqual(without.results);
        expect(withScan.events).toEqual(without.events);
        expect(withScan.counters).toEqual(without.counters);
        expect(withScan.dests).toEqual(without.dests);
        // Reads that succeeded hold RAM's bytes.
        s.reads.forEach((r, i) => {
          if (withScan.results[i] === 'ok') expect(withScan.dests[i]).toBe(Buffer.from(RAM.subarray(r.offset, r.offset + r.length)).toString('hex'));
        });
        scannedTotal += withScan.scanned;
        faultsSeen += withScan.events.length;
      }),
      { numRuns: 150, seed: 20261124 },
    );
    // The comparison meant something: the scan took completions, and faults were met.
    expect(scannedTotal).toBeGreaterThan(1000);
    expect(faultsSeen).toBeGreaterThan(10);
  }, 120_000);

  it.skipIf(!scanBuilt)(`completions still arriving for a read that failed are copied nowhere, even once a new read has taken its place${why}`, async () => {
    for (const useScan of [true, false]) {
      const clock = new VirtualClock();
      const [tr, te] = createMemoryTransportPair(clock, { latencyNs: 2_000, names: ['rc', 'ep'] });
      const rcLink = new Link(tr, { clock, role: 'rc', counters: new Counters() });
      const epLink = new Link(te, { clock, role: 'ep', counters: new Counters() });
      const ep = new TransactionLayer(epLink, { clock, config: { ...BASE_CONFIG, requesterId: EP_ID, tag10Bit: true } });
      if (!useScan) epLink.onCompletionScan = undefined;
      ep.onCompletionError = () => {};
      const held: CplTlp[] = [];
      let n = 0;
      rcLink.onTlp = (tlp) => {
        if (tlp.kind !== 'MRd') return;
        rcLink.releaseCredits('NP', 0);
        const req = tlp as MemTlp;
        const at = joinAddress(req.addressHi, req.addressLo) - RAM_BASE;
        const cpls = completionsFor(req, RAM.slice(at, at + req.lengthDw * 4), { completerId: RC_ID, rcb: 64, mps: 256 });
        n++;
        // Read A's first request: poisoned (A fails); its second: held back. Read B's: answered,
        // and A's second half goes right after B's second request's completions, in the same
        // batch (where the scan looks), after B has written that part of its buffer.
        if (n === 1) rcLink.sendTlp({ ...cpls[0]!, ep: true });
        else if (n === 2) held.push(...cpls);
        else for (const c of cpls) rcLink.sendTlp(c);
        if (n === 4) for (const c of held) rcLink.sendTlp(c);
      };
      rcLink.start();
      epLink.start();
      clock.runUntil(() => rcLink.state === 'up' && epLink.state === 'up', 10_000);
      const destA = new Uint8Array(1024).fill(0xaa);
      const a = ep.requester.memReadInto(RAM_BASE, destA).catch((e: unknown) => (isTlpwireError(e) ? e.code : 'other'));
      expect(await runUntilSettled(clock, a)).toBe('ERR_CPL_POISONED');
      const destB = new Uint8Array(4096).fill(0xbb);
      await runUntilSettled(clock, ep.requester.memReadInto(RAM_BASE + 65536, destB));
      clock.run({ untilNs: clock.nowNs() + 100_000 });
      expect(n).toBe(10);
      expect(held.length).toBeGreaterThan(0);
      expect(Buffer.from(destB).equals(Buffer.from(RAM.subarray(65536, 65536 + 4096)))).toBe(true);
      expect(destA.subarray(512).every((b) => b === 0xaa)).toBe(true);
    }
  });
});
