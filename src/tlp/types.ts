/**
 * The TLP as a discriminated union on `kind`. Field names are the ones the CLI prints as JSON.
 *
 * Addresses are carried as two u32 halves (`addressHi`, `addressLo`) exactly as the 4DW header
 * has them, so every 64-bit address round-trips bit for bit without bigint on the hot path.
 * 3DW forms have addressHi = 0. The low two bits of `addressLo` are always 0 (they are PH on the
 * wire); `ph` holds them. `joinAddress` gives a number for addresses below 2^53, which is all
 * the memory that tlpwire itself maps.
 */

export type MemKind = 'MRd' | 'MRd64' | 'MRdLk' | 'MRdLk64' | 'MWr' | 'MWr64';
export type IoKind = 'IORd' | 'IOWr';
export type CfgKind = 'CfgRd0' | 'CfgWr0' | 'CfgRd1' | 'CfgWr1';
export type CplKind = 'Cpl' | 'CplD' | 'CplLk' | 'CplDLk';
export type MsgKind = 'Msg' | 'MsgD';
export type AtomicKind = 'FetchAdd' | 'FetchAdd64' | 'Swap' | 'Swap64' | 'CAS' | 'CAS64';
export type TlpKind = MemKind | IoKind | CfgKind | CplKind | MsgKind | AtomicKind;

export type CplStatus = 'SC' | 'UR' | 'CRS' | 'CA';

/**
 * DW0 fields every TLP has. Booleans are single bits.
 *
 * `lengthDw` is 1..1024 (0 on the wire = 1024) for every kind whose Length field means
 * something (requests, CplD/CplDLk, MsgD). For Cpl, CplLk and Msg the spec makes Length[9:0]
 * Reserved (§2.2.1.1), so `lengthDw` there is the raw field, 0..1023, normally 0.
 */
export interface TlpHeaderBits {
  tc: number;
  ido: boolean;
  ro: boolean;
  ns: boolean;
  /** DW0 bit 17 (LN in older revisions, reserved later); kept so decode→encode is exact. */
  ln: boolean;
  th: boolean;
  td: boolean;
  ep: boolean;
  at: number;
  lengthDw: number;
  /**
   * The TLP Digest DW as it appears on the wire (big-endian), present when td is set. The
   * encoder computes it when omitted and writes it verbatim when given (so a fault injector can
   * send a bad one); drop it when you change a decoded TLP's fields.
   */
  ecrc?: number;
}

export interface MemTlp extends TlpHeaderBits {
  kind: MemKind;
  requesterId: number;
  /** 8-bit, or 10-bit with T9/T8. */
  tag: number;
  firstBe: number;
  lastBe: number;
  addressHi: number;
  addressLo: number;
  /** Processing Hint (address bits 1:0 on the wire), meaningful when th is set. */
  ph: number;
  /** Payload for MWr/MWr64: exactly lengthDw × 4 bytes. */
  data?: Uint8Array;
}

export interface IoTlp extends TlpHeaderBits {
  kind: IoKind;
  requesterId: number;
  tag: number;
  firstBe: number;
  lastBe: number;
  addressHi: number;
  addressLo: number;
  ph: number;
  data?: Uint8Array;
}

export interface CfgTlp extends TlpHeaderBits {
  kind: CfgKind;
  requesterId: number;
  tag: number;
  firstBe: number;
  lastBe: number;
  bus: number;
  device: number;
  function: number;
  /** DW index 0..1023 (Extended Register Number << 6 | Register Number). */
  register: number;
  /**
   * Reserved DW2 bits (15:12 and 1:0) in place, only when a received TLP had them set: receivers
   * must ignore them and switches forward them unchanged, so decode keeps them for an exact
   * re-encode (and a still-valid ECRC). Absent (never 0) otherwise.
   */
  reserved?: number;
  data?: Uint8Array;
}

export interface CplTlp extends TlpHeaderBits {
  kind: CplKind;
  completerId: number;
  status: CplStatus;
  bcm: boolean;
  /** 1..4096 (0 on the wire = 4096). */
  byteCount: number;
  requesterId: number;
  tag: number;
  lowerAddress: number;
  /** Reserved DW2 bit 7 in place (0x80), only when a received TLP had it set; see CfgTlp.reserved. */
  reserved?: number;
  data?: Uint8Array;
}

export interface MsgTlp extends TlpHeaderBits {
  kind: MsgKind;
  requesterId: number;
  tag: number;
  routing: number;
  messageCode: number;
  /** Header bytes 8..11 and 12..15 as big-endian u32 (address, target ID, or vendor fields). */
  headerDw2: number;
  headerDw3: number;
  data?: Uint8Array;
}

export interface AtomicTlp extends TlpHeaderBits {
  kind: AtomicKind;
  requesterId: number;
  tag: number;
  firstBe: number;
  lastBe: number;
  addressHi: number;
  addressLo: number;
  ph: number;
  /** Operands: 4 or 8 bytes for FetchAdd/Swap, 8, 16 or 32 bytes for CAS. */
  data: Uint8Array;
}

export type Tlp = MemTlp | IoTlp | CfgTlp | CplTlp | MsgTlp | AtomicTlp;

const TWO_32 = 0x1_0000_0000;

/** The address as a number; only exact below 2^53 (callers that route check `addressHi < 2^21`). */
export function joinAddress(hi: number, lo: number): number {
  // hi = 0 keeps a small address a small integer (not a double) for the arithmetic that follows.
  return hi === 0 ? lo : hi * TWO_32 + lo;
}

export function addressHiOf(address: number): number {
  return Math.floor(address / TWO_32);
}

export function addressLoOf(address: number): number {
  return address >>> 0;
}

/** Flow-control class of a TLP (§2.4 ordering and §3.4 credits). */
export type TlpClass = 'P' | 'NP' | 'Cpl';

export function tlpClass(tlp: Tlp): TlpClass {
  switch (tlp.kind) {
    case 'MWr':
    case 'MWr64':
    case 'Msg':
    case 'MsgD':
      return 'P';
    case 'Cpl':
    case 'CplD':
    case 'CplLk':
    case 'CplDLk':
      return 'Cpl';
    default:
      return 'NP';
  }
}

/** Default DW0 bits: TC0, no attributes, no digest. */
export const DEFAULT_HEADER_BITS: Omit<TlpHeaderBits, 'lengthDw'> = {
  tc: 0,
  ido: false,
  ro: false,
  ns: false,
  ln: false,
  th: false,
  td: false,
  ep: false,
  at: 0,
};
