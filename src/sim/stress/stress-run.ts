import { SeededRng, TlpwireError } from '../../core/index.js';
import { DeviceEngine, HostCpu, HostRam, type MemoryPlatform, type MmioPort, type MmioSize } from '../../memory/index.js';
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
} from '../../net/index.js';
import { VIRTIO_F } from '../../spec/index.js';
import {
  BARRIER_SITE_NAMES,
  BarrierPolicy,
  type BarrierFlavour,
  type BarrierSite,
  type DriverBarrierMode,
  type IndirectAllocator,
  SplitRingDevice,
  SplitRingDriver,
  type SplitRingLayout,
  isBarrierSite,
  splitRingFootprint,
} from '../../virtio/index.js';
import { VirtualClock } from '../virtual-clock.js';
import { StressFabric } from './fabric.js';
import { EventTrace, TRACE, type TraceEvent } from './trace.js';

/** What a stress run varies: the platforms, the barriers, the negotiation, the ablated sites. */
export interface StressConfig {
  seed: number;
  hostPlatform: MemoryPlatform;
  devicePlatform: MemoryPlatform;
  /** auto: Linux's rule (strict iff ORDER_PLATFORM negotiated); weak / strict: forced. */
  driverBarriers: DriverBarrierMode;
  deviceBarriers: 'weak' | 'strict';
  /** The device offers VIRTIO_F_ORDER_PLATFORM (the driver always accepts it). */
  orderPlatform: boolean;
  /** Sites whose barrier is removed (flavour none). */
  disabledBarriers: readonly BarrierSite[];
  /**
   * `off` (the stress run of the issue): both sides busy-poll, notifications suppressed, so only
   * barriers order the rings. `on`: the device sleeps until a doorbell and the driver until an
   * MSI-X interrupt (EVENT_IDX negotiated), so the notification handshakes and their barrier
   * sites matter too; a lost wakeup shows as a stall.
   */
  notifications: 'off' | 'on';
}

export const DEFAULT_STRESS_CONFIG: StressConfig = {
  seed: 1,
  hostPlatform: 'weak',
  devicePlatform: 'weak',
  driverBarriers: 'auto',
  deviceBarriers: 'strict',
  orderPlatform: true,
  disabledBarriers: [],
  notifications: 'off',
};

/** How the run is shaped (defaults suit every configuration; tests may shrink them). */
export interface StressTuning {
  queueSize: number;
  /** Frames in flight at most (sent, not yet back). */
  window: number;
  /**
   * The same with notifications on: few frames in flight, so that the device runs out of work
   * and sleeps, and the driver waits for interrupts, thousands of times a second — every sleep
   * is a chance to lose a wakeup.
   */
  notifyWindow: number;
  /** A TX burst is 1..maxBurst frames, one per event, then one kick decision (xmit_more). */
  maxBurst: number;
  /**
   * Frame sizes (Ethernet header included): with probability `largeShare` uniform in
   * [min, max], otherwise uniform in [min, smallMax]. Barrier bugs live in descriptors and
   * indices, so most frames are small (more ring operations per second), and enough are large
   * to give the data itself wide windows to go stale in.
   */
  frameSizes: { min: number; smallMax: number; max: number; largeShare: number };
  /** No frame back for this long (virtual ns) while frames are in flight: a stall. */
  stallNs: number;
  /** Events kept for the failure report. */
  traceDepth: number;
  /** Fabric crossing time, 1..this ns. */
  fabricDelayNs: number;
  /** Host CPU store-buffer entries (the model's default is 64). */
  storeBufferSize: number;
  /** Virtual CPU time of one xmit (between two frames of a burst). */
  xmitNs: { min: number; max: number };
  /** weak device: bytes a speculative read-ahead fetches after a read (the model's default is 64). */
  readAheadBytes: number;
  /** weak device: a read waits 0..this ns in the engine before it is issued (the model's default is 1000). */
  readIssueDelayNs: number;
  /** A completion crosses the fabric in 0..this ns (0: within the event that served the read). */
  completionDelayNs: number;
}

export const DEFAULT_STRESS_TUNING: StressTuning = {
  queueSize: 256,
  window: 512,
  notifyWindow: 8,
  maxBurst: 64,
  frameSizes: { min: 60, smallMax: 256, max: 1514, largeShare: 0.25 },
  stallNs: 20_000_000,
  traceDepth: 256,
  fabricDelayNs: 1_000,
  storeBufferSize: 128,
  xmitNs: { min: 200, max: 800 },
  readAheadBytes: 256,
  readIssueDelayNs: 1_000,
  completionDelayNs: 1_000,
};

