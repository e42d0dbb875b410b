import type { Clock, TimerHandle } from '../core/index.js';

/** A scheduled call; it is its own timer handle (no closure per timer). */
class ClockEvent implements TimerHandle {
  cancelled = false;
  constructor(
    readonly at: number,
    readonly seq: number,
    readonly fn: () => void,
  ) {}

  cancel(): void {
    this.cancelled = true;
  }
}

/**
 * A virtual clock and the simulator's event scheduler in one: time advances only when the
 * scheduler runs the next event. Events at the same instant run in the order they were
 * scheduled (a sequence number breaks ties), so a run is a pure function of its inputs and seed.
 *
 * Events for the current instant (`defer`, `setTimer(0)`) — most of a simulation's — go to a
 * FIFO instead of the heap: they carry the highest sequence numbers so far and time cannot
 * advance while any is waiting, so the FIFO is already in (time, seq) order and the order of
 * events is exactly the heap's.
 */
export class VirtualClock implements Clock {
  private now = 0;
  private seq = 0;
  private heap: ClockEvent[] = [];
  private fifo: (ClockEvent | undefined)[] = [];
  private fifoHead = 0;
  /** Events run so far (for reports and trace hashing). */
  eventsRun = 0;

  nowNs(): number {
    return this.now;
  }

  setTimer(delayNs: number, fn: () => void): TimerHandle {
    const ev = new ClockEvent(delayNs > 0 ? this.now + delayNs : this.now, this.seq++, fn);
    if (ev.at === this.now) this.fifo.push(ev);
    else this.pushHeap(ev);
    return ev;
  }

  defer(fn: () => void): void {
    this.fifo.push(new ClockEvent(this.now, this.seq++, fn));
  }

  /** Number of events waiting (cancelled ones included until they surface). */
  get pending(): number {
    return this.heap.length + this.fifo.length - this.fifoHead;
  }

  /** Runs one event; returns false when there is none. */
  step(): boolean {
    for (;;) {
      const ev = this.next();
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

  /** Removes and returns the earliest event (cancelled or not). */
  private next(): ClockEvent | undefined {
    if (this.fifoHead < this.fifo.length) {
      const f = this.fifo[this.fifoHead]!;
      const h = this.heap[0];
      // a timer for this same instant scheduled before the deferred call runs first
      if (h !== undefined && h.at <= f.at && h.seq < f.seq) return this.popHeap();
      this.fifo[this.fifoHead++] = undefined;
      if (this.fifoHead === this.fifo.length) {
        this.fifo.length = 0;
        this.fifoHead = 0;
      } else if (this.fifoHead >= 1024 && this.fifoHead * 2 >= this.fifo.length) {
        this.fifo = this.fifo.slice(this.fifoHead);
        this.fifoHead = 0;
      }
      return f;
    }
    return this.popHeap();
  }

  private peekTime(): number | undefined {
    while (this.fifoHead < this.fifo.length && this.fifo[this.fifoHead]!.cancelled) this.next();
    while (this.heap.length > 0 && this.heap[0]!.cancelled) this.popHeap();
    if (this.fifoHead < this.fifo.length) return this.now;
    return this.heap[0]?.at;
  }

  private pushHeap(ev: ClockEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (!before(ev, parent)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = ev;
  }

  private popHeap(): ClockEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    const n = h.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const m = r < n && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[m]!, last)) break;
        h[i] = h[m]!;
        i = m;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: ClockEvent, b: ClockEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
