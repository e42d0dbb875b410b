import { TlpwireError } from '../core/index.js';
import { ETHERTYPE, VIRTIO_NET_HDR, VIRTIO_NET_HDR_F, VIRTIO_NET_HDR_GSO_NONE } from '../spec/index.js';

/**
 * struct virtio_net_hdr as tlpwire negotiates it: VERSION_1, so 12 bytes with num_buffers always
 * present, little-endian; no GSO is ever negotiated, so gso_type is NONE and hdr_len/gso_size
 * carry nothing. CSUM/GUEST_CSUM use flags, csum_start and csum_offset.
 *
 *   0 flags (u8)   1 gso_type (u8)   2 hdr_len (le16)   4 gso_size (le16)
 *   6 csum_start (le16)   8 csum_offset (le16)   10 num_buffers (le16)
 */
export const NET_HDR_SIZE = VIRTIO_NET_HDR.SIZE;

/** Ethernet header, and the 4 bytes a VLAN tag adds (frames carry no FCS). */
export const ETH_HLEN = 14;
export const VLAN_HLEN = 4;
/** The largest frame for an MTU: Ethernet header, one VLAN tag, the payload. */
export function maxFrameLength(mtu: number): number {
  return mtu + ETH_HLEN + VLAN_HLEN;
}

export interface NetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
  numBuffers: number;
}

export function emptyNetHeader(): NetHeader {
  return { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, numBuffers: 0 };
}

export function encodeNetHeader(h: NetHeader, out: Uint8Array, offset = 0): void {
  if (offset < 0 || offset + NET_HDR_SIZE > out.length) {
    throw new TlpwireError('ERR_NET', `virtio_net_hdr needs ${NET_HDR_SIZE} bytes at offset ${offset}`, { offset });
  }
  out[offset + VIRTIO_NET_HDR.FLAGS] = h.flags & 0xff;
  out[offset + VIRTIO_NET_HDR.GSO_TYPE] = h.gsoType & 0xff;
  put16(out, offset + VIRTIO_NET_HDR.HDR_LEN, h.hdrLen);
  put16(out, offset + VIRTIO_NET_HDR.GSO_SIZE, h.gsoSize);
  put16(out, offset + VIRTIO_NET_HDR.CSUM_START, h.csumStart);
  put16(out, offset + VIRTIO_NET_HDR.CSUM_OFFSET, h.csumOffset);
  put16(out, offset + VIRTIO_NET_HDR.NUM_BUFFERS, h.numBuffers);
}

/** Decodes into `out` (reused on hot paths) or a new object. */
export function decodeNetHeader(b: Uint8Array, offset = 0, out: NetHeader = emptyNetHeader()): NetHeader {
  if (offset < 0 || offset + NET_HDR_SIZE > b.length) {
    throw new TlpwireError('ERR_NET', `virtio_net_hdr truncated: ${b.length - offset} of ${NET_HDR_SIZE} bytes`, { offset });
  }
  out.flags = b[offset + VIRTIO_NET_HDR.FLAGS]!;
  out.gsoType = b[offset + VIRTIO_NET_HDR.GSO_TYPE]!;
  out.hdrLen = get16(b, offset + VIRTIO_NET_HDR.HDR_LEN);
  out.gsoSize = get16(b, offset + VIRTIO_NET_HDR.GSO_SIZE);
  out.csumStart = get16(b, offset + VIRTIO_NET_HDR.CSUM_START);
  out.csumOffset = get16(b, offset + VIRTIO_NET_HDR.CSUM_OFFSET);
  out.numBuffers = get16(b, offset + VIRTIO_NET_HDR.NUM_BUFFERS);
  return out;
}

/**
 * Checks a header the driver put in front of a transmitted frame (virtio 5.1.6.2): what is wrong
 * with it, or undefined. The driver must not set DATA_VALID or RSC_INFO on transmit, NEEDS_CSUM
 * only with CSUM negotiated, and the checksum field must lie inside the frame. num_buffers,
 * hdr_len and gso_size are ignored (Linux and QEMU ignore them too without GSO).
 */
