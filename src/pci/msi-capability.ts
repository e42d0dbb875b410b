/**
 * The MSI Capability, §7.7.1 (64-bit address form by default, optional per-vector masking).
 *
 *   +0x02 Message Control  Enable RW, Multiple Message Capable RO, Multiple Message Enable RW,
 *                          64-bit RO, Per-Vector Masking RO
 *   +0x04 Message Address  bits 31:2 RW
 *   +0x08 Message Upper Address (64-bit form) RW
 *   +0x0c Message Data     bits 15:0 RW
 *   +0x10 Mask Bits        (per-vector masking) RW
 *   +0x14 Pending Bits     (per-vector masking) RO, set by the function
 *
 * With N = 2^MME vectors enabled, vector v is signalled by writing Message Data with its low
 * log2(N) bits replaced by v (§6.1.4.2).
 */
import { TlpwireError } from '../core/index.js';
import { PCI_CAP_ID, PCI_MSI, PCI_MSI_FLAGS, PCI_MSI_MAX_VECTORS } from '../spec/index.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';

export interface MsiOptions {
  /** Multiple Message Capable: 1, 2, 4, 8, 16 or 32. */
  vectors: number;
  /** 64-bit Address Capable. Default true. */
  address64?: boolean;
  /** Per-Vector Masking Capable. Default false. */
  perVectorMasking?: boolean;
}

/** An interrupt message: the caller issues a MWr of `data` (as a 32-bit LE DW) to `address`. */
export interface InterruptMessage {
  vector: number;
  address: number;
  data: number;
}

export class MsiCapability {
  readonly offset: number;
  readonly vectorsCapable: number;
  readonly address64: boolean;
  readonly perVectorMasking: boolean;
  private readonly dataOff: number;
  private readonly maskOff: number;
  private readonly pendingOff: number;
  /** Whether the function may send memory requests now (Bus Master Enable). */
  canSend: () => boolean = () => true;

  constructor(
    private readonly space: ConfigSpace,
    caps: CapabilityList,
    options: MsiOptions,
    /** Called when unmasking a pending vector releases its message. */
    private readonly onDeliver: (msg: InterruptMessage) => void,
  ) {
    const n = options.vectors;
    const log2 = Math.log2(n);
    if (!Number.isInteger(log2) || n < 1 || n > PCI_MSI_MAX_VECTORS) {
      throw new TlpwireError('ERR_CONFIG', `MSI vectors must be a power of two from 1 to 32, not ${n}`);
    }
    this.vectorsCapable = n;
    this.address64 = options.address64 ?? true;
    this.perVectorMasking = options.perVectorMasking ?? false;
    const size = this.address64
      ? this.perVectorMasking
        ? PCI_MSI.SIZEOF_64_PVM
        : PCI_MSI.SIZEOF_64
      : this.perVectorMasking
        ? PCI_MSI.SIZEOF_32_PVM
        : PCI_MSI.SIZEOF_32;
    const off = caps.add(PCI_CAP_ID.MSI, size);
    this.offset = off;
    this.dataOff = off + (this.address64 ? PCI_MSI.DATA_64 : PCI_MSI.DATA_32);
    this.maskOff = off + (this.address64 ? PCI_MSI.MASK_64 : PCI_MSI.MASK_32);
    this.pendingOff = off + (this.address64 ? PCI_MSI.PENDING_64 : PCI_MSI.PENDING_32);
    space.define(
      off + PCI_MSI.FLAGS,
      2,
      (log2 << PCI_MSI_FLAGS.QMASK_SHIFT) |
        (this.address64 ? PCI_MSI_FLAGS.ADDR_64 : 0) |
        (this.perVectorMasking ? PCI_MSI_FLAGS.MASK_BIT : 0),
      { rw: PCI_MSI_FLAGS.ENABLE | PCI_MSI_FLAGS.QSIZE },
    );
    space.define(off + PCI_MSI.ADDRESS_LO, 4, 0, { rw: 0xfffffffc });
    if (this.address64) space.define(off + PCI_MSI.ADDRESS_HI, 4, 0, { rw: 0xffffffff });
    space.define(this.dataOff, 2, 0, { rw: 0xffff });
    if (this.perVectorMasking) {
      const all = n === 32 ? 0xffffffff : (1 << n) - 1;
      space.define(this.maskOff, 4, 0, { rw: all });
      space.define(this.pendingOff, 4, 0);
      space.onWrite(this.maskOff >> 2, () => this.deliverPending());
    }
    space.onWrite((off + PCI_MSI.FLAGS) >> 2, () => this.deliverPending());
  }

  private get flags(): number {
    return this.space.u16(this.offset + PCI_MSI.FLAGS);
  }

  get enabled(): boolean {
    return (this.flags & PCI_MSI_FLAGS.ENABLE) !== 0;
  }

  /** Vectors software enabled (2^MME, never more than capable). */
  get vectorsEnabled(): number {
    const mme = (this.flags & PCI_MSI_FLAGS.QSIZE) >> PCI_MSI_FLAGS.QSIZE_SHIFT;
    return Math.min(1 << mme, this.vectorsCapable);
  }

  get address(): number {
    const lo = this.space.u32(this.offset + PCI_MSI.ADDRESS_LO) & 0xfffffffc;
    const hi = this.address64 ? this.space.u32(this.offset + PCI_MSI.ADDRESS_HI) : 0;
    return hi * 0x1_0000_0000 + (lo >>> 0);
  }

  get data(): number {
    return this.space.u16(this.dataOff);
  }

  isMasked(vector: number): boolean {
    return this.perVectorMasking && ((this.space.u32(this.maskOff) >>> vector) & 1) === 1;
  }

  isPending(vector: number): boolean {
    return this.perVectorMasking && ((this.space.u32(this.pendingOff) >>> vector) & 1) === 1;
  }

  /**
   * The message for `vector` (0-based), or null: MSI disabled, vector beyond those enabled, masked
   * or Bus Master Enable clear. With per-vector masking a held vector's Pending bit is set and
   * `deliverPending` releases it through `onDeliver`; without it the message is dropped.
   */
  trigger(vector: number): InterruptMessage | null {
    if (!this.enabled || !Number.isInteger(vector) || vector < 0 || vector >= this.vectorsEnabled) return null;
    if (this.isMasked(vector) || !this.canSend()) {
      if (this.perVectorMasking) this.space.hwSet(this.pendingOff, 4, (1 << vector) >>> 0);
      return null;
    }
    return this.messageFor(vector);
  }

  /** Releases pending vectors that can now be sent (after a config write or BME being set). */
  deliverPending(): void {
    if (!this.perVectorMasking || !this.enabled || !this.canSend()) return;
    const pending = this.space.u32(this.pendingOff);
    if (pending === 0) return;
    for (let v = 0; v < this.vectorsEnabled; v++) {
      if (((pending >>> v) & 1) === 0 || this.isMasked(v)) continue;
      this.space.hwClear(this.pendingOff, 4, (1 << v) >>> 0);
      this.onDeliver(this.messageFor(v));
    }
  }

  private messageFor(vector: number): InterruptMessage {
    const n = this.vectorsEnabled;
    return { vector, address: this.address, data: ((this.data & ~(n - 1)) | vector) & 0xffff };
  }
}
