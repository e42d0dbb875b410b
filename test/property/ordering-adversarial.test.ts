/**
 * The adversarial ordering queues against an independent checker written from the ordering
 * table (SPEC-FACTS "Ordering", PCIe §2.4.1), not from src/transaction's rule code.
 *
 * The checker sits in the sink: it knows every TLP's enqueue position and attributes, and on
 * each send checks the TLP against every earlier TLP still waiting. It also checks credits and
 * tallies which legal reorderings it saw, so the test can require that each one happened.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import type { Tlp, TlpClass } from '../../src/tlp/index.js';
import { OrderingQueues, REORDER_KINDS, type HoldBackOptions, type OrderingMode } from '../../src/transaction/index.js';
import { cfgWr, cpl, fetchAdd, mrd, msg, mwr } from '../transaction/tlp-fixtures.js';

type Col = 'P' | 'R' | 'W' | 'C';

interface Rec {
  seq: number;
  col: Col;
  tc: number;
  ro: boolean;
  ido: boolean;
  requesterId: number;
  completerId: number;
  tag: number;
  ioCfgWriteCpl: boolean;
}

/** The table, pairwise, from the spec text. */
function allowed(later: Rec, earlier: Rec): boolean {
  if (later.tc !== earlier.tc) return true;
  if (earlier.col === 'P') {
    switch (later.col) {
      case 'P':
      case 'W':
        return later.ro || (later.ido && later.requesterId !== earlier.requesterId);
      case 'R':
        return later.ido && later.requesterId !== earlier.requesterId;
      case 'C':
        return later.ro || (later.ido && later.completerId !== earlier.requesterId) || later.ioCfgWriteCpl;
    }
  }
  if (earlier.col === 'C' && later.col === 'C') {
    return !(later.requesterId === earlier.requesterId && later.tag === earlier.tag);
  }
  return true;
}

/** What kind of reordering `later` passing `earlier` is, in the checker's own words. */
function passKind(later: Rec, earlier: Rec): string {
  if (later.tc !== earlier.tc) return earlier.col === 'P' ? 'other-tc>P' : 'other-tc';
  if (earlier.col === 'P') {
    const why =
      later.col === 'C' && later.ioCfgWriteCpl ? 'iocfg' : later.ro && later.col !== 'R' ? 'ro' : 'ido';
    return `${later.col}(${why})>P`;
  }
  const np = (c: Col): string => (c === 'R' ? 'R' : c === 'W' ? 'W' : c);
  if (later.col === 'P') return earlier.col === 'C' ? 'P>C' : 'P>NP';
  if (later.col === 'C') return earlier.col === 'C' ? 'C>C' : 'C>NP';
  if (earlier.col === 'C') return 'NP>C';
  return `${np(later.col)}>${np(earlier.col)}`;
}

const EXPECTED_KINDS = [
  'P(ro)>P',
  'P(ido)>P',
  'R(ido)>P',
  'W(ro)>P',
  'W(ido)>P',
  'C(ro)>P',
  'C(ido)>P',
  'C(iocfg)>P',
  'P>NP',
  'P>C',
  'R>R',
  'R>W',
  'W>R',
  'W>W',
  'NP>C',
  'C>NP',
  'C>C',
  'other-tc>P',
];

function classOfCol(c: Col): TlpClass {
  return c === 'P' ? 'P' : c === 'C' ? 'Cpl' : 'NP';
}

class CheckingSink {
  readonly open: Record<TlpClass, boolean> = { P: true, NP: true, Cpl: true };
  private readonly waiting: Rec[] = [];
  private readonly recOf = new Map<Tlp, Rec>();
  readonly kinds = new Map<string, number>();
  violations: string[] = [];
  sent = 0;
  private seq = 0;

