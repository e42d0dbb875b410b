/**
 * TLP header layout constants beyond the DW0 fields in pcie.ts (PCIe Base Specification 6.x,
 * Non-Flit Mode). Constants only. Bit positions are counted in the big-endian DW
 * (bit 31 = bit 7 of the DW's first byte), as the spec's header figures draw them.
 */

/** §2.2.1.1: header sizes; §2.2.3: the TLP Digest is one DW after the payload. */
export const TLP_SIZE = {
  HEADER_3DW: 12,
  HEADER_4DW: 16,
  DIGEST: 4,
  /** Length[9:0] = 0 means 1024 DW (Table 2-4). */
  LENGTH_FIELD_ZERO_DW: 1024,
} as const;

/** Table 2-3: Type 1_1011b — DMWr with data (not carried by tlpwire), deprecated TCfgRd without. */
export const TLP_TYPE_DMWR = 0x1b;

/** §2.2.6.2: Tag[9] is DW0 bit 23 (T9), Tag[8] is DW0 bit 19 (T8), Tag[7:0] is DW1 bits 15:8. */
export const TAG = {
  MAX_10BIT: 0x3ff,
  LOW_SHIFT: 8,
  T9_TAG_BIT: 9,
  T8_TAG_BIT: 8,
} as const;

/** §2.2.5.1 Figure 2-32: Byte Enables in byte 7 of a request header (Last DW BE in bits 7:4). */
export const BYTE_ENABLES = {
  LAST_SHIFT: 4,
  MASK: 0xf,
  /**
   * First DW BE values whose enabled bytes run contiguously up to the DW's top byte, and Last DW
   * BE values that run up from its bottom byte: the only legal ones for a non-QW-aligned 2-DW
   * Memory Request and for any Memory Request of 3 DW or more.
   */
  FIRST_CONTIGUOUS: [0b1111, 0b1110, 0b1100, 0b1000],
  LAST_CONTIGUOUS: [0b0001, 0b0011, 0b0111, 0b1111],
} as const;

/** §2.2.4.1 Table 2-7 / Table 2-17: address bits 1:0 of the last address DW carry PH[1:0]. */
export const ADDRESS = {
  PH_MASK: 0x3,
  DW_ALIGN_MASK: 0xfffffffc,
  /** §2.2.7.1: a Memory Request must not cross a 4-KB boundary. */
  PAGE_OFFSET_MASK: 0xfff,
  /** §2.2.5.1: address bit 2 clear = Quad Word aligned. */
  QW_BIT: 0x4,
} as const;

/** §2.2.7.1 Figure 2-39: Configuration Request DW2. */
export const CFG_DW2 = {
  BUS_SHIFT: 24,
  BUS_MASK: 0xff,
  DEVICE_SHIFT: 19,
  DEVICE_MASK: 0x1f,
  FUNCTION_SHIFT: 16,
  FUNCTION_MASK: 0x7,
  EXT_REGISTER_SHIFT: 8,
  EXT_REGISTER_MASK: 0xf,
  REGISTER_SHIFT: 2,
  REGISTER_MASK: 0x3f,
  /** Bits 15:12 and 1:0 are Reserved. */
  RESERVED_MASK: 0x0000f003,
  /** Register index 0..1023 = Extended Register Number (4 bits) : Register Number (6 bits). */
  MAX_REGISTER: 0x3ff,
} as const;

/** §2.2.9.1 Figure 2-79: Completion DW1 and DW2. */
export const CPL_FIELDS = {
  STATUS_SHIFT: 13,
  STATUS_MASK: 0x7,
  BCM_SHIFT: 12,
  BYTE_COUNT_MASK: 0xfff,
  /** Byte Count 0 means 4096 bytes. */
  BYTE_COUNT_ZERO: 4096,
  LOWER_ADDRESS_MASK: 0x7f,
  /** DW2 bit 7 is Reserved. */
  DW2_RESERVED_MASK: 0x80,
} as const;

/** §2.2.8 Table 2-20: Message routing r[2:0] = Type[2:0]; 110b and 111b are Reserved (terminate at receiver). */
export const MSG_ROUTING_MASK = 0x7;

/**
 * §2.2.8.1–§2.2.8.5: Messages whose Receivers MUST check TC0 (violations are Malformed):
 * INTx, power management, error signalling, Unlock, Set_Slot_Power_Limit.
 * (LTR, OBFF and PTM are checked only by receivers that implement them.)
 */
export const MSG_CODES_REQUIRING_TC0 = [
  0x00, // Unlock
  0x14, // PM_Active_State_Nak
  0x18, // PM_PME
  0x19, // PME_Turn_Off
  0x1b, // PME_TO_Ack
  0x20, 0x21, 0x22, 0x23, // Assert_INTA..D
  0x24, 0x25, 0x26, 0x27, // Deassert_INTA..D
  0x30, 0x31, 0x33, // ERR_COR, ERR_NONFATAL, ERR_FATAL
  0x50, // Set_Slot_Power_Limit
] as const;

/** §2.2.7.1 Table 2-15: architected AtomicOp Length values (DW). CAS carries two operands. */
export const ATOMIC_LENGTHS_DW = {
  FETCH_ADD_SWAP: [1, 2],
  CAS: [2, 4, 8],
} as const;

/**
 * §2.7.1 ECRC: CRC-32 with polynomial 04C1_1DB7h, seed FFFF_FFFFh, bits taken from bit 0 to
 * bit 7 of each byte, result complemented and mapped per Table 2-55. Variant bits (Type[0] in
 * byte 0 bit 0, EP in byte 2 bit 6) are treated as 1.
 */
export const ECRC = {
  POLYNOMIAL: 0x04c11db7,
  /** The same polynomial bit-reversed, for the LSB-first (reflected) table form. */
  POLYNOMIAL_REFLECTED: 0xedb88320,
  SEED: 0xffffffff,
  VARIANT_BYTE0_MASK: 0x01,
  VARIANT_BYTE2_MASK: 0x40,
} as const;
