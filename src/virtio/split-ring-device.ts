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
import { type BarrierStep, type DeviceMemory, type DmaTask, type ReadManyStep, barrierStep, readStep, runDmaTaskAsync } from './split-ring-task.js';

export {
  type AllStep,
  type BarrierStep,
  type DeviceMemory,
  type DmaReadDone,
  type DmaStep,
  type DmaTask,
  type ReadManyStep,
  type ReadStep,
  barrierStep,
  hasCallbackMemory,
  readStep,
  runDmaTask,
  runDmaTaskAsync,
} from './split-ring-task.js';

/** A device-side ring operation, for traces and counts: one chain taken, one used element published. */
export type DeviceRingOp = 'pop' | 'push';

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
  /**
   * Called per chain popped (len: its readable + writable bytes) and per used element
   * published (after used.idx), for stress-run traces and ring-operation counts.
   */
  onRingOp?: (op: DeviceRingOp, head: number, len: number) => void;
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

/** Barrier steps are immutable: one per kind, shared by every ring. */
const BARRIER_STEPS = new Map<DeviceBarrier, BarrierStep>();
function stepFor(kind: DeviceBarrier): BarrierStep {
  let s = BARRIER_STEPS.get(kind);
  if (s === undefined) BARRIER_STEPS.set(kind, (s = barrierStep(kind)));
  return s;
}

// What a chain walk needs next.
const WALK_DONE = 0;
const WALK_NEED_DESC = 1;
const WALK_NEED_TABLE = 2;

/** One chain being walked: where it is, how far it went, the indirect table once entered. */
class ChainWalk {
  idx: number;
  hops = 1;
  table: Uint8Array | undefined = undefined;
  tableEntries = 0;
  tableAddr = 0;
  tableLen = 0;
  readonly chain: DeviceChain;
  constructor(head: number) {
    this.idx = head;
    this.chain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
  }
}

/**
 * The device side of a split virtqueue, after vringh: every value read from the ring is
 * untrusted and validated once on the way in; a chain walk stops after queue-size hops. Errors
 * are TlpwireErrors (ERR_VQ_INVALID, ERR_VQ_CHAIN_LOOP) that the transport turns into
 * DEVICE_NEEDS_RESET; nothing here hangs or crashes on a malicious driver.
 *
 * Each operation exists as a task (`popTask`, …: see split-ring-task.ts), which the device
 * drives with callbacks inside the simulator, and as a promise (`pop`, …) for everyone else.
 */
