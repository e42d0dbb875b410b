/**
 * Configuration-space constants from the PCI Express Base Specification (6.x, chapter 7) and the
 * PCI Code and ID Assignment Specification. Constants only. Register offsets are byte offsets:
 * into the function's config space for header registers, into the capability structure for
 * capability registers. Bit constants are masks unless the name ends in `_SHIFT`.
 */

/** Config space sizes (§7.2.2): 256 bytes PCI-compatible, 4096 with the extended region. */
export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;
export const PCI_CFG_REGISTERS = PCI_CFG_SPACE_EXP_SIZE / 4;

/** §7.5.1.1 (Type 0/1 common) and §7.5.1.2 (Type 0) header register offsets. */
export const PCI_CFG = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION_ID: 0x08,
  /** Class Code is 3 bytes: programming interface 0x09, sub-class 0x0a, base class 0x0b. */
  CLASS_PROG: 0x09,
  CLASS_SUB: 0x0a,
  CLASS_BASE: 0x0b,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BIST: 0x0f,
  BAR0: 0x10,
  CARDBUS_CIS: 0x28,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  EXPANSION_ROM: 0x30,
  CAPABILITIES_POINTER: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  MIN_GNT: 0x3e,
  MAX_LAT: 0x3f,
  /** First byte after the Type 0 header: standard capabilities live in [0x40, 0x100). */
  CAPS_START: 0x40,
  /** §7.6: extended capabilities always start here. */
  EXT_CAPS_START: 0x100,
} as const;

/** §7.5.1.2: a Type 0 header has six BARs of 4 bytes each from 0x10. */
export const PCI_NUM_BARS = 6;

/** §7.5.1.1.3 Command Register. */
export const PCI_COMMAND = {
  IO_SPACE: 1 << 0,
  MEMORY_SPACE: 1 << 1,
  BUS_MASTER: 1 << 2,
  /** Hardwired to 0 on PCIe (Special Cycle, MWI, VGA Palette Snoop, IDSEL Stepping, Fast B2B). */
  SPECIAL_CYCLES: 1 << 3,
  MWI_ENABLE: 1 << 4,
  VGA_PALETTE_SNOOP: 1 << 5,
  PARITY_ERROR_RESPONSE: 1 << 6,
  IDSEL_STEPPING: 1 << 7,
  SERR_ENABLE: 1 << 8,
  FAST_BACK_TO_BACK: 1 << 9,
  INTX_DISABLE: 1 << 10,
} as const;

/** §7.5.1.1.4 Status Register. */
export const PCI_STATUS = {
  IMMEDIATE_READINESS: 1 << 0,
  INTERRUPT_STATUS: 1 << 3,
  CAPABILITIES_LIST: 1 << 4,
  /** RW1C error bits. */
  MASTER_DATA_PARITY_ERROR: 1 << 8,
  SIGNALED_TARGET_ABORT: 1 << 11,
  RECEIVED_TARGET_ABORT: 1 << 12,
  RECEIVED_MASTER_ABORT: 1 << 13,
  SIGNALED_SYSTEM_ERROR: 1 << 14,
  DETECTED_PARITY_ERROR: 1 << 15,
} as const;

/** All RW1C bits of the Status register (§7.5.1.1.4). */
export const PCI_STATUS_RW1C_MASK = 0xf900;

/** §7.5.1.1.9 Header Type: bits 6:0 layout, bit 7 Multi-Function Device. */
export const PCI_HEADER_TYPE = {
  LAYOUT_MASK: 0x7f,
  TYPE0: 0x00,
  TYPE1: 0x01,
  MULTI_FUNCTION: 0x80,
} as const;

/** §7.5.1.2.1 Base Address Registers. */
export const PCI_BAR = {
  /** Bit 0: 0 memory, 1 I/O. */
  SPACE_IO: 0x1,
  /** Bits 2:1 memory type: 00 32-bit, 10 64-bit. */
  MEM_TYPE_MASK: 0x6,
  MEM_TYPE_32: 0x0,
  MEM_TYPE_64: 0x4,
  MEM_PREFETCHABLE: 0x8,
  /** Address bits of a memory BAR are 31:4, of an I/O BAR 31:2. */
  MEM_ADDRESS_MASK: 0xfffffff0,
  IO_ADDRESS_MASK: 0xfffffffc,
  /** PCIe §7.5.1.2.1: a memory BAR requests at least 128 bytes; an I/O BAR at most 256. */
  MEM_MIN_SIZE: 128,
  IO_MIN_SIZE: 4,
  IO_MAX_SIZE: 256,
} as const;

