import { TlpwireError, u16Add, u16Sub, vringNeedEvent } from '../core/index.js';
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_AVAIL_OFF,
  VIRTQ_DESC_F,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED_F_NO_NOTIFY,
  VIRTQ_USED_OFF,
} from '../spec/index.js';
import { type BarrierPolicy, type BarrierSite, type DeviceBarrier, BARRIER_SITES, deviceBarrierFor } from './barriers.js';
import { availEventOffset, isValidQueueSize, usedEventOffset } from './split-ring-layout.js';

/**
 * The device's view of host memory: DMA reads (non-posted, answered by completions) and DMA
 * writes (posted), with the device engine's barriers. Reads reject with a TlpwireError when the
 * host answers UR/CA (an address outside the IOMMU's mappings, say).
 */
export interface DeviceMemory {
  read(addr: number, len: number): Promise<Uint8Array>;
  write(addr: number, data: Uint8Array): void;
  barrier(kind: DeviceBarrier): void | Promise<void>;
}

export interface SplitRingDeviceConfig {
  size: number;
  /** Device (DMA) addresses of the three areas. */
  desc: number;
  avail: number;
  used: number;
  eventIdx: boolean;
  indirect: boolean;
  policy: BarrierPolicy;
  /** Bound on the bytes of one chain (a sanity limit, not a spec one). */
  maxChainBytes?: number;
  onBarrier?: (site: BarrierSite) => void;
}

export interface DescSegment {
  addr: number;
  len: number;
}

/** A buffer chain as the device found it: device-readable segments first, then writable ones. */
export interface DeviceChain {
  head: number;
  readable: DescSegment[];
  writable: DescSegment[];
  readableBytes: number;
  writableBytes: number;
}

export interface UsedElem {
  head: number;
  len: number;
}

const DEFAULT_MAX_CHAIN_BYTES = 1 << 24;
const U32 = 0x1_0000_0000;

function le16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function invalid(message: string): TlpwireError {
  return new TlpwireError('ERR_VQ_INVALID', message);
}

/**
 * The device side of a split virtqueue, after vringh: every value read from the ring is
 * untrusted and validated once on the way in; a chain walk stops after queue-size hops. Errors
 * are TlpwireErrors (ERR_VQ_INVALID, ERR_VQ_CHAIN_LOOP) that the transport turns into
 * DEVICE_NEEDS_RESET; nothing here hangs or crashes on a malicious driver.
 */
export class SplitRingDevice {
  readonly size: number;
  private readonly mask: number;
  private lastAvailIdx = 0;
  private usedIdx = 0;
  private lastSignalledUsed = 0;
  private readonly maxChainBytes: number;

  constructor(
    private readonly mem: DeviceMemory,
    readonly cfg: SplitRingDeviceConfig,
  ) {
    if (!isValidQueueSize(cfg.size)) throw invalid(`queue size ${cfg.size} is not a power of two in 1..32768`);
    for (const [name, addr, align] of [
      ['descriptor table', cfg.desc, 16],
      ['available ring', cfg.avail, 2],
      ['used ring', cfg.used, 4],
    ] as const) {
      if (!Number.isSafeInteger(addr) || addr < 0 || addr % align !== 0) {
        throw invalid(`${name} address 0x${addr.toString(16)} is not ${align}-byte aligned`);
      }
    }
    this.size = cfg.size;
    this.mask = cfg.size - 1;
    this.maxChainBytes = cfg.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES;
  }

  /** The next avail index the device will consume, and the used index it will publish. */
  get indices(): { lastAvail: number; used: number } {
    return { lastAvail: this.lastAvailIdx, used: this.usedIdx };
  }

  /** Reads avail.idx: how many chains wait (validated against the queue size). */
  async availCount(): Promise<number> {
    const b = await this.mem.read(this.cfg.avail + VIRTQ_AVAIL_OFF.IDX, 2);
    const pending = u16Sub(le16(b, 0), this.lastAvailIdx);
    if (pending > this.size) throw invalid(`avail.idx moved ${pending} entries ahead, more than the queue size ${this.size}`);
    return pending;
  }

  /** Pops up to `max` available chains (reads avail.idx once). */
  async pop(max = this.size): Promise<DeviceChain[]> {
    const pending = await this.availCount();
    if (pending === 0) return [];
    await this.barrier('device.pop.rmb-after-avail-idx');
    const n = Math.min(pending, max);
    const heads = await this.readAvailEntries(this.lastAvailIdx, n);
    const chains = await Promise.all(heads.map((h) => this.walk(h)));
    this.lastAvailIdx = u16Add(this.lastAvailIdx, n);
    return chains;
  }

  /** Publishes used elements, then used.idx. */
  async push(elems: readonly UsedElem[]): Promise<void> {
    if (elems.length === 0) return;
    const base = this.cfg.used + VIRTQ_USED_OFF.RING;
    let i = 0;
    while (i < elems.length) {
      const slot = (this.usedIdx + i) & this.mask;
      const run = Math.min(elems.length - i, this.size - slot);
      const buf = new Uint8Array(run * VIRTQ_USED_OFF.ELEM_SIZE);
      const dv = new DataView(buf.buffer);
      for (let k = 0; k < run; k++) {
        const e = elems[i + k]!;
        dv.setUint32(k * 8, e.head, true);
        dv.setUint32(k * 8 + 4, e.len, true);
      }
      this.mem.write(base + slot * VIRTQ_USED_OFF.ELEM_SIZE, buf);
      i += run;
    }
    await this.barrier('device.push.wmb-before-used-idx');
    this.usedIdx = u16Add(this.usedIdx, elems.length);
    this.writeU16(this.cfg.used + VIRTQ_USED_OFF.IDX, this.usedIdx);
  }

