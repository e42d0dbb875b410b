/**
 * Types shared by the memory layer's models and the layers that wire them (transaction, virtio,
 * roles). docs/MEMORY-MODEL.md explains what each model allows.
 */

/**
 * `tso`: x86-like (and the hypervisor case): stores become visible in program order, loads are
 * performed in order. `weak`: Arm/POWER-like, as a real PCI device sees a host: stores between
 * two I/O barriers become visible in any order, loads of device-written memory may be stale.
 */
export type MemoryPlatform = 'tso' | 'weak';

export const MEMORY_PLATFORMS: readonly MemoryPlatform[] = ['tso', 'weak'];

/** Linux's barrier primitives, as the host CPU model implements them. */
export type CpuBarrierKind =
  | 'smp_wmb'
  | 'smp_rmb'
  | 'smp_mb'
  | 'virt_wmb'
  | 'virt_rmb'
  | 'virt_mb'
  | 'dma_wmb'
  | 'dma_rmb'
  | 'wmb'
  | 'rmb'
  | 'mb';

export const CPU_BARRIER_KINDS: readonly CpuBarrierKind[] = [
  'smp_wmb',
  'smp_rmb',
  'smp_mb',
  'virt_wmb',
  'virt_rmb',
  'virt_mb',
  'dma_wmb',
  'dma_rmb',
  'wmb',
  'rmb',
  'mb',
];

/**
 * Barriers of the device's DMA engine. `rmb`/`wmb`/`mb` are the engine's own ordering points
 * (a strict device). `virt_*` are the SMP barriers of a device built from a CPU (vhost's
 * `virtio_*` with weak barriers): a full barrier on a `tso` device (x86's locked op drains its
 * store buffer), nothing on a `weak` one.
 */
export type DeviceBarrierKind = 'rmb' | 'wmb' | 'mb' | 'virt_rmb' | 'virt_wmb' | 'virt_mb';

export const DEVICE_BARRIER_KINDS: readonly DeviceBarrierKind[] = ['rmb', 'wmb', 'mb', 'virt_rmb', 'virt_wmb', 'virt_mb'];

export interface DmaWriteOptions {
  /** Set the Relaxed Ordering attribute: the fabric may let this write pass earlier posted writes. */
  relaxedOrdering?: boolean;
  /**
   * Permission not to copy `data` (a DMA engine's buffer): the caller leaves it unchanged until
   * the promise `write` returns settles. A port may copy anyway (one that returns no promise must).
   */
  zeroCopy?: boolean;
}

/**
 * What the device engine model sits on: the device's DMA as the transaction layer carries it.
 * Calls must enter the fabric in call order (a port that returns a promise from `write` must
 * still have queued the write when it returns), because that order is what PCIe ordering
 * preserves. `read` resolves with a buffer the caller may keep, or rejects (UR/CA, timeout).
 */
export interface DmaPort {
  read(address: number, length: number): Promise<Uint8Array>;
  /**
   * Optional `read` into the caller's own buffer (a DMA engine's buffers, reused read after
   * read): reads `dest.length` bytes into `dest` and resolves to it. Nothing the size of the data
   * is allocated per read. `dest` must not be used until the promise settles; after a failed read
   * its contents are unspecified.
   */
  readInto?(address: number, dest: Uint8Array): Promise<Uint8Array>;
  write(address: number, data: Uint8Array, opts?: DmaWriteOptions): void | Promise<void>;
  /**
   * Optional callback form of `read` (a simulator fabric's fast path: no promise per read).
   * `done(data)` or `done(undefined, err)`, called later from the clock's event loop, never
   * from inside this call.
   */
  readCb?(address: number, length: number, done: DmaReadCallback): void;
}

/** Completion of a callback read: the data, or (data undefined) the error. */
export type DmaReadCallback = (data: Uint8Array | undefined, err: unknown) => void;

export type MmioSize = 1 | 2 | 4 | 8;

/**
 * Where the host CPU's MMIO goes (the root complex provides it). `relaxed` says whether the CPU
 * used a relaxed accessor; the CPU model has already done the ordering, it is for traces.
 * `write`/`read` are the other widths (virtio's common configuration has 8- and 16-bit fields);
 * a port without them supports 32-bit accesses only.
 */
export interface MmioPort {
  write32(address: number, value: number, relaxed: boolean): void;
  read32(address: number): Promise<number>;
  write?(address: number, size: MmioSize, value: number, relaxed: boolean): void;
  read?(address: number, size: MmioSize): Promise<number>;
}
