/**
 * The Advanced Error Reporting Extended Capability of an endpoint, §7.8.4.
 *
 *   +0x04 Uncorrectable Error Status     RW1CS
 *   +0x08 Uncorrectable Error Mask       RWS
 *   +0x0c Uncorrectable Error Severity   RWS   (default 0x00462030)
 *   +0x10 Correctable Error Status       RW1CS
 *   +0x14 Correctable Error Mask         RWS   (default: Advisory Non-Fatal masked)
 *   +0x18 Capabilities and Control       First Error Pointer ROS; no ECRC, no multiple headers
 *   +0x1c Header Log (4 DWs)             ROS   DW i = header bytes 4i..4i+3, byte 4i in bits 31:24
 *
 * All of it is sticky: a Function Level Reset does not clear it (§6.6.2).
 * Recording follows §6.2.4.2/§6.2.5: a masked uncorrectable error only sets its status bit; an
 * unmasked one also captures the First Error Pointer and the header, unless an earlier error still
 * holds them (its status bit, which the pointer names, is still set).
 */
import {
  PCI_ERR,
  PCI_ERR_CAP,
  PCI_ERR_COR,
  PCI_ERR_COR_MASK_DEFAULT,
  PCI_ERR_UNC,
  PCI_ERR_UNC_SEVER_DEFAULT,
  PCI_EXT_CAP_ID,
} from '../spec/index.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';

const ALL_UNC = Object.values(PCI_ERR_UNC).reduce((a, b) => a | b, 0) >>> 0;
const ALL_COR = Object.values(PCI_ERR_COR).reduce((a, b) => a | b, 0) >>> 0;
const STICKY = 0xffffffff;

export class AerCapability {
  readonly offset: number;

  constructor(
    private readonly space: ConfigSpace,
    caps: CapabilityList,
  ) {
    const off = caps.addExtended(PCI_EXT_CAP_ID.AER, PCI_ERR.VERSION, PCI_ERR.SIZEOF_ENDPOINT);
    this.offset = off;
    space.define(off + PCI_ERR.UNCOR_STATUS, 4, 0, { w1c: ALL_UNC, preserveOnFlr: STICKY });
    space.define(off + PCI_ERR.UNCOR_MASK, 4, 0, { rw: ALL_UNC, preserveOnFlr: STICKY });
    space.define(off + PCI_ERR.UNCOR_SEVER, 4, PCI_ERR_UNC_SEVER_DEFAULT, { rw: ALL_UNC, preserveOnFlr: STICKY });
    space.define(off + PCI_ERR.COR_STATUS, 4, 0, { w1c: ALL_COR, preserveOnFlr: STICKY });
    space.define(off + PCI_ERR.COR_MASK, 4, PCI_ERR_COR_MASK_DEFAULT, { rw: ALL_COR, preserveOnFlr: STICKY });
    space.define(off + PCI_ERR.CAP, 4, 0, { preserveOnFlr: STICKY });
    for (let i = 0; i < 4; i++) space.define(off + PCI_ERR.HEADER_LOG + 4 * i, 4, 0, { preserveOnFlr: STICKY });
    // Root Error Command/Status and Error Source ID exist only in root ports, and we send no TLP prefixes: these read 0.
    for (let at = PCI_ERR.ROOT_COMMAND; at < PCI_ERR.SIZEOF_ENDPOINT; at += 4) space.define(off + at, 4, 0);
  }

  get uncorrectableStatus(): number {
    return this.space.u32(this.offset + PCI_ERR.UNCOR_STATUS);
  }

  get uncorrectableMask(): number {
    return this.space.u32(this.offset + PCI_ERR.UNCOR_MASK);
  }

  get uncorrectableSeverity(): number {
    return this.space.u32(this.offset + PCI_ERR.UNCOR_SEVER);
  }

  get correctableStatus(): number {
    return this.space.u32(this.offset + PCI_ERR.COR_STATUS);
  }

  get correctableMask(): number {
    return this.space.u32(this.offset + PCI_ERR.COR_MASK);
  }

  get firstErrorPointer(): number {
    return this.space.u32(this.offset + PCI_ERR.CAP) & PCI_ERR_CAP.FEP_MASK;
  }

  /** The four Header Log DWs as registers (DW 0 holds header bytes 0..3, byte 0 in bits 31:24). */
  get headerLog(): number[] {
    return [0, 1, 2, 3].map((i) => this.space.u32(this.offset + PCI_ERR.HEADER_LOG + 4 * i));
  }

  isFatal(bit: number): boolean {
    return (this.uncorrectableSeverity & bit) !== 0;
  }

  /**
   * Records an uncorrectable error (`bit` is one PCI_ERR_UNC bit). `header` is the TLP header
   * (first 16 bytes are logged) when this error logs one. Returns whether the error is masked.
   */
  recordUncorrectable(bit: number, header: Uint8Array | null): { masked: boolean } {
    const masked = (this.uncorrectableMask & bit) !== 0;
    const statusBefore = this.uncorrectableStatus;
    this.space.hwSet(this.offset + PCI_ERR.UNCOR_STATUS, 4, bit);
    if (masked) return { masked };
    const held = ((statusBefore >>> this.firstErrorPointer) & 1) === 1;
    if (!held) {
      const capAt = this.offset + PCI_ERR.CAP;
      this.space.hwWrite(capAt, 4, (this.space.u32(capAt) & ~PCI_ERR_CAP.FEP_MASK) | (31 - Math.clz32(bit)));
      for (let i = 0; i < 4; i++) {
        let dw = 0;
        for (let b = 0; b < 4; b++) dw = (dw << 8) | (header?.[4 * i + b] ?? 0);
        this.space.hwWrite(this.offset + PCI_ERR.HEADER_LOG + 4 * i, 4, dw >>> 0);
      }
    }
    return { masked };
  }

  /** Records a correctable error (`bit` is one PCI_ERR_COR bit). Returns whether it is masked. */
  recordCorrectable(bit: number): { masked: boolean } {
    this.space.hwSet(this.offset + PCI_ERR.COR_STATUS, 4, bit);
    return { masked: (this.correctableMask & bit) !== 0 };
  }
}