export interface StressLimits {
  /** Stop (a pass) once this many ring operations were done. Deterministic, unlike a time limit. */
  maxOps?: number;
  /** Hash every event (SHA-256) for exact-replay checks. */
  traceHash?: boolean;
}

export type StressFailureKind = 'corruption' | 'broken-ring' | 'needs-reset' | 'lost' | 'duplicate' | 'stall' | 'dma-error';

export interface StressFailure {
  kind: StressFailureKind;
  message: string;
  /** Virtual time and ring operations when it was detected. */
  timeNs: number;
  ringOps: number;
}

export interface StressResult {
  config: StressConfig;
  /** The flavour each site ran with, as negotiated and overridden. */
  barriers: Record<BarrierSite, BarrierFlavour>;
  /** How many times each site was reached (with flavour none it orders nothing). */
  siteRuns: Record<BarrierSite, number>;
  orderPlatformNegotiated: boolean;
  ringOps: number;
  ops: { driverAdd: number; driverGet: number; devicePop: number; devicePush: number };
  framesSent: number;
  framesReceived: number;
  corruptions: number;
  stalls: number;
  failure: StressFailure | undefined;
  stoppedBy: 'failure' | 'ops' | 'limit';
  virtualNs: number;
  events: number;
  dmaReads: number;
  dmaWrites: number;
  doorbells: number;
  interrupts: number;
  /** The last events before the end (oldest first): ring ops, DMA, frames. */
  lastEvents: TraceEvent[];
  traceHash: string | undefined;
  traceEvents: number;
}

/** What a stress run exercises, and what it bypasses (printed with every run). */
export const STRESS_LAYERS =
  'virtio split rings (driver and device sides, every named barrier site), the virtio-net driver and device (busy-polling or notification-driven, ' +
  'MRG_RXBUF, indirect descriptors, checksummed frames through the loopback backend), two host CPU memory models ' +
  '(the transmitting CPU and the polling CPU), the device DMA engine model, and the PCIe ordering rules for the ' +
  "device's DMA in the stress fabric (in memory: no TLP encoding, no data link, no transaction layer, no IOMMU, " +
  'no PCI transport or enumeration — `tlpwire rc`/`ep` and the roles tests exercise those)';

/** Where the card's MSI-X messages go (x86's MSI window: outside RAM). */
const MSI_BASE = 0xfee0_0000;
/** The notify region of the card (only the address matters: doorbells are traced, then kick). */
const NOTIFY_BASE = 0xe000_3000;
const RAM_BYTES = 32 << 20;
const DEVICE_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const PEER_MAC = Uint8Array.of(0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc);
/** Virtual time the device gets before the driver starts (its NO_NOTIFY write lands). */
const SETTLE_NS = 50_000;
const HOST_POLL_IDLE_NS = 1_000;

/**
 * Indirect tables from a slab of host RAM, recycled: the driver takes one per buffer added and
 * gives it back when the buffer returns (a free list, not the first-fit page allocator).
 */
class TablePool implements IndirectAllocator {
  private readonly slots: number[] = [];
  private readonly large = new Set<number>();
  constructor(
    private readonly ram: HostRam,
    count: number,
    private readonly slotBytes: number,
  ) {
    const base = ram.allocate(count * slotBytes, 64);
    for (let i = count - 1; i >= 0; i--) this.slots.push(base + i * slotBytes);
  }

  alloc(bytes: number): { cpu: number; dma: number } | undefined {
    if (bytes > this.slotBytes) {
      const a = this.ram.allocate(bytes, 64);
      this.large.add(a);
      return { cpu: a, dma: a };
    }
    const a = this.slots.pop();
    return a === undefined ? undefined : { cpu: a, dma: a };
  }

  free(cpu: number): void {
    if (this.large.delete(cpu)) this.ram.free(cpu);
    else this.slots.push(cpu);
  }
}

/** Linux's choice of driver barriers, then the ablated sites. */
export function stressPolicy(c: StressConfig): BarrierPolicy {
  const driver: BarrierFlavour = c.driverBarriers === 'auto' ? (c.orderPlatform ? 'strict' : 'weak') : c.driverBarriers;
  return new BarrierPolicy(
    driver,
    c.deviceBarriers,
    c.disabledBarriers.map((s) => [s, 'none'] as const),
  );
}

