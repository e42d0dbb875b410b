import type { Clock, TimerHandle } from '../core/index.js';

interface Event {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A virtual clock and the simulator's event scheduler in one: time advances only when the
 * scheduler runs the next event. Events at the same instant run in the order they were
 * scheduled (a sequence number breaks ties), so a run is a pure function of its inputs and seed.
 */
export class VirtualClock implements Clock {
  private now = 0;
  private seq = 0;
  private heap: Event[] = [];
  /** Events run so far (for reports and trace hashing). */
  eventsRun = 0;

  nowNs(): number {
    return this.now;
  }

  setTimer(delayNs: number, fn: () => void): TimerHandle {
    const ev: Event = { at: this.now + Math.max(0, delayNs), seq: this.seq++, fn, cancelled: false };
    this.pushEvent(ev);
    return {
      cancel: () => {
        ev.cancelled = true;
      },
    };
  }

  defer(fn: () => void): void {
    this.pushEvent({ at: this.now, seq: this.seq++, fn, cancelled: false });
  }

  /** Number of events waiting (cancelled ones included until they surface). */
  get pending(): number {
    return this.heap.length;
  }

  /** Runs one event; returns false when there is none. */
  step(): boolean {
    for (;;) {
      const ev = this.popEvent();
      if (ev === undefined) return false;
      if (ev.cancelled) continue;
      this.now = ev.at;
      this.eventsRun++;
      ev.fn();
      return true;
    }
  }

  /** Runs events until none is left, `untilNs` is reached, or `maxEvents` have run. */
  run(options: { untilNs?: number; maxEvents?: number } = {}): number {
    const until = options.untilNs ?? Infinity;
    const max = options.maxEvents ?? Infinity;
    let n = 0;
    while (n < max) {
      const next = this.peekTime();
      if (next === undefined || next > until) break;
      if (this.step()) n++;
    }
    if (until !== Infinity && this.now < until && this.peekTime() === undefined) this.now = until;
    return n;
  }

  /** Runs until `done()` is true or no event is left; returns whether done() became true. */
  runUntil(done: () => boolean, maxEvents = 100_000_000): boolean {
    let n = 0;
    while (!done()) {
      if (n++ >= maxEvents || !this.step()) return done();
    }
    return true;
  }

  private peekTime(): number | undefined {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) this.popEvent();
    return this.heap[0]?.at;
  }

  private pushEvent(ev: Event): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private popEvent(): Event | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
