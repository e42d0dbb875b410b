import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import {
  BarrierPolicy,
  SplitRingDevice,
  SplitRingDriver,
  runDmaTask,
  runDmaTaskAsync,
  type DeviceBarrier,
  type DeviceMemory,
  type DmaTask,
} from '../../src/virtio/index.js';
import { FlatMemory } from './flat-memory.js';
import { ringLayout } from '../net/net-harness.js';

/**
 * A device view of FlatMemory with both forms: promise reads and callback reads complete on the
 * clock after a random delay (out of order), barriers complete at once or later.
 */
function dualMemory(mem: FlatMemory, clock: VirtualClock, rng: SeededRng, log: string[]): DeviceMemory {
  const later = (fn: () => void): void => {
    clock.setTimer(1 + rng.int(100), fn);
  };
  const readNow = (a: number, l: number): Uint8Array => {
    if (a + l > mem.bytes.length) throw new RangeError(`outside memory: 0x${a.toString(16)}`);
    return mem.bytes.slice(a, a + l);
  };
  return {
    read: (a, l) =>
      new Promise((resolve, reject) => {
        log.push(`r${a}`);
        later(() => {
          try {
            resolve(readNow(a, l));
          } catch (e) {
            reject(e);
          }
        });
      }),
    readCb: (a, l, done) => {
      log.push(`r${a}`);
      later(() => {
        try {
          done(readNow(a, l), undefined);
        } catch (e) {
          done(undefined, e);
        }
      });
    },
    write: (a, d) => {
      log.push(`w${a}`);
      mem.bytes.set(d, a);
    },
    barrier: (k: DeviceBarrier) => {
      log.push(k);
    },
    barrierCb: (k: DeviceBarrier, done: () => void) => {
      log.push(k);
      if (k === 'wmb') return true;
      later(done);
      return false;
    },
  };
}

async function settle(clock: VirtualClock, until: () => boolean): Promise<void> {
  for (let i = 0; i < 100_000 && !until(); i++) {
    if (!clock.step()) await new Promise<void>((r) => setImmediate(r));
  }
}

describe('device ring tasks: the callback runner and the promise runner', () => {
  it('pop and push give the same chains, the same memory and the same steps with either runner', async () => {
    const results: { chains: string; used: string; log: string[] }[] = [];
    for (const mode of ['callback', 'promise'] as const) {
      const mem = new FlatMemory(1 << 20);
      const l = ringLayout(0x1000, 16);
      const policy = new BarrierPolicy('strict', 'strict');
      const drv = new SplitRingDriver<number>(mem, l, { eventIdx: false, indirect: false, policy });
      drv.initRing();
      for (let i = 0; i < 10; i++) drv.add([{ addr: 0x9000 + 64 * i, len: 64 }], i % 2 === 0 ? [] : [{ addr: 0xa000 + 64 * i, len: 32 }], i);
      const clock = new VirtualClock();
      const log: string[] = [];
      const dmem = dualMemory(mem, clock, new SeededRng(4), log);
      const dev = new SplitRingDevice(dmem, { size: 16, desc: l.desc.dma, avail: l.avail.dma, used: l.used.dma, eventIdx: false, indirect: false, policy });
      let chains: unknown;
      let done = false;
      const task = function* (): DmaTask<void> {
        const c = yield* dev.popTask();
        chains = c;
        yield* dev.pushTask(c.map((x) => ({ head: x.head, len: x.writableBytes })));
      };
      if (mode === 'callback') {
        runDmaTask(task(), dmem, () => (done = true), (e) => {
          throw e;
        });
        // callbacks never complete inside the call
        expect(done).toBe(false);
      } else {
        void runDmaTaskAsync(task(), { read: dmem.read, write: dmem.write, barrier: dmem.barrier }).then(() => (done = true));
      }
      await settle(clock, () => done);
      expect(done).toBe(true);
      const used: number[] = [];
      for (let u = drv.getBuf(); u !== undefined; u = drv.getBuf()) used.push(u.token, u.len);
      results.push({ chains: JSON.stringify(chains), used: JSON.stringify(used), log });
    }
    expect(results[0]!.chains).toBe(results[1]!.chains);
    expect(results[0]!.used).toBe(results[1]!.used);
    expect(JSON.parse(results[0]!.used)).toEqual([0, 0, 1, 32, 2, 0, 3, 32, 4, 0, 5, 32, 6, 0, 7, 32, 8, 0, 9, 32]);
    // the same DMA and barriers, issued in the same order
    expect(results[0]!.log).toEqual(results[1]!.log);
  });

  it('an error thrown into the task (a rejected read) reaches onError once; a task may catch it', async () => {
    const mem = new FlatMemory(0x1000);
    const clock = new VirtualClock();
    const dmem = dualMemory(mem, clock, new SeededRng(1), []);
    const errors: unknown[] = [];
    let value: unknown;
    const failing = function* (): DmaTask<number> {
      yield { op: 'reads', addrs: [0, 0x10_0000, 0x20_0000], lens: [4, 4, 4] };
      return 1;
    };
    const catching = function* (): DmaTask<string> {
      try {
        yield { op: 'read', addr: 0x10_0000, len: 4 };
        return 'no';
      } catch {
        const [a] = (yield { op: 'all', tasks: [failing(), (function* (): DmaTask<number> { return 7; })()] }) as [number];
        return `caught ${a}`;
      }
    };
    runDmaTask(failing(), dmem, (v) => (value = v), (e) => errors.push(e));
    runDmaTask(catching(), dmem, (v) => (value = v), (e) => errors.push(e));
    await settle(clock, () => clock.pending === 0);
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => e instanceof RangeError)).toBe(true);
    expect(value).toBeUndefined();
  });
});
