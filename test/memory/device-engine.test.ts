import { describe, expect, it } from 'vitest';
import { SeededRng, TlpwireError, isTlpwireError } from '../../src/core/index.js';
import { DeviceEngine, IMMEDIATE_DEVICE_ENGINE_OPTIONS, type DeviceEngineOptions, type DeviceBarrierKind, type DmaPort, type DmaWriteOptions, type MemoryPlatform } from '../../src/memory/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import type { DeviceMemory } from '../../src/virtio/index.js';
import { runToEnd } from './fabric.js';

interface PendingRead {
  address: number;
  length: number;
  resolve: (d: Uint8Array) => void;
  reject: (e: unknown) => void;
}

/** A port whose reads the test completes by hand (or automatically from `memory` when `auto`). */
class ManualPort implements DmaPort {
  readonly calls: string[] = [];
  readonly writes: { address: number; data: Uint8Array; ro: boolean }[] = [];
  readonly reads: PendingRead[] = [];
  readonly memory = new Uint8Array(0x10000);

  constructor(
    private readonly clock?: VirtualClock,
    private readonly autoDelayNs?: () => number,
  ) {}

  write(address: number, data: Uint8Array, opts?: DmaWriteOptions): void {
    this.calls.push(`W ${address.toString(16)}`);
    this.writes.push({ address, data, ro: opts?.relaxedOrdering === true });
    this.memory.set(data, address);
  }

  read(address: number, length: number): Promise<Uint8Array> {
    this.calls.push(`R ${address.toString(16)}`);
    return new Promise((resolve, reject) => {
      const r = { address, length, resolve, reject };
      if (this.clock !== undefined && this.autoDelayNs !== undefined) {
        this.clock.setTimer(this.autoDelayNs(), () => resolve(this.memory.slice(address, address + length)));
      } else {
        this.reads.push(r);
      }
    });
  }

  /** Completes the i-th pending read with the current memory contents. */
  complete(i: number): void {
    const r = this.reads.splice(i, 1)[0]!;
    r.resolve(this.memory.slice(r.address, r.address + r.length));
  }
}

