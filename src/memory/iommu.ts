import { type Clock, type Counters, type Logger, TlpwireError, silentLogger } from '../core/index.js';
import { IOMMU_PAGE_SIZE, IOMMU_READ, IOMMU_WRITE } from '../spec/index.js';
import type { HostRam } from './host-ram.js';
import { RangeAllocator } from './range-allocator.js';

/**
 * Per requester ID: `disabled` (no IOMMU in the path: DMA addresses are physical), `passthrough`
 * (an identity domain: also physical, but the IOMMU is on and chose to pass this device
 * through), `enabled` (every DMA is translated through this requester's page mappings).
 */
export type IommuMode = 'disabled' | 'passthrough' | 'enabled';

/** What the device may do with a mapping: read host memory, write it, or both. */
export type DmaPerms = 'r' | 'w' | 'rw';

export type DmaFaultReason =
  /** No mapping for a page of the range. */
  | 'unmapped'
  /** Mapped, but not for this direction. */
  | 'permission'
  /** Not a valid IOVA (negative, fractional, or past the IOVA space). */
  | 'bad-address'
  /** Untranslated (disabled/passthrough) DMA to an address with no RAM behind it. */
  | 'outside-ram';

export interface DmaFault {
  rid: number;
  /** The DMA's start address (an IOVA when translating, else physical). */
  address: number;
  length: number;
  write: boolean;
  reason: DmaFaultReason;
  /** The first address of the range that failed. */
  faultAddress: number;
  timeNs: number;
}

/**
 * A DMA that the host refuses: nothing was read or written. The completer answers it with
 * Unsupported Request. `code` is ERR_IOMMU_FAULT for a translation fault and ERR_MEMORY_RANGE
 * for untranslated DMA outside RAM.
 */
export class DmaFaultError extends TlpwireError {
  readonly fault: DmaFault;

  constructor(fault: DmaFault) {
    super(
      fault.reason === 'outside-ram' ? 'ERR_MEMORY_RANGE' : 'ERR_IOMMU_FAULT',
      `DMA ${fault.write ? 'write' : 'read'} of ${fault.length} bytes at 0x${fault.address.toString(16)} by ${ridString(fault.rid)}: ${fault.reason} at 0x${fault.faultAddress.toString(16)}`,
      { offset: fault.faultAddress },
    );
    this.name = 'DmaFaultError';
    this.fault = fault;
  }
}

export interface IommuOptions {
  ram: HostRam;
  /** Mode of a requester ID nobody configured (default `disabled`: no IOMMU). */
  defaultMode?: IommuMode;
  /** IOVA allocator range per requester ID (default [1 MiB, 2^48)): IOVA 0 is never handed out. */
  iovaBase?: number;
  iovaLimit?: number;
  /** For fault timestamps. */
  clock?: Clock;
  logger?: Logger;
  counters?: Counters;
  /** How many recent faults `recentFaults()` keeps (default 64). */
  maxFaultRecords?: number;
}

interface Domain {
  mode: IommuMode | undefined;
  /** IOVA page number → physical page number × 4 + permission bits. */
  pages: Map<number, number>;
  iova: RangeAllocator | undefined;
  /** dmaMap'ed ranges: returned IOVA → the page-aligned IOVA allocation and its size. */
  dmaMaps: Map<number, { base: number; size: number }>;
}

const PERM_BITS: Record<DmaPerms, number> = { r: IOMMU_READ, w: IOMMU_WRITE, rw: IOMMU_READ | IOMMU_WRITE };

/**
 * The host's IOMMU: page mappings (4 KiB) per requester ID, an IOVA allocator per requester,
 * and translation of every DMA. A DMA that touches an unmapped page, or a page without the
 * permission it needs, reads or writes nothing: the fault is logged, counted and recorded,
 * and the caller gets a DmaFaultError to turn into UR.
 */
export class Iommu {
  readonly ram: HostRam;
  readonly defaultMode: IommuMode;
  readonly iovaBase: number;
  readonly iovaLimit: number;
  private readonly clock: Clock | undefined;
  private readonly logger: Logger;
  private readonly counters: Counters | undefined;
  private readonly maxFaultRecords: number;
  private readonly domains = new Map<number, Domain>();
  private readonly faults: DmaFault[] = [];
  private faultTotal = 0;
  /** Physical page per IOVA page of the DMA being performed (reused). */
  private readonly scratchPhys: number[] = [];
  private readonly runPhys: number[] = [];
  private readonly runLen: number[] = [];

