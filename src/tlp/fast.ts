/**
 * The wire side of the DMA fast paths. Bulk DMA is two kinds of TLP: memory writes, and the data
 * completions of memory reads. Building a TLP object for each 256-byte piece, validating it,
 * encoding it and, on the other side, decoding it into a new object costs several times what
 * moving its bytes costs, so the transaction layer and the link move these two kinds here without
 * TLP objects:
 *
 * - `encodeMemWriteInto` / `encodeCompletionDataInto` write the TLP straight from the data's own
 *   buffer into the link's batch. The bytes are exactly what `encodeTlpInto` writes for the TLP
 *   that `memWriteTlp` / `completionTlp` would build from the same arguments (the tests compare
 *   them), and the fields are checked as those builders check them: the per-request fields once
 *   (`checkMemWriteFields`, `checkCompletionFields`), the per-piece ones on every call.
 * - `parseMemWrite` / `parseCompletionData` read a received MWr/MWr64 or CplD/CplDLk into a
 *   reusable view. They accept exactly what `decodeTlp` accepts for these kinds, except that
 *   they decline (return false) anything unusual — a digest, or anything decodeTlp would refuse —
 *   so that the caller hands those to decodeTlp, which reports them as it always has.
 */
import { TlpwireError } from '../core/index.js';
import { ADDRESS, BYTE_ENABLES, CPL_FIELDS, DW0, PCIE_LIMITS, TAG, TLP_FMT, TLP_SIZE, TLP_TYPE } from '../spec/index.js';

const FOUR_GIB = 0x1_0000_0000;
/** Header byte 0 of the kinds handled here. */
export const BYTE0_MWR = (TLP_FMT.DATA_3DW << 5) | TLP_TYPE.MEM;
export const BYTE0_MWR64 = (TLP_FMT.DATA_4DW << 5) | TLP_TYPE.MEM;
export const BYTE0_CPLD = (TLP_FMT.DATA_3DW << 5) | TLP_TYPE.CPL;
export const BYTE0_CPLDLK = (TLP_FMT.DATA_3DW << 5) | TLP_TYPE.CPL_LOCKED;

function putU32(out: Uint8Array, o: number, v: number): void {
  out[o] = v >>> 24;
  out[o + 1] = (v >>> 16) & 0xff;
  out[o + 2] = (v >>> 8) & 0xff;
  out[o + 3] = v & 0xff;
}

function getU32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

function fieldError(what: string, message: string, offset = 0): TlpwireError {
  return new TlpwireError('ERR_TLP_FIELD', `${what}: ${message}`, { offset });
}

function isU(v: unknown, mask: number): boolean {
  return ((v as number) & mask) === v;
}

/** DW0 attribute bits shared by both kinds (TC, IDO, TH, RO, NS); LN, TD, EP and AT are 0. */
function attributeBits(tc: number, ido: boolean, th: boolean, ro: boolean, ns: boolean): number {
  return (
    (tc << DW0.TC_SHIFT) |
    (ido ? 1 << DW0.IDO_SHIFT : 0) |
    (th ? 1 << DW0.TH_SHIFT : 0) |
    (ro ? 1 << DW0.RO_SHIFT : 0) |
    (ns ? 1 << DW0.NS_SHIFT : 0)
  );
}

// ------------------------------------------------------------------------------------------------
// memory writes

/** The fields of a requester's DMA write that are the same for all its TLPs (memWriteTlp's options). */
export interface MemWriteFields {
  requesterId: number;
  tc: number;
  ro: boolean;
  ns: boolean;
  ido: boolean;
  th: boolean;
}

/** Throws the ERR_TLP_FIELD that memWriteTlp would throw for these fields. */
export function checkMemWriteFields(f: MemWriteFields): void {
  if (!isU(f.requesterId, 0xffff)) throw fieldError('MWr', `requesterId must be an integer 0..65535, got ${String(f.requesterId)}`, 4);
  if (!isU(f.tc, 0x7)) throw fieldError('MWr', `tc must be an integer 0..7, got ${String(f.tc)}`, 1);
  for (const k of ['ro', 'ns', 'ido', 'th'] as const) {
    if (typeof f[k] !== 'boolean') throw fieldError('MWr', `${k} must be a boolean, got ${String(f[k])}`, 1);
  }
}

/**
 * The MWr (below 4 GiB) or MWr64 that writes src[srcOffset, srcOffset + length) at `address`,
 * into `out` at `offset`; returns its size. Whole DWs only: `address` and `length` multiples of
 * 4, 4..4096 bytes, not crossing 4 KiB (memWriteTlp handles the rest, with byte enables). Tag 0,
 * PH 0, no digest, as memWriteTlp makes them by default.
 */
export function encodeMemWriteInto(
  out: Uint8Array,
  offset: number,
  f: MemWriteFields,
  address: number,
  src: Uint8Array,
  srcOffset: number,
  length: number,
): number {
  if (!(srcOffset >= 0 && srcOffset + length <= src.length)) throw fieldError('MWr', `source range ${srcOffset}+${length} is outside its ${src.length}-byte buffer`);
  const hdr = encodeMemWriteHeaderInto(out, offset, f, address, length);
  out.set(srcOffset === 0 && length === src.length ? src : src.subarray(srcOffset, srcOffset + length), offset + hdr);
  return hdr + length;
}

/**
 * encodeMemWriteInto without the payload: the header of a `length`-byte MWr/MWr64 at `out[offset]`,
 * with the same checks (the payload's room included); returns the header's size. The caller puts
 * the payload right after it (Link.sendMemWrites copies a whole run's payloads in one call).
 */
