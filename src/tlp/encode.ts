/**
 * TLP encoder. `encodeTlpInto` is the link's hot path: it packs the header DWs by hand
 * (big-endian, byte by byte) straight into the caller's batch buffer and allocates nothing.
 */
import { TlpwireError } from '../core/index.js';
import { CFG_DW2, CPL_FIELDS, CPL_STATUS, DW0, TLP_SIZE } from '../spec/index.js';
import { computeEcrc } from './ecrc.js';
import { KIND_INFO, typeFieldOf, type KindInfo } from './kinds.js';
import type { AtomicTlp, CfgTlp, CplTlp, IoTlp, MemTlp, MsgTlp, Tlp } from './types.js';
import { checkFieldRanges, checkSemantics } from './validate.js';

function putU32(out: Uint8Array, o: number, v: number): void {
  out[o] = v >>> 24;
  out[o + 1] = (v >>> 16) & 0xff;
  out[o + 2] = (v >>> 8) & 0xff;
  out[o + 3] = v & 0xff;
}

/** Bytes the TLP takes on the wire: header, payload, digest. Throws only for an unknown kind. */
export function encodedLength(tlp: Tlp): number {
  const info = (KIND_INFO as Readonly<Record<string, KindInfo>>)[tlp.kind as string];
  if (info === undefined) throw new TlpwireError('ERR_TLP_FIELD', `unknown TLP kind ${JSON.stringify(tlp.kind)}`, { offset: 0 });
  return (
    (info.fourDw ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW) +
    (info.hasData ? (tlp.data?.length ?? 0) : 0) +
    (tlp.td ? TLP_SIZE.DIGEST : 0)
  );
}

function dw0(tlp: Tlp, info: KindInfo, routing: number): number {
  const tag = tlp.tag;
  return (
    ((info.fmt << DW0.FMT_SHIFT) |
      (typeFieldOf(info, routing) << DW0.TYPE_SHIFT) |
      (((tag >>> 9) & 1) << DW0.T9_SHIFT) |
      (tlp.tc << DW0.TC_SHIFT) |
      (((tag >>> 8) & 1) << DW0.T8_SHIFT) |
      (tlp.ido ? 1 << DW0.IDO_SHIFT : 0) |
      (tlp.ln ? 1 << DW0.LN_SHIFT : 0) |
      (tlp.th ? 1 << DW0.TH_SHIFT : 0) |
      (tlp.td ? 1 << DW0.TD_SHIFT : 0) |
      (tlp.ep ? 1 << DW0.EP_SHIFT : 0) |
      (tlp.ro ? 1 << DW0.RO_SHIFT : 0) |
      (tlp.ns ? 1 << DW0.NS_SHIFT : 0) |
      (tlp.at << DW0.AT_SHIFT) |
      (tlp.lengthDw & DW0.LENGTH_MASK)) >>>
    0
  );
}

/** DW1 of a request: Requester ID, Tag[7:0], Last DW BE, First DW BE (or the message code). */
function requestDw1(requesterId: number, tag: number, low8: number): number {
  return ((requesterId << 16) | ((tag & 0xff) << 8) | low8) >>> 0;
}

/**
 * Encodes `tlp` into `out` at `offset` and returns the number of bytes written. Validates first
 * (typed TlpwireError, offset = position in `out` of the bad field) and writes nothing on error.
 * When `td` is set the digest is `tlp.ecrc` if given, else computed (§2.7.1).
 */
export function encodeTlpInto(tlp: Tlp, out: Uint8Array, offset: number): number {
  const info = checkFieldRanges(tlp, offset);
  checkSemantics(tlp, info, offset);
  return writeTlp(tlp, info, out, offset);
}

/**
 * encodeTlpInto without validating the TLP's fields again: for a TLP that passed validateTlp
 * (every builder validates what it returns, and decodeTlp what it accepts) and has not been
 * changed since. The transaction layer sends its own TLPs this way, so each is checked once, where
 * it is made, instead of twice; TLPs from anywhere else (the CLI, JSON, tests, tools) go through
 * encodeTlpInto. The output buffer is still bounds-checked. A TLP that was changed after
 * validation may encode as nonsense: that is the price, and why this is not the default.
 */