const tick = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function setup(platform: MemoryPlatform, extra: Partial<DeviceEngineOptions> = {}, seed = 1, port?: ManualPort) {
  const clock = new VirtualClock();
  const p = port ?? new ManualPort();
  const engine = new DeviceEngine({ platform, port: p, clock, rng: new SeededRng(seed), readAheadBytes: 0, ...extra });
  return { clock, port: p, engine };
}

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('DeviceEngine writes', () => {
  it('implements the virtio device memory interface', () => {
    const { engine } = setup('weak');
    const m: DeviceMemory = engine;
    m.write(0x10, bytes(1));
    expect(engine.pendingWrites).toBe(1);
  });

  it('tso: writes leave in program order', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, port, engine } = setup('tso', {}, seed);
      for (let i = 0; i < 10; i++) engine.write(0x100 * i, bytes(i));
      clock.run();
      expect(port.writes.map((w) => w.address)).toEqual([...Array(10).keys()].map((i) => 0x100 * i));
      expect(engine.stats().writesReordered).toBe(0);
    }
  });

  it('weak: writes between barriers leave in any order; a wmb keeps them apart', () => {
    let reordered = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, port, engine } = setup('weak', {}, seed);
      engine.write(0x100, bytes(1));
      engine.write(0x200, bytes(1));
      engine.write(0x300, bytes(1));
      engine.wmb();
      engine.write(0x400, bytes(1));
      engine.write(0x500, bytes(1));
      clock.run();
      const order = port.writes.map((w) => w.address);
      if (order.join() !== [0x100, 0x200, 0x300, 0x400, 0x500].join()) reordered++;
      expect(new Set(order.slice(0, 3))).toEqual(new Set([0x100, 0x200, 0x300]));
      expect(new Set(order.slice(3))).toEqual(new Set([0x400, 0x500]));
    }
    expect(reordered).toBeGreaterThan(0);
  });

  it('weak: writes to overlapping bytes keep their order', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, port, engine } = setup('weak', {}, seed);
      engine.write(0x100, bytes(1, 1));
      engine.write(0x200, bytes(9));
      engine.write(0x101, bytes(2));
      engine.write(0x101, bytes(3, 3));
      clock.run();
      const seq = port.writes.filter((w) => w.address !== 0x200).map((w) => w.data[0]);
      expect(seq).toEqual([1, 2, 3]);
    }
  });

  it('never holds a write longer than its residence bound when no read holds it', () => {
    const { clock, port, engine } = setup('weak', { maxWriteResidenceNs: 2_000 }, 3);
    for (let i = 0; i < 30; i++) {
      clock.setTimer(i * 50, () => {
        engine.write(0x100 + i, bytes(i));
        const before = port.writes.length;
        clock.setTimer(2_001, () => {
          expect(port.writes.some((w) => w.address === 0x100 + i)).toBe(true);
          expect(port.writes.length).toBeGreaterThanOrEqual(before);
        });
      });
    }
    clock.run();
    expect(port.writes).toHaveLength(30);
  });

  it('copies the data when write is called, and passes Relaxed Ordering through', () => {
    const { clock, port, engine } = setup('weak');
    const buf = bytes(1, 2, 3);
    engine.write(0x100, buf, { relaxedOrdering: true });
    buf[0] = 9;
    engine.write(0x200, buf);
    clock.run();
    const byAddr = new Map(port.writes.map((w) => [w.address, w]));
    expect([...byAddr.get(0x100)!.data]).toEqual([1, 2, 3]);
    expect(byAddr.get(0x100)!.ro).toBe(true);
    expect(byAddr.get(0x200)!.ro).toBe(false);
  });

  it('emits at once with a zero residence bound, and on drainWrites', () => {
    const a = setup('weak', { maxWriteResidenceNs: 0 });
    a.engine.write(0x100, bytes(1));
    expect(a.port.writes).toHaveLength(1);
    const b = setup('weak');
    b.engine.write(0x100, bytes(1));
    b.engine.write(0x200, bytes(1));
    expect(b.port.writes).toHaveLength(0);
    b.engine.drainWrites();
    expect(b.port.writes).toHaveLength(2);
  });

  it('a full write buffer pushes its oldest write out', () => {
    const { port, engine } = setup('tso', { writeBufferSize: 2 });
    engine.write(0x100, bytes(1));
    engine.write(0x200, bytes(1));
    engine.write(0x300, bytes(1));
    expect(port.writes.map((w) => w.address)).toEqual([0x100]);
  });

  it('counts write errors (thrown or rejected) and keeps going', async () => {
    const clock = new VirtualClock();
    let n = 0;
    const port: DmaPort = {
      read: async () => new Uint8Array(0),
      write: () => {
        n++;
        if (n === 1) throw new TlpwireError('ERR_LINK_DOWN', 'down');
        if (n === 2) return Promise.reject(new TlpwireError('ERR_LINK_DOWN', 'down'));
        return undefined;
      },
    };
    const engine = new DeviceEngine({ platform: 'tso', port, clock, rng: new SeededRng(1), maxWriteResidenceNs: 0 });
    engine.write(0, bytes(1));
    engine.write(0, bytes(2));
    engine.write(0, bytes(3));
    await tick();
    expect(n).toBe(3);
    expect(engine.stats().writeErrors).toBe(2);
  });
});