  constructor(options: IommuOptions) {
    this.ram = options.ram;
    this.defaultMode = options.defaultMode ?? 'disabled';
    this.iovaBase = options.iovaBase ?? 0x10_0000;
    this.iovaLimit = options.iovaLimit ?? 2 ** 48;
    if (this.iovaBase % IOMMU_PAGE_SIZE !== 0 || this.iovaLimit % IOMMU_PAGE_SIZE !== 0 || this.iovaLimit <= this.iovaBase) {
      throw new TlpwireError('ERR_IOMMU_MAP', 'IOVA base and limit must be page-aligned with base < limit');
    }
    this.clock = options.clock;
    this.logger = options.logger ?? silentLogger;
    this.counters = options.counters;
    this.maxFaultRecords = options.maxFaultRecords ?? 64;
  }

  // ---- modes ----------------------------------------------------------------------------------

  setMode(rid: number, mode: IommuMode): void {
    this.domain(rid).mode = mode;
  }

  mode(rid: number): IommuMode {
    return this.domains.get(rid)?.mode ?? this.defaultMode;
  }

  /** True when DMA from `rid` uses physical addresses (the IOMMU is off or passes it through). */
  isIdentity(rid: number): boolean {
    return this.mode(rid) !== 'enabled';
  }

  // ---- mappings -------------------------------------------------------------------------------

  /** Maps [iova, iova + size) to [phys, phys + size); all page-aligned; phys must be RAM. */
  map(rid: number, iova: number, phys: number, size: number, perms: DmaPerms): void {
    const bits = PERM_BITS[perms];
    if (bits === undefined) throw new TlpwireError('ERR_IOMMU_MAP', `invalid permissions ${String(perms)}`);
    if (!(isPageAligned(iova) && isPageAligned(phys) && isPageAligned(size) && size > 0)) {
      throw new TlpwireError(
        'ERR_IOMMU_MAP',
        `map: iova 0x${iova.toString(16)}, phys 0x${phys.toString(16)} and size 0x${size.toString(16)} must be positive multiples of ${IOMMU_PAGE_SIZE}`,
      );
    }
    if (iova + size > this.iovaLimit) {
      throw new TlpwireError('ERR_IOMMU_MAP', `map: IOVA range ends past the IOVA space (0x${this.iovaLimit.toString(16)})`);
    }
    if (!this.ram.contains(phys, size)) {
      throw new TlpwireError('ERR_IOMMU_MAP', `map: physical range 0x${phys.toString(16)}+0x${size.toString(16)} is not RAM`);
    }
    const d = this.domain(rid);
    const first = iova / IOMMU_PAGE_SIZE;
    const n = size / IOMMU_PAGE_SIZE;
    for (let i = 0; i < n; i++) {
      if (d.pages.has(first + i)) {
        throw new TlpwireError('ERR_IOMMU_MAP', `map: IOVA 0x${((first + i) * IOMMU_PAGE_SIZE).toString(16)} is already mapped for ${ridString(rid)}`);
      }
    }
    const physFirst = phys / IOMMU_PAGE_SIZE;
    for (let i = 0; i < n; i++) d.pages.set(first + i, (physFirst + i) * 4 + bits);
  }

  /** Removes mappings in [iova, iova + size) (page-aligned); returns the bytes that were mapped. */
  unmap(rid: number, iova: number, size: number): number {
    if (!(isPageAligned(iova) && isPageAligned(size))) {
      throw new TlpwireError('ERR_IOMMU_MAP', 'unmap: iova and size must be page-aligned');
    }
    const d = this.domains.get(rid);
    if (d === undefined) return 0;
    const first = iova / IOMMU_PAGE_SIZE;
    let removed = 0;
    for (let i = 0; i < size / IOMMU_PAGE_SIZE; i++) if (d.pages.delete(first + i)) removed += IOMMU_PAGE_SIZE;
    return removed;
  }

