/**
 * Properties of the host CPU model: coherence of loads of device-written memory, eventual and
 * ordered visibility of stores, and determinism.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRng } from '../../src/core/index.js';
import { CPU_BARRIER_KINDS, type CpuBarrierKind, HostCpu, HostRam, type MemoryPlatform } from '../../src/memory/index.js';
import { VirtualClock } from '../../src/sim/index.js';

const LOCS = 4;
const locAddr = (i: number): number => 0x1000 + 16 * i;
const READ_BARRIERS = new Set<CpuBarrierKind>(['dma_rmb', 'rmb', 'mb']);

type LoadOp =
  | { k: 'dev'; loc: number }
  | { k: 'load'; loc: number; half: boolean }
  | { k: 'barrier'; b: CpuBarrierKind }
  | { k: 'wait'; ns: number }
  | { k: 'irq' };

const loadOp: fc.Arbitrary<LoadOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('dev' as const), loc: fc.integer({ min: 0, max: LOCS - 1 }) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('load' as const), loc: fc.integer({ min: 0, max: LOCS - 1 }), half: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('barrier' as const), b: fc.constantFrom(...CPU_BARRIER_KINDS) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('wait' as const), ns: fc.integer({ min: 0, max: 25_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('irq' as const) }) },
);

describe('HostCpu: loads of device-written memory', () => {
  it('never go back in time, never return a value nobody wrote, and respect I/O read barriers', () => {
    fc.assert(
      fc.property(fc.constantFrom<MemoryPlatform>('tso', 'weak'), fc.integer(), fc.array(loadOp, { minLength: 10, maxLength: 150 }), (platform, seed, ops) => {
        const clock = new VirtualClock();
        const ram = new HostRam({ size: 1 << 16, pageSize: 4096 });
        const cpu = new HostCpu({ platform, ram, clock, rng: new SeededRng(seed), maxStalenessNs: 20_000 });
        const written = new Array<number>(LOCS).fill(0);
        const lastSeen = new Array<number>(LOCS).fill(0);
        /** The value of each location at the last I/O read barrier (or interrupt). */
        let floor = new Array<number>(LOCS).fill(0);
        /** Times at which each location's values were written, for the staleness bound. */
        const writtenAt: number[][] = Array.from({ length: LOCS }, () => [0]);
        for (const op of ops) {
          switch (op.k) {
            case 'dev': {
              const v = ++written[op.loc]!;
              const b = new Uint8Array(4);
              new DataView(b.buffer).setUint32(0, v, true);
              ram.dmaWrite(locAddr(op.loc), b);
              writtenAt[op.loc]!.push(clock.nowNs());
              break;
            }
            case 'load': {
              const v = op.half ? cpu.read16(locAddr(op.loc)) : cpu.read32(locAddr(op.loc));
              expect(v).toBeLessThanOrEqual(written[op.loc]!);
              expect(v).toBeGreaterThanOrEqual(lastSeen[op.loc]!);
              expect(v).toBeGreaterThanOrEqual(floor[op.loc]!);
              if (platform === 'tso') expect(v).toBe(written[op.loc]);
              // Not older than the staleness bound allows: the value current 20 µs ago, at least.
              const times = writtenAt[op.loc]!;
              let current20usAgo = 0;
              for (let i = 0; i < times.length; i++) if (times[i]! < clock.nowNs() - 20_000) current20usAgo = i;
              expect(v).toBeGreaterThanOrEqual(current20usAgo);
              lastSeen[op.loc] = v;
              break;
            }
            case 'barrier':
              cpu.barrier(op.b);
              if (READ_BARRIERS.has(op.b)) floor = [...written];
              break;
            case 'irq':
              cpu.interrupt();
              floor = [...written];
              break;
            case 'wait':
              clock.run({ untilNs: clock.nowNs() + op.ns });
              break;
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('on weak, older values do show up (the model is not secretly sequentially consistent)', () => {
    let stale = 0;
    for (let seed = 0; seed < 50; seed++) {
      const clock = new VirtualClock();
      const ram = new HostRam({ size: 1 << 16, pageSize: 4096 });
      const cpu = new HostCpu({ platform: 'weak', ram, clock, rng: new SeededRng(seed) });
      ram.dmaWrite(0x100, Uint8Array.of(1));
      if (cpu.read8(0x100) === 0) stale++;
    }
    expect(stale).toBeGreaterThan(5);
    expect(stale).toBeLessThan(45);
  });
});

type StoreOp =
  | { k: 'store'; loc: number; width: 4 | 8 }
  | { k: 'barrier'; b: CpuBarrierKind }
  | { k: 'wait'; ns: number }
  | { k: 'load'; loc: number };

const storeOp: fc.Arbitrary<StoreOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('store' as const), loc: fc.integer({ min: 0, max: 7 }), width: fc.constantFrom<4 | 8>(4, 8) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('barrier' as const), b: fc.constantFrom(...CPU_BARRIER_KINDS) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('wait' as const), ns: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('load' as const), loc: fc.integer({ min: 0, max: 7 }) }) },
);

interface StoreRecord {
  loc: number;
  value: number;
  timeNs: number;
  /** I/O write barriers before it (weak: its epoch). */
  epoch: number;
  visibleAt: number;
}

const DRAINS: Record<MemoryPlatform, Set<CpuBarrierKind>> = {
  tso: new Set(['smp_mb', 'virt_mb', 'mb']),
  weak: new Set(['mb']),
};
const WRITE_BARRIERS = new Set<CpuBarrierKind>(['dma_wmb', 'wmb', 'mb']);

