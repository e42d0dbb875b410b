import { Counters, silentLogger, type Logger } from '../core/index.js';
import type { Iommu } from '../memory/index.js';
import { forEachEnabledRun, type CompleterTarget } from '../transaction/index.js';

/**
 * Host RAM as the completer sees it: every device access is translated by the IOMMU for the
 * requesting function. An access outside the mappings is not claimed, so the completer answers
 * a read with UR and drops a write; the fault is logged and counted here and reads or writes
 * nothing.
 */
export class HostMemoryTarget implements CompleterTarget {
  private faultsLogged = 0;

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
    const out = new Uint8Array(length);
    this.iommu.dmaRead(requesterId, address, out, 0, length);
    return out;
  }

  write(address: number, data: Uint8Array, firstBe: number, lastBe: number, requesterId: number): void {
    if (firstBe === 0xf && (lastBe === 0xf || (lastBe === 0 && data.length === 4))) {
      this.iommu.dmaWrite(requesterId, address, data, 0, data.length);
      return;
    }
    forEachEnabledRun(address, data, firstBe, lastBe, (a, bytes) => this.iommu.dmaWrite(requesterId, a, bytes, 0, bytes.length));
  }
}
