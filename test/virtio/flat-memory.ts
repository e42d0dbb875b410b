import type { CpuBarrier, DeviceBarrier, DeviceMemory, DriverMemory } from '../../src/virtio/index.js';

/** Coherent, sequentially consistent memory shared by a test driver and device (no model). */
export class FlatMemory implements DriverMemory {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  readonly barriers: (CpuBarrier | DeviceBarrier)[] = [];

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }

  read16(a: number): number {
    return this.dv.getUint16(a, true);
  }
  read32(a: number): number {
    return this.dv.getUint32(a, true);
  }
  write16(a: number, v: number): void {
    this.dv.setUint16(a, v, true);
  }
  write32(a: number, v: number): void {
    this.dv.setUint32(a, v, true);
  }
  write64(a: number, v: number): void {
    this.dv.setUint32(a, v >>> 0, true);
    this.dv.setUint32(a + 4, Math.floor(v / 0x1_0000_0000), true);
  }
  barrier(kind: CpuBarrier): void {
    this.barriers.push(kind);
  }

  /**
   * The device side: async reads that copy, like a DMA read completion. With `complete`, each
   * read is performed when `complete` calls back (a test passes a clock timer with a random
   * delay, so reads complete late and out of order, interleaved with the driver).
   */
  deviceView(options: { complete?: (fn: () => void) => void } = {}): DeviceMemory {
    const complete = options.complete;
    const readNow = (addr: number, len: number): Uint8Array => {
      if (addr < 0 || addr + len > this.bytes.length) throw new RangeError(`DMA read outside memory: 0x${addr.toString(16)}`);
      return this.bytes.slice(addr, addr + len);
    };
    return {
      read: async (addr, len) => {
        if (complete === undefined) return readNow(addr, len);
        return new Promise<Uint8Array>((resolve, reject) => {
          complete(() => {
            try {
              resolve(readNow(addr, len));
            } catch (e) {
              reject(e);
            }
          });
        });
      },
      write: (addr, data) => {
        this.bytes.set(data, addr);
      },
      barrier: (kind) => {
        this.barriers.push(kind);
      },
    };
  }
}