export function encodeMemWriteHeaderInto(out: Uint8Array, offset: number, f: MemWriteFields, address: number, length: number): number {
  if (!(Number.isSafeInteger(address) && address >= 0 && (address & 3) === 0 && (length & 3) === 0 && length >= 4 && length <= PCIE_LIMITS.PAGE_4K)) {
    throw fieldError('MWr', `the fast path writes whole DWs (4..4096 bytes at a DW-aligned address), got ${length} bytes at ${address}`);
  }
  if ((address & ADDRESS.PAGE_OFFSET_MASK) + length > PCIE_LIMITS.PAGE_4K) {
    throw new TlpwireError('ERR_TLP_4K_CROSSING', `MWr: ${length} bytes at ${address} cross a 4-KB boundary (§2.2.7.1)`, { offset: 8 });
  }
  const wide = address >= FOUR_GIB;
  const hdr = wide ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW;
  if (!(offset >= 0 && offset + hdr + length <= out.length)) {
    throw new TlpwireError('ERR_TLP_TRUNCATED', `output buffer too small: MWr needs ${hdr + length} bytes at offset ${offset}, buffer is ${out.length}`, { offset: out.length });
  }
  const lengthDw = length >>> 2;
  putU32(
    out,
    offset,
    (((wide ? TLP_FMT.DATA_4DW : TLP_FMT.DATA_3DW) << DW0.FMT_SHIFT) |
      (TLP_TYPE.MEM << DW0.TYPE_SHIFT) |
      attributeBits(f.tc, f.ido, f.th, f.ro, f.ns) |
      (lengthDw & DW0.LENGTH_MASK)) >>>
      0,
  );
  // Tag 0; whole DWs: First DW BE 1111b, Last DW BE 1111b (0000b for a single DW).
  putU32(out, offset + 4, ((f.requesterId << 16) | ((lengthDw === 1 ? 0 : 0xf) << BYTE_ENABLES.LAST_SHIFT) | 0xf) >>> 0);
  if (wide) {
    putU32(out, offset + 8, Math.floor(address / FOUR_GIB));
    putU32(out, offset + 12, address >>> 0);
  } else {
    putU32(out, offset + 8, address);
  }
  return hdr;
}

/**
 * encodeMemWriteHeaderInto for `count` writes of `length` bytes each, one after another from
 * `address` (each within its own 4 KB page: a sender's MPS pieces), all below 4 GiB or all at or
 * above it; their headers go `stride` bytes apart from `offset`. Returns the header size. The
 * first header is encodeMemWriteHeaderInto's; the others share its first two DWs.
 */
export function encodeMemWriteHeadersInto(out: Uint8Array, offset: number, stride: number, f: MemWriteFields, address: number, length: number, count: number): number {
  const hdr = encodeMemWriteHeaderInto(out, offset, f, address, length);
  if (count <= 1) return hdr;
  const last = address + (count - 1) * length;
  if (!(Number.isSafeInteger(last) && last >= FOUR_GIB === address >= FOUR_GIB && stride >= hdr + length && offset + (count - 1) * stride + hdr + length <= out.length)) {
    throw fieldError('MWr', `${count} writes of ${length} bytes from ${address} (headers ${stride} bytes apart at ${offset}) do not fit one header form and the buffer`);
  }
  const dw0 = getU32(out, offset);
  const dw1 = getU32(out, offset + 4);
  const wide = hdr === TLP_SIZE.HEADER_4DW;
  let o = offset + stride;
  for (let i = 1; i < count; i++, o += stride) {
    const a = address + i * length;
    if ((a & ADDRESS.PAGE_OFFSET_MASK) + length > PCIE_LIMITS.PAGE_4K) {
      throw new TlpwireError('ERR_TLP_4K_CROSSING', `MWr: ${length} bytes at ${a} cross a 4-KB boundary (§2.2.7.1)`, { offset: 8 });
    }
    putU32(out, o, dw0);
    putU32(out, o + 4, dw1);
    if (wide) {
      putU32(out, o + 8, Math.floor(a / FOUR_GIB));
      putU32(out, o + 12, a >>> 0);
    } else {
      putU32(out, o + 8, a);
    }
  }
  return hdr;
}

/** A received memory request's header fields, as the fast parsers read them. */
class MemRequestView {
  wide = false;
  requesterId = 0;
  tag = 0;
  tc = 0;
  ido = false;
  ro = false;
  ns = false;
  ln = false;
  th = false;
  ep = false;
  at = 0;
  lengthDw = 0;
  firstBe = 0;
  lastBe = 0;
  addressHi = 0;
  addressLo = 0;
  ph = 0;
}

/** A received MWr/MWr64, as parseMemWrite reads it; only valid until the next parse into it. */
export class MemWriteView extends MemRequestView {
  /** Where the payload is in the parsed bytes, and its size (lengthDw × 4). */
  dataOffset = 0;
  dataLength = 0;
}

/** A received MRd/MRd64, as parseMemRead reads it; only valid until the next parse into it. */
export class MemReadView extends MemRequestView {
  /** Where the TLP is in the parsed bytes (for decodeTlp, should its receiver need the object). */
  tlpOffset = 0;
  tlpLength = 0;
}

const FIRST_BE_CONTIGUOUS = beTable(BYTE_ENABLES.FIRST_CONTIGUOUS);
const LAST_BE_CONTIGUOUS = beTable(BYTE_ENABLES.LAST_CONTIGUOUS);

