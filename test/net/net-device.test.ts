import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Counters } from '../../src/core/index.js';
import { VIRTIO_F, VIRTIO_NET_F } from '../../src/spec/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { BarrierPolicy, type DeviceMemory, type SplitRingLayout, SplitRingDevice, SplitRingDriver, splitRingFootprint } from '../../src/virtio/index.js';
import { type NetBackend, NET_DEVICE_FEATURES, NET_RX_QUEUE, NET_TX_QUEUE, VirtioNetDevice, featureBit } from '../../src/net/index.js';
import { FlatMemory } from '../virtio/flat-memory.js';
import { DEVICE_MAC, TestAllocator, ringLayout, runSim } from './net-harness.js';

/** A backend that records what it is sent and lets the test inject frames; it may ignore pause(). */
class CaptureBackend implements NetBackend {
  readonly name = 'capture';
  readonly counters = new Counters();
  readonly sent: Uint8Array[] = [];
  onFrame: (frame: Uint8Array) => void = () => {};
  paused = false;
  pauses = 0;
  resumes = 0;
  send(frame: Uint8Array): void {
    this.sent.push(frame.slice());
  }
  pause(): void {
    this.paused = true;
    this.pauses++;
  }
  resume(): void {
    this.paused = false;
    this.resumes++;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface DevOpts {
  mrg?: boolean;
  csum?: boolean;
  eventIdx?: boolean;
  indirect?: boolean;
  size?: number;
  rxQueueFrames?: number;
  mtu?: number;
  memory?: (mem: FlatMemory) => DeviceMemory;
}

/** A device with raw rings: the test plays the driver by hand, byte by byte. */
function devSetup(o: DevOpts = {}) {
  const clock = new VirtualClock();
  const mem = new FlatMemory(1 << 20);
  const size = o.size ?? 8;
  const eventIdx = o.eventIdx ?? false;
  const indirect = o.indirect ?? false;
  const rxL = ringLayout(0x1000, size);
  const txL = ringLayout(0x8000, size);
  const policy = new BarrierPolicy('strict', 'strict');
  const alloc = new TestAllocator(0xf0000, 0x100000);
  const ro = { eventIdx, indirect, policy, indirectAllocator: alloc };
  const rx = new SplitRingDriver<number>(mem, rxL, ro);
  const tx = new SplitRingDriver<number>(mem, txL, ro);
  rx.initRing();
  tx.initRing();
  const dmem = o.memory?.(mem) ?? mem.deviceView();
  const backend = new CaptureBackend();
  const interrupts: number[] = [];
  const resets: string[] = [];
  let configChanges = 0;
  const device = new VirtioNetDevice({
    mac: DEVICE_MAC,
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    ...(o.rxQueueFrames !== undefined ? { rxQueueFrames: o.rxQueueFrames } : {}),
    backend,
    clock,
    memory: dmem,
    interrupt: (q) => interrupts.push(q),
    onNeedsReset: (r) => resets.push(r),
    onConfigChange: () => configChanges++,
  });
  let f = NET_DEVICE_FEATURES | featureBit(VIRTIO_F.VERSION_1);
  if (!(o.mrg ?? false)) f &= ~featureBit(VIRTIO_NET_F.MRG_RXBUF);
  if (!(o.csum ?? true)) f &= ~featureBit(VIRTIO_NET_F.CSUM);
  device.setFeatures(f);
  const devRing = (l: SplitRingLayout) =>
    new SplitRingDevice(dmem, { size, desc: l.desc.dma, avail: l.avail.dma, used: l.used.dma, eventIdx, indirect, policy });
  device.attachQueue(NET_RX_QUEUE, devRing(rxL));
  device.attachQueue(NET_TX_QUEUE, devRing(txL));
  const settle = () => runSim(clock, () => device.idle && clock.pending === 0, 10_000);
  return { clock, mem, device, backend, rx, tx, rxL, txL, interrupts, resets, settle, configChanges: () => configChanges };
}

/** virtio_net_hdr bytes written out by hand (5.1.6): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers. */
function hdrBytes(flags = 0, gsoType = 0, csumStart = 0, csumOffset = 0, numBuffers = 0): number[] {
  return [flags, gsoType, 0, 0, 0, 0, csumStart & 0xff, csumStart >> 8, csumOffset & 0xff, csumOffset >> 8, numBuffers & 0xff, numBuffers >> 8];
}

function ethFrame(len: number, fill = 0x5a, type = 0x88b5): Uint8Array {
  const f = new Uint8Array(len).fill(fill);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  if (len >= 14) {
    f[12] = type >> 8;
    f[13] = type & 0xff;
  }
  return f;
}

let nextBuf = 0x20000;
function put(mem: FlatMemory, bytes: ArrayLike<number>): { addr: number; len: number } {
  const addr = nextBuf;
  nextBuf += Math.ceil((bytes.length + 1) / 64) * 64;
  if (nextBuf > 0xe0000) nextBuf = 0x20000;
  mem.bytes.set(bytes, addr);
  return { addr, len: bytes.length };
}

describe('VirtioNetDevice config and features', () => {
  it('exposes struct virtio_net_config: MAC, status LINK_UP, one queue pair, MTU', () => {
    const { device } = devSetup({ mtu: 9000 });
    // 5.1.4: mac[6] @0, status le16 @6, max_virtqueue_pairs le16 @8, mtu le16 @10
    expect([...device.config.subarray(0, 12)]).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01, 0x00, 0x01, 0x00, 0x28, 0x23]);
    expect(device.readConfig(10, 2)).toBe(9000);
    expect(device.readConfig(8, 2)).toBe(1);
  });

  it('link changes update the status field, bump the version and ask for a config interrupt', () => {
    const s = devSetup();
    s.device.setLinkUp(false);
    expect(s.device.readConfig(6, 2)).toBe(0);
    expect(s.configChanges()).toBe(1);
    s.device.setLinkUp(false); // no change, no interrupt
    expect(s.configChanges()).toBe(1);
    s.device.setLinkUp(true);
    expect(s.device.readConfig(6, 2)).toBe(1);
    expect(s.configChanges()).toBe(2);
    expect(s.device.configVersion).toBe(2);
  });

  it('offers CSUM, GUEST_CSUM, MTU, MAC, MRG_RXBUF and STATUS, nothing else', () => {
    const bits: number[] = [];
    for (let b = 0; b < 64; b++) if ((NET_DEVICE_FEATURES >> BigInt(b)) & 1n) bits.push(b);
    expect(bits).toEqual([0, 1, 3, 5, 15, 16]);
  });
});

