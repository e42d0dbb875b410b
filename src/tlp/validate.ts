/**
 * Field validation shared by the encoder (which may be handed anything at run time) and the
 * decoder (whose fields are in range by construction, so it runs only the spec rules).
 *
 * What is checked, and why only that: the spec lets receivers skip most of these checks, but a
 * codec that feeds a simulator should refuse what a conforming transmitter must never send.
 * Reserved bits are never checked (§2.3: "values in Reserved fields must be ignored"), and
 * checks the spec leaves to receivers that implement a feature (LTR/OBFF/PTM TC0, MPS, MRRS,
 * AT on I/O and configuration requests) are left to the layers that know the configuration.
 *
 * Every error carries the byte offset (from `base`, the TLP's first byte) of the offending field.
 */
import { TlpwireError, type ErrorCode } from '../core/index.js';
import {
  ADDRESS,
  ATOMIC_LENGTHS_DW,
  BYTE_ENABLES,
  CFG_DW2,
  CPL_FIELDS,
  CPL_STATUS,
  MSG_CODES_REQUIRING_TC0,
  MSG_ROUTING_MASK,
  PCIE_LIMITS,
  TAG,
} from '../spec/index.js';
import { KIND_INFO, type KindInfo } from './kinds.js';
import type { AtomicTlp, CfgTlp, CplTlp, IoTlp, MemTlp, MsgTlp, Tlp } from './types.js';

/** Byte offsets of fields within the header (§2.2 header figures). */
export const FIELD_OFFSET = {
  fmtType: 0,
  tc: 1,
  attr: 1,
  length: 2,
  at: 2,
  requesterId: 4,
  completerId: 4,
  status: 6,
  tag: 6,
  byteEnables: 7,
  messageCode: 7,
  cplRequesterId: 8,
  cplTag: 10,
  lowerAddress: 11,
  bus: 8,
  devFn: 9,
  register: 10,
  headerDw2: 8,
  headerDw3: 12,
  addressHi: 8,
} as const;

export function tlpError(code: ErrorCode, message: string, offset: number): TlpwireError {
  return new TlpwireError(code, message, { offset });
}

function fail(code: ErrorCode, message: string, offset: number): never {
  throw tlpError(code, message, offset);
}

/** `(v & mask) === v` holds only for integers 0..mask, whatever `v` really is at run time. */
function isMasked(v: unknown, mask: number): boolean {
  return ((v as number) & mask) === v;
}

function isU32(v: unknown): boolean {
  return typeof v === 'number' && v >>> 0 === v;
}

function checkMask(tlp: Tlp, v: unknown, mask: number, name: string, off: number): void {
  if (!isMasked(v, mask)) fail('ERR_TLP_FIELD', `${tlp.kind}: ${name} must be an integer 0..${mask}, got ${String(v)}`, off);
}

function checkBool(tlp: Tlp, v: unknown, name: string, off: number): void {
  if (typeof v !== 'boolean') fail('ERR_TLP_FIELD', `${tlp.kind}: ${name} must be a boolean, got ${String(v)}`, off);
}

/** Kinds whose Length field is Reserved (§2.2.1.1): `lengthDw` is the raw 10-bit field. */
export function lengthIsReserved(info: KindInfo): boolean {
  return !info.hasData && (info.family === 'cpl' || info.family === 'msg');
}

export function addressLoOffset(info: KindInfo): number {
  return info.fourDw ? 12 : 8;
}

/**
 * Type and range checks of every field an encoder needs (things a decoder cannot produce).
 * Returns the kind's table row.
 */
