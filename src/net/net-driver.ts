import { type Clock, Counters, TlpwireError } from '../core/index.js';
import { VIRTIO_F, VIRTIO_NET_CONFIG, VIRTIO_NET_F, VIRTIO_NET_HDR_F, VIRTIO_NET_S_LINK_UP } from '../spec/index.js';
import type { IndirectAllocator, Sg, SplitRingDriver } from '../virtio/index.js';
import { checkFrameSize } from './frame-size.js';
import { DEFAULT_MTU, NET_RX_QUEUE, NET_TX_QUEUE, hasFeature } from './net-device.js';
import {
  NET_HDR_SIZE,
  type NetHeader,
  checkRxHeader,
  completeChecksum,
  decodeNetHeader,
  emptyNetHeader,
  encodeNetHeader,
  maxFrameLength,
} from './net-header.js';

/**
 * Byte copies between the host CPU and its memory (frames in and out of DMA buffers), through
 * the CPU model like every other driver access. `cpuAddr` is a CPU (guest-physical) address.
 */
export interface DriverBufferMemory {
  writeBytes(cpuAddr: number, data: Uint8Array): void;
  readBytes(cpuAddr: number, len: number): Uint8Array;
}

/**
 * Host memory for DMA buffers: `cpu` for the driver's copies, `dma` for the device (an IOVA with
 * ACCESS_PLATFORM, the physical address without). The same shape as the ring's indirect-table
 * allocator, so one allocator can serve both.
 */
export type DmaBufferAllocator = IndirectAllocator;

export interface NetConfig {
  mac: Uint8Array;
  mtu: number;
  linkUp: boolean;
  maxVirtqueuePairs: number;
}

/**
 * Reads struct virtio_net_config as the driver would (5.1.4): fields only count when their
 * feature was negotiated; without STATUS the link is up, without MTU it is 1500. Without MAC
 * the driver would pick a random local address; here the caller passes `fallbackMac`.
 */
export function parseNetConfig(bytes: Uint8Array, features: bigint, fallbackMac?: Uint8Array): NetConfig {
  if (bytes.length < VIRTIO_NET_CONFIG.MTU + 2) {
    throw new TlpwireError('ERR_NET', `virtio-net config space of ${bytes.length} bytes is too short`);
  }
  const le16 = (o: number): number => bytes[o]! | (bytes[o + 1]! << 8);
  const mac = hasFeature(features, VIRTIO_NET_F.MAC)
    ? bytes.slice(VIRTIO_NET_CONFIG.MAC, VIRTIO_NET_CONFIG.MAC + 6)
    : (fallbackMac ?? Uint8Array.of(0x02, 0, 0, 0, 0, 1));
  return {
    mac,
    mtu: hasFeature(features, VIRTIO_NET_F.MTU) ? le16(VIRTIO_NET_CONFIG.MTU) : DEFAULT_MTU,
    linkUp: hasFeature(features, VIRTIO_NET_F.STATUS) ? (le16(VIRTIO_NET_CONFIG.STATUS) & VIRTIO_NET_S_LINK_UP) !== 0 : true,
    maxVirtqueuePairs: le16(VIRTIO_NET_CONFIG.MAX_VIRTQUEUE_PAIRS),
  };
}

/** What a network interface offers its user: frames out, frames in, link state. */
export interface NetDevice {
  readonly mac: Uint8Array;
  readonly mtu: number;
  readonly linkUp: boolean;
  /**
   * Queues one whole Ethernet frame (no FCS). False when the TX ring is full: wait for
   * `onWritable`. With `csum`, the frame carries a partial checksum (see
   * prepareChecksumOffload) that the device completes (or the driver, without CSUM).
   */
  send(frame: Uint8Array, csum?: { csumStart: number; csumOffset: number }): boolean;
  /** One received frame; the array is the listener's to keep. It must not throw. */
  onFrame: (frame: Uint8Array) => void;
  /** The TX ring has room again after `send` returned false. */
  onWritable: () => void;
  onLinkChange: (up: boolean) => void;
}