/** Checks a config's values (the CLI and the matrix build them from user input). */
export function checkStressConfig(c: StressConfig): void {
  const platforms = ['tso', 'weak'];
  if (!Number.isInteger(c.seed) || c.seed < 0 || c.seed > 0xffffffff) throw new TlpwireError('ERR_USAGE', `seed must be an integer in 0..4294967295, got ${c.seed}`);
  if (!platforms.includes(c.hostPlatform)) throw new TlpwireError('ERR_USAGE', `host platform must be tso or weak, got ${String(c.hostPlatform)}`);
  if (!platforms.includes(c.devicePlatform)) throw new TlpwireError('ERR_USAGE', `device platform must be tso or weak, got ${String(c.devicePlatform)}`);
  if (!['auto', 'weak', 'strict'].includes(c.driverBarriers)) throw new TlpwireError('ERR_USAGE', `driver barriers must be auto, weak or strict, got ${String(c.driverBarriers)}`);
  if (!['weak', 'strict'].includes(c.deviceBarriers)) throw new TlpwireError('ERR_USAGE', `device barriers must be weak or strict, got ${String(c.deviceBarriers)}`);
  if (!['off', 'on'].includes(c.notifications)) throw new TlpwireError('ERR_USAGE', `notifications must be off or on, got ${String(c.notifications)}`);
  for (const s of c.disabledBarriers) {
    if (!isBarrierSite(s)) throw new TlpwireError('ERR_USAGE', `unknown barrier site ${JSON.stringify(s)}; valid sites: ${BARRIER_SITE_NAMES.join(', ')}`);
  }
}

/**
 * One stress run: a virtio-net driver on a host CPU model and a virtio-net device behind a DMA
 * engine model, joined by the stress fabric, in one VirtualClock with one seeded random source.
 * Test frames (sequence-numbered, CRC-checked) go out on the TX ring, come back through the
 * card's loopback on the RX ring. Both sides busy-poll with notifications suppressed (no doorbell
 * and no interrupt orders anything for them) — or, with `notifications: 'on'`, sleep and wake
 * each other with doorbells and MSI-X interrupts — and TX bursts are spread over virtual CPU time
 * with one kick decision per burst, as Linux's xmit_more does.
 *
 * Everything runs inside the clock's event loop — no promise anywhere on the path — so a run is
 * a pure function of (config, tuning, seed): the same events in the same order at the same
 * virtual times, whatever slices `runFor` is called with.
 *
 * A run stops at the first failure: a corrupted (or foreign) frame, a lost or duplicated frame,
 * a ring the driver marked broken (wrong used id or length), DEVICE_NEEDS_RESET, a DMA the host
 * refused, or a stall (frames in flight and none back for `stallNs` of virtual time).
 */
export class StressRun {
  readonly config: StressConfig;
  readonly tuning: StressTuning;
  readonly clock = new VirtualClock();
  readonly policy: BarrierPolicy;
  private maxOps: number;
  private readonly trace: EventTrace;
  private readonly rng: SeededRng;
  private readonly ram: HostRam;
  /** The CPU that transmits (xmit, TX ring) and the one that runs the NAPI poll (RX ring). */
  private readonly txCpu: HostCpu;
  private readonly rxCpu: HostCpu;
  private readonly fabric: StressFabric;
  private readonly engine: DeviceEngine;
  private readonly device: VirtioNetDevice;
  private readonly driver: VirtioNetDriver;
  private readonly gen: FrameGenerator;
  private readonly sizeRng: SeededRng;
  private readonly checker: FrameChecker;
  /** Both sides busy-poll (notifications off). */
  private readonly polling: boolean;
  private readonly window: number;

  private ops = 0;
  private readonly opCounts = [0, 0, 0, 0, 0, 0, 0, 0];
  /** How often each barrier site ran (whatever its flavour, none included). */
  private readonly siteRuns = new Map<BarrierSite, number>();
  private readonly countSite = (site: BarrierSite): void => {
    this.siteRuns.set(site, (this.siteRuns.get(site) ?? 0) + 1);
  };
  private sent = 0;
  private received = 0;
  private doorbells = 0;
  private interrupts = 0;
  private stalls = 0;
  private failure: StressFailure | undefined = undefined;
  private over = false;
  private started = false;
  private stoppedBy: StressResult['stoppedBy'] = 'limit';

