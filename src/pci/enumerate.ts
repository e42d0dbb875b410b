/**
 * Host enumeration of the device behind one root port, as firmware or an OS does it over Type 0
 * configuration requests:
 *
 *   probe 00.0 ──► UR / Vendor ID FFFFh ──► nothing here
 *        │ Header Type bit 7 (multi-function) ──► probe 00.1 .. 00.7 as well
 *        ▼
 *   per function: IDs, class, header; decode off (Command = 0) while BARs are sized
 *   (write all ones, read back, restore; 64-bit pairs and I/O BARs included)
 *        ▼
 *   plan: every BAR of the device gets a naturally aligned range from its window
 *   (32-bit MMIO by default; prefetchable 64-bit BARs above 4 GiB only when a 64-bit window is
 *   given, because lspci 3.9 prints a spurious line for such BARs), then the BARs are programmed
 *        ▼
 *   capabilities: the standard list from 0x34 and the extended list from 0x100, bounded walks;
 *   PCI Express: DevCtl MPS = min(function, root port, link), MRRS, Extended Tag, error
 *   reporting; DevCtl2 completion timeout and 10-bit tag requester enable
 *        ▼
 *   Command: Memory Space (and I/O) on; MSI-X: Enable + Function Mask, every table entry
 *   programmed by MMIO with a message from the interrupt allocator and unmasked, Function Mask
 *   off; then Bus Master on.
 *
 * Everything goes through `ConfigAccess` (and `MmioAccess` for the MSI-X table), so it runs over
 * a link, over an in-memory device in tests, or anything else that can do CfgRd0/CfgWr0.
 */
import { TlpwireError, isTlpwireError, silentLogger, type Logger } from '../core/index.js';
import {
  MPS_BYTES,
  PCI_BAR,
  PCI_CAP_ID,
  PCI_CFG,
  PCI_COMMAND,
  PCI_DSN,
  PCI_EXP,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP2,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL2,
  PCI_EXP_FLAGS,
  PCI_EXP_LINK_SPEED_GTS,
  PCI_EXP_LNKCAP,
  PCI_EXP_LNKSTA,
  PCI_EXT_CAP_HDR,
  PCI_EXT_CAP_ID,
  PCI_HEADER_TYPE,
  PCI_MSI,
  PCI_MSI_FLAGS,
  PCI_MSIX,
  PCI_MSIX_BIR,
  PCI_MSIX_ENTRY,
  PCI_MSIX_FLAGS,
  PCI_NUM_BARS,
  PCI_STATUS,
} from '../spec/index.js';
import type { BarKind } from './pci-function.js';

// ---------------------------------------------------------------------------------------------
// access

/** Type 0 configuration access: `reg` is the DW index (byte offset / 4), `be` the First DW BE. */
export interface ConfigAccess {
  /** Resolves with the DW; may reject (ERR_CPL_UR for an absent function) or resolve all ones. */
  cfgRead(bdf: number, reg: number): Promise<number>;
  cfgWrite(bdf: number, reg: number, value: number, be: number): Promise<void>;
}

/** CPU access to memory space (the MSI-X table lives in a BAR). */
export interface MmioAccess {
  write32(address: number, value: number): Promise<void>;
  read32(address: number): Promise<number>;
}

/** bus << 8 | device << 3 | function. */
export function bdfOf(bus: number, device: number, fn: number): number {
  return ((bus & 0xff) << 8) | ((device & 0x1f) << 3) | (fn & 7);
}

/** "BB:DD.F" as lspci prints it. */
export function formatBdf(bdf: number): string {
  const h = (n: number): string => n.toString(16).padStart(2, '0');
  return `${h(bdf >> 8)}:${h((bdf >> 3) & 0x1f)}.${bdf & 7}`;
}

const ALL_ONES = 0xffffffff;
const TWO_32 = 0x1_0000_0000;

/** A config read where an Unsupported Request (absent function) reads as all ones, as on a CPU. */
async function readDw(access: ConfigAccess, bdf: number, offset: number): Promise<number> {
  try {
    return (await access.cfgRead(bdf, offset >> 2)) >>> 0;
  } catch (e) {
    if (isTlpwireError(e, 'ERR_CPL_UR')) return ALL_ONES;
    throw e;
  }
}

async function read16(access: ConfigAccess, bdf: number, offset: number): Promise<number> {
  const dw = await readDw(access, bdf, offset & ~3);
  return (dw >>> ((offset & 2) * 8)) & 0xffff;
}

async function read8(access: ConfigAccess, bdf: number, offset: number): Promise<number> {
  const dw = await readDw(access, bdf, offset & ~3);
  return (dw >>> ((offset & 3) * 8)) & 0xff;
}

/** Writes `width` bytes at `offset` (within one DW) with the matching byte enables only. */
export function writeConfig(access: ConfigAccess, bdf: number, offset: number, width: 1 | 2 | 4, value: number): Promise<void> {
  const lane = offset & 3;
  if (lane + width > 4) throw new TlpwireError('ERR_INTERNAL', `config write of ${width} bytes at 0x${offset.toString(16)} crosses a DW`);
  const be = ((1 << width) - 1) << lane;
  const shifted = width === 4 ? value >>> 0 : ((value & (width === 1 ? 0xff : 0xffff)) << (lane * 8)) >>> 0;
  return access.cfgWrite(bdf, offset >> 2, shifted, be);
}

