/**
 * Runs of reads end to end: an endpoint's transaction layer reads the root complex's memory over
 * real Links (in-memory transport, virtual clock). The root complex's link hands consecutive MRd
 * to Completer.handleMemReadRun, which answers them from a target's memory in place. What must
 * hold: the bytes come back right, the completions on the wire are exactly those the reads one by
 * one would make, an earlier target still wins its range, a target that only hands over ranges
 * within its pages still answers in place, congestion changes nothing a requester can see, and the
 * requester sends a read's requests in 4 KiB bursts without starving single requests.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeTlp, type Tlp } from '../../src/tlp/index.js';
import { forEachEnabledRun, type ByteSpan, type CompleterTarget, type TransactionConfig } from '../../src/transaction/index.js';
import { linkedPair, patterned, tapTlps, type LinkedPair } from './harness.js';

const RAM_BASE = 0x10_0000;
const RAM_BYTES = 1 << 20;

/**
 * RAM that can be read in place, as host memory is: readSpan hands over ranges it holds, but
 * (when `pageBytes` is set) only within one of its pages, as a host's RAM mapped page by page;
 * it declines anything else and claims/read serve it. Counts how it was asked.
 */
class PagedRam implements CompleterTarget {
  readonly bytes: Uint8Array;
  readSpans = 0;
  spansDeclined = 0;
  reads = 0;
  constructor(
    data: Uint8Array,
    private readonly pageBytes = 0,
  ) {
    this.bytes = data;
  }
  claims(address: number, length: number): boolean {
    return address >= RAM_BASE && address + length <= RAM_BASE + this.bytes.length;
  }
  read(address: number, length: number): Uint8Array {
    this.reads++;
    return this.bytes.slice(address - RAM_BASE, address - RAM_BASE + length);
  }
  readSpan(address: number, length: number, _requesterId: number, out: ByteSpan): boolean {
    this.readSpans++;
    const crossesPage = this.pageBytes > 0 && Math.floor((address - RAM_BASE) / this.pageBytes) !== Math.floor((address - RAM_BASE + length - 1) / this.pageBytes);
    if (!this.claims(address, length) || crossesPage) {
      this.spansDeclined++;
      return false;
    }
    out.bytes = this.bytes;
    out.offset = address - RAM_BASE;
    return true;
  }
  write(address: number, data: Uint8Array, firstBe: number, lastBe: number): void {
    forEachEnabledRun(address, data, firstBe, lastBe, (a, b) => this.bytes.set(b, a - RAM_BASE));
  }
}

/**
 * A 4 KiB block at `start` (a device's memory, say), added before RAM so that it wins there:
 * reads give `fill`. It may say which ranges are none of its (disjoint) and be read in place.
 */
class Block implements CompleterTarget {
  reads = 0;
  readSpans = 0;
  readonly data: Uint8Array;
  disjoint?: (address: number, length: number) => boolean;
  readSpan?: (address: number, length: number, requesterId: number, out: ByteSpan) => boolean;
  constructor(
    readonly start: number,
    fill: number,
    o: { disjoint: boolean; inPlace: boolean },
  ) {
    this.data = new Uint8Array(4096).fill(fill);
    if (o.disjoint) this.disjoint = (address, length) => address + length <= this.start || address >= this.start + 4096;
    if (o.inPlace) {
      this.readSpan = (address, length, _requesterId, out) => {
        this.readSpans++;
        if (!this.claims(address, length)) return false;
        out.bytes = this.data;
        out.offset = address - this.start;
        return true;
      };
    }
  }
  claims(address: number, length: number): boolean {
    return address >= this.start && address + length <= this.start + 4096;
  }
  read(address: number, length: number): Uint8Array {
    this.reads++;
    return this.data.slice(address - this.start, address - this.start + length);
  }
  write(): void {}
}

interface Setup extends LinkedPair {
  ram: PagedRam;
  /** The TLPs the root complex's link sent, as wire bytes (hex), in order. */
  rcWire: string[];
  /** Every TLP the endpoint's link sent, decoded from the wire. */
  epSent: Tlp[];
  /** Calls of the root complex's onMemReadRun: run length and how many it took. */
  runs: { count: number; taken: number }[];
  /** MRd the root complex's link delivered one by one (onMemRead). */
  oneByOne: () => number;
}