function beTable(values: readonly number[]): Uint8Array {
  const t = new Uint8Array(16);
  for (const v of values) t[v] = 1;
  return t;
}

/**
 * Reads the MWr or MWr64 at bytes[offset, offset + length) into `v` and returns true, if
 * decodeTlp would accept it and it has no digest; false for anything else (nothing to report:
 * decodeTlp does that).
 */
export function parseMemWrite(bytes: Uint8Array, offset: number, length: number, v: MemWriteView): boolean {
  if (length < TLP_SIZE.HEADER_3DW) return false;
  const b0 = bytes[offset] as number;
  const wide = b0 === BYTE0_MWR64;
  if (!wide && b0 !== BYTE0_MWR) return false;
  const lengthDw = parseMemRequest(bytes, offset, length, v, wide, false);
  if (lengthDw === 0) return false;
  v.dataOffset = offset + (wide ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW);
  v.dataLength = lengthDw * 4;
  return true;
}

/**
 * The header of the MWr (read false) or MRd (read true) whose byte 0 said `wide` or not, read into
 * `v`: returns its Length in DWs, or 0 when the fast path does not take it. Both refuse a digest
 * (the ECRC is decodeTlp's to check), a size that disagrees with Length and the byte enables
 * decodeTlp refuses; a read also refuses EP, TH and a zero First DW BE.
 */
function parseMemRequest(bytes: Uint8Array, offset: number, length: number, v: MemRequestView, wide: boolean, read: boolean): number {
  const hdr = wide ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW;
  const w0 = getU32(bytes, offset);
  if ((w0 & (read ? MRD_REFUSED_DW0 : MWR_REFUSED_DW0)) !== 0) return 0;
  const lengthDw = w0 & DW0.LENGTH_MASK || TLP_SIZE.LENGTH_FIELD_ZERO_DW;
  if (length !== hdr + (read ? 0 : lengthDw * 4)) return 0;
  const w1 = getU32(bytes, offset + 4);
  const firstBe = w1 & 0xf;
  const lastBe = (w1 >>> 4) & 0xf;
  if (read && firstBe === 0) return 0;
  const last = getU32(bytes, offset + hdr - 4);
  const addressLo = (last & ADDRESS.DW_ALIGN_MASK) >>> 0;
  if (!memByteEnablesOk(lengthDw, firstBe, lastBe, addressLo)) return 0;
  readRequestFields(v, w0, w1, wide, wide ? getU32(bytes, offset + 8) : 0, addressLo, last, lengthDw, firstBe, lastBe);
  return lengthDw;
}

const MWR_REFUSED_DW0 = 1 << DW0.TD_SHIFT;
const MRD_REFUSED_DW0 = (1 << DW0.TD_SHIFT) | (1 << DW0.EP_SHIFT) | (1 << DW0.TH_SHIFT);

/** §2.2.5.1 byte enables and §2.2.7.1 4 KB, as checkSemantics applies them to a memory request. */
function memByteEnablesOk(lengthDw: number, firstBe: number, lastBe: number, addressLo: number): boolean {
  if (lengthDw === 1) {
    if (lastBe !== 0) return false;
  } else {
    if (firstBe === 0 || lastBe === 0) return false;
    if (!(lengthDw === 2 && (addressLo & ADDRESS.QW_BIT) === 0) && (FIRST_BE_CONTIGUOUS[firstBe] === 0 || LAST_BE_CONTIGUOUS[lastBe] === 0)) return false;
  }
  return (addressLo & ADDRESS.PAGE_OFFSET_MASK) + lengthDw * 4 <= PCIE_LIMITS.PAGE_4K;
}

function readRequestFields(
  v: MemRequestView,
  w0: number,
  w1: number,
  wide: boolean,
  addressHi: number,
  addressLo: number,
  last: number,
  lengthDw: number,
  firstBe: number,
  lastBe: number,
): void {
  v.wide = wide;
  v.requesterId = w1 >>> 16;
  v.tag = (((w0 >>> DW0.T9_SHIFT) & 1) << TAG.T9_TAG_BIT) | (((w0 >>> DW0.T8_SHIFT) & 1) << TAG.T8_TAG_BIT) | ((w1 >>> 8) & 0xff);
  v.tc = (w0 >>> DW0.TC_SHIFT) & DW0.TC_MASK;
  v.ido = (w0 & (1 << DW0.IDO_SHIFT)) !== 0;
  v.ro = (w0 & (1 << DW0.RO_SHIFT)) !== 0;
  v.ns = (w0 & (1 << DW0.NS_SHIFT)) !== 0;
  v.ln = (w0 & (1 << DW0.LN_SHIFT)) !== 0;
  v.th = (w0 & (1 << DW0.TH_SHIFT)) !== 0;
  v.ep = (w0 & (1 << DW0.EP_SHIFT)) !== 0;
  v.at = (w0 >>> DW0.AT_SHIFT) & DW0.AT_MASK;
  v.lengthDw = lengthDw;
  v.firstBe = firstBe;
  v.lastBe = lastBe;
  v.addressHi = addressHi;
  v.addressLo = addressLo;
  v.ph = last & ADDRESS.PH_MASK;
}

/**
 * True when the memory request header of `hdr` bytes at bytes[offset…] has `address` (a DW
 * address below 2^53) and PH `ph` in its address DWs, in the 3DW form unless `wide`, and
 * `lengthBytes` from there stay within the 4 KB page: what extend() checks of the next TLP of a run.
 */