export function checkFieldRanges(tlp: Tlp, base: number): KindInfo {
  const info = (KIND_INFO as Readonly<Record<string, KindInfo>>)[tlp.kind as string];
  if (info === undefined) fail('ERR_TLP_FIELD', `unknown TLP kind ${JSON.stringify(tlp.kind)}`, base);
  const o = FIELD_OFFSET;
  checkMask(tlp, tlp.tc, 0x7, 'tc', base + o.tc);
  checkMask(tlp, tlp.at, 0x3, 'at', base + o.at);
  checkBool(tlp, tlp.ido, 'ido', base + o.attr);
  checkBool(tlp, tlp.ro, 'ro', base + o.length);
  checkBool(tlp, tlp.ns, 'ns', base + o.length);
  checkBool(tlp, tlp.ln, 'ln', base + o.attr);
  checkBool(tlp, tlp.th, 'th', base + o.attr);
  checkBool(tlp, tlp.td, 'td', base + o.length);
  checkBool(tlp, tlp.ep, 'ep', base + o.length);
  if (lengthIsReserved(info)) {
    checkMask(tlp, tlp.lengthDw, 0x3ff, 'lengthDw (the Reserved Length field)', base + o.length);
  } else if (!isMasked(tlp.lengthDw, 0x7ff) || tlp.lengthDw < 1 || tlp.lengthDw > PCIE_LIMITS.MAX_LENGTH_DW) {
    fail('ERR_TLP_LENGTH', `${tlp.kind}: lengthDw must be 1..1024, got ${String(tlp.lengthDw)}`, base + o.length);
  }
  if (tlp.ecrc !== undefined && (!tlp.td || !isU32(tlp.ecrc))) {
    fail('ERR_TLP_FIELD', `${tlp.kind}: ecrc must be a u32 and only present when td is set`, base + o.length);
  }
  const hdr = info.fourDw ? 16 : 12;
  const data = tlp.data;
  if (info.hasData) {
    if (!(data instanceof Uint8Array)) fail('ERR_TLP_FIELD', `${tlp.kind}: data (a Uint8Array) is required`, base + hdr);
    if (data.length !== tlp.lengthDw * 4) {
      fail('ERR_TLP_LENGTH', `${tlp.kind}: lengthDw ${tlp.lengthDw} needs ${tlp.lengthDw * 4} data bytes, got ${data.length}`, base + o.length);
    }
  } else if (data !== undefined) {
    fail('ERR_TLP_FIELD', `${tlp.kind}: this kind carries no data`, base + o.fmtType);
  }
  checkMask(tlp, tlp.tag, TAG.MAX_10BIT, 'tag', base + (info.family === 'cpl' ? o.cplTag : o.tag));
  checkMask(tlp, tlp.requesterId, 0xffff, 'requesterId', base + (info.family === 'cpl' ? o.cplRequesterId : o.requesterId));
  switch (info.family) {
    case 'mem':
    case 'io':
    case 'atomic': {
      const t = tlp as MemTlp | IoTlp | AtomicTlp;
      checkMask(tlp, t.firstBe, 0xf, 'firstBe', base + o.byteEnables);
      checkMask(tlp, t.lastBe, 0xf, 'lastBe', base + o.byteEnables);
      if (!isU32(t.addressHi)) fail('ERR_TLP_FIELD', `${tlp.kind}: addressHi must be a u32`, base + o.addressHi);
      if (!info.fourDw && t.addressHi !== 0) {
        fail('ERR_TLP_FIELD', `${tlp.kind}: a 3DW header carries a 32-bit address; use the 64-bit kind for addresses ≥ 4 GiB`, base + o.addressHi);
      }
      if (!isU32(t.addressLo) || (t.addressLo & ADDRESS.PH_MASK) !== 0) {
        fail('ERR_TLP_FIELD', `${tlp.kind}: addressLo must be a DW-aligned u32 (bits 1:0 are PH, held in ph)`, base + addressLoOffset(info));
      }
      checkMask(tlp, t.ph, ADDRESS.PH_MASK, 'ph', base + addressLoOffset(info) + 3);
      break;
    }
    case 'cfg': {
      const t = tlp as CfgTlp;
      checkMask(tlp, t.firstBe, 0xf, 'firstBe', base + o.byteEnables);
      checkMask(tlp, t.lastBe, 0xf, 'lastBe', base + o.byteEnables);
      checkMask(tlp, t.bus, CFG_DW2.BUS_MASK, 'bus', base + o.bus);
      checkMask(tlp, t.device, CFG_DW2.DEVICE_MASK, 'device', base + o.devFn);
      checkMask(tlp, t.function, CFG_DW2.FUNCTION_MASK, 'function', base + o.devFn);
      checkMask(tlp, t.register, CFG_DW2.MAX_REGISTER, 'register', base + o.register);
      if (t.reserved !== undefined && (t.reserved === 0 || !isMasked(t.reserved, CFG_DW2.RESERVED_MASK))) {
        fail('ERR_TLP_FIELD', `${tlp.kind}: reserved must be absent or non-zero bits of 0x${CFG_DW2.RESERVED_MASK.toString(16)}`, base + o.register);
      }
      break;
    }
    case 'cpl': {
      const t = tlp as CplTlp;
      checkMask(tlp, t.completerId, 0xffff, 'completerId', base + o.completerId);
      if (!Object.prototype.hasOwnProperty.call(CPL_STATUS, t.status)) {
        fail('ERR_TLP_FIELD', `${tlp.kind}: status must be SC, UR, CRS or CA, got ${String(t.status)}`, base + o.status);
      }
      checkBool(tlp, t.bcm, 'bcm', base + o.status);
      if (!isMasked(t.byteCount, 0x1fff) || t.byteCount < 1 || t.byteCount > CPL_FIELDS.BYTE_COUNT_ZERO) {
        fail('ERR_TLP_FIELD', `${tlp.kind}: byteCount must be 1..4096, got ${String(t.byteCount)}`, base + o.status);
      }
      checkMask(tlp, t.lowerAddress, CPL_FIELDS.LOWER_ADDRESS_MASK, 'lowerAddress', base + o.lowerAddress);
      if (t.reserved !== undefined && t.reserved !== CPL_FIELDS.DW2_RESERVED_MASK) {
        fail('ERR_TLP_FIELD', `${tlp.kind}: reserved must be absent or 0x80`, base + o.lowerAddress);
      }
      break;
    }
    case 'msg': {
      const t = tlp as MsgTlp;
      checkMask(tlp, t.routing, MSG_ROUTING_MASK, 'routing', base + o.fmtType);
      checkMask(tlp, t.messageCode, 0xff, 'messageCode', base + o.messageCode);
      if (!isU32(t.headerDw2)) fail('ERR_TLP_FIELD', `${tlp.kind}: headerDw2 must be a u32`, base + o.headerDw2);
      if (!isU32(t.headerDw3)) fail('ERR_TLP_FIELD', `${tlp.kind}: headerDw3 must be a u32`, base + o.headerDw3);
      break;
    }
  }
  return info;
}

