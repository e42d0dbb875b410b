/**
 * Builders for the transaction layer: plain byte addresses and lengths in, valid TLP objects out.
 * They fill DEFAULT_HEADER_BITS (override any DW0 bit through the options), pick the 3DW form
 * below 4 GiB and the 4DW form at or above it (§2.2.4.1: requesters must use 32-bit addressing
 * below 4 GB), compute lengthDw and the byte enables, and validate the result (so a read that
 * would cross 4 KB throws ERR_TLP_4K_CROSSING here rather than on the wire).
 *
 * Addresses are numbers: exact below 2^53, which covers all memory tlpwire maps.
 */
import { TlpwireError } from '../core/index.js';
import { PCIE_LIMITS } from '../spec/index.js';
import {
  DEFAULT_HEADER_BITS,
  addressHiOf,
  addressLoOf,
  type AtomicTlp,
  type CfgTlp,
  type CplStatus,
  type CplTlp,
  type IoTlp,
  type MemTlp,
  type MsgTlp,
  type TlpHeaderBits,
} from './types.js';
import { validateTlp } from './validate.js';

/** DW0 bits a builder lets callers override (TC, attributes, TH, TD, EP, AT). */
export type HeaderOptions = Partial<Omit<TlpHeaderBits, 'lengthDw' | 'ecrc'>>;

/*
 * Every builder writes its TLP as one object literal, header bits first, in the order decodeTlp
 * uses, and adds `data` afterwards as decodeTlp does: all TLPs of a family then share one hidden
 * class, so the encoder's property loads stay monomorphic. (An earlier version spread a header
 * object into the literal; V8 turns such spreads into slow-mode objects, and a read's
 * completions cost microseconds each.)
 */
const D = DEFAULT_HEADER_BITS;


function checkAddress(address: number, name = 'address'): void {
  if (!Number.isSafeInteger(address) || address < 0) {
    throw new TlpwireError('ERR_TLP_FIELD', `${name} must be a non-negative integer below 2^53, got ${address}`);
  }
}

const FOUR_GIB = 0x1_0000_0000;

/** The DW span and byte enables covering `byteLength` bytes at byte `address` (§2.2.5.1). */
export interface DwSpan {
  /** DW-aligned start address. */
  dwAddress: number;
  lengthDw: number;
  firstBe: number;
  lastBe: number;
}

/** A zero-length access is one DW with no byte enabled (the flush read / zero-length write). */
export function dwSpan(address: number, byteLength: number): DwSpan {
  spanOf(address, byteLength);
  return { dwAddress: span.dwAddress, lengthDw: span.lengthDw, firstBe: span.firstBe, lastBe: span.lastBe };
}

/** Scratch result of spanOf: builders run to completion before the next call, so one suffices. */
const span: DwSpan = { dwAddress: 0, lengthDw: 0, firstBe: 0, lastBe: 0 };

/** dwSpan into the module scratch `span` (no allocation per TLP). */
function spanOf(address: number, byteLength: number): void {
  checkAddress(address);
  if (!Number.isSafeInteger(byteLength) || byteLength < 0) {
    throw new TlpwireError('ERR_TLP_FIELD', `byteLength must be a non-negative integer, got ${byteLength}`);
  }
  const lead = address & 3; // exact for any safe integer (ToInt32 keeps the low bits); `%` on a double calls fmod
  const dwAddress = address - lead;
  span.dwAddress = dwAddress;
  if (byteLength === 0) {
    span.lengthDw = 1;
    span.firstBe = 0;
    span.lastBe = 0;
    return;
  }
  const lastByte = address + byteLength - 1;
  const lengthDw = (lastByte - (lastByte & 3) - dwAddress) / 4 + 1;
  const firstBe = (0xf << lead) & 0xf;
  const lastMask = 0xf >> (3 - (lastByte & 3));
  span.lengthDw = lengthDw;
  span.firstBe = lengthDw === 1 ? firstBe & lastMask : firstBe;
  span.lastBe = lengthDw === 1 ? 0 : lastMask;
}

export interface MemReadOptions extends HeaderOptions {
  requesterId: number;
  tag: number;
  /** Byte address of the first byte to read. */
  address: number;
  /** Bytes to read; 0 makes a zero-length (flush) read. Must not cross a 4 KB boundary. */
  byteLength: number;
  /** MRdLk instead of MRd. */
  locked?: boolean;
  /** Processing Hint, meaningful with th. */
  ph?: number;
}