describe('VirtioNetDevice TX path', () => {
  it('strips the header, hands the frame to the backend and returns every buffer with len 0, one interrupt per batch', async () => {
    const s = devSetup();
    const frames = [ethFrame(60, 1), ethFrame(1514, 2), ethFrame(14, 3)];
    frames.forEach((f, i) => expect(s.tx.add([put(s.mem, [...hdrBytes(), ...f])], [], i)).toBe(true));
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.backend.sent).toEqual(frames);
    const got = [s.tx.getBuf(), s.tx.getBuf(), s.tx.getBuf()];
    expect(got).toEqual([0, 1, 2].map((token) => ({ token, len: 0 })));
    expect(s.interrupts).toEqual([NET_TX_QUEUE]);
    expect(s.device.counters.get('tx_frames')).toBe(3);
    expect(s.device.counters.get('tx_bytes')).toBe(60 + 1514 + 14);
  });

  it('gathers a header and frame scattered over several descriptors (header split too)', async () => {
    const s = devSetup({ indirect: true });
    const f = ethFrame(300, 7);
    for (let i = 0; i < 300; i++) f[i] = (f[i]! + i) & 0xff;
    const bytes = [...hdrBytes(), ...f];
    const cuts = [0, 5, 12, 13, 100, bytes.length];
    const sgs = cuts.slice(1).map((end, i) => put(s.mem, bytes.slice(cuts[i], end)));
    expect(s.tx.add(sgs, [], 9)).toBe(true);
    // and the usual two-element layout: header, then frame
    expect(s.tx.add([put(s.mem, hdrBytes()), put(s.mem, f)], [], 10)).toBe(true);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.backend.sent).toEqual([f, f]);
  });

  it('counts and drops runts, oversize frames, bad headers and bad descriptors, still returning each buffer', async () => {
    const s = devSetup({ csum: false, size: 16 });
    const cases: [string, { addr: number; len: number }[], { addr: number; len: number }[]][] = [
      ['runt', [put(s.mem, [...hdrBytes(), ...ethFrame(13)])], []],
      ['header truncated', [put(s.mem, [1, 2, 3])], []],
      ['oversize', [put(s.mem, [...hdrBytes(), ...ethFrame(1519)])], []],
      ['untagged 1518', [put(s.mem, [...hdrBytes(), ...ethFrame(1518)])], []],
      ['gso', [put(s.mem, [...hdrBytes(0, 1), ...ethFrame(100)])], []],
      ['DATA_VALID on tx', [put(s.mem, [...hdrBytes(2), ...ethFrame(100)])], []],
      ['NEEDS_CSUM without CSUM', [put(s.mem, [...hdrBytes(1, 0, 34, 6), ...ethFrame(100)])], []],
      ['writable part', [put(s.mem, [...hdrBytes(), ...ethFrame(100)])], [{ addr: 0x90000, len: 64 }]],
    ];
    cases.forEach(([, out, inp], i) => expect(s.tx.add(out, inp, i)).toBe(true));
    // a VLAN-tagged frame may be 4 bytes longer
    expect(s.tx.add([put(s.mem, [...hdrBytes(), ...ethFrame(1518, 0, 0x8100)])], [], 99)).toBe(true);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.backend.sent.map((f) => f.length)).toEqual([1518]);
    const c = s.device.counters;
    expect(c.get('tx_dropped_runt')).toBe(1);
    expect(c.get('tx_dropped_oversize')).toBe(2);
    expect(c.get('tx_dropped_bad_header')).toBe(4);
    expect(c.get('tx_dropped_bad_desc')).toBe(1);
    const lens: number[] = [];
    for (let u = s.tx.getBuf(); u !== undefined; u = s.tx.getBuf()) lens.push(u.len);
    expect(lens).toEqual(new Array(cases.length + 1).fill(0));
    expect(s.resets).toEqual([]);
    expect(s.tx.broken).toBeUndefined();
  });

  it('drops a NEEDS_CSUM header whose checksum field lies outside the frame', async () => {
    const s = devSetup({ csum: true });
    s.tx.add([put(s.mem, [...hdrBytes(1, 0, 90, 9), ...ethFrame(100)])], [], 0);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.device.counters.get('tx_dropped_bad_header')).toBe(1);
    expect(s.backend.sent).toEqual([]);
  });
});

