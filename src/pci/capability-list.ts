/**
 * The capability list manager: the one place that picks capability offsets and writes the
 * Capabilities Pointer, the next pointers and the extended capability headers.
 *
 *   0x34 Capabilities Pointer ──► [ID|next|body…] ──► [ID|next|body…] ──► 0      (0x40..0xff)
 *   0x100 [ID:16 | ver:4 | next:12] ──► [ID | ver | next] ──► 0                     (0x100..0xfff)
 *
 * Standard capabilities are DW-aligned in [0x40, 0x100); extended ones are DW-aligned in
 * [0x100, 0x1000) and the first always sits at 0x100 (§7.6). Offsets are allocated first-fit
 * unless the caller pins one; the chain follows insertion order. The ID, next pointer and
 * extended header are read-only to software.
 */
import { TlpwireError } from '../core/index.js';
import {
  PCI_CAP_HDR,
  PCI_CFG,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_EXT_CAP_HDR,
  PCI_STATUS,
} from '../spec/index.js';
import type { ConfigSpace } from './config-space.js';

export interface CapabilityEntry {
  readonly id: number;
  readonly offset: number;
  /** Bytes reserved, header included. */
  readonly length: number;
}

export interface ExtendedCapabilityEntry extends CapabilityEntry {
  readonly version: number;
}

interface Range {
  start: number;
  end: number;
}

function roundUp4(n: number): number {
  return (n + 3) & ~3;
}

function allocate(used: readonly Range[], length: number, lo: number, hi: number, at: number | undefined): number {
  const len = roundUp4(length);
  const fits = (off: number): boolean =>
    off >= lo && off + len <= hi && used.every((r) => off + len <= r.start || off >= r.end);
  if (at !== undefined) {
    if ((at & 3) !== 0 || !fits(at)) {
      throw new TlpwireError('ERR_CONFIG', `capability at 0x${at.toString(16)} (${length} bytes) does not fit`, {
        offset: at,
      });
    }
    return at;
  }
  for (let off = lo; off + len <= hi; off += 4) if (fits(off)) return off;
  throw new TlpwireError('ERR_CONFIG', `no room for a ${length}-byte capability in 0x${lo.toString(16)}..0x${hi.toString(16)}`);
}

export class CapabilityList {
  private readonly std: CapabilityEntry[] = [];
  private readonly ext: ExtendedCapabilityEntry[] = [];

  constructor(private readonly space: ConfigSpace) {}

  /**
   * Adds a standard capability of `length` bytes (header included) and returns its offset. The
   * caller defines the body registers; this writes the ID and links the chain.
   */
  add(id: number, length: number, options: { at?: number } = {}): number {
    if (!Number.isInteger(id) || id < 0 || id > 0xff || length < 2) {
      throw new TlpwireError('ERR_CONFIG', `bad capability id ${id} or length ${length}`);
    }
    const used = this.std.map((e) => ({ start: e.offset, end: e.offset + roundUp4(e.length) }));
    const offset = allocate(used, length, PCI_CFG.CAPS_START, PCI_CFG_SPACE_SIZE, options.at);
    this.space.define(offset + PCI_CAP_HDR.ID, 1, id);
    this.space.define(offset + PCI_CAP_HDR.NEXT, 1, 0);
    const prev = this.std[this.std.length - 1];
    if (prev === undefined) {
      this.space.define(PCI_CFG.CAPABILITIES_POINTER, 1, offset);
      this.space.setDefaultBits(PCI_CFG.STATUS, 2, PCI_STATUS.CAPABILITIES_LIST);
    } else {
      this.space.setDefault(prev.offset + PCI_CAP_HDR.NEXT, 1, offset);
    }
    this.std.push({ id, offset, length });
    return offset;
  }

  /** Adds an extended capability (`length` bytes, header included) and returns its offset. */
  addExtended(id: number, version: number, length: number, options: { at?: number } = {}): number {
    if (!Number.isInteger(id) || id < 0 || id > PCI_EXT_CAP_HDR.ID_MASK || length < 4) {
      throw new TlpwireError('ERR_CONFIG', `bad extended capability id ${id} or length ${length}`);
    }
    if (!Number.isInteger(version) || version < 0 || version > PCI_EXT_CAP_HDR.VERSION_MASK) {
      throw new TlpwireError('ERR_CONFIG', `bad extended capability version ${version}`);
    }
    let at = options.at;
    if (this.ext.length === 0) {
      if (at !== undefined && at !== PCI_CFG.EXT_CAPS_START) {
        throw new TlpwireError('ERR_CONFIG', 'the first extended capability must be at 0x100', { offset: at });
      }
      at = PCI_CFG.EXT_CAPS_START;
    }
    const used = this.ext.map((e) => ({ start: e.offset, end: e.offset + roundUp4(e.length) }));
    const offset = allocate(used, length, PCI_CFG.EXT_CAPS_START, PCI_CFG_SPACE_EXP_SIZE, at);
    this.space.define(offset, 4, (id | (version << PCI_EXT_CAP_HDR.VERSION_SHIFT)) >>> 0);
    const prev = this.ext[this.ext.length - 1];
    if (prev !== undefined) {
      const hdr = this.space.defaultValue(prev.offset, 4);
      const linked = (hdr & ~(0xfff << PCI_EXT_CAP_HDR.NEXT_SHIFT)) | (offset << PCI_EXT_CAP_HDR.NEXT_SHIFT);
      this.space.setDefault(prev.offset, 4, linked >>> 0);
    }
    this.ext.push({ id, version, offset, length });
    return offset;
  }

