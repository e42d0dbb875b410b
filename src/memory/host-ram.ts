import { TlpwireError, defaultGather, type GatherFn } from '../core/index.js';
import { RangeAllocator } from './range-allocator.js';

export const DEFAULT_RAM_SIZE = 64 * 1024 * 1024;
export const DEFAULT_RAM_PAGE_SIZE = 64 * 1024;
/** Large enough for any test or demo; keeps the page table a small dense array. */
export const MAX_RAM_SIZE = 64 * 1024 * 1024 * 1024;

export interface HostRamOptions {
  /** Bytes of RAM at physical address 0 (default 64 MiB, at most 64 GiB). */
  size?: number;
  /** Allocation granule of the backing store, a power of two from 4 KiB to 1 MiB (default 64 KiB). */
  pageSize?: number;
  /**
   * Bytes at the bottom that `allocate` never hands out (default 64 KiB), so that address 0 —
   * the value of an uninitialised descriptor — never names a live buffer.
   */
  reserveLow?: number;
  /** How dmaWriteGather copies a run (tests pick one); default: native when built (src/core/bulk-copy). */
  gather?: GatherFn;
}

/**
 * Told about writes that change RAM behind a CPU's back. The weak CPU model (HostCpu) keeps a
 * short history of device writes so its loads can return stale values, and must know when a
 * CPU store overwrites bytes that history would otherwise "restore".
 */
export interface RamWriteObserver {
  /** Called before a device (DMA) write of [address, address + length) lands; `seq` numbers it. */
  beforeDeviceWrite(address: number, length: number, seq: number): void;
  /** Called after a CPU store to [address, address + length) became visible. */
  afterCpuStore(address: number, length: number): void;
}

/**
 * Host physical memory as the device sees it (the DMA target), little-endian. Backing pages are
 * allocated on first write, so a large `size` costs nothing until used; unwritten memory reads
 * as zero. Every access is bounds-checked (ERR_MEMORY_RANGE).
 *
 * The plain `read*`/`write*` methods are the memory itself (setup, checks, the CPU model's drain).
 * Device writes go through `dmaWrite` so the CPU model can keep its history.
 */
export class HostRam {
  readonly size: number;
  readonly pageSize: number;
  private readonly pageShift: number;
  private readonly pageMask: number;
  private readonly pages: (Uint8Array | undefined)[];
  private readonly views: (DataView | undefined)[];
  private readonly allocator: RangeAllocator;
  private observers: RamWriteObserver[] = [];
  private seq = 0;
  private allocatedPages = 0;
  private readonly gather: GatherFn;

