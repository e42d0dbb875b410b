/**
 * The JSON form of a TLP, as the CLI prints and reads it.
 *
 * Field names: kind, fmt, type, tc, ro, ns, ido, ln (only when set), th, td, ep, at, lengthDw,
 * then the kind's own fields (requesterId/completerId, tag, firstBe, lastBe, address as a "0x…"
 * hex string joining addressHi:addressLo, ph, bus, device, function, register, status, bcm,
 * byteCount, lowerAddress, routing, messageCode, headerDw2, headerDw3), reserved (only when a
 * received TLP had reserved header bits set), data (payload as lowercase hex) and ecrc (when
 * td). A kind's JSON has exactly its own fields; `tlpFromJson` rejects any other.
 */
import { TlpwireError, isTlpwireError } from '../core/index.js';
import { CPL_STATUS, MSG_ROUTING_MASK, PCIE_LIMITS } from '../spec/index.js';
import { computeTlpEcrc } from './encode.js';
import { bytesToHex, hexToBytes } from './hex.js';
import { KIND_INFO, isTlpKind, typeFieldOf, type KindInfo, type TlpFamily } from './kinds.js';
import type { CplStatus, Tlp, TlpHeaderBits } from './types.js';
import { lengthIsReserved, validateTlp } from './validate.js';

/** "0x…" lowercase, no leading zeros (a 3DW address prints as 32 bits or fewer). */
export function formatAddress(hi: number, lo: number): string {
  return hi === 0 ? `0x${lo.toString(16)}` : `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`;
}

/** JSON-ready object (numbers, booleans, strings) for one TLP. */
export function tlpToJson(tlp: Tlp): Record<string, unknown> {
  const info = KIND_INFO[tlp.kind];
  const routing = tlp.kind === 'Msg' || tlp.kind === 'MsgD' ? tlp.routing : 0;
  const o: Record<string, unknown> = {
    kind: tlp.kind,
    fmt: info.fmt,
    type: typeFieldOf(info, routing),
    tc: tlp.tc,
    ro: tlp.ro,
    ns: tlp.ns,
    ido: tlp.ido,
  };
  if (tlp.ln) o.ln = true;
  o.th = tlp.th;
  o.td = tlp.td;
  o.ep = tlp.ep;
  o.at = tlp.at;
  o.lengthDw = tlp.lengthDw;
  switch (tlp.kind) {
    case 'Cpl':
    case 'CplD':
    case 'CplLk':
    case 'CplDLk':
      o.completerId = tlp.completerId;
      o.status = tlp.status;
      o.bcm = tlp.bcm;
      o.byteCount = tlp.byteCount;
      o.requesterId = tlp.requesterId;
      o.tag = tlp.tag;
      o.lowerAddress = tlp.lowerAddress;
      if (tlp.reserved !== undefined) o.reserved = tlp.reserved;
      break;
    case 'Msg':
    case 'MsgD':
      o.requesterId = tlp.requesterId;
      o.tag = tlp.tag;
      o.routing = tlp.routing;
      o.messageCode = tlp.messageCode;
      o.headerDw2 = tlp.headerDw2;
      o.headerDw3 = tlp.headerDw3;
      break;
    case 'CfgRd0':
    case 'CfgWr0':
    case 'CfgRd1':
    case 'CfgWr1':
      o.requesterId = tlp.requesterId;
      o.tag = tlp.tag;
      o.firstBe = tlp.firstBe;
      o.lastBe = tlp.lastBe;
      o.bus = tlp.bus;
      o.device = tlp.device;
      o.function = tlp.function;
      o.register = tlp.register;
      if (tlp.reserved !== undefined) o.reserved = tlp.reserved;
      break;
    default:
      o.requesterId = tlp.requesterId;
      o.tag = tlp.tag;
      o.firstBe = tlp.firstBe;
      o.lastBe = tlp.lastBe;
      o.address = formatAddress(tlp.addressHi, tlp.addressLo);
      o.ph = tlp.ph;
  }
  if (tlp.data !== undefined) o.data = bytesToHex(tlp.data);
  if (tlp.td) o.ecrc = tlp.ecrc ?? computeTlpEcrc(tlp);
  return o;
}

