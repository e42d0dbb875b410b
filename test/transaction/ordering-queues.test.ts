import { describe, expect, it } from 'vitest';
import { SeededRng, TlpwireError } from '../../src/core/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import type { Tlp, TlpClass } from '../../src/tlp/index.js';
import { OrderingQueues, REORDER_KINDS, type OrderingMode, type TlpSink } from '../../src/transaction/index.js';
import { cfgWr, cpl, mrd, mwr } from './tlp-fixtures.js';

class TestSink implements TlpSink {
  open: Record<TlpClass, boolean> = { P: true, NP: true, Cpl: true };
  readonly out: Tlp[] = [];
  hasCredits(cls: TlpClass): boolean {
    return this.open[cls];
  }
  sendTlp(tlp: Tlp): void {
    if (!this.open[classOf(tlp)]) throw new Error('sent without credits');
    this.out.push(tlp);
  }
}

function classOf(t: Tlp): TlpClass {
  return t.kind === 'MWr' || t.kind === 'Msg' ? 'P' : t.kind === 'CplD' || t.kind === 'Cpl' ? 'Cpl' : 'NP';
}

function setup(mode: OrderingMode, pump: 'sync' | 'defer' | 'manual' = 'manual', seed = 1) {
  const clock = new VirtualClock();
  const sink = new TestSink();
  const q = new OrderingQueues(sink, { mode, clock, rng: new SeededRng(seed), pump });
  return { clock, sink, q };
}

describe('in-order queues', () => {
  it('send in enqueue order when credits allow', () => {
    const { sink, q } = setup('in-order', 'sync');
    const tlps = [mwr(), mrd({ tag: 1 }), cpl({ tag: 7 }), mwr(), cfgWr({ tag: 2 }), cpl({ tag: 8 })];
    for (const t of tlps) q.enqueue(t);
    expect(sink.out).toEqual(tlps);
    expect(Object.values(q.reorderings()).every((n) => n === 0)).toBe(true);
  });

  it('a non-posted stream stalled for credits blocks neither posted writes nor completions', () => {
    const { sink, q } = setup('in-order', 'sync');
    sink.open.NP = false;
    const r1 = mrd({ tag: 1 });
    const r2 = mrd({ tag: 2 });
    const w = mwr();
    const c = cpl({ tag: 9 });
    for (const t of [r1, r2, w, c]) q.enqueue(t);
    expect(sink.out).toEqual([w, c]);
    expect(q.reorderings()['posted-passed-np']).toBe(1);
    expect(q.reorderings()['cpl-passed-np']).toBe(1);
    sink.open.NP = true;
    q.pump();
    expect(sink.out).toEqual([w, c, r1, r2]);
  });

  it('a posted stream stalled for credits holds back later reads and completions, except those with exceptions', () => {
    const { sink, q } = setup('in-order', 'sync');
    sink.open.P = false;
    const w = mwr({ requesterId: 1 });
    const r = mrd({ tag: 1 });
    const c = cpl({ tag: 2 });
    const cRo = cpl({ tag: 3, ro: true });
    const cfgCpl = cpl({ tag: 4, withData: false });
    q.enqueue(w);
    q.enqueue(r);
    q.enqueue(c);
    expect(sink.out).toEqual([]);
    // Each class is FIFO in order mode: the RO completion waits behind `c`...
    q.enqueue(cRo);
    expect(sink.out).toEqual([]);
    sink.open.P = true;
    q.pump();
    expect(sink.out).toEqual([w, r, c, cRo]);
    // ...but at the head of its class an exception passes a stalled posted write.
    sink.open.P = false;
    const w2 = mwr();
    q.enqueue(w2);
    q.enqueue(cfgCpl, { ioCfgWriteCompletion: true });
    q.enqueue(cpl({ tag: 5, ido: true, completerId: 2 }));
    expect(sink.out.slice(4)).toEqual([cfgCpl, expect.objectContaining({ tag: 5 })]);
    expect(q.reorderings()['cpl-io-cfg-write-passed-posted']).toBe(1);
    expect(q.reorderings()['cpl-ido-passed-posted']).toBe(1);
  });

  it('onSent fires after the TLP reached the sink; clear() drops the rest with onDropped', () => {
    const { sink, q } = setup('in-order', 'sync');
    const seen: string[] = [];
    q.enqueue(mwr(), { onSent: () => seen.push(`sent after ${sink.out.length}`) });
    sink.open.P = false;
    q.enqueue(mwr(), { onDropped: (e) => seen.push(`dropped ${e.code}`) });
    q.clear(new TlpwireError('ERR_LINK_DOWN', 'down'));
    expect(seen).toEqual(['sent after 1', 'dropped ERR_LINK_DOWN']);
    expect(q.length()).toBe(0);
  });
});