export interface VirtioNetDriverOptions {
  rx: SplitRingDriver<number>;
  tx: SplitRingDriver<number>;
  mem: DriverBufferMemory;
  allocator: DmaBufferAllocator;
  /** The negotiated features. */
  features: bigint;
  config: NetConfig;
  /** The doorbell: a write to the queue's notify address (writel). */
  notify: (queue: number) => void;
  /** Kicks for frames sent in one turn are coalesced into one, after a `clock.defer`. */
  clock: Clock;
  /** Frames per NAPI poll (default 64). */
  budget?: number;
  /** With MRG_RXBUF: the size of each RX buffer (default 2048). Without it, a buffer holds a whole frame. */
  mergeableBufferSize?: number;
  /**
   * Descriptors per buffer: 1, or 2 to put the header in its own element (as drivers without
   * ANY_LAYOUT do; with INDIRECT_DESC it costs one ring slot). Default: 2 with INDIRECT_DESC.
   */
  sgPerBuffer?: 1 | 2;
  /** Called once when a ring breaks (ERR_VQ_BROKEN): the interface is dead until a reset. */
  onError?: (err: TlpwireError) => void;
  /**
   * Default true: frames sent in one turn are kicked together after a `clock.defer`. False: the
   * caller rings the doorbell with `flush()` at the end of a burst, as Linux's xmit path does
   * with xmit_more (a stress run uses it to spread a burst over virtual CPU time).
   */
  autoKick?: boolean;
}

interface Buffer {
  cpu: number;
  dma: number;
  size: number;
}

/**
 * The virtio-net driver on the root complex, after Linux's virtio_net: RX buffers posted up
 * front and refilled after every poll, one kick per batch, NAPI-style polling with interrupts
 * off, TX buffers reclaimed lazily on send (and on the TX interrupt, which is only armed when
 * the ring is full). Whatever the device writes is checked (lengths, header, num_buffers); a
 * ring the device broke stops the interface and is reported through `onError`, never thrown.
 * `setPolling(true)` switches to busy polling (interrupts off, the owner calls `poll()`), and
 * `autoKick: false` leaves the doorbell to the caller's `flush()` at the end of a burst.
 *
 * Counters: tx_frames/tx_bytes, tx_completed, tx_ring_full, tx_sw_checksums,
 * tx_dropped_{link_down,broken}; rx_frames/rx_bytes, rx_merged_frames, rx_checksums_completed,
 * rx_length_errors, rx_header_errors; kicks_*, interrupts_*, ring_broken.
 */
export class VirtioNetDriver implements NetDevice {
  readonly counters = new Counters();
  readonly mac: Uint8Array;
  readonly mtu: number;
  onFrame: (frame: Uint8Array) => void = () => {};
  onWritable: () => void = () => {};
  onLinkChange: (up: boolean) => void = () => {};

  private readonly rx: SplitRingDriver<number>;
  private readonly tx: SplitRingDriver<number>;
  private readonly mem: DriverBufferMemory;
  private readonly allocator: DmaBufferAllocator;
  private readonly clock: Clock;
  private readonly notify: (queue: number) => void;
  private readonly onError: ((err: TlpwireError) => void) | undefined;
  private readonly budget: number;
  private readonly maxFrame: number;
  private readonly mrg: boolean;
  private readonly csum: boolean;
  private readonly guestCsum: boolean;
  private readonly sgPerBuffer: 1 | 2;
  private readonly indirect: boolean;
  private readonly autoKick: boolean;
  private link: boolean;
  /** Busy-poll mode: interrupts stay off, the owner calls poll(). */
  private polling = false;

  private readonly rxBufs: Buffer[] = [];
  private readonly rxFree: number[] = [];
  private readonly txBufs: Buffer[] = [];
  private readonly txFree: number[] = [];

  private started = false;
  private brokenReason: string | undefined;
  private napiScheduled = false;
  private kickScheduled = false;
  private txAdded = false;
  /** The TX ring was full: its interrupt is armed and `onWritable` is owed. */
  private txStopped = false;

  /** MRG_RXBUF reassembly in progress (it may span polls): the parts, and the first buffer's header. */
  private mrgParts: Uint8Array[] = [];
  private mrgRemaining = 0;
  private mrgBytes = 0;
  private mrgOk = true;
  private readonly mrgHdr = emptyNetHeader();

  private readonly hdr = emptyNetHeader();
  private readonly txHdr = new Uint8Array(NET_HDR_SIZE);
  private readonly sg1: Sg[] = [{ addr: 0, len: 0 }];
  private readonly sg2: Sg[] = [
    { addr: 0, len: 0 },
    { addr: 0, len: 0 },
  ];
  private readonly noSg: Sg[] = [];
  private readonly delivered: Uint8Array[] = [];

