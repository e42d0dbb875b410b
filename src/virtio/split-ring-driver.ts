import { TlpwireError, u16Add, u16Sub, vringNeedEvent } from '../core/index.js';
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_AVAIL_OFF,
  VIRTQ_DESC_F,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED_F_NO_NOTIFY,
  VIRTQ_USED_OFF,
} from '../spec/index.js';
import { type BarrierPolicy, type BarrierSite, type CpuBarrier, BARRIER_SITES, cpuBarrierFor } from './barriers.js';
import { type SplitRingLayout, availEventOffset, isValidQueueSize, usedEventOffset } from './split-ring-layout.js';

/**
 * The driver's view of memory: the host CPU's loads, stores and barriers (the memory model
 * decides when stores become visible to the device). Little-endian, as virtio 1.x is.
 */
export interface DriverMemory {
  read16(addr: number): number;
  read32(addr: number): number;
  write16(addr: number, value: number): void;
  write32(addr: number, value: number): void;
  /** value < 2^53 */
  write64(addr: number, value: number): void;
  barrier(kind: CpuBarrier): void;
}

/** One scatter-gather element, in device (DMA) addresses. */
export interface Sg {
  addr: number;
  len: number;
}

/** Memory for indirect tables: cpu address to write it, dma address to give the device. */
export interface IndirectAllocator {
  alloc(bytes: number): { cpu: number; dma: number } | undefined;
  free(cpu: number): void;
}

export interface SplitRingDriverOptions {
  eventIdx: boolean;
  indirect: boolean;
  policy: BarrierPolicy;
  indirectAllocator?: IndirectAllocator;
  /** Called when a barrier site runs (for counting and ablation reports). */
  onBarrier?: (site: BarrierSite) => void;
  /**
   * Called per buffer added (len: its readable + writable bytes) and per buffer taken back
   * (len: the used length), for stress-run traces and ring-operation counts.
   */
  onRingOp?: (op: DriverRingOp, head: number, len: number) => void;
}

/** A driver-side ring operation, for traces and counts. */
export type DriverRingOp = 'add' | 'get';

export interface UsedBuffer<T> {
  token: T;
  len: number;
}

/**
 * The driver side of a split virtqueue, after Linux's virtio_ring.c: it keeps shadow copies of
 * what it published (free list, chain lengths, avail idx), never trusts device-written memory
 * beyond used.idx and the used elements, and marks the ring broken when the device answers
 * nonsense instead of throwing from a data path.
 */
export class SplitRingDriver<T> {
  readonly size: number;
  private readonly mask: number;
  private readonly next: Uint16Array;
  private readonly chainLen: Uint16Array;
  private readonly writableBytes: Float64Array;
  private readonly indirectCpu: Float64Array;
  private readonly tokens: (T | undefined)[];
  private freeHead = 0;
  private numFreeDesc: number;
  private availIdxShadow = 0;
  private availFlagsShadow = 0;
  private lastUsedIdx = 0;
  private numAdded = 0;
  private brokenReason: string | undefined;

  constructor(
    private readonly mem: DriverMemory,
    readonly layout: SplitRingLayout,
    private readonly opts: SplitRingDriverOptions,
  ) {
    if (!isValidQueueSize(layout.size)) {
      throw new TlpwireError('ERR_VQ_INVALID', `queue size ${layout.size} is not a power of two in 1..32768`);
    }
    this.size = layout.size;
    this.mask = this.size - 1;
    this.next = new Uint16Array(this.size);
    for (let i = 0; i < this.size; i++) this.next[i] = i + 1;
    this.chainLen = new Uint16Array(this.size);
    this.writableBytes = new Float64Array(this.size);
    this.indirectCpu = new Float64Array(this.size).fill(-1);
    this.tokens = new Array<T | undefined>(this.size);
    this.numFreeDesc = this.size;
  }

  /** Zeroes the driver-owned fields (before the queue is enabled). */
  initRing(): void {
    const { avail } = this.layout;
    this.mem.write16(avail.cpu + VIRTQ_AVAIL_OFF.FLAGS, 0);
    this.mem.write16(avail.cpu + VIRTQ_AVAIL_OFF.IDX, 0);
    this.mem.write16(avail.cpu + usedEventOffset(this.size), 0);
  }

  get broken(): string | undefined {
    return this.brokenReason;
  }

  get numFree(): number {
    return this.numFreeDesc;
  }