function addressWordsAre(bytes: Uint8Array, offset: number, hdr: number, wide: boolean, address: number, ph: number, lengthBytes: number): boolean {
  // The low address DW by subtraction: % on a double is a library call, and this runs per TLP.
  let lo = address;
  if (wide) {
    const hi = Math.floor(address / FOUR_GIB);
    if (getU32(bytes, offset + 8) !== hi) return false;
    lo = address - hi * FOUR_GIB;
  } else if (address >= FOUR_GIB) {
    return false;
  }
  const last = getU32(bytes, offset + hdr - 4);
  if ((last & ADDRESS.PH_MASK) !== ph || ((last & ADDRESS.DW_ALIGN_MASK) >>> 0) !== lo) return false;
  return (lo & ADDRESS.PAGE_OFFSET_MASK) + lengthBytes <= PCIE_LIMITS.PAGE_4K;
}

/** Most TLPs one MemWriteRun holds (a 64 KiB batch holds at most 240 MWr of 256 bytes). */
export const MEM_WRITE_RUN_MAX = 1024;

/**
 * Consecutive received MWr/MWr64 TLPs of one buffer that together write one contiguous range of
 * whole DWs: each has every byte enable set, the same header fields (all but Length; the same
 * requester, TC, attributes, TH/PH) and starts where the previous one ended. A receiver that
 * applies the run at once does exactly what applying its TLPs one by one would do, with the
 * routing and checking done once for the whole range. Filled by the link (see Link.onMemWriteRun).
 */
export class MemWriteRun {
  /** The buffer all the TLPs are in. */
  bytes: Uint8Array = new Uint8Array(0);
  /** TLPs in the run. */
  count = 0;
  /** Address of the first byte, and bytes written in all. */
  address = 0;
  length = 0;
  wide = false;
  requesterId = 0;
  /** Header DW0 without Length, DW1 without the byte enables, and PH: what every TLP of the run shares. */
  dw0 = 0;
  dw1 = 0;
  ph = 0;
  /** Per TLP: where its item body is (offset, length) and where its payload is. */
  readonly bodyOffsets = new Int32Array(MEM_WRITE_RUN_MAX);
  readonly bodyLengths = new Int32Array(MEM_WRITE_RUN_MAX);
  readonly dataOffsets = new Int32Array(MEM_WRITE_RUN_MAX);
  readonly dataLengths = new Int32Array(MEM_WRITE_RUN_MAX);

  /**
   * Adds the MWr parsed into `v` (by parseMemWrite, from bytes[offset, offset + length)) when it
   * continues this run, or starts the run with it when the run is empty; false when it does
   * neither (not whole DWs, poisoned, different fields, not contiguous, another buffer, or full).
   */
  add(bytes: Uint8Array, offset: number, length: number, v: MemWriteView): boolean {
    if (v.ep || v.firstBe !== 0xf || (v.lastBe !== 0xf && !(v.lengthDw === 1 && v.lastBe === 0))) return false;
    const dw0 = (getU32(bytes, offset) & ~DW0.LENGTH_MASK) >>> 0;
    const dw1 = (getU32(bytes, offset + 4) & ~0xff) >>> 0;
    const address = v.addressHi * FOUR_GIB + v.addressLo;
    // Addresses are numbers: a run stays where they are exact (below 2^53).
    if (address + v.dataLength > Number.MAX_SAFE_INTEGER) return false;
    const n = this.count;
    if (n === 0) {
      this.bytes = bytes;
      this.address = address;
      this.length = 0;
      this.dw0 = dw0;
      this.dw1 = dw1;
      this.wide = v.wide;
      this.requesterId = v.requesterId;
      this.ph = v.ph;
    } else if (
      n === MEM_WRITE_RUN_MAX ||
      bytes !== this.bytes ||
      dw0 !== this.dw0 ||
      dw1 !== this.dw1 ||
      v.ph !== this.ph ||
      address !== this.address + this.length
    ) {
      return false;
    }
    this.bodyOffsets[n] = offset;
    this.bodyLengths[n] = length;
    this.dataOffsets[n] = v.dataOffset;
    this.dataLengths[n] = v.dataLength;
    this.length += v.dataLength;
    this.count = n + 1;
    return true;
  }

  /**
   * add() for the next TLP of a non-empty run, straight from its bytes: true, having added it,
   * exactly when parseMemWrite would accept it and add() would then add it (the same header words
   * but Length, every byte enabled, the next address, the same buffer, no 4 KB crossing); false,
   * having changed nothing, otherwise. It reads four header words instead of every field.
   */
  extend(bytes: Uint8Array, offset: number, length: number): boolean {
    const n = this.count;
    if (n === 0 || n === MEM_WRITE_RUN_MAX || bytes !== this.bytes || length < TLP_SIZE.HEADER_3DW) return false;
    const w0 = getU32(bytes, offset);
    // Fmt/Type, TC, attributes, TD (clear), EP (clear), AT: all in DW0 but Length.
    if (((w0 & ~DW0.LENGTH_MASK) >>> 0) !== this.dw0) return false;
    const lengthDw = w0 & DW0.LENGTH_MASK || TLP_SIZE.LENGTH_FIELD_ZERO_DW;
    const hdr = this.wide ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW;
    if (length !== hdr + lengthDw * 4) return false;
    const w1 = getU32(bytes, offset + 4);
    if (((w1 & ~0xff) >>> 0) !== this.dw1) return false;
    if ((w1 & 0xff) !== (lengthDw === 1 ? 0x0f : 0xff)) return false;
    const address = this.address + this.length;
    if (address + lengthDw * 4 > Number.MAX_SAFE_INTEGER) return false;
    if (!addressWordsAre(bytes, offset, hdr, this.wide, address, this.ph, lengthDw * 4)) return false;
    this.bodyOffsets[n] = offset;
    this.bodyLengths[n] = length;
    this.dataOffsets[n] = offset + hdr;
    this.dataLengths[n] = lengthDw * 4;
    this.length += lengthDw * 4;
    this.count = n + 1;
    return true;
  }