  // sender state: a burst in progress, a frame the full ring refused
  private burstLeft = 0;
  private unflushed = false;
  private senderScheduled = false;
  private waitingWritable = false;
  private held: Uint8Array | undefined = undefined;

  // watchdog state
  private lastReceived = 0;
  private lastProgressNs = 0;

  constructor(config: Partial<StressConfig> = {}, tuning: Partial<StressTuning> = {}, limits: StressLimits = {}) {
    this.config = { ...DEFAULT_STRESS_CONFIG, ...config };
    checkStressConfig(this.config);
    this.tuning = { ...DEFAULT_STRESS_TUNING, ...tuning };
    this.maxOps = limits.maxOps ?? Infinity;
    const c = this.config;
    const t = this.tuning;
    this.policy = stressPolicy(c);
    this.rng = new SeededRng(c.seed);
    const clock = this.clock;
    this.trace = new EventTrace(t.traceDepth, limits.traceHash === true);
    this.ram = new HostRam({ size: RAM_BYTES, reserveLow: 0x10000 });
    const ram = this.ram;
    const cpuOptions = { platform: c.hostPlatform, ram, clock, storeBufferSize: t.storeBufferSize };
    this.txCpu = new HostCpu({ ...cpuOptions, rng: this.rng.fork() });
    this.rxCpu = new HostCpu({ ...cpuOptions, rng: this.rng.fork() });
    this.fabric = new StressFabric({
      clock,
      rng: this.rng.fork(),
      ram,
      trace: this.trace,
      maxDelayNs: t.fabricDelayNs,
      completionDelayNs: t.completionDelayNs,
      msi: { base: MSI_BASE, size: 64, onMessage: (a) => this.interrupt((a - MSI_BASE) >> 2) },
      onRefused: (why) => this.fail('dma-error', why),
    });
    this.engine = new DeviceEngine({
      platform: c.devicePlatform,
      port: this.fabric,
      clock,
      rng: this.rng.fork(),
      readAheadBytes: t.readAheadBytes,
      readIssueDelayMaxNs: t.readIssueDelayNs,
    });
    const mmio: MmioPort = {
      write32: (address, value) => this.mmioWrite(address, value),
      write: (address, _size: MmioSize, value) => this.mmioWrite(address, value),
      // the card has no registers the stress path reads
      read32: () => Promise.resolve(0),
    };
    this.txCpu.attachMmio(mmio);
    this.rxCpu.attachMmio(mmio);

    // VERSION_1, the net features, INDIRECT_DESC, ORDER_PLATFORM if offered; no EVENT_IDX, so
    // NO_NOTIFY / NO_INTERRUPT suppress notifications outright; no ACCESS_PLATFORM (no IOMMU:
    // the device is given physical addresses).
    let f = NET_DEVICE_FEATURES | featureBit(VIRTIO_F.VERSION_1) | featureBit(VIRTIO_F.INDIRECT_DESC);
    if (c.orderPlatform) f |= featureBit(VIRTIO_F.ORDER_PLATFORM);
    const notify = c.notifications === 'on';
    if (notify) f |= featureBit(VIRTIO_F.EVENT_IDX);
    this.polling = !notify;
    this.window = notify ? t.notifyWindow : t.window;

    const size = t.queueSize;
    const layout = (): SplitRingLayout => {
      const fp = splitRingFootprint(size);
      const base = ram.allocate(fp.bytes, 4096);
      ram.fill(base, fp.bytes, 0);
      return {
        size,
        desc: { cpu: base + fp.descOff, dma: base + fp.descOff },
        avail: { cpu: base + fp.availOff, dma: base + fp.availOff },
        used: { cpu: base + fp.usedOff, dma: base + fp.usedOff },
      };
    };
    const rxL = layout();
    const txL = layout();
    const tables = new TablePool(ram, 2 * size + 8, 64);
    const policy = this.policy;
    const drvRing = (cpu: HostCpu, l: SplitRingLayout, add: number, get: number): SplitRingDriver<number> =>
      new SplitRingDriver<number>(cpu, l, {
        eventIdx: notify,
        indirect: true,
        policy,
        indirectAllocator: tables,
        onRingOp: (op, head, len) => this.ringOp(op === 'add' ? add : get, head, len),
        onBarrier: this.countSite,
      });
    const rx = drvRing(this.rxCpu, rxL, TRACE.DRV_ADD_RX, TRACE.DRV_GET_RX);
    const tx = drvRing(this.txCpu, txL, TRACE.DRV_ADD_TX, TRACE.DRV_GET_TX);
    rx.initRing();
    tx.initRing();
    const devRing = (l: SplitRingLayout, pop: number, push: number): SplitRingDevice =>
      new SplitRingDevice(this.engine, {
        size,
        desc: l.desc.dma,
        avail: l.avail.dma,
        used: l.used.dma,
        eventIdx: notify,
        indirect: true,
        policy,
        onRingOp: (op, head, len) => this.ringOp(op === 'pop' ? pop : push, head, len),
        onBarrier: this.countSite,
      });

    this.device = new VirtioNetDevice({
      mac: DEVICE_MAC,
      backend: new LoopbackBackend(clock),
      clock,
      memory: this.engine,
      // MSI-X: a posted write of the device, ordered by its engine and the fabric like any other
      interrupt: (q) => this.engine.write(MSI_BASE + 4 * q, le32(q)),
      onNeedsReset: (r) => this.fail('needs-reset', `the device set DEVICE_NEEDS_RESET: ${r}`),
    });
    this.device.setFeatures(f);
    this.device.attachQueue(NET_RX_QUEUE, devRing(rxL, TRACE.DEV_POP_RX, TRACE.DEV_PUSH_RX));
    this.device.attachQueue(NET_TX_QUEUE, devRing(txL, TRACE.DEV_POP_TX, TRACE.DEV_PUSH_TX));
    this.device.setPolling(this.polling);

    const txCpu = this.txCpu;
    const rxCpu = this.rxCpu;
    this.driver = new VirtioNetDriver({
      rx,
      tx,
      // frames are written by the transmitting CPU and read by the polling one
      mem: { writeBytes: (a, d) => txCpu.writeBytes(a, d), readBytes: (a, n) => rxCpu.readBytes(a, n) },
      allocator: {
        alloc: (bytes) => {
          const a = ram.allocate(bytes, 64);
          return { cpu: a, dma: a };
        },
        free: (a) => {
          ram.free(a);
        },
      },
      features: f,
      config: parseNetConfig(this.device.config, f),
      // the doorbell is writel: every earlier store is visible first (if it ever rings)
      notify: (q) => (q === NET_TX_QUEUE ? txCpu : rxCpu).mmioWrite(NOTIFY_BASE + 4 * q, 2, q, false),
      clock,
      autoKick: false,
      onError: (e) => this.fail('broken-ring', e.message),
    });
    this.driver.setPolling(this.polling);
    this.driver.onFrame = (fr) => this.onFrame(fr);
    this.driver.onWritable = () => {
      if (!this.waitingWritable) return;
      this.waitingWritable = false;
      this.scheduleSend(0);
    };
    this.gen = new FrameGenerator({ dst: PEER_MAC, src: DEVICE_MAC, size: t.frameSizes.min, clock });
    this.sizeRng = this.rng.fork();
    this.checker = new FrameChecker({ clock });
  }

