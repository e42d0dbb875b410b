/**
 * ECRC (§2.7.1), the TLP Digest.
 *
 * The spec feeds bits from bit 0 to bit 7 of each byte into an MSB-first CRC-32 register
 * (polynomial 04C1_1DB7h, seed all ones), complements the result and maps result bit n to
 * digest bit (n & ~7) | (7 − (n & 7)) of the big-endian digest DW (Table 2-55). Feeding each
 * byte LSB first is the reflected CRC-32 (the Ethernet/zlib one), and Table 2-55's mapping puts
 * that reflected value's low byte first: the digest bytes are the standard CRC-32 of the TLP,
 * little-endian. The two variant bits (Type[0], which flips when a switch turns a Type 1
 * configuration request into Type 0, and EP) count as 1.
 *
 * A test checks this against a bit-serial implementation written straight from the spec text.
 */
import { ECRC } from '../spec/index.js';

/**
 * Slicing-by-4 tables: T[0] is the byte-at-a-time reflected table, T[k][n] the CRC of byte n
 * followed by k zero bytes, so four input bytes fold in with four lookups. Int32Array (not
 * Uint32Array) keeps every value a small integer for V8, which makes the loop several times faster.
 */
const T: Int32Array = (() => {
  const t = new Int32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ ECRC.POLYNOMIAL_REFLECTED : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 4; k++) {
      const prev = t[(k - 1) * 256 + n] as number;
      t[k * 256 + n] = (prev >>> 8) ^ (t[prev & 0xff] as number);
    }
  }
  return t;
})();

function byteStep(crc: number, b: number): number {
  return (T[(crc ^ b) & 0xff] as number) ^ (crc >>> 8);
}

/**
 * The ECRC of the TLP bytes [start, end) (header and payload, without the digest), as the
 * big-endian digest DW: write it with the same byte order as the header DWs.
 */
export function computeEcrc(bytes: Uint8Array, start: number, end: number): number {
  let crc = ECRC.SEED | 0;
  let i = start;
  // The first DW holds both variant bits; a TLP is whole DWs, so the rest folds in 4 at a time.
  if (end - start >= 4) {
    crc = byteStep(crc, (bytes[i] as number) | ECRC.VARIANT_BYTE0_MASK);
    crc = byteStep(crc, bytes[i + 1] as number);
    crc = byteStep(crc, (bytes[i + 2] as number) | ECRC.VARIANT_BYTE2_MASK);
    crc = byteStep(crc, bytes[i + 3] as number);
    i += 4;
    for (; i + 4 <= end; i += 4) {
      crc ^= (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24);
      crc =
        (T[768 + (crc & 0xff)] as number) ^
        (T[512 + ((crc >>> 8) & 0xff)] as number) ^
        (T[256 + ((crc >>> 16) & 0xff)] as number) ^
        (T[crc >>> 24] as number);
    }
  }
  for (; i < end; i++) {
    let b = bytes[i] as number;
    if (i === start) b |= ECRC.VARIANT_BYTE0_MASK;
    else if (i === start + 2) b |= ECRC.VARIANT_BYTE2_MASK;
    crc = byteStep(crc, b);
  }
  const z = ~crc >>> 0;
  // Little-endian bytes of z, read back as a big-endian DW.
  return (((z & 0xff) << 24) | (((z >>> 8) & 0xff) << 16) | (((z >>> 16) & 0xff) << 8) | (z >>> 24)) >>> 0;
}