/** Reads `bytes` (64, 256 or 4096) of a function's config space, 32 requests in flight. */
export async function readConfigSpace(access: ConfigAccess, bdf: number, bytes = 4096): Promise<Uint8Array> {
  const out = new Uint8Array(bytes);
  const dv = new DataView(out.buffer);
  const dws = bytes >> 2;
  const inFlight = 32;
  for (let start = 0; start < dws; start += inFlight) {
    const batch: Promise<number>[] = [];
    for (let r = start; r < Math.min(dws, start + inFlight); r++) batch.push(readDw(access, bdf, r * 4));
    const values = await Promise.all(batch);
    values.forEach((v, i) => dv.setUint32((start + i) * 4, v, true));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// address windows and BAR placement

/** A range [base, limit) of bus addresses. */
export interface AddressWindow {
  base: number;
  limit: number;
}

export interface AddressWindows {
  /** Non-prefetchable and 32-bit BARs (and 64-bit ones when there is no `mem64`). */
  mem32: AddressWindow;
  /** Prefetchable 64-bit BARs, when given (above 4 GiB). */
  mem64?: AddressWindow;
  /** I/O BARs, when given. */
  io?: AddressWindow;
}

/** Below the x86 IOAPIC/LAPIC area and the 0xFEE0_0000 interrupt window. */
export const DEFAULT_MEM32_WINDOW: Readonly<AddressWindow> = { base: 0xc000_0000, limit: 0xfec0_0000 };
/** 256 GiB .. 512 GiB, used only when asked for (`mem64`). */
export const DEFAULT_MEM64_WINDOW: Readonly<AddressWindow> = { base: 0x40_0000_0000, limit: 0x80_0000_0000 };
/** Above the legacy ISA ports. */
export const DEFAULT_IO_WINDOW: Readonly<AddressWindow> = { base: 0x1000, limit: 0x1_0000 };

export interface BarRequest {
  /** Identifies the request in the plan (e.g. "01:00.0/2"). */
  key: string;
  kind: BarKind;
  prefetchable: boolean;
  /** Power of two. */
  size: number;
}

/** An assigned range [base, end). */
export interface AddressRange {
  base: number;
  end: number;
}

export interface BarPlacement {
  address: number;
  window: 'mem32' | 'mem64' | 'io';
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/**
 * Places every BAR in its window at a naturally aligned address (size-aligned), largest first
 * so that alignment wastes little, first fit around `taken` (ranges other devices hold).
 * Throws ERR_MEMORY_EXHAUSTED when a BAR does not fit. Deterministic for a given input.
 */
export function planBarAssignment(
  requests: readonly BarRequest[],
  windows: AddressWindows,
  taken: readonly AddressRange[] = [],
): Map<string, BarPlacement> {
  const used: AddressRange[] = taken.map((r) => ({ ...r }));
  const order = requests
    .map((r, i) => ({ r, i }))
    .sort((a, b) => b.r.size - a.r.size || a.i - b.i)
    .map((x) => x.r);
  const out = new Map<string, BarPlacement>();
  for (const req of order) {
    if (!isPow2(req.size)) throw new TlpwireError('ERR_CONFIG', `BAR ${req.key}: size ${req.size} is not a power of two`);
    let which: BarPlacement['window'];
    if (req.kind === 'io') which = 'io';
    else if (req.kind === 'mem64' && req.prefetchable && windows.mem64 !== undefined) which = 'mem64';
    else which = 'mem32';
    const w = which === 'io' ? windows.io : which === 'mem64' ? windows.mem64 : windows.mem32;
    if (w === undefined) throw new TlpwireError('ERR_MEMORY_EXHAUSTED', `BAR ${req.key}: no ${which} window to place it in`);
    const address = firstFit(used, w, req.size);
    if (address === null) {
      throw new TlpwireError(
        'ERR_MEMORY_EXHAUSTED',
        `BAR ${req.key} (${req.size} bytes) does not fit in the ${which} window 0x${w.base.toString(16)}..0x${w.limit.toString(16)}`,
      );
    }
    used.push({ base: address, end: address + req.size });
    out.set(req.key, { address, window: which });
  }
  return out;
}

function firstFit(used: readonly AddressRange[], w: AddressWindow, size: number): number | null {
  let candidate = alignUp(w.base, size);
  const sorted = used.filter((r) => r.end > w.base && r.base < w.limit).sort((a, b) => a.base - b.base);
  for (const r of sorted) {
    if (candidate + size <= r.base) break;
    if (r.end > candidate) candidate = alignUp(r.end, size);
  }
  return candidate + size <= w.limit && Number.isSafeInteger(candidate + size) ? candidate : null;
}

// ---------------------------------------------------------------------------------------------
// results

export interface EnumeratedBar {
  index: number;
  kind: BarKind;
  prefetchable: boolean;
  size: number;
  /** Assigned bus address, null when it could not be assigned (no window). */
  address: number | null;
}

export interface EnumeratedCapability {
  id: number;
  offset: number;
  name: string;
  /** Extended capabilities only. */
  version?: number;
}

export interface PcieSettings {
  capOffset: number;
  version: number;
  deviceType: number;
  maxPayloadSupported: number;
  maxPayloadSize: number;
  maxReadRequestSize: number;
  extendedTag: boolean;
  tag10BitSupported: boolean;
  tag10BitEnabled: boolean;
  flr: boolean;
  /** DevCap2 Completion Timeout Ranges Supported as letters, e.g. "ABCD". */
  completionTimeoutRanges: string;
  /** DevCtl2 Completion Timeout Value programmed (0 = default 50 µs..50 ms). */
  completionTimeoutValue: number;
  maxLinkSpeedGts: number;
  maxLinkWidth: number;
  linkSpeedGts: number;
  linkWidth: number;
}

/** An MSI / MSI-X message: a DW write of `data` to `address`. */
export interface MsiMessage {
  address: number;
  data: number;
}

export interface EnumeratedMsix {
  capOffset: number;
  tableSize: number;
  tableBar: number;
  tableOffset: number;
  pbaBar: number;
  pbaOffset: number;
  /** The messages programmed into entries 0..n-1 (empty when MSI-X was not set up). */
  vectors: MsiMessage[];
}

export interface EnumeratedMsi {
  capOffset: number;
  vectorsCapable: number;
  address64: boolean;
  perVectorMasking: boolean;
}

export interface EnumeratedFunction {
  bdf: number;
  bus: number;
  device: number;
  function: number;
  vendorId: number;
  deviceId: number;
  revisionId: number;
  /** 24 bits: base class << 16 | sub-class << 8 | programming interface. */
  classCode: number;
  headerType: number;
  multiFunction: boolean;
  subsystemVendorId: number;
  subsystemId: number;
  interruptPin: number;
  /** The Command register as enumeration left it. */
  command: number;
  bars: EnumeratedBar[];
  capabilities: EnumeratedCapability[];
  extendedCapabilities: EnumeratedCapability[];
  pcie: PcieSettings | null;
  msi: EnumeratedMsi | null;
  msix: EnumeratedMsix | null;
  serialNumber: bigint | null;
}

export interface EnumerationResult {
  bus: number;
  device: number;
  functions: EnumeratedFunction[];
  /** Address ranges the device's BARs now decode (to keep other devices out of them). */
  ranges: AddressRange[];
  /**
   * The Max_Payload_Size programmed in every function: the root port must not send larger
   * payloads (completions, writes) to this device either.
   */
  maxPayloadSize: number;
}

const CAP_NAMES: Readonly<Record<number, string>> = {
  [PCI_CAP_ID.PM]: 'Power Management',
  [PCI_CAP_ID.MSI]: 'MSI',
  [PCI_CAP_ID.VENDOR_SPECIFIC]: 'Vendor Specific',
  [PCI_CAP_ID.EXP]: 'PCI Express',
  [PCI_CAP_ID.MSIX]: 'MSI-X',
};

const EXT_CAP_NAMES: Readonly<Record<number, string>> = {
  [PCI_EXT_CAP_ID.AER]: 'Advanced Error Reporting',
  [PCI_EXT_CAP_ID.DSN]: 'Device Serial Number',
  [PCI_EXT_CAP_ID.VENDOR_SPECIFIC]: 'Vendor Specific',
};

// ---------------------------------------------------------------------------------------------
// enumeration

/** Gives MSI-X messages to a function's vectors (the root complex's interrupt controller). */
export interface InterruptAllocator {
  allocateMsix(bdf: number, count: number): MsiMessage[];
}

export interface EnumerateOptions {
  bus: number;
  /** Device number on the bus (0 behind a root port). */
  device?: number;
  /** Merged over the defaults (mem32 only). */
  windows?: Partial<AddressWindows>;
  /** Ranges other devices already decode. */
  taken?: readonly AddressRange[];
  /** Needed to program MSI-X tables; without it MSI-X is left disabled. */
  mmio?: MmioAccess;
  /** Without it MSI-X is left disabled. */
  interrupts?: InterruptAllocator;
  /** At most this many MSI-X vectors per function (default: the whole table). */
  maxMsixVectors?: number;
  /** Largest payload the root port handles, bytes. Default 4096. */
  maxPayloadSize?: number;
  /** The link partner's limit (from the link handshake), bytes. Default 4096. */
  linkMaxPayloadSize?: number;
  /** Default 512. */
  maxReadRequestSize?: number;
  /** The root complex completes 10-bit tags (so functions may use them). Default true. */
  tag10BitCompleter?: boolean;
  /** DevCtl2 Completion Timeout Value to program when supported. Default 0b1001 (260–900 ms). */
  completionTimeoutValue?: number;
  /** Set the correctable / non-fatal / fatal / UR reporting enables. Default true. */
  errorReporting?: boolean;
  /** Set Memory Space, I/O Space and Bus Master Enable at the end. Default true. */
  enable?: boolean;
  logger?: Logger;
}

interface Probed {
  bdf: number;
  fn: number;
  id: number;
  classRev: number;
  headerType: number;
  subsystem: number;
  interrupt: number;
  status: number;
  bars: EnumeratedBar[];
}

/** Encoding of a DevCtl MPS/MRRS size, or throws. */
function sizeCode(bytes: number, what: string): number {
  const i = MPS_BYTES.indexOf(bytes as (typeof MPS_BYTES)[number]);
  if (i < 0) throw new TlpwireError('ERR_USAGE', `${what} ${bytes} is not one of ${MPS_BYTES.join(', ')}`);
  return i;
}

/**
 * Enumerates the device at `bus`:`device` and configures it (see the file comment). Resolves with
 * what was found and programmed; an empty `functions` when nothing answers. Rejects when the
 * link fails mid-way (ERR_LINK_DOWN, ERR_CPL_TIMEOUT) or the window is full (ERR_MEMORY_EXHAUSTED).
 */
export async function enumerateDevice(access: ConfigAccess, options: EnumerateOptions): Promise<EnumerationResult> {
  const log = options.logger ?? silentLogger;
  const bus = options.bus;
  const device = options.device ?? 0;
  const windows: AddressWindows = {
    mem32: options.windows?.mem32 ?? DEFAULT_MEM32_WINDOW,
    ...(options.windows?.mem64 === undefined ? {} : { mem64: options.windows.mem64 }),
    ...(options.windows?.io === undefined ? {} : { io: options.windows.io }),
  };
  const maxPayload = options.maxPayloadSize ?? 4096;
  const linkPayload = options.linkMaxPayloadSize ?? 4096;
  const mrrs = options.maxReadRequestSize ?? 512;
  sizeCode(maxPayload, 'root port Max_Payload_Size');
  sizeCode(mrrs, 'Max_Read_Request_Size');

  // 1. probe
  const probed: Probed[] = [];
  const f0 = await probe(access, bdfOf(bus, device, 0), 0);
  if (f0 === null) return { bus, device, functions: [], ranges: [], maxPayloadSize: Math.min(maxPayload, linkPayload) };
  probed.push(f0);
  const multi = (f0.headerType & PCI_HEADER_TYPE.MULTI_FUNCTION) !== 0;
  if (multi) {
    for (let fn = 1; fn < 8; fn++) {
      const p = await probe(access, bdfOf(bus, device, fn), fn);
      if (p !== null) probed.push(p);
    }
  }

  // 2. size BARs with decoding off (a half-written BAR must not claim anyone's addresses)
  for (const p of probed) {
    if ((p.headerType & PCI_HEADER_TYPE.LAYOUT_MASK) !== PCI_HEADER_TYPE.TYPE0) {
      log.warn({ bdf: formatBdf(p.bdf), headerType: p.headerType }, 'not a Type 0 header: left alone');
      continue;
    }
    const cmd = await read16(access, p.bdf, PCI_CFG.COMMAND);
    await writeConfig(access, p.bdf, PCI_CFG.COMMAND, 2, cmd & ~(PCI_COMMAND.IO_SPACE | PCI_COMMAND.MEMORY_SPACE | PCI_COMMAND.BUS_MASTER));
    p.bars = await sizeBars(access, p.bdf);
  }

  // 3. place and program BARs
  const requests: BarRequest[] = [];
  for (const p of probed) {
    for (const b of p.bars) requests.push({ key: `${p.fn}/${b.index}`, kind: b.kind, prefetchable: b.prefetchable, size: b.size });
  }
  const plan = planBarAssignment(
    requests.filter((r) => r.kind !== 'io' || windows.io !== undefined),
    windows,
    options.taken ?? [],
  );
  const ranges: AddressRange[] = [];
  for (const p of probed) {
    for (const b of p.bars) {
      const placed = plan.get(`${p.fn}/${b.index}`);
      if (placed === undefined) continue;
      b.address = placed.address;
      ranges.push({ base: placed.address, end: placed.address + b.size });
      const at = PCI_CFG.BAR0 + 4 * b.index;
      await writeConfig(access, p.bdf, at, 4, placed.address >>> 0);
      if (b.kind === 'mem64') await writeConfig(access, p.bdf, at + 4, 4, Math.floor(placed.address / TWO_32) >>> 0);
    }
  }

  // 4. capabilities, PCIe settings, enables, MSI-X. One MPS for the whole device, the smallest
  // any function (or the root port, or the link) takes: the port sends every function's
  // completions with one limit, and a payload above a receiver's MPS is Malformed (§2.2.2).
  let deviceMps = Math.min(maxPayload, linkPayload);
  for (const p of probed) deviceMps = Math.min(deviceMps, await maxPayloadSupported(access, p));
  const functions: EnumeratedFunction[] = [];
  for (const p of probed) {
    const f = await configureFunction(access, p, multi, options, { maxPayload: deviceMps, linkPayload, mrrs }, log);
    functions.push(f);
    log.debug({ bdf: formatBdf(f.bdf), id: `${hex4(f.vendorId)}:${hex4(f.deviceId)}` }, 'function enumerated');
  }
  return { bus, device, functions, ranges, maxPayloadSize: deviceMps };
}

/** Max_Payload_Size Supported of a function's PCIe capability (4096 without one). */
async function maxPayloadSupported(access: ConfigAccess, p: Probed): Promise<number> {
  if ((p.status & PCI_STATUS.CAPABILITIES_LIST) === 0) return 4096;
  const exp = (await walkCapabilities(access, p.bdf)).find((c) => c.id === PCI_CAP_ID.EXP);
  if (exp === undefined) return 4096;
  const devcap = await readDw(access, p.bdf, exp.offset + PCI_EXP.DEVCAP);
  return MPS_BYTES[Math.min(devcap & PCI_EXP_DEVCAP.PAYLOAD_MASK, MPS_BYTES.length - 1)] ?? 128;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

async function probe(access: ConfigAccess, bdf: number, fn: number): Promise<Probed | null> {
  const id = await readDw(access, bdf, PCI_CFG.VENDOR_ID);
  // §7.5.1.1.1: an absent function completes with UR (all ones); 0000h is not a valid vendor either.
  if ((id & 0xffff) === 0xffff || (id & 0xffff) === 0) return null;
  const status = (await readDw(access, bdf, PCI_CFG.COMMAND)) >>> 16;
  const classRev = await readDw(access, bdf, PCI_CFG.REVISION_ID);
  const headerType = (await readDw(access, bdf, PCI_CFG.CACHE_LINE_SIZE)) >>> 16 & 0xff;
  const subsystem = await readDw(access, bdf, PCI_CFG.SUBSYSTEM_VENDOR_ID);
  const interrupt = await readDw(access, bdf, PCI_CFG.INTERRUPT_LINE);
  return { bdf, fn, id, classRev, headerType, subsystem, interrupt, status, bars: [] };
}

/** §7.5.1.2.1: write all ones, read back the size mask, restore; 64-bit BARs use two slots. */
async function sizeBars(access: ConfigAccess, bdf: number): Promise<EnumeratedBar[]> {
  const bars: EnumeratedBar[] = [];
  for (let i = 0; i < PCI_NUM_BARS; i++) {
    const at = PCI_CFG.BAR0 + 4 * i;
    const orig = await readDw(access, bdf, at);
    await writeConfig(access, bdf, at, 4, ALL_ONES);
    const mask = await readDw(access, bdf, at);
    await writeConfig(access, bdf, at, 4, orig);
    if (mask === 0 || mask === ALL_ONES) continue; // unimplemented (all ones: the function vanished)
    if ((mask & PCI_BAR.SPACE_IO) !== 0) {
      // A 16-bit I/O decoder hardwires the upper half to 0: treat it as all ones.
      let m = (mask & PCI_BAR.IO_ADDRESS_MASK) >>> 0;
      if ((m & 0xffff0000) === 0) m = (m | 0xffff0000) >>> 0;
      bars.push({ index: i, kind: 'io', prefetchable: false, size: (~m >>> 0) + 1, address: null });
      continue;
    }
    const prefetchable = (mask & PCI_BAR.MEM_PREFETCHABLE) !== 0;
    const lo = (mask & PCI_BAR.MEM_ADDRESS_MASK) >>> 0;
    if ((mask & PCI_BAR.MEM_TYPE_MASK) === PCI_BAR.MEM_TYPE_64 && i + 1 < PCI_NUM_BARS) {
      const origHi = await readDw(access, bdf, at + 4);
      await writeConfig(access, bdf, at + 4, 4, ALL_ONES);
      const hi = await readDw(access, bdf, at + 4);
      await writeConfig(access, bdf, at + 4, 4, origHi);
      const mask64 = (BigInt(hi) << 32n) | BigInt(lo);
      const size = ((~mask64 & 0xffff_ffff_ffff_ffffn) + 1n) & 0xffff_ffff_ffff_ffffn;
      if (size > 0n && size <= 2n ** 52n) bars.push({ index: i, kind: 'mem64', prefetchable, size: Number(size), address: null });
      i++; // the upper half is not a BAR of its own
      continue;
    }
    bars.push({ index: i, kind: 'mem32', prefetchable, size: lo === 0 ? TWO_32 : (~lo >>> 0) + 1, address: null });
  }
  return bars;
}

interface Limits {
  maxPayload: number;
  linkPayload: number;
  mrrs: number;
}

async function configureFunction(
  access: ConfigAccess,
  p: Probed,
  multi: boolean,
  options: EnumerateOptions,
  limits: Limits,
  log: Logger,
): Promise<EnumeratedFunction> {
  const bdf = p.bdf;
  const f: EnumeratedFunction = {
    bdf,
    bus: bdf >> 8,
    device: (bdf >> 3) & 0x1f,
    function: bdf & 7,
    vendorId: p.id & 0xffff,
    deviceId: p.id >>> 16,
    revisionId: p.classRev & 0xff,
    classCode: p.classRev >>> 8,
    headerType: p.headerType,
    multiFunction: multi,
    subsystemVendorId: p.subsystem & 0xffff,
    subsystemId: p.subsystem >>> 16,
    interruptPin: (p.interrupt >>> 8) & 0xff,
    command: 0,
    bars: p.bars,
    capabilities: [],
    extendedCapabilities: [],
    pcie: null,
    msi: null,
    msix: null,
    serialNumber: null,
  };
  if ((p.status & PCI_STATUS.CAPABILITIES_LIST) !== 0) f.capabilities = await walkCapabilities(access, bdf);
  const expCap = f.capabilities.find((c) => c.id === PCI_CAP_ID.EXP);
  if (expCap !== undefined) {
    f.extendedCapabilities = await walkExtendedCapabilities(access, bdf);
    f.pcie = await configurePcie(access, bdf, expCap.offset, options, limits);
  }
  const dsn = f.extendedCapabilities.find((c) => c.id === PCI_EXT_CAP_ID.DSN);
  if (dsn !== undefined) {
    const lo = await readDw(access, bdf, dsn.offset + PCI_DSN.LOWER);
    const hi = await readDw(access, bdf, dsn.offset + PCI_DSN.UPPER);
    f.serialNumber = (BigInt(hi) << 32n) | BigInt(lo);
  }
  const msiCap = f.capabilities.find((c) => c.id === PCI_CAP_ID.MSI);
  if (msiCap !== undefined) {
    const ctrl = await read16(access, bdf, msiCap.offset + PCI_MSI.FLAGS);
    f.msi = {
      capOffset: msiCap.offset,
      vectorsCapable: 1 << ((ctrl & PCI_MSI_FLAGS.QMASK) >> PCI_MSI_FLAGS.QMASK_SHIFT),
      address64: (ctrl & PCI_MSI_FLAGS.ADDR_64) !== 0,
      perVectorMasking: (ctrl & PCI_MSI_FLAGS.MASK_BIT) !== 0,
    };
  }
  const msixCap = f.capabilities.find((c) => c.id === PCI_CAP_ID.MSIX);
  if (msixCap !== undefined) {
    const ctrl = await read16(access, bdf, msixCap.offset + PCI_MSIX.FLAGS);
    const table = await readDw(access, bdf, msixCap.offset + PCI_MSIX.TABLE);
    const pba = await readDw(access, bdf, msixCap.offset + PCI_MSIX.PBA);
    f.msix = {
      capOffset: msixCap.offset,
      tableSize: (ctrl & PCI_MSIX_FLAGS.QSIZE) + 1,
      tableBar: table & PCI_MSIX_BIR.BIR_MASK,
      tableOffset: (table & PCI_MSIX_BIR.OFFSET_MASK) >>> 0,
      pbaBar: pba & PCI_MSIX_BIR.BIR_MASK,
      pbaOffset: (pba & PCI_MSIX_BIR.OFFSET_MASK) >>> 0,
      vectors: [],
    };
  }

  if (options.enable ?? true) {
    const hasMem = f.bars.some((b) => b.kind !== 'io' && b.address !== null);
    const hasIo = f.bars.some((b) => b.kind === 'io' && b.address !== null);
    let cmd = await read16(access, bdf, PCI_CFG.COMMAND);
    cmd |= (hasMem ? PCI_COMMAND.MEMORY_SPACE : 0) | (hasIo ? PCI_COMMAND.IO_SPACE : 0);
    // SERR# Enable and Parity Error Response, as an OS with AER does.
    if (options.errorReporting ?? true) cmd |= PCI_COMMAND.SERR_ENABLE | PCI_COMMAND.PARITY_ERROR_RESPONSE;
    await writeConfig(access, bdf, PCI_CFG.COMMAND, 2, cmd);
    if (f.msix !== null && options.mmio !== undefined && options.interrupts !== undefined) {
      const count = Math.min(f.msix.tableSize, options.maxMsixVectors ?? f.msix.tableSize);
      f.msix.vectors = await setUpMsix(access, options.mmio, f, count, options.interrupts, log);
    }
    cmd |= PCI_COMMAND.BUS_MASTER;
    await writeConfig(access, bdf, PCI_CFG.COMMAND, 2, cmd);
    f.command = cmd;
  } else {
    f.command = await read16(access, bdf, PCI_CFG.COMMAND);
  }
  return f;
}

/** The standard list, bounded: 48 capabilities fit in 0x40..0xff, so more means a loop. */
async function walkCapabilities(access: ConfigAccess, bdf: number): Promise<EnumeratedCapability[]> {
  const caps: EnumeratedCapability[] = [];
  let ptr = (await read8(access, bdf, PCI_CFG.CAPABILITIES_POINTER)) & 0xfc;
  const seen = new Set<number>();
  while (ptr >= PCI_CFG.CAPS_START && !seen.has(ptr) && caps.length < 48) {
    seen.add(ptr);
    const hdr = await readDw(access, bdf, ptr);
    const id = hdr & 0xff;
    caps.push({ id, offset: ptr, name: CAP_NAMES[id] ?? `capability 0x${id.toString(16)}` });
    ptr = (hdr >>> 8) & 0xfc;
  }
  return caps;
}

/** The extended list from 0x100, bounded the same way (at most 960 DW-aligned headers). */
async function walkExtendedCapabilities(access: ConfigAccess, bdf: number): Promise<EnumeratedCapability[]> {
  const caps: EnumeratedCapability[] = [];
  let ptr: number = PCI_CFG.EXT_CAPS_START;
  const seen = new Set<number>();
  while (ptr >= PCI_CFG.EXT_CAPS_START && !seen.has(ptr) && caps.length < 960) {
    seen.add(ptr);
    const hdr = await readDw(access, bdf, ptr);
    if (hdr === 0 || hdr === ALL_ONES) break;
    const id = hdr & PCI_EXT_CAP_HDR.ID_MASK;
    const version = (hdr >>> PCI_EXT_CAP_HDR.VERSION_SHIFT) & PCI_EXT_CAP_HDR.VERSION_MASK;
    if (id !== PCI_EXT_CAP_ID.NULL) {
      caps.push({ id, offset: ptr, version, name: EXT_CAP_NAMES[id] ?? `extended capability 0x${id.toString(16)}` });
    }
    ptr = (hdr >>> PCI_EXT_CAP_HDR.NEXT_SHIFT) & PCI_EXT_CAP_HDR.NEXT_MASK;
  }
  return caps;
}

const RANGE_LETTERS = ['A', 'B', 'C', 'D'] as const;

async function configurePcie(
  access: ConfigAccess,
  bdf: number,
  cap: number,
  options: EnumerateOptions,
  limits: Limits,
): Promise<PcieSettings> {
  const flags = await read16(access, bdf, cap + PCI_EXP.FLAGS);
  const devcap = await readDw(access, bdf, cap + PCI_EXP.DEVCAP);
  const devctl = await read16(access, bdf, cap + PCI_EXP.DEVCTL);
  const mpsSupported = MPS_BYTES[Math.min(devcap & PCI_EXP_DEVCAP.PAYLOAD_MASK, MPS_BYTES.length - 1)] ?? 128;
  // §2.2.2: every element on the path must accept the payload, so the smallest limit wins.
  const mps = Math.min(mpsSupported, limits.maxPayload, limits.linkPayload);
  const extTag = (devcap & PCI_EXP_DEVCAP.EXT_TAG) !== 0;
  const errors = options.errorReporting ?? true;
  let ctl = devctl & ~(PCI_EXP_DEVCTL.PAYLOAD_MASK | PCI_EXP_DEVCTL.READRQ_MASK | PCI_EXP_DEVCTL.BCR_FLR);
  ctl |= sizeCode(mps, 'Max_Payload_Size') << PCI_EXP_DEVCTL.PAYLOAD_SHIFT;
  ctl |= sizeCode(limits.mrrs, 'Max_Read_Request_Size') << PCI_EXP_DEVCTL.READRQ_SHIFT;
  if (extTag) ctl |= PCI_EXP_DEVCTL.EXT_TAG;
  if (errors) ctl |= PCI_EXP_DEVCTL.CERE | PCI_EXP_DEVCTL.NFERE | PCI_EXP_DEVCTL.FERE | PCI_EXP_DEVCTL.URRE;
  // DevCtl only: the upper half of the DW is Device Status (RW1C).
  await writeConfig(access, bdf, cap + PCI_EXP.DEVCTL, 2, ctl);

  const version = flags & PCI_EXP_FLAGS.VERSION_MASK;
  let tag10Supported = false;
  let tag10Enabled = false;
  let ranges = '';
  let cto = 0;
  if (version >= 2) {
    const devcap2 = await readDw(access, bdf, cap + PCI_EXP.DEVCAP2);
    const devctl2 = await read16(access, bdf, cap + PCI_EXP.DEVCTL2);
    const rangeBits = devcap2 & PCI_EXP_DEVCAP2.COMP_TMOUT_RANGES_MASK;
    ranges = RANGE_LETTERS.filter((_, i) => (rangeBits & (1 << i)) !== 0).join('');
    const wanted = options.completionTimeoutValue ?? 0b1001;
    // Values 0001/0010 are range A, 0101/0110 B, 1001/1010 C, 1101/1110 D (§7.5.3.16).
    const wantedRange = wanted >> 2;
    cto = wanted !== 0 && (rangeBits & (1 << wantedRange)) !== 0 ? wanted : 0;
    tag10Supported = (devcap2 & PCI_EXP_DEVCAP2.TAG_10BIT_REQ) !== 0;
    tag10Enabled = tag10Supported && (options.tag10BitCompleter ?? true);
    let ctl2 = devctl2 & ~(PCI_EXP_DEVCTL2.COMP_TIMEOUT_MASK | PCI_EXP_DEVCTL2.TAG_10BIT_REQ_EN | PCI_EXP_DEVCTL2.COMP_TMOUT_DIS);
    ctl2 |= cto;
    if (tag10Enabled) ctl2 |= PCI_EXP_DEVCTL2.TAG_10BIT_REQ_EN;
    await writeConfig(access, bdf, cap + PCI_EXP.DEVCTL2, 2, ctl2);
  }
  const lnkcap = await readDw(access, bdf, cap + PCI_EXP.LNKCAP);
  const lnksta = await read16(access, bdf, cap + PCI_EXP.LNKSTA);
  const speed = (code: number): number => PCI_EXP_LINK_SPEED_GTS[code - 1] ?? 0;
  return {
    capOffset: cap,
    version,
    deviceType: (flags & PCI_EXP_FLAGS.TYPE_MASK) >> PCI_EXP_FLAGS.TYPE_SHIFT,
    maxPayloadSupported: mpsSupported,
    maxPayloadSize: mps,
    maxReadRequestSize: limits.mrrs,
    extendedTag: extTag,
    tag10BitSupported: tag10Supported,
    tag10BitEnabled: tag10Enabled,
    flr: (devcap & PCI_EXP_DEVCAP.FLR) !== 0,
    completionTimeoutRanges: ranges,
    completionTimeoutValue: cto,
    maxLinkSpeedGts: speed(lnkcap & PCI_EXP_LNKCAP.SLS_MASK),
    maxLinkWidth: (lnkcap & PCI_EXP_LNKCAP.MLW_MASK) >> PCI_EXP_LNKCAP.MLW_SHIFT,
    linkSpeedGts: speed(lnksta & PCI_EXP_LNKSTA.CLS_MASK),
    linkWidth: (lnksta & PCI_EXP_LNKSTA.NLW_MASK) >> PCI_EXP_LNKSTA.NLW_SHIFT,
  };
}

/**
 * §7.7.2 / §6.1.4.5: enable MSI-X with the Function Mask set, program each entry (address,
 * data, unmask), then clear the Function Mask — so no half-programmed entry can fire. The
 * closing config write is non-posted and may not pass the posted table writes, so the table is
 * complete when the device sees the mask drop.
 */
async function setUpMsix(
  access: ConfigAccess,
  mmio: MmioAccess,
  f: EnumeratedFunction,
  count: number,
  interrupts: InterruptAllocator,
  log: Logger,
): Promise<MsiMessage[]> {
  const msix = f.msix;
  if (msix === null || count < 1) return [];
  const bar = f.bars.find((b) => b.index === msix.tableBar);
  if (bar === undefined || bar.address === null || bar.kind === 'io') {
    log.warn({ bdf: formatBdf(f.bdf), bar: msix.tableBar }, 'MSI-X table BAR is not assigned: MSI-X left disabled');
    return [];
  }
  const ctrlAt = msix.capOffset + PCI_MSIX.FLAGS;
  await writeConfig(access, f.bdf, ctrlAt, 2, PCI_MSIX_FLAGS.ENABLE | PCI_MSIX_FLAGS.MASKALL);
  const messages = interrupts.allocateMsix(f.bdf, count);
  const table = bar.address + msix.tableOffset;
  for (let v = 0; v < messages.length; v++) {
    const m = messages[v]!;
    const e = table + v * PCI_MSIX_ENTRY.SIZE;
    await mmio.write32(e + PCI_MSIX_ENTRY.LOWER_ADDR, m.address >>> 0);
    await mmio.write32(e + PCI_MSIX_ENTRY.UPPER_ADDR, Math.floor(m.address / TWO_32) >>> 0);
    await mmio.write32(e + PCI_MSIX_ENTRY.DATA, m.data >>> 0);
    await mmio.write32(e + PCI_MSIX_ENTRY.VECTOR_CTRL, 0);
  }
  await writeConfig(access, f.bdf, ctrlAt, 2, PCI_MSIX_FLAGS.ENABLE);
  return messages;
}

// ---------------------------------------------------------------------------------------------
// interrupt mode switches (what pci_alloc_irq_vectors / pci_free_irq_vectors do to the device)

/** Sets or clears MSI-X Enable (leaving the table as programmed). */
export async function setMsixEnabled(access: ConfigAccess, f: EnumeratedFunction, enabled: boolean): Promise<void> {
  if (f.msix === null) throw new TlpwireError('ERR_CONFIG', `${formatBdf(f.bdf)} has no MSI-X capability`);
  await writeConfig(access, f.bdf, f.msix.capOffset + PCI_MSIX.FLAGS, 2, enabled ? PCI_MSIX_FLAGS.ENABLE : 0);
}

/**
 * Programs the MSI capability for `vectors` (a power of two ≤ capable) with `message` (its data
 * aligned to `vectors`) and enables it; or disables MSI when `message` is null.
 */
export async function configureMsi(
  access: ConfigAccess,
  f: EnumeratedFunction,
  message: MsiMessage | null,
  vectors = 1,
): Promise<void> {
  const msi = f.msi;
  if (msi === null) throw new TlpwireError('ERR_CONFIG', `${formatBdf(f.bdf)} has no MSI capability`);
  const ctrlAt = msi.capOffset + PCI_MSI.FLAGS;
  if (message === null) {
    await writeConfig(access, f.bdf, ctrlAt, 2, 0);
    return;
  }
  if (!isPow2(vectors) || vectors > msi.vectorsCapable) {
    throw new TlpwireError('ERR_CONFIG', `MSI: ${vectors} vectors requested, ${msi.vectorsCapable} capable`);
  }
  if ((message.data & (vectors - 1)) !== 0) throw new TlpwireError('ERR_CONFIG', 'MSI data must be aligned to the vector count');
  await writeConfig(access, f.bdf, ctrlAt, 2, 0);
  await writeConfig(access, f.bdf, msi.capOffset + PCI_MSI.ADDRESS_LO, 4, message.address >>> 0);
  if (msi.address64) {
    await writeConfig(access, f.bdf, msi.capOffset + PCI_MSI.ADDRESS_HI, 4, Math.floor(message.address / TWO_32) >>> 0);
  } else if (message.address >= TWO_32) {
    throw new TlpwireError('ERR_CONFIG', 'MSI: a 32-bit capability cannot take an address above 4 GiB');
  }
  await writeConfig(access, f.bdf, msi.capOffset + (msi.address64 ? PCI_MSI.DATA_64 : PCI_MSI.DATA_32), 2, message.data);
  const mme = Math.log2(vectors) << PCI_MSI_FLAGS.QSIZE_SHIFT;
  await writeConfig(access, f.bdf, ctrlAt, 2, mme | PCI_MSI_FLAGS.ENABLE);
}

// ---------------------------------------------------------------------------------------------
// presentation

/** One bus behind one root port, for `formatLspciTree`. */
export interface TreeBus {
  /** The root port's device number on bus 0. */
  rootPortDevice: number;
  secondaryBus: number;
  functions: readonly EnumeratedFunction[];
}

interface TreeNode {
  label: string;
  text?: string;
  bridge?: { bus: number; children: TreeNode[] };
}

/** "104c:b500 [ff00]" by default: IDs and class, as `lspci -tvnn` would show without pci.ids. */
export function describeFunctionIds(f: EnumeratedFunction): string {
  return `${hex4(f.vendorId)}:${hex4(f.deviceId)} [${hex4(f.classCode >>> 8)}]`;
}

/**
 * The tree in the shape of `lspci -tv`: the root bus, one root port per link with its secondary
 * bus, and the functions on it.
 *
 *   -[0000:00]-+-00.0-[01]----00.0  104c:b500 [ff00] link tester
 *              \-01.0-[02]--+-00.0  …
 *                           \-00.1  …
 */
export function formatLspciTree(buses: readonly TreeBus[], describe: (f: EnumeratedFunction) => string = describeFunctionIds): string {
  const ports: TreeNode[] = [...buses]
    .sort((a, b) => a.rootPortDevice - b.rootPortDevice)
    .map((b) => ({
      label: `${b.rootPortDevice.toString(16).padStart(2, '0')}.0`,
      bridge: {
        bus: b.secondaryBus,
        children: b.functions.map((f) => ({
          label: `${f.device.toString(16).padStart(2, '0')}.${f.function}`,
          text: describe(f),
        })),
      },
    }));
  const out: string[] = [];
  const root = '-[0000:00]-';
  renderBus(ports, root, ' '.repeat(root.length), out);
  return `${out.join('\n')}\n`;
}

function renderBus(children: readonly TreeNode[], first: string, rest: string, out: string[]): void {
  if (children.length === 0) {
    out.push(first);
    return;
  }
  if (children.length === 1) {
    renderNode(children[0]!, `${first}--`, `${rest}  `, out);
    return;
  }
  children.forEach((c, i) => {
    const last = i === children.length - 1;
    renderNode(c, `${i === 0 ? first : rest}${last ? '\\-' : '+-'}`, `${rest}${last ? '  ' : '| '}`, out);
  });
}

function renderNode(n: TreeNode, first: string, rest: string, out: string[]): void {
  const head = first + n.label;
  if (n.bridge !== undefined) {
    const b = `-[${n.bridge.bus.toString(16).padStart(2, '0')}]--`;
    renderBus(n.bridge.children, head + b, rest + ' '.repeat(n.label.length + b.length), out);
    return;
  }
  out.push(n.text === undefined ? head : `${head}  ${n.text}`);
}

function sizeText(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  let u = 0;
  let v = n;
  while (v >= 1024 && v % 1024 === 0 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v}${units[u]}`;
}

/** lspci -v style lines for one function: BARs, PCIe settings, interrupts, capabilities. */
export function formatFunctionDetails(f: EnumeratedFunction, describe: (f: EnumeratedFunction) => string = describeFunctionIds): string {
  const lines: string[] = [`${formatBdf(f.bdf)} ${describe(f)}`];
  for (const b of f.bars) {
    const where = b.address === null ? 'unassigned' : `at ${b.address.toString(16)}`;
    const what =
      b.kind === 'io'
        ? `I/O ports ${where}`
        : `Memory ${where} (${b.kind === 'mem64' ? '64-bit' : '32-bit'}, ${b.prefetchable ? 'prefetchable' : 'non-prefetchable'})`;
    lines.push(`\tRegion ${b.index}: ${what} [size=${sizeText(b.size)}]`);
  }
  const p = f.pcie;
  if (p !== null) {
    const cto = p.completionTimeoutValue === 0 ? 'default 50us-50ms' : `value 0x${p.completionTimeoutValue.toString(16)}`;
    lines.push(
      `\tPCI Express: MPS ${p.maxPayloadSize} (supported ${p.maxPayloadSupported}), MRRS ${p.maxReadRequestSize}, ` +
        `${p.tag10BitEnabled ? '10-bit tags' : p.extendedTag ? '8-bit tags' : '5-bit tags'}, completion timeout ${cto} (ranges ${p.completionTimeoutRanges || 'none'}), ` +
        `link ${p.linkSpeedGts}GT/s x${p.linkWidth}${p.flr ? ', FLR' : ''}`,
    );
  }
  if (f.msix !== null) {
    const v = f.msix.vectors;
    const range = v.length === 0 ? 'disabled' : `${v.length} vectors -> 0x${v[0]!.address.toString(16)}..0x${v[v.length - 1]!.address.toString(16)}`;
    lines.push(`\tMSI-X: table size ${f.msix.tableSize} in BAR${f.msix.tableBar}+0x${f.msix.tableOffset.toString(16)}, PBA BAR${f.msix.pbaBar}+0x${f.msix.pbaOffset.toString(16)}, ${range}`);
  }
  if (f.msi !== null) lines.push(`\tMSI: ${f.msi.vectorsCapable} vectors capable${f.msi.address64 ? ', 64-bit' : ''}`);
  const caps = [...f.capabilities.map((c) => c.name), ...f.extendedCapabilities.map((c) => c.name)];
  if (caps.length > 0) lines.push(`\tCapabilities: ${caps.join(', ')}`);
  if (f.serialNumber !== null) lines.push(`\tSerial number: ${serialText(f.serialNumber)}`);
  return `${lines.join('\n')}\n`;
}

/** DSN as lspci prints it: eight bytes, most significant first, dash-separated. */
export function serialText(sn: bigint): string {
  const parts: string[] = [];
  for (let i = 7; i >= 0; i--) parts.push(((sn >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, '0'));
  return parts.join('-');
}