const TC0_MESSAGES: ReadonlySet<number> = new Set<number>(MSG_CODES_REQUIRING_TC0);
const FIRST_BE_OK = new Set<number>(BYTE_ENABLES.FIRST_CONTIGUOUS);
const LAST_BE_OK = new Set<number>(BYTE_ENABLES.LAST_CONTIGUOUS);

/** §2.2.5.1 Byte Enable rules for a Memory Request (not applied when TH repurposes them). */
function checkMemByteEnables(t: MemTlp, base: number): void {
  const off = base + FIELD_OFFSET.byteEnables;
  if (t.lengthDw === 1) {
    // Any First DW BE, including 0000b (a zero-length read or write), is legal for 1 DW.
    if (t.lastBe !== 0) fail('ERR_TLP_BYTE_ENABLES', `${t.kind}: lastBe must be 0 for a 1-DW request (§2.2.5.1)`, off);
    return;
  }
  if (t.firstBe === 0) fail('ERR_TLP_BYTE_ENABLES', `${t.kind}: firstBe must be non-zero when lengthDw > 1 (§2.2.5.1)`, off);
  if (t.lastBe === 0) fail('ERR_TLP_BYTE_ENABLES', `${t.kind}: lastBe must be non-zero when lengthDw > 1 (§2.2.5.1)`, off);
  // Non-contiguous enables are allowed only in a QW-aligned 2-DW request.
  const qwAligned = (t.addressLo & ADDRESS.QW_BIT) === 0;
  if (t.lengthDw === 2 && qwAligned) return;
  if (!FIRST_BE_OK.has(t.firstBe) || !LAST_BE_OK.has(t.lastBe)) {
    fail(
      'ERR_TLP_BYTE_ENABLES',
      `${t.kind}: byte enables firstBe=0b${t.firstBe.toString(2).padStart(4, '0')} lastBe=0b${t.lastBe.toString(2).padStart(4, '0')} ` +
        `must be contiguous for ${t.lengthDw === 2 ? 'a non-QW-aligned 2-DW' : 'a ≥3-DW'} request (§2.2.5.1)`,
      off,
    );
  }
}

