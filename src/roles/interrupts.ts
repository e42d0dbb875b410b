/**
 * The root complex's interrupt controller: the window devices write MSI / MSI-X messages into,
 * and the receiver of INTx and error Messages.
 *
 *   0xFEE0_0000 ┌──────────────┐  MWr of one DW here = an interrupt message (as on x86, whose
 *               │ vector 0 @+0 │  LAPIC window this imitates). Each allocated vector owns one DW
 *               │ vector 1 @+4 │  address; its data is the vector number. An MSI block of N
 *               │ …            │  vectors owns one address and N consecutive data values.
 *   0xFEF0_0000 └──────────────┘
 *
 * `target` is a CompleterTarget claiming the whole window; it must be added to a port's
 * completer before host RAM, so a message never lands in memory. A write that matches no vector
 * is counted and logged (a spurious or stale interrupt), never an error for the device.
 */
import { Counters, TlpwireError, errorMessage, silentLogger, type Logger } from '../core/index.js';
import type { InterruptAllocator, MsiMessage } from '../pci/index.js';
import { formatBdf } from '../pci/index.js';
import { MSG_CODE } from '../spec/index.js';
import type { MsgTlp } from '../tlp/index.js';
import type { CompleterTarget } from '../transaction/index.js';

export const INTERRUPT_WINDOW_BASE = 0xfee0_0000;
export const INTERRUPT_WINDOW_SIZE = 0x10_0000;
const MAX_VECTORS = INTERRUPT_WINDOW_SIZE / 4;

/** Called with the vector index within its block (0 for MSI-X) and the requester of the write. */
export type VectorHandler = (index: number, requesterId: number) => void;

/** One allocation: `count` vectors that share an address (MSI) or one vector (MSI-X). */
export interface InterruptVector extends MsiMessage {
  /** First vector number of the block (= data of its first message). */
  readonly id: number;
  readonly count: number;
  /** Who it was allocated for (for logs). */
  readonly owner: number;
}

interface Block {
  vector: InterruptVector;
  handler: VectorHandler | undefined;
  fired: number;
}

/** Where an INTx or error Message came from. */
export interface MessageSource {
  /** The root port (index) it arrived on. */
  port: number;
  requesterId: number;
}

export type IntxHandler = (asserted: boolean, pin: number, source: MessageSource) => void;
export type ErrorMessageHandler = (message: 'ERR_COR' | 'ERR_NONFATAL' | 'ERR_FATAL', source: MessageSource) => void;

export class InterruptController implements InterruptAllocator {
  readonly counters = new Counters();
  private readonly log: Logger;
  /** Block by its address (one DW per vector number). */
  private readonly byAddress = new Map<number, Block>();
  /** Free vector numbers are kept as a sorted list of [start, end) runs. */
  private free: [number, number][] = [[0, MAX_VECTORS]];
  private readonly intxHandlers = new Set<IntxHandler>();
  private readonly errorHandlers = new Set<ErrorMessageHandler>();
  /** INTx wires currently asserted: "port/requester/pin". */
  private readonly asserted = new Set<string>();

  /** The window as a completer target (add it before host RAM). */
  readonly target: CompleterTarget;

  constructor(logger: Logger = silentLogger) {
    this.log = logger.child({ part: 'interrupts' });
    this.target = {
      claims: (address, length) => address >= INTERRUPT_WINDOW_BASE && address + length <= INTERRUPT_WINDOW_BASE + INTERRUPT_WINDOW_SIZE,
      disjoint: (address, length) => address + length <= INTERRUPT_WINDOW_BASE || address >= INTERRUPT_WINDOW_BASE + INTERRUPT_WINDOW_SIZE,
      // A read of the interrupt window is meaningless; answer zeros (a real LAPIC window would UR).
      read: (_address, length) => new Uint8Array(length),
      write: (address, data, firstBe, _lastBe, requesterId) => this.deliver(address, data, firstBe, requesterId),
    };
  }

  /**
   * Allocates `count` vector numbers (a power of two for MSI, aligned to it) at one address.
   * Throws ERR_MEMORY_EXHAUSTED when the window is full.
   */
  allocate(count: number, owner: number, handler?: VectorHandler): InterruptVector {
    if (!Number.isInteger(count) || count < 1 || (count & (count - 1)) !== 0) {
      throw new TlpwireError('ERR_USAGE', `interrupt vectors come in powers of two, not ${count}`);
    }
    for (let i = 0; i < this.free.length; i++) {
      const [s, e] = this.free[i]!;
      const start = Math.ceil(s / count) * count;
      if (start + count > e) continue;
      const pieces: [number, number][] = [];
      if (start > s) pieces.push([s, start]);
      if (start + count < e) pieces.push([start + count, e]);
      this.free.splice(i, 1, ...pieces);
      const vector: InterruptVector = { id: start, count, owner, address: INTERRUPT_WINDOW_BASE + start * 4, data: start };
      this.byAddress.set(vector.address, { vector, handler, fired: 0 });
      return vector;
    }
    throw new TlpwireError('ERR_MEMORY_EXHAUSTED', `no room for ${count} more interrupt vectors`);
  }