  /** Buffers given to the device and not yet returned. */
  get inFlight(): number {
    return u16Sub(this.availIdxShadow, this.lastUsedIdx);
  }

  /**
   * Exposes one buffer chain: `out` elements are device-readable, `inp` device-writable.
   * Returns false when there is no room (the caller retries after reclaiming).
   */
  add(out: readonly Sg[], inp: readonly Sg[], token: T): boolean {
    if (this.brokenReason !== undefined) return false;
    const total = out.length + inp.length;
    if (total === 0) throw new TlpwireError('ERR_VQ_INVALID', 'a buffer chain needs at least one element');
    const mem = this.mem;
    let head: number;
    let used: number;
    let writable = 0;
    for (const sg of inp) writable += sg.len;
    let readable = 0;
    for (const sg of out) readable += sg.len;

    const indirect = this.opts.indirect && total > 1 && this.opts.indirectAllocator !== undefined;
    // An indirect chain needs one ring descriptor: with none free, wait for room.
    if (indirect && this.numFreeDesc < 1) return false;
    const table = indirect ? this.opts.indirectAllocator?.alloc(total * VIRTQ_DESC_SIZE) : undefined;
    if (table !== undefined) {
      for (let i = 0; i < total; i++) {
        const sg = i < out.length ? out[i]! : inp[i - out.length]!;
        const flags = (i < total - 1 ? VIRTQ_DESC_F.NEXT : 0) | (i >= out.length ? VIRTQ_DESC_F.WRITE : 0);
        this.writeDesc(table.cpu + i * VIRTQ_DESC_SIZE, sg.addr, sg.len, flags, i + 1 < total ? i + 1 : 0);
      }
      head = this.freeHead;
      this.writeDesc(this.descCpu(head), table.dma, total * VIRTQ_DESC_SIZE, VIRTQ_DESC_F.INDIRECT, 0);
      this.indirectCpu[head] = table.cpu;
      this.freeHead = this.next[head]!;
      used = 1;
    } else {
      if (total > this.size) {
        throw new TlpwireError('ERR_VQ_INVALID', `a chain of ${total} descriptors cannot fit a queue of ${this.size}`);
      }
      if (this.numFreeDesc < total) return false;
      head = this.freeHead;
      let d = head;
      let last = head;
      for (let i = 0; i < total; i++) {
        const sg = i < out.length ? out[i]! : inp[i - out.length]!;
        const hasNext = i < total - 1;
        const flags = (hasNext ? VIRTQ_DESC_F.NEXT : 0) | (i >= out.length ? VIRTQ_DESC_F.WRITE : 0);
        const nxt = this.next[d]!;
        this.writeDesc(this.descCpu(d), sg.addr, sg.len, flags, hasNext ? nxt : 0);
        last = d;
        d = nxt;
      }
      this.freeHead = this.next[last]!;
      used = total;
    }
    this.numFreeDesc -= used;
    this.chainLen[head] = used;
    this.writableBytes[head] = writable;
    this.tokens[head] = token;

    const avail = this.layout.avail.cpu;
    mem.write16(avail + VIRTQ_AVAIL_OFF.RING + 2 * (this.availIdxShadow & this.mask), head);
    this.barrier('driver.add.wmb-before-avail-idx');
    this.availIdxShadow = u16Add(this.availIdxShadow, 1);
    mem.write16(avail + VIRTQ_AVAIL_OFF.IDX, this.availIdxShadow);
    this.numAdded++;
    this.opts.onRingOp?.('add', head, readable + writable);
    return true;
  }

