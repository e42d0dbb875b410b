/**
 * Host-side config access for tests: what a root complex does to read or write a byte, word or DW
 * at any byte offset with one CfgRd/CfgWr (DW index + First DW Byte Enables).
 */
export interface ConfigTarget {
  configRead(register: number): number;
  configWrite(register: number, value: number, byteEnables: number): void;
}

export function cfgRead(t: ConfigTarget, offset: number, width: 1 | 2 | 4): number {
  const dw = t.configRead(offset >> 2);
  const shift = (offset & 3) * 8;
  if (width === 4) return dw >>> 0;
  return (dw >>> shift) & (width === 1 ? 0xff : 0xffff);
}

export function cfgWrite(t: ConfigTarget, offset: number, width: 1 | 2 | 4, value: number): void {
  const lane = offset & 3;
  if (lane + width > 4) throw new RangeError('access crosses a DW');
  const be = ((1 << width) - 1) << lane;
  t.configWrite(offset >> 2, (value << (lane * 8)) >>> 0, be);
}

export function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}