interface SetupOptions {
  highWaterBytes?: number;
  latencyNs?: number;
  /** The root complex answers reads one by one (no onMemReadRun). */
  noRuns?: boolean;
  /** Targets added before RAM (they win where they claim). */
  before?: CompleterTarget[];
  /** RAM's readSpan declines ranges that cross these pages. */
  ramPageBytes?: number;
  ep?: Partial<TransactionConfig>;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

async function setup(o: SetupOptions = {}): Promise<Setup> {
  const rcWire: string[] = [];
  const epSent: Tlp[] = [];
  const ram = new PagedRam(patterned(RAM_BYTES, 11), o.ramPageBytes ?? 0);
  const pair = linkedPair({
    ...(o.highWaterBytes === undefined ? {} : { highWaterBytes: o.highWaterBytes }),
    ...(o.latencyNs === undefined ? {} : { latencyNs: o.latencyNs }),
    ...(o.ep === undefined ? {} : { epConfig: o.ep }),
    rcTargets: [...(o.before ?? []), ram],
    tap: (tr, te) => {
      tapTlps(tr, (b) => rcWire.push(hex(b)));
      tapTlps(te, (b) => epSent.push(decodeTlp(b)));
    },
  });
  const { rcLink } = pair;
  pair.rc.completer.setConfigTarget({ configRead: (_bdf, register) => 0x1000 + register, configWrite: () => true });
  const runs: { count: number; taken: number }[] = [];
  const inner = rcLink.onMemReadRun;
  expect(inner).toBeDefined();
  // Count what the run handler is given and takes, or answer every read one by one.
  rcLink.onMemReadRun =
    o.noRuns === true || inner === undefined
      ? undefined
      : (run) => {
          const count = run.count;
          const took = inner(run);
          runs.push({ count, taken: took });
          return took;
        };
  let oneByOne = 0;
  const innerRead = rcLink.onMemRead!;
  rcLink.onMemRead = (bytes, v) => {
    oneByOne++;
    return innerRead(bytes, v);
  };
  return { ...pair, ram, rcWire, epSent, runs, oneByOne: () => oneByOne };
}

const ramAt = (s: Setup, address: number, length: number): Uint8Array => s.ram.bytes.slice(address - RAM_BASE, address - RAM_BASE + length);
const taken = (s: Setup): number => s.runs.reduce((n, r) => n + r.taken, 0);

describe('runs of reads over a real link', () => {
  it('reads of any size and alignment come back right, with completions byte for byte those of the reads one by one', async () => {
    const readArb = fc.record({
      offset: fc.oneof(fc.integer({ min: 0, max: 0xe_0000 }), fc.integer({ min: 0, max: 0xe0 }).map((k) => k * 4096), fc.integer({ min: 0, max: 0x3800 }).map((k) => k * 64)),
      length: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 9000 }), fc.integer({ min: 1, max: 16 }).map((k) => k * 4096), fc.integer({ min: 1, max: 64 }).map((k) => k * 512)),
    });
    let runsTaken = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(readArb, { minLength: 1, maxLength: 4 }), async (reads) => {
        const wires: string[][] = [];
        const oneByOne: number[] = [];
        for (const noRuns of [false, true]) {
          const s = await setup({ noRuns });
          const got = await s.settle(Promise.all(reads.map((r) => s.ep.requester.memRead(RAM_BASE + r.offset, r.length))));
          for (const [i, r] of reads.entries()) expect(got[i]).toEqual(ramAt(s, RAM_BASE + r.offset, r.length));
          expect(s.ram.reads).toBe(0);
          // Each read's NP credit came back once its completions had left.
          expect(s.rcLink.creditsHeld('NPH')).toBe(0);
          wires.push(s.rcWire);
          oneByOne.push(s.oneByOne());
          if (!noRuns) runsTaken += taken(s);
          else expect(s.runs).toEqual([]);
        }
        expect(wires[0]!.length).toBeGreaterThan(0);
        expect(wires[0]).toEqual(wires[1]);
        expect(oneByOne[0]).toBeLessThanOrEqual(oneByOne[1]!);
      }),
      { numRuns: 15 },
    );
    // The runs did answer reads (most of them: only reads with bytes left out go one by one).
    expect(runsTaken).toBeGreaterThan(100);
  });

  it('an earlier target that says what is none of its own answers its block of a run; RAM the rest', async () => {
    for (const inPlace of [false, true]) {
      const block = new Block(RAM_BASE + 0x2000, 0x77, { disjoint: true, inPlace });
      const s = await setup({ before: [block] });
      const got = await s.settle(s.ep.requester.memRead(RAM_BASE, 16384));
      const want = ramAt(s, RAM_BASE, 16384);
      want.fill(0x77, 0x2000, 0x3000);
      expect(got).toEqual(want);
      expect(s.runs.map((r) => r.count)).toEqual([32]);
      if (inPlace) {
        // Each part in place, by its target: the whole run taken.
        expect(taken(s)).toBe(32);
        expect(s.oneByOne()).toBe(0);
        expect(block.reads).toBe(0);
        expect(block.readSpans).toBeGreaterThan(0);
      } else {
        // The run stops at the block it cannot read in place: its reads and the rest go one by one.
        expect(taken(s)).toBe(16);
        expect(s.oneByOne()).toBe(16);
        expect(block.reads).toBe(8);
      }
      expect(s.ram.reads).toBe(0);
    }
  });

  it('an earlier target that does not say what is none of its own makes the run go one by one', async () => {
    for (const inPlace of [false, true]) {
      const block = new Block(RAM_BASE + 0x2000, 0x77, { disjoint: false, inPlace });
      const s = await setup({ before: [block] });
      const got = await s.settle(s.ep.requester.memRead(RAM_BASE, 16384));
      const want = ramAt(s, RAM_BASE, 16384);
      want.fill(0x77, 0x2000, 0x3000);
      expect(got).toEqual(want);
      expect(s.runs.map((r) => r.count)).toEqual([32]);
      expect(taken(s)).toBe(0);
      expect(s.oneByOne()).toBe(32);
      expect(block.reads + block.readSpans).toBeGreaterThanOrEqual(8);
    }
  });

  it('RAM that reads in place only within its 64 KiB pages still answers a run across a page boundary in place, 4 KiB at a time', async () => {
    const s = await setup({ ramPageBytes: 65536 });
    const address = RAM_BASE + 0x1_e000; // 16 KiB: 8 KiB each side of RAM_BASE + 0x2_0000
    const got = await s.settle(s.ep.requester.memRead(address, 16384));
    expect(got).toEqual(ramAt(s, address, 16384));
    expect(s.runs.map((r) => r.count)).toEqual([32]);
    expect(taken(s)).toBe(32);
    expect(s.oneByOne()).toBe(0);
    expect(s.ram.reads).toBe(0);
    // It declined what crosses a page (the whole run, the rest from the second block) and
    // handed over each part: far fewer questions than reads.
    expect(s.ram.spansDeclined).toBeGreaterThan(0);
    expect(s.ram.readSpans).toBeLessThan(8);
  });

  it('under congestion, reads complete with the bytes memory held when they were answered', async () => {
    const s = await setup({ highWaterBytes: 2048, latencyNs: 20_000 });
    const reads: Promise<Uint8Array>[] = [];
    const want = ramAt(s, RAM_BASE, 4 * 65536);
    for (let i = 0; i < 4; i++) reads.push(s.ep.requester.memRead(RAM_BASE + i * 65536, 65536));
    // Every MRd answered (256 KiB / MRRS 512), some completions still waiting in the queues ...
    const requests = (4 * 65536) / 512;
    expect(s.clock.runUntil(() => s.rcLink.counters.get('tlp.received.MRd') === requests)).toBe(true);
    expect(s.rcLink.counters.get('tlp.sent.CplD')).toBeLessThan(requests * 2);
    // ... then memory changes: what was read must not.
    s.ram.bytes.fill(0xee, 0, 4 * 65536);
    const got = await s.settle(Promise.all(reads));
    for (let i = 0; i < 4; i++) expect(got[i]).toEqual(want.subarray(i * 65536, (i + 1) * 65536));
    expect(s.rcLink.counters.get('stalls.transport')).toBeGreaterThan(0);
    expect(s.ram.reads).toBe(0);
    expect(s.rcLink.creditsHeld('NPH')).toBe(0);
    // Runs answered reads, and some stopped part-way when the link would take no more.
    expect(taken(s)).toBeGreaterThan(0);
    expect(s.runs.some((r) => r.taken < r.count)).toBe(true);
  });

  it('the requester sends a read 4 KiB at a time, taking turns between reads, and a single request waits one turn at most', async () => {
    // 128 tags, all taken by a 64 KiB read; two 16 KiB reads and a config read wait for them.
    const s = await setup({ ep: { maxOutstandingTags: 128 } });
    const blocker = s.ep.requester.memRead(RAM_BASE + 0x8_0000, 65536);
    const a = s.ep.requester.memRead(RAM_BASE, 16384);
    const b = s.ep.requester.memRead(RAM_BASE + 0x4_0000, 16384);
    expect(s.ep.requester.stats().waitingForTags).toBe(2);
    const cfg = s.ep.requester.cfgRead(0x0000, 4);
    const [, ga, gb, gcfg] = await s.settle(Promise.all([blocker, a, b, cfg]));
    expect(ga).toEqual(ramAt(s, RAM_BASE, 16384));
    expect(gb).toEqual(ramAt(s, RAM_BASE + 0x4_0000, 16384));
    expect(gcfg).toBe(0x1004);
    // What went out once the blocker's tags came back: A's and B's MRd and the CfgRd0.
    const sent = s.epSent.filter((t) => t.kind === 'CfgRd0' || ((t.kind === 'MRd' || t.kind === 'MRd64') && t.addressLo < RAM_BASE + 0x8_0000));
    const op = (t: Tlp): string => (t.kind === 'CfgRd0' ? 'cfg' : t.kind === 'MRd' && t.addressLo < RAM_BASE + 0x4_0000 ? 'A' : 'B');
    // Bursts of one operation's requests, in order.
    const bursts: { op: string; addresses: number[] }[] = [];
    for (const t of sent) {
      const last = bursts[bursts.length - 1];
      const address = t.kind === 'MRd' ? t.addressLo : -1;
      if (last !== undefined && last.op === op(t)) last.addresses.push(address);
      else bursts.push({ op: op(t), addresses: [address] });
    }
    const reads = bursts.filter((x) => x.op !== 'cfg');
    expect(reads.length).toBe(8);
    for (const [i, x] of reads.entries()) {
      // Turns alternate, A first (it waited longest) ...
      expect(x.op).toBe(i % 2 === 0 ? 'A' : 'B');
      // ... and each is one 4 KiB block: 8 consecutive MRd of 512 bytes (MRRS), in address order.
      const block = (x.op === 'A' ? RAM_BASE : RAM_BASE + 0x4_0000) + (i >> 1) * 4096;
      expect(x.addresses).toEqual(Array.from({ length: 8 }, (_, k) => block + k * 512));
    }
    // The config read went out after at most one turn of each read.
    const cfgAt = bursts.findIndex((x) => x.op === 'cfg');
    expect(cfgAt).toBeGreaterThanOrEqual(0);
    expect(cfgAt).toBeLessThanOrEqual(2);
    expect(bursts.filter((x) => x.op === 'cfg')).toHaveLength(1);
  });

  it('a bug that throws while a run is answered drops only the read being answered: its credit comes back, the reads before it were answered, those after it go one by one', async () => {
    // Memory whose bytes, handed over in place (a 4 KiB page at a time), throw when their size is
    // asked for the 5th time: inside handleMemReadRun, part-way through a run of 32 reads.
    let asked = 0;
    class Bomb extends Uint8Array {
      override get length(): number {
        if (++asked === 5) throw new Error('bug');
        return super.length;
      }
    }
    const ram = new Bomb(RAM_BYTES);
    ram.set(patterned(RAM_BYTES, 12));
    const bomb: CompleterTarget = {
      claims: (a, n) => a >= RAM_BASE && a + n <= RAM_BASE + RAM_BYTES,
      read: (a, n) => ram.slice(a - RAM_BASE, a - RAM_BASE + n),
      write: () => {},
      readSpan: (a, n, _rid, out) => {
        if (!(a >= RAM_BASE && a + n <= RAM_BASE + RAM_BYTES) || Math.floor(a / 4096) !== Math.floor((a + n - 1) / 4096)) return false;
        out.bytes = ram;
        out.offset = a - RAM_BASE;
        return true;
      },
    };
    const s = await setup({ before: [bomb] });
    const failed = await s.settle(s.ep.requester.memRead(RAM_BASE, 16384).then(() => 'read', (e: unknown) => (e as { code?: string }).code));
    expect(failed).toBe('ERR_CPL_TIMEOUT');
    expect(s.rc.counters.get('rx.handlerError')).toBe(1);
    expect(s.runs.length).toBe(1);
    const took = s.runs[0]!.taken;
    expect(took).toBeGreaterThan(1);
    expect(took).toBeLessThan(32);
    // The reads after the dropped one were answered one by one; every credit came back.
    expect(s.oneByOne()).toBe(32 - took);
    expect(s.rcLink.creditsHeld('NPH')).toBe(0);
    expect(s.rcLink.state).toBe('up');
    // And the next read is answered in full.
    expect(await s.settle(s.ep.requester.memRead(RAM_BASE + 0x8000, 8192))).toEqual(new Uint8Array(ram.buffer, 0x8000, 8192).slice());
  });

  it('with tags to spare, a read goes out at once, all of it, and its MRd arrive as one run', async () => {
    const s = await setup();
    const got = await s.settle(s.ep.requester.memRead(RAM_BASE + 0x1000, 32768));
    expect(got).toEqual(ramAt(s, RAM_BASE + 0x1000, 32768));
    expect(s.runs).toEqual([{ count: 64, taken: 64 }]);
    expect(s.oneByOne()).toBe(0);
    expect(s.rcLink.creditsHeld('NPH')).toBe(0);
    expect(s.rcLink.counters.get('tlp.received.MRd')).toBe(64);
  });
});
