import { type Clock, type Rng, type TimerHandle, TlpwireError } from '../core/index.js';
import type { HostRam, RamWriteObserver } from './host-ram.js';
import { CPU_BARRIER_KINDS, type CpuBarrierKind, type MemoryPlatform, type MmioPort, type MmioSize } from './types.js';

export interface HostCpuOptions {
  platform: MemoryPlatform;
  ram: HostRam;
  clock: Clock;
  rng: Rng;
  /** Where writel/readl go; can also be attached later with attachMmio. */
  mmio?: MmioPort;
  /**
   * Longest time a store stays invisible to the device (default 5 µs): programs without
   * barriers still make progress, as on hardware. 0 makes the CPU write-through (no store
   * buffer at all) — the cheap setting for the real runtime.
   */
  maxStoreResidenceNs?: number;
  /**
   * Each store gets a random time to become visible: usually uniform in [0, this] (default
   * 1 µs), and with probability `slowStoreProbability` (default 0.25) uniform up to
   * maxStoreResidenceNs, so that some stores lag far behind later ones (wide reordering windows).
   */
  storeDelayNs?: number;
  /** Default 0.25 on weak; 0.02 on tso, where a slow store only holds back the ones behind it. */
  slowStoreProbability?: number;
  /**
   * Stores whose time comes within this much of each other become visible together (default
   * 50 ns): fewer timer events, and no observer could tell them apart anyway at link latencies.
   */
  drainQuantumNs?: number;
  /** Store-buffer entries; when full, the oldest store becomes visible (default 64). */
  storeBufferSize?: number;
  /** weak: chance that a load of device-written memory returns an older allowed value (default 0.5). */
  staleLoadProbability?: number;
  /** weak: a load never returns a value that was overwritten longer ago than this (default 20 µs). */
  maxStalenessNs?: number;
  /** weak: how many device writes the CPU remembers (default 64); older ones count as seen. */
  historySize?: number;
}

/**
 * Settings for the real runtime, where real time and sockets already delay everything and a
 * Clock timer per store would cost a real timer: stores become visible at once.
 */
export const IMMEDIATE_HOST_CPU_OPTIONS = { maxStoreResidenceNs: 0 } as const satisfies Partial<HostCpuOptions>;

export interface HostCpuStats {
  loads: number;
  /** weak: loads that returned an older allowed value than the one in RAM. */
  staleLoads: number;
  /** Loads that took at least one byte from the CPU's own pending stores. */
  forwardedLoads: number;
  stores: number;
  /** Stores that have become visible in RAM. */
  storesVisible: number;
  /** Largest number of stores pending at once. */
  maxPendingStores: number;
  mmioWrites: number;
  mmioReads: number;
  interrupts: number;
  barriers: Record<CpuBarrierKind, number>;
}

// What a barrier does to the model (bit set).
/** Later stores become visible only after every earlier one (an I/O write barrier on weak). */
const EPOCH = 1;
/** Every pending store becomes visible now (a full barrier that orders stores before loads). */
const DRAIN = 2;
/** Later loads see at least every device write that landed before now (an I/O read barrier on weak). */
const HORIZON = 4;

const KIND_INDEX = new Map<string, number>(CPU_BARRIER_KINDS.map((k, i) => [k, i]));

/**
 * Effect of each barrier, in CPU_BARRIER_KINDS order. Linux on x86: smp_mb and mb are a locked
 * op / mfence (drain the store buffer, which also orders against coherent DMA); everything else
 * is a compiler barrier because x86 keeps stores in order and loads in order. Linux on arm64:
 * dma_wmb = dmb oshst and wmb = dsb st order stores for the device; dma_rmb = dmb oshld and
 * rmb = dsb ld order loads against device writes; mb = dsb sy does both and orders stores before
 * loads; smp_* / virt_* are dmb ish* (inner shareable: other CPUs only), nothing for a device.
 */
const EFFECTS: Record<MemoryPlatform, readonly number[]> = {
  //      smp_wmb smp_rmb smp_mb virt_wmb virt_rmb virt_mb dma_wmb dma_rmb wmb    rmb      mb
  tso: [0, 0, DRAIN, 0, 0, DRAIN, 0, 0, 0, 0, DRAIN],
  weak: [0, 0, 0, 0, 0, 0, EPOCH, HORIZON, EPOCH, HORIZON, DRAIN | EPOCH | HORIZON],
};