describe('adversarial queues', () => {
  for (const mode of ['in-order', 'adversarial'] as const) {
    it(`${mode}: with NP credits at zero, posted writes and completions still flow`, () => {
      const { sink, q } = setup(mode, 'manual', 3);
      sink.open.NP = false;
      let nps = 0;
      for (let i = 0; i < 200; i++) {
        const k = i % 4;
        if (k === 0) {
          q.enqueue(mrd({ tag: i }));
          nps++;
        } else if (k === 1) q.enqueue(cfgWr({ tag: i }));
        else if (k === 2) q.enqueue(mwr());
        else q.enqueue(cpl({ tag: i }));
        if (k === 1) nps++;
      }
      q.pump();
      expect(sink.out.length).toBe(200 - nps);
      expect(sink.out.every((t) => classOf(t) !== 'NP')).toBe(true);
      expect(q.length('NP')).toBe(nps);
      sink.open.NP = true;
      q.pump();
      expect(q.length()).toBe(0);
    });
  }

  it('requires an Rng', () => {
    expect(() => new OrderingQueues(new TestSink(), { mode: 'adversarial', clock: new VirtualClock() })).toThrow(TlpwireError);
  });

  it('TLPs queued at one instant are reordered (defer pump), within the rules', () => {
    const { clock, sink, q } = setup('adversarial', 'defer', 11);
    for (let round = 0; round < 200; round++) {
      q.enqueue(mwr());
      q.enqueue(mrd({ tag: 1 }));
      q.enqueue(mrd({ tag: 2 }));
      q.enqueue(cpl({ tag: 3 }));
      q.enqueue(cpl({ tag: 4 }));
      clock.run();
    }
    expect(sink.out.length).toBe(1000);
    const r = q.reorderings();
    expect(r['read-passed-read']).toBeGreaterThan(0);
    expect(r['cpl-passed-cpl']).toBeGreaterThan(0);
    expect(r['cpl-passed-np']).toBeGreaterThan(0);
    // The write was first each round: nothing could pass it, so it always left first.
    for (let i = 0; i < 1000; i += 5) expect(sink.out[i]?.kind).toBe('MWr');
  });

  it('hold-back delays TLPs on the clock and still sends everything', () => {
    const clock = new VirtualClock();
    const sink = new TestSink();
    const q = new OrderingQueues(sink, {
      mode: 'adversarial',
      clock,
      rng: new SeededRng(5),
      holdBack: { probability: 1, maxNs: 1000 },
    });
    for (let i = 0; i < 50; i++) q.enqueue(i % 2 === 0 ? mrd({ tag: i }) : cpl({ tag: i }));
    q.pump();
    expect(sink.out.length).toBe(0);
    clock.run();
    expect(sink.out.length).toBe(50);
    expect(clock.nowNs()).toBeGreaterThan(0);
    expect(clock.nowNs()).toBeLessThanOrEqual(1000);
    expect(q.stats().held).toBe(50);
  });

  it('names every reordering kind it counts', () => {
    const { q } = setup('adversarial');
    expect(Object.keys(q.reorderings()).sort()).toEqual([...REORDER_KINDS].sort());
  });
});
