/**
 * The Device Serial Number Extended Capability, §7.9.3: a 64-bit IEEE EUI-64, read-only.
 *
 *   +0x04 Serial Number, lower DW
 *   +0x08 Serial Number, upper DW
 */
import { TlpwireError } from '../core/index.js';
import { PCI_DSN, PCI_EXT_CAP_ID } from '../spec/index.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';

export class DsnCapability {
  readonly offset: number;
  readonly serialNumber: bigint;

  constructor(space: ConfigSpace, caps: CapabilityList, serialNumber: bigint) {
    if (serialNumber < 0n || serialNumber > 0xffff_ffff_ffff_ffffn) {
      throw new TlpwireError('ERR_CONFIG', `device serial number ${serialNumber} does not fit in 64 bits`);
    }
    this.serialNumber = serialNumber;
    const off = caps.addExtended(PCI_EXT_CAP_ID.DSN, PCI_DSN.VERSION, PCI_DSN.SIZEOF);
    this.offset = off;
    space.define(off + PCI_DSN.LOWER, 4, Number(serialNumber & 0xffff_ffffn));
    space.define(off + PCI_DSN.UPPER, 4, Number(serialNumber >> 32n));
  }
}