  constructor(opts: VirtioNetDriverOptions) {
    this.rx = opts.rx;
    this.tx = opts.tx;
    this.mem = opts.mem;
    this.allocator = opts.allocator;
    this.clock = opts.clock;
    this.notify = opts.notify;
    this.onError = opts.onError;
    this.budget = Math.max(1, opts.budget ?? 64);
    this.mac = opts.config.mac;
    this.mtu = opts.config.mtu;
    this.link = opts.config.linkUp;
    this.maxFrame = maxFrameLength(this.mtu);
    this.mrg = hasFeature(opts.features, VIRTIO_NET_F.MRG_RXBUF);
    this.csum = hasFeature(opts.features, VIRTIO_NET_F.CSUM);
    this.guestCsum = hasFeature(opts.features, VIRTIO_NET_F.GUEST_CSUM);
    this.indirect = hasFeature(opts.features, VIRTIO_F.INDIRECT_DESC);
    this.sgPerBuffer = opts.sgPerBuffer ?? (this.indirect ? 2 : 1);
    this.autoKick = opts.autoKick ?? true;

    const rxSize = this.mrg ? (opts.mergeableBufferSize ?? 2048) : NET_HDR_SIZE + this.maxFrame;
    if (this.mrg && rxSize < NET_HDR_SIZE + (this.sgPerBuffer === 2 ? 1 : 0)) {
      throw new TlpwireError('ERR_NET', `mergeable RX buffers of ${rxSize} bytes cannot hold the ${NET_HDR_SIZE}-byte header`);
    }
    // as many buffers as the ring has slots for
    const perBuf = this.sgPerBuffer;
    this.allocBuffers(this.rxBufs, this.rxFree, this.rx.size, rxSize, perBuf);
    this.allocBuffers(this.txBufs, this.txFree, this.tx.size, NET_HDR_SIZE + this.maxFrame, perBuf);
  }

  get linkUp(): boolean {
    return this.link;
  }

  /** Why the interface stopped, or undefined. */
  get broken(): string | undefined {
    return this.brokenReason;
  }

  /** TX buffers free for `send` (before reclaiming). */
  get txFreeBuffers(): number {
    return this.txFree.length;
  }

  /** After DRIVER_OK: post every RX buffer and kick once; TX completions are reclaimed lazily. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.tx.disableCb();
    if (this.polling) this.rx.disableCb();
    this.refillRx();
  }

  /**
   * Busy-poll mode (as Linux's NAPI busy polling): interrupts are suppressed on both rings and
   * ignored if one comes anyway; the owner calls `poll()` instead. A stress run uses it so that
   * no interrupt (which makes the CPU see earlier DMA) hides a missing read barrier.
   */
  setPolling(on: boolean): void {
    if (on === this.polling) return;
    this.polling = on;
    if (!this.started) return;
    if (on) {
      this.rx.disableCb();
      this.tx.disableCb();
    } else if (!this.napiScheduled) {
      // back to interrupts: one NAPI pass re-arms them (and collects what came meanwhile)
      this.napiScheduled = true;
      this.clock.defer(this.napiPoll);
    }
  }

  get isPolling(): boolean {
    return this.polling;
  }

  /**
   * One busy-poll pass: collect up to `budget` received frames, refill RX, reclaim TX buffers
   * (and call onWritable if the ring was full). Returns the buffers handled (0: nothing to do).
   */
  poll(): number {
    if (!this.started || this.brokenReason !== undefined) return 0;
    let n = this.receive(this.budget);
    this.refillRx();
    const free = this.txFree.length;
    this.reclaimTx();
    n += this.txFree.length - free;
    this.checkBroken();
    const writable = this.brokenReason === undefined && this.txStopped && this.txFree.length > 0;
    if (writable) this.txStopped = false;
    const out = this.delivered;
    for (let i = 0; i < out.length; i++) this.onFrame(out[i]!);
    out.length = 0;
    if (writable) this.onWritable();
    return n;
  }

  /** The transport read a new config (a config interrupt): only the link status can change. */
  setLinkUp(up: boolean): void {
    if (up === this.link) return;
    this.link = up;
    this.counters.add(up ? 'link_up' : 'link_down');
    this.onLinkChange(up);
  }

