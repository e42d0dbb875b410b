import { TlpwireError } from '../core/index.js';

/**
 * First-fit allocator of address ranges, for physical pages (HostRam) and IOVA space (Iommu).
 * Not a hot path: drivers allocate rings and buffers at setup. The free list is kept sorted and
 * coalesced, so fragmentation stays visible and freeing is exact.
 */
export class RangeAllocator {
  /** Free ranges [starts[i], ends[i]), sorted and non-adjacent. */
  private starts: number[] = [];
  private ends: number[] = [];
  private readonly allocated = new Map<number, number>();
  private used = 0;

  constructor(
    readonly base: number,
    readonly limit: number,
    private readonly what = 'memory',
  ) {
    if (!(Number.isSafeInteger(base) && Number.isSafeInteger(limit) && base >= 0 && limit >= base)) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `invalid ${what} range [${base}, ${limit})`);
    }
    if (limit > base) {
      this.starts.push(base);
      this.ends.push(limit);
    }
  }

  /** Bytes currently allocated. */
  get bytesAllocated(): number {
    return this.used;
  }

  /** Allocates `size` bytes aligned to `align` (a power of two); throws ERR_MEMORY_EXHAUSTED. */
  allocate(size: number, align = 1): number {
    if (!(Number.isSafeInteger(size) && size > 0)) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `${this.what}: allocation size must be a positive integer, got ${size}`);
    }
    if (!isPow2(align)) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `${this.what}: alignment must be a power of two, got ${align}`);
    }
    for (let i = 0; i < this.starts.length; i++) {
      const start = this.starts[i]!;
      const end = this.ends[i]!;
      const at = Math.ceil(start / align) * align;
      if (at + size > end) continue;
      // Carve [at, at + size) out of [start, end), keeping what is left on either side.
      const tail = at + size;
      if (at > start && tail < end) {
        this.ends[i] = at;
        this.starts.splice(i + 1, 0, tail);
        this.ends.splice(i + 1, 0, end);
      } else if (at > start) {
        this.ends[i] = at;
      } else if (tail < end) {
        this.starts[i] = tail;
      } else {
        this.starts.splice(i, 1);
        this.ends.splice(i, 1);
      }
      this.allocated.set(at, size);
      this.used += size;
      return at;
    }
    throw new TlpwireError(
      'ERR_MEMORY_EXHAUSTED',
      `${this.what}: no free range of ${size} bytes aligned to ${align} (${this.used} of ${this.limit - this.base} bytes in use)`,
    );
  }

  /** Frees an allocation by its start address; returns its size. */
  free(address: number): number {
    const size = this.allocated.get(address);
    if (size === undefined) {
      throw new TlpwireError('ERR_MEMORY_RANGE', `${this.what}: 0x${address.toString(16)} is not an allocation`, {
        offset: address,
      });
    }
    this.allocated.delete(address);
    this.used -= size;
    const end = address + size;
    // Insertion point: first free range starting after the freed one.
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! < address) lo = mid + 1;
      else hi = mid;
    }
    const joinPrev = lo > 0 && this.ends[lo - 1] === address;
    const joinNext = lo < this.starts.length && this.starts[lo] === end;
    if (joinPrev && joinNext) {
      this.ends[lo - 1] = this.ends[lo]!;
      this.starts.splice(lo, 1);
      this.ends.splice(lo, 1);
    } else if (joinPrev) {
      this.ends[lo - 1] = end;
    } else if (joinNext) {
      this.starts[lo] = address;
    } else {
      this.starts.splice(lo, 0, address);
      this.ends.splice(lo, 0, end);
    }
    return size;
  }

  /** The size of the allocation starting at `address`, if there is one. */
  sizeOf(address: number): number | undefined {
    return this.allocated.get(address);
  }

  /** Free ranges (for tests and reports). */
  freeRanges(): { start: number; end: number }[] {
    return this.starts.map((start, i) => ({ start, end: this.ends[i]! }));
  }
}

function isPow2(n: number): boolean {
  // Alignments above 2^31 cannot use bit tests.
  if (!Number.isSafeInteger(n) || n <= 0) return false;
  while (n > 1) {
    if (n % 2 !== 0) return false;
    n /= 2;
  }
  return true;
}
