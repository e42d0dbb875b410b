import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRng, type TlpwireError } from '../../src/core/index.js';
import { VIRTIO_F, VIRTIO_NET_F } from '../../src/spec/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { BarrierPolicy, type SplitRingLayout, SplitRingDriver } from '../../src/virtio/index.js';
import {
  NET_DEVICE_FEATURES,
  NET_RX_QUEUE,
  NET_TX_QUEUE,
  VirtioNetDriver,
  featureBit,
  parseNetConfig,
  prepareChecksumOffload,
} from '../../src/net/index.js';
import { FlatMemory } from '../virtio/flat-memory.js';
import { DEVICE_MAC, TestAllocator, flatBufferMemory, ringLayout } from './net-harness.js';
import { buildUdp4, l4ChecksumOk } from './net-packets.js';

/** The test plays the device by hand: it reads the avail ring and writes used entries. */
class HandDevice {
  lastAvail = 0;
  usedIdx = 0;
  constructor(
    private readonly mem: FlatMemory,
    private readonly l: SplitRingLayout,
  ) {}

  /** Buffers the driver made available since the last call: head and the first descriptor. */
  takeAvail(): { head: number; addr: number; len: number }[] {
    const { mem, l } = this;
    const out: { head: number; addr: number; len: number }[] = [];
    const idx = mem.read16(l.avail.cpu + 2);
    while (this.lastAvail !== idx) {
      const head = mem.read16(l.avail.cpu + 4 + 2 * (this.lastAvail % l.size));
      const d = l.desc.cpu + 16 * head;
      out.push({ head, addr: mem.read32(d) + mem.read32(d + 4) * 2 ** 32, len: mem.read32(d + 8) });
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
    }
    return out;
  }

  pushUsed(entries: { id: number; len: number }[]): void {
    const { mem, l } = this;
    for (const e of entries) {
      const at = l.used.cpu + 4 + 8 * (this.usedIdx % l.size);
      mem.write32(at, e.id >>> 0);
      mem.write32(at + 4, e.len >>> 0);
      this.usedIdx = (this.usedIdx + 1) & 0xffff;
    }
    mem.write16(l.used.cpu + 2, this.usedIdx);
  }
}

interface DrvOpts {
  mrg?: boolean;
  guestCsum?: boolean;
  csum?: boolean;
  size?: number;
  mergeableBufferSize?: number;
  budget?: number;
}

function drvSetup(o: DrvOpts = {}) {
  const clock = new VirtualClock();
  const mem = new FlatMemory(1 << 22);
  const size = o.size ?? 8;
  const rxL = ringLayout(0x1000, size);
  const txL = ringLayout(0x8000, size);
  const policy = new BarrierPolicy('strict', 'strict');
  const alloc = new TestAllocator(0x100000, mem.bytes.length);
  const rx = new SplitRingDriver<number>(mem, rxL, { eventIdx: false, indirect: false, policy });
  const tx = new SplitRingDriver<number>(mem, txL, { eventIdx: false, indirect: false, policy });
  rx.initRing();
  tx.initRing();
  let features = NET_DEVICE_FEATURES | featureBit(VIRTIO_F.VERSION_1);
  if (!(o.mrg ?? false)) features &= ~featureBit(VIRTIO_NET_F.MRG_RXBUF);
  if (!(o.guestCsum ?? true)) features &= ~featureBit(VIRTIO_NET_F.GUEST_CSUM);
  if (!(o.csum ?? true)) features &= ~featureBit(VIRTIO_NET_F.CSUM);
  const config = new Uint8Array(20);
  config.set(DEVICE_MAC, 0);
  config[6] = 1;
  config[8] = 1;
  config[10] = 1500 & 0xff;
  config[11] = 1500 >> 8;
  const notifies: number[] = [];
  const errors: TlpwireError[] = [];
  const driver = new VirtioNetDriver({
    rx,
    tx,
    mem: flatBufferMemory(mem),
    allocator: alloc,
    features,
    config: parseNetConfig(config, features),
    notify: (q) => notifies.push(q),
    clock,
    ...(o.mergeableBufferSize !== undefined ? { mergeableBufferSize: o.mergeableBufferSize } : {}),
    ...(o.budget !== undefined ? { budget: o.budget } : {}),
    onError: (e) => errors.push(e),
  });
  const frames: Uint8Array[] = [];
  driver.onFrame = (f) => frames.push(f);
  const rxDev = new HandDevice(mem, rxL);
  const txDev = new HandDevice(mem, txL);
  const run = () => clock.run({ maxEvents: 10_000 });
  return { clock, mem, driver, rx, tx, rxL, txL, rxDev, txDev, notifies, errors, frames, run, alloc };
}

