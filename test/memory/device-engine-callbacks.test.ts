import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { DeviceEngine, type DmaPort, type DmaReadCallback, type MemoryPlatform } from '../../src/memory/index.js';
import { VirtualClock } from '../../src/sim/index.js';

/** A port with both read forms; callback reads complete from the clock after `delay()` ns. */
class CallbackPort implements DmaPort {
  readonly memory = new Uint8Array(0x1000);
  readonly log: string[] = [];
  constructor(
    private readonly clock: VirtualClock,
    private readonly delay: () => number,
  ) {}
  write(address: number, data: Uint8Array): void {
    this.log.push(`W${address}`);
    this.memory.set(data, address);
  }
  read(address: number, length: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => this.readCb(address, length, (d, e) => (d === undefined ? reject(e) : resolve(d))));
  }
  readCb(address: number, length: number, done: DmaReadCallback): void {
    this.log.push(`R${address}`);
    this.clock.setTimer(this.delay(), () => {
      if (address >= this.memory.length) done(undefined, new RangeError('outside'));
      else done(this.memory.slice(address, address + length), undefined);
    });
  }
}

function setup(platform: MemoryPlatform, seed = 1) {
  const clock = new VirtualClock();
  const rng = new SeededRng(seed);
  const port = new CallbackPort(clock, () => 1 + rng.int(500));
  const engine = new DeviceEngine({ platform, port, clock, rng: new SeededRng(seed + 1), readAheadBytes: 0 });
  return { clock, port, engine };
}

describe('DeviceEngine callback forms (readCb, barrierCb): the simulator path without promises', () => {
  it('readCb answers from the event loop, never inside the call, with the data or the error', () => {
    const { clock, port, engine } = setup('weak');
    port.memory.set([1, 2, 3, 4], 0x10);
    const got: string[] = [];
    engine.readCb(0x10, 4, (d, e) => got.push(d === undefined ? `err ${String(e)}` : `ok ${[...d].join(',')}`));
    engine.readCb(0x2000, 4, (d, e) => got.push(d === undefined ? `err ${(e as Error).message}` : 'ok'));
    expect(got).toEqual([]);
    while (clock.step());
    expect(got.sort()).toEqual(['err outside', 'ok 1,2,3,4']);
    expect(engine.stats().readErrors).toBe(1);
  });

  it('barrierCb: complete at once when nothing is outstanding; rmb waits for earlier reads, and later reads wait for it', () => {
    for (const platform of ['tso', 'weak'] as const) {
      const { clock, port, engine } = setup(platform, 3);
      expect(engine.barrierCb('rmb', () => {})).toBe(true);
      expect(engine.barrierCb('wmb', () => {})).toBe(true);
      const order: string[] = [];
      for (let i = 0; i < 4; i++) engine.readCb(0x100 * i, 4, () => order.push(`r${i}`));
      let fired = false;
      expect(engine.barrierCb('rmb', () => (fired = true))).toBe(false);
      engine.readCb(0x800, 4, () => order.push('after'));
      expect(fired).toBe(false);
      while (clock.step());
      expect(fired).toBe(true);
      // every read before the barrier completed before the one after it was issued
      expect(order.indexOf('after')).toBe(4);
      expect(port.log.indexOf('R2048')).toBe(4);
    }
  });

  it('mb: earlier writes are emitted before later reads are issued (weak engine)', () => {
    const { clock, port, engine } = setup('weak', 5);
    engine.write(0x40, Uint8Array.of(9));
    let done = false;
    const atOnce = engine.barrierCb('mb', () => (done = true));
    engine.readCb(0x40, 1, (d) => {
      expect(d![0]).toBe(9);
    });
    while (clock.step());
    expect(atOnce || done).toBe(true);
    expect(port.log.indexOf('W64')).toBeLessThan(port.log.indexOf('R64'));
  });

  it('the callback and promise forms give the same DMA for the same program and seed', async () => {
    const runOnce = async (cb: boolean): Promise<string[]> => {
      const { clock, port, engine } = setup('weak', 9);
      for (let i = 0; i < 20; i++) {
        if (i % 5 === 4) engine.write(0x10 * i, Uint8Array.of(i));
        if (cb) engine.readCb(0x10 * i, 8, () => {});
        else void engine.read(0x10 * i, 8);
      }
      for (let n = 0; n < 10_000 && clock.step(); n++) await Promise.resolve();
      return port.log;
    };
    expect(await runOnce(true)).toEqual(await runOnce(false));
  });
});
