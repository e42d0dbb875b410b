/**
 * MSI-X, §7.7.2: the capability in config space and the table and PBA in a memory BAR.
 *
 *   config:  +0x02 Message Control  Table Size (N−1) RO | Function Mask RW | MSI-X Enable RW
 *            +0x04 Table Offset | Table BIR                                RO
 *            +0x08 PBA Offset   | PBA BIR                                  RO
 *
 *   BAR:     table, 16 bytes per vector:  +0 addr lo  +4 addr hi  +8 data  +12 vector control
 *            (bit 0 = Mask, 1 after reset; other bits reserved)
 *            PBA, one bit per vector, in QWs; read-only.
 *
 * `trigger(v)` gives the message to send when MSI-X is enabled, the function is not masked,
 * the vector is not masked and the function may master the bus; otherwise it sets v's Pending
 * bit, and the message is released (through `onDeliver`) as soon as all of that becomes true:
 * after a write to Message Control, to the vector's control word, or when Bus Master Enable is set.
 */
import { TlpwireError } from '../core/index.js';
import {
  PCI_CAP_ID,
  PCI_MSIX,
  PCI_MSIX_BIR,
  PCI_MSIX_ENTRY,
  PCI_MSIX_FLAGS,
  PCI_MSIX_MAX_VECTORS,
  PCI_NUM_BARS,
} from '../spec/index.js';
import type { BarRegion } from './bar-region.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';
import type { InterruptMessage } from './msi-capability.js';

export interface MsixOptions {
  /** Table Size: 1..2048 vectors. */
  vectors: number;
  /** BAR (BIR) and QW-aligned offset of the table. */
  tableBar: number;
  tableOffset: number;
  /** BAR (BIR) and QW-aligned offset of the Pending Bit Array. */
  pbaBar: number;
  pbaOffset: number;
}

/** Bytes of the table for `vectors` entries. */
export function msixTableBytes(vectors: number): number {
  return vectors * PCI_MSIX_ENTRY.SIZE;
}

/** Bytes of the PBA for `vectors` entries (whole QWs). */
export function msixPbaBytes(vectors: number): number {
  return Math.ceil(vectors / 64) * 8;
}

export class MsixCapability {
  readonly offset: number;
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;

  constructor(
    private readonly space: ConfigSpace,
    caps: CapabilityList,
    options: MsixOptions,
    onControlWrite: () => void,
  ) {
    const { vectors, tableBar, tableOffset, pbaBar, pbaOffset } = options;
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > PCI_MSIX_MAX_VECTORS) {
      throw new TlpwireError('ERR_CONFIG', `MSI-X Table Size must be 1..2048, not ${vectors}`);
    }
    for (const [name, bar, at] of [
      ['table', tableBar, tableOffset],
      ['PBA', pbaBar, pbaOffset],
    ] as const) {
      if (!Number.isInteger(bar) || bar < 0 || bar >= PCI_NUM_BARS) {
        throw new TlpwireError('ERR_CONFIG', `MSI-X ${name} BIR ${bar} is not a BAR`);
      }
      if (!Number.isInteger(at) || at < 0 || (at & 7) !== 0 || at > 0xfffffff8) {
        throw new TlpwireError('ERR_CONFIG', `MSI-X ${name} offset ${at} must be QW-aligned`);
      }
    }
    this.vectors = vectors;
    this.tableBar = tableBar;
    this.tableOffset = tableOffset;
    this.pbaBar = pbaBar;
    this.pbaOffset = pbaOffset;
    const off = caps.add(PCI_CAP_ID.MSIX, PCI_MSIX.SIZEOF);
    this.offset = off;
    space.define(off + PCI_MSIX.FLAGS, 2, vectors - 1, { rw: PCI_MSIX_FLAGS.MASKALL | PCI_MSIX_FLAGS.ENABLE });
    space.define(off + PCI_MSIX.TABLE, 4, (tableOffset | tableBar) >>> 0);
    space.define(off + PCI_MSIX.PBA, 4, (pbaOffset | pbaBar) >>> 0);
    space.onWrite((off + PCI_MSIX.FLAGS) >> 2, onControlWrite);
  }

  private get flags(): number {
    return this.space.u16(this.offset + PCI_MSIX.FLAGS);
  }

  get enabled(): boolean {
    return (this.flags & PCI_MSIX_FLAGS.ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.flags & PCI_MSIX_FLAGS.MASKALL) !== 0;
  }
}

/**
 * The BAR-side memory of MSI-X: the table and the PBA. `tableRegion` and `pbaRegion` are the
 * windows a BAR maps at the capability's offsets.
 */
export class MsixTable {
  readonly vectors: number;
  private readonly table: Uint8Array;
  private readonly pba: Uint8Array;
  /** Whether the function may send memory requests now (Bus Master Enable). */
  canSend: () => boolean = () => true;
  /** Receives messages released from pending state; the caller issues their MWr. */
  onDeliver: (msg: InterruptMessage) => void = () => {};

