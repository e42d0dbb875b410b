/**
 * Properties of the device engine model: the order writes leave in, that every write leaves and
 * every read completes, that reads see the engine's own writes, and determinism end to end
 * (host CPU + fabric + device engine).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRng } from '../../src/core/index.js';
import { DeviceEngine, type DeviceBarrierKind, type DmaPort, HostCpu, HostRam, type MemoryPlatform } from '../../src/memory/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { TestFabric, runToEnd } from '../memory/fabric.js';

type Op =
  | { k: 'write'; slot: number; len: number }
  | { k: 'read'; slot: number; len: number }
  | { k: 'barrier'; b: DeviceBarrierKind }
  | { k: 'wait'; ns: number }
  | { k: 'drain' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('write' as const), slot: fc.integer({ min: 0, max: 7 }), len: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('read' as const), slot: fc.integer({ min: 0, max: 7 }), len: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('barrier' as const), b: fc.constantFrom<DeviceBarrierKind>('rmb', 'wmb', 'mb', 'virt_rmb', 'virt_wmb', 'virt_mb') }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('wait' as const), ns: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drain' as const) }) },
);

interface WriteRec {
  seq: number;
  address: number;
  length: number;
  epoch: number;
  tag: number;
}

async function runEngine(platform: MemoryPlatform, seed: number, ops: Op[]) {
  const clock = new VirtualClock();
  const rng = new SeededRng(seed);
  const mem = new Uint8Array(0x200);
  const emitted: number[] = [];
  const writes: WriteRec[] = [];
  const byTag = new Map<number, WriteRec>();
  const problems: string[] = [];
  // A port with PCIe's posted-write order and reads served after random delays; each write's
  // first byte is a unique tag so emissions can be traced.
  const port: DmaPort = {
    write: (address, data) => {
      emitted.push(data[0]!);
      mem.set(data, address);
    },
    read: (address, length) =>
      new Promise((resolve) => {
        clock.setTimer(1 + rng.int(800), () => {
          const d = mem.slice(address, address + length);
          clock.setTimer(1 + rng.int(800), () => resolve(d));
        });
      }),
  };
  const engine = new DeviceEngine({ platform, port, clock, rng: rng.fork(), readAheadBytes: 16 });
  const reads: Promise<void>[] = [];
  /** What the engine's program wrote last to each byte (reads must see at least that). */
  const shadow = new Int32Array(0x200).fill(-1);
  let epoch = 0;
  let seq = 0;
  let tag = 1;
  for (const o of ops) {
    switch (o.k) {
      case 'write': {
        const t = tag++;
        const address = 0x20 * o.slot + (t % 4);
        const data = new Uint8Array(o.len).fill(t);
        const rec = { seq: seq++, address, length: o.len, epoch, tag: t };
        writes.push(rec);
        byTag.set(t, rec);
        shadow.fill(t, address, address + o.len);
        engine.write(address, data);
        break;
      }
      case 'read': {
        const address = 0x20 * o.slot;
        const expectMine = Array.from(shadow.subarray(address, address + o.len));
        const before = seq++;
        reads.push(
          engine.read(address, o.len).then((d) => {
            // Only this engine writes: each byte read is exactly its latest earlier write to that
            // byte (own writes are visible to later reads; later writes are not visible to it).
            for (let i = 0; i < o.len; i++) {
              const mine = expectMine[i]!;
              if (d[i] !== (mine < 0 ? 0 : mine)) problems.push(`read #${before} byte ${address + i}: got tag ${d[i]}, own write was ${mine}`);
            }
          }),
        );
        break;
      }
      case 'barrier':
        void engine.barrier(o.b);
        if (o.b === 'wmb' || o.b === 'mb' || (o.b === 'virt_mb' && platform === 'tso')) epoch++;
        break;
      case 'wait':
        clock.run({ untilNs: clock.nowNs() + o.ns });
        break;
      case 'drain':
        engine.drainWrites();
        break;
    }
  }
  await runToEnd(clock);
  await Promise.all(reads);
  return { emitted, writes, byTag, problems, engine };
}

describe('DeviceEngine', () => {
  for (const platform of ['tso', 'weak'] as const) {
    it(`${platform}: every write leaves exactly once, in an order the platform allows; reads see own writes`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer(), fc.array(op, { minLength: 5, maxLength: 60 }), async (seed, ops) => {
          const { emitted, writes, byTag, problems, engine } = await runEngine(platform, seed, ops);
          expect(problems).toEqual([]);
          expect([...emitted].sort((a, b) => a - b)).toEqual(writes.map((w) => w.tag).sort((a, b) => a - b));
          expect(engine.pendingWrites).toBe(0);
          expect(engine.outstandingReads).toBe(0);
          const pos = new Map(emitted.map((t, i) => [t, i]));
          for (const a of writes) {
            for (const b of writes) {
              if (a.seq >= b.seq) continue;
              const overlap = a.address < b.address + b.length && b.address < a.address + a.length;
              if (platform === 'tso' || a.epoch < b.epoch || overlap) expect(pos.get(a.tag)!).toBeLessThan(pos.get(b.tag)!);
            }
          }
          expect(byTag.size).toBe(writes.length);
        }),
        { numRuns: 150 },
      );
    });
  }
});