  /** Whether the device wants a notification for what was added since the last call. */
  kickPrepare(): boolean {
    this.barrier('driver.kick.mb-before-event-check');
    const newIdx = this.availIdxShadow;
    const oldIdx = u16Sub(newIdx, this.numAdded);
    this.numAdded = 0;
    const used = this.layout.used.cpu;
    if (this.opts.eventIdx) {
      return vringNeedEvent(this.mem.read16(used + availEventOffset(this.size)), newIdx, oldIdx);
    }
    return (this.mem.read16(used + VIRTQ_USED_OFF.FLAGS) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Whether the device has returned buffers not yet collected. */
  moreUsed(): boolean {
    return this.mem.read16(this.layout.used.cpu + VIRTQ_USED_OFF.IDX) !== this.lastUsedIdx;
  }

  /** Collects one returned buffer, or undefined. */
  getBuf(): UsedBuffer<T> | undefined {
    if (this.brokenReason !== undefined) return undefined;
    const mem = this.mem;
    const used = this.layout.used.cpu;
    const usedIdx = mem.read16(used + VIRTQ_USED_OFF.IDX);
    if (usedIdx === this.lastUsedIdx) return undefined;
    if (u16Sub(usedIdx, this.lastUsedIdx) > this.inFlight) {
      this.markBroken(`used.idx ${usedIdx} runs ahead of the ${this.inFlight} buffers in flight`);
      return undefined;
    }
    this.barrier('driver.get.rmb-after-used-idx');
    const elem = used + VIRTQ_USED_OFF.RING + VIRTQ_USED_OFF.ELEM_SIZE * (this.lastUsedIdx & this.mask);
    const id = mem.read32(elem);
    const len = mem.read32(elem + 4);
    if (id >= this.size || this.tokens[id] === undefined) {
      this.markBroken(`id ${id} is not a head`);
      return undefined;
    }
    if (len > this.writableBytes[id]!) {
      this.markBroken(`id ${id}: used len ${len} exceeds the ${this.writableBytes[id]} writable bytes given`);
      return undefined;
    }
    const token = this.tokens[id] as T;
    this.detach(id);
    this.lastUsedIdx = u16Add(this.lastUsedIdx, 1);
    this.opts.onRingOp?.('get', id, len);
    if (this.opts.eventIdx && (this.availFlagsShadow & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0) {
      mem.write16(this.layout.avail.cpu + usedEventOffset(this.size), this.lastUsedIdx);
      this.barrier('driver.get.mb-after-used-event');
    }
    return { token, len };
  }

  /** Asks the device not to interrupt (best effort, as in the spec). */
  disableCb(): void {
    if ((this.availFlagsShadow & VIRTQ_AVAIL_F_NO_INTERRUPT) !== 0) return;
    this.availFlagsShadow |= VIRTQ_AVAIL_F_NO_INTERRUPT;
    if (!this.opts.eventIdx) this.mem.write16(this.layout.avail.cpu + VIRTQ_AVAIL_OFF.FLAGS, this.availFlagsShadow);
  }

  /**
   * Re-enables interrupts. Returns true when nothing is pending (safe to wait for an interrupt),
   * false when buffers were returned meanwhile (the caller must poll again).
   */
  enableCb(): boolean {
    if ((this.availFlagsShadow & VIRTQ_AVAIL_F_NO_INTERRUPT) !== 0) {
      this.availFlagsShadow &= ~VIRTQ_AVAIL_F_NO_INTERRUPT;
      if (!this.opts.eventIdx) this.mem.write16(this.layout.avail.cpu + VIRTQ_AVAIL_OFF.FLAGS, this.availFlagsShadow);
    }
    if (this.opts.eventIdx) this.mem.write16(this.layout.avail.cpu + usedEventOffset(this.size), this.lastUsedIdx);
    this.barrier('driver.enable-cb.mb-before-used-recheck');
    return !this.moreUsed();
  }

  /** Takes back every buffer not returned (after a device reset); their tokens, in head order. */
  detachUnused(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) {
      const t = this.tokens[i];
      if (t !== undefined) {
        out.push(t);
        this.detach(i);
      }
    }
    return out;
  }

  private markBroken(reason: string): void {
    this.brokenReason = reason;
  }

  private detach(head: number): void {
    const n = this.chainLen[head]!;
    let last = head;
    for (let i = 1; i < n; i++) last = this.next[last]!;
    this.next[last] = this.freeHead;
    this.freeHead = head;
    this.numFreeDesc += n;
    this.tokens[head] = undefined;
    const ind = this.indirectCpu[head]!;
    if (ind >= 0) {
      this.opts.indirectAllocator?.free(ind);
      this.indirectCpu[head] = -1;
    }
  }

  private descCpu(i: number): number {
    return this.layout.desc.cpu + i * VIRTQ_DESC_SIZE;
  }

  private writeDesc(at: number, addr: number, len: number, flags: number, next: number): void {
    this.mem.write64(at, addr);
    this.mem.write32(at + 8, len);
    // flags and next share one 32-bit store (flags in the low half, little-endian)
    this.mem.write32(at + 12, (flags | (next << 16)) >>> 0);
  }

  private barrier(site: BarrierSite): void {
    this.opts.onBarrier?.(site);
    const kind = cpuBarrierFor(BARRIER_SITES[site].order, this.opts.policy.flavour(site));
    if (kind !== undefined) this.mem.barrier(kind);
  }
}
