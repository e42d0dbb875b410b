/**
 * The PCI Express Capability (version 2) of an endpoint (Device/Port Type 0000b), §7.5.3.
 *
 *   +0x00 ID 0x10 | next | Capabilities (version 2, type 0)
 *   +0x04 Device Capabilities    MPS supported, Extended Tag, role-based errors, FLR      RO
 *   +0x08 Device Control         error enables, RO, MPS, Ext Tag, NS, MRRS, Initiate FLR  RW
 *   +0x0a Device Status          CED NFED FED URD                                         RW1C
 *   +0x0c Link Capabilities      max speed, max width                                     RO
 *   +0x10 Link Control           ASPM, RCB, common clock, extended synch                  RW
 *   +0x12 Link Status            current speed, negotiated width                          HW
 *   +0x24 Device Capabilities 2  completion timeout ranges/disable, 10-bit tags           RO
 *   +0x28 Device Control 2       completion timeout value/disable, 10-bit tag requester   RW
 *   +0x2c Link Capabilities 2    supported speeds vector                                  RO
 *   +0x30 Link Control 2         target link speed                                        RW
 *   +0x32 Link Status 2          equalization complete (≥ 8 GT/s)                         HW
 *
 * Initiate FLR (DevCtl bit 15) is write-only: it reads 0, and writing 1 on an FLR-capable
 * function calls the FLR callback. Max_Payload_Size and the Link Control registers survive an
 * FLR (§6.6.2 lists them as link-specific).
 */
import { TlpwireError } from '../core/index.js';
import {
  CPL_TIMEOUT_RANGES_NS,
  MPS_BYTES,
  PCI_CAP_ID,
  PCI_EXP,
  PCI_EXP_COMP_TIMEOUT_VALUES_BY_RANGE,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP2,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL2,
  PCI_EXP_DEVCTL_DEFAULT,
  PCI_EXP_DEVSTA,
  PCI_EXP_LINK_SPEED_GTS,
  PCI_EXP_LINK_WIDTHS,
  PCI_EXP_LNKCAP,
  PCI_EXP_LNKCAP2,
  PCI_EXP_LNKCTL,
  PCI_EXP_LNKCTL2,
  PCI_EXP_LNKSTA,
  PCI_EXP_LNKSTA2,
  PCI_EXP_TYPE,
} from '../spec/index.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';

export type LinkSpeedGts = (typeof PCI_EXP_LINK_SPEED_GTS)[number];
export type LinkWidth = (typeof PCI_EXP_LINK_WIDTHS)[number];
export type CompletionTimeoutRange = 'A' | 'B' | 'C' | 'D';

export interface PcieCapabilityOptions {
  /** Max_Payload_Size Supported in bytes (128..4096). Default 512. */
  maxPayloadSupported?: number;
  /** Extended Tag Field Supported (8-bit tags). Default true. */
  extendedTag?: boolean;
  /** Function Level Reset capable. Default true. */
  flr?: boolean;
  /** Role-Based Error Reporting (required since PCIe 1.1). Default true. */
  roleBasedErrorReporting?: boolean;
  /** Nominal link: the maximum and, until `setLinkStatus`, the negotiated speed and width. */
  linkSpeedGts?: LinkSpeedGts;
  linkWidth?: LinkWidth;
  /** Completion Timeout Ranges Supported. Default A–D. */
  completionTimeoutRanges?: readonly CompletionTimeoutRange[];
  /** Completion Timeout Disable Supported. Default true. */
  completionTimeoutDisable?: boolean;
  /** 10-Bit Tag Completer / Requester Supported. Default true / true. */
  tag10BitCompleter?: boolean;
  tag10BitRequester?: boolean;
  /** Link Status Slot Clock Configuration (the card uses the slot's reference clock). Default true. */
  slotClock?: boolean;
}

const RANGE_BIT: Record<CompletionTimeoutRange, number> = {
  A: PCI_EXP_DEVCAP2.COMP_TMOUT_RANGE_A,
  B: PCI_EXP_DEVCAP2.COMP_TMOUT_RANGE_B,
  C: PCI_EXP_DEVCAP2.COMP_TMOUT_RANGE_C,
  D: PCI_EXP_DEVCAP2.COMP_TMOUT_RANGE_D,
};

/** Link speed field value (1-based index into the Supported Link Speeds Vector) for a speed. */
export function linkSpeedCode(gts: number): number {
  const i = PCI_EXP_LINK_SPEED_GTS.indexOf(gts as LinkSpeedGts);
  if (i < 0) throw new TlpwireError('ERR_CONFIG', `unknown PCIe link speed ${gts} GT/s`);
  return i + 1;
}

