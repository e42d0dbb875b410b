import { ETHERTYPE } from '../spec/index.js';
import { ETH_HLEN, VLAN_HLEN } from './net-header.js';

/**
 * The size check every real-world backend applies to frames in both directions: shorter than an
 * Ethernet header is a runt; longer than MTU + header is oversize — 4 bytes more when the frame
 * carries an 802.1Q/802.1ad tag, as Linux accepts on a VLAN-capable device. Backends count and
 * drop both, so a misbehaving peer or driver can never make a frame that the other side chokes on.
 */
export type FrameVerdict = 'ok' | 'runt' | 'oversize';

export function checkFrameSize(frame: Uint8Array, mtu: number): FrameVerdict {
  const len = frame.length;
  if (len < ETH_HLEN) return 'runt';
  if (len <= mtu + ETH_HLEN) return 'ok';
  if (len <= mtu + ETH_HLEN + VLAN_HLEN && isVlanTagged(frame)) return 'ok';
  return 'oversize';
}

/** The largest frame `checkFrameSize` accepts for `mtu` (a tagged one). */
export function maxTaggedFrame(mtu: number): number {
  return mtu + ETH_HLEN + VLAN_HLEN;
}

function isVlanTagged(frame: Uint8Array): boolean {
  const type = (frame[12]! << 8) | frame[13]!;
  return type === ETHERTYPE.VLAN || type === ETHERTYPE.QINQ;
}
