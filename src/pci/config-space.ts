/**
 * A function's 4096-byte configuration space as a register file with per-bit attributes.
 *
 *   bit attribute   software write (CfgWr)        hardware (hwSet/hwClear/hwWrite)
 *   -------------   ---------------------------   --------------------------------
 *   RO (default)    ignored                        may change it (status, link state)
 *   RW              takes the written value        may change it
 *   RW1C            1 clears, 0 leaves it          sets it when the event happens
 *
 * A third mask marks bits that survive a Function Level Reset (sticky bits and the link-specific
 * fields the spec lists in §6.6.2); `reset('flr')` restores every other bit to its default.
 *
 * Writes carry the 4-bit First DW Byte Enables of the CfgWr: only enabled bytes change. Hooks
 * registered on a DW run after the masked write has been applied, so they see the value software
 * will read back (and may fix it up: an unsupported power state, a self-clearing command bit).
 */
import { TlpwireError } from '../core/index.js';
import { PCI_CFG_REGISTERS, PCI_CFG_SPACE_EXP_SIZE } from '../spec/index.js';

/** What a write hook learns about one CfgWr to its DW. */
export interface ConfigWriteEvent {
  /** DW index (byte offset / 4). */
  readonly register: number;
  /** The DW as software wrote it (before masking). */
  readonly value: number;
  readonly byteEnables: number;
  /** The DW before and after the masked write. */
  readonly before: number;
  readonly after: number;
}

export type ConfigWriteHook = (event: ConfigWriteEvent) => void;

export type ConfigWidth = 1 | 2 | 4;

export interface BitAttributes {
  /** Bits software may write. */
  rw?: number;
  /** Bits software clears by writing 1. */
  w1c?: number;
  /** Bits that keep their value across a Function Level Reset. */
  preserveOnFlr?: number;
}

export type ResetKind = 'flr' | 'power-on';

function checkWidth(offset: number, width: number): void {
  if (!(offset >= 0 && offset + width <= PCI_CFG_SPACE_EXP_SIZE && (offset | 0) === offset)) {
    throw new TlpwireError('ERR_CONFIG', `config offset ${offset} (width ${width}) is outside config space`, {
      offset,
    });
  }
}

export class ConfigSpace {
  private readonly bytes = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly defaults = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly rwMask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly w1cMask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly flrMask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly hooks = new Map<number, ConfigWriteHook[]>();

  /** A configuration read of DW `register` (0..1023): the four bytes, little-endian. */
  read(register: number): number {
    const off = this.registerOffset(register);
    return this.rawRead(off, 4);
  }

  /**
   * A configuration write of DW `register` with First DW Byte Enables `byteEnables` (bit i enables
   * byte i of `value`, little-endian). RO bits keep their value, RW bits take the written value,
   * RW1C bits are cleared where the written bit is 1.
   */
  write(register: number, value: number, byteEnables: number): void {
    const off = this.registerOffset(register);
    const before = this.rawRead(off, 4);
    for (let i = 0; i < 4; i++) {
      if ((byteEnables & (1 << i)) === 0) continue;
      const at = off + i;
      const v = (value >>> (8 * i)) & 0xff;
      const rw = this.rwMask[at] ?? 0;
      const w1c = this.w1cMask[at] ?? 0;
      const cur = this.bytes[at] ?? 0;
      this.bytes[at] = ((cur & ~rw & ~(v & w1c)) | (v & rw)) & 0xff;
    }
    const list = this.hooks.get(register);
    if (list === undefined) return;
    const event: ConfigWriteEvent = {
      register,
      value: value >>> 0,
      byteEnables: byteEnables & 0xf,
      before,
      after: this.rawRead(off, 4),
    };
    for (const hook of list) hook(event);
  }

  /** Runs `hook` after every software write to DW `register`. */
  onWrite(register: number, hook: ConfigWriteHook): void {
    this.registerOffset(register);
    const list = this.hooks.get(register);
    if (list === undefined) this.hooks.set(register, [hook]);
    else list.push(hook);
  }

  // ---- set-up: power-on values and bit attributes -------------------------------------------

  /**
   * Defines a register: its power-on value and the attributes of its bits (all RO unless given).
   * Used while a function and its capabilities are built.
   */
  define(offset: number, width: ConfigWidth, value: number, attrs: BitAttributes = {}): void {
    checkWidth(offset, width);
    const rw = attrs.rw ?? 0;
    const w1c = attrs.w1c ?? 0;
    if ((rw & w1c) !== 0) {
      throw new TlpwireError('ERR_CONFIG', `config offset ${offset}: a bit cannot be both RW and RW1C`, { offset });
    }
    for (let i = 0; i < width; i++) {
      const at = offset + i;
      const shift = 8 * i;
      const v = (value >>> shift) & 0xff;
      this.bytes[at] = v;
      this.defaults[at] = v;
      this.rwMask[at] = (rw >>> shift) & 0xff;
      this.w1cMask[at] = (w1c >>> shift) & 0xff;
      this.flrMask[at] = ((attrs.preserveOnFlr ?? 0) >>> shift) & 0xff;
    }
  }