/** §7.5.1.1.6 Interrupt Pin values. */
export const PCI_INTERRUPT_PIN = {
  NONE: 0,
  INTA: 1,
  INTB: 2,
  INTC: 3,
  INTD: 4,
} as const;

/** PCI Code and ID Assignment §1: base class codes used here. */
export const PCI_CLASS = {
  NETWORK_ETHERNET: 0x020000,
  OTHERS: 0xff0000,
} as const;

/** PCI Code and ID Assignment §2: Capability IDs. */
export const PCI_CAP_ID = {
  PM: 0x01,
  MSI: 0x05,
  VENDOR_SPECIFIC: 0x09,
  EXP: 0x10,
  MSIX: 0x11,
} as const;

/** PCI Code and ID Assignment §3: Extended Capability IDs. */
export const PCI_EXT_CAP_ID = {
  NULL: 0x0000,
  AER: 0x0001,
  DSN: 0x0003,
  VENDOR_SPECIFIC: 0x000b,
} as const;

/** §7.5.1.1.10 / §7.6.3 capability headers. */
export const PCI_CAP_HDR = {
  ID: 0x00,
  NEXT: 0x01,
  /** Bits 1:0 of a next pointer are reserved; software masks them. */
  NEXT_MASK: 0xfc,
} as const;

export const PCI_EXT_CAP_HDR = {
  ID_MASK: 0xffff,
  VERSION_SHIFT: 16,
  VERSION_MASK: 0xf,
  NEXT_SHIFT: 20,
  NEXT_MASK: 0xffc,
} as const;

/** §7.5.3 PCI Express Capability structure: register offsets within the capability. */
export const PCI_EXP = {
  FLAGS: 0x02,
  DEVCAP: 0x04,
  DEVCTL: 0x08,
  DEVSTA: 0x0a,
  LNKCAP: 0x0c,
  LNKCTL: 0x10,
  LNKSTA: 0x12,
  SLTCAP: 0x14,
  SLTCTL: 0x18,
  SLTSTA: 0x1a,
  RTCTL: 0x1c,
  RTCAP: 0x1e,
  RTSTA: 0x20,
  DEVCAP2: 0x24,
  DEVCTL2: 0x28,
  DEVSTA2: 0x2a,
  LNKCAP2: 0x2c,
  LNKCTL2: 0x30,
  LNKSTA2: 0x32,
  SLTCAP2: 0x34,
  SLTCTL2: 0x38,
  SLTSTA2: 0x3a,
  /** Size of a version 2 capability structure. */
  SIZEOF_V2: 0x3c,
} as const;

/** §7.5.3.2 PCI Express Capabilities Register. */
export const PCI_EXP_FLAGS = {
  VERSION_MASK: 0x000f,
  TYPE_SHIFT: 4,
  TYPE_MASK: 0x00f0,
  SLOT_IMPLEMENTED: 0x0100,
  IRQ_SHIFT: 9,
  IRQ_MASK: 0x3e00,
} as const;

/** §7.5.3.2 Device/Port Type values. */
export const PCI_EXP_TYPE = {
  ENDPOINT: 0x0,
  LEGACY_ENDPOINT: 0x1,
  ROOT_PORT: 0x4,
  UPSTREAM: 0x5,
  DOWNSTREAM: 0x6,
  RC_INTEGRATED_ENDPOINT: 0x9,
} as const;

/** §7.5.3.3 Device Capabilities Register. */
export const PCI_EXP_DEVCAP = {
  PAYLOAD_MASK: 0x00000007,
  PHANTOM_MASK: 0x00000018,
  EXT_TAG: 0x00000020,
  L0S_LATENCY_SHIFT: 6,
  L1_LATENCY_SHIFT: 9,
  ROLE_BASED_ERR: 0x00008000,
  SLOT_POWER_VALUE_SHIFT: 18,
  SLOT_POWER_SCALE_SHIFT: 26,
  FLR: 0x10000000,
} as const;