  readonly tableRegion: BarRegion;
  readonly pbaRegion: BarRegion;

  constructor(private readonly cap: MsixCapability) {
    this.vectors = cap.vectors;
    this.table = new Uint8Array(msixTableBytes(cap.vectors));
    this.pba = new Uint8Array(msixPbaBytes(cap.vectors));
    this.reset();
    this.tableRegion = {
      read: (offset, length) => this.readTable(offset, length),
      write: (offset, data) => this.writeTable(offset, data),
    };
    this.pbaRegion = {
      read: (offset, length) => this.readPba(offset, length),
      write: () => {
        // §7.7.2: the PBA is read-only; writes are ignored.
      },
    };
  }

  /** Power-on state: every entry zero with its Mask bit set, nothing pending. */
  reset(): void {
    this.table.fill(0);
    for (let v = 0; v < this.vectors; v++) {
      this.table[v * PCI_MSIX_ENTRY.SIZE + PCI_MSIX_ENTRY.VECTOR_CTRL] = PCI_MSIX_ENTRY.CTRL_MASKBIT;
    }
    this.pba.fill(0);
  }

  readTable(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.table[offset + i] ?? 0;
    return out;
  }

  writeTable(offset: number, data: Uint8Array): void {
    let touchedControl = false;
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at < 0 || at >= this.table.length) continue;
      const field = at % PCI_MSIX_ENTRY.SIZE;
      const v = data[i] ?? 0;
      if (field === PCI_MSIX_ENTRY.VECTOR_CTRL) {
        // Only the Mask bit is implemented; the rest of Vector Control is reserved.
        this.table[at] = v & PCI_MSIX_ENTRY.CTRL_MASKBIT;
        touchedControl = true;
      } else if (field > PCI_MSIX_ENTRY.VECTOR_CTRL) {
        // Reserved bytes of Vector Control (no TPH steering tags).
      } else {
        this.table[at] = v;
      }
    }
    if (touchedControl) this.deliverPending();
  }

  readPba(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.pba[offset + i] ?? 0;
    return out;
  }

  isMasked(vector: number): boolean {
    return ((this.table[vector * PCI_MSIX_ENTRY.SIZE + PCI_MSIX_ENTRY.VECTOR_CTRL] ?? 0) & 1) === 1;
  }

  isPending(vector: number): boolean {
    return (((this.pba[vector >> 3] ?? 0) >> (vector & 7)) & 1) === 1;
  }

  /** The message of an entry as software programmed it. */
  entry(vector: number): InterruptMessage {
    this.checkVector(vector);
    const base = vector * PCI_MSIX_ENTRY.SIZE;
    const lo = this.le32(base + PCI_MSIX_ENTRY.LOWER_ADDR) & 0xfffffffc;
    const hi = this.le32(base + PCI_MSIX_ENTRY.UPPER_ADDR);
    return { vector, address: hi * 0x1_0000_0000 + (lo >>> 0), data: this.le32(base + PCI_MSIX_ENTRY.DATA) };
  }

  /**
   * Signals `vector`: returns the message to send now, or null after setting its Pending bit
   * (MSI-X disabled, function or vector masked, or Bus Master Enable clear).
   */
  trigger(vector: number): InterruptMessage | null {
    this.checkVector(vector);
    if (this.deliverable(vector)) return this.entry(vector);
    this.pba[vector >> 3] = (this.pba[vector >> 3] ?? 0) | (1 << (vector & 7));
    return null;
  }

  /** The function satisfied the event some other way: drop a pending message (§7.7.2). */
  clearPending(vector: number): void {
    this.checkVector(vector);
    this.pba[vector >> 3] = (this.pba[vector >> 3] ?? 0) & ~(1 << (vector & 7));
  }

  /** Sends every pending vector that is no longer blocked, lowest first. */
  deliverPending(): void {
    if (!this.cap.enabled || this.cap.functionMasked || !this.canSend()) return;
    for (let byte = 0; byte < this.pba.length; byte++) {
      if (this.pba[byte] === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const v = byte * 8 + bit;
        if (v >= this.vectors || !this.isPending(v) || this.isMasked(v)) continue;
        this.clearPending(v);
        this.onDeliver(this.entry(v));
      }
    }
  }

  private deliverable(vector: number): boolean {
    return this.cap.enabled && !this.cap.functionMasked && !this.isMasked(vector) && this.canSend();
  }

  private checkVector(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.vectors) {
      throw new TlpwireError('ERR_CONFIG', `MSI-X vector ${vector} is outside 0..${this.vectors - 1}`);
    }
  }

  private le32(at: number): number {
    const t = this.table;
    return ((t[at] ?? 0) | ((t[at + 1] ?? 0) << 8) | ((t[at + 2] ?? 0) << 16) | ((t[at + 3] ?? 0) << 24)) >>> 0;
  }
}