  /** Takes the last TLP added back out (the run never empties this way: it keeps its first). */
  dropLast(): void {
    if (this.count <= 1) return;
    this.count--;
    this.length -= this.dataLengths[this.count]!;
  }

  /** Empties the run (and lets go of its buffer). */
  clear(): void {
    this.count = 0;
    this.length = 0;
    this.bytes = EMPTY;
  }
}

const EMPTY = new Uint8Array(0);

// ------------------------------------------------------------------------------------------------
// memory reads

export const BYTE0_MRD = (TLP_FMT.NO_DATA_3DW << 5) | TLP_TYPE.MEM;
export const BYTE0_MRD64 = (TLP_FMT.NO_DATA_4DW << 5) | TLP_TYPE.MEM;

/** The fields of a requester's DMA read that are the same for all its MRd (memReadTlp's options). */
export interface MemReadFields {
  requesterId: number;
  tc: number;
  ro: boolean;
  ns: boolean;
  ido: boolean;
}

/** Throws the ERR_TLP_FIELD that memReadTlp would throw for these fields. */
export function checkMemReadFields(f: MemReadFields): void {
  if (!isU(f.requesterId, 0xffff)) throw fieldError('MRd', `requesterId must be an integer 0..65535, got ${String(f.requesterId)}`, 4);
  if (!isU(f.tc, 0x7)) throw fieldError('MRd', `tc must be an integer 0..7, got ${String(f.tc)}`, 1);
  for (const k of ['ro', 'ns', 'ido'] as const) {
    if (typeof f[k] !== 'boolean') throw fieldError('MRd', `${k} must be a boolean, got ${String(f[k])}`, 1);
  }
}

/**
 * The MRd (below 4 GiB) or MRd64 for `byteLength` (1..4096, not crossing 4 KiB) bytes at `address`
 * with `tag` (0..1023), into `out` at `offset`; returns its size. The bytes are exactly those
 * encodeTlpInto writes for memReadTlp with the same fields (TH, PH, AT, EP 0; no digest).
 */
export function encodeMemReadInto(out: Uint8Array, offset: number, f: MemReadFields, tag: number, address: number, byteLength: number): number {
  if (!(Number.isSafeInteger(address) && address >= 0 && Number.isInteger(byteLength) && byteLength >= 1 && byteLength <= PCIE_LIMITS.PAGE_4K)) {
    throw fieldError('MRd', `the fast path reads 1..4096 bytes at a non-negative address, got ${byteLength} bytes at ${address}`);
  }
  if (!isU(tag, TAG.MAX_10BIT)) throw fieldError('MRd', `tag must be an integer 0..${TAG.MAX_10BIT}, got ${String(tag)}`, 6);
  // Low bits by masking, not %: on a double that is a library call, and this runs per request.
  // (A safe integer's low 12 bits survive the mask's 32-bit conversion.)
  const lead = address & 3;
  const dwAddress = address - lead;
  const lastByte = address + byteLength - 1;
  const lastLead = lastByte & 3;
  const lengthDw = (lastByte - lastLead - dwAddress) / 4 + 1;
  if ((dwAddress & ADDRESS.PAGE_OFFSET_MASK) + lengthDw * 4 > PCIE_LIMITS.PAGE_4K) {
    throw new TlpwireError('ERR_TLP_4K_CROSSING', `MRd: ${byteLength} bytes at ${address} cross a 4-KB boundary (§2.2.7.1)`, { offset: 8 });
  }
  const wide = dwAddress >= FOUR_GIB;
  const hdr = wide ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW;
  if (!(offset >= 0 && offset + hdr <= out.length)) {
    throw new TlpwireError('ERR_TLP_TRUNCATED', `output buffer too small: MRd needs ${hdr} bytes at offset ${offset}, buffer is ${out.length}`, { offset: out.length });
  }
  const firstMask = (0xf << lead) & 0xf;
  const lastMask = 0xf >> (3 - lastLead);
  const firstBe = lengthDw === 1 ? firstMask & lastMask : firstMask;
  const lastBe = lengthDw === 1 ? 0 : lastMask;
  putU32(
    out,
    offset,
    (((wide ? TLP_FMT.NO_DATA_4DW : TLP_FMT.NO_DATA_3DW) << DW0.FMT_SHIFT) |
      (TLP_TYPE.MEM << DW0.TYPE_SHIFT) |
      (((tag >>> 9) & 1) << DW0.T9_SHIFT) |
      (((tag >>> 8) & 1) << DW0.T8_SHIFT) |
      attributeBits(f.tc, f.ido, false, f.ro, f.ns) |
      (lengthDw & DW0.LENGTH_MASK)) >>>
      0,
  );
  putU32(out, offset + 4, ((f.requesterId << 16) | ((tag & 0xff) << 8) | (lastBe << BYTE_ENABLES.LAST_SHIFT) | firstBe) >>> 0);
  if (wide) {
    putU32(out, offset + 8, Math.floor(dwAddress / FOUR_GIB));
    putU32(out, offset + 12, dwAddress >>> 0);
  } else {
    putU32(out, offset + 8, dwAddress);
  }
  return hdr;
}