function hdr(numBuffers: number, flags = 0, csumStart = 0, csumOffset = 0): number[] {
  return [flags, 0, 0, 0, 0, 0, csumStart & 0xff, csumStart >> 8, csumOffset & 0xff, csumOffset >> 8, numBuffers & 0xff, numBuffers >> 8];
}

function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

describe('VirtioNetDriver RX', () => {
  it('posts every RX buffer at start with one kick, each big enough for header + 1518 bytes', () => {
    const s = drvSetup({ size: 8 });
    s.driver.start();
    const bufs = s.rxDev.takeAvail();
    expect(bufs).toHaveLength(8);
    for (const b of bufs) expect(b.len).toBe(12 + 1518);
    expect(s.notifies).toEqual([NET_RX_QUEUE]);
    expect(s.driver.mac).toEqual(DEVICE_MAC);
    expect(s.driver.mtu).toBe(1500);
    expect(s.driver.linkUp).toBe(true);
  });

  it('delivers a frame after the RX interrupt, then refills the buffer and kicks once', () => {
    const s = drvSetup();
    s.driver.start();
    const [b0, b1] = s.rxDev.takeAvail();
    const f0 = frame(100, 1);
    const f1 = frame(1514, 2);
    s.mem.bytes.set([...hdr(1), ...f0], b0!.addr);
    s.mem.bytes.set([...hdr(1), ...f1], b1!.addr);
    s.rxDev.pushUsed([
      { id: b0!.head, len: 112 },
      { id: b1!.head, len: 1526 },
    ]);
    s.driver.interrupt(NET_RX_QUEUE);
    s.driver.interrupt(NET_RX_QUEUE); // a second interrupt while the poll is scheduled does nothing more
    s.run();
    expect(s.frames).toEqual([f0, f1]);
    expect(s.rxDev.takeAvail().map((b) => b.head).sort()).toEqual([b0!.head, b1!.head].sort());
    expect(s.notifies).toEqual([NET_RX_QUEUE, NET_RX_QUEUE]);
    expect(s.driver.counters.get('rx_frames')).toBe(2);
  });

  it('reassembles a frame over num_buffers mergeable buffers, even across polls', () => {
    const s = drvSetup({ mrg: true, mergeableBufferSize: 256, budget: 2, size: 16 });
    s.driver.start();
    const bufs = s.rxDev.takeAvail();
    expect(bufs[0]!.len).toBe(256);
    const f = frame(600, 3); // 612 bytes: 256 + 256 + 100
    const bytes = Uint8Array.from([...hdr(3), ...f]);
    s.mem.bytes.set(bytes.subarray(0, 256), bufs[0]!.addr);
    s.mem.bytes.set(bytes.subarray(256, 512), bufs[1]!.addr);
    s.mem.bytes.set(bytes.subarray(512), bufs[2]!.addr);
    const g = frame(50, 4);
    s.mem.bytes.set([...hdr(1), ...g], bufs[3]!.addr);
    s.rxDev.pushUsed([
      { id: bufs[0]!.head, len: 256 },
      { id: bufs[1]!.head, len: 256 },
      { id: bufs[2]!.head, len: 100 },
      { id: bufs[3]!.head, len: 62 },
    ]);
    s.driver.interrupt(NET_RX_QUEUE);
    s.run();
    expect(s.frames).toEqual([f, g]);
    expect(s.driver.counters.get('rx_merged_frames')).toBe(1);
  });

  it('counts short buffers, bad headers and impossible num_buffers, recycling the buffers', () => {
    const s = drvSetup({ mrg: true, guestCsum: false, mergeableBufferSize: 2048, size: 16 });
    s.driver.start();
    const b = s.rxDev.takeAvail();
    s.mem.bytes.set([...hdr(1, 2), ...frame(60, 0)], b[1]!.addr); // DATA_VALID without GUEST_CSUM
    s.mem.bytes.set([...hdr(0), ...frame(60, 0)], b[2]!.addr); // num_buffers 0
    s.mem.bytes.set([...hdr(99), ...frame(60, 0)], b[3]!.addr); // more buffers than the ring has
    s.mem.bytes.set([...hdr(1), ...frame(10, 0)], b[4]!.addr); // a runt
    s.rxDev.pushUsed([
      { id: b[0]!.head, len: 5 },
      { id: b[1]!.head, len: 72 },
      { id: b[2]!.head, len: 72 },
      { id: b[3]!.head, len: 72 },
      { id: b[4]!.head, len: 22 },
    ]);
    s.driver.interrupt(NET_RX_QUEUE);
    s.run();
    expect(s.frames).toEqual([]);
    expect(s.driver.counters.get('rx_length_errors')).toBe(2);
    expect(s.driver.counters.get('rx_header_errors')).toBe(3);
    expect(s.rxDev.takeAvail()).toHaveLength(5);
    expect(s.errors).toEqual([]);
  });

  it('completes a NEEDS_CSUM frame from the device (GUEST_CSUM) before delivering it', () => {
    const s = drvSetup({ guestCsum: true });
    s.driver.start();
    const [b] = s.rxDev.takeAvail();
    const pkt = buildUdp4(new SeededRng(5), 333);
    const off = prepareChecksumOffload(pkt)!;
    s.mem.bytes.set([...hdr(1, 1, off.csumStart, off.csumOffset), ...pkt], b!.addr);
    s.rxDev.pushUsed([{ id: b!.head, len: 12 + pkt.length }]);
    s.driver.interrupt(NET_RX_QUEUE);
    s.run();
    expect(s.frames).toHaveLength(1);
    expect(l4ChecksumOk(s.frames[0]!)).toBe(true);
  });

  it('marks the interface broken when the device returns more than the buffer holds', () => {
    const s = drvSetup();
    s.driver.start();
    const [b] = s.rxDev.takeAvail();
    s.rxDev.pushUsed([{ id: b!.head, len: 1531 }]);
    expect(() => {
      s.driver.interrupt(NET_RX_QUEUE);
      s.run();
    }).not.toThrow();
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]!.code).toBe('ERR_VQ_BROKEN');
    expect(s.driver.broken).toMatch(/exceeds/);
    expect(s.driver.send(frame(60, 0))).toBe(false);
    expect(s.driver.counters.get('ring_broken')).toBe(1);
  });
});

