/**
 * Hand-built Ethernet/ARP/IPv4/ICMP/UDP frames for the TAP, UDP and pcap tests, from the RFCs
 * (826 ARP, 791 IPv4, 792 ICMP, 768 UDP), independent of anything in src/.
 */
export function mac(s: string): Uint8Array {
  return Uint8Array.from(s.split(':').map((h) => parseInt(h, 16)));
}

export function ipv4(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map(Number));
}

export function macString(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** RFC 1071 Internet checksum. */
export function inetChecksum(b: Uint8Array, start = 0, end = b.length): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ethernet(dst: Uint8Array, src: Uint8Array, type: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  f.set(payload, 14);
  return f;
}

export function arpFrame(op: 1 | 2, srcMac: Uint8Array, srcIp: Uint8Array, dstMac: Uint8Array, dstIp: Uint8Array): Uint8Array {
  const a = new Uint8Array(28);
  a.set([0, 1, 0x08, 0x00, 6, 4, 0, op], 0); // Ethernet, IPv4, hlen 6, plen 4, op
  a.set(srcMac, 8);
  a.set(srcIp, 14);
  a.set(op === 1 ? new Uint8Array(6) : dstMac, 18);
  a.set(dstIp, 24);
  return ethernet(op === 1 ? mac('ff:ff:ff:ff:ff:ff') : dstMac, srcMac, 0x0806, a);
}

function ipv4Packet(proto: number, src: Uint8Array, dst: Uint8Array, payload: Uint8Array, id = 0x1234): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  p[0] = 0x45;
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p[4] = id >> 8;
  p[5] = id & 0xff;
  p[6] = 0x40; // DF
  p[8] = 64; // TTL
  p[9] = proto;
  p.set(src, 12);
  p.set(dst, 16);
  const c = inetChecksum(p, 0, 20);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  p.set(payload, 20);
  return p;
}

/** ICMP echo request (type 8) or reply (type 0) in IPv4 in Ethernet. */
export function icmpEchoFrame(
  type: 8 | 0,
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  srcIp: Uint8Array,
  dstIp: Uint8Array,
  ident: number,
  seq: number,
  data: Uint8Array = new Uint8Array(32).map((_, i) => i),
): Uint8Array {
  const icmp = new Uint8Array(8 + data.length);
  icmp[0] = type;
  icmp[4] = ident >> 8;
  icmp[5] = ident & 0xff;
  icmp[6] = seq >> 8;
  icmp[7] = seq & 0xff;
  icmp.set(data, 8);
  const c = inetChecksum(icmp);
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  return ethernet(dstMac, srcMac, 0x0800, ipv4Packet(1, srcIp, dstIp, icmp));
}

/** UDP in IPv4 in Ethernet, with the UDP checksum over the pseudo-header. */
export function udpFrame(
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  srcIp: Uint8Array,
  dstIp: Uint8Array,
  srcPort: number,
  dstPort: number,
  data: Uint8Array,
): Uint8Array {
  const u = new Uint8Array(8 + data.length);
  u[0] = srcPort >> 8;
  u[1] = srcPort & 0xff;
  u[2] = dstPort >> 8;
  u[3] = dstPort & 0xff;
  u[4] = u.length >> 8;
  u[5] = u.length & 0xff;
  u.set(data, 8);
  const pseudo = new Uint8Array(12 + u.length);
  pseudo.set(srcIp, 0);
  pseudo.set(dstIp, 4);
  pseudo[9] = 17;
  pseudo[10] = u.length >> 8;
  pseudo[11] = u.length & 0xff;
  pseudo.set(u, 12);
  const c = inetChecksum(pseudo) || 0xffff;
  u[6] = c >> 8;
  u[7] = c & 0xff;
  return ethernet(dstMac, srcMac, 0x0800, ipv4Packet(17, srcIp, dstIp, u));
}

export function etherType(f: Uint8Array): number {
  return (f[12]! << 8) | f[13]!;
}
