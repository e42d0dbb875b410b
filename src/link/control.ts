/**
 * Link-control item bodies: plain MessagePack maps with string keys (no msgpackr records or other
 * extensions, so any MessagePack library can read them). Bodies come from the other side of the
 * link, so every field is checked here before the Link looks at it.
 */
import { Packr, Unpackr } from 'msgpackr';
import { CREDIT_TYPES } from '../spec/index.js';
import { isDataType, isScaleFactor, type CreditAdvertisement, type CreditType, type CreditValues } from './credits.js';

/** HELLO: the training handshake (docs/PROTOCOL.md, "Handshake"). */
export interface HelloBody {
  protocol: string;
  version: number;
  role: string;
  name?: string;
  capabilities: {
    maxPayloadSize: number;
    tag10Bit: boolean;
    features: string[];
  };
  fc: CreditAdvertisement;
}

export interface ErrorBody {
  code: string;
  message: string;
}

export interface ByeBody {
  reason: string;
}

export type UpdateFcBody = Partial<CreditValues>;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export function packControl(body: object): Uint8Array {
  return packr.pack(body);
}

/** Decodes a control body; a result or a one-line problem description. */
export function unpackControl(bytes: Uint8Array): { ok: true; value: unknown } | { ok: false; problem: string } {
  try {
    return { ok: true, value: unpackr.unpack(bytes) };
  } catch (e) {
    return { ok: false, problem: `undecodable MessagePack body (${e instanceof Error ? e.message : String(e)})` };
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function own(o: Obj, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

const MAX_STRING = 256;
const MAX_FEATURES = 64;

function shortString(v: unknown): v is string {
  return typeof v === 'string' && v.length <= MAX_STRING;
}

/**
 * The frozen part of HELLO, readable in every version: `protocol` and `version`. Checked first, so
 * a partner of another version is told "version mismatch" rather than "bad handshake".
 */
export function helloIdentity(v: unknown): { protocol: unknown; version: unknown } {
  if (!isObj(v)) return { protocol: undefined, version: undefined };
  return { protocol: own(v, 'protocol'), version: own(v, 'version') };
}

/** Validates a HELLO of our version; a typed body or a problem. */
export function parseHello(v: unknown): { ok: true; value: HelloBody } | { ok: false; problem: string } {
  const bad = (problem: string): { ok: false; problem: string } => ({ ok: false, problem: `bad handshake: ${problem}` });
  if (!isObj(v)) return bad('not a map');
  const protocol = own(v, 'protocol');
  const version = own(v, 'version');
  const role = own(v, 'role');
  const name = own(v, 'name');
  const caps = own(v, 'capabilities');
  const fc = own(v, 'fc');
  if (typeof protocol !== 'string') return bad('protocol is not a string');
  if (typeof version !== 'number' || !Number.isInteger(version)) return bad('version is not an integer');
  if (!shortString(role) || role.length === 0) return bad('role is missing');
  if (name !== undefined && !shortString(name)) return bad('name is not a short string');
  if (!isObj(caps)) return bad('capabilities is not a map');
  const mps = own(caps, 'maxPayloadSize');
  const tag10 = own(caps, 'tag10Bit');
  const features = own(caps, 'features');
  if (typeof mps !== 'number' || !Number.isInteger(mps) || mps < 128 || mps > 4096 || (mps & (mps - 1)) !== 0) {
    return bad(`maxPayloadSize ${String(mps)} is not a power of two in 128..4096`);
  }
  if (typeof tag10 !== 'boolean') return bad('tag10Bit is not a boolean');
  if (!Array.isArray(features) || features.length > MAX_FEATURES || !features.every(shortString)) {
    return bad('features is not a list of short strings');
  }
  if (!isObj(fc)) return bad('fc is not a map');
  const credits = own(fc, 'credits');
  const scale = own(fc, 'scale');
  if (!isObj(credits) || !isObj(scale)) return bad('fc.credits / fc.scale are not maps');
  const adv: CreditAdvertisement = {
    credits: { PH: 0, PD: 0, NPH: 0, NPD: 0, CplH: 0, CplD: 0 },
    scale: { PH: 1, PD: 1, NPH: 1, NPD: 1, CplH: 1, CplD: 1 },
  };
  for (const t of CREDIT_TYPES) {
    const c = own(credits, t);
    const s = own(scale, t);
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 0) return bad(`fc.credits.${t} is not a non-negative integer`);
    if (!isScaleFactor(s)) return bad(`fc.scale.${t} is not 1, 4 or 16`);
    adv.credits[t] = c;
    adv.scale[t] = s;
  }
  const value: HelloBody = {
    protocol,
    version,
    role,
    capabilities: { maxPayloadSize: mps, tag10Bit: tag10, features: [...(features as string[])] },
    fc: adv,
  };
  if (name !== undefined) value.name = name;
  return { ok: true, value };
}

/** Validates an UPDATE_FC body: a map from credit type to the DLLP field value (8 or 12 bits). */
export function parseUpdateFc(v: unknown): { ok: true; value: UpdateFcBody } | { ok: false; problem: string } {
  if (!isObj(v)) return { ok: false, problem: 'UpdateFC body is not a map' };
  const out: UpdateFcBody = {};
  for (const key of Object.keys(v)) {
    if (!(CREDIT_TYPES as readonly string[]).includes(key)) return { ok: false, problem: `UpdateFC names unknown credit type ${JSON.stringify(key)}` };
    const t = key as CreditType;
    const field = v[key];
    const max = isDataType(t) ? 0xfff : 0xff;
    if (typeof field !== 'number' || !Number.isInteger(field) || field < 0 || field > max) {
      return { ok: false, problem: `UpdateFC ${t} field ${String(field)} is not an integer in 0..${max}` };
    }
    out[t] = field;
  }
  return { ok: true, value: out };
}

export function parseError(v: unknown): ErrorBody {
  if (!isObj(v)) return { code: 'unknown', message: 'unreadable error item' };
  const code = own(v, 'code');
  const message = own(v, 'message');
  return {
    code: typeof code === 'string' ? code.slice(0, MAX_STRING) : 'unknown',
    message: typeof message === 'string' ? message.slice(0, 1024) : 'no message',
  };
}

export function parseBye(v: unknown): ByeBody {
  const reason = isObj(v) ? own(v, 'reason') : undefined;
  return { reason: typeof reason === 'string' ? reason.slice(0, 1024) : 'no reason given' };
}