const COMMON_FIELDS = ['kind', 'fmt', 'type', 'tc', 'ro', 'ns', 'ido', 'ln', 'th', 'td', 'ep', 'at', 'lengthDw', 'ecrc'];
const FAMILY_FIELDS: Readonly<Record<TlpFamily, readonly string[]>> = {
  mem: ['requesterId', 'tag', 'firstBe', 'lastBe', 'address', 'ph'],
  io: ['requesterId', 'tag', 'firstBe', 'lastBe', 'address', 'ph'],
  atomic: ['requesterId', 'tag', 'firstBe', 'lastBe', 'address', 'ph'],
  cfg: ['requesterId', 'tag', 'firstBe', 'lastBe', 'bus', 'device', 'function', 'register', 'reserved'],
  cpl: ['completerId', 'status', 'bcm', 'byteCount', 'requesterId', 'tag', 'lowerAddress', 'reserved'],
  msg: ['requesterId', 'tag', 'routing', 'messageCode', 'headerDw2', 'headerDw3'],
};

function fieldError(name: string, message: string): TlpwireError {
  return new TlpwireError('ERR_TLP_FIELD', `field '${name}': ${message}`);
}

/** Reads JSON fields with their defaults, naming the field in every error. */
class FieldReader {
  constructor(private readonly obj: Record<string, unknown>) {}

  has(name: string): boolean {
    return this.obj[name] !== undefined;
  }

  bool(name: string): boolean {
    const v = this.obj[name];
    if (v === undefined) return false;
    if (typeof v === 'boolean') return v;
    if (v === 0 || v === 1) return v === 1;
    throw fieldError(name, `must be true or false, got ${JSON.stringify(v)}`);
  }

  /** An integer min..max, as a JSON number or a decimal/"0x" hex string. */
  int(name: string, min: number, max: number, dflt?: number): number {
    const v = this.obj[name];
    if (v === undefined) {
      if (dflt === undefined) throw fieldError(name, 'is required');
      return dflt;
    }
    let n: number;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'string' && /^\s*(0[xX][0-9a-fA-F]+|\d+)\s*$/.test(v)) n = Number(v.trim());
    else throw fieldError(name, `must be an integer ${min}..${max}, got ${JSON.stringify(v)}`);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw fieldError(name, `must be an integer ${min}..${max}, got ${JSON.stringify(v)}`);
    return n;
  }

  hex(name: string): Uint8Array {
    const v = this.obj[name];
    if (typeof v !== 'string') throw fieldError(name, `must be a hex string, got ${JSON.stringify(v)}`);
    try {
      return hexToBytes(v);
    } catch (e) {
      throw fieldError(name, isTlpwireError(e) ? e.message : String(e));
    }
  }

  /** A 64-bit address as "0x…" hex (up to 16 digits) or a non-negative safe integer. */
  address(name: string): { hi: number; lo: number } {
    const v = this.obj[name];
    if (v === undefined) throw fieldError(name, 'is required');
    let hi: number;
    let lo: number;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
      hi = Math.floor(v / 0x1_0000_0000);
      lo = v >>> 0;
    } else if (typeof v === 'string' && /^\s*0[xX][0-9a-fA-F]{1,16}\s*$/.test(v)) {
      const digits = v.trim().slice(2).padStart(16, '0');
      hi = Number.parseInt(digits.slice(0, 8), 16);
      lo = Number.parseInt(digits.slice(8), 16);
    } else if (typeof v === 'string' && /^\s*\d+\s*$/.test(v) && Number.isSafeInteger(Number(v))) {
      const n = Number(v);
      hi = Math.floor(n / 0x1_0000_0000);
      lo = n >>> 0;
    } else {
      throw fieldError(name, `must be a "0x…" hex string of up to 64 bits or a non-negative integer, got ${JSON.stringify(v)}`);
    }
    if ((lo & 3) !== 0) throw fieldError(name, 'bits 1:0 must be 0 (they carry PH on the wire: use the ph field)');
    return { hi, lo };
  }
}