/** Runs a store program; returns the store records (with visibility times) and the event trace. */
function runStores(platform: MemoryPlatform, seed: number, ops: StoreOp[], maxResidence: number) {
  const clock = new VirtualClock();
  const ram = new HostRam({ size: 1 << 16, pageSize: 4096 });
  const cpu = new HostCpu({ platform, ram, clock, rng: new SeededRng(seed), maxStoreResidenceNs: maxResidence, storeBufferSize: 16 });
  const stores: StoreRecord[] = [];
  const byValue = new Map<number, StoreRecord>();
  const visibleOrder: number[] = [];
  const trace: string[] = [];
  const problems: string[] = [];
  // An observer makes every visible CPU store an event we can check against.
  ram.addObserver({
    beforeDeviceWrite: () => {},
    afterCpuStore: (address) => {
      const v = ram.read32(address);
      const s = byValue.get(v);
      if (s === undefined) {
        problems.push(`unknown value ${v} at ${address}`);
        return;
      }
      s.visibleAt = clock.nowNs();
      visibleOrder.push(v);
      trace.push(`${clock.nowNs()}:${address}=${v}`);
    },
  });
  let epoch = 0;
  let next = 1;
  for (const op of ops) {
    switch (op.k) {
      case 'store': {
        const value = next++;
        const s: StoreRecord = { loc: op.loc, value, timeNs: clock.nowNs(), epoch, visibleAt: -1 };
        stores.push(s);
        byValue.set(value, s);
        if (op.width === 4) cpu.write32(0x100 + 8 * op.loc, value);
        else cpu.write64(0x100 + 8 * op.loc, value);
        break;
      }
      case 'barrier':
        cpu.barrier(op.b);
        if (WRITE_BARRIERS.has(op.b)) epoch++;
        if (DRAINS[platform].has(op.b)) {
          for (const s of stores) if (s.visibleAt < 0) problems.push(`${op.b} left store ${s.value} invisible`);
        }
        break;
      case 'wait':
        clock.run({ untilNs: clock.nowNs() + op.ns });
        break;
      case 'load': {
        // The CPU sees its own latest store to the location, visible or not.
        const mine = [...stores].reverse().find((s) => s.loc === op.loc);
        const v = cpu.read32(0x100 + 8 * op.loc);
        if (mine !== undefined && v !== mine.value) problems.push(`load of loc ${op.loc} gave ${v}, own store was ${mine.value}`);
        trace.push(`load ${op.loc}=${v}`);
        break;
      }
    }
  }
  clock.run();
  return { stores, visibleOrder, trace, problems, ram };
}

describe('HostCpu: stores', () => {
  for (const platform of ['tso', 'weak'] as const) {
    it(`${platform}: every store becomes visible within the residence bound, in an order the platform allows`, () => {
      fc.assert(
        fc.property(fc.integer(), fc.array(storeOp, { minLength: 5, maxLength: 80 }), fc.constantFrom(1_000, 5_000), (seed, ops, maxResidence) => {
          const { stores, visibleOrder, problems, ram } = runStores(platform, seed, ops, maxResidence);
          expect(problems).toEqual([]);
          for (const s of stores) {
            expect(s.visibleAt).toBeGreaterThanOrEqual(s.timeNs);
            expect(s.visibleAt - s.timeNs).toBeLessThanOrEqual(maxResidence);
          }
          expect(visibleOrder).toHaveLength(stores.length);
          const pos = new Map(visibleOrder.map((v, i) => [v, i]));
          for (let i = 0; i < stores.length; i++) {
            for (let j = i + 1; j < stores.length; j++) {
              const a = stores[i]!;
              const b = stores[j]!;
              const mustPrecede = platform === 'tso' || a.epoch < b.epoch || a.loc === b.loc;
              if (mustPrecede) expect(pos.get(a.value)!).toBeLessThan(pos.get(b.value)!);
            }
          }
          // RAM ends with each location's last store.
          for (let loc = 0; loc < 8; loc++) {
            const last = [...stores].reverse().find((s) => s.loc === loc);
            if (last !== undefined) expect(ram.read32(0x100 + 8 * loc)).toBe(last.value);
          }
        }),
        { numRuns: 200 },
      );
    });
  }

  it('weak: stores of one epoch do become visible out of program order', () => {
    let outOfOrder = 0;
    for (let seed = 0; seed < 20; seed++) {
      const ops: StoreOp[] = Array.from({ length: 6 }, (_, i) => ({ k: 'store', loc: i, width: 4 }));
      const { visibleOrder } = runStores('weak', seed, ops, 5_000);
      if (visibleOrder.join() !== '1,2,3,4,5,6') outOfOrder++;
    }
    expect(outOfOrder).toBeGreaterThan(10);
  });
});

describe('HostCpu: determinism', () => {
  it('the same seed gives the same sequence of visible states and loads', () => {
    fc.assert(
      fc.property(fc.constantFrom<MemoryPlatform>('tso', 'weak'), fc.integer(), fc.array(storeOp, { maxLength: 60 }), (platform, seed, ops) => {
        const a = runStores(platform, seed, ops, 5_000);
        const b = runStores(platform, seed, ops, 5_000);
        expect(b.trace).toEqual(a.trace);
      }),
      { numRuns: 100 },
    );
  });

  it('different seeds explore different orders', () => {
    const ops: StoreOp[] = Array.from({ length: 8 }, (_, i) => ({ k: 'store', loc: i, width: 4 }));
    const traces = new Set<string>();
    for (let seed = 0; seed < 10; seed++) traces.add(runStores('weak', seed, ops, 5_000).trace.join('|'));
    expect(traces.size).toBeGreaterThan(5);
  });
});
