/**
 * TLP decoder. Input from the other side of a link is untrusted: decodeTlp throws only
 * TlpwireError (ERR_TLP_*), with `offset` = the byte (in `bytes`) where the problem is.
 *
 * Payloads are zero-copy: `data` is a `subarray` view of the input (a Buffer if the input is
 * one), so it changes if the caller reuses the input buffer. Copy it (`data.slice()`) to keep it
 * past that point.
 *
 * Accepted although a transmitter should not send them: a 4DW memory request addressing below
 * 4 GB (the spec leaves the receiver's behaviour unspecified; tlpwire keeps the form it got) and
 * message routings 110b/111b (Reserved, "terminate at receiver", not Malformed). Reserved header
 * bits are kept (`reserved`) so re-encoding reproduces the input bit for bit.
 *
 * Checks run in the order a receiver would report them: size of the header, Fmt/Type, the size
 * Length and TD imply, the ECRC (ECRC errors take precedence over Malformed TLP, §6.2.3.2.3),
 * then the formation rules (byte enables, 4 KB, I/O and configuration restrictions, ...).
 */
import { CFG_DW2, CPL_FIELDS, DW0, MSG_ROUTING_MASK, TLP_FMT, TLP_SIZE, TLP_TYPE_DMWR } from '../spec/index.js';
import { computeEcrc } from './ecrc.js';
import { kindInfoOfByte0, type KindInfo } from './kinds.js';
import type { CplStatus, Tlp } from './types.js';
import { FIELD_OFFSET, checkSemantics, lengthIsReserved, tlpError } from './validate.js';

const STATUS_BY_CODE: readonly (CplStatus | undefined)[] = ['SC', 'UR', 'CRS', undefined, 'CA', undefined, undefined, undefined];

function getU32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** Classifies header byte 0, throwing ERR_TLP_RESERVED for anything tlpwire does not carry. */
function classify(byte0: number, at: number): KindInfo {
  const info = kindInfoOfByte0(byte0);
  if (info !== undefined) return info;
  const fmt = byte0 >>> 5;
  const type = byte0 & 0x1f;
  if (fmt === TLP_FMT.PREFIX) {
    throw tlpError('ERR_TLP_RESERVED', `TLP prefix (Fmt=100b, Type=0x${hex2(type)}): tlpwire carries TLPs without prefixes`, at);
  }
  if (fmt > TLP_FMT.PREFIX) throw tlpError('ERR_TLP_RESERVED', `reserved Fmt ${fmt.toString(2).padStart(3, '0')}b`, at);
  if (type === TLP_TYPE_DMWR && (fmt & 0b010) !== 0) {
    throw tlpError('ERR_TLP_RESERVED', 'DMWr (Deferrable Memory Write, Type 1_1011b) is not supported by tlpwire', at);
  }
  throw tlpError('ERR_TLP_RESERVED', `reserved Fmt/Type combination: Fmt=${fmt.toString(2).padStart(3, '0')}b Type=0x${hex2(type)} (§2.2.1.1 Table 2-3)`, at);
}

/**
 * The wire size (header + payload + digest) a TLP announces in its first DW; for splitting a
 * stream. Throws ERR_TLP_TRUNCATED when fewer than 4 bytes are available, ERR_TLP_RESERVED for
 * Fmt/Type values tlpwire does not carry.
 */
export function tlpWireLength(bytes: Uint8Array, offset = 0): number {
  if (offset < 0 || offset + 4 > bytes.length) {
    throw tlpError('ERR_TLP_TRUNCATED', `need 4 bytes for a TLP's first DW at offset ${offset}, have ${Math.max(0, bytes.length - offset)}`, bytes.length);
  }
  const info = classify(bytes[offset] as number, offset);
  const b2 = bytes[offset + 2] as number;
  const lenField = ((b2 & 0x3) << 8) | (bytes[offset + 3] as number);
  const payloadDw = info.hasData ? lenField || TLP_SIZE.LENGTH_FIELD_ZERO_DW : 0;
  return (info.fourDw ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW) + payloadDw * 4 + (b2 & 0x80 ? TLP_SIZE.DIGEST : 0);
}

/**
 * Decodes the TLP occupying exactly `bytes[offset, offset + length)` (default: to the end).
 * See the module comment for the zero-copy payload and the error contract.
 */
