import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { DeviceEngine, HostCpu, HostRam, type MemoryPlatform } from '../../src/memory/index.js';
import { VIRTIO_F, VIRTIO_NET_F } from '../../src/spec/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { BarrierPolicy, type SplitRingLayout, SplitRingDevice, SplitRingDriver, splitRingFootprint } from '../../src/virtio/index.js';
import {
  FrameChecker,
  FrameGenerator,
  LoopbackBackend,
  NET_DEVICE_FEATURES,
  NET_RX_QUEUE,
  NET_TX_QUEUE,
  VirtioNetDevice,
  VirtioNetDriver,
  featureBit,
  parseNetConfig,
} from '../../src/net/index.js';
import { TestFabric, TestMmio, le32 } from '../memory/fabric.js';
import { DEVICE_MAC, PEER_MAC, runSim } from './net-harness.js';

const MSIX_BASE = 0xf000;
const NOTIFY_BASE = 0x3000;

/**
 * The net driver and device over the memory models: a host CPU with a store buffer and stale
 * loads, a device engine that emits writes and completes reads out of order, and a fabric with
 * PCIe ordering between them; doorbells are MMIO writes, interrupts MSI-X writes.
 */
async function run(o: { host: MemoryPlatform; device: MemoryPlatform; seed: number; total: number; mrg: boolean; eventIdx: boolean; policy?: BarrierPolicy }) {
  const root = new SeededRng(o.seed);
  const clock = new VirtualClock();
  const ram = new HostRam({ size: 16 << 20, pageSize: 4096, reserveLow: 0x10000 });
  const cpu = new HostCpu({ platform: o.host, ram, clock, rng: root.fork() });
  let driver: VirtioNetDriver | undefined;
  let device: VirtioNetDevice | undefined;
  const fabric = new TestFabric(clock, root.fork(), { read: (a, l) => ram.readBytes(a, l), write: (a, d) => ram.dmaWrite(a, d) }, 600, (address) => {
    if (address >= MSIX_BASE && address < MSIX_BASE + 8) {
      // the root complex takes the interrupt, then runs the handler
      cpu.interrupt();
      driver?.interrupt((address - MSIX_BASE) / 4);
    }
  });
  const engine = new DeviceEngine({ platform: o.device, port: fabric, clock, rng: root.fork() });
  const mmio = new TestMmio(clock, fabric, {
    onWrite: (address, value) => {
      if (address === NOTIFY_BASE) device?.kick(value);
    },
    onRead: () => 0,
  });
  cpu.attachMmio(mmio);

  const size = 128;
  const layout = (): SplitRingLayout => {
    const fp = splitRingFootprint(size);
    const base = ram.allocate(fp.bytes, 4096);
    return {
      size,
      desc: { cpu: base + fp.descOff, dma: base + fp.descOff },
      avail: { cpu: base + fp.availOff, dma: base + fp.availOff },
      used: { cpu: base + fp.usedOff, dma: base + fp.usedOff },
    };
  };
  const rxL = layout();
  const txL = layout();
  let features = NET_DEVICE_FEATURES | featureBit(VIRTIO_F.VERSION_1) | featureBit(VIRTIO_F.ORDER_PLATFORM);
  if (!o.mrg) features &= ~featureBit(VIRTIO_NET_F.MRG_RXBUF);
  if (o.eventIdx) features |= featureBit(VIRTIO_F.EVENT_IDX);
  // ORDER_PLATFORM negotiated: strict barriers on both sides (unless the test says otherwise)
  const policy = o.policy ?? BarrierPolicy.forNegotiation(true);
  const allocator = {
    alloc: (bytes: number) => {
      const a = ram.allocate(bytes, 64);
      return { cpu: a, dma: a };
    },
    free: (cpu: number) => {
      ram.free(cpu);
    },
  };
  const ro = { eventIdx: o.eventIdx, indirect: false, policy };
  const rx = new SplitRingDriver<number>(cpu, rxL, ro);
  const tx = new SplitRingDriver<number>(cpu, txL, ro);
  rx.initRing();
  tx.initRing();
  const ring = (l: SplitRingLayout) =>
    new SplitRingDevice(engine, { size, desc: l.desc.dma, avail: l.avail.dma, used: l.used.dma, eventIdx: o.eventIdx, indirect: false, policy });
  const resets: string[] = [];
  device = new VirtioNetDevice({
    mac: DEVICE_MAC,
    backend: new LoopbackBackend(clock),
    clock,
    memory: engine,
    // MSI-X: a posted write from the device, ordered by the engine and fabric like any other
    interrupt: (q) => engine.write(MSIX_BASE + 4 * q, le32(q)),
    onNeedsReset: (r) => resets.push(r),
  });
  device.setFeatures(features);
  device.attachQueue(NET_RX_QUEUE, ring(rxL));
  device.attachQueue(NET_TX_QUEUE, ring(txL));
  const errors: Error[] = [];
  driver = new VirtioNetDriver({
    rx,
    tx,
    mem: { writeBytes: (a, d) => cpu.writeBytes(a, d), readBytes: (a, n) => cpu.readBytes(a, n) },
    allocator,
    features,
    config: parseNetConfig(device.config, features),
    // the doorbell is writel: every earlier store is visible first
    notify: (q) => cpu.writel(NOTIFY_BASE, q),
    clock,
    mergeableBufferSize: 512,
    onError: (e) => errors.push(e),
  });
  const d = driver;
  const gen = new FrameGenerator({ dst: PEER_MAC, src: DEVICE_MAC, size: { min: 60, max: 1514 }, rng: root.fork(), clock });
  const checker = new FrameChecker({ clock });
  let sent = 0;
  let received = 0;
  let pending: Uint8Array | undefined;
  const pump = (): void => {
    while (sent < o.total && sent - received < 300) {
      pending ??= gen.next();
      if (!d.send(pending)) return;
      pending = undefined;
      sent++;
    }
  };
  d.onFrame = (f) => {
    received++;
    checker.check(f);
    pump();
  };
  d.onWritable = pump;
  d.start();
  pump();
  await runSim(clock, () => received >= o.total || errors.length > 0 || resets.length > 0);
  cpu.dispose();
  return { summary: checker.finish(sent), errors, resets, received, engine, cpu };
}