export class SplitRingDevice {
  readonly size: number;
  private readonly mask: number;
  private lastAvailIdx = 0;
  private usedIdx = 0;
  private lastSignalledUsed = 0;
  private readonly maxChainBytes: number;
  private readonly availIdxStep: ReturnType<typeof readStep>;

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
    this.availIdxStep = readStep(cfg.avail + VIRTQ_AVAIL_OFF.IDX, 2);
  }

  /** The next avail index the device will consume, and the used index it will publish. */
  get indices(): { lastAvail: number; used: number } {
    return { lastAvail: this.lastAvailIdx, used: this.usedIdx };
  }

  // ---- promise API ----------------------------------------------------------------------------

  /** Reads avail.idx: how many chains wait (validated against the queue size). */
  availCount(): Promise<number> {
    return runDmaTaskAsync(this.availCountTask(), this.mem);
  }

  /** Pops up to `max` available chains (reads avail.idx once). */
  pop(max = this.size): Promise<DeviceChain[]> {
    return runDmaTaskAsync(this.popTask(max), this.mem);
  }

  /** Publishes used elements, then used.idx. */
  push(elems: readonly UsedElem[]): Promise<void> {
    return runDmaTaskAsync(this.pushTask(elems), this.mem);
  }

  /** Whether the driver wants an interrupt for what was pushed since the last check. */
  needNotify(): Promise<boolean> {
    return runDmaTaskAsync(this.needNotifyTask(), this.mem);
  }

  /** Asks the driver for notifications again; true when work arrived meanwhile (keep polling). */
  enableNotify(): Promise<boolean> {
    return runDmaTaskAsync(this.enableNotifyTask(), this.mem);
  }

  /** Asks the driver not to notify (without EVENT_IDX; with it, avail_event simply lags). */
  disableNotify(): void {
    if (!this.cfg.eventIdx) this.writeU16(this.cfg.used + VIRTQ_USED_OFF.FLAGS, VIRTQ_USED_F_NO_NOTIFY);
  }

  // ---- tasks ------------------------------------------------------------------------------------

  *availCountTask(): DmaTask<number> {
    const b = (yield this.availIdxStep) as Uint8Array;
    const pending = u16Sub(le16(b, 0), this.lastAvailIdx);
    if (pending > this.size) throw invalid(`avail.idx moved ${pending} entries ahead, more than the queue size ${this.size}`);
    return pending;
  }

  *popTask(max = this.size): DmaTask<DeviceChain[]> {
    const pending = yield* this.availCountTask();
    if (pending === 0) return [];
    // rmb: avail.idx before the ring entries and descriptors (pairs with driver.add.wmb-before-avail-idx)
    yield* this.barrier('device.pop.rmb-after-avail-idx');
    const n = Math.min(pending, max);
    const heads = yield* this.readAvailEntries(this.lastAvailIdx, n);
    const chains = yield* this.walkAll(heads);
    this.lastAvailIdx = u16Add(this.lastAvailIdx, n);
    const trace = this.cfg.onRingOp;
    if (trace !== undefined) for (const c of chains) trace('pop', c.head, c.readableBytes + c.writableBytes);
    return chains;
  }

  *pushTask(elems: readonly UsedElem[]): DmaTask<void> {
    if (elems.length === 0) return;
    const base = this.cfg.used + VIRTQ_USED_OFF.RING;
    let i = 0;
    while (i < elems.length) {
      const slot = (this.usedIdx + i) & this.mask;
      const run = Math.min(elems.length - i, this.size - slot);
      const buf = new Uint8Array(run * VIRTQ_USED_OFF.ELEM_SIZE);
      for (let k = 0; k < run; k++) {
        const e = elems[i + k]!;
        put32(buf, k * 8, e.head);
        put32(buf, k * 8 + 4, e.len);
      }
      this.mem.write(base + slot * VIRTQ_USED_OFF.ELEM_SIZE, buf);
      i += run;
    }
    // wmb: buffers and used elements before used.idx (pairs with driver.get.rmb-after-used-idx)
    yield* this.barrier('device.push.wmb-before-used-idx');
    this.usedIdx = u16Add(this.usedIdx, elems.length);
    this.writeU16(this.cfg.used + VIRTQ_USED_OFF.IDX, this.usedIdx);
    const trace = this.cfg.onRingOp;
    if (trace !== undefined) for (const e of elems) trace('push', e.head, e.len);
  }

  *needNotifyTask(): DmaTask<boolean> {
    // mb: used.idx before reading used_event / flags (pairs with driver.enable-cb.mb-before-used-recheck)
    yield* this.barrier('device.notify.mb-before-event-check');
    const oldUsed = this.lastSignalledUsed;
    this.lastSignalledUsed = this.usedIdx;
    if (this.cfg.eventIdx) {
      const b = (yield readStep(this.cfg.avail + usedEventOffset(this.size), 2)) as Uint8Array;
      return vringNeedEvent(le16(b, 0), this.usedIdx, oldUsed);
    }
    const b = (yield readStep(this.cfg.avail + VIRTQ_AVAIL_OFF.FLAGS, 2)) as Uint8Array;
    return (le16(b, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  *enableNotifyTask(): DmaTask<boolean> {
    if (this.cfg.eventIdx) this.writeU16(this.cfg.used + availEventOffset(this.size), this.lastAvailIdx);
    else this.writeU16(this.cfg.used + VIRTQ_USED_OFF.FLAGS, 0);
    // mb: the re-enable store before re-reading avail.idx (pairs with driver.kick.mb-before-event-check)
    yield* this.barrier('device.enable-notify.mb-before-avail-recheck');
    return (yield* this.availCountTask()) > 0;
  }

  // ---- internals --------------------------------------------------------------------------------

  private *readAvailEntries(from: number, n: number): DmaTask<number[]> {
    const heads: number[] = new Array<number>(n);
    const ring = this.cfg.avail + VIRTQ_AVAIL_OFF.RING;
    const slot = from & this.mask;
    const first = Math.min(n, this.size - slot);
    if (first === n) {
      const b = (yield readStep(ring + 2 * slot, 2 * n)) as Uint8Array;
      for (let k = 0; k < n; k++) heads[k] = le16(b, 2 * k);
    } else {
      // the entries wrap around the end of the ring: two reads, issued together
      const step: ReadManyStep = { op: 'reads', addrs: [ring + 2 * slot, ring], lens: [2 * first, 2 * (n - first)] };
      const [a, b] = (yield step) as [Uint8Array, Uint8Array];
      for (let k = 0; k < first; k++) heads[k] = le16(a, 2 * k);
      for (let k = first; k < n; k++) heads[k] = le16(b, 2 * (k - first));
    }
    return heads;
  }

  /**
   * Walks every chain, their descriptor reads issued together round by round (a chain's next
   * descriptor is read once the previous one arrived; an indirect table is read whole).
   */
  private *walkAll(heads: readonly number[]): DmaTask<DeviceChain[]> {
    const walks: ChainWalk[] = [];
    for (const head of heads) {
      if (head >= this.size) throw invalid(`avail ring names head ${head}, outside a queue of ${this.size}`);
      walks.push(new ChainWalk(head));
    }
    let ring = walks;
    let tables: ChainWalk[] = [];
    while (ring.length > 0 || tables.length > 0) {
      const count = ring.length + tables.length;
      let data: readonly Uint8Array[];
      if (count === 1) {
        const w = ring[0] ?? tables[0]!;
        const step = ring.length === 1 ? readStep(this.cfg.desc + w.idx * VIRTQ_DESC_SIZE, VIRTQ_DESC_SIZE) : readStep(w.tableAddr, w.tableLen);
        data = [(yield step) as Uint8Array];
      } else {
        const addrs: number[] = [];
        const lens: number[] = [];
        for (const w of ring) {
          addrs.push(this.cfg.desc + w.idx * VIRTQ_DESC_SIZE);
          lens.push(VIRTQ_DESC_SIZE);
        }
        for (const w of tables) {
          addrs.push(w.tableAddr);
          lens.push(w.tableLen);
        }
        data = (yield { op: 'reads', addrs, lens } satisfies ReadManyStep) as Uint8Array[];
      }
      const nextRing: ChainWalk[] = [];
      const nextTables: ChainWalk[] = [];
      for (let i = 0; i < count; i++) {
        let r: number;
        if (i < ring.length) {
          const w = ring[i]!;
          r = this.advance(w, data[i]!, 0);
          if (r === WALK_NEED_DESC) nextRing.push(w);
          else if (r === WALK_NEED_TABLE) nextTables.push(w);
        } else {
          const w = tables[i - ring.length]!;
          w.table = data[i]!;
          w.tableEntries = w.tableLen / VIRTQ_DESC_SIZE;
          w.idx = 0;
          w.hops = 1;
          // tables do not nest: walking one needs no further reads
          this.advance(w, w.table, 0);
        }
      }
      ring = nextRing;
      tables = nextTables;
    }
    return walks.map((w) => w.chain);
  }

  /** Takes descriptors of one chain from `d` at `off` until it ends or needs another read. */
  private advance(w: ChainWalk, d: Uint8Array, off: number): number {
    const chain = w.chain;
    for (;;) {
      const addr = le32(d, off) + le32(d, off + 4) * U32;
      const len = le32(d, off + 8);
      const flags = le16(d, off + 12);
      const next = le16(d, off + 14);
      if ((flags & VIRTQ_DESC_F.INDIRECT) !== 0) {
        if (!this.cfg.indirect) throw invalid(`descriptor ${w.idx} is INDIRECT but INDIRECT_DESC was not negotiated`);
        if (w.table !== undefined) throw invalid('an indirect table contains an INDIRECT descriptor (they do not nest)');
        if ((flags & VIRTQ_DESC_F.NEXT) !== 0) throw invalid(`descriptor ${w.idx} has both INDIRECT and NEXT`);
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) throw invalid(`indirect table length ${len} is not a non-zero multiple of 16`);
        if (len / VIRTQ_DESC_SIZE > this.size * 8 || len > this.maxChainBytes) throw invalid(`indirect table of ${len} bytes is too large`);
        if (!Number.isSafeInteger(addr + len)) throw invalid(`indirect table address 0x${addr.toString(16)} is out of range`);
        w.tableAddr = addr;
        w.tableLen = len;
        return WALK_NEED_TABLE;
      }
      if (!Number.isSafeInteger(addr + len)) throw invalid(`descriptor address 0x${addr.toString(16)} is out of range`);
      if ((flags & VIRTQ_DESC_F.WRITE) !== 0) {
        chain.writable.push({ addr, len });
        chain.writableBytes += len;
      } else {
        if (chain.writable.length > 0) throw invalid(`chain from head ${chain.head}: a device-readable descriptor follows a writable one`);
        chain.readable.push({ addr, len });
        chain.readableBytes += len;
      }
      if (chain.readableBytes + chain.writableBytes > this.maxChainBytes) {
        throw invalid(`chain from head ${chain.head} spans more than ${this.maxChainBytes} bytes`);
      }
      if ((flags & VIRTQ_DESC_F.NEXT) === 0) return WALK_DONE;
      const limit = w.table === undefined ? this.size : w.tableEntries;
      if (next >= limit) throw invalid(`descriptor ${w.idx} points to next ${next}, outside the table`);
      w.idx = next;
      // a chain walk stops after queue-size hops (table-size inside a table): a loop is a driver bug
      if (++w.hops > limit) {
        throw new TlpwireError('ERR_VQ_CHAIN_LOOP', `descriptor chain from head ${chain.head} is longer than ${limit} (a loop?)`);
      }
      if (w.table === undefined) return WALK_NEED_DESC;
      d = w.table;
      off = next * VIRTQ_DESC_SIZE;
    }
  }

  private writeU16(addr: number, value: number): void {
    const b = new Uint8Array(2);
    b[0] = value & 0xff;
    b[1] = (value >>> 8) & 0xff;
    this.mem.write(addr, b);
  }

  private *barrier(site: BarrierSite): DmaTask<void> {
    this.cfg.onBarrier?.(site);
    const kind = deviceBarrierFor(BARRIER_SITES[site].order, this.cfg.policy.flavour(site));
    if (kind !== undefined) yield stepFor(kind);
  }
}

function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
