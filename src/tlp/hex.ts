/** Hex text <-> bytes for the JSON form and the CLI (not a hot path). */
import { TlpwireError } from '../core/index.js';

const HEX_DIGITS = '0123456789abcdef';

/** Lowercase hex, two digits per byte, no prefix or separators. */
export function bytesToHex(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    s += (HEX_DIGITS[b >>> 4] as string) + (HEX_DIGITS[b & 0xf] as string);
  }
  return s;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/** Whitespace, ':', '_' and '-' may separate bytes. */
function isSeparator(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 58 || c === 95 || c === 45;
}

/**
 * Parses hex text: an optional `0x` prefix, then pairs of hex digits, optionally separated by
 * whitespace, `:`, `_` or `-` between bytes (so `00 10 00 40`, `00:10:00:40` and `0x00100040`
 * all work). Throws ERR_USAGE naming the first bad character's position.
 */
export function hexToBytes(text: string): Uint8Array {
  let i = 0;
  while (i < text.length && isSeparator(text.charCodeAt(i))) i++;
  if (text[i] === '0' && (text[i + 1] === 'x' || text[i + 1] === 'X')) i += 2;
  const digits: number[] = [];
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = hexValue(c);
    if (v >= 0) digits.push(v);
    else if (!isSeparator(c) || digits.length % 2 !== 0) {
      throw new TlpwireError('ERR_USAGE', `bad hex at character ${i}: ${JSON.stringify(text[i])}`);
    }
  }
  if (digits.length % 2 !== 0) throw new TlpwireError('ERR_USAGE', `hex has an odd number of digits (${digits.length})`);
  const out = new Uint8Array(digits.length / 2);
  for (let k = 0; k < out.length; k++) out[k] = ((digits[2 * k] as number) << 4) | (digits[2 * k + 1] as number);
  return out;
}