  /** Allocates IOVA space for `rid` (page-granular). */
  allocIova(rid: number, size: number, align = IOMMU_PAGE_SIZE): number {
    const d = this.domain(rid);
    d.iova ??= new RangeAllocator(this.iovaBase, this.iovaLimit, `IOVA space of ${ridString(rid)}`);
    return d.iova.allocate(roundUpPage(size), Math.max(align, IOMMU_PAGE_SIZE));
  }

  freeIova(rid: number, iova: number): number {
    const a = this.domains.get(rid)?.iova;
    if (a === undefined) throw new TlpwireError('ERR_IOMMU_MAP', `freeIova: ${ridString(rid)} has no IOVA allocations`);
    return a.free(iova);
  }

  /**
   * Like Linux's dma_map_single: allocates IOVA space, maps the pages that hold
   * [phys, phys + size) and returns the IOVA of `phys` (same offset within its page). In
   * identity modes it returns `phys` and maps nothing.
   */
  dmaMap(rid: number, phys: number, size: number, perms: DmaPerms): number {
    if (this.isIdentity(rid)) {
      this.ram.check(phys, size);
      return phys;
    }
    this.ram.check(phys, size);
    const physBase = phys - (phys % IOMMU_PAGE_SIZE);
    const span = roundUpPage(phys + Math.max(size, 1)) - physBase;
    const base = this.allocIova(rid, span);
    this.map(rid, base, physBase, span, perms);
    const iova = base + (phys - physBase);
    this.domain(rid).dmaMaps.set(iova, { base, size: span });
    return iova;
  }

  /** Undoes dmaMap (no-op in identity modes). */
  dmaUnmap(rid: number, iova: number): void {
    if (this.isIdentity(rid)) return;
    const d = this.domains.get(rid);
    const m = d?.dmaMaps.get(iova);
    if (d === undefined || m === undefined) {
      throw new TlpwireError('ERR_IOMMU_MAP', `dmaUnmap: 0x${iova.toString(16)} was not returned by dmaMap for ${ridString(rid)}`);
    }
    d.dmaMaps.delete(iova);
    this.unmap(rid, m.base, m.size);
    this.freeIova(rid, m.base);
  }

  /** Bytes mapped for `rid`. */
  mappedBytes(rid: number): number {
    return (this.domains.get(rid)?.pages.size ?? 0) * IOMMU_PAGE_SIZE;
  }

  // ---- translation ----------------------------------------------------------------------------

  /**
   * Checks a DMA without performing it or recording a fault: the physical address of `address`
   * when every byte of the range may be accessed, else the fault it would raise. The range may
   * map to physically discontiguous pages; use a DmaTarget to move the bytes.
   */
  translate(rid: number, address: number, length: number, write: boolean): number | DmaFault {
    const fault = this.resolve(rid, address, length, write);
    if (fault !== undefined) return fault;
    return this.isIdentity(rid) || length === 0 ? address : this.scratchPhys[0]! * IOMMU_PAGE_SIZE + (address % IOMMU_PAGE_SIZE);
  }

  /** The device-side view of memory for one requester ID. */
  target(rid: number): DmaTarget {
    return new DmaTarget(this, rid);
  }

  get faultCount(): number {
    return this.faultTotal;
  }

  /** The most recent faults, oldest first. */
  recentFaults(): readonly DmaFault[] {
    return this.faults;
  }

  /**
   * A DMA read for `rid` done in place: the RAM page that holds all of it (HostRam.pageHolding),
   * with the read's first byte at `spanOffset`, or undefined (an access the IOMMU refuses, which
   * is not recorded; a range that is not in one written page) for the caller to use dmaRead.
   */
  dmaReadSpan(rid: number, address: number, length: number): Uint8Array | undefined {
    if (length === 0 || this.resolve(rid, address, length, false) !== undefined) return undefined;
    let phys = address;
    if (!this.isIdentity(rid)) {
      if (this.splitRuns(address, length) !== 1) return undefined;
      phys = this.runPhys[0]!;
    }
    const page = this.ram.pageHolding(phys, length);
    if (page !== undefined) this.spanOffset = this.ram.pageOffset(phys);
    return page;
  }