  /** Ring operations so far. */
  get ringOps(): number {
    return this.ops;
  }

  get finished(): boolean {
    return this.over;
  }

  /**
   * Runs at most `maxEvents` more events; true when the run is over (a failure, or the ring
   * operation limit). Slicing does not change the run: call it as often as you like.
   */
  runFor(maxEvents: number): boolean {
    if (!this.started) this.start();
    if (this.over) return true;
    this.clock.runUntil(this.shouldStop, maxEvents);
    if (!this.over && this.ops >= this.maxOps) {
      this.over = true;
      this.stoppedBy = 'ops';
    }
    return this.over;
  }

  private readonly shouldStop = (): boolean => this.over || this.ops >= this.maxOps;

  /** The ring-operation limit: the run ends after the first event that reaches it. */
  get opsLimit(): number {
    return this.maxOps;
  }

  /**
   * Lowers the limit to the next ring operation: a run cut by wall-clock time ends at a point
   * `--ops` can name, so its replay ends at the same event. Keep calling runFor until it is over.
   */
  endAtNextOp(): void {
    this.maxOps = Math.min(this.maxOps, this.ops + 1);
  }

  /** Ends a run that is not over (a wall-clock limit) at once: what was done so far passed. */
  stop(): void {
    if (!this.over) {
      this.over = true;
      this.stoppedBy = 'limit';
    }
  }