  send(frame: Uint8Array, csum?: { csumStart: number; csumOffset: number }): boolean {
    if (checkFrameSize(frame, this.mtu) !== 'ok') {
      throw new TlpwireError('ERR_NET', `a frame of ${frame.length} bytes does not fit MTU ${this.mtu} (a runt, or oversize)`);
    }
    if (!this.started) throw new TlpwireError('ERR_NET', 'send() before start()');
    if (csum !== undefined && (csum.csumStart < 0 || csum.csumOffset < 0 || csum.csumStart + csum.csumOffset + 2 > frame.length)) {
      throw new TlpwireError('ERR_NET', `checksum field at ${csum.csumStart}+${csum.csumOffset} lies outside a ${frame.length}-byte frame`);
    }
    if (this.brokenReason !== undefined) {
      // the interface is dead until the device is reset; no onWritable will come
      this.counters.add('tx_dropped_broken');
      return false;
    }
    if (!this.link) {
      // as a stack does with the carrier off: the frame goes nowhere
      this.counters.add('tx_dropped_link_down');
      return true;
    }
    if (this.txFree.length < this.tx.size / 4 || this.txStopped) this.reclaimTx();
    const idx = this.txFree.pop();
    if (idx === undefined) {
      if (!this.txStopped) return this.stopTx();
      // already stopped: the interrupt is armed and onWritable owed; do not re-arm on every try
      this.checkBroken();
      return false;
    }
    const b = this.txBufs[idx]!;
    const h = this.hdr;
    h.flags = 0;
    h.gsoType = 0;
    h.hdrLen = 0;
    h.gsoSize = 0;
    h.csumStart = 0;
    h.csumOffset = 0;
    h.numBuffers = 0; // 5.1.6.2.1: zero on transmit
    let data = frame;
    if (csum !== undefined) {
      if (this.csum) {
        h.flags = VIRTIO_NET_HDR_F.NEEDS_CSUM;
        h.csumStart = csum.csumStart;
        h.csumOffset = csum.csumOffset;
      } else {
        // no offload negotiated: the driver completes the checksum itself (on a copy)
        data = frame.slice();
        completeChecksum(data, csum.csumStart, csum.csumOffset);
        this.counters.add('tx_sw_checksums');
      }
    }
    encodeNetHeader(h, this.txHdr, 0);
    this.mem.writeBytes(b.cpu, this.txHdr);
    this.mem.writeBytes(b.cpu + NET_HDR_SIZE, data);
    const sgs = this.bufferSgs(b, NET_HDR_SIZE + data.length);
    if (!this.tx.add(sgs, this.noSg, idx)) {
      // out of descriptors (an indirect table could not be allocated), or the ring broke
      this.txFree.push(idx);
      this.checkBroken();
      return this.brokenReason === undefined ? this.stopTx() : false;
    }
    this.counters.add('tx_frames');
    this.counters.add('tx_bytes', frame.length);
    this.txAdded = true;
    if (this.autoKick) this.scheduleKick();
    return true;
  }

  /** Rings the TX doorbell now for frames queued since the last kick (if the device wants it). */
  flush(): void {
    if (!this.txAdded || this.brokenReason !== undefined) return;
    this.txAdded = false;
    if (this.tx.kickPrepare()) {
      this.counters.add('kicks_tx');
      this.notify(NET_TX_QUEUE);
    }
  }

  /** The queue's interrupt (the transport's MSI-X handler calls it). */
  interrupt(queue: number): void {
    if (!this.started || this.brokenReason !== undefined) return;
    if (this.polling) {
      // the poll loop collects everything; an interrupt changes nothing
      this.counters.add('interrupts_polled');
      return;
    }
    if (queue === NET_RX_QUEUE) {
      this.counters.add('interrupts_rx');
      if (this.napiScheduled) return;
      this.napiScheduled = true;
      this.rx.disableCb();
      // the poll runs later, like a softirq, not inside the interrupt handler
      this.clock.defer(this.napiPoll);
    } else if (queue === NET_TX_QUEUE) {
      this.counters.add('interrupts_tx');
      this.txComplete();
    }
  }