  /** Where dmaReadSpan's read starts in the page it returned. */
  spanOffset = 0;

  /** A DMA read for `rid` (what DmaTarget and the completer use): throws DmaFaultError having read nothing. */
  dmaRead(rid: number, address: number, dst: Uint8Array, dstOffset: number, length: number): void {
    const fault = this.resolve(rid, address, length, false);
    if (fault !== undefined) throw this.raise(fault);
    if (length === 0) return;
    if (this.isIdentity(rid)) {
      this.ram.readInto(address, dst, dstOffset, length);
      return;
    }
    const runs = this.splitRuns(address, length);
    let off = dstOffset;
    for (let i = 0; i < runs; i++) {
      const n = this.runLen[i]!;
      this.ram.readInto(this.runPhys[i]!, dst, off, n);
      off += n;
    }
  }

  /** A DMA write for `rid`: throws DmaFaultError having written nothing. */
  dmaWrite(rid: number, address: number, src: Uint8Array, srcOffset: number, length: number): void {
    const fault = this.resolve(rid, address, length, true);
    if (fault !== undefined) throw this.raise(fault);
    if (length === 0) return;
    if (this.isIdentity(rid)) {
      this.ram.dmaWrite(address, src, srcOffset, length);
      return;
    }
    const runs = this.splitRuns(address, length);
    let off = srcOffset;
    for (let i = 0; i < runs; i++) {
      const n = this.runLen[i]!;
      this.ram.dmaWrite(this.runPhys[i]!, src, off, n);
      off += n;
    }
  }

  /**
   * Consecutive DMA writes for `rid` that together cover [address, address + Σ lengths): write i
   * is src[offsets[i], offsets[i] + lengths[i]), in address order (a run of MWr TLPs). Checked
   * as one range first: when any of it may not be written, returns false having written and
   * recorded nothing (the caller then writes piece by piece, and dmaWrite reports the fault).
   */
  tryDmaWriteGather(rid: number, address: number, src: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): boolean {
    let total = 0;
    for (let i = 0; i < count; i++) total += lengths[i]!;
    if (this.resolve(rid, address, total, true) !== undefined) return false;
    if (this.isIdentity(rid)) {
      this.ram.dmaWriteGather(address, src, offsets, lengths, count);
      return true;
    }
    let a = address;
    for (let i = 0; i < count; i++) {
      const n = lengths[i]!;
      this.dmaWrite(rid, a, src, offsets[i]!, n);
      a += n;
    }
    return true;
  }

  // ---- internals ------------------------------------------------------------------------------

  private domain(rid: number): Domain {
    if (!(Number.isInteger(rid) && rid >= 0 && rid <= 0xffff)) {
      throw new TlpwireError('ERR_IOMMU_MAP', `requester ID must be 0..0xffff, got ${rid}`);
    }
    let d = this.domains.get(rid);
    if (d === undefined) {
      d = { mode: undefined, pages: new Map(), iova: undefined, dmaMaps: new Map() };
      this.domains.set(rid, d);
    }
    return d;
  }

  /**
   * Validates the whole range before anything moves; on success (translated mode) leaves the
   * physical page of each IOVA page in scratchPhys.
   */
  private resolve(rid: number, address: number, length: number, write: boolean): DmaFault | undefined {
    const d = this.domains.get(rid);
    const mode = d?.mode ?? this.defaultMode;
    if (mode !== 'enabled') {
      if (!this.ram.contains(address, length)) return this.fault(rid, address, length, write, 'outside-ram', address);
      return undefined;
    }
    if (!(Number.isSafeInteger(address) && address >= 0 && Number.isSafeInteger(length) && length >= 0 && address + length <= this.iovaLimit)) {
      return this.fault(rid, address, length, write, 'bad-address', Number.isFinite(address) ? address : 0);
    }
    if (length === 0) return undefined;
    const need = write ? IOMMU_WRITE : IOMMU_READ;
    const first = Math.floor(address / IOMMU_PAGE_SIZE);
    const last = Math.floor((address + length - 1) / IOMMU_PAGE_SIZE);
    const phys = this.scratchPhys;
    phys.length = 0;
    for (let p = first; p <= last; p++) {
      const e = d!.pages.get(p);
      const at = Math.max(address, p * IOMMU_PAGE_SIZE);
      if (e === undefined) return this.fault(rid, address, length, write, 'unmapped', at);
      if ((e & need) === 0) return this.fault(rid, address, length, write, 'permission', at);
      phys.push(Math.floor(e / 4));
    }
    return undefined;
  }

