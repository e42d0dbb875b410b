import { SeededRng } from '../../src/core/index.js';
import { VIRTIO_F, VIRTIO_NET_F } from '../../src/spec/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import {
  BarrierPolicy,
  type IndirectAllocator,
  type SplitRingLayout,
  SplitRingDevice,
  SplitRingDriver,
  splitRingFootprint,
} from '../../src/virtio/index.js';
import {
  type DriverBufferMemory,
  LoopbackBackend,
  type NetBackend,
  NET_DEVICE_FEATURES,
  NET_RX_QUEUE,
  NET_TX_QUEUE,
  VirtioNetDevice,
  VirtioNetDriver,
  featureBit,
  parseNetConfig,
} from '../../src/net/index.js';
import { FlatMemory } from '../virtio/flat-memory.js';

export const DEVICE_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
export const PEER_MAC = Uint8Array.of(0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc);

/** A first-fit-by-size allocator over a FlatMemory (cpu address = dma address). */
export class TestAllocator implements IndirectAllocator {
  private next: number;
  private readonly sizes = new Map<number, number>();
  private readonly freeLists = new Map<number, number[]>();
  allocated = 0;

  constructor(
    base: number,
    private readonly limit: number,
  ) {
    this.next = base;
  }

  alloc(bytes: number): { cpu: number; dma: number } | undefined {
    const size = Math.ceil(bytes / 16) * 16;
    const reuse = this.freeLists.get(size)?.pop();
    let a = reuse;
    if (a === undefined) {
      if (this.next + size > this.limit) return undefined;
      a = this.next;
      this.next += size;
    }
    this.sizes.set(a, size);
    this.allocated++;
    return { cpu: a, dma: a };
  }

  free(cpu: number): void {
    const size = this.sizes.get(cpu);
    if (size === undefined) throw new Error(`free of 0x${cpu.toString(16)} that was not allocated`);
    this.sizes.delete(cpu);
    this.allocated--;
    let list = this.freeLists.get(size);
    if (list === undefined) this.freeLists.set(size, (list = []));
    list.push(cpu);
  }
}

export function flatBufferMemory(mem: FlatMemory): DriverBufferMemory {
  return {
    writeBytes: (a, d) => mem.bytes.set(d, a),
    readBytes: (a, n) => mem.bytes.slice(a, a + n),
  };
}

export function ringLayout(base: number, size: number): SplitRingLayout {
  const fp = splitRingFootprint(size);
  return {
    size,
    desc: { cpu: base + fp.descOff, dma: base + fp.descOff },
    avail: { cpu: base + fp.availOff, dma: base + fp.availOff },
    used: { cpu: base + fp.usedOff, dma: base + fp.usedOff },
  };
}

export interface PairOptions {
  mrg?: boolean;
  eventIdx?: boolean;
  indirect?: boolean;
  csum?: boolean;
  queueSize?: number;
  mergeableBufferSize?: number;
  sgPerBuffer?: 1 | 2;
  /** Device DMA reads complete after a random delay in [0, readDelayNs] (out of order). */
  readDelayNs?: number;
  seed?: number;
  backend?: NetBackend;
  mtu?: number;
  batch?: number;
  budget?: number;
  rxQueueFrames?: number;
  memBytes?: number;
}

export interface NetPair {
  clock: VirtualClock;
  rng: SeededRng;
  mem: FlatMemory;
  device: VirtioNetDevice;
  driver: VirtioNetDriver;
  backend: NetBackend;
  features: bigint;
  rxLayout: SplitRingLayout;
  txLayout: SplitRingLayout;
  needsReset: string[];
  errors: Error[];
  allocator: TestAllocator;
}