describe('VirtioNetDevice RX path', () => {
  it('writes header (num_buffers 1) and frame into a posted buffer and reports the bytes written', async () => {
    const s = devSetup();
    const buf = { addr: 0x30000, len: 1526 };
    s.rx.add([], [buf], 5);
    s.device.kick(NET_RX_QUEUE);
    const f = ethFrame(200, 9);
    s.backend.onFrame(f);
    await s.settle();
    const u = s.rx.getBuf();
    expect(u).toEqual({ token: 5, len: 212 });
    expect([...s.mem.bytes.subarray(0x30000, 0x30000 + 12)]).toEqual(hdrBytes(0, 0, 0, 0, 1));
    expect(s.mem.bytes.subarray(0x3000c, 0x3000c + 200)).toEqual(f);
    expect(s.interrupts).toEqual([NET_RX_QUEUE]);
  });

  it('without MRG_RXBUF drops a frame that does not fit the buffer, and keeps the buffer for the next', async () => {
    const s = devSetup();
    s.rx.add([], [{ addr: 0x30000, len: 100 }], 1);
    s.backend.onFrame(ethFrame(200));
    s.backend.onFrame(ethFrame(80));
    await s.settle();
    expect(s.device.counters.get('rx_dropped_too_big')).toBe(1);
    expect(s.rx.getBuf()).toEqual({ token: 1, len: 92 });
  });

  it('with MRG_RXBUF spreads a frame over several buffers and says how many in num_buffers', async () => {
    const s = devSetup({ mrg: true, size: 16 });
    for (let i = 0; i < 8; i++) s.rx.add([], [{ addr: 0x30000 + i * 0x100, len: 64 }], i);
    const f = ethFrame(200, 0);
    for (let i = 0; i < 200; i++) f[i] = i;
    s.backend.onFrame(f);
    await s.settle();
    const got: { token: number; len: number }[] = [];
    for (let u = s.rx.getBuf(); u !== undefined; u = s.rx.getBuf()) got.push(u);
    // 212 bytes in 64-byte buffers: 64 + 64 + 64 + 20
    expect(got).toEqual([
      { token: 0, len: 64 },
      { token: 1, len: 64 },
      { token: 2, len: 64 },
      { token: 3, len: 20 },
    ]);
    expect(s.mem.read16(0x30000 + 10)).toBe(4);
    const back = new Uint8Array(212);
    for (let i = 0; i < 4; i++) back.set(s.mem.bytes.subarray(0x30000 + i * 0x100, 0x30000 + i * 0x100 + got[i]!.len), i * 64);
    expect(back.subarray(12)).toEqual(f);
    expect(s.device.counters.get('rx_merged_frames')).toBe(1);
  });

  it('waits for more buffers when the posted ones cannot hold the frame yet (MRG_RXBUF)', async () => {
    const s = devSetup({ mrg: true, size: 16 });
    s.rx.add([], [{ addr: 0x30000, len: 64 }], 0);
    s.backend.onFrame(ethFrame(100));
    await s.settle();
    expect(s.rx.getBuf()).toBeUndefined();
    expect(s.device.rxBacklog).toBe(1);
    // the device re-armed notifications: the refill kick is wanted
    s.rx.add([], [{ addr: 0x30100, len: 64 }], 1);
    expect(s.rx.kickPrepare()).toBe(true);
    s.device.kick(NET_RX_QUEUE);
    await s.settle();
    expect([s.rx.getBuf(), s.rx.getBuf()]).toEqual([
      { token: 0, len: 64 },
      { token: 1, len: 48 },
    ]);
  });

  it('returns an RX chain with device-readable parts with len 0 and goes on', async () => {
    const s = devSetup();
    s.rx.add([{ addr: 0x30000, len: 64 }], [{ addr: 0x30100, len: 1526 }], 1);
    s.rx.add([], [{ addr: 0x31000, len: 1526 }], 2);
    s.backend.onFrame(ethFrame(64));
    await s.settle();
    expect([s.rx.getBuf(), s.rx.getBuf()]).toEqual([
      { token: 1, len: 0 },
      { token: 2, len: 76 },
    ]);
    expect(s.device.counters.get('rx_bad_desc')).toBe(1);
  });

  it('queues frames while no buffer is posted, pauses the backend when full, counts what a backend sends anyway', async () => {
    const s = devSetup({ rxQueueFrames: 4, size: 8 });
    for (let i = 0; i < 10; i++) s.backend.onFrame(ethFrame(60, i));
    await s.settle();
    expect(s.backend.pauses).toBe(1);
    expect(s.device.rxBacklog).toBe(4);
    expect(s.device.counters.get('rx_dropped')).toBe(6);
    for (let i = 0; i < 8; i++) s.rx.add([], [{ addr: 0x30000 + i * 0x800, len: 1526 }], i);
    s.device.kick(NET_RX_QUEUE);
    await s.settle();
    const got: number[] = [];
    for (let u = s.rx.getBuf(); u !== undefined; u = s.rx.getBuf()) got.push(u.token);
    expect(got).toEqual([0, 1, 2, 3]);
    // frames 0..3 arrived, in order
    expect([0, 1, 2, 3].map((i) => s.mem.bytes[0x30000 + i * 0x800 + 12 + 20])).toEqual([0, 1, 2, 3]);
    expect(s.backend.resumes).toBe(1);
  });

  it('drops runts and oversize frames from the backend', () => {
    const s = devSetup();
    s.backend.onFrame(ethFrame(13));
    s.backend.onFrame(ethFrame(1515));
    expect(s.device.counters.get('rx_dropped_runt')).toBe(1);
    expect(s.device.counters.get('rx_dropped_oversize')).toBe(1);
  });
});