describe('DeviceEngine: reads of memory someone else writes', () => {
  it('weak: two reads of a location never see it go back in time (speculation included), and rmb orders reads', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.array(
          fc.oneof(
            { weight: 5, arbitrary: fc.record({ k: fc.constant('read' as const), from: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 12 })) }) },
            { weight: 3, arbitrary: fc.record({ k: fc.constant('bump' as const) }) },
            { weight: 1, arbitrary: fc.record({ k: fc.constant('rmb' as const) }) },
            { weight: 2, arbitrary: fc.record({ k: fc.constant('wait' as const), ns: fc.integer({ min: 0, max: 2_000 }) }) },
          ),
          { minLength: 5, maxLength: 60 },
        ),
        async (seed, ops) => {
          const clock = new VirtualClock();
          const rng = new SeededRng(seed);
          const mem = new Uint8Array(0x100);
          // The counter lives at 0x10; reads of the bytes before it start read-aheads that cover it.
          const port: DmaPort = {
            write: () => {},
            read: (address, length) =>
              new Promise((resolve) => {
                clock.setTimer(1 + rng.int(600), () => {
                  const d = mem.slice(address, address + length);
                  clock.setTimer(1 + rng.int(600), () => resolve(d));
                });
              }),
          };
          const engine = new DeviceEngine({ platform: 'weak', port, clock, rng: rng.fork(), readAheadBytes: 32, speculationProbability: 0.7 });
          const results: { n: number; value: number; floor: number }[] = [];
          const pending: Promise<void>[] = [];
          let counter = 0;
          let floor = 0;
          let n = 0;
          for (const o of ops) {
            if (o.k === 'bump') mem[0x10] = ++counter;
            else if (o.k === 'rmb') {
              // Reads after the barrier are performed after it: at least the value now.
              void engine.rmb();
              floor = counter;
            } else if (o.k === 'wait') clock.run({ untilNs: clock.nowNs() + o.ns });
            else if (o.from > 0) {
              // Bytes just before the counter: a read-ahead from here covers it.
              pending.push(engine.read(0x10 - o.from, o.from).then(() => undefined));
            } else {
              const my = n++;
              const f = floor;
              pending.push(engine.read(0x10, 1).then((d) => void results.push({ n: my, value: d[0]!, floor: f })));
            }
          }
          await runToEnd(clock);
          await Promise.all(pending);
          results.sort((a, b) => a.n - b.n);
          for (let i = 1; i < results.length; i++) expect(results[i]!.value).toBeGreaterThanOrEqual(results[i - 1]!.value);
          for (const r of results) expect(r.value).toBeGreaterThanOrEqual(r.floor);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('memory models end to end: determinism', () => {
  /** Host stores and loads, device writes and reads, through the test fabric; returns a trace. */
  async function scenario(seed: number, host: MemoryPlatform, device: MemoryPlatform): Promise<string[]> {
    const root = new SeededRng(seed);
    const clock = new VirtualClock();
    const ram = new HostRam({ size: 1 << 16, pageSize: 4096 });
    const cpu = new HostCpu({ platform: host, ram, clock, rng: root.fork() });
    const trace: string[] = [];
    const fabric = new TestFabric(clock, root.fork(), { read: (a, l) => ram.readBytes(a, l), write: (a, d) => ram.dmaWrite(a, d) }, 700, (a, d) =>
      trace.push(`${clock.nowNs()} land ${a}=${d[0]}`),
    );
    const engine = new DeviceEngine({ platform: device, port: fabric, clock, rng: root.fork() });
    const prog = root.fork();
    for (let i = 0; i < 20; i++) {
      clock.setTimer(prog.int(10_000), () => {
        cpu.write32(0x100 + 4 * (i % 5), i);
        if (i % 3 === 0) cpu.dma_wmb();
        trace.push(`${clock.nowNs()} load ${cpu.read32(0x200 + 4 * (i % 4))}`);
      });
      clock.setTimer(prog.int(10_000), () => {
        engine.write(0x200 + 4 * (i % 4), Uint8Array.of(i));
        if (i % 4 === 0) engine.wmb();
        void engine.read(0x100 + 4 * (i % 5), 4).then((d) => trace.push(`${clock.nowNs()} dev read ${d[0]}`));
      });
    }
    await runToEnd(clock);
    trace.push(`ram ${Array.from(ram.readBytes(0x100, 0x120)).join(',')}`);
    return trace;
  }

  it('the same seed gives the same run, event for event; another seed gives another', async () => {
    for (const [host, device] of [
      ['weak', 'weak'],
      ['tso', 'weak'],
      ['weak', 'tso'],
    ] as const) {
      const a = await scenario(42, host, device);
      const b = await scenario(42, host, device);
      const c = await scenario(43, host, device);
      expect(b).toEqual(a);
      expect(c).not.toEqual(a);
    }
  });
});