/**
 * Reads the MRd or MRd64 at bytes[offset, offset + length) into `v` and returns true, if
 * decodeTlp would accept it, it has no digest, is not poisoned and has TH clear, and reads at
 * least one byte; false for anything else (a zero-length read included).
 */
export function parseMemRead(bytes: Uint8Array, offset: number, length: number, v: MemReadView): boolean {
  if (length < TLP_SIZE.HEADER_3DW) return false;
  const b0 = bytes[offset] as number;
  const wide = b0 === BYTE0_MRD64;
  if (!wide && b0 !== BYTE0_MRD) return false;
  if (parseMemRequest(bytes, offset, length, v, wide, true) === 0) return false;
  v.tlpOffset = offset;
  v.tlpLength = length;
  return true;
}

/** Most MRd one MemReadRun holds (a 64 KiB batch holds at most 3276 MRd; runs are cut there). */
export const MEM_READ_RUN_MAX = 1024;

/** DW0's tag bits T9 and T8: the reads of a run differ in them, as in DW1's tag byte. */
const DW0_TAG_BITS = ((1 << DW0.T9_SHIFT) | (1 << DW0.T8_SHIFT)) >>> 0;

/**
 * Consecutive received MRd/MRd64 TLPs of one buffer that read one contiguous range in equal
 * pieces of whole DWs: each has every byte enabled, the same header fields but the tag (the same
 * requester, TC, attributes, AT, Length, PH) and starts where the previous one ended. A completer
 * that answers the run at once, read by read in order, does exactly what answering its TLPs one by
 * one would do, with the routing done once for the whole range. Filled by the link (see
 * Link.onMemReadRun).
 */
export class MemReadRun {
  /** The buffer all the TLPs are in. */
  bytes: Uint8Array = EMPTY;
  /** TLPs in the run. */
  count = 0;
  /** Address of the first byte, and the bytes each read asks for (lengthDw × 4). */
  address = 0;
  readLength = 0;
  wide = false;
  requesterId = 0;
  tc = 0;
  ro = false;
  ns = false;
  ido = false;
  /** Header DW0 without the tag bits, DW1 without the tag, and PH: what every TLP of the run shares. */
  dw0 = 0;
  dw1 = 0;
  ph = 0;
  /** Per TLP: its tag, and where its item body is (offset, length). */
  readonly tags = new Uint16Array(MEM_READ_RUN_MAX);
  readonly bodyOffsets = new Int32Array(MEM_READ_RUN_MAX);
  readonly bodyLengths = new Int32Array(MEM_READ_RUN_MAX);

  /** Address of the next read's first byte, were one added. */
  get end(): number {
    return this.address + this.count * this.readLength;
  }

  /**
   * Adds the MRd parsed into `v` (by parseMemRead, from bytes[offset, offset + length)) when it
   * continues this run, or starts the run with it when the run is empty; false when it does
   * neither (not whole DWs, different fields, not contiguous, another buffer, or full).
   */
  add(bytes: Uint8Array, offset: number, length: number, v: MemReadView): boolean {
    if (v.firstBe !== 0xf || (v.lastBe !== 0xf && !(v.lengthDw === 1 && v.lastBe === 0))) return false;
    const dw0 = (getU32(bytes, offset) & ~DW0_TAG_BITS) >>> 0;
    const dw1 = (getU32(bytes, offset + 4) & ~0xff00) >>> 0;
    const address = v.addressHi * FOUR_GIB + v.addressLo;
    const readLength = v.lengthDw * 4;
    const n = this.count;
    if (n === 0) {
      // Addresses are numbers: a run stays where they are exact (below 2^53).
      if (address + MEM_READ_RUN_MAX * readLength > Number.MAX_SAFE_INTEGER) return false;
      this.bytes = bytes;
      this.address = address;
      this.readLength = readLength;
      this.dw0 = dw0;
      this.dw1 = dw1;
      this.wide = v.wide;
      this.requesterId = v.requesterId;
      this.tc = v.tc;
      this.ro = v.ro;
      this.ns = v.ns;
      this.ido = v.ido;
      this.ph = v.ph;
    } else if (n === MEM_READ_RUN_MAX || bytes !== this.bytes || dw0 !== this.dw0 || dw1 !== this.dw1 || v.ph !== this.ph || address !== this.end) {
      return false;
    }
    this.tags[n] = v.tag;
    this.bodyOffsets[n] = offset;
    this.bodyLengths[n] = length;
    this.count = n + 1;
    return true;
  }

  /**
   * add() for the next TLP of a non-empty run, straight from its bytes: true, having added it,
   * exactly when parseMemRead would accept it and add() would then add it (the same header words
   * but the tag, the next address, the same buffer, no 4 KB crossing); false, having changed
   * nothing, otherwise. It reads three or four header words instead of every field.
   */
  extend(bytes: Uint8Array, offset: number, length: number): boolean {
    const n = this.count;
    if (n === 0 || n === MEM_READ_RUN_MAX || bytes !== this.bytes || length !== (this.wide ? TLP_SIZE.HEADER_4DW : TLP_SIZE.HEADER_3DW)) return false;
    // Fmt/Type, TC, attributes, TH, TD, EP (all three clear, as add() saw), AT and Length.
    const w0 = getU32(bytes, offset);
    if (((w0 & ~DW0_TAG_BITS) >>> 0) !== this.dw0) return false;
    // Requester ID and both byte enables.
    const w1 = getU32(bytes, offset + 4);
    if (((w1 & ~0xff00) >>> 0) !== this.dw1) return false;
    if (!addressWordsAre(bytes, offset, length, this.wide, this.end, this.ph, this.readLength)) return false;
    this.tags[n] = (((w0 >>> DW0.T9_SHIFT) & 1) << TAG.T9_TAG_BIT) | (((w0 >>> DW0.T8_SHIFT) & 1) << TAG.T8_TAG_BIT) | ((w1 >>> 8) & 0xff);
    this.bodyOffsets[n] = offset;
    this.bodyLengths[n] = length;
    this.count = n + 1;
    return true;
  }