export function memReadTlp(opts: MemReadOptions): MemTlp {
  spanOf(opts.address, opts.byteLength);
  const wide = span.dwAddress >= FOUR_GIB;
  const tlp: MemTlp = {
    kind: opts.locked ? (wide ? 'MRdLk64' : 'MRdLk') : wide ? 'MRd64' : 'MRd',
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: span.lengthDw,
    requesterId: opts.requesterId,
    tag: opts.tag,
    firstBe: span.firstBe,
    lastBe: span.lastBe,
    addressHi: addressHiOf(span.dwAddress),
    addressLo: addressLoOf(span.dwAddress),
    ph: opts.ph ?? 0,
  };
  validateTlp(tlp);
  return tlp;
}

export interface MemWriteOptions extends HeaderOptions {
  requesterId: number;
  /** Posted writes carry no meaningful tag (ST[7:0] with th); defaults to 0. */
  tag?: number;
  /** Byte address of data[0]. */
  address: number;
  /** The bytes to write; empty makes a zero-length write. Must not cross a 4 KB boundary. */
  data: Uint8Array;
  ph?: number;
}

/**
 * An MWr/MWr64. When the address and length are DW-aligned `data` becomes the payload as is
 * (no copy); otherwise a DW-padded copy is made and the byte enables mask the padding.
 */
export function memWriteTlp(opts: MemWriteOptions): MemTlp {
  spanOf(opts.address, opts.data.length);
  const lead = opts.address - span.dwAddress;
  let payload = opts.data;
  if (lead !== 0 || opts.data.length !== span.lengthDw * 4) {
    payload = new Uint8Array(span.lengthDw * 4);
    payload.set(opts.data, lead);
  }
  const tlp: MemTlp = {
    kind: span.dwAddress >= FOUR_GIB ? 'MWr64' : 'MWr',
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: span.lengthDw,
    requesterId: opts.requesterId,
    tag: opts.tag ?? 0,
    firstBe: span.firstBe,
    lastBe: span.lastBe,
    addressHi: addressHiOf(span.dwAddress),
    addressLo: addressLoOf(span.dwAddress),
    ph: opts.ph ?? 0,
  };
  tlp.data = payload;
  validateTlp(tlp);
  return tlp;
}

export interface CompletionOptions extends HeaderOptions {
  completerId: number;
  requesterId: number;
  tag: number;
  status?: CplStatus;
  /** Bytes remaining including this completion's; defaults to data.length, or 4 without data. */
  byteCount?: number;
  /** Low 7 bits of the first returned byte's address (0 for non-memory completions). */
  lowerAddress?: number;
  /** Whole DWs of payload; with data this is a CplD (CplDLk when locked). */
  data?: Uint8Array;
  /** Completion for a locked read (CplLk/CplDLk). */
  locked?: boolean;
  bcm?: boolean;
}

export function completionTlp(opts: CompletionOptions): CplTlp {
  const data = opts.data;
  const withData = data !== undefined;
  const tlp: CplTlp = {
    kind: opts.locked ? (withData ? 'CplDLk' : 'CplLk') : withData ? 'CplD' : 'Cpl',
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: withData ? Math.ceil(data.length / 4) : 0,
    completerId: opts.completerId,
    status: opts.status ?? 'SC',
    bcm: opts.bcm ?? false,
    byteCount: opts.byteCount ?? (withData ? Math.min(data.length, PCIE_LIMITS.MAX_BYTE_COUNT) : 4),
    requesterId: opts.requesterId,
    tag: opts.tag,
    lowerAddress: opts.lowerAddress ?? 0,
  };
  if (withData) tlp.data = data;
  validateTlp(tlp);
  return tlp;
}

export interface CfgOptions extends HeaderOptions {
  /** Type 0 (to the device on the link) or Type 1 (to be forwarded by a bridge). */
  configType?: 0 | 1;
  requesterId: number;
  tag: number;
  bus: number;
  device: number;
  function: number;
  /** DW index 0..1023 (byte offset / 4). */
  register: number;
  /** Which bytes of the DW; default all four. */
  firstBe?: number;
}

function cfgTlp(opts: CfgOptions, write: boolean, data?: Uint8Array): CfgTlp {
  const type1 = opts.configType === 1;
  const tlp: CfgTlp = {
    kind: write ? (type1 ? 'CfgWr1' : 'CfgWr0') : type1 ? 'CfgRd1' : 'CfgRd0',
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: 1,
    requesterId: opts.requesterId,
    tag: opts.tag,
    firstBe: opts.firstBe ?? 0xf,
    lastBe: 0,
    bus: opts.bus,
    device: opts.device,
    function: opts.function,
    register: opts.register,
  };
  if (data !== undefined) tlp.data = data;
  validateTlp(tlp);
  return tlp;
}

export function cfgReadTlp(opts: CfgOptions): CfgTlp {
  return cfgTlp(opts, false);
}

