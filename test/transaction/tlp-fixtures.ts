/**
 * Small literal TLPs for ordering tests, built from DEFAULT_HEADER_BITS (not through the
 * builders: the queues only look at kind, TC, attributes, IDs and tag).
 */
import { DEFAULT_HEADER_BITS, type AtomicTlp, type CfgTlp, type CplTlp, type MemTlp, type MsgTlp } from '../../src/tlp/index.js';

export interface Attrs {
  tc?: number;
  ro?: boolean;
  ido?: boolean;
  requesterId?: number;
  tag?: number;
}

const PAYLOAD = new Uint8Array(4);

function hdr(a: Attrs): { tc: number; ro: boolean; ido: boolean } & typeof DEFAULT_HEADER_BITS {
  return { ...DEFAULT_HEADER_BITS, tc: a.tc ?? 0, ro: a.ro ?? false, ido: a.ido ?? false };
}

export function mwr(a: Attrs = {}): MemTlp {
  return {
    kind: 'MWr', ...hdr(a), lengthDw: 1, requesterId: a.requesterId ?? 1, tag: a.tag ?? 0,
    firstBe: 0xf, lastBe: 0, addressHi: 0, addressLo: 0x1000, ph: 0, data: PAYLOAD,
  };
}

export function msg(a: Attrs = {}): MsgTlp {
  return {
    kind: 'Msg', ...hdr(a), lengthDw: 0, requesterId: a.requesterId ?? 1, tag: 0, routing: 4,
    messageCode: 0x20, headerDw2: 0, headerDw3: 0,
  };
}

export function mrd(a: Attrs = {}): MemTlp {
  return {
    kind: 'MRd', ...hdr(a), lengthDw: 1, requesterId: a.requesterId ?? 1, tag: a.tag ?? 0,
    firstBe: 0xf, lastBe: 0, addressHi: 0, addressLo: 0x2000, ph: 0,
  };
}

export function cfgWr(a: Attrs = {}): CfgTlp {
  return {
    kind: 'CfgWr0', ...hdr(a), lengthDw: 1, requesterId: a.requesterId ?? 1, tag: a.tag ?? 0,
    firstBe: 0xf, lastBe: 0, bus: 1, device: 0, function: 0, register: 4, data: PAYLOAD,
  };
}

/** `completerId` is what IDO compares for completions; `requesterId`/`tag` name the transaction. */
export function cpl(a: Attrs & { completerId?: number; withData?: boolean } = {}): CplTlp {
  const withData = a.withData ?? true;
  const t: CplTlp = {
    kind: withData ? 'CplD' : 'Cpl', ...hdr(a), lengthDw: withData ? 1 : 0, completerId: a.completerId ?? 2,
    status: 'SC', bcm: false, byteCount: 4, requesterId: a.requesterId ?? 1, tag: a.tag ?? 0, lowerAddress: 0,
  };
  if (withData) t.data = PAYLOAD;
  return t;
}

/** A non-posted request with data that may carry RO/IDO (an AtomicOp). */
export function fetchAdd(a: Attrs = {}): AtomicTlp {
  return {
    kind: 'FetchAdd', ...hdr(a), lengthDw: 1, requesterId: a.requesterId ?? 1, tag: a.tag ?? 0,
    firstBe: 0, lastBe: 0, addressHi: 0, addressLo: 0x3000, ph: 0, data: PAYLOAD,
  };
}