  /** Empties the run (and lets go of its buffer). */
  clear(): void {
    this.count = 0;
    this.bytes = EMPTY;
  }
}

// ------------------------------------------------------------------------------------------------
// read completions

/** The fields of a read's completions that are the same for all of them (completionTlp's options). */
export interface CompletionFields {
  completerId: number;
  requesterId: number;
  tag: number;
  tc: number;
  ro: boolean;
  ns: boolean;
  ido: boolean;
  /** CplDLk (for a locked read) instead of CplD. */
  locked: boolean;
}

/**
 * Most parts one read's completions come in: a 4096-byte read (the largest MRRS) at RCB 64 that
 * starts inside an RCB block is 65.
 */
export const COMPLETION_PARTS_MAX = 65;

/**
 * One memory read's successful completions, as the completer splits them (§2.3.1.1), for a link
 * to send in one call: part i is a CplD carrying bytes[i] bytes of the source from srcOffset[i],
 * placed lead[i] bytes into its first DW, with Byte Count byteCount[i] and Lower Address
 * lowerAddress[i]. Reused from read to read.
 */
export class CompletionParts {
  count = 0;
  readonly byteCount = new Int32Array(COMPLETION_PARTS_MAX);
  readonly lowerAddress = new Int32Array(COMPLETION_PARTS_MAX);
  readonly srcOffset = new Int32Array(COMPLETION_PARTS_MAX);
  readonly lead = new Int32Array(COMPLETION_PARTS_MAX);
  readonly bytes = new Int32Array(COMPLETION_PARTS_MAX);

  /** Appends a part; false (nothing appended) when all COMPLETION_PARTS_MAX are taken. */
  push(byteCount: number, lowerAddress: number, srcOffset: number, lead: number, bytes: number): boolean {
    const k = this.count;
    if (k === COMPLETION_PARTS_MAX) return false;
    this.byteCount[k] = byteCount;
    this.lowerAddress[k] = lowerAddress;
    this.srcOffset[k] = srcOffset;
    this.lead[k] = lead;
    this.bytes[k] = bytes;
    this.count = k + 1;
    return true;
  }
}

/** Throws the ERR_TLP_FIELD that completionTlp would throw for these fields. */
export function checkCompletionFields(f: CompletionFields): void {
  if (!isU(f.completerId, 0xffff)) throw fieldError('CplD', `completerId must be an integer 0..65535, got ${String(f.completerId)}`, 4);
  if (!isU(f.requesterId, 0xffff)) throw fieldError('CplD', `requesterId must be an integer 0..65535, got ${String(f.requesterId)}`, 8);
  if (!isU(f.tag, TAG.MAX_10BIT)) throw fieldError('CplD', `tag must be an integer 0..${TAG.MAX_10BIT}, got ${String(f.tag)}`, 10);
  if (!isU(f.tc, 0x7)) throw fieldError('CplD', `tc must be an integer 0..7, got ${String(f.tc)}`, 1);
  // (Written out: a loop over the names made an array per call, and this runs per read.)
  if (typeof f.ro !== 'boolean') throw booleanError('ro', f.ro);
  if (typeof f.ns !== 'boolean') throw booleanError('ns', f.ns);
  if (typeof f.ido !== 'boolean') throw booleanError('ido', f.ido);
  if (typeof f.locked !== 'boolean') throw booleanError('locked', f.locked);
}

function booleanError(name: string, value: unknown): TlpwireError {
  return fieldError('CplD', `${name} must be a boolean, got ${String(value)}`, 1);
}

/**
 * A successful CplD (CplDLk when locked) carrying `bytes` bytes of src from `srcOffset`, placed
 * `lead` bytes into its first DW (the read's first byte sits at that offset in its DW), into
 * `out` at `offset`; returns its size. The padding before and after is zero, as completionsFor
 * makes it. `byteCount` is the bytes still owed including these, `lowerAddress` the low 7 bits of
 * the first byte's address.
 */
export function encodeCompletionDataInto(
  out: Uint8Array,
  offset: number,
  f: CompletionFields,
  byteCount: number,
  lowerAddress: number,
  src: Uint8Array,
  srcOffset: number,
  lead: number,
  bytes: number,
): number {
  if (!(srcOffset >= 0 && srcOffset + bytes <= src.length)) throw fieldError('CplD', `source range ${srcOffset}+${bytes} is outside its ${src.length}-byte buffer`);
  const total = encodeCompletionHeaderInto(out, offset, f, byteCount, lowerAddress, lead, bytes);
  out.set(srcOffset === 0 && bytes === src.length ? src : src.subarray(srcOffset, srcOffset + bytes), offset + TLP_SIZE.HEADER_3DW + lead);
  return total;
}

/**
 * encodeCompletionDataInto without the data: the header and the zero padding of a CplD whose
 * `bytes` data bytes the caller puts at `offset` + 12 + `lead` (the link copies the data of many
 * completions in one call); same checks, same returned size.
 */