  /**
   * Splits the range resolved into scratchPhys into physically contiguous runs (runPhys,
   * runLen); returns their number. A run is one RAM access, so one device write seen by the
   * CPU model, however many pages it spans.
   */
  private splitRuns(address: number, length: number): number {
    const phys = this.scratchPhys;
    const startOff = address % IOMMU_PAGE_SIZE;
    let runs = 0;
    let runStart = phys[0]! * IOMMU_PAGE_SIZE + startOff;
    let runLen = Math.min(length, IOMMU_PAGE_SIZE - startOff);
    let done = runLen;
    for (let i = 1; i < phys.length; i++) {
      const n = Math.min(length - done, IOMMU_PAGE_SIZE);
      const pa = phys[i]! * IOMMU_PAGE_SIZE;
      if (pa === runStart + runLen) {
        runLen += n;
      } else {
        this.runPhys[runs] = runStart;
        this.runLen[runs] = runLen;
        runs++;
        runStart = pa;
        runLen = n;
      }
      done += n;
    }
    this.runPhys[runs] = runStart;
    this.runLen[runs] = runLen;
    return runs + 1;
  }

  private fault(rid: number, address: number, length: number, write: boolean, reason: DmaFaultReason, at: number): DmaFault {
    return { rid, address, length, write, reason, faultAddress: at, timeNs: this.clock?.nowNs() ?? 0 };
  }

  /** Records a fault that a DMA actually hit: log, count, keep. */
  private raise(f: DmaFault): DmaFaultError {
    this.faultTotal++;
    this.faults.push(f);
    if (this.faults.length > this.maxFaultRecords) this.faults.shift();
    if (f.reason === 'outside-ram') {
      this.counters?.add('memory.dma_outside_ram');
    } else {
      this.counters?.add('iommu.faults');
      this.counters?.add(`iommu.faults.${f.reason}`);
    }
    const err = new DmaFaultError(f);
    this.logger.warn({ rid: ridString(f.rid), address: f.address, length: f.length, write: f.write, reason: f.reason, faultAddress: f.faultAddress }, err.message);
    return err;
  }
}

/**
 * DMA into host memory for one requester ID, through the IOMMU: what the completer (the root
 * complex's memory side) calls for each MRd/MWr. Ranges that cross pages mapped to scattered
 * physical pages are handled; a fault anywhere in the range moves no byte.
 */
export class DmaTarget {
  constructor(
    readonly iommu: Iommu,
    readonly rid: number,
  ) {}

  read(address: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.iommu.dmaRead(this.rid, address, out, 0, length);
    return out;
  }

  readInto(address: number, dst: Uint8Array, dstOffset = 0, length = dst.length - dstOffset): void {
    this.iommu.dmaRead(this.rid, address, dst, dstOffset, length);
  }

  write(address: number, data: Uint8Array, dataOffset = 0, length = data.length - dataOffset): void {
    this.iommu.dmaWrite(this.rid, address, data, dataOffset, length);
  }

  /** The fault this access would raise, without recording it. */
  check(address: number, length: number, write: boolean): DmaFault | undefined {
    const r = this.iommu.translate(this.rid, address, length, write);
    return typeof r === 'number' ? undefined : r;
  }
}

export function ridString(rid: number): string {
  const bus = (rid >> 8) & 0xff;
  const dev = (rid >> 3) & 0x1f;
  const fn = rid & 7;
  return `${bus.toString(16).padStart(2, '0')}:${dev.toString(16).padStart(2, '0')}.${fn}`;
}

function isPageAligned(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n % IOMMU_PAGE_SIZE === 0;
}

function roundUpPage(n: number): number {
  return Math.ceil(n / IOMMU_PAGE_SIZE) * IOMMU_PAGE_SIZE;
}

