import { Counters, silentLogger, type Logger } from '../core/index.js';
import type { Iommu } from '../memory/index.js';
import type { MemWriteRun } from '../tlp/index.js';
import { forEachEnabledRun, type ByteSpan, type CompleterTarget } from '../transaction/index.js';

const SLAB_BYTES = 256 * 1024;
/** Larger reads (beyond any MRRS) get their own buffer. */
const MAX_SLAB_READ = 4096;

/**
 * Host RAM as the completer sees it: every device access is translated by the IOMMU for the
 * requesting function. An access outside the mappings is not claimed, so the completer answers
 * a read with UR and drops a write; the fault is logged and counted here and reads or writes
 * nothing.
 */
export class HostMemoryTarget implements CompleterTarget {
  private faultsLogged = 0;
  /**
   * Read payloads are carved from a slab instead of allocated one by one: a small typed array
   * costs about as much to allocate as the rest of a read's completion path. Carving only moves
   * forward (a full slab is replaced, never rewritten), so a returned view stays valid for as long
   * as its holder keeps it.
   */
  private slab = new Uint8Array(0);
  private slabPos = 0;

  constructor(
    private readonly iommu: Iommu,
    private readonly counters: Counters = new Counters(),
    private readonly log: Logger = silentLogger,
  ) {}

  claims(address: number, length: number, requesterId: number): boolean {
    // Claimed when mapped for either direction; a read of a write-only mapping (or the reverse)
    // then faults in read/write, which the IOMMU records.
    const len = Math.max(1, length);
    let phys = this.iommu.translate(requesterId, address, len, false);
    if (typeof phys !== 'number') phys = this.iommu.translate(requesterId, address, len, true);
    if (typeof phys !== 'number') {
      this.counters.add('iommu.fault');
      if (this.faultsLogged++ < 10) {
        this.log.warn({ requesterId, address: `0x${address.toString(16)}`, length, reason: phys.reason }, 'DMA outside the IOMMU mappings refused');
      }
      return false;
    }
    return true;
  }

  read(address: number, length: number, requesterId: number): Uint8Array {
    if (length > MAX_SLAB_READ) {
      const out = new Uint8Array(length);
      this.iommu.dmaRead(requesterId, address, out, 0, length);
      return out;
    }
    if (this.slabPos + length > this.slab.length) {
      const b = Buffer.allocUnsafeSlow(SLAB_BYTES); // every byte handed out is written first
      this.slab = new Uint8Array(b.buffer, b.byteOffset, SLAB_BYTES);
      this.slabPos = 0;
    }
    const at = this.slabPos;
    this.iommu.dmaRead(requesterId, address, this.slab, at, length);
    // 8-byte steps keep every payload aligned, like an allocation.
    this.slabPos = at + ((length + 7) & ~7);
    return this.slab.subarray(at, at + length);
  }

  /** read() in place (the completer's fast path): the RAM page holding it, through the IOMMU. */
  readSpan(address: number, length: number, requesterId: number, out: ByteSpan): boolean {
    const page = this.iommu.dmaReadSpan(requesterId, address, length);
    if (page === undefined) return false;
    out.bytes = page;
    out.offset = this.iommu.spanOffset;
    return true;
  }

  /** write() from the link's receive buffer: whole DWs go to RAM with no view made of them. */
  writeFrom(address: number, src: Uint8Array, srcOffset: number, length: number, firstBe: number, lastBe: number, requesterId: number): void {
    if (firstBe === 0xf && (lastBe === 0xf || (lastBe === 0 && length === 4))) {
      this.iommu.dmaWrite(requesterId, address, src, srcOffset, length);
      return;
    }
    this.write(address, src.subarray(srcOffset, srcOffset + length), firstBe, lastBe, requesterId);
  }

  /** A run of writes, when the IOMMU lets the requester write all of it (checked once, recording nothing otherwise). */
  writeRun(run: MemWriteRun): boolean {
    return this.iommu.tryDmaWriteGather(run.requesterId, run.address, run.bytes, run.dataOffsets, run.dataLengths, run.count);
  }

  write(address: number, data: Uint8Array, firstBe: number, lastBe: number, requesterId: number): void {
    if (firstBe === 0xf && (lastBe === 0xf || (lastBe === 0 && data.length === 4))) {
      this.iommu.dmaWrite(requesterId, address, data, 0, data.length);
      return;
    }
    forEachEnabledRun(address, data, firstBe, lastBe, (a, bytes) => this.iommu.dmaWrite(requesterId, a, bytes, 0, bytes.length));
  }
}