function encodeSize(bytes: number, what: string): number {
  const i = MPS_BYTES.indexOf(bytes as (typeof MPS_BYTES)[number]);
  if (i < 0) throw new TlpwireError('ERR_CONFIG', `${what} ${bytes} is not one of ${MPS_BYTES.join(', ')}`);
  return i;
}

export interface CompletionTimeoutSetting {
  /** Completion Timeout Disable is set: requests never time out. */
  disabled: boolean;
  /** The programmed range [min, max] in ns (the 50 µs–50 ms default for unsupported values). */
  rangeNs: readonly [number, number];
}

export class PcieCapability {
  readonly offset: number;
  readonly maxPayloadSupportedBytes: number;
  readonly flrCapable: boolean;
  readonly maxLinkSpeedGts: LinkSpeedGts;
  readonly maxLinkWidth: LinkWidth;
  private readonly validTimeoutValues: ReadonlySet<number>;

  constructor(
    private readonly space: ConfigSpace,
    caps: CapabilityList,
    options: PcieCapabilityOptions,
    onFlr: () => void,
  ) {
    const mps = encodeSize(options.maxPayloadSupported ?? 512, 'Max_Payload_Size Supported');
    const extTag = options.extendedTag ?? true;
    this.flrCapable = options.flr ?? true;
    const speed = options.linkSpeedGts ?? 8;
    const width = options.linkWidth ?? 4;
    if (!PCI_EXP_LINK_WIDTHS.includes(width)) throw new TlpwireError('ERR_CONFIG', `bad link width x${width}`);
    const speedCode = linkSpeedCode(speed);
    this.maxLinkSpeedGts = speed;
    this.maxLinkWidth = width;
    const ranges = options.completionTimeoutRanges ?? ['A', 'B', 'C', 'D'];
    const cplDisable = options.completionTimeoutDisable ?? true;
    const tag10Comp = options.tag10BitCompleter ?? true;
    const tag10Req = options.tag10BitRequester ?? true;
    if (tag10Req && !tag10Comp) {
      throw new TlpwireError('ERR_CONFIG', 'a 10-bit tag requester must also be a 10-bit tag completer (§7.5.3.15)');
    }
    const valid = new Set<number>([0]);
    let rangeBits = 0;
    for (const r of ranges) {
      rangeBits |= RANGE_BIT[r];
      for (const v of PCI_EXP_COMP_TIMEOUT_VALUES_BY_RANGE[r]) valid.add(v);
    }
    this.validTimeoutValues = valid;
    this.maxPayloadSupportedBytes = MPS_BYTES[mps] ?? 128;

    const off = caps.add(PCI_CAP_ID.EXP, PCI_EXP.SIZEOF_V2);
    this.offset = off;
    const s = space;
    s.define(off + PCI_EXP.FLAGS, 2, 2 | (PCI_EXP_TYPE.ENDPOINT << 4));
    s.define(
      off + PCI_EXP.DEVCAP,
      4,
      (mps |
        (extTag ? PCI_EXP_DEVCAP.EXT_TAG : 0) |
        ((options.roleBasedErrorReporting ?? true) ? PCI_EXP_DEVCAP.ROLE_BASED_ERR : 0) |
        (this.flrCapable ? PCI_EXP_DEVCAP.FLR : 0)) >>>
        0,
    );
    const devctlRw =
      PCI_EXP_DEVCTL.CERE |
      PCI_EXP_DEVCTL.NFERE |
      PCI_EXP_DEVCTL.FERE |
      PCI_EXP_DEVCTL.URRE |
      PCI_EXP_DEVCTL.RELAX_EN |
      PCI_EXP_DEVCTL.PAYLOAD_MASK |
      (extTag ? PCI_EXP_DEVCTL.EXT_TAG : 0) |
      PCI_EXP_DEVCTL.NOSNOOP_EN |
      PCI_EXP_DEVCTL.READRQ_MASK;
    s.define(off + PCI_EXP.DEVCTL, 2, PCI_EXP_DEVCTL_DEFAULT, {
      rw: devctlRw,
      preserveOnFlr: PCI_EXP_DEVCTL.PAYLOAD_MASK,
    });
    s.define(off + PCI_EXP.DEVSTA, 2, 0, {
      w1c: PCI_EXP_DEVSTA.CED | PCI_EXP_DEVSTA.NFED | PCI_EXP_DEVSTA.FED | PCI_EXP_DEVSTA.URD,
    });
    s.define(off + PCI_EXP.LNKCAP, 4, speedCode | (width << PCI_EXP_LNKCAP.MLW_SHIFT));
    const lnkctlRw = PCI_EXP_LNKCTL.ASPMC_MASK | PCI_EXP_LNKCTL.RCB | PCI_EXP_LNKCTL.CCC | PCI_EXP_LNKCTL.ES;
    s.define(off + PCI_EXP.LNKCTL, 2, 0, { rw: lnkctlRw, preserveOnFlr: lnkctlRw });
    s.define(
      off + PCI_EXP.LNKSTA,
      2,
      speedCode | (width << PCI_EXP_LNKSTA.NLW_SHIFT) | ((options.slotClock ?? true) ? PCI_EXP_LNKSTA.SLC : 0),
      // Link Status is hardware state: a reset of the function does not retrain the link.
      { preserveOnFlr: 0xffff },
    );
    s.define(
      off + PCI_EXP.DEVCAP2,
      4,
      (rangeBits |
        (cplDisable ? PCI_EXP_DEVCAP2.COMP_TMOUT_DIS : 0) |
        (tag10Comp ? PCI_EXP_DEVCAP2.TAG_10BIT_COMP : 0) |
        (tag10Req ? PCI_EXP_DEVCAP2.TAG_10BIT_REQ : 0)) >>>
        0,
    );
    s.define(off + PCI_EXP.DEVCTL2, 2, 0, {
      rw:
        (rangeBits !== 0 ? PCI_EXP_DEVCTL2.COMP_TIMEOUT_MASK : 0) |
        (cplDisable ? PCI_EXP_DEVCTL2.COMP_TMOUT_DIS : 0) |
        (tag10Req ? PCI_EXP_DEVCTL2.TAG_10BIT_REQ_EN : 0),
    });
    s.define(off + PCI_EXP.LNKCAP2, 4, (((1 << speedCode) - 1) << PCI_EXP_LNKCAP2.SLS_SHIFT) >>> 0);
    const lnkctl2Rw = speedCode > 1 ? PCI_EXP_LNKCTL2.TLS_MASK : 0;
    s.define(off + PCI_EXP.LNKCTL2, 2, speedCode, { rw: lnkctl2Rw, preserveOnFlr: 0xffff });
    s.define(
      off + PCI_EXP.LNKSTA2,
      2,
      speed >= 8
        ? PCI_EXP_LNKSTA2.EQUALIZATION_COMPLETE |
            PCI_EXP_LNKSTA2.EQUALIZATION_PHASE1 |
            PCI_EXP_LNKSTA2.EQUALIZATION_PHASE2 |
            PCI_EXP_LNKSTA2.EQUALIZATION_PHASE3
        : 0,
      { preserveOnFlr: 0xffff },
    );

    space.onWrite((off + PCI_EXP.DEVCTL) >> 2, (e) => {
      // DevCtl sits in the low half of its DW; Initiate FLR is bit 15 (byte lane 1).
      const shift = ((off + PCI_EXP.DEVCTL) & 3) * 8;
      const lane = 1 << (((off + PCI_EXP.DEVCTL) & 3) + 1);
      if ((e.byteEnables & lane) === 0) return;
      if (((e.value >>> shift) & PCI_EXP_DEVCTL.BCR_FLR) !== 0 && this.flrCapable) onFlr();
    });
  }

