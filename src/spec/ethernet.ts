/** IEEE 802.3 / 802.1Q EtherType values tlpwire looks at (IANA "IEEE 802 Numbers"). Constants only. */
export const ETHERTYPE = {
  IPV4: 0x0800,
  ARP: 0x0806,
  IPV6: 0x86dd,
  /** 802.1Q customer VLAN tag (TPID): a tagged frame is 4 bytes longer. */
  VLAN: 0x8100,
  /** 802.1ad service VLAN tag (QinQ outer tag). */
  QINQ: 0x88a8,
} as const;
