import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VirtualClock } from '../../src/sim/index.js';

/** What the clock must do: run events by (time, scheduling order), nothing else. */
class ReferenceClock {
  now = 0;
  private seq = 0;
  private events: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = [];
  setTimer(delay: number, fn: () => void): { cancel(): void } {
    const ev = { at: this.now + Math.max(0, delay), seq: this.seq++, fn, cancelled: false };
    this.events.push(ev);
    return { cancel: () => (ev.cancelled = true) };
  }
  defer(fn: () => void): void {
    this.setTimer(0, fn);
  }
  step(): boolean {
    for (;;) {
      if (this.events.length === 0) return false;
      this.events.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const ev = this.events.shift()!;
      if (ev.cancelled) continue;
      this.now = ev.at;
      ev.fn();
      return true;
    }
  }
}

type Op = { kind: 'timer'; delay: number; children: number } | { kind: 'defer'; children: number } | { kind: 'cancel'; which: number };

describe('VirtualClock', () => {
  it('runs events in (time, scheduling order), deferred ones included, exactly as a sorted list would', () => {
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('timer' as const), delay: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 })), children: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant('defer' as const), children: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant('cancel' as const), which: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const trace = (clock: VirtualClock | ReferenceClock): string[] => {
          const out: string[] = [];
          const handles: { cancel(): void }[] = [];
          let next = 0;
          let budget = 400;
          // each op schedules an event; running it logs and schedules the next ops as children
          const schedule = (depth: number): void => {
            if (next >= ops.length || budget-- <= 0) return;
            const op = ops[next++]!;
            const id = next;
            const run = (): void => {
              out.push(`${id}@${clock instanceof VirtualClock ? clock.nowNs() : clock.now}`);
              const n = op.kind === 'cancel' ? 0 : op.children;
              for (let i = 0; i < n; i++) schedule(depth + 1);
            };
            if (op.kind === 'timer') handles.push(clock.setTimer(op.delay, run));
            else if (op.kind === 'defer') clock.defer(run);
            else {
              handles[op.which % Math.max(1, handles.length)]?.cancel();
              clock.defer(run);
            }
          };
          for (let i = 0; i < 5; i++) schedule(0);
          while (clock.step());
          return out;
        };
        expect(trace(new VirtualClock())).toEqual(trace(new ReferenceClock()));
      }),
      { numRuns: 300 },
    );
  });

  it('run({ untilNs }) stops at the bound and advances idle time to it; pending counts what waits', () => {
    const c = new VirtualClock();
    const seen: number[] = [];
    c.setTimer(100, () => seen.push(c.nowNs()));
    c.defer(() => seen.push(c.nowNs()));
    const t = c.setTimer(50, () => seen.push(-1));
    expect(c.pending).toBe(3);
    t.cancel();
    expect(c.run({ untilNs: 80 })).toBe(1);
    expect(seen).toEqual([0]);
    expect(c.run({ untilNs: 1_000 })).toBe(1);
    expect(seen).toEqual([0, 100]);
    expect(c.nowNs()).toBe(1_000);
    expect(c.pending).toBe(0);
  });
});