  result(): StressResult {
    const barriers = {} as Record<BarrierSite, BarrierFlavour>;
    const siteRuns = {} as Record<BarrierSite, number>;
    for (const s of BARRIER_SITE_NAMES) {
      barriers[s] = this.policy.flavour(s);
      siteRuns[s] = this.siteRuns.get(s) ?? 0;
    }
    const k = this.opCounts;
    const cc = this.checker.counts;
    return {
      config: this.config,
      barriers,
      siteRuns,
      orderPlatformNegotiated: this.config.orderPlatform,
      ringOps: this.ops,
      ops: {
        driverAdd: k[TRACE.DRV_ADD_RX]! + k[TRACE.DRV_ADD_TX]!,
        driverGet: k[TRACE.DRV_GET_RX]! + k[TRACE.DRV_GET_TX]!,
        devicePop: k[TRACE.DEV_POP_RX]! + k[TRACE.DEV_POP_TX]!,
        devicePush: k[TRACE.DEV_PUSH_RX]! + k[TRACE.DEV_PUSH_TX]!,
      },
      framesSent: this.sent,
      framesReceived: this.received,
      corruptions: cc.corrupted + cc.foreign,
      stalls: this.stalls,
      failure: this.failure,
      stoppedBy: this.stoppedBy,
      virtualNs: this.clock.nowNs(),
      events: this.clock.eventsRun,
      dmaReads: this.fabric.reads,
      dmaWrites: this.fabric.writes,
      doorbells: this.doorbells,
      interrupts: this.interrupts,
      lastEvents: this.trace.last(),
      traceHash: this.trace.digest(),
      traceEvents: this.trace.total,
    };
  }

  // ---- start-up ---------------------------------------------------------------------------------

  private start(): void {
    this.started = true;
    // the device polls from the start; its NO_NOTIFY reaches host memory before the driver looks
    this.clock.run({ untilNs: SETTLE_NS });
    this.driver.start();
    this.lastProgressNs = this.clock.nowNs();
    this.scheduleSend(0);
    if (this.polling) this.clock.setTimer(HOST_POLL_IDLE_NS, this.hostPoll);
    this.clock.setTimer(this.tuning.stallNs / 4, this.watchdog);
  }

  // ---- the host: sender, busy-poll loop -----------------------------------------------------------

  private scheduleSend(delayNs: number): void {
    if (this.senderScheduled || this.over) return;
    this.senderScheduled = true;
    this.clock.setTimer(delayNs, this.sendOne);
  }

  /** One frame per event; a burst ends with one kick decision (its mb), as xmit_more does. */
  private readonly sendOne = (): void => {
    this.senderScheduled = false;
    if (this.over) return;
    if (this.sent - this.received >= this.window) {
      // the window is full: end the burst; a frame coming back restarts the sender
      this.endBurst();
      return;
    }
    if (this.burstLeft === 0) this.burstLeft = 1 + this.rng.int(this.tuning.maxBurst);
    const frame = this.held ?? this.gen.next(this.frameSize());
    this.held = undefined;
    if (!this.driver.send(frame)) {
      // the ring is full (send already made its kick decision): wait for onWritable
      this.held = frame;
      this.burstLeft = 0;
      this.unflushed = false;
      this.waitingWritable = true;
      return;
    }
    this.sent++;
    this.trace.record(TRACE.FRAME_TX, this.clock.nowNs(), seqOf(frame), frame.length, 0);
    this.unflushed = true;
    if (--this.burstLeft > 0) {
      // the CPU time one xmit takes
      this.scheduleSend(this.tuning.xmitNs.min + this.rng.int(this.tuning.xmitNs.max - this.tuning.xmitNs.min + 1));
    } else {
      this.endBurst();
      this.scheduleSend(this.rng.int(2_000));
    }
  };

  private frameSize(): number {
    const f = this.tuning.frameSizes;
    const max = this.sizeRng.chance(f.largeShare) ? f.max : f.smallMax;
    return f.min + this.sizeRng.int(max - f.min + 1);
  }

  private endBurst(): void {
    this.burstLeft = 0;
    if (!this.unflushed) return;
    this.unflushed = false;
    this.driver.flush();
  }

  /** The driver's busy-poll loop: a pass, then again soon (busy) or after a while (idle). */
  private readonly hostPoll = (): void => {
    if (this.over) return;
    const n = this.driver.poll();
    if (this.over) return;
    this.clock.setTimer(n > 0 ? 100 + 10 * n : HOST_POLL_IDLE_NS, this.hostPoll);
  };

