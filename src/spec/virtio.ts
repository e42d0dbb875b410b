/**
 * Constants from the OASIS virtio specification (1.2–1.4) and Linux's uapi headers. Constants only.
 */

/** §4.1.2 PCI IDs: modern devices are 0x1040 + device id. */
export const VIRTIO_PCI = {
  VENDOR_ID: 0x1af4,
  DEVICE_ID_BASE: 0x1040,
  SUBSYSTEM_VENDOR_ID: 0x1af4,
  MIN_REVISION: 1,
} as const;

/** §5 Device ids. */
export const VIRTIO_ID = {
  NET: 1,
} as const;

/** §2.1 Device status field. */
export const VIRTIO_STATUS = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** §6 Reserved feature bits (device-independent). */
export const VIRTIO_F = {
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  NOTIF_CONFIG_DATA: 39,
  RING_RESET: 40,
} as const;

/** §4.1.4 virtio_pci_cap cfg_type values. */
export const VIRTIO_PCI_CAP = {
  COMMON_CFG: 1,
  NOTIFY_CFG: 2,
  ISR_CFG: 3,
  DEVICE_CFG: 4,
  PCI_CFG: 5,
  SHARED_MEMORY_CFG: 8,
  VENDOR_CFG: 9,
} as const;

/** §4.1.4 Layout of struct virtio_pci_cap (byte offsets within the capability). */
export const VIRTIO_PCI_CAP_OFF = {
  CAP_VNDR: 0,
  CAP_NEXT: 1,
  CAP_LEN: 2,
  CFG_TYPE: 3,
  BAR: 4,
  ID: 5,
  OFFSET: 8,
  LENGTH: 12,
  /** virtio_pci_notify_cap only. */
  NOTIFY_OFF_MULTIPLIER: 16,
  /** virtio_pci_cfg_cap only: pci_cfg_data follows the cap header. */
  PCI_CFG_DATA: 16,
} as const;

export const VIRTIO_PCI_CAP_LEN = 16;
export const VIRTIO_PCI_NOTIFY_CAP_LEN = 20;
export const VIRTIO_PCI_CFG_CAP_LEN = 20;

/** §4.1.4.3 struct virtio_pci_common_cfg (little-endian). */
export const VIRTIO_COMMON = {
  DEVICE_FEATURE_SELECT: 0,
  DEVICE_FEATURE: 4,
  DRIVER_FEATURE_SELECT: 8,
  DRIVER_FEATURE: 12,
  CONFIG_MSIX_VECTOR: 16,
  NUM_QUEUES: 18,
  DEVICE_STATUS: 20,
  CONFIG_GENERATION: 21,
  QUEUE_SELECT: 22,
  QUEUE_SIZE: 24,
  QUEUE_MSIX_VECTOR: 26,
  QUEUE_ENABLE: 28,
  QUEUE_NOTIFY_OFF: 30,
  QUEUE_DESC_LO: 32,
  QUEUE_DESC_HI: 36,
  QUEUE_DRIVER_LO: 40,
  QUEUE_DRIVER_HI: 44,
  QUEUE_DEVICE_LO: 48,
  QUEUE_DEVICE_HI: 52,
  QUEUE_NOTIF_CONFIG_DATA: 56,
  QUEUE_RESET: 58,
  SIZE: 60,
} as const;

/** §4.1.5.1.2 "no vector" for MSI-X vector fields. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** ISR status bits (§4.1.4.5). */
export const VIRTIO_ISR = {
  QUEUE: 1,
  CONFIG: 2,
} as const;

/** §2.7 Split virtqueue layout. */
export const VIRTQ_DESC_F = {
  NEXT: 1,
  WRITE: 2,
  INDIRECT: 4,
} as const;

export const VIRTQ_DESC_SIZE = 16;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;
export const VIRTQ_MAX_SIZE = 32768;

export const VIRTQ_DESC_OFF = { ADDR: 0, LEN: 8, FLAGS: 12, NEXT: 14 } as const;
/** avail ring: flags @0, idx @2, ring[i] @4+2i, used_event @4+2N. */
export const VIRTQ_AVAIL_OFF = { FLAGS: 0, IDX: 2, RING: 4 } as const;
/** used ring: flags @0, idx @2, {id, len} @4+8i, avail_event @4+8N. */
export const VIRTQ_USED_OFF = { FLAGS: 0, IDX: 2, RING: 4, ELEM_SIZE: 8 } as const;

/** §2.8 Packed virtqueue descriptor flags. */
export const VIRTQ_PACKED = {
  DESC_F_AVAIL: 1 << 7,
  DESC_F_USED: 1 << 15,
  EVENT_F_ENABLE: 0,
  EVENT_F_DISABLE: 1,
  EVENT_F_DESC: 2,
} as const;

/** §5.1.3 virtio-net feature bits. */
export const VIRTIO_NET_F = {
  CSUM: 0,
  GUEST_CSUM: 1,
  MTU: 3,
  MAC: 5,
  MRG_RXBUF: 15,
  STATUS: 16,
  CTRL_VQ: 17,
  CTRL_RX: 18,
  MQ: 22,
  SPEED_DUPLEX: 63,
} as const;

/** §5.1.4 struct virtio_net_config. */
export const VIRTIO_NET_CONFIG = {
  MAC: 0,
  STATUS: 6,
  MAX_VIRTQUEUE_PAIRS: 8,
  MTU: 10,
  SPEED: 12,
  DUPLEX: 16,
  SIZE: 20,
} as const;

export const VIRTIO_NET_S_LINK_UP = 1;

/** §5.1.6 struct virtio_net_hdr (VERSION_1: 12 bytes, num_buffers always present). */
export const VIRTIO_NET_HDR = {
  FLAGS: 0,
  GSO_TYPE: 1,
  HDR_LEN: 2,
  GSO_SIZE: 4,
  CSUM_START: 6,
  CSUM_OFFSET: 8,
  NUM_BUFFERS: 10,
  SIZE: 12,
} as const;

export const VIRTIO_NET_HDR_F = {
  NEEDS_CSUM: 1,
  DATA_VALID: 2,
  RSC_INFO: 4,
} as const;

export const VIRTIO_NET_HDR_GSO_NONE = 0;
