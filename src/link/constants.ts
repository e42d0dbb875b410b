/**
 * tlpwire's own wire constants (docs/PROTOCOL.md). These are not PCIe facts, so they live with the
 * link rather than in src/spec/.
 */

/** The protocol version the training handshake checks (docs/PROTOCOL.md, "Versions"). */
export const PROTOCOL_VERSION = 1;
export const PROTOCOL_NAME = 'tlpwire';

/** Batch header: "TW", the sender's protocol version, flags (0). Frozen across versions. */
export const BATCH_MAGIC_0 = 0x54; // 'T'
export const BATCH_MAGIC_1 = 0x57; // 'W'
export const BATCH_HEADER_BYTES = 4;

/** Item header: type, flags (0), length u16 big-endian (of the body that follows). */
export const ITEM_HEADER_BYTES = 4;
export const ITEM_MAX_BODY_BYTES = 0xffff;

/**
 * Item types. Types below 0x80 must be understood: an unknown one is a protocol error. Types
 * 0x80 and above may be skipped by a receiver that does not know them, so a later version can add
 * advisory items without a version bump.
 */
export const ITEM = {
  /** A TLP exactly as PCIe puts it on the wire (non-flit; no STP/seq/LCRC). */
  TLP: 0x01,
  /** Reserved for version 2: u16 sequence number, then the TLP (link recovery / replay). */
  TLP_SEQ: 0x02,
  /** Link control, MessagePack bodies. */
  HELLO: 0x10,
  UPDATE_FC: 0x11,
  ERROR: 0x12,
  BYE: 0x13,
  /** Reserved for version 2: acknowledgement / negative acknowledgement of TLP_SEQ items. */
  ACK: 0x14,
  NAK: 0x15,
  /** Reserved for version 2: pre-shared-key challenge and response. */
  AUTH: 0x16,
  /** Reserved for version 2: resume a session after a reconnect (replay from a sequence number). */
  RESUME: 0x17,
  /** First type a receiver may skip when it does not know it. */
  IGNORABLE_MIN: 0x80,
} as const;

/**
 * Largest transport message (one batch) a receiver must accept and a sender may produce. The
 * ws `maxPayload` and the tcp/unix record bound are this value.
 */
export const MAX_MESSAGE_BYTES = 256 * 1024;

/** A sender flushes a batch before it would grow past this (default; configurable). */
export const DEFAULT_BATCH_BYTES = 64 * 1024;

/** Control items (MessagePack) are small; this bounds what we encode and accept. */
export const MAX_CONTROL_BODY_BYTES = 16 * 1024;

/** Bytes of the longest TLP we carry: 4 DW header + 1024 DW payload + digest. */
export const MAX_TLP_BYTES = 16 + 4096 + 4;

/** Default time to complete the training handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT_NS = 5_000_000_000;

/**
 * Freed credits are sent at once (an urgent UpdateFC) once this fraction of a window was freed
 * (LinkOptions.fcUpdateFraction). An eighth of the 512 KiB posted window, the most scaled flow
 * control allows: in runs taken in ABBA order a quarter was 0–3% slower on writes, half about 10%.
 */
export const DEFAULT_FC_UPDATE_FRACTION = 0.125;

/** Transport high-water mark: `send` returns false above it. */
export const DEFAULT_HIGH_WATER_BYTES = 1024 * 1024;

/** Feature flag for PCIe Scaled Flow Control in the handshake. */
export const FEATURE_SCALED_FC = 'scaled-fc';

/** WebSocket subprotocol a tlpwire client asks for and a tlpwire server requires. */
export const WS_SUBPROTOCOL = 'tlpwire';
