/**
 * What the socket transports (ws, tcp, unix) share: holding back messages (and the close) that
 * arrive before the owner has attached `onMessage`.
 *
 * That window is real: a WebSocket client's first message can arrive in the same read as the
 * upgrade response, and ws emits it synchronously right after 'open' — before the promise
 * returned by connectTransport has resolved and anybody could attach a handler. Queued events are
 * delivered in order on the next turn after attachment (setImmediate: this is OS-bound code, not
 * the simulator's), so an owner that attaches in a constructor is never called back from inside it.
 */
import { joinBytes } from './framing.js';
import type { Transport } from './transport.js';

type Pending = { message: Uint8Array } | { close: Error | undefined };

export abstract class SocketTransportBase implements Transport {
  abstract readonly remote: string;
  onDrain: () => void = () => {};
  onClose: (error?: Error) => void = () => {};
  onMessageParts: ((parts: readonly Uint8Array[]) => void) | undefined = undefined;

  private handler: ((data: Uint8Array) => void) | undefined;
  /** Events held back until the owner attaches and the queue has been drained; then undefined. */
  private pending: Pending[] | undefined = [];
  private draining = false;

  /** `reusesReceiveMemory`: see Transport; held-back messages are then copied. */
  constructor(readonly reusesReceiveMemory = false) {}

  get onMessage(): (data: Uint8Array) => void {
    return this.handler ?? (() => {});
  }

  set onMessage(fn: (data: Uint8Array) => void) {
    const first = this.handler === undefined;
    this.handler = fn;
    if (!first || this.pending === undefined) return;
    if (this.pending.length === 0) {
      this.pending = undefined;
      return;
    }
    if (!this.draining) {
      this.draining = true;
      setImmediate(() => this.drainPending());
    }
  }

  abstract send(chunks: readonly Uint8Array[], done?: () => void): boolean;
  abstract close(reason?: string): void;

  protected deliverMessage(data: Uint8Array): void {
    // (Uint8Array's slice: a Buffer's own slice() would be a view.)
    if (this.pending !== undefined) this.pending.push({ message: this.reusesReceiveMemory ? Uint8Array.prototype.slice.call(data) : data });
    else this.handler!(data);
  }

  /** A message that arrived in pieces: as they are to an owner that takes pieces, else joined. */
  protected deliverMessageParts(parts: readonly Uint8Array[]): void {
    const takesParts = this.onMessageParts;
    if (this.pending === undefined && takesParts !== undefined) {
      takesParts(parts);
      return;
    }
    this.deliverMessage(joinBytes(parts));
  }

  protected deliverClose(error: Error | undefined): void {
    if (this.pending !== undefined) this.pending.push({ close: error });
    else this.onClose(error);
  }

  private drainPending(): void {
    const q = this.pending;
    if (q === undefined) return;
    // Events that arrive while draining join the end of q, so order is kept.
    for (let i = 0; i < q.length; i++) {
      const ev = q[i]!;
      if ('message' in ev) this.handler!(ev.message);
      else this.onClose(ev.close);
    }
    this.pending = undefined;
    this.draining = false;
  }
}
