/**
 * The register block of Linux's PCI endpoint test function (drivers/pci/endpoint/functions/
 * pci-epf-test.c, endpoint side; drivers/misc/pci_endpoint_test.c, host side). Constants only.
 *
 * The block is little-endian and sits at offset 0 of the "test register BAR" (the first free BAR).
 * COMMAND and STATUS directions are the endpoint's: COMMAND_READ makes the endpoint READ host
 * memory at SRC_ADDR and compare crc32_le(~0, data) with CHECKSUM (the host's "write test");
 * COMMAND_WRITE makes the endpoint fill host memory at DST_ADDR with random bytes and store their
 * checksum in CHECKSUM (the host's "read test"); COMMAND_COPY copies SRC to DST (the host compares
 * the two checksums itself).
 */

/** Register offsets (struct pci_epf_test_reg, packed). */
export const PCI_EPF_TEST_REG = {
  MAGIC: 0x00,
  COMMAND: 0x04,
  STATUS: 0x08,
  SRC_ADDR_LO: 0x0c,
  SRC_ADDR_HI: 0x10,
  DST_ADDR_LO: 0x14,
  DST_ADDR_HI: 0x18,
  SIZE: 0x1c,
  CHECKSUM: 0x20,
  IRQ_TYPE: 0x24,
  IRQ_NUMBER: 0x28,
  FLAGS: 0x2c,
  CAPS: 0x30,
  /** Bytes of registers defined above. */
  SIZEOF: 0x34,
  /** The endpoint rounds the register block to 128 bytes; an MSI-X table follows it. */
  BLOCK_SIZE: 128,
} as const;

/** COMMAND bits (exactly one is set per command). */
export const PCI_EPF_TEST_COMMAND = {
  RAISE_INTX_IRQ: 1 << 0,
  RAISE_MSI_IRQ: 1 << 1,
  RAISE_MSIX_IRQ: 1 << 2,
  READ: 1 << 3,
  WRITE: 1 << 4,
  COPY: 1 << 5,
} as const;

/** STATUS bits. */
export const PCI_EPF_TEST_STATUS = {
  READ_SUCCESS: 1 << 0,
  READ_FAIL: 1 << 1,
  WRITE_SUCCESS: 1 << 2,
  WRITE_FAIL: 1 << 3,
  COPY_SUCCESS: 1 << 4,
  COPY_FAIL: 1 << 5,
  IRQ_RAISED: 1 << 6,
  SRC_ADDR_INVALID: 1 << 7,
  DST_ADDR_INVALID: 1 << 8,
} as const;

/** IRQ_TYPE values. IRQ_NUMBER is 1-based for MSI and MSI-X (vector n − 1), 0 for INTx. */
export const PCI_EPF_TEST_IRQ_TYPE = {
  INTX: 0,
  MSI: 1,
  MSIX: 2,
} as const;

/** FLAGS bits. */
export const PCI_EPF_TEST_FLAGS = {
  USE_DMA: 1 << 0,
} as const;

/** CAPS bits (read by the host at probe). */
export const PCI_EPF_TEST_CAPS = {
  UNALIGNED_ACCESS: 1 << 0,
  MSI: 1 << 1,
  MSIX: 1 << 2,
  INTX: 1 << 3,
} as const;

/** Default sizes of BAR0..BAR5 (bar_size[] in pci-epf-test.c). */
export const PCI_EPF_TEST_BAR_SIZES = [512, 512, 1024, 16384, 131072, 1048576] as const;

/** The pattern the host writes to every DW of a BAR in its BAR test (pci_endpoint_test_bar). */
export const PCI_EPF_TEST_BAR_PATTERN = 0xa0a0a0a0;

/**
 * IDs used by Linux's pci-test-howto (TI DRA74x, 104c:b500), which pci_endpoint_test binds to;
 * the test function's class is "others" (0xff).
 */
export const PCI_EPF_TEST_HOWTO_IDS = {
  VENDOR_ID: 0x104c,
  DEVICE_ID: 0xb500,
} as const;