export function checkTxHeader(h: NetHeader, frameLen: number, csumNegotiated: boolean): string | undefined {
  if (h.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return `gso_type ${h.gsoType} without any GSO feature`;
  if ((h.flags & ~VIRTIO_NET_HDR_F.NEEDS_CSUM) !== 0) return `flags 0x${h.flags.toString(16)} not allowed on transmit`;
  if ((h.flags & VIRTIO_NET_HDR_F.NEEDS_CSUM) !== 0) {
    if (!csumNegotiated) return 'NEEDS_CSUM without VIRTIO_NET_F_CSUM';
    return checkCsumRange(h, frameLen);
  }
  return undefined;
}

/**
 * Checks the flags and checksum fields of a header the device wrote in front of a received frame
 * (virtio 5.1.6.4): what is wrong with it, or undefined. num_buffers is the driver's to check,
 * against the buffers it posted.
 */
export function checkRxHeader(h: NetHeader, frameLen: number, guestCsum: boolean): string | undefined {
  if (h.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return `gso_type ${h.gsoType} without any GSO feature`;
  const allowed = guestCsum ? VIRTIO_NET_HDR_F.NEEDS_CSUM | VIRTIO_NET_HDR_F.DATA_VALID : 0;
  if ((h.flags & ~allowed) !== 0) return `flags 0x${h.flags.toString(16)} not allowed${guestCsum ? '' : ' without GUEST_CSUM'}`;
  if ((h.flags & VIRTIO_NET_HDR_F.NEEDS_CSUM) !== 0) return checkCsumRange(h, frameLen);
  return undefined;
}

function checkCsumRange(h: NetHeader, frameLen: number): string | undefined {
  // the 16-bit checksum field at csum_start + csum_offset must lie in the frame
  if (h.csumStart + h.csumOffset + 2 > frameLen) {
    return `checksum field at ${h.csumStart}+${h.csumOffset} lies outside a ${frameLen}-byte frame`;
  }
  return undefined;
}

// ---- the Internet checksum (RFC 1071) ------------------------------------------------------------

/**
 * The one's-complement sum of `data[start, end)` as 16-bit big-endian words (an odd last byte is
 * padded with zero), added to `initial`, folded to 16 bits. Not complemented.
 */
export function onesComplementSum(data: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  // 32-bit accumulator: fold every 32 KiB of words at most, long before it could overflow 2^53
  for (; i + 1 < end; i += 2) {
    sum += (data[i]! << 8) | data[i + 1]!;
    if (sum > 0x7fffffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  }
  if (i < end) sum += data[i]! << 8;
  return fold16(sum);
}

function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * What a device does for a NEEDS_CSUM frame (virtio 5.1.6.2, Linux skb_checksum_help): the field
 * at csum_start + csum_offset holds the partial (pseudo-header) sum; the checksum of everything
 * from csum_start to the end of the frame, complemented, replaces it. A result of 0 is stored
 * as 0xFFFF (the same value in one's complement, and the only one UDP can carry).
 */
export function completeChecksum(frame: Uint8Array, csumStart: number, csumOffset: number): void {
  const at = csumStart + csumOffset;
  if (csumStart < 0 || at + 2 > frame.length) {
    throw new TlpwireError('ERR_NET', `checksum field at ${csumStart}+${csumOffset} lies outside a ${frame.length}-byte frame`);
  }
  const c = ~onesComplementSum(frame, csumStart, frame.length) & 0xffff;
  const v = c === 0 ? 0xffff : c;
  frame[at] = v >>> 8;
  frame[at + 1] = v & 0xff;
}

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const TCP_CSUM_OFFSET = 16;
const UDP_CSUM_OFFSET = 6;

export interface ChecksumOffload {
  csumStart: number;
  csumOffset: number;
}

/**
 * What a stack does before handing a TCP/UDP frame to a NIC with checksum offload: finds the
 * transport header (Ethernet, optional VLAN tag, IPv4 without fragments or IPv6 without
 * extension headers), stores the pseudo-header sum (not complemented) in its checksum field,
 * and returns csum_start/csum_offset for a NEEDS_CSUM header. Undefined (frame untouched) for
 * anything else.
 */
export function prepareChecksumOffload(frame: Uint8Array): ChecksumOffload | undefined {
  let l3 = ETH_HLEN;
  if (frame.length < l3) return undefined;
  let type = get16be(frame, 12);
  if (type === ETHERTYPE.VLAN) {
    if (frame.length < l3 + VLAN_HLEN) return undefined;
    type = get16be(frame, 16);
    l3 += VLAN_HLEN;
  }
  let l4: number;
  let proto: number;
  let l4Len: number;
  let pseudo: number;
  if (type === ETHERTYPE.IPV4) {
    if (frame.length < l3 + 20 || frame[l3]! >>> 4 !== 4) return undefined;
    const ihl = (frame[l3]! & 0x0f) * 4;
    const total = get16be(frame, l3 + 2);
    const fragBits = get16be(frame, l3 + 6) & 0x3fff; // MF and fragment offset
    if (ihl < 20 || fragBits !== 0 || total < ihl || l3 + total > frame.length) return undefined;
    proto = frame[l3 + 9]!;
    l4 = l3 + ihl;
    l4Len = total - ihl;
    // pseudo-header: source, destination, zero + protocol, transport length
    pseudo = onesComplementSum(frame, l3 + 12, l3 + 20, proto + l4Len);
  } else if (type === ETHERTYPE.IPV6) {
    if (frame.length < l3 + 40 || frame[l3]! >>> 4 !== 6) return undefined;
    proto = frame[l3 + 6]!;
    l4 = l3 + 40;
    l4Len = get16be(frame, l3 + 4);
    if (l4 + l4Len > frame.length) return undefined;
    // pseudo-header: source, destination, 32-bit length, zeros, next header
    pseudo = onesComplementSum(frame, l3 + 8, l3 + 40, proto + l4Len);
  } else {
    return undefined;
  }
  const csumOffset = proto === IPPROTO_TCP ? TCP_CSUM_OFFSET : proto === IPPROTO_UDP ? UDP_CSUM_OFFSET : -1;
  if (csumOffset < 0 || l4Len < csumOffset + 2) return undefined;
  frame[l4 + csumOffset] = pseudo >>> 8;
  frame[l4 + csumOffset + 1] = pseudo & 0xff;
  return { csumStart: l4, csumOffset };
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

function get16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

function get16be(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