describe('DeviceEngine reads', () => {
  it('tso: one read at a time, so reads complete in order', async () => {
    const { port, engine } = setup('tso');
    const got: number[] = [];
    void engine.read(0x10, 1).then(() => got.push(1));
    void engine.read(0x20, 1).then(() => got.push(2));
    void engine.read(0x30, 1).then(() => got.push(3));
    expect(port.calls).toEqual(['R 10']);
    port.complete(0);
    await tick();
    expect(port.calls).toEqual(['R 10', 'R 20']);
    port.complete(0);
    await tick();
    port.complete(0);
    await tick();
    expect(got).toEqual([1, 2, 3]);
  });

  it('weak: reads are all in flight at once and may complete in any order', async () => {
    const { clock, port, engine } = setup('weak');
    const got: number[] = [];
    void engine.read(0x10, 1).then(() => got.push(1));
    void engine.read(0x20, 1).then(() => got.push(2));
    clock.run();
    expect(port.reads).toHaveLength(2);
    port.complete(port.reads.findIndex((r) => r.address === 0x20));
    await tick();
    port.complete(0);
    await tick();
    expect(got).toEqual([2, 1]);
  });

  it('weak: rmb holds later reads until every earlier read completed', async () => {
    const { clock, port, engine } = setup('weak');
    void engine.read(0x10, 1);
    let barrierDone = false;
    void engine.rmb().then(() => {
      barrierDone = true;
    });
    void engine.read(0x20, 1);
    clock.run();
    expect(port.calls).toEqual(['R 10']);
    expect(barrierDone).toBe(false);
    port.complete(0);
    await tick();
    expect(barrierDone).toBe(true);
    clock.run();
    expect(port.calls).toEqual(['R 10', 'R 20']);
  });

  it('two reads of the same bytes never complete out of order', async () => {
    const { clock, port, engine } = setup('weak');
    void engine.read(0x10, 4);
    void engine.read(0x12, 1);
    clock.run();
    expect(port.calls).toEqual(['R 10']);
    port.complete(0);
    await tick();
    clock.run();
    expect(port.calls).toEqual(['R 10', 'R 12']);
  });

  it('forwards the engine\'s own unemitted writes into its reads', async () => {
    for (const platform of ['tso', 'weak'] as const) {
      const { clock, port, engine } = setup(platform);
      port.memory.set([9, 9, 9, 9], 0x100);
      engine.write(0x101, bytes(1, 2));
      const r = engine.read(0x100, 4);
      clock.run({ untilNs: 1 }); // issue the read (tso at once; weak maybe later)
      await runToEnd(clock);
      while (port.reads.length > 0) {
        port.complete(0);
        await tick();
      }
      expect([...(await r)]).toEqual([9, 1, 2, 9]);
    }
  });

  it('a write does not leave before an earlier read of the same bytes completed (weak), or any earlier read (tso)', async () => {
    for (const [platform, addr] of [
      ['weak', 0x10],
      ['tso', 0x80],
    ] as const) {
      const { clock, port, engine } = setup(platform);
      void engine.read(0x10, 4);
      engine.write(addr, bytes(1));
      clock.run();
      expect(port.writes).toHaveLength(0);
      port.complete(0);
      await tick();
      clock.run();
      expect(port.writes).toHaveLength(1);
    }
  });

  it('rejects the read with the port\'s error and keeps working', async () => {
    const clock = new VirtualClock();
    const port: DmaPort = {
      read: (a) => (a === 0 ? Promise.reject(new TlpwireError('ERR_CPL_UR', 'UR')) : a === 4 ? thrower() : Promise.resolve(bytes(7))),
      write: () => {},
    };
    function thrower(): Promise<Uint8Array> {
      throw new TlpwireError('ERR_LINK_DOWN', 'down');
    }
    const engine = new DeviceEngine({ platform: 'tso', port, clock, rng: new SeededRng(1) });
    const a = engine.read(0, 1);
    const b = engine.read(4, 1);
    const c = engine.read(8, 1);
    await expect(a).rejects.toMatchObject({ code: 'ERR_CPL_UR' });
    await expect(b).rejects.toMatchObject({ code: 'ERR_LINK_DOWN' });
    expect([...(await c)]).toEqual([7]);
    expect(engine.stats().readErrors).toBe(2);
    expect(engine.outstandingReads).toBe(0);
  });
});

describe('DeviceEngine barriers', () => {
  for (const platform of ['tso', 'weak'] as const) {
    it(`${platform} mb: earlier writes leave before later reads, later writes after earlier reads`, async () => {
      const { clock, port, engine } = setup(platform);
      void engine.read(0x10, 1);
      engine.write(0x100, bytes(1));
      let done = false;
      void engine.mb().then(() => {
        done = true;
      });
      void engine.read(0x20, 1);
      engine.write(0x200, bytes(1));
      clock.run();
      // The write before mb may not pass the read before it on tso; on weak it leaves at mb
      // (possibly before that earlier read is even issued: a read and a later write to other
      // bytes are not ordered without a barrier).
      if (platform === 'weak') expect([...port.calls].sort()).toEqual(['R 10', 'W 100']);
      else expect(port.calls).toEqual(['R 10']);
      port.complete(0);
      await tick();
      clock.run();
      expect(done).toBe(true);
      expect([...port.calls.slice(0, 2)].sort()).toEqual(['R 10', 'W 100']);
      // After the barrier: the read and the write are not ordered with each other.
      while (port.reads.length > 0) {
        port.complete(0);
        await tick();
      }
      await runToEnd(clock);
      expect([...port.calls.slice(2)].sort()).toEqual(['R 20', 'W 200']);
      if (platform === 'tso') expect(port.calls).toEqual(['R 10', 'W 100', 'R 20', 'W 200']);
    });
  }

  it('tso: virt_mb is a full barrier (x86 locked op); weak: it orders nothing for DMA', () => {
    for (const [platform, emitted] of [
      ['tso', 1],
      ['weak', 0],
    ] as const) {
      const { port, engine } = setup(platform);
      engine.write(0x100, bytes(1));
      void engine.barrier('virt_mb');
      expect(port.writes).toHaveLength(emitted);
      expect(engine.stats().barriers.virt_mb).toBe(1);
    }
  });

  it('counts every barrier and rejects unknown ones', () => {
    const { engine } = setup('weak');
    for (const k of ['rmb', 'wmb', 'mb', 'virt_rmb', 'virt_wmb', 'virt_mb'] as DeviceBarrierKind[]) void engine.barrier(k);
    expect(Object.values(engine.stats().barriers)).toEqual([1, 1, 1, 1, 1, 1]);
    try {
      void engine.barrier('dsb' as DeviceBarrierKind);
      expect.unreachable();
    } catch (e) {
      expect(isTlpwireError(e, 'ERR_USAGE')).toBe(true);
    }
  });

  it('flush resolves once every write left and every read completed', async () => {
    const clock = new VirtualClock();
    const port = new ManualPort(clock, () => 100);
    const engine = new DeviceEngine({ platform: 'weak', port, clock, rng: new SeededRng(2) });
    engine.write(0x100, bytes(1));
    void engine.read(0x200, 4);
    let flushed = false;
    void engine.flush().then(() => {
      flushed = true;
    });
    expect(port.writes).toHaveLength(1);
    await runToEnd(clock);
    expect(flushed).toBe(true);
    expect(engine.pendingWrites).toBe(0);
    expect(engine.outstandingReads).toBe(0);
  });
});

