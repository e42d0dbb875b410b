/**
 * Constants from the PCI Express Base Specification (6.x, non-flit mode). Constants only.
 */

/** §2.2.1 Fmt field encodings. */
export const TLP_FMT = {
  NO_DATA_3DW: 0b000,
  NO_DATA_4DW: 0b001,
  DATA_3DW: 0b010,
  DATA_4DW: 0b011,
  PREFIX: 0b100,
} as const;

/** §2.2.1 Type field encodings (5 bits); Msg/MsgD use 0b10rrr with rrr the routing. */
export const TLP_TYPE = {
  MEM: 0x00,
  MEM_LOCKED: 0x01,
  IO: 0x02,
  CFG0: 0x04,
  CFG1: 0x05,
  CPL: 0x0a,
  CPL_LOCKED: 0x0b,
  MSG_BASE: 0x10,
  FETCH_ADD: 0x0c,
  SWAP: 0x0d,
  CAS: 0x0e,
} as const;

/** §2.2.8 Message routing subfield r[2:0]. */
export const MSG_ROUTING = {
  TO_RC: 0,
  BY_ADDRESS: 1,
  BY_ID: 2,
  BROADCAST: 3,
  LOCAL: 4,
  GATHER: 5,
} as const;

/** §2.2.8 Message codes (Tables 2-21, 2-23, 2-24, 2-26, 2-27, 2-28, 2-33, 2-34). */
export const MSG_CODE = {
  UNLOCK: 0x00,
  LTR: 0x10,
  OBFF: 0x12,
  PM_ACTIVE_STATE_NAK: 0x14,
  SET_SLOT_POWER_LIMIT: 0x50,
  ASSERT_INTA: 0x20,
  ASSERT_INTB: 0x21,
  ASSERT_INTC: 0x22,
  ASSERT_INTD: 0x23,
  DEASSERT_INTA: 0x24,
  DEASSERT_INTB: 0x25,
  DEASSERT_INTC: 0x26,
  DEASSERT_INTD: 0x27,
  PM_PME: 0x18,
  PME_TURN_OFF: 0x19,
  /** 0001_1011b (Table 2-23); 0x1A is not a PM message code. */
  PME_TO_ACK: 0x1b,
  ERR_COR: 0x30,
  ERR_NONFATAL: 0x31,
  ERR_FATAL: 0x33,
  VENDOR_DEFINED_TYPE0: 0x7e,
  VENDOR_DEFINED_TYPE1: 0x7f,
} as const;

/** §2.2.9 Completion Status. */
export const CPL_STATUS = {
  SC: 0b000,
  UR: 0b001,
  CRS: 0b010,
  CA: 0b100,
} as const;

/** §2.2.1 DW0 bit positions (counted in the big-endian DW, bit 31 = MSB of byte 0). */
export const DW0 = {
  FMT_SHIFT: 29,
  FMT_MASK: 0x7,
  TYPE_SHIFT: 24,
  TYPE_MASK: 0x1f,
  T9_SHIFT: 23,
  TC_SHIFT: 20,
  TC_MASK: 0x7,
  T8_SHIFT: 19,
  IDO_SHIFT: 18,
  LN_SHIFT: 17,
  TH_SHIFT: 16,
  TD_SHIFT: 15,
  EP_SHIFT: 14,
  RO_SHIFT: 13,
  NS_SHIFT: 12,
  AT_SHIFT: 10,
  AT_MASK: 0x3,
  LENGTH_MASK: 0x3ff,
} as const;

/** Sizes that bound requests. */
export const PCIE_LIMITS = {
  MAX_LENGTH_DW: 1024,
  PAGE_4K: 4096,
  MAX_BYTE_COUNT: 4096,
} as const;

/** §7.5.3.4 Device Control: Max_Payload_Size / Max_Read_Request_Size encodings 0..5 → 128 << n. */
export const MPS_BYTES = [128, 256, 512, 1024, 2048, 4096] as const;

/** §2.3.1.1 Read Completion Boundary. */
export const RCB_BYTES = [64, 128] as const;

/** §3.4 Flow-control credit types. */
export const CREDIT_TYPES = ['PH', 'PD', 'NPH', 'NPD', 'CplH', 'CplD'] as const;

/** §3.4.2 One data credit is 4 DW; header counters are 8 bits, data counters 12 bits (unscaled). */
export const FC = {
  DATA_CREDIT_BYTES: 16,
  HDR_FIELD_BITS: 8,
  DATA_FIELD_BITS: 12,
} as const;

/**
 * §7.5.3.16 Device Control 2, Completion Timeout Value (bits 3:0) → [min, max] in ns.
 * 0000 is the default range 50 µs–50 ms.
 */
export const CPL_TIMEOUT_RANGES_NS: Readonly<Record<number, readonly [number, number]>> = {
  0b0000: [50_000, 50_000_000],
  0b0001: [50_000, 100_000],
  0b0010: [1_000_000, 10_000_000],
  0b0101: [16_000_000, 55_000_000],
  0b0110: [65_000_000, 210_000_000],
  0b1001: [260_000_000, 900_000_000],
  0b1010: [1_000_000_000, 3_500_000_000],
  0b1101: [4_000_000_000, 13_000_000_000],
  0b1110: [17_000_000_000, 64_000_000_000],
};

/** Device Control 2 bit 4: Completion Timeout Disable. */
export const DEVCTL2_CPL_TIMEOUT_DISABLE = 1 << 4;