/** A driver and a device on one coherent memory, wired as the transport would wire them. */
export function makeNetPair(o: PairOptions = {}): NetPair {
  const clock = new VirtualClock();
  const rng = new SeededRng(o.seed ?? 1);
  const size = o.queueSize ?? 256;
  const mem = new FlatMemory(o.memBytes ?? 1 << 23);
  const rxLayout = ringLayout(0x1000, size);
  const txLayout = ringLayout(0x1000 + Math.ceil(splitRingFootprint(size).bytes / 4096 + 1) * 4096, size);
  const allocator = new TestAllocator(0x100000, mem.bytes.length);
  const eventIdx = o.eventIdx ?? false;
  const indirect = o.indirect ?? false;
  let features = NET_DEVICE_FEATURES | featureBit(VIRTIO_F.VERSION_1);
  if (!(o.mrg ?? false)) features &= ~featureBit(VIRTIO_NET_F.MRG_RXBUF);
  if (!(o.csum ?? true)) features &= ~(featureBit(VIRTIO_NET_F.CSUM) | featureBit(VIRTIO_NET_F.GUEST_CSUM));
  if (eventIdx) features |= featureBit(VIRTIO_F.EVENT_IDX);
  if (indirect) features |= featureBit(VIRTIO_F.INDIRECT_DESC);
  const policy = new BarrierPolicy('strict', 'strict');
  const ringOpts = { eventIdx, indirect, policy, indirectAllocator: allocator };
  const rxDrv = new SplitRingDriver<number>(mem, rxLayout, ringOpts);
  const txDrv = new SplitRingDriver<number>(mem, txLayout, ringOpts);
  rxDrv.initRing();
  txDrv.initRing();
  const delay = o.readDelayNs ?? 0;
  const dmem = mem.deviceView(delay > 0 ? { complete: (fn) => clock.setTimer(rng.int(delay + 1), fn) } : {});
  const devRing = (l: SplitRingLayout): SplitRingDevice =>
    new SplitRingDevice(dmem, { size, desc: l.desc.dma, avail: l.avail.dma, used: l.used.dma, eventIdx, indirect, policy });
  const backend = o.backend ?? new LoopbackBackend(clock);
  const needsReset: string[] = [];
  const errors: Error[] = [];
  let driver: VirtioNetDriver | undefined;
  const device = new VirtioNetDevice({
    mac: DEVICE_MAC,
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    ...(o.batch !== undefined ? { batch: o.batch } : {}),
    ...(o.rxQueueFrames !== undefined ? { rxQueueFrames: o.rxQueueFrames } : {}),
    backend,
    clock,
    memory: dmem,
    // MSI-X: a posted write that lands a little later
    interrupt: (q) => clock.defer(() => driver?.interrupt(q)),
    onNeedsReset: (r) => needsReset.push(r),
  });
  device.setFeatures(features);
  device.attachQueue(NET_RX_QUEUE, devRing(rxLayout));
  device.attachQueue(NET_TX_QUEUE, devRing(txLayout));
  driver = new VirtioNetDriver({
    rx: rxDrv,
    tx: txDrv,
    mem: flatBufferMemory(mem),
    allocator,
    features,
    config: parseNetConfig(device.config, features),
    notify: (q) => clock.defer(() => device.kick(q)),
    clock,
    ...(o.mergeableBufferSize !== undefined ? { mergeableBufferSize: o.mergeableBufferSize } : {}),
    ...(o.sgPerBuffer !== undefined ? { sgPerBuffer: o.sgPerBuffer } : {}),
    ...(o.budget !== undefined ? { budget: o.budget } : {}),
    onError: (e) => errors.push(e),
  });
  return { clock, rng, mem, device, driver, backend, features, rxLayout, txLayout, needsReset, errors, allocator };
}

/**
 * Runs the virtual clock and lets the device's promise chains settle between slices of events,
 * until `done()` or nothing is left to run. Returns done().
 */
export async function runSim(clock: VirtualClock, done: () => boolean, maxRounds = 2_000_000): Promise<boolean> {
  let idleRounds = 0;
  for (let r = 0; r < maxRounds; r++) {
    if (done()) return true;
    const n = clock.run({ maxEvents: 64 });
    await new Promise<void>((res) => setImmediate(res));
    if (n === 0 && clock.pending === 0) {
      if (++idleRounds > 2) return done();
    } else idleRounds = 0;
  }
  return done();
}