  /** Whether the driver wants an interrupt for what was pushed since the last check. */
  async needNotify(): Promise<boolean> {
    await this.barrier('device.notify.mb-before-event-check');
    const oldUsed = this.lastSignalledUsed;
    this.lastSignalledUsed = this.usedIdx;
    if (this.cfg.eventIdx) {
      const b = await this.mem.read(this.cfg.avail + usedEventOffset(this.size), 2);
      return vringNeedEvent(le16(b, 0), this.usedIdx, oldUsed);
    }
    const b = await this.mem.read(this.cfg.avail + VIRTQ_AVAIL_OFF.FLAGS, 2);
    return (le16(b, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** Asks the driver for notifications again; true when work arrived meanwhile (keep polling). */
  async enableNotify(): Promise<boolean> {
    if (this.cfg.eventIdx) this.writeU16(this.cfg.used + availEventOffset(this.size), this.lastAvailIdx);
    else this.writeU16(this.cfg.used + VIRTQ_USED_OFF.FLAGS, 0);
    await this.barrier('device.enable-notify.mb-before-avail-recheck');
    return (await this.availCount()) > 0;
  }

  /** Asks the driver not to notify (without EVENT_IDX; with it, avail_event simply lags). */
  disableNotify(): void {
    if (!this.cfg.eventIdx) this.writeU16(this.cfg.used + VIRTQ_USED_OFF.FLAGS, VIRTQ_USED_F_NO_NOTIFY);
  }

  private async readAvailEntries(from: number, n: number): Promise<number[]> {
    const heads: number[] = [];
    let i = 0;
    while (i < n) {
      const slot = (from + i) & this.mask;
      const run = Math.min(n - i, this.size - slot);
      const b = await this.mem.read(this.cfg.avail + VIRTQ_AVAIL_OFF.RING + 2 * slot, 2 * run);
      for (let k = 0; k < run; k++) heads.push(le16(b, 2 * k));
      i += run;
    }
    return heads;
  }

  private async walk(head: number): Promise<DeviceChain> {
    if (head >= this.size) throw invalid(`avail ring names head ${head}, outside a queue of ${this.size}`);
    const chain: DeviceChain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    let idx = head;
    let table: Uint8Array | undefined; // the indirect table, once entered
    let tableEntries = 0;
    let hops = 0;
    for (;;) {
      const limit = table === undefined ? this.size : tableEntries;
      if (++hops > limit) {
        throw new TlpwireError('ERR_VQ_CHAIN_LOOP', `descriptor chain from head ${head} is longer than ${limit} (a loop?)`);
      }
      let d: Uint8Array;
      let off: number;
      if (table === undefined) {
        d = await this.mem.read(this.cfg.desc + idx * VIRTQ_DESC_SIZE, VIRTQ_DESC_SIZE);
        off = 0;
      } else {
        d = table;
        off = idx * VIRTQ_DESC_SIZE;
      }
      const addr = le32(d, off) + le32(d, off + 4) * U32;
      const len = le32(d, off + 8);
      const flags = le16(d, off + 12);
      const next = le16(d, off + 14);
      if ((flags & VIRTQ_DESC_F.INDIRECT) !== 0) {
        if (!this.cfg.indirect) throw invalid(`descriptor ${idx} is INDIRECT but INDIRECT_DESC was not negotiated`);
        if (table !== undefined) throw invalid('an indirect table contains an INDIRECT descriptor (they do not nest)');
        if ((flags & VIRTQ_DESC_F.NEXT) !== 0) throw invalid(`descriptor ${idx} has both INDIRECT and NEXT`);
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) throw invalid(`indirect table length ${len} is not a non-zero multiple of 16`);
        if (len / VIRTQ_DESC_SIZE > this.size * 8 || len > this.maxChainBytes) throw invalid(`indirect table of ${len} bytes is too large`);
        if (!Number.isSafeInteger(addr + len)) throw invalid(`indirect table address 0x${addr.toString(16)} is out of range`);
        table = await this.mem.read(addr, len);
        tableEntries = len / VIRTQ_DESC_SIZE;
        idx = 0;
        hops = 0;
        continue;
      }
      if (!Number.isSafeInteger(addr + len)) throw invalid(`descriptor address 0x${addr.toString(16)} is out of range`);
      if ((flags & VIRTQ_DESC_F.WRITE) !== 0) {
        chain.writable.push({ addr, len });
        chain.writableBytes += len;
      } else {
        if (chain.writable.length > 0) throw invalid(`chain from head ${head}: a device-readable descriptor follows a writable one`);
        chain.readable.push({ addr, len });
        chain.readableBytes += len;
      }
      if (chain.readableBytes + chain.writableBytes > this.maxChainBytes) {
        throw invalid(`chain from head ${head} spans more than ${this.maxChainBytes} bytes`);
      }
      if ((flags & VIRTQ_DESC_F.NEXT) === 0) return chain;
      if (next >= (table === undefined ? this.size : tableEntries)) throw invalid(`descriptor ${idx} points to next ${next}, outside the table`);
      idx = next;
    }
  }

  private writeU16(addr: number, value: number): void {
    const b = new Uint8Array(2);
    b[0] = value & 0xff;
    b[1] = (value >>> 8) & 0xff;
    this.mem.write(addr, b);
  }

  private async barrier(site: BarrierSite): Promise<void> {
    this.cfg.onBarrier?.(site);
    const kind = deviceBarrierFor(BARRIER_SITES[site].order, this.cfg.policy.flavour(site));
    if (kind !== undefined) await this.mem.barrier(kind);
  }
}
