/**
 * A PCI function: a Type 0 configuration header, its capabilities, and the regions behind its
 * BARs. Pure and synchronous; the endpoint role wires it to the link.
 *
 *   0x00  Device ID          | Vendor ID            RO
 *   0x04  Status             | Command              RW1C/RO | RW (I/O, MSE, BME, PER, SERR, INTx Dis)
 *   0x08  Class Code                   | Revision   RO
 *   0x0c  BIST | Header Type | Latency  | Cache Ln  RO | RO (bit 7 multi-function) | RO 0 | RW
 *   0x10  BAR0 .. 0x24 BAR5                         sizing masks (64-bit BARs take two slots)
 *   0x2c  Subsystem ID       | Subsystem Vendor ID  RO
 *   0x30  Expansion ROM BAR                         no ROM: hardwired 0, as for a function without one
 *   0x34  Capabilities Pointer                      RO (the list manager writes it)
 *   0x3c  Max_Lat | Min_Gnt | Int Pin | Int Line    RO | RO | RO | RW
 *
 * BAR sizing needs no code: a BAR's address bits above its size are RW and the rest RO, so
 * writing all ones reads back ~(size − 1) with the type bits (§7.5.1.2.1).
 *
 * Command enforcement: with Memory Space Enable clear (or in D3hot) `claims` returns null for
 * every memory address, so the completer answers UR; `busMasterEnabled` is what the DMA engine
 * checks before issuing any request, and MSI/MSI-X messages are held (MSI-X pending) without it.
 */
import { TlpwireError } from '../core/index.js';
import {
  PCI_BAR,
  PCI_CFG,
  PCI_COMMAND,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_PIN,
  PCI_NUM_BARS,
  PCI_STATUS,
  PCI_STATUS_RW1C_MASK,
} from '../spec/index.js';
import { AerCapability } from './aer-capability.js';
import { MemoryRegion, OverlayRegion, type BarRegion } from './bar-region.js';
import { CapabilityList } from './capability-list.js';
import { ConfigSpace } from './config-space.js';
import { DsnCapability } from './dsn-capability.js';
import { PciErrorReporter } from './error-reporting.js';
import { MsiCapability, type InterruptMessage, type MsiOptions } from './msi-capability.js';
import { MsixCapability, MsixTable, msixPbaBytes, msixTableBytes, type MsixOptions } from './msix.js';
import { PcieCapability, type PcieCapabilityOptions } from './pcie-capability.js';
import { PowerManagementCapability, type PowerManagementOptions, type PowerState } from './pm-capability.js';
import { VendorCapability, type VendorCapabilityOptions } from './vendor-capability.js';

export type BarKind = 'mem32' | 'mem64' | 'io';

export interface BarDefinition {
  /** BAR number 0..5; a 64-bit BAR also takes index + 1. */
  index: number;
  kind: BarKind;
  /** Power of two: memory ≥ 128 bytes (32-bit BARs ≤ 2 GiB, 64-bit ≤ 2^48), I/O 4..256 bytes. */
  size: number;
  prefetchable?: boolean;
  /** What answers accesses; plain memory of `size` bytes when absent. */
  region?: BarRegion;
}

export interface PciFunctionOptions {
  vendorId: number;
  deviceId: number;
  revisionId?: number;
  /** 24 bits: base class << 16 | sub-class << 8 | programming interface. */
  classCode: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0 none, 1..4 INTA..INTD. Default INTA. */
  interruptPin?: number;
  bars?: readonly BarDefinition[];
  /** PCI Express capability (default: present with its defaults). */
  pcie?: PcieCapabilityOptions | false;
  /** Power Management capability (default: present). */
  pm?: PowerManagementOptions | false;
  msi?: MsiOptions;
  msix?: MsixOptions;
  /** AER extended capability (default: present; needs the PCIe capability). */
  aer?: boolean;
  /** Device Serial Number extended capability, when given. */
  serialNumber?: bigint;
  vendorCapabilities?: readonly VendorCapabilityOptions[];
}