  register(tlp: Tlp, col: Col, ioCfgWriteCpl: boolean): void {
    const r: Rec = {
      seq: this.seq++,
      col,
      tc: tlp.tc,
      ro: tlp.ro,
      ido: tlp.ido,
      requesterId: tlp.requesterId,
      completerId: tlp.kind === 'CplD' || tlp.kind === 'Cpl' ? tlp.completerId : -1,
      tag: tlp.tag,
      ioCfgWriteCpl,
    };
    this.waiting.push(r);
    this.recOf.set(tlp, r);
  }

  get length(): number {
    return this.waiting.length;
  }

  hasCredits(cls: TlpClass): boolean {
    return this.open[cls];
  }

  sendTlp(tlp: Tlp): void {
    const r = this.recOf.get(tlp);
    if (r === undefined) {
      this.violations.push(`unknown TLP sent: ${tlp.kind}`);
      return;
    }
    this.recOf.delete(tlp);
    if (!this.open[classOfCol(r.col)]) this.violations.push(`#${r.seq} ${r.col} sent without credits`);
    const i = this.waiting.indexOf(r);
    for (let j = 0; j < i; j++) {
      const earlier = this.waiting[j]!;
      if (!allowed(r, earlier)) {
        if (this.violations.length < 10) {
          this.violations.push(`#${r.seq} ${JSON.stringify(r)} passed #${earlier.seq} ${JSON.stringify(earlier)}`);
        }
      } else {
        const k = passKind(r, earlier);
        this.kinds.set(k, (this.kinds.get(k) ?? 0) + 1);
      }
    }
    this.waiting.splice(i, 1);
    this.sent++;
  }
}

interface TlpSpec {
  col: Col;
  variant: number;
  tc: number;
  ro: boolean;
  ido: boolean;
  requesterId: number;
  completerId: number;
  tag: number;
  ioCfgWriteCpl: boolean;
}

function makeTlp(s: TlpSpec): Tlp {
  const a = { tc: s.tc, ro: s.ro, ido: s.ido, requesterId: s.requesterId, tag: s.tag };
  switch (s.col) {
    case 'P':
      return s.variant === 0 ? msg(a) : mwr(a);
    case 'R':
      return mrd(a);
    case 'W':
      // Config writes carry no attributes; AtomicOps may.
      return s.variant === 0 ? cfgWr({ tag: s.tag, requesterId: s.requesterId, tc: s.tc }) : fetchAdd(a);
    case 'C':
      return cpl({ ...a, completerId: s.completerId, withData: !s.ioCfgWriteCpl });
  }
}

function randomSpec(rng: SeededRng): TlpSpec {
  const x = rng.int(100);
  const col: Col = x < 33 ? 'P' : x < 55 ? 'R' : x < 67 ? 'W' : 'C';
  return {
    col,
    variant: rng.int(4),
    tc: rng.chance(0.85) ? 0 : 1,
    ro: rng.chance(0.25),
    ido: rng.chance(0.25),
    requesterId: 1 + rng.int(3),
    completerId: 1 + rng.int(3),
    tag: rng.int(6),
    ioCfgWriteCpl: col === 'C' && rng.chance(0.25),
  };
}

interface Harness {
  clock: VirtualClock;
  sink: CheckingSink;
  q: OrderingQueues;
  enqueue(spec: TlpSpec): void;
}

function harness(mode: OrderingMode, seed: number, holdBack?: HoldBackOptions): Harness {
  const clock = new VirtualClock();
  const sink = new CheckingSink();
  const q = new OrderingQueues(sink, {
    mode,
    clock,
    rng: new SeededRng(seed),
    pump: 'manual',
    ...(holdBack === undefined ? {} : { holdBack }),
  });
  return {
    clock,
    sink,
    q,
    enqueue(spec) {
      const t = makeTlp(spec);
      sink.register(t, spec.col, spec.ioCfgWriteCpl);
      q.enqueue(t, spec.ioCfgWriteCpl ? { ioCfgWriteCompletion: true } : {});
    },
  };
}