/** §7.5.3.4 Device Control Register. */
export const PCI_EXP_DEVCTL = {
  CERE: 0x0001,
  NFERE: 0x0002,
  FERE: 0x0004,
  URRE: 0x0008,
  RELAX_EN: 0x0010,
  PAYLOAD_SHIFT: 5,
  PAYLOAD_MASK: 0x00e0,
  EXT_TAG: 0x0100,
  PHANTOM: 0x0200,
  AUX_PME: 0x0400,
  NOSNOOP_EN: 0x0800,
  READRQ_SHIFT: 12,
  READRQ_MASK: 0x7000,
  /** Initiate Function Level Reset: write-only, always reads 0 (endpoints). */
  BCR_FLR: 0x8000,
} as const;

/** §7.5.3.4 power-on defaults: RO and NS enabled, MPS 128 B, MRRS 512 B. */
export const PCI_EXP_DEVCTL_DEFAULT = 0x2810;

/** §7.5.3.5 Device Status Register. */
export const PCI_EXP_DEVSTA = {
  CED: 0x0001,
  NFED: 0x0002,
  FED: 0x0004,
  URD: 0x0008,
  AUXPD: 0x0010,
  TRPND: 0x0020,
} as const;

/** §7.5.3.6 Link Capabilities Register. */
export const PCI_EXP_LNKCAP = {
  SLS_MASK: 0x0000000f,
  MLW_SHIFT: 4,
  MLW_MASK: 0x000003f0,
  ASPMS_SHIFT: 10,
  L0SEL_SHIFT: 12,
  L1EL_SHIFT: 15,
  CLKPM: 0x00040000,
  SDERC: 0x00080000,
  DLLLARC: 0x00100000,
  LBNC: 0x00200000,
  ASPM_OPTIONALITY: 0x00400000,
  PN_SHIFT: 24,
} as const;

/** §7.5.3.7 Link Control Register. */
export const PCI_EXP_LNKCTL = {
  ASPMC_MASK: 0x0003,
  RCB: 0x0008,
  LD: 0x0010,
  RL: 0x0020,
  CCC: 0x0040,
  ES: 0x0080,
  CLKREQ_EN: 0x0100,
  HAWD: 0x0200,
} as const;

/** §7.5.3.8 Link Status Register. */
export const PCI_EXP_LNKSTA = {
  CLS_MASK: 0x000f,
  NLW_SHIFT: 4,
  NLW_MASK: 0x03f0,
  LT: 0x0800,
  SLC: 0x1000,
  DLLLA: 0x2000,
  LBMS: 0x4000,
  LABS: 0x8000,
} as const;

/**
 * §7.5.3.18 Supported Link Speeds Vector: bit n-1 of the vector (bit n of Link Capabilities 2)
 * is the n-th speed. Link speed fields (LnkCap Max Link Speed, LnkSta Current Link Speed,
 * LnkCtl2 Target Link Speed) hold n, an index into this vector.
 */
export const PCI_EXP_LINK_SPEED_GTS = [2.5, 5, 8, 16, 32, 64] as const;

/** Link widths a port may report (§7.5.3.6 Maximum Link Width). */
export const PCI_EXP_LINK_WIDTHS = [1, 2, 4, 8, 12, 16, 32] as const;

/** §7.5.3.15 Device Capabilities 2 Register. */
export const PCI_EXP_DEVCAP2 = {
  COMP_TMOUT_RANGES_MASK: 0x0000000f,
  COMP_TMOUT_RANGE_A: 0x1,
  COMP_TMOUT_RANGE_B: 0x2,
  COMP_TMOUT_RANGE_C: 0x4,
  COMP_TMOUT_RANGE_D: 0x8,
  COMP_TMOUT_DIS: 0x00000010,
  ARI: 0x00000020,
  ATOMIC_ROUTE: 0x00000040,
  LTR: 0x00000800,
  TAG_10BIT_COMP: 0x00010000,
  TAG_10BIT_REQ: 0x00020000,
} as const;

/** §7.5.3.16 Device Control 2 Register. */
export const PCI_EXP_DEVCTL2 = {
  COMP_TIMEOUT_MASK: 0x000f,
  COMP_TMOUT_DIS: 0x0010,
  ARI: 0x0020,
  ATOMIC_REQ: 0x0040,
  IDO_REQ_EN: 0x0100,
  IDO_CMP_EN: 0x0200,
  LTR_EN: 0x0400,
  TAG_10BIT_REQ_EN: 0x1000,
} as const;

/**
 * §7.5.3.16 Completion Timeout Value encodings valid for each supported range (DevCap2 bits 3:0).
 * 0000 (the default 50 µs–50 ms range) is always valid.
 */