describe('VirtioNetDevice errors, reset and polling', () => {
  it('a descriptor loop stops the device and asks for a reset, once', async () => {
    const s = devSetup();
    s.tx.add([put(s.mem, [...hdrBytes(), ...ethFrame(60)]), put(s.mem, [1])], [], 0);
    // the malicious driver: descriptor 1 points back to 0 with NEXT
    s.mem.write32(s.txL.desc.cpu + 16 + 12, 1 | (0 << 16));
    s.device.kick(NET_TX_QUEUE);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.resets).toHaveLength(1);
    expect(s.resets[0]).toMatch(/longer than/);
    expect(s.device.needsReset).toBeDefined();
    expect(s.device.counters.get('needs_reset')).toBe(1);
    s.device.kick(NET_TX_QUEUE);
    s.backend.onFrame(ethFrame(60));
    await s.settle();
    expect(s.resets).toHaveLength(1);
    expect(s.device.counters.get('rx_dropped_not_ready')).toBe(1);
  });

  it('a rejected DMA read (a buffer outside memory) asks for a reset', async () => {
    const s = devSetup();
    s.tx.add([{ addr: 0xfff00000, len: 100 }], [], 0);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.resets).toHaveLength(1);
    expect(s.resets[0]).toMatch(/outside memory/);
  });

  it('a read rejected late (completion arriving after other work) still ends in one reset', async () => {
    let clockRef: VirtualClock | undefined;
    const s = devSetup({ memory: (m) => m.deviceView({ complete: (fn) => clockRef!.setTimer(500, fn) }) });
    clockRef = s.clock;
    s.tx.add([{ addr: 0xfff00000, len: 100 }], [], 0);
    s.tx.add([put(s.mem, [...hdrBytes(), ...ethFrame(60)])], [], 1);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.resets).toHaveLength(1);
    expect(s.backend.sent).toEqual([]);
  });

  it('reset drops rings and backlog; the device works again on new rings', async () => {
    const s = devSetup({ size: 8 });
    s.backend.onFrame(ethFrame(60));
    s.device.reset();
    expect(s.device.rxBacklog).toBe(0);
    expect(s.device.counters.get('rx_dropped_reset')).toBe(1);
    s.backend.onFrame(ethFrame(60));
    expect(s.device.counters.get('rx_dropped_not_ready')).toBe(1);
    await s.device.whenIdle();
    // a fresh ring pair
    const policy = new BarrierPolicy('strict', 'strict');
    const l = ringLayout(0x50000, 8);
    const drv = new SplitRingDriver<number>(s.mem, l, { eventIdx: false, indirect: false, policy });
    drv.initRing();
    s.device.setFeatures(NET_DEVICE_FEATURES & ~featureBit(VIRTIO_NET_F.MRG_RXBUF));
    s.device.attachQueue(NET_TX_QUEUE, new SplitRingDevice(s.mem.deviceView(), { size: 8, desc: l.desc.dma, avail: l.avail.dma, used: l.used.dma, eventIdx: false, indirect: false, policy }));
    drv.add([put(s.mem, [...hdrBytes(), ...ethFrame(70)])], [], 3);
    s.device.kick(NET_TX_QUEUE);
    await s.settle();
    expect(s.backend.sent.map((f) => f.length)).toEqual([70]);
    expect(drv.getBuf()).toEqual({ token: 3, len: 0 });
  });

  it('busy-polls with notifications off, and re-arms them when polling stops', async () => {
    const s = devSetup({ eventIdx: false });
    s.device.setPolling(true);
    await runSim(s.clock, () => s.clock.nowNs() > 5000, 1000);
    // NO_NOTIFY set: the driver need not kick
    s.tx.add([put(s.mem, [...hdrBytes(), ...ethFrame(60)])], [], 0);
    expect(s.tx.kickPrepare()).toBe(false);
    await runSim(s.clock, () => s.backend.sent.length === 1, 1000);
    expect(s.backend.sent).toHaveLength(1);
    s.device.setPolling(false);
    await s.settle();
    s.tx.add([put(s.mem, [...hdrBytes(), ...ethFrame(60)])], [], 1);
    expect(s.tx.kickPrepare()).toBe(true);
  });

  it('poll() reports whether it moved anything', async () => {
    const s = devSetup();
    expect(await s.device.poll()).toBe(false);
    s.tx.add([put(s.mem, [...hdrBytes(), ...ethFrame(60)])], [], 0);
    expect(await s.device.poll()).toBe(true);
    expect(await s.device.poll()).toBe(false);
  });
});

