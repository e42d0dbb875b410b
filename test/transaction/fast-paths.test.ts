/**
 * The DMA fast paths end to end: two transaction layers over real Links (in-memory transport,
 * virtual clock), where whole-DW writes go as write jobs and read completions straight from the
 * target, and the link hands MWr/CplD to the layers without TLP objects. What must hold: the
 * same bytes land, the same TLPs cross the wire as without the fast paths, ordering holds while
 * jobs wait for credits, and congestion or link loss falls back or fails as before.
 */
import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import { type CreditValues, type CreditScales } from '../../src/link/index.js';
import { decodeTlp, memWriteTlp, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { forEachEnabledRun, type ByteSpan, type CompleterTarget } from '../../src/transaction/index.js';
import { linkedPair, patterned, type LinkedPair } from './harness.js';

const RAM_BASE = 0x10_0000;

/** RAM with the optional fast-path methods, counting which ones were used. */
class FastRam implements CompleterTarget {
  readonly bytes: Uint8Array;
  readSpans = 0;
  writeFroms = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  claims(address: number, length: number): boolean {
    return address >= RAM_BASE && address + length <= RAM_BASE + this.bytes.length;
  }
  reads = 0;
  read(address: number, length: number): Uint8Array {
    this.reads++;
    return this.bytes.slice(address - RAM_BASE, address - RAM_BASE + length);
  }
  /** readSpan declines (as for a range it cannot hand over in place). */
  declineSpans = false;
  readSpan(address: number, _length: number, _requesterId: number, out: ByteSpan): boolean {
    this.readSpans++;
    if (this.declineSpans) return false;
    out.bytes = this.bytes;
    out.offset = address - RAM_BASE;
    return true;
  }
  write(address: number, data: Uint8Array, firstBe: number, lastBe: number): void {
    forEachEnabledRun(address, data, firstBe, lastBe, (a, b) => this.bytes.set(b, a - RAM_BASE));
  }
  writeFrom(address: number, src: Uint8Array, srcOffset: number, length: number, firstBe: number, lastBe: number): void {
    this.writeFroms++;
    this.write(address, src.subarray(srcOffset, srcOffset + length), firstBe, lastBe);
  }
}

interface Setup extends LinkedPair {
  ram: FastRam;
  /** Every TLP the endpoint's link sent, decoded from the wire. */
  epSent: Tlp[];
  /** The kinds of the TLPs in each batch the endpoint's link sent. */
  epBatches: string[][];
}

async function setup(
  o: {
    rcCredits?: Partial<CreditValues>;
    rcScales?: Partial<CreditScales>;
    epCredits?: Partial<CreditValues>;
    highWaterBytes?: number;
    latencyNs?: number;
    /** A memory target added before RAM (so it wins where both claim). */
    beforeRam?: CompleterTarget;
  } = {},
): Promise<Setup> {
  const epSent: Tlp[] = [];
  const epBatches: string[][] = [];
  const ram = new FastRam(1 << 20);
  const { beforeRam, ...link } = o;
  const pair = linkedPair({
    ...link,
    rcTargets: beforeRam === undefined ? [ram] : [beforeRam, ram],
    // A tap on the endpoint's wire: decode every TLP item of every batch it sends.
    tap: (_rc, te) => {
      const send = te.send.bind(te);
      te.send = (chunks, done) => {
        const kinds: string[] = [];
        epBatches.push(kinds);
        for (const c of chunks) {
          for (let off = 4; off < c.length; ) {
            const type = c[off]!;
            const len = (c[off + 2]! << 8) | c[off + 3]!;
            if (type === 0x01) {
              const tlp = decodeTlp(Uint8Array.from(c.subarray(off + 4, off + 4 + len)));
              epSent.push(tlp);
              kinds.push(tlp.kind);
            }
            off += 4 + len;
          }
        }
        return send(chunks, done);
      };
    },
  });
  return { ...pair, ram, epSent, epBatches };
}

/** The MWr TLPs the requester's slow path makes for this write (MPS 256). */
function expectedWrites(address: number, data: Uint8Array): MemTlp[] {
  const out: MemTlp[] = [];
  for (let a = address; a < address + data.length; ) {
    const e = Math.min(address + data.length, a - (a % 256) + 256);
    out.push(memWriteTlp({ requesterId: 0x0100, address: a, data: data.slice(a - address, e - address) }));
    a = e;
  }
  return out;
}

describe('DMA fast paths over a real link', () => {
  it('writes and reads of any size and alignment land and come back, and the wire carries the TLPs the slow path would', async () => {
    const s = await setup();
    const cases: [number, number][] = [
      [RAM_BASE, 65536],
      [RAM_BASE + 0x10004, 1000],
      [RAM_BASE + 0x20001, 777], // unaligned: the slow path
      [RAM_BASE + 0x30ff0, 300],
      [RAM_BASE + 0x40000, 4],
    ];
    for (const [i, [address, length]] of cases.entries()) {
      const data = patterned(length, i + 3);
      s.epSent.length = 0;
      await s.settle(s.ep.requester.memWrite(address, data));
      s.clock.run(); // deliver what was sent
      expect(s.ram.bytes.subarray(address - RAM_BASE, address - RAM_BASE + length)).toEqual(data);
      const writes = s.epSent.filter((t) => t.kind === 'MWr');
      if (address % 4 === 0 && length % 4 === 0) expect(writes).toEqual(expectedWrites(address, data));
      expect(await s.settle(s.ep.requester.memRead(address, length))).toEqual(data);
    }
    expect(s.ram.writeFroms).toBeGreaterThan(0);
    expect(s.ram.readSpans).toBeGreaterThan(0);
    // Every TLP was counted on both sides.
    expect(s.rcLink.counters.get('tlp.received.MWr')).toBe(s.epLink.counters.get('tlp.sent.MWr'));
    expect(s.epLink.counters.get('tlp.received.CplD')).toBe(s.rcLink.counters.get('tlp.sent.CplD'));
  });

  it('writes that wait for credits keep their order with later writes and reads, and their bytes are theirs', async () => {
    // 4 KiB of posted credits: most of a 64 KiB write waits as a job.
    const s = await setup({ rcCredits: { PH: 16, PD: 256 }, rcScales: { PH: 1, PD: 1 } });
    const a = patterned(65536, 1);
    const b = patterned(65536, 2);
    const buf = a.slice();
    const w1 = s.ep.requester.memWrite(RAM_BASE, buf);
    buf.fill(0); // memWrite copied what it could not send at once
    expect(s.ep.queues.length('P')).toBeGreaterThan(0);
    const w2 = s.ep.requester.memWrite(RAM_BASE + 32768, b.subarray(0, 32768));
    const r = s.ep.requester.memRead(RAM_BASE, 65536);
    const [, , got] = await s.settle(Promise.all([w1, w2, r]));
    const want = a.slice();
    want.set(b.subarray(0, 32768), 32768);
    expect(got).toEqual(want);
    expect(s.ep.queues.length()).toBe(0);
    expect(s.epLink.counters.get('stalls.credits')).toBeGreaterThan(0);
  });

  it('zeroCopy writes that wait for credits are sent from the caller\'s buffer, not a copy', async () => {
    const s = await setup({ rcCredits: { PH: 16, PD: 256 }, rcScales: { PH: 1, PD: 1 } });
    const a = patterned(65536, 3);
    const buf = a.slice();
    const w = s.ep.requester.memWrite(RAM_BASE, buf, { zeroCopy: true });
    expect(s.ep.queues.length('P')).toBeGreaterThan(0);
    // What has not been sent yet goes from buf as it is when it is sent: the second half changes.
    buf.fill(0xcd, 32768);
    await s.settle(w);
    const got = await s.settle(s.ep.requester.memRead(RAM_BASE, 65536));
    expect(got.subarray(0, 4096)).toEqual(a.subarray(0, 4096)); // sent at once, before the change
    expect(got.subarray(32768).every((x) => x === 0xcd)).toBe(true);
    // Without zeroCopy the same write keeps the bytes of the call (the test above).
    const buf2 = a.slice();
    const w2 = s.ep.requester.memWrite(RAM_BASE, buf2);
    buf2.fill(0xcd);
    await s.settle(w2);
    expect(await s.settle(s.ep.requester.memRead(RAM_BASE, 65536))).toEqual(a);
  });

  it('an earlier target wins a read over one that reads in place, and a target that declines readSpan still decides by claims', async () => {
    // A register block over the first 4 KiB of RAM, added before it: it answers with 0x77.
    const reads: number[] = [];
    const regs: CompleterTarget = {
      claims: (a, n) => a >= RAM_BASE && a + n <= RAM_BASE + 4096,
      read: (a, n) => {
        reads.push(a);
        return new Uint8Array(n).fill(0x77);
      },
      write: () => {},
    };
    const s = await setup({ beforeRam: regs });
    s.ram.bytes.set(patterned(65536, 8), 0);
    const got = await s.settle(s.ep.requester.memRead(RAM_BASE + 512, 256));
    expect(got.every((b) => b === 0x77)).toBe(true);
    expect(reads).toEqual([RAM_BASE + 512]);
    expect(s.ram.readSpans).toBe(0);
    // RAM that declines readSpan (here: every time) is still claimed and read through read().
    const spans = s.ram.readSpans;
    s.ram.declineSpans = true;
    const more = await s.settle(s.ep.requester.memRead(RAM_BASE + 8192, 1024));
    expect(more).toEqual(patterned(65536, 8).subarray(8192, 9216));
    expect(s.ram.readSpans).toBeGreaterThan(spans);
  });

  it('with finite completion credits at the requester, completions wait for them and reads still complete', async () => {
    // 8 CplH and 256 CplD credits (4 KiB, one largest payload): a 64 KiB read's 256 completions go a few at a time.
    const s = await setup({ epCredits: { CplH: 8, CplD: 256 } });
    const data = patterned(4 * 65536, 6);
    s.ram.bytes.set(data, 0);
    const reads: Promise<Uint8Array>[] = [];
    for (let i = 0; i < 4; i++) reads.push(s.ep.requester.memRead(RAM_BASE + i * 65536, 65536));
    const got = await s.settle(Promise.all(reads));
    for (let i = 0; i < 4; i++) expect(got[i]).toEqual(data.subarray(i * 65536, (i + 1) * 65536));
    expect(s.rcLink.counters.get('stalls.credits')).toBeGreaterThan(0);
    // Every credit comes back (the last update leaves on the link's update timer).
    s.clock.runUntil(() => s.rcLink.creditsAvailable('CplH') === 8 && s.rcLink.creditsAvailable('CplD') === 256, 100_000);
    expect(s.rcLink.creditsAvailable('CplH')).toBe(8);
    expect(s.rcLink.creditsAvailable('CplD')).toBe(256);
  });

  it('completions fall back to queued TLPs when the transport is congested, and reads still complete', async () => {
    const s = await setup({ highWaterBytes: 2048, latencyNs: 20_000 });
    const data = patterned(256 * 1024, 5);
    s.ram.bytes.set(data, 0);
    const reads: Promise<Uint8Array>[] = [];
    for (let i = 0; i < 4; i++) reads.push(s.ep.requester.memRead(RAM_BASE + i * 65536, 65536));
    const got = await s.settle(Promise.all(reads));
    for (let i = 0; i < 4; i++) expect(got[i]).toEqual(data.subarray(i * 65536, (i + 1) * 65536));
    expect(s.rcLink.counters.get('stalls.transport')).toBeGreaterThan(0);
  });

  it('completions sent from RAM in place carry the bytes of when the read was answered, also those that had to wait', async () => {
    const s = await setup({ highWaterBytes: 2048, latencyNs: 20_000 });
    const data = patterned(256 * 1024, 6);
    s.ram.bytes.set(data, 0);
    const reads: Promise<Uint8Array>[] = [];
    for (let i = 0; i < 4; i++) reads.push(s.ep.requester.memRead(RAM_BASE + i * 65536, 65536));
    // Every MRd (256 KiB / MRRS 512) answered, some of the completions still waiting in the queues:
    const requests = (256 * 1024) / 512;
    expect(s.clock.runUntil(() => s.rcLink.counters.get('tlp.received.MRd') === requests)).toBe(true);
    expect(s.rcLink.counters.get('tlp.sent.CplD')).toBeLessThan(requests * 2);
    // ... then the memory changes: what was read must not.
    s.ram.bytes.fill(0xee, 0, data.length);
    const got = await s.settle(Promise.all(reads));
    for (let i = 0; i < 4; i++) expect(got[i]).toEqual(data.subarray(i * 65536, (i + 1) * 65536));
    // Every read was answered in place (runs of reads ask readSpan once for many).
    expect(s.ram.reads).toBe(0);
    expect(s.ram.readSpans).toBeGreaterThan(0);
    expect(s.ram.readSpans).toBeLessThanOrEqual(requests);
  });

  it('a read answered before a write of the same batch carries what memory held when it was answered', async () => {
    // The root complex copies read data into its completions late (Link's deferred copies); a
    // posted write later in the same received batch must not get in first: in-order links do
    // not reorder by themselves.
    const s = await setup();
    const old = patterned(4096, 7);
    const fresh = patterned(4096, 8);
    s.ram.bytes.set(old, 0x1000);
    s.epBatches.length = 0;
    const read = s.ep.requester.memRead(RAM_BASE + 0x1000, 4096);
    const write = s.ep.requester.memWrite(RAM_BASE + 0x1000, fresh);
    const [got] = await s.settle(Promise.all([read, write]));
    expect(s.epBatches.some((b) => b.indexOf('MRd') >= 0 && b.lastIndexOf('MWr') > b.indexOf('MRd'))).toBe(true);
    expect(got).toEqual(old);
    expect(s.ram.bytes.subarray(0x1000, 0x2000)).toEqual(fresh);
  });

  it('a write waiting for credits fails with ERR_LINK_DOWN when the link goes down', async () => {
    const s = await setup({ rcCredits: { PH: 16, PD: 256 }, rcScales: { PH: 1, PD: 1 } });
    const w = s.ep.requester.memWrite(RAM_BASE, patterned(65536, 9));
    w.catch(() => {});
    expect(s.ep.queues.length('P')).toBeGreaterThan(0);
    s.epLink.close('test');
    await expect(s.settle(w)).rejects.toSatisfy((e: unknown) => e instanceof TlpwireError && e.code === 'ERR_LINK_DOWN');
    expect(s.ep.queues.length()).toBe(0);
  });
});