export const PCI_EXP_COMP_TIMEOUT_VALUES_BY_RANGE = {
  A: [0b0001, 0b0010],
  B: [0b0101, 0b0110],
  C: [0b1001, 0b1010],
  D: [0b1101, 0b1110],
} as const;

/** §7.5.3.18 Link Capabilities 2 Register. */
export const PCI_EXP_LNKCAP2 = {
  SLS_SHIFT: 1,
  SLS_MASK: 0x000000fe,
  CROSSLINK: 0x00000100,
} as const;

/** §7.5.3.19 Link Control 2 Register. */
export const PCI_EXP_LNKCTL2 = {
  TLS_MASK: 0x000f,
  ENTER_COMPLIANCE: 0x0010,
  HASD: 0x0020,
} as const;

/** §7.5.3.20 Link Status 2 Register. */
export const PCI_EXP_LNKSTA2 = {
  CDL: 0x0001,
  EQUALIZATION_COMPLETE: 0x0002,
  EQUALIZATION_PHASE1: 0x0004,
  EQUALIZATION_PHASE2: 0x0008,
  EQUALIZATION_PHASE3: 0x0010,
  LINK_EQ_REQUEST: 0x0020,
} as const;

/** §7.5.2 Power Management Capability: register offsets within the capability. */
export const PCI_PM = {
  PMC: 0x02,
  PMCSR: 0x04,
  PMCSR_BSE: 0x06,
  DATA: 0x07,
  SIZEOF: 0x08,
} as const;

/** §7.5.2.1 Power Management Capabilities (PMC). */
export const PCI_PM_PMC = {
  VERSION_MASK: 0x0007,
  /** Version 3 = PCI Bus Power Management Interface Specification 1.2 (what PCIe requires). */
  VERSION_1_2: 0x0003,
  PME_CLOCK: 0x0008,
  IMMEDIATE_READINESS_D0: 0x0010,
  DSI: 0x0020,
  AUX_CURRENT_SHIFT: 6,
  D1: 0x0200,
  D2: 0x0400,
  PME_SUPPORT_SHIFT: 11,
  PME_SUPPORT_MASK: 0xf800,
} as const;

/** §7.5.2.2 Power Management Control/Status (PMCSR). */
export const PCI_PM_PMCSR = {
  STATE_MASK: 0x0003,
  NO_SOFT_RESET: 0x0008,
  PME_ENABLE: 0x0100,
  DATA_SELECT_SHIFT: 9,
  DATA_SCALE_SHIFT: 13,
  /** RW1C. */
  PME_STATUS: 0x8000,
} as const;

/** §7.5.2.2 PowerState field values. */
export const PCI_PM_STATE = {
  D0: 0,
  D1: 1,
  D2: 2,
  D3HOT: 3,
} as const;

/** §7.7.1 MSI Capability: register offsets within the capability (64-bit address form). */
export const PCI_MSI = {
  FLAGS: 0x02,
  ADDRESS_LO: 0x04,
  ADDRESS_HI: 0x08,
  DATA_32: 0x08,
  DATA_64: 0x0c,
  MASK_32: 0x0c,
  MASK_64: 0x10,
  PENDING_32: 0x10,
  PENDING_64: 0x14,
  /** Structure sizes rounded up to whole DWs (capabilities are DW-aligned). */
  SIZEOF_32: 0x0c,
  SIZEOF_64: 0x10,
  SIZEOF_32_PVM: 0x14,
  SIZEOF_64_PVM: 0x18,
} as const;

/** §7.7.1.2 MSI Message Control Register. */
export const PCI_MSI_FLAGS = {
  ENABLE: 0x0001,
  QMASK_SHIFT: 1,
  QMASK: 0x000e,
  QSIZE_SHIFT: 4,
  QSIZE: 0x0070,
  ADDR_64: 0x0080,
  MASK_BIT: 0x0100,
  EXT_DATA_CAP: 0x0200,
  EXT_DATA_EN: 0x0400,
} as const;

/** MSI allows 1, 2, 4, 8, 16 or 32 vectors (log2 0..5). */
export const PCI_MSI_MAX_VECTORS = 32;

/** §7.7.2 MSI-X Capability: register offsets within the capability. */
export const PCI_MSIX = {
  FLAGS: 0x02,
  TABLE: 0x04,
  PBA: 0x08,
  SIZEOF: 0x0c,
} as const;

/** §7.7.2.2 MSI-X Message Control Register. */
export const PCI_MSIX_FLAGS = {
  /** Table Size is encoded as N − 1. */
  QSIZE: 0x07ff,
  MASKALL: 0x4000,
  ENABLE: 0x8000,
} as const;

