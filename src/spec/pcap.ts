/**
 * The libpcap file format (tcpdump.org "pcap-savefile", IETF draft-ietf-opsawg-pcap) and the
 * link types tlpwire writes (tcpdump.org "LINK-TYPE"). Constants only.
 *
 *   global header (24 B): magic u32 · version_major u16 · version_minor u16 · thiszone i32 ·
 *                         sigfigs u32 · snaplen u32 · linktype u32
 *   record header (16 B): ts_sec u32 · ts_frac u32 (ns with the nanosecond magic) ·
 *                         incl_len u32 · orig_len u32, then incl_len bytes
 *
 * Fields are in the writer's byte order; readers tell it from the magic. tlpwire writes little-endian.
 */
export const PCAP = {
  /** Timestamps in nanoseconds (the microsecond format uses 0xa1b2c3d4). */
  MAGIC_NANOSECONDS: 0xa1b23c4d,
  MAGIC_MICROSECONDS: 0xa1b2c3d4,
  VERSION_MAJOR: 2,
  VERSION_MINOR: 4,
  GLOBAL_HEADER_BYTES: 24,
  RECORD_HEADER_BYTES: 16,
  DEFAULT_SNAPLEN: 65535,
} as const;

export const LINKTYPE = {
  /** IEEE 802.3 Ethernet frames without FCS. */
  ETHERNET: 1,
  /** Reserved for private use (147–162); tlpwire's TLP capture (docs/PROTOCOL.md). */
  USER0: 147,
} as const;
