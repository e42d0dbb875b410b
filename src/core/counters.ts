/**
 * Named monotonic counters (TLPs by kind, bytes, stalls, faults...). A plain record so it can
 * be logged, serialised and compared in tests without ceremony.
 */
export class Counters {
  private readonly values = new Map<string, number>();

  add(name: string, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n);
  }

  get(name: string): number {
    return this.values.get(name) ?? 0;
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of [...this.values.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) out[k] = v;
    return out;
  }
}