/** A store waiting in the store buffer. Pooled: the hot path allocates none in steady state. */
class PendingStore {
  address = 0;
  length = 0;
  /** Scalar stores (≤ 8 bytes) keep their value as little-endian u32 halves. */
  lo = 0;
  hi = 0;
  /** Byte-range stores copy their data here (capacity reused). */
  bytes: Uint8Array | undefined = undefined;
  isBytes = false;
  epoch = 0;
  /** When it may become visible (if the platform's order lets it). */
  deadline = 0;
  /** weak: earlier pending stores to overlapping bytes (it must wait for them: coherence). */
  deps = 0;
  /** weak: later pending stores that overlap it. */
  dependents = 0;
  /** weak: the lines it spans in the line index, and a visit mark for scans over it. */
  line0 = 0;
  line1 = 0;
  mark = 0;
}

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen;
}

/**
 * Overlap checks look only at stores (and device writes) in the same 256-byte lines: with a
 * large store buffer, scanning every pending store on every store would dominate a stress run.
 */
const LINE_BYTES = 256;
function lineOf(address: number): number {
  return address <= 0xffff_ffff ? address >>> 8 : Math.floor(address / LINE_BYTES);
}
/** Buckets of the device-write history's line filter (a counting filter: collisions only cost a scan). */
const LOG_FILTER_SIZE = 4096;

/**
 * The host CPU's memory model over HostRam, with Linux's barrier primitives. One HostCpu stands
 * for the CPU that runs the driver. See docs/MEMORY-MODEL.md for what it allows and why.
 *
 * - Stores go to a store buffer and become visible in RAM later (each at a random time, within
 *   a bound on residence; explicit drain). `tso`: in program order. `weak`: stores between two
 *   I/O write barriers in any order (stores to overlapping bytes stay in order).
 * - Loads see the CPU's own pending stores (forwarding). On `weak`, a load of memory a device
 *   wrote may return an older value, back to the last I/O read barrier, never older than what
 *   an earlier load of that location returned. On `tso`, loads return what is in RAM.
 * - MMIO: writel orders after earlier stores, writel_relaxed does not (weak); readl's
 *   completion makes device writes that landed before it visible to later loads (weak).
 */
export class HostCpu implements RamWriteObserver {
  readonly platform: MemoryPlatform;
  readonly ram: HostRam;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private mmio: MmioPort | undefined;
  private readonly effects: readonly number[];
  private readonly writeThrough: boolean;
  private readonly maxResidenceNs: number;
  private readonly storeDelayNs: number;
  private readonly slowStoreP: number;
  private readonly quantumNs: number;
  private readonly storeBufferSize: number;
  private readonly staleP: number;
  private readonly maxStalenessNs: number;
  private readonly historySize: number;

  // Store buffer, in program order.
  private readonly pending: PendingStore[] = [];
  private readonly storePool: PendingStore[] = [];
  private epoch = 0;
  private timer: TimerHandle | undefined = undefined;
  private timerAt = Infinity;
  private readonly onTimer = (): void => this.timerFired();