describe('DeviceEngine speculation (weak)', () => {
  it('a read-ahead of the following bytes can answer a later read with older data, until an rmb', async () => {
    let staleHits = 0;
    let hits = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const clock = new VirtualClock();
      const port = new ManualPort(clock, () => 50);
      const engine = new DeviceEngine({ platform: 'weak', port, clock, rng: new SeededRng(seed), readAheadBytes: 16, speculationProbability: 1 });
      const first = engine.read(0x100, 4);
      await runToEnd(clock);
      await first;
      expect(port.calls).toContain('R 104'); // the read-ahead MRd
      port.memory[0x108] = 5; // changed after the read-ahead fetched it
      const second = engine.read(0x108, 1);
      await runToEnd(clock);
      if ((await second)[0] === 0) staleHits++;
      hits += engine.stats().speculativeHits;
      // After an rmb the read-ahead data is never used.
      await engine.rmb();
      const third = engine.read(0x108, 1);
      await runToEnd(clock);
      expect((await third)[0]).toBe(5);
    }
    expect(hits).toBeGreaterThan(0);
    expect(staleHits).toBe(hits);
  });

  it('stays within the 4 KiB page and ignores a failing read-ahead', async () => {
    const clock = new VirtualClock();
    const calls: string[] = [];
    const port: DmaPort = {
      read: (a, l) => {
        calls.push(`${a.toString(16)}+${l}`);
        return a === 0xffc ? Promise.resolve(new Uint8Array(l)) : Promise.reject(new TlpwireError('ERR_CPL_UR', 'UR'));
      },
      write: () => {},
    };
    const engine = new DeviceEngine({ platform: 'weak', port, clock, rng: new SeededRng(1), readAheadBytes: 64, speculationProbability: 1 });
    const r = engine.read(0xffc, 4); // ends at the page boundary: no read-ahead
    await runToEnd(clock);
    expect((await r).length).toBe(4);
    const s = engine.read(0xff0, 4); // read-ahead of 0xff4..0xfff only; it fails, quietly
    const t = s.catch((e: unknown) => e);
    await runToEnd(clock);
    expect(isTlpwireError(await t, 'ERR_CPL_UR')).toBe(true);
    expect(calls).toEqual(['ffc+4', 'ff4+12', 'ff0+4']);
    expect(engine.stats().speculativeReads).toBe(1);
  });

  it('tso engines never speculate', async () => {
    const clock = new VirtualClock();
    const port = new ManualPort(clock, () => 50);
    const engine = new DeviceEngine({ platform: 'tso', port, clock, rng: new SeededRng(1), readAheadBytes: 64, speculationProbability: 1 });
    void engine.read(0x100, 4);
    await runToEnd(clock);
    expect(port.calls).toEqual(['R 100']);
  });
});

describe('real-runtime settings', () => {
  it('use no timers: writes and reads leave at once, in order', async () => {
    const clock = new VirtualClock();
    const port = new ManualPort();
    const engine = new DeviceEngine({ platform: 'weak', port, clock, rng: new SeededRng(1), ...IMMEDIATE_DEVICE_ENGINE_OPTIONS });
    engine.write(0x100, bytes(1));
    void engine.read(0x200, 4);
    engine.write(0x300, bytes(1));
    expect(port.calls).toEqual(['W 100', 'R 200', 'W 300']);
    expect(clock.pending).toBe(0);
    port.complete(0);
    await tick();
    expect(engine.outstandingReads).toBe(0);
  });
});