  /** Offset of the first standard capability with this ID, or null. */
  find(id: number): number | null {
    return this.std.find((e) => e.id === id)?.offset ?? null;
  }

  /** Offset of the first extended capability with this ID, or null. */
  findExtended(id: number): number | null {
    return this.ext.find((e) => e.id === id)?.offset ?? null;
  }

  get standard(): readonly CapabilityEntry[] {
    return this.std;
  }

  get extended(): readonly ExtendedCapabilityEntry[] {
    return this.ext;
  }
}

/** What a walk of the chains in raw config bytes found. */
export interface CapabilityWalk {
  standard: { id: number; offset: number }[];
  extended: { id: number; version: number; offset: number }[];
  /** Problems found (a loop, a pointer out of range); the walk stops at the first one per chain. */
  problems: string[];
}

const u8 = (b: Uint8Array, o: number): number => b[o] ?? 0;
const u32 = (b: Uint8Array, o: number): number =>
  (u8(b, o) | (u8(b, o + 1) << 8) | (u8(b, o + 2) << 16) | (u8(b, o + 3) << 24)) >>> 0;

/**
 * Walks both capability chains of a config space image the way software does: standard chain
 * from the Capabilities Pointer (only when Status.Capabilities List is set), extended chain from
 * 0x100 (only in a 4096-byte image). Bounded: a pointer seen twice is a loop.
 */
export function walkCapabilities(config: Uint8Array): CapabilityWalk {
  const out: CapabilityWalk = { standard: [], extended: [], problems: [] };
  const status = u8(config, PCI_CFG.STATUS) | (u8(config, PCI_CFG.STATUS + 1) << 8);
  if ((status & PCI_STATUS.CAPABILITIES_LIST) !== 0) {
    const seen = new Set<number>();
    let ptr = u8(config, PCI_CFG.CAPABILITIES_POINTER) & PCI_CAP_HDR.NEXT_MASK;
    while (ptr !== 0) {
      if (ptr < PCI_CFG.CAPS_START) {
        out.problems.push(`standard capability pointer 0x${ptr.toString(16)} is inside the header`);
        break;
      }
      if (seen.has(ptr)) {
        out.problems.push(`standard capability chain loops at 0x${ptr.toString(16)}`);
        break;
      }
      seen.add(ptr);
      out.standard.push({ id: u8(config, ptr), offset: ptr });
      ptr = u8(config, ptr + PCI_CAP_HDR.NEXT) & PCI_CAP_HDR.NEXT_MASK;
    }
  }
  if (config.length >= PCI_CFG_SPACE_EXP_SIZE) {
    const seen = new Set<number>();
    let ptr: number = PCI_CFG.EXT_CAPS_START;
    while (ptr !== 0) {
      if (ptr < PCI_CFG.EXT_CAPS_START) {
        out.problems.push(`extended capability pointer 0x${ptr.toString(16)} is below 0x100`);
        break;
      }
      if (seen.has(ptr)) {
        out.problems.push(`extended capability chain loops at 0x${ptr.toString(16)}`);
        break;
      }
      seen.add(ptr);
      const hdr = u32(config, ptr);
      // §7.6.3: a header of all zeros at 0x100 means "no extended capabilities".
      if (hdr === 0 && ptr === PCI_CFG.EXT_CAPS_START) break;
      out.extended.push({
        id: hdr & PCI_EXT_CAP_HDR.ID_MASK,
        version: (hdr >>> PCI_EXT_CAP_HDR.VERSION_SHIFT) & PCI_EXT_CAP_HDR.VERSION_MASK,
        offset: ptr,
      });
      ptr = (hdr >>> PCI_EXT_CAP_HDR.NEXT_SHIFT) & PCI_EXT_CAP_HDR.NEXT_MASK;
    }
  }
  return out;
}
