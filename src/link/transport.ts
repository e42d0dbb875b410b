import type { Logger } from '../core/index.js';

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
   *
   * Sockets keep a reference to the chunks until the kernel has taken them (no copy), so the
   * caller must not change them after the call; the Link never rewrites a sent batch.
   *
   * `done`, when given, is called once the transport no longer holds the chunks (they were
   * written or copied, or the transport closed), possibly before send returns: from then on the
   * caller may reuse their memory. A transport that cannot tell never calls it.
   */
  send(chunks: readonly Uint8Array[], done?: () => void): boolean;
  /** Closes the transport after what was sent; `onClose` fires once afterwards. */
  close(reason?: string): void;
  /**
   * Set by the owner. Each call is one whole message. The bytes are the receiver's: the transport
   * never reuses or changes them, so decoded TLP payloads may stay views into them (unless
   * `reusesReceiveMemory`).
   */
  onMessage: (data: Uint8Array) => void;
  /**
   * True when the bytes given to onMessage are valid only during the call: the transport reads
   * later data into the same memory (node:net's `onread`, which spares an allocation per socket
   * read and the garbage collections that follow). The receiver copies whatever it keeps. Such a
   * transport never uses onMessageParts.
   */
  readonly reusesReceiveMemory?: boolean;
  /**
   * Optional, set by an owner that can take a message in pieces: a transport may then deliver a
   * message that reached it in several reads as those pieces, in order, instead of copying them
   * into one buffer for onMessage. The same ownership rules apply to each piece.
   */
  onMessageParts?: ((parts: readonly Uint8Array[]) => void) | undefined;
  onDrain: () => void;
  /** Fires once, when the transport is closed from either side; `error` if it failed. */
  onClose: (error?: Error) => void;
}

export interface TransportServer {
  /** The URL this server actually listens on (with the real port when 0 was asked for). */
  readonly url: string;
  onConnection: (transport: Transport) => void;
  /** Stops listening and closes the connections it accepted. */
  close(): Promise<void>;
}

/** Options shared by every transport. */
export interface TransportOptions {
  /** Refused strangers and transport failures are logged here. */
  logger?: Logger;
  /** `send` returns false while more than this many bytes wait in the socket. Default 1 MiB. */
  highWaterBytes?: number;
  /** Largest message accepted; bigger ones close the connection (ERR_LINK_PROTOCOL). Default 256 KiB. */
  maxMessageBytes?: number;
  /** Real sockets: give up connecting after this long. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * tcp:// and unix: servers: accepted sockets read into one reused buffer of their own, as
   * connecting ones do (Transport.reusesReceiveMemory), when the native addon that makes this
   * possible loads (native/tap/sockfd.c). Default true; false keeps node:net's new buffer per read.
   */
  reuseAcceptedReads?: boolean;
}