export function encodeCompletionHeaderInto(
  out: Uint8Array,
  offset: number,
  f: CompletionFields,
  byteCount: number,
  lowerAddress: number,
  lead: number,
  bytes: number,
): number {
  const payload = (lead + bytes + 3) & ~3;
  if (!(bytes >= 1 && isU(lead, 3) && payload <= PCIE_LIMITS.MAX_LENGTH_DW * 4)) throw fieldError('CplD', `cannot carry ${bytes} bytes at offset ${lead} of a DW`, 2);
  if (!(isU(byteCount, 0x1fff) && byteCount >= 1 && byteCount <= CPL_FIELDS.BYTE_COUNT_ZERO)) throw fieldError('CplD', `byteCount must be 1..4096, got ${byteCount}`, 6);
  if (!isU(lowerAddress, CPL_FIELDS.LOWER_ADDRESS_MASK)) throw fieldError('CplD', `lowerAddress must be an integer 0..127, got ${lowerAddress}`, 11);
  const total = TLP_SIZE.HEADER_3DW + payload;
  if (!(offset >= 0 && offset + total <= out.length)) {
    throw new TlpwireError('ERR_TLP_TRUNCATED', `output buffer too small: CplD needs ${total} bytes at offset ${offset}, buffer is ${out.length}`, { offset: out.length });
  }
  const tag = f.tag;
  putU32(
    out,
    offset,
    ((TLP_FMT.DATA_3DW << DW0.FMT_SHIFT) |
      ((f.locked ? TLP_TYPE.CPL_LOCKED : TLP_TYPE.CPL) << DW0.TYPE_SHIFT) |
      (((tag >>> 9) & 1) << DW0.T9_SHIFT) |
      (((tag >>> 8) & 1) << DW0.T8_SHIFT) |
      attributeBits(f.tc, f.ido, false, f.ro, f.ns) |
      ((payload >>> 2) & DW0.LENGTH_MASK)) >>>
      0,
  );
  // Status SC (000b), BCM 0.
  putU32(out, offset + 4, ((f.completerId << 16) | (byteCount & CPL_FIELDS.BYTE_COUNT_MASK)) >>> 0);
  putU32(out, offset + 8, ((f.requesterId << 16) | ((tag & 0xff) << 8) | lowerAddress) >>> 0);
  const at = offset + TLP_SIZE.HEADER_3DW;
  if (lead !== 0) out.fill(0, at, at + lead);
  if (lead + bytes !== payload) out.fill(0, at + lead + bytes, at + payload);
  return total;
}

/** A received CplD/CplDLk, as parseCompletionData reads it; only valid until the next parse into it. */
export class CompletionView {
  locked = false;
  completerId = 0;
  /** Completion Status code (0 SC, 1 UR, 2 CRS, 4 CA). */
  status = 0;
  bcm = false;
  byteCount = 0;
  requesterId = 0;
  tag = 0;
  lowerAddress = 0;
  tc = 0;
  ido = false;
  ro = false;
  ns = false;
  ep = false;
  lengthDw = 0;
  dataOffset = 0;
  dataLength = 0;
}

/**
 * Reads the CplD or CplDLk at bytes[offset, offset + length) into `v` and returns true, if
 * decodeTlp would accept it and it has no digest; false for anything else.
 */
export function parseCompletionData(bytes: Uint8Array, offset: number, length: number, v: CompletionView): boolean {
  if (length < TLP_SIZE.HEADER_3DW) return false;
  const b0 = bytes[offset] as number;
  const locked = b0 === BYTE0_CPLDLK;
  if (!locked && b0 !== BYTE0_CPLD) return false;
  const w0 = getU32(bytes, offset);
  if ((w0 & (1 << DW0.TD_SHIFT)) !== 0) return false;
  const lengthDw = w0 & DW0.LENGTH_MASK || TLP_SIZE.LENGTH_FIELD_ZERO_DW;
  if (length !== TLP_SIZE.HEADER_3DW + lengthDw * 4) return false;
  const w1 = getU32(bytes, offset + 4);
  const status = (w1 >>> CPL_FIELDS.STATUS_SHIFT) & CPL_FIELDS.STATUS_MASK;
  if (status !== 0 && status !== 1 && status !== 2 && status !== 4) return false; // Reserved (decodeTlp refuses it)
  const w2 = getU32(bytes, offset + 8);
  v.locked = locked;
  v.completerId = w1 >>> 16;
  v.status = status;
  v.bcm = (w1 & (1 << CPL_FIELDS.BCM_SHIFT)) !== 0;
  v.byteCount = w1 & CPL_FIELDS.BYTE_COUNT_MASK || CPL_FIELDS.BYTE_COUNT_ZERO;
  v.requesterId = w2 >>> 16;
  v.tag = (((w0 >>> DW0.T9_SHIFT) & 1) << TAG.T9_TAG_BIT) | (((w0 >>> DW0.T8_SHIFT) & 1) << TAG.T8_TAG_BIT) | ((w2 >>> 8) & 0xff);
  v.lowerAddress = w2 & CPL_FIELDS.LOWER_ADDRESS_MASK;
  v.tc = (w0 >>> DW0.TC_SHIFT) & DW0.TC_MASK;
  v.ido = (w0 & (1 << DW0.IDO_SHIFT)) !== 0;
  v.ro = (w0 & (1 << DW0.RO_SHIFT)) !== 0;
  v.ns = (w0 & (1 << DW0.NS_SHIFT)) !== 0;
  v.ep = (w0 & (1 << DW0.EP_SHIFT)) !== 0;
  v.lengthDw = lengthDw;
  v.dataOffset = offset + TLP_SIZE.HEADER_3DW;
  v.dataLength = lengthDw * 4;
  return true;
}
