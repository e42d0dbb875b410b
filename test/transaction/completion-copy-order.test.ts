/**
 * Memory that a received batch both writes (the data of completions for our reads) and reads
 * (reads we answer) sees those in the batch's order, whichever way each goes: the JavaScript
 * paths defer their copies to the end of the batch, the native ones (the completion scan,
 * completionRun) copy at once, so the link runs what is deferred before each native pass.
 */
import { describe, expect, it } from 'vitest';
import { Counters, bulkCopy } from '../../src/core/index.js';
import { Link, createMemoryTransportPair } from '../../src/link/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { memReadTlp, type CplTlp, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { TransactionLayer, completionsFor, type ByteSpan, type CompleterTarget } from '../../src/transaction/index.js';
import { BASE_CONFIG, EP_ID, RC_ID, runUntilSettled } from './harness.js';

/** RAM at 0 read by copy only (read: the completer takes the bytes when it answers). */
class CopyRam implements CompleterTarget {
  constructor(readonly bytes: Uint8Array) {}
  claims(address: number, length: number): boolean {
    return address + length <= this.bytes.length;
  }
  read(address: number, length: number): Uint8Array {
    return this.bytes.slice(address, address + length);
  }
  write(): void {}
}

/** The same RAM read in place as well (readSpan: the fast paths, completion runs included). */
class SpanRam extends CopyRam {
  readSpan(address: number, length: number, _requesterId: number, out: ByteSpan): boolean {
    if (address + length > this.bytes.length) return false;
    out.bytes = this.bytes;
    out.offset = address;
    return true;
  }
}

const OLD = 0x11;
const NEW = 0x22;
const native = bulkCopy();
const { completionRun: _run, ...withoutRun } = native;

/**
 * The root complex reads 256 bytes of the endpoint's BAR into its own RAM at 0x1000 (which holds
 * OLD); the endpoint, on that MRd, sends in one batch the answer (NEW) and reads of the RC's RAM
 * at 0x1000 and 0x1100, before the answer or after it. Returns what the endpoint's reads got.
 */
async function run(readsFirst: boolean, scan: boolean, completionRun: boolean, inPlace: boolean): Promise<string[]> {
  const clock = new VirtualClock();
  const [tr, te] = createMemoryTransportPair(clock, { latencyNs: 2_000, names: ['rc', 'ep'] });
  const rcLink = new Link(tr, { clock, role: 'rc', counters: new Counters(), bulkCopy: completionRun ? native : withoutRun });
  const epLink = new Link(te, { clock, role: 'ep', counters: new Counters() });
  const rc = new TransactionLayer(rcLink, { clock, config: { ...BASE_CONFIG, requesterId: RC_ID } });
  const ram = new Uint8Array(0x4000).fill(OLD);
  rc.completer.addMemoryTarget(inPlace ? new SpanRam(ram) : new CopyRam(ram));
  if (!scan) rcLink.onCompletionScan = undefined;
  const got = [new Uint8Array(256), new Uint8Array(256)];
  epLink.onTlp = (tlp: Tlp) => {
    if (tlp.kind === 'CplD') {
      const c = tlp as CplTlp;
      got[c.tag - 1]!.set(c.data!.subarray(0, Math.min(c.data!.length, c.byteCount)), 256 - c.byteCount);
      return;
    }
    if (tlp.kind !== 'MRd') return;
    epLink.releaseCredits('NP', 0);
    const answer = completionsFor(tlp as MemTlp, new Uint8Array(256).fill(NEW), { completerId: EP_ID, rcb: 64, mps: 64 });
    // Two reads one after another: the root complex answers them as a run.
    const reads = [1, 2].map((tag) => memReadTlp({ requesterId: EP_ID, tag, address: 0x1000 + (tag - 1) * 256, byteLength: 256 }));
    for (const t of readsFirst ? [...reads, ...answer] : [...answer, ...reads]) epLink.sendTlp(t);
  };
  rcLink.start();
  epLink.start();
  clock.runUntil(() => rcLink.state === 'up' && epLink.state === 'up', 10_000);
  await runUntilSettled(clock, rc.requester.memReadInto(0x8000_0000, ram.subarray(0x1000, 0x1100)));
  clock.run({ untilNs: clock.nowNs() + 1_000_000 });
  expect(ram.subarray(0x1000, 0x1100).every((b) => b === NEW)).toBe(true);
  const label = (b: Uint8Array): string => (b.every((x) => x === OLD) ? 'old' : b.every((x) => x === NEW) ? 'new' : `torn ${Buffer.from(b).toString('hex')}`);
  return got.map(label);
}

describe('completion data received and reads answered in one batch keep their order', () => {
  const ways: [string, boolean, boolean][] = [
    ['all in JavaScript', false, false],
    ['with the completion scan', true, false],
    ['with completionRun', false, true],
    ['with both', true, true],
  ];
  for (const [name, scan, completionRun] of ways) {
    for (const inPlace of [true, false]) {
      const target = inPlace ? 'RAM read in place' : 'RAM read by copy';
      it(`${name}, ${target}${scan && native.scanCompletions === undefined ? ' (no native scan here: JavaScript)' : ''}${completionRun && native.completionRun === undefined ? ' (no native completionRun here: JavaScript)' : ''}`, async () => {
        // Reads before the data: they see what was there; after it: the data.
        expect(await run(true, scan, completionRun, inPlace)).toEqual(['old', 'old']);
        expect(await run(false, scan, completionRun, inPlace)).toEqual(['new', 'old']);
      });
    }
  }
});