export function decodeTlp(bytes: Uint8Array, offset = 0, length: number = bytes.length - offset): Tlp {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > bytes.length) {
    throw tlpError('ERR_TLP_TRUNCATED', `region [${offset}, ${offset}+${length}) is outside the ${bytes.length}-byte input`, bytes.length);
  }
  const end = offset + length;
  if (length < 4) throw tlpError('ERR_TLP_TRUNCATED', `a TLP needs at least 4 bytes, got ${length}`, end);
  const b0 = bytes[offset] as number;
  const info = classify(b0, offset);
  const hdr = info.fourDw ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW;
  if (length < hdr) throw tlpError('ERR_TLP_TRUNCATED', `${info.kind} header is ${hdr} bytes, got ${length}`, end);

  const w0 = getU32(bytes, offset);
  const lenField = w0 & DW0.LENGTH_MASK;
  const td = (w0 & (1 << DW0.TD_SHIFT)) !== 0;
  const payload = info.hasData ? (lenField || TLP_SIZE.LENGTH_FIELD_ZERO_DW) * 4 : 0;
  const expected = hdr + payload + (td ? TLP_SIZE.DIGEST : 0);
  if (length !== expected) {
    throw tlpError(
      'ERR_TLP_LENGTH',
      `${info.kind}: header says ${expected} bytes (${hdr} header + ${payload} payload${td ? ' + 4 digest' : ''}, Length=${lenField}, TD=${td ? 1 : 0}), got ${length}`,
      offset + FIELD_OFFSET.length,
    );
  }
  let ecrc: number | undefined;
  if (td) {
    const at = offset + hdr + payload;
    ecrc = getU32(bytes, at);
    const want = computeEcrc(bytes, offset, at);
    if (ecrc !== want) {
      throw tlpError('ERR_TLP_ECRC', `${info.kind}: ECRC mismatch: digest 0x${ecrc.toString(16).padStart(8, '0')}, computed 0x${want.toString(16).padStart(8, '0')}`, at);
    }
  }

  const w1 = getU32(bytes, offset + 4);
  const w2 = getU32(bytes, offset + 8);
  // Tag[9:8] live in T9/T8 of DW0 for every kind (§2.2.6.2).
  const tagHigh = (((w0 >>> DW0.T9_SHIFT) & 1) << 9) | (((w0 >>> DW0.T8_SHIFT) & 1) << 8);
  const tc = (w0 >>> DW0.TC_SHIFT) & DW0.TC_MASK;
  const ido = (w0 & (1 << DW0.IDO_SHIFT)) !== 0;
  const ro = (w0 & (1 << DW0.RO_SHIFT)) !== 0;
  const ns = (w0 & (1 << DW0.NS_SHIFT)) !== 0;
  const ln = (w0 & (1 << DW0.LN_SHIFT)) !== 0;
  const th = (w0 & (1 << DW0.TH_SHIFT)) !== 0;
  const ep = (w0 & (1 << DW0.EP_SHIFT)) !== 0;
  const at = (w0 >>> DW0.AT_SHIFT) & DW0.AT_MASK;
  const lengthDw = lengthIsReserved(info) ? lenField : lenField || TLP_SIZE.LENGTH_FIELD_ZERO_DW;

  let tlp: Tlp;
  switch (info.family) {
    case 'mem':
    case 'io':
    case 'atomic': {
      const last = info.fourDw ? getU32(bytes, offset + 12) : w2;
      tlp = {
        kind: info.kind as 'MRd',
        tc, ido, ro, ns, ln, th, td, ep, at, lengthDw,
        requesterId: w1 >>> 16,
        tag: tagHigh | ((w1 >>> 8) & 0xff),
        firstBe: w1 & 0xf,
        lastBe: (w1 >>> 4) & 0xf,
        addressHi: info.fourDw ? w2 : 0,
        addressLo: (last & 0xfffffffc) >>> 0,
        ph: last & 0x3,
      };
      break;
    }
    case 'cfg': {
      const reserved = w2 & CFG_DW2.RESERVED_MASK;
      tlp = {
        kind: info.kind as 'CfgRd0',
        tc, ido, ro, ns, ln, th, td, ep, at, lengthDw,
        requesterId: w1 >>> 16,
        tag: tagHigh | ((w1 >>> 8) & 0xff),
        firstBe: w1 & 0xf,
        lastBe: (w1 >>> 4) & 0xf,
        bus: w2 >>> CFG_DW2.BUS_SHIFT,
        device: (w2 >>> CFG_DW2.DEVICE_SHIFT) & CFG_DW2.DEVICE_MASK,
        function: (w2 >>> CFG_DW2.FUNCTION_SHIFT) & CFG_DW2.FUNCTION_MASK,
        register:
          (((w2 >>> CFG_DW2.EXT_REGISTER_SHIFT) & CFG_DW2.EXT_REGISTER_MASK) << 6) |
          ((w2 >>> CFG_DW2.REGISTER_SHIFT) & CFG_DW2.REGISTER_MASK),
      };
      if (reserved !== 0) tlp.reserved = reserved >>> 0;
      break;
    }
    case 'cpl': {
      const code = (w1 >>> CPL_FIELDS.STATUS_SHIFT) & CPL_FIELDS.STATUS_MASK;
      const status = STATUS_BY_CODE[code];
      if (status === undefined) {
        throw tlpError('ERR_TLP_RESERVED', `${info.kind}: reserved Completion Status ${code.toString(2).padStart(3, '0')}b (§2.2.9.1 Table 2-37)`, offset + FIELD_OFFSET.status);
      }
      const reserved = w2 & CPL_FIELDS.DW2_RESERVED_MASK;
      tlp = {
        kind: info.kind as 'Cpl',
        tc, ido, ro, ns, ln, th, td, ep, at, lengthDw,
        completerId: w1 >>> 16,
        status,
        bcm: (w1 & (1 << CPL_FIELDS.BCM_SHIFT)) !== 0,
        byteCount: w1 & CPL_FIELDS.BYTE_COUNT_MASK || CPL_FIELDS.BYTE_COUNT_ZERO,
        requesterId: w2 >>> 16,
        tag: tagHigh | ((w2 >>> 8) & 0xff),
        lowerAddress: w2 & CPL_FIELDS.LOWER_ADDRESS_MASK,
      };
      if (reserved !== 0) tlp.reserved = reserved;
      break;
    }
    case 'msg': {
      tlp = {
        kind: info.kind as 'Msg',
        tc, ido, ro, ns, ln, th, td, ep, at, lengthDw,
        requesterId: w1 >>> 16,
        tag: tagHigh | ((w1 >>> 8) & 0xff),
        routing: b0 & MSG_ROUTING_MASK,
        messageCode: w1 & 0xff,
        headerDw2: w2,
        headerDw3: getU32(bytes, offset + 12),
      };
      break;
    }
  }
  if (payload > 0) tlp.data = bytes.subarray(offset + hdr, offset + hdr + payload);
  if (ecrc !== undefined) tlp.ecrc = ecrc;
  checkSemantics(tlp, info, offset);
  return tlp;
}