describe('virtio-net over the memory models (ORDER_PLATFORM: strict barriers)', () => {
  const cases: [MemoryPlatform, MemoryPlatform, boolean, boolean][] = [
    ['weak', 'weak', true, true],
    ['weak', 'weak', false, false],
    ['tso', 'weak', true, false],
    ['weak', 'tso', false, true],
  ];
  it.each(cases)('host %s, device %s, MRG_RXBUF=%s EVENT_IDX=%s: every frame intact', async (host, device, mrg, eventIdx) => {
    const total = 3000;
    const r = await run({ host, device, seed: 99, total, mrg, eventIdx });
    expect(r.resets).toEqual([]);
    expect(r.errors).toEqual([]);
    expect(r.received).toBe(total);
    expect(r.summary.ok).toBe(total);
    expect(r.summary.errors).toBe(0);
  }, 60_000);
});

describe('virtio-net over the memory models with weak barriers on weak platforms', () => {
  it.each([1, 2, 3])('seed %i: the damage is detected (CRC, a broken ring or a stall), never passed on silently', async (seed) => {
    const total = 3000;
    const r = await run({ host: 'weak', device: 'weak', seed, total, mrg: seed === 2, eventIdx: seed === 3, policy: new BarrierPolicy('weak', 'weak') });
    const s = r.summary;
    const detected = s.corrupted + s.foreign + s.duplicate + s.outOfOrder + s.lost > 0 || r.errors.length > 0 || r.resets.length > 0;
    expect(detected).toBe(true);
    // every frame that arrived is classified exactly once (stale data may also look foreign or repeated)
    expect(s.ok + s.corrupted + s.foreign + s.duplicate + s.outOfOrder).toBe(r.received);
  }, 60_000);
});