  private get devctl(): number {
    return this.space.u16(this.offset + PCI_EXP.DEVCTL);
  }

  private get devctl2(): number {
    return this.space.u16(this.offset + PCI_EXP.DEVCTL2);
  }

  /** Max_Payload_Size programmed by software, in bytes (reserved encodings read as 4096). */
  get maxPayloadSizeBytes(): number {
    const code = (this.devctl & PCI_EXP_DEVCTL.PAYLOAD_MASK) >> PCI_EXP_DEVCTL.PAYLOAD_SHIFT;
    return MPS_BYTES[Math.min(code, MPS_BYTES.length - 1)] ?? 128;
  }

  /** Max_Read_Request_Size programmed by software, in bytes. */
  get maxReadRequestSizeBytes(): number {
    const code = (this.devctl & PCI_EXP_DEVCTL.READRQ_MASK) >> PCI_EXP_DEVCTL.READRQ_SHIFT;
    return MPS_BYTES[Math.min(code, MPS_BYTES.length - 1)] ?? 128;
  }

  get relaxedOrderingEnabled(): boolean {
    return (this.devctl & PCI_EXP_DEVCTL.RELAX_EN) !== 0;
  }

  get noSnoopEnabled(): boolean {
    return (this.devctl & PCI_EXP_DEVCTL.NOSNOOP_EN) !== 0;
  }