/** `data` is the whole DW (4 bytes, byte 0 = lowest address); firstBe says which bytes count. */
export function cfgWriteTlp(opts: CfgOptions & { data: Uint8Array }): CfgTlp {
  return cfgTlp(opts, true, opts.data);
}

export interface IoOptions extends HeaderOptions {
  requesterId: number;
  tag: number;
  /** Byte address in I/O space (32-bit). */
  address: number;
  /** 1..4 bytes, within one DW. */
  byteLength: number;
}

function ioTlp(opts: IoOptions, data?: Uint8Array): IoTlp {
  spanOf(opts.address, opts.byteLength);
  if (span.lengthDw !== 1 || opts.byteLength === 0) {
    throw new TlpwireError('ERR_TLP_FIELD', `an I/O request moves 1..4 bytes within one DW (address ${opts.address}, ${opts.byteLength} bytes)`);
  }
  let payload = data;
  if (data !== undefined && data.length !== 4) {
    payload = new Uint8Array(4);
    payload.set(data.subarray(0, opts.byteLength), opts.address - span.dwAddress);
  }
  const tlp: IoTlp = {
    kind: payload === undefined ? 'IORd' : 'IOWr',
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: 1,
    requesterId: opts.requesterId,
    tag: opts.tag,
    firstBe: span.firstBe,
    lastBe: 0,
    addressHi: addressHiOf(span.dwAddress),
    addressLo: addressLoOf(span.dwAddress),
    ph: 0,
  };
  if (payload !== undefined) tlp.data = payload;
  validateTlp(tlp);
  return tlp;
}

export function ioReadTlp(opts: IoOptions): IoTlp {
  return ioTlp(opts);
}

/** `data` is either the `byteLength` bytes written or the whole 4-byte DW. */
export function ioWriteTlp(opts: IoOptions & { data: Uint8Array }): IoTlp {
  return ioTlp(opts, opts.data);
}

export interface MessageOptions extends HeaderOptions {
  requesterId: number;
  messageCode: number;
  /** r[2:0]: 0 to RC, 1 by address, 2 by ID, 3 broadcast, 4 local, 5 gathered (MSG_ROUTING). */
  routing: number;
  tag?: number;
  headerDw2?: number;
  headerDw3?: number;
  /** Whole DWs of payload; with data this is a MsgD. */
  data?: Uint8Array;
}

export function messageTlp(opts: MessageOptions): MsgTlp {
  const data = opts.data;
  const tlp: MsgTlp = {
    kind: data === undefined ? 'Msg' : 'MsgD',
    // Length is Reserved (0) for a Msg without data (§2.2.8).
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: data === undefined ? 0 : Math.ceil(data.length / 4),
    requesterId: opts.requesterId,
    tag: opts.tag ?? 0,
    routing: opts.routing,
    messageCode: opts.messageCode,
    headerDw2: opts.headerDw2 ?? 0,
    headerDw3: opts.headerDw3 ?? 0,
  };
  if (data !== undefined) tlp.data = data;
  validateTlp(tlp);
  return tlp;
}

export interface AtomicOptions extends HeaderOptions {
  op: 'FetchAdd' | 'Swap' | 'CAS';
  requesterId: number;
  tag: number;
  /** Naturally aligned to the operand size. */
  address: number;
  /** Operands, least significant byte first: 4/8 bytes (FetchAdd, Swap), 8/16/32 (CAS: compare then swap). */
  data: Uint8Array;
}

export function atomicTlp(opts: AtomicOptions): AtomicTlp {
  checkAddress(opts.address);
  const wide = opts.address >= FOUR_GIB;
  const kind: AtomicTlp['kind'] = opts.op === 'FetchAdd' ? (wide ? 'FetchAdd64' : 'FetchAdd') : opts.op === 'Swap' ? (wide ? 'Swap64' : 'Swap') : wide ? 'CAS64' : 'CAS';
  const tlp: AtomicTlp = {
    kind,
    tc: opts.tc ?? D.tc,
    ido: opts.ido ?? D.ido,
    ro: opts.ro ?? D.ro,
    ns: opts.ns ?? D.ns,
    ln: opts.ln ?? D.ln,
    th: opts.th ?? D.th,
    td: opts.td ?? D.td,
    ep: opts.ep ?? D.ep,
    at: opts.at ?? D.at,
    lengthDw: Math.ceil(opts.data.length / 4),
    requesterId: opts.requesterId,
    tag: opts.tag,
    firstBe: 0,
    lastBe: 0,
    addressHi: addressHiOf(opts.address),
    addressLo: addressLoOf(opts.address),
    ph: 0,
    data: opts.data,
  };
  validateTlp(tlp);
  return tlp;
}