describe('VirtioNetDriver TX', () => {
  it('writes a zero header and the frame, coalesces kicks, reclaims completions', () => {
    const s = drvSetup({ size: 8 });
    s.driver.start();
    s.notifies.length = 0;
    const fs = [frame(60, 1), frame(1514, 2), frame(200, 3)];
    for (const f of fs) expect(s.driver.send(f)).toBe(true);
    expect(s.notifies).toEqual([]); // the kick comes after the batch
    s.run();
    expect(s.notifies).toEqual([NET_TX_QUEUE]);
    const bufs = s.txDev.takeAvail();
    expect(bufs).toHaveLength(3);
    bufs.forEach((b, i) => {
      expect(b.len).toBe(12 + fs[i]!.length);
      expect([...s.mem.bytes.subarray(b.addr, b.addr + 12)]).toEqual(new Array(12).fill(0));
      expect(s.mem.bytes.subarray(b.addr + 12, b.addr + b.len)).toEqual(fs[i]);
    });
    s.txDev.pushUsed(bufs.map((b) => ({ id: b.head, len: 0 })));
    expect(s.driver.txFreeBuffers).toBe(5);
    // lazily: completions are reclaimed only once free buffers run low (below a quarter)
    for (let i = 0; i < 4; i++) expect(s.driver.send(frame(60, i))).toBe(true);
    expect(s.driver.txFreeBuffers).toBe(1);
    expect(s.driver.send(frame(60, 5))).toBe(true);
    expect(s.driver.txFreeBuffers).toBe(3);
    expect(s.driver.counters.get('tx_completed')).toBe(3);
  });

  it('puts a NEEDS_CSUM header in front of an offloaded frame when CSUM is negotiated', () => {
    const s = drvSetup({ csum: true });
    s.driver.start();
    const pkt = buildUdp4(new SeededRng(9), 100);
    const off = prepareChecksumOffload(pkt)!;
    expect(s.driver.send(pkt, off)).toBe(true);
    const [b] = s.txDev.takeAvail();
    expect([...s.mem.bytes.subarray(b!.addr, b!.addr + 12)]).toEqual(hdr(0, 1, off.csumStart, off.csumOffset));
  });

  it('returns false when the ring is full and fires onWritable after the TX interrupt', () => {
    const s = drvSetup({ size: 4 });
    s.driver.start();
    let writable = 0;
    s.driver.onWritable = () => writable++;
    for (let i = 0; i < 4; i++) expect(s.driver.send(frame(60, i))).toBe(true);
    expect(s.driver.send(frame(60, 9))).toBe(false);
    expect(s.driver.send(frame(60, 9))).toBe(false);
    expect(s.driver.counters.get('tx_ring_full')).toBe(1);
    // the kick went out at once: the device must see the queued frames to complete them
    expect(s.notifies).toContain(NET_TX_QUEUE);
    // TX interrupts are armed now: used.flags/avail.flags NO_INTERRUPT clear
    expect(s.mem.read16(s.txL.avail.cpu) & 1).toBe(0);
    const bufs = s.txDev.takeAvail();
    s.txDev.pushUsed([{ id: bufs[0]!.head, len: 0 }]);
    s.driver.interrupt(NET_TX_QUEUE);
    expect(writable).toBe(1);
    expect(s.mem.read16(s.txL.avail.cpu) & 1).toBe(1);
    expect(s.driver.send(frame(60, 10))).toBe(true);
  });

  it('marks the interface broken when the device completes a TX buffer that is not a head', () => {
    const s = drvSetup({ size: 4 });
    s.driver.start();
    for (let i = 0; i < 4; i++) s.driver.send(frame(60, i));
    s.txDev.takeAvail();
    s.txDev.pushUsed([{ id: 3000, len: 0 }]);
    expect(s.driver.send(frame(60, 5))).toBe(false);
    expect(s.errors).toHaveLength(1);
    expect(s.driver.broken).toMatch(/not a head/);
  });

  it('refuses frames that do not fit the MTU, and sends before start', () => {
    const s = drvSetup();
    expect(() => s.driver.send(frame(60, 0))).toThrow(/before start/);
    s.driver.start();
    expect(() => s.driver.send(frame(13, 0))).toThrow(/MTU/);
    expect(() => s.driver.send(frame(1515, 0))).toThrow(/MTU/);
    expect(() => s.driver.send(frame(60, 0), { csumStart: 50, csumOffset: 9 })).toThrow(/outside/);
  });

  it('detach() takes every buffer back and frees its memory', () => {
    const s = drvSetup();
    const before = s.alloc.allocated;
    expect(before).toBe(16);
    s.driver.start();
    s.driver.send(frame(60, 1));
    s.driver.detach();
    expect(s.alloc.allocated).toBe(0);
    expect(s.rx.numFree).toBe(8);
    expect(s.tx.numFree).toBe(8);
    expect(s.driver.send(frame(60, 2))).toBe(false);
  });
});