  /**
   * After a device reset: take every buffer back from both rings and return the memory. The
   * driver is unusable afterwards (a new one is built on the new rings).
   */
  detach(): void {
    this.brokenReason ??= 'detached';
    this.rx.detachUnused();
    this.tx.detachUnused();
    for (const b of this.rxBufs) this.allocator.free(b.cpu);
    for (const b of this.txBufs) this.allocator.free(b.cpu);
    this.rxBufs.length = 0;
    this.txBufs.length = 0;
    this.rxFree.length = 0;
    this.txFree.length = 0;
  }

  // ---- TX ---------------------------------------------------------------------------------------

  /**
   * The ring is full: arm the TX interrupt (as netif_stop_queue + enable_cb does). If completions
   * landed between the reclaim and the arming, handle them as the interrupt would, a little
   * later: the caller has not yet seen `false`, and `onWritable` must come after it.
   */
  private stopTx(): boolean {
    this.flush(); // the device must see what is queued, or no completion will ever come
    this.counters.add('tx_ring_full');
    this.txStopped = true;
    // busy-polling: poll() reclaims and calls onWritable, no interrupt is armed
    if (this.polling) return false;
    if (!this.tx.enableCb()) this.clock.defer(() => this.txComplete());
    this.checkBroken();
    return false;
  }

  private txComplete(): void {
    if (this.brokenReason !== undefined) return;
    this.reclaimTx();
    this.checkBroken();
    if (this.txStopped && this.txFree.length > 0 && this.brokenReason === undefined) {
      this.txStopped = false;
      this.tx.disableCb();
      this.onWritable();
    }
  }

  private reclaimTx(): void {
    for (let u = this.tx.getBuf(); u !== undefined; u = this.tx.getBuf()) {
      this.txFree.push(u.token);
      this.counters.add('tx_completed');
    }
  }