function checkIoCfg(t: IoTlp | CfgTlp, base: number, what: string): void {
  if (t.lengthDw !== 1) fail('ERR_TLP_LENGTH', `${t.kind}: ${what} requests have lengthDw 1 (§2.2.7.1), got ${t.lengthDw}`, base + FIELD_OFFSET.length);
  if (t.lastBe !== 0) fail('ERR_TLP_BYTE_ENABLES', `${t.kind}: lastBe must be 0 (§2.2.7.1)`, base + FIELD_OFFSET.byteEnables);
  if (t.tc !== 0) fail('ERR_TLP_FIELD', `${t.kind}: ${what} requests must use TC0 (§2.2.7.1)`, base + FIELD_OFFSET.tc);
  if (t.ro || t.ns) fail('ERR_TLP_FIELD', `${t.kind}: ${what} requests must have Attr[1:0] (ro, ns) clear (§2.2.7.1)`, base + FIELD_OFFSET.length);
}

/** The spec's formation rules, for encode and decode alike. */
export function checkSemantics(tlp: Tlp, info: KindInfo, base: number): void {
  switch (info.family) {
    case 'mem': {
      const t = tlp as MemTlp;
      if (!(info.isRead && t.th)) checkMemByteEnables(t, base);
      // §2.2.7.1: no Memory Request may cross a 4-KB boundary.
      if ((t.addressLo & ADDRESS.PAGE_OFFSET_MASK) + t.lengthDw * 4 > PCIE_LIMITS.PAGE_4K) {
        fail(
          'ERR_TLP_4K_CROSSING',
          `${t.kind}: ${t.lengthDw} DW at address offset 0x${(t.addressLo & ADDRESS.PAGE_OFFSET_MASK).toString(16)} crosses a 4-KB boundary (§2.2.7.1)`,
          base + addressLoOffset(info),
        );
      }
      return;
    }
    case 'io':
      checkIoCfg(tlp as IoTlp, base, 'I/O');
      return;
    case 'cfg':
      checkIoCfg(tlp as CfgTlp, base, 'configuration');
      return;
    case 'atomic': {
      const t = tlp as AtomicTlp;
      const isCas = tlp.kind === 'CAS' || tlp.kind === 'CAS64';
      const allowed: readonly number[] = isCas ? ATOMIC_LENGTHS_DW.CAS : ATOMIC_LENGTHS_DW.FETCH_ADD_SWAP;
      if (!allowed.includes(t.lengthDw)) {
        fail('ERR_TLP_LENGTH', `${t.kind}: lengthDw must be one of ${allowed.join(', ')} (§2.2.7.1 Table 2-15), got ${t.lengthDw}`, base + FIELD_OFFSET.length);
      }
      // The address must be naturally aligned to the operand size (CAS carries two operands).
      const operandBytes = isCas ? t.lengthDw * 2 : t.lengthDw * 4;
      if (t.addressLo % operandBytes !== 0) {
        fail('ERR_TLP_FIELD', `${t.kind}: address must be aligned to the ${operandBytes}-byte operand (§2.2.7.1)`, base + addressLoOffset(info));
      }
      return;
    }
    case 'msg': {
      const t = tlp as MsgTlp;
      if (t.tc !== 0 && TC0_MESSAGES.has(t.messageCode)) {
        fail('ERR_TLP_FIELD', `${t.kind}: message code 0x${t.messageCode.toString(16)} must use TC0 (§2.2.8)`, base + FIELD_OFFSET.tc);
      }
      return;
    }
    case 'cpl':
      return;
  }
}

/** Throws a TlpwireError (with the field's byte offset from `base`) if the TLP may not be sent. */
export function validateTlp(tlp: Tlp, base = 0): void {
  const info = checkFieldRanges(tlp, base);
  checkSemantics(tlp, info, base);
}