  constructor(options: HostRamOptions = {}) {
    const size = options.size ?? DEFAULT_RAM_SIZE;
    const pageSize = options.pageSize ?? DEFAULT_RAM_PAGE_SIZE;
    if (!(Number.isSafeInteger(size) && size > 0 && size <= MAX_RAM_SIZE)) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `RAM size must be 1 byte to 64 GiB, got ${size}`);
    }
    if (!(Number.isInteger(pageSize) && pageSize >= 4096 && pageSize <= 1 << 20 && (pageSize & (pageSize - 1)) === 0)) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `RAM page size must be a power of two from 4 KiB to 1 MiB, got ${pageSize}`);
    }
    this.size = size;
    this.pageSize = pageSize;
    this.pageShift = Math.log2(pageSize);
    this.pageMask = pageSize - 1;
    const n = Math.ceil(size / pageSize);
    this.pages = new Array<Uint8Array | undefined>(n).fill(undefined);
    this.views = new Array<DataView | undefined>(n).fill(undefined);
    const reserve = Math.min(options.reserveLow ?? 64 * 1024, size);
    this.allocator = new RangeAllocator(reserve, size, 'physical memory');
    this.gather = options.gather ?? defaultGather();
  }

  /** Backing pages allocated so far (a 1 GiB RAM that was barely touched stays small). */
  get pagesAllocated(): number {
    return this.allocatedPages;
  }

  // ---- bounds -------------------------------------------------------------------------------

  /** Throws ERR_MEMORY_RANGE unless [address, address + length) lies inside RAM. */
  check(address: number, length: number): void {
    if (!(Number.isSafeInteger(address) && address >= 0 && length >= 0 && address + length <= this.size)) {
      throw new TlpwireError(
        'ERR_MEMORY_RANGE',
        `access of ${length} bytes at 0x${Number.isFinite(address) ? address.toString(16) : String(address)} is outside RAM (size 0x${this.size.toString(16)})`,
        { offset: Number.isFinite(address) ? address : 0 },
      );
    }
  }

  contains(address: number, length: number): boolean {
    return Number.isSafeInteger(address) && address >= 0 && length >= 0 && address + length <= this.size;
  }

  // ---- scalar access --------------------------------------------------------------------------

  read8(address: number): number {
    this.check(address, 1);
    const p = this.pages[this.pageOf(address)];
    return p === undefined ? 0 : p[this.offsetOf(address)]!;
  }

  read16(address: number): number {
    this.check(address, 2);
    const off = this.offsetOf(address);
    if (off + 2 <= this.pageSize) {
      const v = this.views[this.pageOf(address)];
      return v === undefined ? 0 : v.getUint16(off, true);
    }
    return this.readSlow(address, 2);
  }

  read32(address: number): number {
    this.check(address, 4);
    const off = this.offsetOf(address);
    if (off + 4 <= this.pageSize) {
      const v = this.views[this.pageOf(address)];
      return v === undefined ? 0 : v.getUint32(off, true);
    }
    return this.readSlow(address, 4);
  }

  /** A u64 as a number: exact below 2^53, the nearest double above (use read32 twice for halves). */
  read64(address: number): number {
    this.check(address, 8);
    return this.read32(address) + this.read32(address + 4) * 0x1_0000_0000;
  }

  write8(address: number, value: number): void {
    this.check(address, 1);
    this.pageFor(address)[this.offsetOf(address)] = value;
  }

  write16(address: number, value: number): void {
    this.check(address, 2);
    const off = this.offsetOf(address);
    if (off + 2 <= this.pageSize) {
      const p = this.pageOf(address);
      if (this.views[p] === undefined) this.allocPage(p);
      this.views[p]!.setUint16(off, value, true);
    } else {
      this.writeSlow(address, 2, value);
    }
  }

  write32(address: number, value: number): void {
    this.check(address, 4);
    const off = this.offsetOf(address);
    if (off + 4 <= this.pageSize) {
      const p = this.pageOf(address);
      if (this.views[p] === undefined) this.allocPage(p);
      this.views[p]!.setUint32(off, value, true);
    } else {
      this.writeSlow(address, 4, value);
    }
  }

  /** A u64 from a safe non-negative integer (< 2^53); use write64Halves for any other value. */
  write64(address: number, value: number): void {
    const [lo, hi] = splitU64(value);
    this.write64Halves(address, lo, hi);
  }

  write64Halves(address: number, lo: number, hi: number): void {
    this.check(address, 8);
    this.write32(address, lo);
    this.write32(address + 4, hi);
  }

  // ---- byte ranges ----------------------------------------------------------------------------

  readBytes(address: number, length: number): Uint8Array {
    this.check(address, length);
    // Fast path (a DMA read): within one written page, one copy and no view of it.
    const off = this.offsetOf(address);
    if (off + length <= this.pageSize) {
      const p = this.pages[this.pageOf(address)];
      if (p !== undefined) return p.slice(off, off + length);
    }
    const out = new Uint8Array(length);
    this.readInto(address, out, 0, length);
    return out;
  }

  /** Copies [address, address + length) into `dst` at `dstOffset`. */
  readInto(address: number, dst: Uint8Array, dstOffset = 0, length = dst.length - dstOffset): void {
    this.check(address, length);
    if (length <= 16) {
      // Small reads (descriptors, indices): byte copies beat making a view to copy from.
      const off = this.offsetOf(address);
      if (off + length <= this.pageSize) {
        const p = this.pages[this.pageOf(address)];
        if (p === undefined) dst.fill(0, dstOffset, dstOffset + length);
        else for (let i = 0; i < length; i++) dst[dstOffset + i] = p[off + i]!;
        return;
      }
    }
    let a = address;
    let o = dstOffset;
    let left = length;
    while (left > 0) {
      const off = this.offsetOf(a);
      const n = Math.min(left, this.pageSize - off);
      const p = this.pages[this.pageOf(a)];
      if (p === undefined) dst.fill(0, o, o + n);
      else dst.set(p.subarray(off, off + n), o);
      a += n;
      o += n;
      left -= n;
    }
  }

  /**
   * The backing array that holds all of [address, address + length), or undefined when no
   * written page holds all of it (unwritten memory, or a range across pages). The range starts
   * at `pageOffset(address)` in it. For reading in place only (a DMA read sent straight from
   * RAM): a view of memory, not a copy, so valid until the next write.
   */
  pageHolding(address: number, length: number): Uint8Array | undefined {
    this.check(address, length);
    if (this.offsetOf(address) + length > this.pageSize) return undefined;
    return this.pages[this.pageOf(address)];
  }

  /** Where `address` lies in the array pageHolding returns. */
  pageOffset(address: number): number {
    return this.offsetOf(address);
  }

  writeBytes(address: number, src: Uint8Array, srcOffset = 0, length = src.length - srcOffset): void {
    this.check(address, length);
    if (srcOffset === 0 && length === src.length) {
      // Fast path (a DMA write's payload): the whole source into one page, without a view of it.
      const off = this.offsetOf(address);
      if (off + length <= this.pageSize) {
        this.pageFor(address).set(src, off);
        return;
      }
    }
    let a = address;
    let o = srcOffset;
    let left = length;
    while (left > 0) {
      const off = this.offsetOf(a);
      const n = Math.min(left, this.pageSize - off);
      this.pageFor(a).set(src.subarray(o, o + n), off);
      a += n;
      o += n;
      left -= n;
    }
  }

  fill(address: number, length: number, byte = 0): void {
    this.check(address, length);
    let a = address;
    let left = length;
    while (left > 0) {
      const off = this.offsetOf(a);
      const n = Math.min(left, this.pageSize - off);
      const p = this.pageOf(a);
      // Filling untouched memory with zero must not allocate it.
      if (byte !== 0 || this.pages[p] !== undefined) this.pageFor(a).fill(byte, off, off + n);
      a += n;
      left -= n;
    }
  }

  // ---- device writes and the CPU models' bookkeeping ----------------------------------------

  /** Number of device writes so far; each CPU's read horizon is a value of this counter. */
  get dmaWriteSeq(): number {
    return this.seq;
  }

  /**
   * A device (DMA) write landing in RAM: observers (weak CPU models) record the bytes it
   * overwrites first. Bounds-checked before anything changes.
   */
  dmaWrite(address: number, data: Uint8Array, dataOffset = 0, length = data.length - dataOffset): void {
    this.check(address, length);
    const seq = ++this.seq;
    const obs = this.observers;
    for (let i = 0; i < obs.length; i++) obs[i]!.beforeDeviceWrite(address, length, seq);
    this.writeBytes(address, data, dataOffset, length);
  }

  /**
   * Consecutive device writes covering [address, address + Σ lengths): write i is
   * src[offsets[i], offsets[i] + lengths[i]), each a dmaWrite of its own (observers see each).
   * Bounds-checked as one range before anything changes.
   */
  dmaWriteGather(address: number, src: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): void {
    let total = 0;
    for (let i = 0; i < count; i++) total += lengths[i]!;
    this.check(address, total);
    let a = address;
    if (this.observers.length > 0) {
      for (let i = 0; i < count; i++) {
        this.dmaWrite(a, src, offsets[i]!, lengths[i]!);
        a += lengths[i]!;
      }
      return;
    }
    // The pieces that fall in one page of the backing store go in one bulk copy.
    const pageSize = this.pageSize;
    for (let i = 0; i < count; ) {
      const off = this.offsetOf(a);
      let j = i;
      let n = 0;
      while (j < count && off + n + lengths[j]! <= pageSize) n += lengths[j++]!;
      if (j === i) {
        n = lengths[i]!; // a piece that crosses a page of the backing store
        this.writeBytes(a, src, offsets[i]!, n);
        j = i + 1;
      } else {
        this.gather(this.pageFor(a), off, src, i === 0 ? offsets : offsets.subarray(i), i === 0 ? lengths : lengths.subarray(i), j - i);
      }
      a += n;
      i = j;
    }
    this.seq += count;
  }

  /** Called by a CPU model when one of its stores became visible. */
  notifyCpuStore(address: number, length: number): void {
    const obs = this.observers;
    for (let i = 0; i < obs.length; i++) obs[i]!.afterCpuStore(address, length);
  }

  get hasObservers(): boolean {
    return this.observers.length > 0;
  }

  /** Registers an observer; returns the function that removes it. */
  addObserver(observer: RamWriteObserver): () => void {
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  // ---- physical page allocator --------------------------------------------------------------

  /** Allocates physical memory for rings and buffers; throws ERR_MEMORY_EXHAUSTED when full. */
  allocate(size: number, align = 4096): number {
    return this.allocator.allocate(size, align);
  }

  /** Frees what `allocate` returned; returns its size. */
  free(address: number): number {
    return this.allocator.free(address);
  }

  get bytesAllocated(): number {
    return this.allocator.bytesAllocated;
  }

  // ---- internals ------------------------------------------------------------------------------

  private pageOf(address: number): number {
    return address <= 0xffff_ffff ? address >>> this.pageShift : Math.floor(address / this.pageSize);
  }

  private offsetOf(address: number): number {
    return address <= 0xffff_ffff ? address & this.pageMask : address % this.pageSize;
  }

  private pageFor(address: number): Uint8Array {
    const p = this.pageOf(address);
    return this.pages[p] ?? this.allocPage(p);
  }

  private allocPage(p: number): Uint8Array {
    const page = new Uint8Array(this.pageSize);
    this.pages[p] = page;
    this.views[p] = new DataView(page.buffer);
    this.allocatedPages++;
    return page;
  }

  /** Little-endian read of `n` ≤ 4 bytes that cross a page boundary. */
  private readSlow(address: number, n: number): number {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) {
      const a = address + i;
      const p = this.pages[this.pageOf(a)];
      v = v * 256 + (p === undefined ? 0 : p[this.offsetOf(a)]!);
    }
    return v;
  }

  private writeSlow(address: number, n: number, value: number): void {
    let v = value >>> 0;
    for (let i = 0; i < n; i++) {
      const a = address + i;
      this.pageFor(a)[this.offsetOf(a)] = v & 0xff;
      v >>>= 8;
    }
  }
}

/** Splits a safe non-negative integer into u32 halves; throws ERR_MEMORY_RANGE otherwise. */
export function splitU64(value: number): [lo: number, hi: number] {
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    throw new TlpwireError('ERR_MEMORY_RANGE', `a u64 given as a number must be a safe non-negative integer, got ${value}`);
  }
  return [value >>> 0, Math.floor(value / 0x1_0000_0000) >>> 0];
}