  // weak: device writes since the horizon, oldest first, in a power-of-two ring kept as
  // parallel arrays (the scans over it run on every load and drained store).
  private readonly logAddr: Float64Array;
  private readonly logLen: Float64Array;
  private readonly logSeq: Float64Array;
  private readonly logTime: Float64Array;
  /** Some load (or a CPU store) already saw this write: no later load may see older bytes. */
  private readonly logSeen: Uint8Array;
  /** The bytes each write overwrote (buffers reused). */
  private readonly logOld: Uint8Array[];
  private logHead = 0;
  private logCount = 0;
  private readonly logMask: number;
  /** RAM's dmaWriteSeq at the last I/O read barrier: writes up to it are visible to every load. */
  private horizon = 0;
  private readonly candidates: number[] = [];
  private readonly detachObserver: (() => void) | undefined;
  /** weak: pending stores by line (see lineOf). */
  private readonly lineIndex = new Map<number, PendingStore[]>();
  private markStamp = 0;
  /** weak: history entries per line bucket; a zero says no entry touches the line. */
  private readonly logLines = new Uint32Array(LOG_FILTER_SIZE);

  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);

  // Statistics.
  private nLoads = 0;
  private nStale = 0;
  private nForwarded = 0;
  private nStores = 0;
  private nVisible = 0;
  private nMaxPending = 0;
  private nMmioWrites = 0;
  private nMmioReads = 0;
  private nInterrupts = 0;
  private readonly barrierCounts: number[] = CPU_BARRIER_KINDS.map(() => 0);

  constructor(options: HostCpuOptions) {
    this.platform = options.platform;
    if (this.platform !== 'tso' && this.platform !== 'weak') {
      throw new TlpwireError('ERR_USAGE', `unknown memory platform ${String(options.platform)} (tso or weak)`);
    }
    this.ram = options.ram;
    this.clock = options.clock;
    this.rng = options.rng;
    this.mmio = options.mmio;
    this.effects = EFFECTS[this.platform];
    this.maxResidenceNs = nonNegative(options.maxStoreResidenceNs ?? 5_000, 'maxStoreResidenceNs');
    this.writeThrough = this.maxResidenceNs === 0;
    this.storeDelayNs = Math.min(nonNegative(options.storeDelayNs ?? 1_000, 'storeDelayNs'), this.maxResidenceNs);
    this.slowStoreP = options.slowStoreProbability ?? (this.platform === 'weak' ? 0.25 : 0.02);
    this.quantumNs = nonNegative(options.drainQuantumNs ?? 50, 'drainQuantumNs');
    this.storeBufferSize = Math.max(1, options.storeBufferSize ?? 64);
    this.staleP = options.staleLoadProbability ?? 0.5;
    this.maxStalenessNs = nonNegative(options.maxStalenessNs ?? 20_000, 'maxStalenessNs');
    this.historySize = Math.max(1, options.historySize ?? 64);
    let cap = 1;
    while (cap < this.historySize) cap <<= 1;
    this.logAddr = new Float64Array(cap);
    this.logLen = new Float64Array(cap);
    this.logSeq = new Float64Array(cap);
    this.logTime = new Float64Array(cap);
    this.logSeen = new Uint8Array(cap);
    this.logOld = Array.from({ length: cap }, () => new Uint8Array(16));
    this.logMask = cap - 1;
    // Only a weak CPU can see stale device writes, so only it needs their history.
    this.detachObserver = this.platform === 'weak' ? this.ram.addObserver(this) : undefined;
    this.horizon = this.ram.dmaWriteSeq;
  }

  attachMmio(port: MmioPort): void {
    this.mmio = port;
  }

  /** Stops observing RAM and drops the drain timer (pending stores become visible first). */
  dispose(): void {
    this.drain();
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = Infinity;
    this.detachObserver?.();
  }

  // ---- loads ----------------------------------------------------------------------------------

  read8(address: number): number {
    this.nLoads++;
    if (this.pending.length === 0 && this.logCount === 0) return this.ram.read8(address);
    this.load(address, 1, this.scratch, 0);
    return this.scratch[0]!;
  }

  read16(address: number): number {
    this.nLoads++;
    if (this.pending.length === 0 && this.logCount === 0) return this.ram.read16(address);
    this.load(address, 2, this.scratch, 0);
    return this.scratchView.getUint16(0, true);
  }

  read32(address: number): number {
    this.nLoads++;
    if (this.pending.length === 0 && this.logCount === 0) return this.ram.read32(address);
    this.load(address, 4, this.scratch, 0);
    return this.scratchView.getUint32(0, true);
  }

  /** A u64 as a number (exact below 2^53), read as one access. */
  read64(address: number): number {
    this.nLoads++;
    if (this.pending.length === 0 && this.logCount === 0) return this.ram.read64(address);
    this.load(address, 8, this.scratch, 0);
    return this.scratchView.getUint32(0, true) + this.scratchView.getUint32(4, true) * 0x1_0000_0000;
  }

  /** A byte range read as one access (buffers: frames, headers). */
  readBytes(address: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(address, out, 0, length);
    return out;
  }

  readInto(address: number, dst: Uint8Array, dstOffset = 0, length = dst.length - dstOffset): void {
    this.nLoads++;
    if (this.pending.length === 0 && this.logCount === 0) this.ram.readInto(address, dst, dstOffset, length);
    else this.load(address, length, dst, dstOffset);
  }

  // ---- stores ---------------------------------------------------------------------------------

  write8(address: number, value: number): void {
    this.ram.check(address, 1);
    this.store(address, 1, value & 0xff, 0, undefined, 0);
  }

  write16(address: number, value: number): void {
    this.ram.check(address, 2);
    this.store(address, 2, value & 0xffff, 0, undefined, 0);
  }

  write32(address: number, value: number): void {
    this.ram.check(address, 4);
    this.store(address, 4, value >>> 0, 0, undefined, 0);
  }

  /** A u64 from a safe non-negative integer (< 2^53), stored as one access. */
  write64(address: number, value: number): void {
    if (!(Number.isSafeInteger(value) && value >= 0)) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `write64: value must be a safe non-negative integer, got ${value}; use write64Halves`);
    }
    this.write64Halves(address, value >>> 0, Math.floor(value / 0x1_0000_0000));
  }

  write64Halves(address: number, lo: number, hi: number): void {
    this.ram.check(address, 8);
    this.store(address, 8, lo >>> 0, hi >>> 0, undefined, 0);
  }

  /** A byte range stored as one access (copied now). */
  writeBytes(address: number, src: Uint8Array, srcOffset = 0, length = src.length - srcOffset): void {
    this.ram.check(address, length);
    if (length === 0) return;
    this.store(address, length, 0, 0, src, srcOffset);
  }

  // ---- the store buffer -----------------------------------------------------------------------

  /** Stores not yet visible to the device. */
  get pendingStores(): number {
    return this.pending.length;
  }

  /** Makes every pending store visible now (in program order); returns how many. */
  drain(): number {
    const p = this.pending;
    const n = p.length;
    // in program order, as retire(0) n times would, without shifting the array each time
    for (let i = 0; i < n; i++) this.retireStore(p[i]!);
    p.length = 0;
    return n;
  }


  /**
   * Makes a random number (≥ 1) of pending stores visible, each chosen among those the platform
   * allows next; returns how many. For a simulator that wants to explore drain orders itself.
   */
  drainSome(rng: Rng = this.rng): number {
    if (this.pending.length === 0) return 0;
    const n = 1 + rng.int(this.pending.length);
    for (let i = 0; i < n; i++) this.retire(this.pickNext(rng));
    this.arm();
    return n;
  }

  // ---- barriers -------------------------------------------------------------------------------

  barrier(kind: CpuBarrierKind): void {
    const i = KIND_INDEX.get(kind);
    if (i === undefined) throw new TlpwireError('ERR_USAGE', `unknown CPU barrier ${String(kind)}`);
    this.barrierCounts[i]!++;
    const eff = this.effects[i]!;
    if (eff === 0) return;
    if ((eff & DRAIN) !== 0) this.drain();
    if ((eff & EPOCH) !== 0) this.epoch++;
    if ((eff & HORIZON) !== 0) this.horizon = this.ram.dmaWriteSeq;
  }

  smp_wmb(): void {
    this.barrier('smp_wmb');
  }
  smp_rmb(): void {
    this.barrier('smp_rmb');
  }
  smp_mb(): void {
    this.barrier('smp_mb');
  }
  virt_wmb(): void {
    this.barrier('virt_wmb');
  }
  virt_rmb(): void {
    this.barrier('virt_rmb');
  }
  virt_mb(): void {
    this.barrier('virt_mb');
  }
  dma_wmb(): void {
    this.barrier('dma_wmb');
  }
  dma_rmb(): void {
    this.barrier('dma_rmb');
  }
  wmb(): void {
    this.barrier('wmb');
  }
  rmb(): void {
    this.barrier('rmb');
  }
  mb(): void {
    this.barrier('mb');
  }

  /**
   * The CPU takes an interrupt (an MSI-X write reached it). Loads in the handler cannot have
   * been performed before the interrupt was taken, and PCIe delivered every posted write the
   * device issued before the MSI-X first, so they see those writes: on `weak` this moves the
   * read horizon to now. The root complex calls it before running the handler.
   */
  interrupt(): void {
    this.nInterrupts++;
    if (this.platform === 'weak') this.horizon = this.ram.dmaWriteSeq;
  }

  // ---- MMIO -----------------------------------------------------------------------------------

  /** MMIO write with Linux's writeX ordering: every earlier store is visible before it. */
  mmioWrite(address: number, size: MmioSize, value: number, relaxed: boolean): void {
    const port = this.requireMmio();
    // writel = dma_wmb + write: earlier stores first. writel_relaxed on weak may pass them; on
    // x86 an uncached store still leaves after every earlier store.
    if (!relaxed || this.platform === 'tso') this.drain();
    this.nMmioWrites++;
    if (size === 4) port.write32(address, value, relaxed);
    else if (port.write !== undefined) port.write(address, size, value, relaxed);
    else throw new TlpwireError('ERR_USAGE', `this MMIO port supports 32-bit accesses only (asked for ${size * 8}-bit)`);
  }

  /**
   * MMIO read. It leaves without waiting for earlier stores on weak (Linux's readX gives no
   * such order; on x86 an uncached load waits for the store buffer). Its completion arrives
   * only after every posted write the device issued before answering (PCIe: a completion does
   * not pass posted writes), so on weak, readX (not _relaxed) moves the read horizon to the
   * moment the completion arrived: later loads see those writes (Linux: readX is followed by
   * a read barrier).
   */
  async mmioRead(address: number, size: MmioSize, relaxed: boolean): Promise<number> {
    const port = this.requireMmio();
    if (this.platform === 'tso') this.drain();
    this.nMmioReads++;
    let v: number;
    if (size === 4) v = await port.read32(address);
    else if (port.read !== undefined) v = await port.read(address, size);
    else throw new TlpwireError('ERR_USAGE', `this MMIO port supports 32-bit accesses only (asked for ${size * 8}-bit)`);
    if (!relaxed && this.platform === 'weak') this.horizon = this.ram.dmaWriteSeq;
    return v;
  }

  writeb(address: number, value: number): void {
    this.mmioWrite(address, 1, value, false);
  }
  writew(address: number, value: number): void {
    this.mmioWrite(address, 2, value, false);
  }
  writel(address: number, value: number): void {
    this.mmioWrite(address, 4, value, false);
  }
  writel_relaxed(address: number, value: number): void {
    this.mmioWrite(address, 4, value, true);
  }
  readb(address: number): Promise<number> {
    return this.mmioRead(address, 1, false);
  }
  readw(address: number): Promise<number> {
    return this.mmioRead(address, 2, false);
  }
  readl(address: number): Promise<number> {
    return this.mmioRead(address, 4, false);
  }
  readl_relaxed(address: number): Promise<number> {
    return this.mmioRead(address, 4, true);
  }

  // ---- statistics -----------------------------------------------------------------------------

  stats(): HostCpuStats {
    const barriers = {} as Record<CpuBarrierKind, number>;
    CPU_BARRIER_KINDS.forEach((k, i) => {
      barriers[k] = this.barrierCounts[i]!;
    });
    return {
      loads: this.nLoads,
      staleLoads: this.nStale,
      forwardedLoads: this.nForwarded,
      stores: this.nStores,
      storesVisible: this.nVisible,
      maxPendingStores: this.nMaxPending,
      mmioWrites: this.nMmioWrites,
      mmioReads: this.nMmioReads,
      interrupts: this.nInterrupts,
      barriers,
    };
  }

  barrierCount(kind: CpuBarrierKind): number {
    const i = KIND_INDEX.get(kind);
    return i === undefined ? 0 : this.barrierCounts[i]!;
  }

  // ---- RamWriteObserver (weak only) ---------------------------------------------------------

  /** @internal Remembers the bytes a device write is about to overwrite. */
  beforeDeviceWrite(address: number, length: number, seq: number): void {
    if (this.logCount >= this.historySize) this.popOldest();
    const slot = (this.logHead + this.logCount) & this.logMask;
    if (this.logOld[slot]!.length < length) this.logOld[slot] = new Uint8Array(Math.max(length, this.logOld[slot]!.length * 2));
    this.ram.readInto(address, this.logOld[slot]!, 0, length);
    this.logAddr[slot] = address;
    this.logLen[slot] = length;
    this.logSeq[slot] = seq;
    this.logTime[slot] = this.clock.nowNs();
    this.logSeen[slot] = 0;
    this.logCount++;
    this.filterAdd(address, length, 1);
  }

  /**
   * @internal A CPU store became visible: the device writes it overwrote are older than it in
   * that location's order, so no load may "restore" them any more.
   */
  afterCpuStore(address: number, length: number): void {
    if (!this.filterHit(address, length)) return;
    const end = address + length;
    const mask = this.logMask;
    for (let i = 0, slot = this.logHead; i < this.logCount; i++, slot = (slot + 1) & mask) {
      if (this.logAddr[slot]! < end && address < this.logAddr[slot]! + this.logLen[slot]!) this.logSeen[slot] = 1;
    }
  }

  // ---- internals ------------------------------------------------------------------------------

  private requireMmio(): MmioPort {
    if (this.mmio === undefined) throw new TlpwireError('ERR_USAGE', 'HostCpu has no MMIO port attached');
    return this.mmio;
  }

  private store(address: number, length: number, lo: number, hi: number, src: Uint8Array | undefined, srcOffset: number): void {
    this.nStores++;
    const e = this.storePool.pop() ?? new PendingStore();
    e.address = address;
    e.length = length;
    e.lo = lo;
    e.hi = hi;
    e.isBytes = src !== undefined;
    if (src !== undefined) {
      if (e.bytes === undefined || e.bytes.length < length) e.bytes = new Uint8Array(Math.max(length, 64));
      e.bytes.set(src.subarray(srcOffset, srcOffset + length));
    }
    if (this.writeThrough) {
      this.makeVisible(e);
      this.storePool.push(e);
      return;
    }
    e.epoch = this.epoch;
    const delay = this.rng.chance(this.slowStoreP) ? this.rng.int(this.maxResidenceNs + 1) : this.rng.int(this.storeDelayNs + 1);
    e.deadline = this.clock.nowNs() + delay;
    e.deps = 0;
    e.dependents = 0;
    const p = this.pending;
    if (this.platform === 'weak') {
      const l0 = lineOf(address);
      const l1 = lineOf(address + length - 1);
      e.line0 = l0;
      e.line1 = l1;
      const st = ++this.markStamp;
      for (let l = l0; l <= l1; l++) {
        let list = this.lineIndex.get(l);
        if (list === undefined) this.lineIndex.set(l, (list = []));
        for (let j = 0; j < list.length; j++) {
          const q = list[j]!;
          if (q.mark === st) continue;
          q.mark = st;
          if (q.address < address + length && address < q.address + q.length) {
            q.dependents++;
            e.deps++;
          }
        }
        list.push(e);
      }
    }
    p.push(e);
    if (p.length > this.nMaxPending) this.nMaxPending = p.length;
    if (p.length > this.storeBufferSize) {
      // A full store buffer stalls the CPU until its oldest store leaves.
      this.retire(0);
      this.arm();
    } else if (e.deadline < this.timerAt && this.eligible(p.length - 1)) {
      // Every other allowed store is due later than the timer: this one sets the time.
      this.setTimer(e.deadline);
    }
  }

  private makeVisible(e: PendingStore): void {
    const a = e.address;
    if (e.isBytes) this.ram.writeBytes(a, e.bytes!, 0, e.length);
    else if (e.length === 4) this.ram.write32(a, e.lo);
    else if (e.length === 2) this.ram.write16(a, e.lo);
    else if (e.length === 1) this.ram.write8(a, e.lo);
    else this.ram.write64Halves(a, e.lo, e.hi);
    this.nVisible++;
    if (this.ram.hasObservers) this.ram.notifyCpuStore(a, e.length);
  }

  /** Makes pending[i] visible and removes it, keeping program order of the rest. */
  private retire(i: number): void {
    const p = this.pending;
    const e = p[i]!;
    if (i === 0) p.shift();
    else {
      for (let j = i; j < p.length - 1; j++) p[j] = p[j + 1]!;
      p.length--;
    }
    this.retireStore(e);
  }

  /** Makes one store visible and forgets it (the caller takes it out of `pending`). */
  private retireStore(e: PendingStore): void {
    if (this.platform === 'weak') {
      for (let l = e.line0; l <= e.line1; l++) {
        const list = this.lineIndex.get(l)!;
        const k = list.indexOf(e);
        list[k] = list[list.length - 1]!;
        list.pop();
      }
      if (e.dependents > 0) {
        // it may go only with no earlier overlapping store pending: every overlapping one is later
        const st = ++this.markStamp;
        for (let l = e.line0; l <= e.line1; l++) {
          const list = this.lineIndex.get(l)!;
          for (let j = 0; j < list.length; j++) {
            const q = list[j]!;
            if (q.mark === st) continue;
            q.mark = st;
            if (overlaps(q.address, q.length, e.address, e.length)) q.deps--;
          }
        }
      }
    }
    this.makeVisible(e);
    this.storePool.push(e);
  }

  /** Index of a store the platform allows to become visible next, chosen with `rng`. */
  private pickNext(rng: Rng): number {
    const p = this.pending;
    if (this.platform === 'tso' || p.length === 1) return 0;
    // Stores of the oldest epoch (since the last I/O write barrier) may go in any order, except
    // behind an earlier store to overlapping bytes (coherence).
    const c = this.candidates;
    let n = 0;
    for (let i = 0; i < p.length && p[i]!.epoch === p[0]!.epoch; i++) if (p[i]!.deps === 0) c[n++] = i;
    return c[rng.int(n)]!;
  }

  /** May pending[i] become visible now? */
  private eligible(i: number): boolean {
    if (i === 0) return true;
    if (this.platform === 'tso') return false;
    const p = this.pending;
    return p[i]!.epoch === p[0]!.epoch && p[i]!.deps === 0;
  }

  /** Sets the timer for the earliest deadline among stores that may become visible next. */
  private arm(): void {
    const p = this.pending;
    let next = Infinity;
    if (p.length > 0) {
      if (this.platform === 'tso') next = p[0]!.deadline;
      else {
        const e0 = p[0]!.epoch;
        for (let i = 0; i < p.length && p[i]!.epoch === e0; i++) {
          if (p[i]!.deadline < next && p[i]!.deps === 0) next = p[i]!.deadline;
        }
      }
    }
    if (next !== this.timerAt) this.setTimer(next);
  }

  private setTimer(at: number): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = at;
    if (at !== Infinity) this.timer = this.clock.setTimer(Math.max(0, at - this.clock.nowNs()), this.onTimer);
  }

  private timerFired(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const p = this.pending;
    // Every store whose time has come (within the quantum) and that the platform lets go. Each
    // deadline is at most maxResidence after its store, and older stores have earlier bounds,
    // so no store stays invisible longer than that.
    //
    // One pass that keeps the survivors in place (w of them so far): the same stores in the same
    // order as retiring them one by one from the array, without shifting it each time. The
    // oldest pending store is the first survivor, or (none yet) the store at hand.
    const due = this.clock.nowNs() + this.quantumNs;
    const tso = this.platform === 'tso';
    const n = p.length;
    let w = 0;
    let i = 0;
    for (; i < n; i++) {
      const e = p[i]!;
      const oldest = w > 0 ? p[0]!.epoch : e.epoch;
      if (e.epoch !== oldest) break;
      // eligible: the oldest store always; on weak, any of the oldest epoch not behind an overlap
      if (e.deadline <= due && (w === 0 || (!tso && e.deps === 0))) this.retireStore(e);
      else {
        p[w++] = e;
        if (tso) {
          i++;
          break;
        }
      }
    }
    if (w !== i) {
      for (; i < n; i++) p[w++] = p[i]!;
      p.length = w;
    }
    this.arm();
  }

  /** A load through the weak history and the store buffer: the general (slow) path. */
  private load(address: number, length: number, dst: Uint8Array, dstOffset: number): void {
    this.ram.check(address, length);
    if (this.logCount > 0) this.versionedRead(address, length, dst, dstOffset);
    else this.ram.readInto(address, dst, dstOffset, length);
    if (this.pending.length > 0) this.forward(address, length, dst, dstOffset);
  }

  /** Overlays the CPU's own pending stores, oldest first, so the newest wins. */
  private forward(address: number, length: number, dst: Uint8Array, dstOffset: number): void {
    const p = this.pending;
    let hit = false;
    for (let k = 0; k < p.length; k++) {
      const e = p[k]!;
      if (!overlaps(e.address, e.length, address, length)) continue;
      hit = true;
      const from = Math.max(address, e.address);
      const to = Math.min(address + length, e.address + e.length);
      for (let a = from; a < to; a++) {
        const i = a - e.address;
        dst[dstOffset + a - address] = e.isBytes ? e.bytes![i]! : i < 4 ? (e.lo >>> (8 * i)) & 0xff : (e.hi >>> (8 * (i - 4))) & 0xff;
      }
    }
    if (hit) this.nForwarded++;
  }

  /**
   * weak: the value of [address, address + length) at a moment the model allows. Device writes
   * since the horizon that overlap the range, newest first, are the candidates to "undo"; the
   * newest one an earlier load already saw stops the list (coherence). Undoing the u newest
   * gives the value as it was before them; the newest write kept is then marked as seen.
   */
  private versionedRead(address: number, length: number, dst: Uint8Array, dstOffset: number): void {
    this.prune();
    this.ram.readInto(address, dst, dstOffset, length);
    if (!this.filterHit(address, length)) return;
    const c = this.candidates;
    const end = address + length;
    const mask = this.logMask;
    let k = 0;
    for (let i = this.logCount - 1; i >= 0; i--) {
      const slot = (this.logHead + i) & mask;
      if (!(this.logAddr[slot]! < end && address < this.logAddr[slot]! + this.logLen[slot]!)) continue;
      if (this.logSeen[slot] === 1) break;
      c[k++] = slot;
    }
    if (k === 0) return;
    const u = this.rng.chance(this.staleP) ? 1 + this.rng.int(k) : 0;
    for (let t = 0; t < u; t++) {
      const slot = c[t]!;
      const a = this.logAddr[slot]!;
      const from = Math.max(address, a);
      const to = Math.min(end, a + this.logLen[slot]!);
      dst.set(this.logOld[slot]!.subarray(from - a, to - a), dstOffset + from - address);
    }
    if (u < k) this.logSeen[c[u]!] = 1;
    if (u > 0) this.nStale++;
  }

  /**
   * Drops history no load may use any more: writes before the horizon, too old, or already seen
   * while oldest (nothing older remains for it to hold back).
   */
  private prune(): void {
    const cutoff = this.clock.nowNs() - this.maxStalenessNs;
    while (this.logCount > 0) {
      const h = this.logHead;
      if (this.logSeq[h]! > this.horizon && this.logTime[h]! >= cutoff && this.logSeen[h] === 0) break;
      this.popOldest();
    }
  }

  private popOldest(): void {
    const h = this.logHead;
    this.filterAdd(this.logAddr[h]!, this.logLen[h]!, -1);
    this.logHead = (h + 1) & this.logMask;
    this.logCount--;
  }

  private filterAdd(address: number, length: number, d: number): void {
    const l1 = lineOf(address + Math.max(length, 1) - 1);
    for (let l = lineOf(address); l <= l1; l++) this.logLines[l % LOG_FILTER_SIZE]! += d;
  }

  /** Whether some history entry may touch [address, address + length) (false: none does). */
  private filterHit(address: number, length: number): boolean {
    const l1 = lineOf(address + Math.max(length, 1) - 1);
    for (let l = lineOf(address); l <= l1; l++) if (this.logLines[l % LOG_FILTER_SIZE]! !== 0) return true;
    return false;
  }
}

function nonNegative(n: number, what: string): number {
  if (!(Number.isFinite(n) && n >= 0)) throw new TlpwireError('ERR_USAGE', `${what} must be a non-negative number, got ${n}`);
  return Math.floor(n);
}