export interface TlpFromJsonOptions {
  /** Compute the ECRC instead of checking a given `ecrc` against it. */
  recomputeEcrc?: boolean;
}

/**
 * Builds a TLP from its JSON form (an already-parsed object). Omitted bits default to false/0,
 * lengthDw comes from `data` when the kind has data (1 for other requests, 0 where Length is
 * Reserved), firstBe defaults to 0xF and lastBe to 0xF for multi-DW memory requests (0 for
 * AtomicOps, whose byte enables are Reserved), status to SC, byteCount to the data size (4 without
 * data). `fmt`/`type`, when given, must agree with `kind`; a given `ecrc` must match (ERR_TLP_ECRC)
 * unless `recomputeEcrc`. Throws TlpwireError naming the field; the result passes validateTlp.
 */
export function tlpFromJson(input: unknown, options: TlpFromJsonOptions = {}): Tlp {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new TlpwireError('ERR_TLP_FIELD', 'a TLP in JSON is an object like {"kind":"MRd",…}');
  }
  const obj = input as Record<string, unknown>;
  const kind = obj.kind;
  if (!isTlpKind(kind)) {
    throw fieldError('kind', `must be one of ${Object.keys(KIND_INFO).join(', ')}, got ${JSON.stringify(kind)}`);
  }
  const info: KindInfo = KIND_INFO[kind];
  const allowed = new Set([...COMMON_FIELDS, ...FAMILY_FIELDS[info.family], ...(info.hasData ? ['data'] : [])]);
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key) && obj[key] !== undefined) throw fieldError(key, `is not a field of a ${kind} TLP`);
  }
  const r = new FieldReader(obj);

  let routing = 0;
  if (info.family === 'msg') {
    const fromType = r.has('type') ? r.int('type', info.type, info.type | MSG_ROUTING_MASK) & MSG_ROUTING_MASK : undefined;
    routing = r.int('routing', 0, MSG_ROUTING_MASK, fromType ?? 0);
    if (fromType !== undefined && fromType !== routing) throw fieldError('type', `0x${(info.type | fromType).toString(16)} disagrees with routing ${routing}`);
  } else if (r.has('type') && r.int('type', 0, 0x1f) !== info.type) {
    throw fieldError('type', `${kind} has Type 0x${info.type.toString(16)}`);
  }
  if (r.has('fmt') && r.int('fmt', 0, 7) !== info.fmt) throw fieldError('fmt', `${kind} has Fmt ${info.fmt}`);

  const data = info.hasData ? r.hex('data') : undefined;
  let lengthDw: number;
  if (data !== undefined) {
    if (data.length === 0 || data.length % 4 !== 0 || data.length > PCIE_LIMITS.MAX_LENGTH_DW * 4) {
      throw fieldError('data', `must be 1..1024 whole DWs (a multiple of 4 bytes), got ${data.length} bytes`);
    }
    lengthDw = r.int('lengthDw', 1, PCIE_LIMITS.MAX_LENGTH_DW, data.length / 4);
    if (lengthDw !== data.length / 4) throw fieldError('lengthDw', `${lengthDw} disagrees with the ${data.length / 4} DW of data`);
  } else if (lengthIsReserved(info)) {
    lengthDw = r.int('lengthDw', 0, 0x3ff, 0);
  } else {
    lengthDw = r.int('lengthDw', 1, PCIE_LIMITS.MAX_LENGTH_DW, 1);
  }

  const td = r.bool('td');
  const bits: TlpHeaderBits = {
    tc: r.int('tc', 0, 7, 0),
    ido: r.bool('ido'),
    ro: r.bool('ro'),
    ns: r.bool('ns'),
    ln: r.bool('ln'),
    th: r.bool('th'),
    td,
    ep: r.bool('ep'),
    at: r.int('at', 0, 3, 0),
    lengthDw,
  };
  const requesterId = r.int('requesterId', 0, 0xffff, 0);
  const tag = r.int('tag', 0, 0x3ff, 0);

  let tlp: Tlp;
  switch (info.family) {
    case 'mem':
    case 'io':
    case 'atomic': {
      const { hi, lo } = r.address('address');
      const atomic = info.family === 'atomic';
      tlp = {
        kind: kind as 'MWr',
        ...bits,
        requesterId,
        tag,
        firstBe: r.int('firstBe', 0, 0xf, atomic ? 0 : 0xf),
        lastBe: r.int('lastBe', 0, 0xf, info.family === 'mem' && lengthDw > 1 ? 0xf : 0),
        addressHi: hi,
        addressLo: lo,
        ph: r.int('ph', 0, 3, 0),
      };
      break;
    }
    case 'cfg':
      tlp = {
        kind: kind as 'CfgRd0',
        ...bits,
        requesterId,
        tag,
        firstBe: r.int('firstBe', 0, 0xf, 0xf),
        lastBe: r.int('lastBe', 0, 0xf, 0),
        bus: r.int('bus', 0, 0xff, 0),
        device: r.int('device', 0, 0x1f, 0),
        function: r.int('function', 0, 7, 0),
        register: r.int('register', 0, 0x3ff, 0),
      };
      if (r.has('reserved')) tlp.reserved = r.int('reserved', 1, 0xffffffff);
      break;
    case 'cpl': {
      const statusRaw = obj.status ?? 'SC';
      const status: CplStatus | undefined =
        statusRaw === 'RRS' ? 'CRS' : typeof statusRaw === 'string' && Object.prototype.hasOwnProperty.call(CPL_STATUS, statusRaw) ? (statusRaw as CplStatus) : undefined;
      if (status === undefined) throw fieldError('status', `must be "SC", "UR", "CRS" (or "RRS") or "CA", got ${JSON.stringify(statusRaw)}`);
      tlp = {
        kind: kind as 'Cpl',
        ...bits,
        completerId: r.int('completerId', 0, 0xffff, 0),
        status,
        bcm: r.bool('bcm'),
        byteCount: r.int('byteCount', 1, 4096, data !== undefined ? Math.min(data.length, 4096) : 4),
        requesterId,
        tag,
        lowerAddress: r.int('lowerAddress', 0, 0x7f, 0),
      };
      if (r.has('reserved')) tlp.reserved = r.int('reserved', 1, 0xff);
      break;
    }
    case 'msg':
      tlp = {
        kind: kind as 'Msg',
        ...bits,
        requesterId,
        tag,
        routing,
        messageCode: r.int('messageCode', 0, 0xff, 0),
        headerDw2: r.int('headerDw2', 0, 0xffffffff, 0),
        headerDw3: r.int('headerDw3', 0, 0xffffffff, 0),
      };
      break;
  }
  if (data !== undefined) tlp.data = data;
  if (r.has('ecrc')) {
    if (!td) throw fieldError('ecrc', 'is only meaningful with td set');
    const given = r.int('ecrc', 0, 0xffffffff);
    if (!options.recomputeEcrc) {
      validateTlp(tlp);
      const want = computeTlpEcrc(tlp);
      if (given !== want) {
        throw new TlpwireError('ERR_TLP_ECRC', `field 'ecrc': 0x${given.toString(16).padStart(8, '0')} does not match the computed 0x${want.toString(16).padStart(8, '0')}`);
      }
      tlp.ecrc = given;
    }
  }
  validateTlp(tlp);
  return tlp;
}