  /** One vector per MSI-X table entry of function `bdf` (InterruptAllocator). */
  allocateMsix(bdf: number, count: number): InterruptVector[] {
    const out: InterruptVector[] = [];
    for (let i = 0; i < count; i++) out.push(this.allocate(1, bdf));
    return out;
  }

  /** Whether `vector` is allocated (not released). */
  has(vector: MsiMessage): boolean {
    return this.byAddress.has(vector.address);
  }

  /** Sets (or replaces) the handler of an allocated vector. */
  setHandler(vector: MsiMessage, handler: VectorHandler | undefined): void {
    const b = this.byAddress.get(vector.address);
    if (b === undefined) throw new TlpwireError('ERR_USAGE', `no interrupt vector at 0x${vector.address.toString(16)}`);
    b.handler = handler;
  }

  /** Returns vectors to the pool; later writes to them count as spurious. */
  release(vectors: readonly MsiMessage[]): void {
    for (const v of vectors) {
      const b = this.byAddress.get(v.address);
      if (b === undefined) continue;
      this.byAddress.delete(v.address);
      this.free.push([b.vector.id, b.vector.id + b.vector.count]);
    }
    this.free.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const r of this.free) {
      const last = merged[merged.length - 1];
      if (last !== undefined && last[1] >= r[0]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.free = merged;
  }

  /** Releases every vector allocated for `owner` (a function that went away). */
  releaseOwner(owner: number): void {
    this.release([...this.byAddress.values()].filter((b) => b.vector.owner === owner).map((b) => b.vector));
  }

  /** How many messages a vector has received. */
  firedCount(vector: MsiMessage): number {
    return this.byAddress.get(vector.address)?.fired ?? 0;
  }

  /** Subscribes to INTx Assert/Deassert; returns the unsubscribe function. */
  onIntx(handler: IntxHandler): () => void {
    this.intxHandlers.add(handler);
    return () => this.intxHandlers.delete(handler);
  }

  /** Subscribes to ERR_COR / ERR_NONFATAL / ERR_FATAL Messages. */
  onErrorMessage(handler: ErrorMessageHandler): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  /** Whether an INTx wire is asserted (port, requester, pin 1..4). */
  intxAsserted(port: number, requesterId: number, pin: number): boolean {
    return this.asserted.has(`${port}/${requesterId}/${pin}`);
  }

  /** A port went down: its INTx wires are no longer asserted. */
  portDown(port: number): void {
    for (const k of [...this.asserted]) if (k.startsWith(`${port}/`)) this.asserted.delete(k);
  }

  /** Messages received by a root port's completer. */
  handleMessage(port: number, msg: MsgTlp): void {
    const source: MessageSource = { port, requesterId: msg.requesterId };
    const code = msg.messageCode;
    if (code >= MSG_CODE.ASSERT_INTA && code <= MSG_CODE.DEASSERT_INTD) {
      const asserted = code <= MSG_CODE.ASSERT_INTD;
      const pin = ((code - MSG_CODE.ASSERT_INTA) & 3) + 1;
      const key = `${port}/${msg.requesterId}/${pin}`;
      // INTx is a level: only edges of the virtual wire are news (§2.2.8.1 collapses repeats).
      if (asserted === this.asserted.has(key)) {
        this.counters.add('intx.redundant');
        return;
      }
      if (asserted) this.asserted.add(key);
      else this.asserted.delete(key);
      this.counters.add(asserted ? 'intx.assert' : 'intx.deassert');
      for (const h of this.intxHandlers) this.call(() => h(asserted, pin, source));
      return;
    }
    const err = code === MSG_CODE.ERR_COR ? 'ERR_COR' : code === MSG_CODE.ERR_NONFATAL ? 'ERR_NONFATAL' : code === MSG_CODE.ERR_FATAL ? 'ERR_FATAL' : null;
    if (err !== null) {
      this.counters.add(`message.${err}`);
      this.log.warn({ port, from: formatBdf(msg.requesterId) }, `${err} message received`);
      for (const h of this.errorHandlers) this.call(() => h(err, source));
      return;
    }
    this.counters.add('message.other');
    this.log.debug({ port, code, from: formatBdf(msg.requesterId) }, 'message ignored');
  }

  private deliver(address: number, data: Uint8Array, firstBe: number, requesterId: number): void {
    const b = this.byAddress.get(address);
    // An interrupt message is one whole DW (§6.1.4): anything else is not an interrupt.
    if (b === undefined || data.length !== 4 || firstBe !== 0xf) {
      this.spurious(address, requesterId, 'no vector there');
      return;
    }
    const value = (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
    const index = value - b.vector.data;
    if (index < 0 || index >= b.vector.count) {
      this.spurious(address, requesterId, `data 0x${value.toString(16)} is not one of the block's`);
      return;
    }
    b.fired++;
    this.counters.add('msi.delivered');
    const h = b.handler;
    if (h === undefined) {
      this.counters.add('msi.unhandled');
      return;
    }
    this.call(() => h(index, requesterId));
  }

  private spurious(address: number, requesterId: number, why: string): void {
    const n = this.counters.get('msi.spurious');
    this.counters.add('msi.spurious');
    if (n < 10) this.log.warn({ address: `0x${address.toString(16)}`, from: formatBdf(requesterId) }, `spurious interrupt write: ${why}`);
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.error({ err: errorMessage(e) }, 'interrupt handler threw');
    }
  }
}
