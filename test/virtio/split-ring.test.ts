import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BarrierPolicy,
  SplitRingDevice,
  SplitRingDriver,
  splitRingFootprint,
  type SplitRingLayout,
} from '../../src/virtio/index.js';
import { isTlpwireError } from '../../src/core/index.js';
import { FlatMemory } from './flat-memory.js';

function setup(size: number, opts: { eventIdx: boolean; indirect: boolean }) {
  const mem = new FlatMemory(1 << 20);
  const fp = splitRingFootprint(size);
  const base = 0x1000;
  const layout: SplitRingLayout = {
    size,
    desc: { cpu: base + fp.descOff, dma: base + fp.descOff },
    avail: { cpu: base + fp.availOff, dma: base + fp.availOff },
    used: { cpu: base + fp.usedOff, dma: base + fp.usedOff },
  };
  const policy = new BarrierPolicy('strict', 'strict');
  let nextTable = 0x80000;
  const driver = new SplitRingDriver<number>(mem, layout, {
    ...opts,
    policy,
    indirectAllocator: {
      alloc: (bytes) => {
        const a = nextTable;
        nextTable += Math.ceil(bytes / 16) * 16;
        return { cpu: a, dma: a };
      },
      free: () => {},
    },
  });
  driver.initRing();
  const device = new SplitRingDevice(mem.deviceView(), {
    size,
    desc: layout.desc.dma,
    avail: layout.avail.dma,
    used: layout.used.dma,
    ...opts,
    policy,
  });
  return { mem, driver, device, layout };
}

describe('split virtqueue, driver against device on coherent memory', () => {
  it('passes buffers both ways and returns every token once, with the written length', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(4, 8, 16, 256),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 200 }),
        async (size, eventIdx, indirect, shapes) => {
          const { driver, device, mem } = setup(size, { eventIdx, indirect });
          const returned: number[] = [];
          let added = 0;
          let token = 0;
          for (const [nOut, nIn] of shapes) {
            if (nOut + nIn === 0 || (!indirect && nOut + nIn > size)) continue;
            const out = Array.from({ length: nOut }, (_, i) => ({ addr: 0x90000 + i * 64, len: 64 }));
            const inp = Array.from({ length: nIn }, (_, i) => ({ addr: 0xa0000 + i * 64, len: 64 }));
            while (!driver.add(out, inp, token)) {
              // full: let the device complete everything, then reclaim
              const chains = await device.pop();
              await device.push(chains.map((c) => ({ head: c.head, len: c.writableBytes })));
              for (let u = driver.getBuf(); u !== undefined; u = driver.getBuf()) returned.push(u.token);
            }
            added++;
            token++;
            driver.kickPrepare();
          }
          const chains = await device.pop();
          for (const c of chains) {
            expect(c.readable.length + c.writable.length).toBeGreaterThan(0);
            // the device writes a pattern into writable space
            for (const w of c.writable) mem.bytes.fill(0xab, w.addr, w.addr + w.len);
          }
          await device.push(chains.map((c) => ({ head: c.head, len: c.writableBytes })));
          for (let u = driver.getBuf(); u !== undefined; u = driver.getBuf()) returned.push(u.token);
          expect(driver.broken).toBeUndefined();
          expect(returned.length).toBe(added);
          expect(new Set(returned).size).toBe(added);
          expect(driver.numFree).toBe(size);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('suppresses notifications with EVENT_IDX and asks for one when the device re-enables', async () => {
    const { driver, device } = setup(8, { eventIdx: true, indirect: false });
    expect(await device.enableNotify()).toBe(false);
    driver.add([{ addr: 0x90000, len: 10 }], [], 1);
    expect(driver.kickPrepare()).toBe(true); // avail_event = 0, new = 1, old = 0
    driver.add([{ addr: 0x90000, len: 10 }], [], 2);
    expect(driver.kickPrepare()).toBe(false); // device has not consumed past 0 yet
    const chains = await device.pop();
    expect(chains.map((c) => c.head)).toEqual([0, 1]);
    expect(await device.enableNotify()).toBe(false);
    driver.add([{ addr: 0x90000, len: 10 }], [], 3);
    expect(driver.kickPrepare()).toBe(true);
  });

  it('the device refuses a descriptor loop, a head outside the ring and INDIRECT+NEXT', async () => {
    const { mem, driver, device, layout } = setup(8, { eventIdx: false, indirect: false });
    driver.add([{ addr: 0x90000, len: 10 }, { addr: 0x90100, len: 10 }], [], 1);
    // a malicious driver: make descriptor 1 point back to 0 with NEXT
    mem.write32(layout.desc.cpu + 16 + 12, 1 | (0 << 16));
    await expect(device.pop()).rejects.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_VQ_CHAIN_LOOP'));

    const s2 = setup(8, { eventIdx: false, indirect: false });
    s2.mem.write16(s2.layout.avail.cpu + 4, 9);
    s2.mem.write16(s2.layout.avail.cpu + 2, 1);
    await expect(s2.device.pop()).rejects.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_VQ_INVALID'));

    const s3 = setup(8, { eventIdx: false, indirect: true });
    s3.mem.write64(s3.layout.desc.cpu, 0x90000);
    s3.mem.write32(s3.layout.desc.cpu + 8, 32);
    s3.mem.write32(s3.layout.desc.cpu + 12, 4 | 1);
    s3.mem.write16(s3.layout.avail.cpu + 4, 0);
    s3.mem.write16(s3.layout.avail.cpu + 2, 1);
    await expect(s3.device.pop()).rejects.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_VQ_INVALID'));
  });

  it('the driver marks the ring broken when the device names a buffer that is not a head', async () => {
    const { mem, driver, layout } = setup(8, { eventIdx: false, indirect: false });
    driver.add([], [{ addr: 0x90000, len: 100 }], 7);
    mem.write32(layout.used.cpu + 4, 5); // id 5 was never given
    mem.write32(layout.used.cpu + 8, 10);
    mem.write16(layout.used.cpu + 2, 1);
    expect(driver.getBuf()).toBeUndefined();
    expect(driver.broken).toMatch(/id 5 is not a head/);
  });

  it('the driver marks the ring broken when the used length exceeds the writable space', async () => {
    const { mem, driver, layout } = setup(8, { eventIdx: false, indirect: false });
    driver.add([], [{ addr: 0x90000, len: 100 }], 7);
    mem.write32(layout.used.cpu + 4, 0);
    mem.write32(layout.used.cpu + 8, 101);
    mem.write16(layout.used.cpu + 2, 1);
    expect(driver.getBuf()).toBeUndefined();
    expect(driver.broken).toMatch(/exceeds/);
  });
});