  private scheduleKick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    this.clock.defer(() => {
      this.kickScheduled = false;
      this.flush();
    });
  }

  // ---- RX ---------------------------------------------------------------------------------------

  private readonly napiPoll = (): void => {
    this.napiScheduled = false;
    if (this.brokenReason !== undefined) return;
    const n = this.receive(this.budget);
    this.refillRx();
    this.checkBroken();
    if (this.brokenReason === undefined) {
      if (n >= this.budget) {
        // budget spent: poll again later with interrupts still off
        this.napiScheduled = true;
        this.clock.defer(this.napiPoll);
      } else if (!this.rx.enableCb()) {
        // buffers came back between the last look and re-arming: poll again
        this.rx.disableCb();
        this.napiScheduled = true;
        this.clock.defer(this.napiPoll);
      }
    }
    // deliver after the ring work, so a listener that sends or throws finds consistent state
    const out = this.delivered;
    for (let i = 0; i < out.length; i++) this.onFrame(out[i]!);
    out.length = 0;
  };

  /** Collects up to `budget` frames into `delivered`; returns the buffers consumed. */
  private receive(budget: number): number {
    let consumed = 0;
    while (consumed < budget) {
      const u = this.rx.getBuf();
      if (u === undefined) break;
      consumed++;
      this.rxFree.push(u.token);
      const b = this.rxBufs[u.token]!;
      if (this.mrgRemaining > 0) this.mrgContinue(b, u.len);
      else this.rxHead(b, u.len);
    }
    return consumed;
  }

  /** The first (or only) buffer of a frame: header, then data. */
  private rxHead(b: Buffer, len: number): void {
    if (len < NET_HDR_SIZE) {
      this.counters.add('rx_length_errors');
      return;
    }
    // one copy out of the buffer: header and data (the frame is a view into it)
    const data = this.mem.readBytes(b.cpu, len);
    const h = decodeNetHeader(data, 0, this.hdr);
    // without MRG_RXBUF num_buffers is 1 by the spec, but Linux ignores it, and so do we
    const n = this.mrg ? h.numBuffers : 1;
    if (n < 1 || n > this.rx.size) {
      this.counters.add('rx_header_errors');
      return;
    }
    if (n === 1) {
      this.finishFrame(data.subarray(NET_HDR_SIZE), h);
      return;
    }
    // the rest of the frame comes in n − 1 more buffers, perhaps in a later poll
    Object.assign(this.mrgHdr, h);
    this.mrgParts = [data.subarray(NET_HDR_SIZE)];
    this.mrgBytes = len - NET_HDR_SIZE;
    this.mrgRemaining = n - 1;
    this.mrgOk = true;
  }

  private mrgContinue(b: Buffer, len: number): void {
    this.mrgRemaining--;
    // larger than any frame the device may send: drop it all (the remaining parts are skipped)
    if (this.mrgBytes + len > this.maxFrame) this.mrgOk = false;
    if (this.mrgOk && len > 0) {
      this.mrgParts.push(this.mem.readBytes(b.cpu, len));
      this.mrgBytes += len;
    }
    if (this.mrgRemaining > 0) return;
    const parts = this.mrgParts;
    this.mrgParts = [];
    if (!this.mrgOk) {
      this.counters.add('rx_length_errors');
      return;
    }
    const frame = new Uint8Array(this.mrgBytes);
    let o = 0;
    for (const p of parts) {
      frame.set(p, o);
      o += p.length;
    }
    this.counters.add('rx_merged_frames');
    this.finishFrame(frame, this.mrgHdr);
  }

  /** Checks a whole frame and its header and queues it for delivery. */
  private finishFrame(frame: Uint8Array, h: NetHeader): void {
    if (checkFrameSize(frame, this.mtu) !== 'ok') {
      this.counters.add('rx_length_errors');
      return;
    }
    if (checkRxHeader(h, frame.length, this.guestCsum) !== undefined) {
      this.counters.add('rx_header_errors');
      return;
    }
    if ((h.flags & VIRTIO_NET_HDR_F.NEEDS_CSUM) !== 0) {
      // the user gets whole frames: finish what the device left partial
      completeChecksum(frame, h.csumStart, h.csumOffset);
      this.counters.add('rx_checksums_completed');
    }
    this.counters.add('rx_frames');
    this.counters.add('rx_bytes', frame.length);
    this.delivered.push(frame);
  }

  /** Posts every free RX buffer, then one kick if the device asks for it. */
  private refillRx(): void {
    let added = 0;
    while (this.rxFree.length > 0) {
      const idx = this.rxFree[this.rxFree.length - 1]!;
      const b = this.rxBufs[idx]!;
      if (!this.rx.add(this.noSg, this.bufferSgs(b, b.size), idx)) break;
      this.rxFree.pop();
      added++;
    }
    if (added > 0 && this.rx.kickPrepare()) {
      this.counters.add('kicks_rx');
      this.notify(NET_RX_QUEUE);
    }
  }

  // ---- shared -------------------------------------------------------------------------------------

  private allocBuffers(bufs: Buffer[], free: number[], count: number, size: number, sgs: number): void {
    // without INDIRECT_DESC a 2-element buffer takes two slots: fewer buffers fit the ring
    const n = sgs === 2 && !this.indirectUsable() ? Math.max(1, count >> 1) : count;
    for (let i = 0; i < n; i++) {
      const a = this.allocator.alloc(size);
      if (a === undefined) {
        if (i === 0) throw new TlpwireError('ERR_MEMORY_EXHAUSTED', `no memory for a ${size}-byte DMA buffer`);
        break;
      }
      bufs.push({ cpu: a.cpu, dma: a.dma, size });
      free.push(bufs.length - 1);
    }
    free.reverse(); // pop() hands out buffer 0 first: easier to follow in traces
  }

  private indirectUsable(): boolean {
    return this.sgPerBuffer === 2 && this.indirect;
  }

  private bufferSgs(b: Buffer, len: number): Sg[] {
    if (this.sgPerBuffer === 1) {
      const s = this.sg1[0]!;
      s.addr = b.dma;
      s.len = len;
      return this.sg1;
    }
    const [h, d] = this.sg2 as [Sg, Sg];
    h.addr = b.dma;
    h.len = NET_HDR_SIZE;
    d.addr = b.dma + NET_HDR_SIZE;
    d.len = len - NET_HDR_SIZE;
    return this.sg2;
  }

  private checkBroken(): void {
    if (this.brokenReason !== undefined) return;
    const reason = this.rx.broken !== undefined ? `rx: ${this.rx.broken}` : this.tx.broken !== undefined ? `tx: ${this.tx.broken}` : undefined;
    if (reason === undefined) return;
    this.brokenReason = reason;
    this.counters.add('ring_broken');
    this.mrgParts = [];
    this.mrgRemaining = 0;
    this.onError?.(new TlpwireError('ERR_VQ_BROKEN', `virtio-net ring broken: ${reason}`));
  }
}
