import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { formatLspciTree } from '../../src/pci/index.js';
import {
  RealClock,
  describeFunction,
  runEndpoint,
  runRootComplex,
  type EndpointHandle,
  type LinktestReport,
  type PortEnumeration,
} from '../../src/roles/index.js';

/** Resolves when `n` enumerations have been reported. */
function counter<T>(): { push(v: T): void; when(n: number): Promise<T[]> } {
  const seen: T[] = [];
  const waiters: [number, (v: T[]) => void][] = [];
  return {
    push(v) {
      seen.push(v);
      for (const [n, r] of waiters) if (seen.length >= n) r(seen.slice());
    },
    when(n) {
      return seen.length >= n ? Promise.resolve(seen.slice()) : new Promise((r) => waiters.push([n, r]));
    },
  };
}

describe('one root complex, several endpoints (real sockets, one process)', () => {
  it('gives each endpoint its own root port and bus, keeps their BARs apart, tests both, and re-enumerates one that comes back', async () => {
    const clock = new RealClock();
    const enums = counter<PortEnumeration>();
    const reports = counter<LinktestReport>();
    const rc = await runRootComplex({
      listen: 'ws://127.0.0.1:0',
      memoryBytes: 64 << 20,
      linktest: { sizes: [1025], dmaModes: [true], msi: false, throughputBytes: 0 },
      clock,
      rng: new SeededRng(1),
      onEnumerated: (e) => enums.push(e),
      onLinktest: (_e, r) => reports.push(r),
    });
    const eps: EndpointHandle[] = [];
    try {
      eps.push(await runEndpoint({ connect: rc.url!, functions: [{ kind: 'linktest' }], clock, rng: new SeededRng(2) }));
      await reports.when(1);
      eps.push(await runEndpoint({ connect: rc.url!, functions: [{ kind: 'linktest' }, { kind: 'linktest', params: { msix: '4' } }], clock, rng: new SeededRng(3) }));
      const rs = await reports.when(3);
      expect(rs.every((r) => r.passed)).toBe(true);
      expect(rs.map((r) => r.bdf).sort()).toEqual([0x0100, 0x0200, 0x0201]);
      const now = rc.enumerations();
      expect(now.map((e) => e.port.bus).sort()).toEqual([1, 2]);
      const ranges = now.flatMap((e) => e.result.ranges).sort((a, b) => a.base - b.base);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.base).toBeGreaterThanOrEqual(ranges[i - 1]!.end);
      expect(formatLspciTree(rc.treeBuses(), describeFunction)).toMatch(/^-\[0000:00\]-\+-00\.0-\[01\]----00\.0 .*\n {11}\\-01\.0-\[02\]--\+-00\.0 .*\n {24}\\-00\.1 /);

      // The first endpoint goes away: its vectors are released, its bus is free again, and when
      // it comes back it is enumerated on bus 01 once more and passes again.
      const vectorsBefore = now.find((e) => e.port.bus === 1)!.result.functions[0]!.msix!.vectors;
      await eps[0]!.close();
      await new Promise((r) => setTimeout(r, 100));
      expect(rc.enumerations().map((e) => e.port.bus)).toEqual([2]);
      expect(vectorsBefore.some((v) => rc.rc.interrupts.has(v))).toBe(false);
      eps[0] = await runEndpoint({ connect: rc.url!, functions: [{ kind: 'linktest' }], clock, rng: new SeededRng(4) });
      const again = await enums.when(3);
      expect(again[2]!.port.bus).toBe(1);
      const last = await reports.when(4);
      expect(last[3]!.passed).toBe(true);
    } finally {
      for (const ep of eps) await ep.close();
      await rc.close();
    }
  }, 30_000);
});
