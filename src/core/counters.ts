/**
 * Named monotonic counters (TLPs by kind, bytes, stalls, faults...). A plain record so it can
 * be logged, serialised and compared in tests without ceremony.
 */
export class Counters {
  private readonly values = new Map<string, Counter>();

  add(name: string, n = 1): void {
    this.counter(name).add(n);
  }

  /**
   * The counter called `name`, to keep and add to directly: what a per-TLP path uses, since
   * add(name) costs a map look-up each time. It shows in snapshot() once it has been added to.
   */
  counter(name: string): Counter {
    let c = this.values.get(name);
    if (c === undefined) {
      c = new Counter();
      this.values.set(name, c);
    }
    return c;
  }

  get(name: string): number {
    return this.values.get(name)?.value ?? 0;
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    const names = [...this.values.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const k of names) {
      const c = this.values.get(k)!;
      if (c.used) out[k] = c.value;
    }
    return out;
  }
}

/** One counter of a Counters (Counters.counter). */
export class Counter {
  value = 0;
  /** Added to at least once (even by 0): only such counters are in a snapshot. */
  used = false;

  add(n = 1): void {
    this.value += n;
    this.used = true;
  }
}