  /** Changes the power-on value (and the current value) without touching attributes. */
  setDefault(offset: number, width: ConfigWidth, value: number): void {
    checkWidth(offset, width);
    for (let i = 0; i < width; i++) {
      const v = (value >>> (8 * i)) & 0xff;
      this.bytes[offset + i] = v;
      this.defaults[offset + i] = v;
    }
  }

  /** ORs bits into both the power-on and the current value (a capability list appearing). */
  setDefaultBits(offset: number, width: ConfigWidth, bits: number): void {
    checkWidth(offset, width);
    for (let i = 0; i < width; i++) {
      const b = (bits >>> (8 * i)) & 0xff;
      this.bytes[offset + i] = (this.bytes[offset + i] ?? 0) | b;
      this.defaults[offset + i] = (this.defaults[offset + i] ?? 0) | b;
    }
  }

  /** Power-on value of a register. */
  defaultValue(offset: number, width: ConfigWidth): number {
    checkWidth(offset, width);
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = (v << 8) | (this.defaults[offset + i] ?? 0);
    return v >>> 0;
  }

  /** The attribute masks of a register (for tests and for building dumps of the model). */
  attributes(offset: number, width: ConfigWidth): Required<BitAttributes> {
    checkWidth(offset, width);
    let rw = 0;
    let w1c = 0;
    let flr = 0;
    for (let i = width - 1; i >= 0; i--) {
      rw = (rw << 8) | (this.rwMask[offset + i] ?? 0);
      w1c = (w1c << 8) | (this.w1cMask[offset + i] ?? 0);
      flr = (flr << 8) | (this.flrMask[offset + i] ?? 0);
    }
    return { rw: rw >>> 0, w1c: w1c >>> 0, preserveOnFlr: flr >>> 0 };
  }

  // ---- hardware side: the function's own view -----------------------------------------------

  /** Reads `width` bytes at byte `offset`, little-endian. */
  get(offset: number, width: ConfigWidth): number {
    checkWidth(offset, width);
    return this.rawRead(offset, width);
  }

  // The function reads Command, PMCSR and capability controls on every access it decodes, so
  // these avoid the generic path.
  u8(offset: number): number {
    checkWidth(offset, 1);
    return this.bytes[offset] ?? 0;
  }

  u16(offset: number): number {
    checkWidth(offset, 2);
    const b = this.bytes;
    return (b[offset] ?? 0) | ((b[offset + 1] ?? 0) << 8);
  }

  u32(offset: number): number {
    checkWidth(offset, 4);
    const b = this.bytes;
    return ((b[offset] ?? 0) | ((b[offset + 1] ?? 0) << 8) | ((b[offset + 2] ?? 0) << 16) | ((b[offset + 3] ?? 0) << 24)) >>> 0;
  }

  /** Hardware sets bits (an error detected, INTx asserted); attributes do not apply. */
  hwSet(offset: number, width: ConfigWidth, bits: number): void {
    this.hwWrite(offset, width, this.get(offset, width) | bits);
  }

  /** Hardware clears bits; attributes do not apply. */
  hwClear(offset: number, width: ConfigWidth, bits: number): void {
    this.hwWrite(offset, width, this.get(offset, width) & ~bits);
  }

  /** Hardware writes a register (link status, a self-clearing bit); attributes do not apply. */
  hwWrite(offset: number, width: ConfigWidth, value: number): void {
    checkWidth(offset, width);
    for (let i = 0; i < width; i++) this.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  /**
   * Back to power-on values. An FLR keeps the bits marked `preserveOnFlr`; a power-on reset
   * restores everything. Hooks are structural and stay registered.
   */
  reset(kind: ResetKind): void {
    if (kind === 'power-on') {
      this.bytes.set(this.defaults);
      return;
    }
    for (let i = 0; i < PCI_CFG_SPACE_EXP_SIZE; i++) {
      const keep = this.flrMask[i] ?? 0;
      this.bytes[i] = ((this.bytes[i] ?? 0) & keep) | ((this.defaults[i] ?? 0) & ~keep);
    }
  }

  /** A copy of the current 4096 bytes (for dumps). */
  snapshot(): Uint8Array {
    return this.bytes.slice();
  }

  private registerOffset(register: number): number {
    if (!Number.isInteger(register) || register < 0 || register >= PCI_CFG_REGISTERS) {
      throw new TlpwireError('ERR_CONFIG', `config register ${register} is outside 0..${PCI_CFG_REGISTERS - 1}`);
    }
    return register * 4;
  }

  private rawRead(offset: number, width: number): number {
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = (v << 8) | (this.bytes[offset + i] ?? 0);
    return v >>> 0;
  }
}