function drain(h: Harness): void {
  h.sink.open.P = h.sink.open.NP = h.sink.open.Cpl = true;
  h.q.pump();
  h.clock.run();
  h.q.pump();
}

describe('adversarial ordering queues', () => {
  it('over a million random enqueue/credit/dequeue operations: no forbidden pass, every allowed one happens', () => {
    const rng = new SeededRng(0x5eed);
    const h = harness('adversarial', 42);
    const classes: TlpClass[] = ['P', 'NP', 'Cpl'];
    const OPS = 1_000_000;
    for (let op = 0; op < OPS; op++) {
      const x = rng.int(100);
      const n = h.sink.length;
      if (x < 8) {
        const cls = classes[rng.int(3)]!;
        h.sink.open[cls] = rng.chance(0.7);
      } else if (x < 54 && n < 24) {
        h.enqueue(randomSpec(rng));
      } else {
        h.q.sendOne();
      }
    }
    drain(h);
    expect(h.sink.violations).toEqual([]);
    expect(h.q.length()).toBe(0);
    expect(h.sink.length).toBe(0);
    for (const k of EXPECTED_KINDS) expect({ kind: k, seen: (h.sink.kinds.get(k) ?? 0) > 0 }).toEqual({ kind: k, seen: true });
    const counted = h.q.reorderings();
    for (const k of REORDER_KINDS) expect({ kind: k, counted: counted[k] > 0 }).toEqual({ kind: k, counted: true });
  });

  const opArb = fc.oneof(
    { weight: 5, arbitrary: fc.record({
      op: fc.constant('enqueue' as const),
      col: fc.constantFrom<Col>('P', 'R', 'W', 'C'),
      variant: fc.nat(3),
      tc: fc.constantFrom(0, 0, 0, 1),
      ro: fc.boolean(),
      ido: fc.boolean(),
      requesterId: fc.integer({ min: 1, max: 3 }),
      completerId: fc.integer({ min: 1, max: 3 }),
      tag: fc.nat(3),
      ioCfgWriteCpl: fc.boolean(),
    }) },
    { weight: 4, arbitrary: fc.constant({ op: 'send' as const }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('credits' as const), cls: fc.constantFrom<TlpClass>('P', 'NP', 'Cpl'), open: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('advance' as const), ns: fc.integer({ min: 1, max: 500 }) }) },
  );

  for (const mode of ['adversarial', 'in-order'] as const) {
    it(`${mode}: random operation sequences (with hold-back) never break a must-not-pass rule and always drain`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 20, maxLength: 300, size: 'max' }), fc.integer(), fc.boolean(), (ops, seed, hold) => {
          const h = harness(mode, seed, hold ? { probability: 0.3, maxNs: 300 } : undefined);
          for (const o of ops) {
            if (o.op === 'enqueue') h.enqueue({ ...o, ioCfgWriteCpl: o.col === 'C' && o.ioCfgWriteCpl });
            else if (o.op === 'send') h.q.sendOne();
            else if (o.op === 'credits') h.sink.open[o.cls] = o.open;
            else h.clock.run({ untilNs: h.clock.nowNs() + o.ns });
          }
          drain(h);
          expect(h.sink.violations).toEqual([]);
          expect(h.q.length()).toBe(0);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('must be able to pass: with NP credits at zero, posted writes and completions keep flowing', () => {
    for (const mode of ['adversarial', 'in-order'] as const) {
      const rng = new SeededRng(9);
      const h = harness(mode, 9);
      h.sink.open.NP = false;
      let nonNp = 0;
      for (let i = 0; i < 4000; i++) {
        const spec = randomSpec(rng);
        if (spec.col !== 'R' && spec.col !== 'W') nonNp++;
        h.enqueue(spec);
        if (i % 3 === 0) h.q.pump();
      }
      h.q.pump();
      expect(h.sink.violations).toEqual([]);
      expect(h.sink.sent).toBe(nonNp);
      expect(h.q.length('P') + h.q.length('Cpl')).toBe(0);
    }
  });
});
