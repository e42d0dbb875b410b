import type { Counters } from '../core/index.js';

/**
 * Where the endpoint's virtio-net device sends the frames the driver transmits, and where the
 * frames it delivers to the driver come from: `loopback`, `null`, `tap:IFNAME`, `udp:…`.
 * Frames are whole Ethernet frames without FCS and without the virtio-net header.
 */
export interface NetBackend {
  readonly name: string;
  /**
   * Takes one frame toward the world. The backend must not keep `frame` after returning (copy
   * it if it queues). Frames it cannot take (too large, link gone) are counted and dropped.
   */
  send(frame: Uint8Array): void;
  /** Set by the device: one frame from the world toward the driver. */
  onFrame: (frame: Uint8Array) => void;
  /** Pause/resume delivery of onFrame (backpressure when the driver posts no RX buffers). */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
  readonly counters: Counters;
}
