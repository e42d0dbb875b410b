/**
 * The Power Management Capability, §7.5.2: D0 and D3hot only.
 *
 *   +0x02 PMC    version 3 (PM 1.2), no D1/D2, no PME                 RO
 *   +0x04 PMCSR  PowerState (D0/D3hot writable), No_Soft_Reset        RW
 *
 * Writing an unsupported state (D1, D2) completes normally and changes nothing (§7.5.2.2).
 * In D3hot a function answers only configuration requests (the PciFunction enforces that).
 * No_Soft_Reset is set by default, so D3hot → D0 keeps the function's state; with it clear,
 * the transition resets the function (the callback decides what that means).
 */
import {
  PCI_CAP_ID,
  PCI_PM,
  PCI_PM_PMC,
  PCI_PM_PMCSR,
  PCI_PM_STATE,
} from '../spec/index.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';

export interface PowerManagementOptions {
  /** No_Soft_Reset: D3hot → D0 keeps state. Default true (the spec recommends it). */
  noSoftReset?: boolean;
}

export type PowerState = 'D0' | 'D3hot';

export class PowerManagementCapability {
  readonly offset: number;
  readonly noSoftReset: boolean;

  constructor(
    private readonly space: ConfigSpace,
    caps: CapabilityList,
    options: PowerManagementOptions,
    onStateChange: (from: PowerState, to: PowerState) => void,
  ) {
    this.noSoftReset = options.noSoftReset ?? true;
    const off = caps.add(PCI_CAP_ID.PM, PCI_PM.SIZEOF);
    this.offset = off;
    space.define(off + PCI_PM.PMC, 2, PCI_PM_PMC.VERSION_1_2);
    space.define(off + PCI_PM.PMCSR, 2, this.noSoftReset ? PCI_PM_PMCSR.NO_SOFT_RESET : 0, {
      rw: PCI_PM_PMCSR.STATE_MASK,
    });
    space.define(off + PCI_PM.PMCSR_BSE, 1, 0);
    space.define(off + PCI_PM.DATA, 1, 0);
    space.onWrite((off + PCI_PM.PMCSR) >> 2, (e) => {
      const shift = ((off + PCI_PM.PMCSR) & 3) * 8;
      const before = (e.before >>> shift) & PCI_PM_PMCSR.STATE_MASK;
      const after = (e.after >>> shift) & PCI_PM_PMCSR.STATE_MASK;
      if (after === before) return;
      if (after !== PCI_PM_STATE.D0 && after !== PCI_PM_STATE.D3HOT) {
        // Unsupported state: the write completes, the data is discarded.
        const at = off + PCI_PM.PMCSR;
        space.hwWrite(at, 2, (space.u16(at) & ~PCI_PM_PMCSR.STATE_MASK) | before);
        return;
      }
      onStateChange(before === PCI_PM_STATE.D0 ? 'D0' : 'D3hot', after === PCI_PM_STATE.D0 ? 'D0' : 'D3hot');
    });
  }

  get state(): PowerState {
    const s = this.space.u16(this.offset + PCI_PM.PMCSR) & PCI_PM_PMCSR.STATE_MASK;
    return s === PCI_PM_STATE.D0 ? 'D0' : 'D3hot';
  }
}
