/**
 * A transport is a message-oriented byte pipe between two link partners: one WebSocket binary
 * message, or one length-prefixed record on TCP/Unix, or one in-memory delivery in the
 * simulator. The link layer above it owns everything else (handshake, batching, credits).
 */
export interface Transport {
  /** A human-readable description of the peer (for logs), e.g. "ws://127.0.0.1:5301". */
  readonly remote: string;
  /**
   * Sends one message made of `chunks`, in order, as one socket write where the transport can.
   * Returns false when the socket's buffer is above its high-water mark: the caller should stop
   * sending until `onDrain` fires. Data is never dropped because of that.
   */
  send(chunks: readonly Uint8Array[]): boolean;
  /** Closes the transport; `onClose` fires once afterwards. */
  close(reason?: string): void;
  /** Set by the owner. Each call is one whole message; `data` may be reused after the call returns. */
  onMessage: (data: Uint8Array) => void;
  onDrain: () => void;
  /** Fires once, when the transport is closed from either side; `error` if it failed. */
  onClose: (error?: Error) => void;
}

export interface TransportServer {
  /** The URL this server actually listens on (with the real port when 0 was asked for). */
  readonly url: string;
  onConnection: (transport: Transport) => void;
  close(): Promise<void>;
}