  private onFrame(frame: Uint8Array): void {
    if (this.over) return;
    this.received++;
    const missing = this.checker.missingCount;
    const verdict = this.checker.check(frame);
    const code = verdict === 'ok' ? (this.checker.missingCount > missing ? 5 : 0) : verdict === 'corrupted' ? 1 : verdict === 'duplicate' ? 2 : verdict === 'out-of-order' ? 3 : 4;
    const seq = frame.length >= 26 ? seqOf(frame) : -1;
    this.trace.record(TRACE.FRAME_RX, this.clock.nowNs(), seq, frame.length, code);
    if (code === 0) {
      if (this.senderScheduled || this.waitingWritable) return;
      this.scheduleSend(0);
      return;
    }
    if (verdict === 'corrupted') this.fail('corruption', `corrupted frame (${this.checker.lastCorruption ?? 'bad'}): ${frame.length} bytes, sequence field ${seq}`);
    else if (verdict === 'foreign') this.fail('corruption', `a frame that is not a test frame came back (${frame.length} bytes): corrupted beyond its ethertype`);
    else if (verdict === 'duplicate') this.fail('duplicate', `frame ${seq} came back twice (a stale buffer or descriptor was used again)`);
    else {
      const gap = this.checker.nextExpected - 1 - seq;
      this.fail('lost', verdict === 'out-of-order' ? `frame ${seq} came back out of order` : `frame(s) before ${seq} never came back (${Math.max(1, this.checker.missingCount)} missing, gap ${gap})`);
    }
  }

  // ---- notifications (suppressed: counted and traced if one happens anyway) ----------------------

  private mmioWrite(address: number, value: number): void {
    this.doorbells++;
    this.fabric.downstreamWrite(() => {
      this.trace.record(TRACE.DOORBELL, this.clock.nowNs(), value, address, 0);
      this.device.kick(value);
    });
  }

  private interrupt(queue: number): void {
    this.interrupts++;
    // the CPU takes it: loads in the handler see the DMA before the MSI-X (the driver, busy
    // polling, only counts it)
    (queue === NET_TX_QUEUE ? this.txCpu : this.rxCpu).interrupt();
    this.driver.interrupt(queue);
  }

  // ---- bookkeeping --------------------------------------------------------------------------------

  private ringOp(kind: number, head: number, len: number): void {
    this.ops++;
    this.opCounts[kind]!++;
    this.trace.record(kind, this.clock.nowNs(), head, len, 0);
  }

  private readonly watchdog = (): void => {
    if (this.over) return;
    const now = this.clock.nowNs();
    const inFlight = this.sent - this.received;
    if (inFlight === 0 || this.received !== this.lastReceived) {
      this.lastReceived = this.received;
      this.lastProgressNs = now;
    } else if (now - this.lastProgressNs >= this.tuning.stallNs) {
      this.stalls++;
      this.fail('stall', `${inFlight} frames in flight and none came back for ${Math.round((now - this.lastProgressNs) / 1000)} µs of virtual time${this.dropSummary()}`);
      return;
    }
    this.clock.setTimer(this.tuning.stallNs / 4, this.watchdog);
  };

  /** Counters that explain where frames went, for a stall or loss message. */
  private dropSummary(): string {
    const parts: string[] = [];
    for (const [who, counters] of [
      ['device', this.device.counters.snapshot()],
      ['driver', this.driver.counters.snapshot()],
    ] as const) {
      for (const [k, v] of Object.entries(counters)) if (/drop|error|bad|broken|reset/.test(k) && v > 0) parts.push(`${who} ${k}=${v}`);
    }
    return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
  }

  private fail(kind: StressFailureKind, message: string): void {
    if (this.failure !== undefined) return;
    this.failure = { kind, message, timeNs: this.clock.nowNs(), ringOps: this.ops };
    this.over = true;
    this.stoppedBy = 'failure';
  }
}

function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  b[0] = v & 0xff;
  b[1] = (v >>> 8) & 0xff;
  b[2] = (v >>> 16) & 0xff;
  b[3] = (v >>> 24) & 0xff;
  return b;
}

/** The sequence number field of a test frame (bytes 22..25, big-endian). */
function seqOf(f: Uint8Array): number {
  return ((f[22]! << 24) | (f[23]! << 16) | (f[24]! << 8) | f[25]!) >>> 0;
}