export function encodeValidatedTlpInto(tlp: Tlp, out: Uint8Array, offset: number): number {
  const info = (KIND_INFO as Readonly<Record<string, KindInfo>>)[tlp.kind as string];
  if (info === undefined) throw new TlpwireError('ERR_TLP_FIELD', `unknown TLP kind ${JSON.stringify(tlp.kind)}`, { offset });
  return writeTlp(tlp, info, out, offset);
}

function writeTlp(tlp: Tlp, info: KindInfo, out: Uint8Array, offset: number): number {
  const hdr = info.fourDw ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW;
  const payload = info.hasData ? (tlp.data as Uint8Array).length : 0;
  const total = hdr + payload + (tlp.td ? TLP_SIZE.DIGEST : 0);
  if (!Number.isInteger(offset) || offset < 0 || offset + total > out.length) {
    throw new TlpwireError(
      'ERR_TLP_TRUNCATED',
      `output buffer too small: ${tlp.kind} needs ${total} bytes at offset ${offset}, buffer is ${out.length}`,
      { offset: out.length },
    );
  }

  let routing = 0;
  switch (info.family) {
    case 'mem':
    case 'io':
    case 'atomic': {
      const t = tlp as MemTlp | IoTlp | AtomicTlp;
      putU32(out, offset + 4, requestDw1(t.requesterId, t.tag, (t.lastBe << 4) | t.firstBe));
      if (info.fourDw) {
        putU32(out, offset + 8, t.addressHi);
        putU32(out, offset + 12, (t.addressLo | t.ph) >>> 0);
      } else {
        putU32(out, offset + 8, (t.addressLo | t.ph) >>> 0);
      }
      break;
    }
    case 'cfg': {
      const t = tlp as CfgTlp;
      putU32(out, offset + 4, requestDw1(t.requesterId, t.tag, (t.lastBe << 4) | t.firstBe));
      putU32(
        out,
        offset + 8,
        ((t.bus << CFG_DW2.BUS_SHIFT) |
          (t.device << CFG_DW2.DEVICE_SHIFT) |
          (t.function << CFG_DW2.FUNCTION_SHIFT) |
          ((t.register >>> 6) << CFG_DW2.EXT_REGISTER_SHIFT) |
          ((t.register & CFG_DW2.REGISTER_MASK) << CFG_DW2.REGISTER_SHIFT) |
          (t.reserved ?? 0)) >>>
          0,
      );
      break;
    }
    case 'cpl': {
      const t = tlp as CplTlp;
      putU32(
        out,
        offset + 4,
        ((t.completerId << 16) |
          (CPL_STATUS[t.status] << CPL_FIELDS.STATUS_SHIFT) |
          (t.bcm ? 1 << CPL_FIELDS.BCM_SHIFT : 0) |
          (t.byteCount & CPL_FIELDS.BYTE_COUNT_MASK)) >>>
          0,
      );
      putU32(out, offset + 8, ((t.requesterId << 16) | ((t.tag & 0xff) << 8) | (t.reserved ?? 0) | t.lowerAddress) >>> 0);
      break;
    }
    case 'msg': {
      const t = tlp as MsgTlp;
      routing = t.routing;
      putU32(out, offset + 4, requestDw1(t.requesterId, t.tag, t.messageCode));
      putU32(out, offset + 8, t.headerDw2);
      putU32(out, offset + 12, t.headerDw3);
      break;
    }
  }
  putU32(out, offset, dw0(tlp, info, routing));
  if (payload > 0) out.set(tlp.data as Uint8Array, offset + hdr);
  if (tlp.td) {
    const end = offset + hdr + payload;
    putU32(out, end, tlp.ecrc ?? computeEcrc(out, offset, end));
  }
  return total;
}

/** Encodes one TLP into a new buffer of exactly its wire size. */
export function encodeTlp(tlp: Tlp): Uint8Array {
  const out = new Uint8Array(encodedLength(tlp));
  const n = encodeTlpInto(tlp, out, 0);
  return n === out.length ? out : out.subarray(0, n);
}

/**
 * The ECRC this TLP would carry with `td` set, whatever its own `ecrc` and `td` say (§2.7.1).
 * Allocates; for tools and checks, not the hot path.
 */
export function computeTlpEcrc(tlp: Tlp): number {
  const copy = { ...tlp, td: true } as Tlp;
  delete copy.ecrc;
  const bytes = encodeTlp(copy);
  const at = bytes.length - TLP_SIZE.DIGEST;
  return (((bytes[at] as number) << 24) | ((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number)) >>> 0;
}