/** §7.7.2.3/4 Table Offset/Table BIR and PBA Offset/PBA BIR. */
export const PCI_MSIX_BIR = {
  BIR_MASK: 0x00000007,
  OFFSET_MASK: 0xfffffff8,
} as const;

/** MSI-X allows up to 2048 vectors (§7.7.2.2). */
export const PCI_MSIX_MAX_VECTORS = 2048;

/** §7.7.2.5–8 MSI-X Table entry layout (16 bytes per vector). */
export const PCI_MSIX_ENTRY = {
  LOWER_ADDR: 0x0,
  UPPER_ADDR: 0x4,
  DATA: 0x8,
  VECTOR_CTRL: 0xc,
  SIZE: 16,
  /** Vector Control bit 0: Mask Bit, 1 after reset. */
  CTRL_MASKBIT: 0x1,
} as const;

/** §7.8.4 Advanced Error Reporting Extended Capability: register offsets. */
export const PCI_ERR = {
  UNCOR_STATUS: 0x04,
  UNCOR_MASK: 0x08,
  UNCOR_SEVER: 0x0c,
  COR_STATUS: 0x10,
  COR_MASK: 0x14,
  CAP: 0x18,
  HEADER_LOG: 0x1c,
  /** Root Error Command/Status/Source ID follow for root ports; endpoints stop at 0x2c. */
  ROOT_COMMAND: 0x2c,
  ROOT_STATUS: 0x30,
  ROOT_ERR_SRC: 0x34,
  TLP_PREFIX_LOG: 0x38,
  /** Bytes this model reserves for an endpoint's AER structure. */
  SIZEOF_ENDPOINT: 0x38,
  VERSION: 2,
} as const;

/** §7.8.4.2 Uncorrectable Error Status/Mask/Severity bits. */
export const PCI_ERR_UNC = {
  DLP: 1 << 4,
  SURPDN: 1 << 5,
  POISON_TLP: 1 << 12,
  FCP: 1 << 13,
  COMP_TIME: 1 << 14,
  COMP_ABORT: 1 << 15,
  UNX_COMP: 1 << 16,
  RX_OVER: 1 << 17,
  MALF_TLP: 1 << 18,
  ECRC: 1 << 19,
  UNSUP: 1 << 20,
  ACSV: 1 << 21,
  INTN: 1 << 22,
  MCBTLP: 1 << 23,
  ATOMEG: 1 << 24,
  TLPPRE: 1 << 25,
  POISON_BLK: 1 << 26,
} as const;

/** §7.8.4.4 Uncorrectable Error Severity default: DLP, SURPDN, FCP, RX_OVER, MALF_TLP, INTN fatal. */
export const PCI_ERR_UNC_SEVER_DEFAULT = 0x00462030;

/** §7.8.4.5 Correctable Error Status/Mask bits. */
export const PCI_ERR_COR = {
  RCVR: 1 << 0,
  BAD_TLP: 1 << 6,
  BAD_DLLP: 1 << 7,
  REP_ROLL: 1 << 8,
  REP_TIMER: 1 << 12,
  ADV_NFAT: 1 << 13,
  INTERNAL: 1 << 14,
  LOG_OVER: 1 << 15,
} as const;

/** §7.8.4.6 Correctable Error Mask default: Advisory Non-Fatal masked. */
export const PCI_ERR_COR_MASK_DEFAULT = 0x00002000;

/** §7.8.4.7 Advanced Error Capabilities and Control Register. */
export const PCI_ERR_CAP = {
  FEP_MASK: 0x0000001f,
  ECRC_GENC: 0x00000020,
  ECRC_GENE: 0x00000040,
  ECRC_CHKC: 0x00000080,
  ECRC_CHKE: 0x00000100,
  MHRC: 0x00000200,
  MHRE: 0x00000400,
  PREFIX_LOG_PRESENT: 0x00000800,
  COMP_TIMEOUT_LOG_CAP: 0x00001000,
} as const;

/** §7.9.3 Device Serial Number Extended Capability: register offsets. */
export const PCI_DSN = {
  LOWER: 0x04,
  UPPER: 0x08,
  SIZEOF: 0x0c,
  VERSION: 1,
} as const;

/** PCI Code and ID Assignment §2: a vendor-specific capability has its length at byte 2. */
export const PCI_VNDR = {
  LENGTH: 0x02,
} as const;