  get extendedTagEnabled(): boolean {
    return (this.devctl & PCI_EXP_DEVCTL.EXT_TAG) !== 0;
  }

  get tag10BitRequesterEnabled(): boolean {
    return (this.devctl2 & PCI_EXP_DEVCTL2.TAG_10BIT_REQ_EN) !== 0;
  }

  /** How many distinct tags the function may have outstanding as a requester. */
  get tagLimit(): number {
    // §2.2.6.2: 10-bit tags use Tag[9:8] ≠ 00b, which allows 768 outstanding requests.
    if (this.tag10BitRequesterEnabled) return 768;
    return this.extendedTagEnabled ? 256 : 32;
  }

  /** The completion timeout software programmed (§7.5.3.16). */
  get completionTimeout(): CompletionTimeoutSetting {
    const v = this.devctl2;
    const code = v & PCI_EXP_DEVCTL2.COMP_TIMEOUT_MASK;
    const range = this.validTimeoutValues.has(code) ? CPL_TIMEOUT_RANGES_NS[code] : undefined;
    return {
      disabled: (v & PCI_EXP_DEVCTL2.COMP_TMOUT_DIS) !== 0,
      rangeNs: range ?? [50_000, 50_000_000],
    };
  }

  /** Error reporting enables of Device Control. */
  get errorReporting(): { correctable: boolean; nonFatal: boolean; fatal: boolean; unsupportedRequest: boolean } {
    const d = this.devctl;
    return {
      correctable: (d & PCI_EXP_DEVCTL.CERE) !== 0,
      nonFatal: (d & PCI_EXP_DEVCTL.NFERE) !== 0,
      fatal: (d & PCI_EXP_DEVCTL.FERE) !== 0,
      unsupportedRequest: (d & PCI_EXP_DEVCTL.URRE) !== 0,
    };
  }

  /** Hardware sets Device Status error bits (PCI_EXP_DEVSTA.*). */
  setDeviceStatus(bits: number): void {
    this.space.hwSet(this.offset + PCI_EXP.DEVSTA, 2, bits);
  }

  get deviceStatus(): number {
    return this.space.u16(this.offset + PCI_EXP.DEVSTA);
  }

  /** Transactions Pending: the function has non-posted requests without completions. */
  setTransactionsPending(pending: boolean): void {
    if (pending) this.space.hwSet(this.offset + PCI_EXP.DEVSTA, 2, PCI_EXP_DEVSTA.TRPND);
    else this.space.hwClear(this.offset + PCI_EXP.DEVSTA, 2, PCI_EXP_DEVSTA.TRPND);
  }

  /** The link trained to `speed` × `width` (each at most the maximum). */
  setLinkStatus(speedGts: LinkSpeedGts, width: LinkWidth): void {
    if (speedGts > this.maxLinkSpeedGts || width > this.maxLinkWidth || !PCI_EXP_LINK_WIDTHS.includes(width)) {
      throw new TlpwireError('ERR_CONFIG', `link ${speedGts} GT/s x${width} exceeds ${this.maxLinkSpeedGts} GT/s x${this.maxLinkWidth}`);
    }
    const at = this.offset + PCI_EXP.LNKSTA;
    const keep = this.space.u16(at) & ~(PCI_EXP_LNKSTA.CLS_MASK | PCI_EXP_LNKSTA.NLW_MASK);
    this.space.hwWrite(at, 2, keep | linkSpeedCode(speedGts) | (width << PCI_EXP_LNKSTA.NLW_SHIFT));
  }

  get linkSpeedGts(): number {
    const code = this.space.u16(this.offset + PCI_EXP.LNKSTA) & PCI_EXP_LNKSTA.CLS_MASK;
    return PCI_EXP_LINK_SPEED_GTS[code - 1] ?? 0;
  }

  get linkWidth(): number {
    return (this.space.u16(this.offset + PCI_EXP.LNKSTA) & PCI_EXP_LNKSTA.NLW_MASK) >> PCI_EXP_LNKSTA.NLW_SHIFT;
  }
}