describe('VirtioNetDevice against a malicious driver', () => {
  // mostly plausible values (so chains get walked, buffers read and written), some wild ones
  const w = <T,>(often: fc.Arbitrary<T>, rarely: fc.Arbitrary<T>): fc.Arbitrary<T> =>
    fc.oneof({ weight: 6, arbitrary: often }, { weight: 1, arbitrary: rarely });
  const descArb = fc.record({
    addr: w(fc.integer({ min: 0x10000, max: 0x1f000 }), fc.oneof(fc.integer({ min: 0x1000, max: 0x9fff }), fc.nat(), fc.constant(0xfffffff0))),
    len: w(fc.integer({ min: 0, max: 1600 }), fc.nat()),
    flags: w(fc.constantFrom(0, 1, 2, 3), fc.integer({ min: 0, max: 7 })),
    next: w(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20 })),
  });
  const ringArb = fc.record({
    desc: fc.array(descArb, { minLength: 16, maxLength: 16 }),
    availIdx: w(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 0xffff })),
    availRing: fc.array(w(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20 })), { minLength: 16, maxLength: 16 }),
    availFlags: fc.integer({ min: 0, max: 3 }),
    usedEvent: w(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 0xffff })),
    usedBytes: fc.uint8Array({ minLength: 0, maxLength: 64 }),
  });
  const opArb = fc.oneof(
    fc.record({ kind: fc.constant('kick' as const), q: w(fc.integer({ min: 0, max: 1 }), fc.constant(2)) }),
    fc.record({ kind: fc.constant('frame' as const), len: w(fc.integer({ min: 14, max: 1514 }), fc.integer({ min: 0, max: 1600 })) }),
    fc.record({ kind: fc.constant('poll' as const), on: fc.boolean() }),
    fc.record({ kind: fc.constant('scribble' as const), at: fc.integer({ min: 0x1000, max: 0x9fff }), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant('run' as const), events: fc.integer({ min: 1, max: 50 }) }),
  );

  function writeRing(mem: FlatMemory, l: SplitRingLayout, size: number, r: RingInput): void {
    for (let i = 0; i < size; i++) {
      const d = r.desc[i]!;
      const at = l.desc.cpu + 16 * i;
      mem.write64(at, d.addr);
      mem.write32(at + 8, d.len >>> 0);
      mem.write16(at + 12, d.flags);
      mem.write16(at + 14, d.next);
      mem.write16(l.avail.cpu + 4 + 2 * i, r.availRing[i]!);
    }
    mem.write16(l.avail.cpu, r.availFlags);
    mem.write16(l.avail.cpu + 2, r.availIdx);
    mem.write16(l.avail.cpu + 4 + 2 * size, r.usedEvent);
    mem.bytes.set(r.usedBytes.subarray(0, Math.min(r.usedBytes.length, splitRingFootprint(size).bytes - splitRingFootprint(size).usedOff)), l.used.cpu);
  }

  it('either processes or asks for a reset: never throws, never rejects unhandled, never hangs', async () => {
    const unhandled: unknown[] = [];
    let moved = 0;
    let resetRuns = 0;
    const onUnhandled = (e: unknown): void => {
      unhandled.push(e);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(4, 8, 16),
          fc.boolean(),
          fc.boolean(),
          fc.boolean(),
          ringArb,
          ringArb,
          fc.array(opArb, { minLength: 1, maxLength: 25 }),
          async (size, mrg, eventIdx, indirect, rxRing, txRing, ops) => {
            const clock = new VirtualClock();
            const mem = new FlatMemory(0x20000);
            const rxL = ringLayout(0x1000, size);
            const txL = ringLayout(0x8000, size);
            writeRing(mem, rxL, size, rxRing);
            writeRing(mem, txL, size, txRing);
            const policy = new BarrierPolicy('strict', 'strict');
            const dmem = mem.deviceView({ complete: (fn) => clock.setTimer(10, fn) });
            const backend = new CaptureBackend();
            const resets: string[] = [];
            const device = new VirtioNetDevice({
              mac: DEVICE_MAC,
              backend,
              clock,
              memory: dmem,
              interrupt: () => {},
              onNeedsReset: (r) => resets.push(r),
              rxQueueFrames: 8,
            });
            let f = NET_DEVICE_FEATURES;
            if (!mrg) f &= ~featureBit(VIRTIO_NET_F.MRG_RXBUF);
            device.setFeatures(f);
            const ring = (l: SplitRingLayout) =>
              new SplitRingDevice(dmem, { size, desc: l.desc.dma, avail: l.avail.dma, used: l.used.dma, eventIdx, indirect, policy });
            device.attachQueue(NET_RX_QUEUE, ring(rxL));
            device.attachQueue(NET_TX_QUEUE, ring(txL));
            for (const op of ops) {
              if (op.kind === 'kick') expect(() => device.kick(op.q)).not.toThrow();
              else if (op.kind === 'frame') expect(() => backend.onFrame(new Uint8Array(op.len).fill(0xee))).not.toThrow();
              else if (op.kind === 'poll') device.setPolling(op.on);
              else if (op.kind === 'scribble') mem.bytes.set(op.bytes, op.at);
              else {
                clock.run({ maxEvents: op.events });
                await new Promise<void>((r) => setImmediate(r));
              }
            }
            device.setPolling(false);
            const finished = await runSim(clock, () => device.idle && clock.pending === 0, 20_000);
            expect(finished).toBe(true);
            expect(resets.length).toBeLessThanOrEqual(1);
            if (resets.length === 1) expect(device.needsReset).toBe(resets[0]);
            // every frame handed on is a sane one
            for (const fr of backend.sent) expect(fr.length).toBeGreaterThanOrEqual(14);
            moved += device.counters.get('tx_frames') + device.counters.get('rx_frames');
            if (resets.length > 0) resetRuns++;
          },
        ),
        { numRuns: 500 },
      );
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    // the generator reaches both outcomes: frames that made it through, and resets
    expect(moved).toBeGreaterThan(5);
    expect(resetRuns).toBeGreaterThan(10);
  }, 60_000);
});

interface RingInput {
  desc: { addr: number; len: number; flags: number; next: number }[];
  availIdx: number;
  availRing: number[];
  availFlags: number;
  usedEvent: number;
  usedBytes: Uint8Array;
}