describe('VirtioNetDriver against a malicious device', () => {
  const entryArb = fc.record({
    // mostly a buffer the driver really posted (so frames flow), sometimes any id
    real: fc.oneof({ weight: 12, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    pick: fc.nat({ max: 15 }),
    id: fc.oneof(fc.integer({ min: 0, max: 15 }), fc.nat()),
    len: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 500 }) }, { weight: 1, arbitrary: fc.nat() }),
    // what the device writes at the start of the buffer: a plausible header, or leaves garbage
    numBuffers: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
    flags: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
  });
  const opArb = fc.oneof(
    fc.record({
      kind: fc.constant('used' as const),
      q: fc.integer({ min: 0, max: 1 }),
      entries: fc.array(entryArb, { maxLength: 6 }),
      idxJump: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
    }),
    fc.record({ kind: fc.constant('scribble' as const), at: fc.integer({ min: 0x100000, max: 0x130000 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ kind: fc.constant('send' as const), len: fc.integer({ min: 14, max: 1514 }) }),
    fc.record({ kind: fc.constant('irq' as const), q: fc.integer({ min: 0, max: 2 }) }),
  );

  it('never throws; a broken ring is reported once through onError; delivered frames are sane', () => {
    let delivered = 0;
    let broken = 0;
    fc.assert(
      fc.property(fc.boolean(), fc.constantFrom(4, 8, 16), fc.array(opArb, { maxLength: 30 }), (mrg, size, ops) => {
        const s = drvSetup({ mrg, size, mergeableBufferSize: 512 });
        s.driver.start();
        const posted: { head: number; addr: number; len: number }[][] = [[], []];
        for (const op of ops) {
          expect(() => {
            if (op.kind === 'used') {
              const dev = op.q === 0 ? s.rxDev : s.txDev;
              const list = posted[op.q]!;
              list.push(...dev.takeAvail());
              dev.usedIdx = (dev.usedIdx + op.idxJump) & 0xffff;
              const entries = op.entries.map((e) => {
                if (!e.real || list.length === 0) return { id: e.id, len: e.len };
                const [b] = list.splice(e.pick % list.length, 1);
                if (op.q === 0) s.mem.bytes.set(hdr(e.numBuffers, e.flags), b!.addr);
                return { id: b!.head, len: op.q === 0 ? e.len : 0 };
              });
              dev.pushUsed(entries);
            } else if (op.kind === 'scribble') {
              // the device DMA-writes garbage into buffers (headers included)
              s.mem.bytes.set(op.bytes, op.at);
            } else if (op.kind === 'send') {
              s.driver.send(frame(op.len, 1));
            } else {
              s.driver.interrupt(op.q);
            }
            s.run();
          }).not.toThrow();
        }
        s.driver.interrupt(NET_RX_QUEUE);
        s.driver.interrupt(NET_TX_QUEUE);
        s.run();
        if (s.driver.broken !== undefined) {
          broken++;
          expect(s.errors).toHaveLength(1);
          expect(s.errors[0]!.code).toBe('ERR_VQ_BROKEN');
        } else {
          expect(s.errors).toHaveLength(0);
        }
        for (const f of s.frames) {
          expect(f.length).toBeGreaterThanOrEqual(14);
          expect(f.length).toBeLessThanOrEqual(1518);
        }
        delivered += s.frames.length;
      }),
      { numRuns: 400 },
    );
    // the generator reaches both outcomes: frames delivered and rings broken
    expect(delivered).toBeGreaterThan(10);
    expect(broken).toBeGreaterThan(10);
  });
});
