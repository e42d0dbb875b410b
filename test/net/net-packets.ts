import type { Rng } from '../../src/core/index.js';

/**
 * Hand-built IPv4/IPv6 TCP/UDP frames and an Internet checksum written independently of
 * src/net/net-header.ts (a plain RFC 1071 sum over an explicit pseudo-header byte array), so the
 * checksum tests compare two implementations, not one with itself.
 */

export function rfc1071(bytes: number[]): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += bytes[i]! * 256 + (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return 0xffff - sum;
}

function ethHeader(type: number): number[] {
  return [0x02, 0, 0, 0xaa, 0xbb, 0xcc, 0x52, 0x54, 0, 0x12, 0x34, 0x56, type >> 8, type & 0xff];
}

function randomBytes(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.int(256));
}

/** The pseudo-header (RFC 768/793 for IPv4, RFC 8200 §8.1 for IPv6) as bytes. */
function pseudoHeader(frame: Uint8Array): { l4: number; l4Len: number; csumOff: number; pseudo: number[] } {
  const type = (frame[12]! << 8) | frame[13]!;
  if (type === 0x0800) {
    const ihl = (frame[14]! & 15) * 4;
    const total = (frame[16]! << 8) | frame[17]!;
    const proto = frame[23]!;
    const l4Len = total - ihl;
    const pseudo = [...frame.subarray(26, 34), 0, proto, l4Len >> 8, l4Len & 0xff];
    return { l4: 14 + ihl, l4Len, csumOff: proto === 6 ? 16 : 6, pseudo };
  }
  const l4Len = (frame[18]! << 8) | frame[19]!;
  const proto = frame[20]!;
  const pseudo = [...frame.subarray(22, 54), 0, 0, l4Len >> 8, l4Len & 0xff, 0, 0, 0, proto];
  return { l4: 54, l4Len, csumOff: proto === 6 ? 16 : 6, pseudo };
}

/** The transport checksum the frame should carry, computed from scratch (field taken as zero). */
export function expectedL4Checksum(frame: Uint8Array): number {
  const { l4, l4Len, csumOff, pseudo } = pseudoHeader(frame);
  const seg = [...frame.subarray(l4, l4 + l4Len)];
  seg[csumOff] = 0;
  seg[csumOff + 1] = 0;
  return rfc1071([...pseudo, ...(pseudo.length % 2 === 1 ? [0] : []), ...seg]);
}

/** Whether the frame's TCP/UDP checksum verifies (sum over pseudo-header and segment is 0xFFFF). */
export function l4ChecksumOk(frame: Uint8Array): boolean {
  const { l4, l4Len, pseudo } = pseudoHeader(frame);
  return rfc1071([...pseudo, ...frame.subarray(l4, l4 + l4Len)]) === 0;
}

export function buildUdp4(rng: Rng, payloadLen: number): Uint8Array {
  const udpLen = 8 + payloadLen;
  const total = 20 + udpLen;
  const ip = [0x45, 0, total >> 8, total & 0xff, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
  const c = rfc1071(ip);
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
  const udp = [0x30, 0x39, 0x00, 0x35, udpLen >> 8, udpLen & 0xff, 0, 0, ...randomBytes(rng, payloadLen)];
  return Uint8Array.from([...ethHeader(0x0800), ...ip, ...udp]);
}

export function buildTcp4(rng: Rng, payloadLen: number): Uint8Array {
  const tcpLen = 20 + payloadLen;
  const total = 20 + tcpLen;
  const ip = [0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 168, 1, 10, 192, 168, 1, 20];
  const c = rfc1071(ip);
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
  const tcp = [0x1f, 0x90, 0xc3, 0x50, ...randomBytes(rng, 8), 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, ...randomBytes(rng, payloadLen)];
  return Uint8Array.from([...ethHeader(0x0800), ...ip, ...tcp]);
}

export function buildTcp6(rng: Rng, payloadLen: number): Uint8Array {
  const tcpLen = 20 + payloadLen;
  const ip = [0x60, 0, 0, 0, tcpLen >> 8, tcpLen & 0xff, 6, 64, ...randomBytes(rng, 16), ...randomBytes(rng, 16)];
  const tcp = [0x1f, 0x90, 0xc3, 0x50, ...randomBytes(rng, 8), 0x50, 0x10, 0x01, 0x00, 0, 0, 0, 0, ...randomBytes(rng, payloadLen)];
  return Uint8Array.from([...ethHeader(0x86dd), ...ip, ...tcp]);
}

export function buildUdp6(rng: Rng, payloadLen: number): Uint8Array {
  const udpLen = 8 + payloadLen;
  const ip = [0x60, 0, 0, 0, udpLen >> 8, udpLen & 0xff, 17, 64, ...randomBytes(rng, 16), ...randomBytes(rng, 16)];
  const udp = [0x04, 0xd2, 0x16, 0x2e, udpLen >> 8, udpLen & 0xff, 0, 0, ...randomBytes(rng, payloadLen)];
  return Uint8Array.from([...ethHeader(0x86dd), ...ip, ...udp]);
}