export interface DecodedBar {
  index: number;
  kind: BarKind;
  size: number;
  prefetchable: boolean;
  /** The address software programmed (a number; exact below 2^53). */
  base: number;
}

export interface BarHit {
  bar: number;
  offset: number;
}

export type ResetCause = 'flr' | 'power-on' | 'd3hot-to-d0';

interface BarSlot {
  def: BarDefinition;
  region: BarRegion;
}

const TWO_32 = 0x1_0000_0000;

function checkU16(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new TlpwireError('ERR_CONFIG', `${what} ${v} is not a u16`);
}

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export class PciFunction {
  readonly config = new ConfigSpace();
  readonly capabilities: CapabilityList;
  readonly pcie: PcieCapability | null = null;
  readonly pm: PowerManagementCapability | null = null;
  readonly msi: MsiCapability | null = null;
  readonly msix: MsixCapability | null = null;
  readonly msixTable: MsixTable | null = null;
  readonly aer: AerCapability | null = null;
  readonly dsn: DsnCapability | null = null;
  readonly vendorCapabilities: VendorCapability[] = [];
  readonly errors: PciErrorReporter;
  readonly interruptPin: number;

  /** Called after a reset of the function (FLR, power-on, D3hot → D0 without No_Soft_Reset). */
  onReset: (cause: ResetCause) => void = () => {};
  /** The virtual INTx wire changed: send Assert_INTx / Deassert_INTx for `pin` (1 = INTA). */
  onIntx: (asserted: boolean, pin: number) => void = () => {};
  /** A held MSI or MSI-X message was released (unmasked, enabled, BME set): send its MWr. */
  onInterruptMessage: (msg: InterruptMessage, kind: 'msi' | 'msix') => void = () => {};

  private readonly bars: (BarSlot | undefined)[] = [];
  /** Decoded windows of the implemented BARs, rebuilt after a BAR write or a reset. */
  private windows: { index: number; io: boolean; base: number; end: number }[] = [];
  private windowsStale = true;
  private intxLevel = false;
  private intxWire = false;
  private resets = 0;

  constructor(options: PciFunctionOptions) {
    const s = this.config;
    this.capabilities = new CapabilityList(s);
    checkU16(options.vendorId, 'vendor ID');
    checkU16(options.deviceId, 'device ID');
    checkU16(options.subsystemVendorId ?? 0, 'subsystem vendor ID');
    checkU16(options.subsystemId ?? 0, 'subsystem ID');
    if (!Number.isInteger(options.classCode) || options.classCode < 0 || options.classCode > 0xffffff) {
      throw new TlpwireError('ERR_CONFIG', `class code ${options.classCode} is not 24 bits`);
    }
    const pin = options.interruptPin ?? PCI_INTERRUPT_PIN.INTA;
    if (!Number.isInteger(pin) || pin < 0 || pin > 4) throw new TlpwireError('ERR_CONFIG', `interrupt pin ${pin}`);
    this.interruptPin = pin;

    this.defineBars(options.bars ?? []);
    const hasIo = this.bars.some((b) => b?.def.kind === 'io');
    const hasMem = this.bars.some((b) => b !== undefined && b.def.kind !== 'io');

    s.define(PCI_CFG.VENDOR_ID, 2, options.vendorId);
    s.define(PCI_CFG.DEVICE_ID, 2, options.deviceId);
    s.define(PCI_CFG.COMMAND, 2, 0, {
      rw:
        (hasIo ? PCI_COMMAND.IO_SPACE : 0) |
        (hasMem ? PCI_COMMAND.MEMORY_SPACE : 0) |
        PCI_COMMAND.BUS_MASTER |
        PCI_COMMAND.PARITY_ERROR_RESPONSE |
        PCI_COMMAND.SERR_ENABLE |
        PCI_COMMAND.INTX_DISABLE,
    });
    s.define(PCI_CFG.STATUS, 2, 0, { w1c: PCI_STATUS_RW1C_MASK });
    s.define(PCI_CFG.REVISION_ID, 1, options.revisionId ?? 0);
    s.define(PCI_CFG.CLASS_PROG, 1, options.classCode & 0xff);
    s.define(PCI_CFG.CLASS_SUB, 2, options.classCode >>> 8);
    // Cache Line Size is RW for compatibility and has no effect on PCIe; Latency Timer is 0.
    s.define(PCI_CFG.CACHE_LINE_SIZE, 1, 0, { rw: 0xff });
    s.define(PCI_CFG.LATENCY_TIMER, 1, 0);
    s.define(PCI_CFG.HEADER_TYPE, 1, PCI_HEADER_TYPE.TYPE0);
    s.define(PCI_CFG.BIST, 1, 0);
    s.define(PCI_CFG.CARDBUS_CIS, 4, 0);
    s.define(PCI_CFG.SUBSYSTEM_VENDOR_ID, 2, options.subsystemVendorId ?? 0);
    s.define(PCI_CFG.SUBSYSTEM_ID, 2, options.subsystemId ?? 0);
    s.define(PCI_CFG.EXPANSION_ROM, 4, 0);
    s.define(PCI_CFG.CAPABILITIES_POINTER, 1, 0);
    s.define(PCI_CFG.INTERRUPT_LINE, 1, 0, { rw: 0xff });
    s.define(PCI_CFG.INTERRUPT_PIN, 1, pin);
    s.define(PCI_CFG.MIN_GNT, 2, 0);

    if (options.pm !== false) {
      this.pm = new PowerManagementCapability(s, this.capabilities, options.pm ?? {}, (from, to) =>
        this.powerStateChanged(from, to),
      );
    }
    if (options.msi !== undefined) {
      const msi = new MsiCapability(s, this.capabilities, options.msi, (msg) => this.onInterruptMessage(msg, 'msi'));
      msi.canSend = () => this.busMasterEnabled;
      s.onWrite(msi.offset >> 2, () => this.updateIntx());
      this.msi = msi;
    }
    if (options.pcie !== false) {
      this.pcie = new PcieCapability(s, this.capabilities, options.pcie ?? {}, () => this.functionLevelReset());
    }
    if (options.msix !== undefined) {
      const msix = new MsixCapability(s, this.capabilities, options.msix, () => {
        this.msixTable?.deliverPending();
        this.updateIntx();
      });
      this.msix = msix;
      this.msixTable = this.attachMsixTable(msix);
    }
    for (const vc of options.vendorCapabilities ?? []) {
      this.vendorCapabilities.push(new VendorCapability(s, this.capabilities, vc));
    }
    if (options.aer ?? true) {
      if (this.pcie === null) throw new TlpwireError('ERR_CONFIG', 'AER needs the PCI Express capability');
      this.aer = new AerCapability(s, this.capabilities);
    }
    if (options.serialNumber !== undefined) this.dsn = new DsnCapability(s, this.capabilities, options.serialNumber);
    this.errors = new PciErrorReporter(s, this.pcie, this.aer);

    s.onWrite(PCI_CFG.COMMAND >> 2, (e) => {
      const bmeBefore = (e.before & PCI_COMMAND.BUS_MASTER) !== 0;
      if (!bmeBefore && this.busMasterEnabled) {
        this.msixTable?.deliverPending();
        this.msi?.deliverPending();
      }
      this.updateIntx();
    });
  }

  /** Adds a vendor-specific capability after construction (the virtio transport does this). */
  addVendorCapability(options: VendorCapabilityOptions): VendorCapability {
    const vc = new VendorCapability(this.config, this.capabilities, options);
    this.vendorCapabilities.push(vc);
    return vc;
  }

  // ---- configuration requests ---------------------------------------------------------------

  configRead(register: number): number {
    return this.config.read(register);
  }

  configWrite(register: number, value: number, byteEnables: number): void {
    this.config.write(register, value, byteEnables);
  }

  // ---- Command register and power state -----------------------------------------------------

  private get command(): number {
    return this.config.u16(PCI_CFG.COMMAND);
  }

  get memorySpaceEnabled(): boolean {
    return (this.command & PCI_COMMAND.MEMORY_SPACE) !== 0;
  }

  get ioSpaceEnabled(): boolean {
    return (this.command & PCI_COMMAND.IO_SPACE) !== 0;
  }

  /** The DMA engine checks this before every request: with BME clear the function issues none. */
  get busMasterEnabled(): boolean {
    return (this.command & PCI_COMMAND.BUS_MASTER) !== 0;
  }

  get intxDisabled(): boolean {
    return (this.command & PCI_COMMAND.INTX_DISABLE) !== 0;
  }

  get powerState(): PowerState {
    return this.pm?.state ?? 'D0';
  }

  /** How many resets (FLR, power-on, soft) this function has gone through. */
  get resetCount(): number {
    return this.resets;
  }

  // ---- BARs ----------------------------------------------------------------------------------

  /** The BAR as software programmed it, or null for an unimplemented BAR (or a 64-bit upper half). */
  decodeBar(index: number): DecodedBar | null {
    const slot = this.bars[index];
    if (slot === undefined) return null;
    const { kind, size } = slot.def;
    const lo = this.config.u32(PCI_CFG.BAR0 + 4 * index);
    let base: number;
    if (kind === 'io') base = (lo & PCI_BAR.IO_ADDRESS_MASK) >>> 0;
    else if (kind === 'mem32') base = (lo & PCI_BAR.MEM_ADDRESS_MASK) >>> 0;
    else base = this.config.u32(PCI_CFG.BAR0 + 4 * (index + 1)) * TWO_32 + ((lo & PCI_BAR.MEM_ADDRESS_MASK) >>> 0);
    return { index, kind, size, prefetchable: slot.def.prefetchable ?? false, base };
  }

  /** The implemented BARs (lower slot of each 64-bit BAR). */
  get barDefinitions(): readonly BarDefinition[] {
    return this.bars.filter((b): b is BarSlot => b !== undefined).map((b) => b.def);
  }

  barRegion(index: number): BarRegion | null {
    return this.bars[index]?.region ?? null;
  }

  /**
   * Which memory BAR decodes [address, address + length), if the function answers memory requests
   * at all (Memory Space Enable set, D0). Null means the completer answers UR.
   */
  claims(address: number, length = 1): BarHit | null {
    if ((this.command & PCI_COMMAND.MEMORY_SPACE) === 0 || this.powerState !== 'D0') return null;
    return this.decode(address, length, false);
  }

  /** Like `claims` for I/O space (I/O Space Enable). */
  claimsIo(address: number, length = 1): BarHit | null {
    if (!this.ioSpaceEnabled || this.powerState !== 'D0') return null;
    return this.decode(address, length, true);
  }

  /** A memory read; null when no BAR claims it (answer UR). */
  memoryRead(address: number, length: number): Uint8Array | null {
    const hit = this.claims(address, length);
    if (hit === null) return null;
    return this.bars[hit.bar]?.region.read(hit.offset, length) ?? null;
  }

  /** A memory write; false when no BAR claims it (the write is dropped; an error is logged). */
  memoryWrite(address: number, data: Uint8Array): boolean {
    const hit = this.claims(address, data.length);
    if (hit === null) return false;
    this.bars[hit.bar]?.region.write(hit.offset, data);
    return true;
  }

  ioRead(address: number, length: number): Uint8Array | null {
    const hit = this.claimsIo(address, length);
    if (hit === null) return null;
    return this.bars[hit.bar]?.region.read(hit.offset, length) ?? null;
  }

  ioWrite(address: number, data: Uint8Array): boolean {
    const hit = this.claimsIo(address, data.length);
    if (hit === null) return false;
    this.bars[hit.bar]?.region.write(hit.offset, data);
    return true;
  }

  // ---- interrupts ----------------------------------------------------------------------------

  /**
   * The function's interrupt condition for INTx. Status.Interrupt Status follows it; the INTx
   * wire (and its Assert/Deassert message, via `onIntx`) also needs a pin, INTx Disable clear
   * and neither MSI nor MSI-X enabled (§6.1.4.3).
   */
  setInterruptLevel(asserted: boolean): void {
    this.intxLevel = asserted;
    if (asserted) this.config.hwSet(PCI_CFG.STATUS, 2, PCI_STATUS.INTERRUPT_STATUS);
    else this.config.hwClear(PCI_CFG.STATUS, 2, PCI_STATUS.INTERRUPT_STATUS);
    this.updateIntx();
  }

  /** Whether the virtual INTx wire is asserted. */
  get intxAsserted(): boolean {
    return this.intxWire;
  }

  /** MSI vector `vector` (0-based): the message to write, or null (disabled, masked, BME clear). */
  raiseMsi(vector: number): InterruptMessage | null {
    return this.msi?.trigger(vector) ?? null;
  }

  /** MSI-X vector `vector`: the message to write now, or null (left pending). */
  raiseMsix(vector: number): InterruptMessage | null {
    return this.msixTable?.trigger(vector) ?? null;
  }

  // ---- resets --------------------------------------------------------------------------------

  /**
   * Function Level Reset (§6.6.2): deassert INTx, restore config space (except sticky and
   * link-specific bits), the MSI-X table and every BAR region to power-on state, then `onReset`.
   */
  functionLevelReset(): void {
    this.reset('flr');
  }

  /** Conventional reset: everything back to power-on values, sticky bits included. */
  powerOnReset(): void {
    this.reset('power-on');
  }

  private reset(cause: ResetCause): void {
    this.intxLevel = false;
    this.config.reset(cause === 'power-on' ? 'power-on' : 'flr');
    this.windowsStale = true;
    this.updateIntx();
    this.msixTable?.reset();
    for (const slot of this.bars) slot?.region.reset?.();
    this.resets++;
    this.onReset(cause);
  }

  private powerStateChanged(from: PowerState, to: PowerState): void {
    // D3hot → D0 with No_Soft_Reset clear is an internal reset of the function (§7.5.2.2).
    if (from === 'D3hot' && to === 'D0' && this.pm !== null && !this.pm.noSoftReset) this.reset('d3hot-to-d0');
  }

  private updateIntx(): void {
    const wire =
      this.intxLevel &&
      this.interruptPin !== 0 &&
      !this.intxDisabled &&
      !(this.msi?.enabled ?? false) &&
      !(this.msix?.enabled ?? false);
    if (wire === this.intxWire) return;
    this.intxWire = wire;
    this.onIntx(wire, this.interruptPin);
  }

  // ---- construction helpers ------------------------------------------------------------------

  private defineBars(defs: readonly BarDefinition[]): void {
    for (const def of defs) {
      const { index, kind, size } = def;
      const span = kind === 'mem64' ? 2 : 1;
      if (!Number.isInteger(index) || index < 0 || index + span > PCI_NUM_BARS) {
        throw new TlpwireError('ERR_CONFIG', `BAR${index} (${kind}) does not fit in BAR0..BAR5`);
      }
      for (let i = index; i < index + span; i++) {
        if (this.bars[i] !== undefined || (i > 0 && this.bars[i - 1]?.def.kind === 'mem64')) {
          throw new TlpwireError('ERR_CONFIG', `BAR${i} is defined twice`);
        }
      }
      const max = kind === 'io' ? PCI_BAR.IO_MAX_SIZE : kind === 'mem32' ? 2 ** 31 : 2 ** 48;
      const min = kind === 'io' ? PCI_BAR.IO_MIN_SIZE : PCI_BAR.MEM_MIN_SIZE;
      if (!isPow2(size) || size < min || size > max) {
        throw new TlpwireError('ERR_CONFIG', `BAR${index} size ${size} must be a power of two in ${min}..${max}`);
      }
      if (kind === 'io' && def.prefetchable === true) {
        throw new TlpwireError('ERR_CONFIG', `BAR${index}: an I/O BAR cannot be prefetchable`);
      }
      const at = PCI_CFG.BAR0 + 4 * index;
      if (kind === 'io') {
        this.config.define(at, 4, PCI_BAR.SPACE_IO, { rw: (~(size - 1) & PCI_BAR.IO_ADDRESS_MASK) >>> 0 });
      } else {
        const flags =
          (kind === 'mem64' ? PCI_BAR.MEM_TYPE_64 : PCI_BAR.MEM_TYPE_32) |
          (def.prefetchable === true ? PCI_BAR.MEM_PREFETCHABLE : 0);
        const loRw = size >= TWO_32 ? 0 : (~(size - 1) & PCI_BAR.MEM_ADDRESS_MASK) >>> 0;
        this.config.define(at, 4, flags, { rw: loRw });
        if (kind === 'mem64') {
          const hiRw = size > TWO_32 ? ~(size / TWO_32 - 1) >>> 0 : 0xffffffff;
          this.config.define(at + 4, 4, 0, { rw: hiRw });
        }
      }
      this.bars[index] = { def, region: def.region ?? new MemoryRegion(size) };
      for (let i = index; i < index + span; i++) {
        this.config.onWrite((PCI_CFG.BAR0 >> 2) + i, () => {
          this.windowsStale = true;
        });
      }
    }
  }

  private attachMsixTable(cap: MsixCapability): MsixTable {
    const table = new MsixTable(cap);
    table.canSend = () => this.busMasterEnabled;
    table.onDeliver = (msg) => this.onInterruptMessage(msg, 'msix');
    const place = (bar: number, offset: number, length: number, region: BarRegion, what: string): void => {
      const slot = this.bars[bar];
      if (slot === undefined || slot.def.kind === 'io') {
        throw new TlpwireError('ERR_CONFIG', `MSI-X ${what} BIR ${bar} is not a memory BAR`);
      }
      if (offset + length > slot.def.size) {
        throw new TlpwireError('ERR_CONFIG', `MSI-X ${what} (${length} bytes at ${offset}) overflows BAR${bar}`);
      }
      const overlay = slot.region instanceof OverlayRegion ? slot.region : new OverlayRegion(slot.region);
      overlay.map(offset, length, region);
      slot.region = overlay;
    };
    const tableLen = msixTableBytes(cap.vectors);
    const pbaLen = msixPbaBytes(cap.vectors);
    if (cap.tableBar === cap.pbaBar && cap.tableOffset < cap.pbaOffset + pbaLen && cap.pbaOffset < cap.tableOffset + tableLen) {
      throw new TlpwireError('ERR_CONFIG', 'MSI-X table and PBA overlap');
    }
    place(cap.tableBar, cap.tableOffset, tableLen, table.tableRegion, 'table');
    place(cap.pbaBar, cap.pbaOffset, pbaLen, table.pbaRegion, 'PBA');
    return table;
  }

  private decode(address: number, length: number, io: boolean): BarHit | null {
    if (!Number.isSafeInteger(address) || address < 0 || !Number.isSafeInteger(length) || length < 1) return null;
    if (this.windowsStale) this.rebuildWindows();
    for (const w of this.windows) {
      if (w.io === io && address >= w.base && address + length <= w.end) return { bar: w.index, offset: address - w.base };
    }
    return null;
  }

  private rebuildWindows(): void {
    this.windows = [];
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      const bar = this.decodeBar(i);
      // A BAR programmed at or beyond 2^53 cannot be matched exactly with numbers: it never decodes.
      if (bar === null || !Number.isSafeInteger(bar.base + bar.size)) continue;
      this.windows.push({ index: i, io: bar.kind === 'io', base: bar.base, end: bar.base + bar.size });
    }
    this.windowsStale = false;
  }
}
