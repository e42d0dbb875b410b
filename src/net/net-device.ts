import { type Clock, type TimerHandle, Counters, FixedQueue, TlpwireError, errorMessage } from '../core/index.js';
import { VIRTIO_NET_CONFIG, VIRTIO_NET_F, VIRTIO_NET_HDR_F, VIRTIO_NET_S_LINK_UP } from '../spec/index.js';
import { type DeviceChain, type DeviceMemory, type DmaTask, type ReadManyStep, type SplitRingDevice, type UsedElem, readStep, runDmaTask } from '../virtio/index.js';
import type { NetBackend } from './backend.js';
import { checkFrameSize } from './frame-size.js';
import {
  ETH_HLEN,
  NET_HDR_SIZE,
  checkTxHeader,
  completeChecksum,
  decodeNetHeader,
  emptyNetHeader,
  encodeNetHeader,
  maxFrameLength,
} from './net-header.js';

/** virtio 5.1.2: receiveq1 is queue 0, transmitq1 queue 1 (one pair, no control queue). */
export const NET_RX_QUEUE = 0;
export const NET_TX_QUEUE = 1;
export const NET_NUM_QUEUES = 2;

export const DEFAULT_MTU = 1500;
/** IPv4's minimum; the maximum keeps a frame and its header within a 16-bit length. */
export const MIN_MTU = 68;
export const MAX_MTU = 0xffff - NET_HDR_SIZE - ETH_HLEN - 4;

export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

export function hasFeature(features: bigint, bit: number): boolean {
  return (features & featureBit(bit)) !== 0n;
}

/**
 * The device-specific features this device offers. The transport adds the device-independent
 * ones (VERSION_1, ACCESS_PLATFORM, ORDER_PLATFORM, EVENT_IDX, INDIRECT_DESC).
 */
export const NET_DEVICE_FEATURES: bigint =
  featureBit(VIRTIO_NET_F.CSUM) |
  featureBit(VIRTIO_NET_F.GUEST_CSUM) |
  featureBit(VIRTIO_NET_F.MTU) |
  featureBit(VIRTIO_NET_F.MAC) |
  featureBit(VIRTIO_NET_F.MRG_RXBUF) |
  featureBit(VIRTIO_NET_F.STATUS);

export interface VirtioNetDeviceOptions {
  /** 6 bytes. */
  mac: Uint8Array;
  mtu?: number;
  backend: NetBackend;
  clock: Clock;
  /** The device's DMA (the same view its rings use): buffers are read and written through it. */
  memory: DeviceMemory;
  /** Raise the queue's interrupt (the transport sends its MSI-X message). */
  interrupt: (queue: number) => void;
  /** The rings are broken: the transport sets DEVICE_NEEDS_RESET and raises a config interrupt. */
  onNeedsReset: (reason: string) => void;
  /** The config space changed (link status): the transport bumps config_generation and interrupts. */
  onConfigChange?: () => void;
  /** Frames from the backend held while no RX buffer is available (default 256). */
  rxQueueFrames?: number;
  /** Chains taken from a ring per batch: one used.idx update and one interrupt decision each (default 64). */
  batch?: number;
  /**
   * Complete NEEDS_CSUM checksums before `backend.send` (default true): every backend we have
   * takes whole frames and passes them to something that checks checksums.
   */
  backendNeedsFullChecksum?: boolean;
  /** Busy-poll mode: the delay before polling again after a pass that found nothing (default 1 µs). */
  pollIdleNs?: number;
  linkUp?: boolean;
}

interface TxSlot {
  /** Where the 12-byte header is. */
  hdr: Uint8Array;
  hdrOff: number;
  frame: Uint8Array;
}

/**
 * The virtio-net device on the endpoint: config space, the TX path (driver → backend) and the RX
 * path (backend → driver) over two split rings it reaches by DMA. Everything from the driver is
 * untrusted: a malformed frame or header is counted and its buffer returned with length 0; a
 * broken ring (the ring code's ERR_VQ_* errors) or a rejected DMA read stops the device and calls
 * `onNeedsReset`, never a throw out of a callback or an unhandled rejection, never a loop.
 *
 * Processing is driven by `kick(queue)` (the driver's doorbell), by backend frames, or by the
 * busy-poll loop (`setPolling(true)`). Each queue has one worker at a time; a kick that arrives
 * while it runs makes it look again before it re-enables notifications and stops.
 *
 * Counters: tx_frames/tx_bytes, rx_frames/rx_bytes; drops tx_dropped_{runt,oversize,bad_header,
 * bad_desc,link_down}, rx_dropped (queue full and the backend did not stop), rx_dropped_{too_big,
 * runt,oversize,link_down,not_ready,reset}, rx_bad_desc; tx_checksums_completed,
 * tx_backend_errors, rx_merged_frames, rx_out_of_buffers, rx_backend_pauses, kicks_*, interrupts_*,
 * needs_reset.
 */
export class VirtioNetDevice {
  readonly counters = new Counters();
  /** struct virtio_net_config, as the transport exposes it in the device-specific region. */
  readonly config = new Uint8Array(VIRTIO_NET_CONFIG.SIZE);
  readonly mtu: number;
  /** Incremented on every config change (the transport mirrors it in config_generation). */
  configVersion = 0;

  private readonly backend: NetBackend;
  private readonly clock: Clock;
  private readonly batch: number;
  private readonly maxFrame: number;
  private readonly fullChecksum: boolean;
  private readonly pollIdleNs: number;
  private features = 0n;
  private mrg = false;
  private csum = false;
  private rx: SplitRingDevice | undefined;
  private tx: SplitRingDevice | undefined;
  private readonly mem: DeviceMemory;
  private link: boolean;

  /** Bumped by reset(): a worker from an older epoch stops at its next step and touches nothing. */
  private epoch = 0;
  private brokenReason: string | undefined;

  private txBusy = false;
  private txAgain = false;
  /** The worker used up its weight: run again after other events (not from a microtask). */
  private txYield = false;
  private txRun: WorkerRun = WorkerRun.FINISHED;
  private rxBusy = false;
  private rxAgain = false;
  private rxYield = false;
  private rxRun: WorkerRun = WorkerRun.FINISHED;

  private readonly rxFrames: FixedQueue<Uint8Array>;
  /** RX chains popped from the ring and not yet filled (MRG_RXBUF may need several per frame). */
  private readonly rxPool = new FixedQueue<DeviceChain>(64);
  private rxPoolBytes = 0;
  private backendPaused = false;

  private polling = false;
  private pollTimer: TimerHandle | undefined;
  private pollLoopRunning = false;
  private pollLoopId = 0;
  /** Chains and frames handled; poll() compares it to tell work from an idle pass. */
  private work = 0;

  private readonly hdr = emptyNetHeader();
  private readonly txUsed: UsedElem[] = [];
  private readonly rxUsed: UsedElem[] = [];

  constructor(private readonly opts: VirtioNetDeviceOptions) {
    if (opts.mac.length !== 6) throw new TlpwireError('ERR_NET', `a MAC address has 6 bytes, not ${opts.mac.length}`);
    this.mtu = opts.mtu ?? DEFAULT_MTU;
    if (!Number.isInteger(this.mtu) || this.mtu < MIN_MTU || this.mtu > MAX_MTU) {
      throw new TlpwireError('ERR_NET', `MTU ${this.mtu} is outside ${MIN_MTU}..${MAX_MTU}`);
    }
    this.mem = opts.memory;
    this.backend = opts.backend;
    this.clock = opts.clock;
    this.batch = Math.max(1, opts.batch ?? 64);
    this.maxFrame = maxFrameLength(this.mtu);
    this.fullChecksum = opts.backendNeedsFullChecksum ?? true;
    this.pollIdleNs = opts.pollIdleNs ?? 1000;
    this.link = opts.linkUp ?? true;
    const limit = Math.max(1, opts.rxQueueFrames ?? 256);
    this.rxFrames = new FixedQueue<Uint8Array>(Math.min(limit, 256), limit);
    this.writeConfig();
    this.backend.onFrame = (frame) => this.onBackendFrame(frame);
  }

  /** Device-specific feature bits offered (see NET_DEVICE_FEATURES). */
  get deviceFeatures(): bigint {
    return NET_DEVICE_FEATURES;
  }

  get linkUp(): boolean {
    return this.link;
  }

  /** Why the device stopped (it waits for a reset), or undefined. */
  get needsReset(): string | undefined {
    return this.brokenReason;
  }

  get isPolling(): boolean {
    return this.polling;
  }

  /** No worker is running (for tests and for a reset that waits for DMA to stop). */
  get idle(): boolean {
    return !this.txBusy && !this.rxBusy && !this.pollLoopRunning;
  }

  /** Frames from the backend waiting for RX buffers. */
  get rxBacklog(): number {
    return this.rxFrames.length;
  }

  /** A little-endian read of the config space, as the transport serves it. */
  readConfig(offset: number, size: 1 | 2 | 4): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + (this.config[offset + i] ?? 0);
    return v;
  }

  setLinkUp(up: boolean): void {
    if (up === this.link) return;
    this.link = up;
    this.writeConfig();
    this.configVersion++;
    this.counters.add(up ? 'link_up' : 'link_down');
    this.opts.onConfigChange?.();
  }

  /** The features the driver accepted (FEATURES_OK). */
  setFeatures(features: bigint): void {
    this.features = features;
    this.mrg = hasFeature(features, VIRTIO_NET_F.MRG_RXBUF);
    this.csum = hasFeature(features, VIRTIO_NET_F.CSUM);
  }

  get negotiatedFeatures(): bigint {
    return this.features;
  }

  /** Gives the device a ring the driver enabled (queue_enable), built over `memory`. */
  attachQueue(queue: number, ring: SplitRingDevice): void {
    if (queue === NET_RX_QUEUE) this.rx = ring;
    else if (queue === NET_TX_QUEUE) this.tx = ring;
    else throw new TlpwireError('ERR_NET', `virtio-net has queues 0 and 1, not ${queue}`);
    if (!this.polling) return;
    try {
      ring.disableNotify();
    } catch (e) {
      this.fail(e, this.epoch);
    }
  }

  /** The driver's doorbell for a queue. */
  kick(queue: number): void {
    if (queue === NET_TX_QUEUE) {
      this.counters.add('kicks_tx');
      this.scheduleTx();
    } else if (queue === NET_RX_QUEUE) {
      this.counters.add('kicks_rx');
      this.scheduleRx();
    } else {
      this.counters.add('kicks_unknown_queue');
    }
  }

  /**
   * Busy-poll mode: the device polls both rings with the driver's notifications suppressed
   * instead of waiting for kicks (the stress tests' mode). Turning it off re-arms notifications.
   */
  setPolling(on: boolean): void {
    if (on === this.polling) return;
    this.polling = on;
    if (on) {
      try {
        this.tx?.disableNotify();
        this.rx?.disableNotify();
      } catch (e) {
        this.fail(e, this.epoch);
        return;
      }
      this.startPollLoop();
    } else {
      this.stopPollLoop();
      // one more pass each: it ends by re-enabling notifications (and catches what raced in)
      this.scheduleTx();
      this.scheduleRx();
    }
  }

  /** One pass over both queues; true when it moved a chain or a frame. Never rejects. */
  poll(): Promise<boolean> {
    return new Promise<boolean>((resolve) => this.pollPass(resolve));
  }

  /** poll() with a callback: the busy-poll loop runs without promises (inside the simulator's event loop). */
  private pollPass(done: (did: boolean) => void): void {
    const before = this.work;
    this.scheduleTx();
    this.scheduleRx();
    const t = this.txRun;
    const r = this.rxRun;
    t.then(() => r.then(() => done(this.work !== before)));
  }

  /**
   * Resolves once no worker runs, including those of rings dropped by reset() (their DMA has
   * stopped): the transport waits for it before device_status reads back 0.
   */
  async whenIdle(): Promise<void> {
    for (;;) {
      const t = this.txRun;
      const r = this.rxRun;
      await new Promise<void>((resolve) => t.then(() => r.then(resolve)));
      if (t === this.txRun && r === this.rxRun) return;
    }
  }

  /** Device reset: forget the rings, the negotiated features and the frames not delivered. */
  reset(): void {
    this.epoch++;
    this.rx = undefined;
    this.tx = undefined;
    this.setFeatures(0n);
    this.brokenReason = undefined;
    this.txBusy = this.rxBusy = false;
    this.txAgain = this.rxAgain = false;
    this.txYield = this.rxYield = false;
    this.counters.add('rx_dropped_reset', this.rxFrames.length);
    this.rxFrames.clear();
    this.rxPool.clear();
    this.rxPoolBytes = 0;
    this.polling = false;
    this.stopPollLoop();
    this.resumeBackend();
  }

  // ---- TX: driver → backend ---------------------------------------------------------------------

  private scheduleTx(): void {
    if (this.tx === undefined || this.brokenReason !== undefined) return;
    if (this.txBusy) {
      this.txAgain = true;
      return;
    }
    this.txBusy = true;
    const epoch = this.epoch;
    const run = new WorkerRun();
    this.txRun = run;
    runDmaTask(
      this.txWork(epoch),
      this.mem,
      () => {
        this.workerDone('tx', epoch);
        run.finish();
      },
      (e: unknown) => {
        this.workerDone('tx', epoch);
        this.fail(e, epoch);
        run.finish();
      },
    );
  }

  private *txWork(epoch: number): DmaTask<void> {
    const ring = this.tx!;
    if (!this.polling) ring.disableNotify();
    for (let rounds = 0; ; rounds++) {
      if (rounds >= WORKER_WEIGHT) {
        // like vhost's weight: let the rest of the process run (and bound a driver whose
        // rings overlap so that the device's own writes keep producing work)
        this.txYield = true;
        return;
      }
      this.txAgain = false;
      const chains = yield* ring.popTask(this.batch);
      if (this.stale(epoch)) return;
      if (chains.length === 0) {
        if (this.polling) return;
        // pairs with driver.kick.mb-before-event-check: re-arm, then look once more
        const more = yield* ring.enableNotifyTask();
        if (this.stale(epoch)) return;
        if (more || this.txAgain) {
          ring.disableNotify();
          continue;
        }
        return;
      }
      const slots = yield* this.readTxChains(chains);
      if (this.stale(epoch)) return;
      const used = this.txUsed;
      used.length = 0;
      for (let i = 0; i < chains.length; i++) {
        this.transmit(slots[i]!);
        used.push({ head: chains[i]!.head, len: 0 });
      }
      this.work += chains.length;
      yield* ring.pushTask(used);
      if (this.stale(epoch)) return;
      if (yield* ring.needNotifyTask()) {
        if (this.stale(epoch)) return;
        this.counters.add('interrupts_tx');
        this.opts.interrupt(NET_TX_QUEUE);
      }
    }
  }

  /** Why a TX chain's shape is dropped (a counter name), or undefined when it is fine to read. */
  private txChainProblem(c: DeviceChain): string | undefined {
    if (c.writable.length > 0) return 'tx_dropped_bad_desc';
    if (c.readableBytes < NET_HDR_SIZE) return 'tx_dropped_bad_header';
    const frameLen = c.readableBytes - NET_HDR_SIZE;
    if (frameLen < ETH_HLEN) return 'tx_dropped_runt';
    if (frameLen > this.maxFrame) return 'tx_dropped_oversize';
    return undefined;
  }

  /**
   * Validates each TX chain's shape and reads the good ones by DMA; a string names why a chain
   * is dropped. Every read of the batch is issued together (the engine pipelines them),
   * completions may come in any order.
   */
  private *readTxChains(chains: readonly DeviceChain[]): DmaTask<(TxSlot | string)[]> {
    const slots = new Array<TxSlot | string>(chains.length);
    const addrs: number[] = [];
    const lens: number[] = [];
    for (let i = 0; i < chains.length; i++) {
      const c = chains[i]!;
      const why = this.txChainProblem(c);
      if (why !== undefined) {
        slots[i] = why;
        continue;
      }
      for (const s of c.readable) {
        if (s.len === 0 && c.readable.length > 1) continue;
        addrs.push(s.addr);
        lens.push(s.len);
      }
    }
    if (addrs.length === 0) return slots;
    const data = addrs.length === 1 ? [(yield readStep(addrs[0]!, lens[0]!)) as Uint8Array] : ((yield { op: 'reads', addrs, lens } satisfies ReadManyStep) as Uint8Array[]);
    let k = 0;
    for (let i = 0; i < chains.length; i++) {
      if (slots[i] !== undefined) continue;
      const segs = chains[i]!.readable;
      if (segs.length === 1) {
        const b = data[k++]!;
        slots[i] = { hdr: b, hdrOff: 0, frame: b.subarray(NET_HDR_SIZE) };
        continue;
      }
      const parts = segs.map((s) => (s.len === 0 ? EMPTY : data[k++]!));
      if (parts.length === 2 && parts[0]!.length === NET_HDR_SIZE) {
        slots[i] = { hdr: parts[0]!, hdrOff: 0, frame: parts[1]! };
        continue;
      }
      const all = new Uint8Array(chains[i]!.readableBytes);
      let o = 0;
      for (const p of parts) {
        all.set(p, o);
        o += p.length;
      }
      slots[i] = { hdr: all, hdrOff: 0, frame: all.subarray(NET_HDR_SIZE) };
    }
    return slots;
  }

  private transmit(slot: TxSlot | string): void {
    if (typeof slot === 'string') {
      this.counters.add(slot);
      return;
    }
    const frame = slot.frame;
    // the length was bounded before the read; a frame longer than MTU + 14 must carry a VLAN tag
    if (checkFrameSize(frame, this.mtu) !== 'ok') {
      this.counters.add('tx_dropped_oversize');
      return;
    }
    const h = decodeNetHeader(slot.hdr, slot.hdrOff, this.hdr);
    if (checkTxHeader(h, frame.length, this.csum) !== undefined) {
      this.counters.add('tx_dropped_bad_header');
      return;
    }
    if (!this.link) {
      this.counters.add('tx_dropped_link_down');
      return;
    }
    if ((h.flags & VIRTIO_NET_HDR_F.NEEDS_CSUM) !== 0 && this.fullChecksum) {
      // the frame is our own DMA copy, so completing in place is safe
      completeChecksum(frame, h.csumStart, h.csumOffset);
      this.counters.add('tx_checksums_completed');
    }
    this.counters.add('tx_frames');
    this.counters.add('tx_bytes', frame.length);
    try {
      this.backend.send(frame);
    } catch {
      // a backend fault is not the driver's: count it and go on
      this.counters.add('tx_backend_errors');
    }
  }

  // ---- RX: backend → driver ---------------------------------------------------------------------

  private onBackendFrame(frame: Uint8Array): void {
    if (this.rx === undefined || this.brokenReason !== undefined) {
      this.counters.add('rx_dropped_not_ready');
      return;
    }
    if (!this.link) {
      this.counters.add('rx_dropped_link_down');
      return;
    }
    const size = checkFrameSize(frame, this.mtu);
    if (size !== 'ok') {
      this.counters.add(size === 'runt' ? 'rx_dropped_runt' : 'rx_dropped_oversize');
      return;
    }
    if (!this.rxFrames.push(frame)) {
      // the backend could not stop in time (or cannot pause at all)
      this.counters.add('rx_dropped');
      this.pauseBackend();
      return;
    }
    if (this.rxFrames.isFull()) this.pauseBackend();
    if (!this.polling) this.scheduleRx();
  }

  private pauseBackend(): void {
    if (this.backendPaused) return;
    this.backendPaused = true;
    this.counters.add('rx_backend_pauses');
    this.backend.pause();
  }

  private resumeBackend(): void {
    if (!this.backendPaused) return;
    this.backendPaused = false;
    this.backend.resume();
  }

  private scheduleRx(): void {
    if (this.rx === undefined || this.brokenReason !== undefined) return;
    if (this.rxBusy) {
      this.rxAgain = true;
      return;
    }
    this.rxBusy = true;
    const epoch = this.epoch;
    const run = new WorkerRun();
    this.rxRun = run;
    runDmaTask(
      this.rxWork(epoch),
      this.mem,
      () => {
        this.workerDone('rx', epoch);
        run.finish();
      },
      (e: unknown) => {
        this.workerDone('rx', epoch);
        this.fail(e, epoch);
        run.finish();
      },
    );
  }

  /**
   * Fills RX chains with queued frames, a batch at a time. Notifications stay off while frames
   * flow (the device reads the ring itself); they are re-armed only when the device runs out of
   * buffers and must wait for the driver's refill kick (as vhost-net does).
   */
  private *rxWork(epoch: number): DmaTask<void> {
    const ring = this.rx!;
    for (let rounds = 0; ; rounds++) {
      if (rounds >= WORKER_WEIGHT) {
        this.rxYield = true;
        return;
      }
      this.rxAgain = false;
      if (this.rxFrames.length === 0) return;
      const used = this.rxUsed;
      used.length = 0;
      let starved = false;
      let frames = 0;
      while (this.rxFrames.length > 0 && frames < this.batch) {
        const frame = this.rxFrames.peek()!;
        const need = NET_HDR_SIZE + frame.length;
        // the pool must cover the frame: one chain without MRG_RXBUF, enough bytes with it
        if (this.rxPool.length === 0 || (this.mrg && this.rxPoolBytes < need)) {
          const got = yield* this.refillPool(ring, epoch, used);
          if (this.stale(epoch)) return;
          if (!got) {
            if (this.mrg && this.rxPool.length >= ring.size) {
              // every buffer of the ring is here and the frame still does not fit
              this.rxFrames.shift();
              this.counters.add('rx_dropped_too_big');
              continue;
            }
            starved = true;
            break;
          }
          continue;
        }
        this.rxFrames.shift();
        if (this.mrg) this.deliverMerged(frame, need, used);
        else this.deliverSingle(frame, need, used);
        frames++;
      }
      this.work += frames;
      if (this.rxFrames.length <= this.rxFrames.maxLength / 2) this.resumeBackend();
      if (used.length > 0) {
        yield* ring.pushTask(used);
        if (this.stale(epoch)) return;
        if (yield* ring.needNotifyTask()) {
          if (this.stale(epoch)) return;
          this.counters.add('interrupts_rx');
          this.opts.interrupt(NET_RX_QUEUE);
        }
      }
      if (starved) {
        this.counters.add('rx_out_of_buffers');
        if (this.polling) return;
        // pairs with driver.kick.mb-before-event-check: ask for the refill kick, then look again
        const more = yield* ring.enableNotifyTask();
        if (this.stale(epoch)) return;
        if (more || this.rxAgain) {
          ring.disableNotify();
          continue;
        }
        return;
      }
    }
  }

  /**
   * Pops available chains into the pool; malformed ones go straight back with length 0. False
   * when the ring had nothing.
   */
  private *refillPool(ring: SplitRingDevice, epoch: number, used: UsedElem[]): DmaTask<boolean> {
    const chains = yield* ring.popTask(this.batch);
    if (this.stale(epoch)) return false;
    if (chains.length === 0) return false;
    for (const c of chains) {
      // device-readable parts on an RX buffer, or (with MRG_RXBUF) a buffer smaller than the
      // header (5.1.6.3.1: each buffer must hold at least the header)
      if (c.readable.length > 0 || c.writableBytes === 0 || (this.mrg && c.writableBytes < NET_HDR_SIZE)) {
        this.counters.add('rx_bad_desc');
        used.push({ head: c.head, len: 0 });
        continue;
      }
      this.rxPool.push(c);
      this.rxPoolBytes += c.writableBytes;
    }
    return true;
  }

  private deliverSingle(frame: Uint8Array, need: number, used: UsedElem[]): void {
    const c = this.rxPool.peek()!;
    if (c.writableBytes < need) {
      // without MRG_RXBUF a frame must fit one buffer; keep the buffer for a smaller frame
      this.counters.add('rx_dropped_too_big');
      return;
    }
    this.rxPool.shift();
    this.rxPoolBytes -= c.writableBytes;
    const out = this.buildRx(frame, 1);
    used.push({ head: c.head, len: this.writeChain(c, out, 0) });
    this.countRx(frame);
  }

  private deliverMerged(frame: Uint8Array, need: number, used: UsedElem[]): void {
    let k = 0;
    for (let bytes = 0; bytes < need; k++) bytes += this.rxPool.at(k)!.writableBytes;
    const out = this.buildRx(frame, k);
    let pos = 0;
    for (let i = 0; i < k; i++) {
      const c = this.rxPool.shift()!;
      this.rxPoolBytes -= c.writableBytes;
      const n = this.writeChain(c, out, pos);
      used.push({ head: c.head, len: n });
      pos += n;
    }
    if (k > 1) this.counters.add('rx_merged_frames');
    this.countRx(frame);
  }

  private countRx(frame: Uint8Array): void {
    this.counters.add('rx_frames');
    this.counters.add('rx_bytes', frame.length);
  }

  /**
   * Header + frame in one new buffer: the DMA engine may hold it until its writes are emitted,
   * so nothing written is ever reused. Flags stay 0: the device forwards whole checksums and
   * claims no validation (DATA_VALID) it did not do.
   */
  private buildRx(frame: Uint8Array, numBuffers: number): Uint8Array {
    const out = new Uint8Array(NET_HDR_SIZE + frame.length);
    const h = this.hdr;
    h.flags = 0;
    h.gsoType = 0;
    h.hdrLen = 0;
    h.gsoSize = 0;
    h.csumStart = 0;
    h.csumOffset = 0;
    h.numBuffers = numBuffers;
    encodeNetHeader(h, out, 0);
    out.set(frame, NET_HDR_SIZE);
    return out;
  }

  /** DMA-writes `out[pos..]` into the chain's writable segments; returns the bytes written. */
  private writeChain(c: DeviceChain, out: Uint8Array, pos: number): number {
    const mem = this.mem;
    let written = 0;
    for (const s of c.writable) {
      const n = Math.min(s.len, out.length - pos - written);
      if (n <= 0) break;
      mem.write(s.addr, out.subarray(pos + written, pos + written + n));
      written += n;
    }
    return written;
  }

  // ---- polling, failure, bookkeeping ----------------------------------------------------------------

  /** Each loop has an id; stopping bumps it, so a step already queued finds itself stale. */
  private startPollLoop(): void {
    const id = ++this.pollLoopId;
    this.pollLoopRunning = true;
    const stop = (): void => {
      if (id === this.pollLoopId) this.pollLoopRunning = false;
    };
    const step = (): void => {
      if (id !== this.pollLoopId) return;
      this.pollTimer = undefined;
      if (!this.polling) return stop();
      this.pollPass((did) => {
        if (id !== this.pollLoopId) return;
        if (!this.polling) return stop();
        // busy: go again at once (after what is queued now); idle: back off a little
        if (did) this.clock.defer(step);
        else this.pollTimer = this.clock.setTimer(this.pollIdleNs, step);
      });
    };
    this.clock.defer(step);
  }

  private stopPollLoop(): void {
    this.pollLoopId++;
    this.pollLoopRunning = false;
    this.pollTimer?.cancel();
    this.pollTimer = undefined;
  }

  private workerDone(which: 'tx' | 'rx', epoch: number): void {
    if (epoch !== this.epoch) return;
    if (which === 'tx') {
      this.txBusy = false;
      if (this.txYield) {
        this.txYield = false;
        if (!this.polling) this.clock.defer(() => this.scheduleTx());
      } else if (this.txAgain && !this.polling) {
        // a kick that landed after the last look but before we cleared txBusy
        this.scheduleTx();
      }
    } else {
      this.rxBusy = false;
      if (this.rxYield) {
        this.rxYield = false;
        if (!this.polling) this.clock.defer(() => this.scheduleRx());
      } else if (this.rxAgain && !this.polling) {
        this.scheduleRx();
      }
    }
  }

  private stale(epoch: number): boolean {
    return epoch !== this.epoch || this.brokenReason !== undefined;
  }

  /** A ring error or a rejected DMA read: stop and ask for a reset (once). */
  private fail(e: unknown, epoch: number): void {
    if (epoch !== this.epoch || this.brokenReason !== undefined) return;
    this.brokenReason = errorMessage(e);
    this.counters.add('needs_reset');
    this.polling = false;
    this.stopPollLoop();
    // frames can no longer be delivered: drop what waits and let the backend run (and be dropped)
    this.counters.add('rx_dropped_reset', this.rxFrames.length);
    this.rxFrames.clear();
    this.resumeBackend();
    this.opts.onNeedsReset(this.brokenReason);
  }

  private writeConfig(): void {
    const c = this.config;
    c.set(this.opts.mac, VIRTIO_NET_CONFIG.MAC);
    put16(c, VIRTIO_NET_CONFIG.STATUS, this.link ? VIRTIO_NET_S_LINK_UP : 0);
    put16(c, VIRTIO_NET_CONFIG.MAX_VIRTQUEUE_PAIRS, 1);
    put16(c, VIRTIO_NET_CONFIG.MTU, this.mtu);
    // speed and duplex are only meaningful with SPEED_DUPLEX (not offered): "unknown"
    c[VIRTIO_NET_CONFIG.SPEED] = c[VIRTIO_NET_CONFIG.SPEED + 1] = c[VIRTIO_NET_CONFIG.SPEED + 2] = c[VIRTIO_NET_CONFIG.SPEED + 3] = 0xff;
    c[VIRTIO_NET_CONFIG.DUPLEX] = 0xff;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * One run of a queue's worker: whoever needs it finished (poll, whenIdle) registers a callback.
 * Callbacks, not promises, so the busy-poll loop stays inside the simulator's event loop.
 */
class WorkerRun {
  static readonly FINISHED: WorkerRun = (() => {
    const r = new WorkerRun();
    r.finish();
    return r;
  })();
  private done = false;
  private waiters: (() => void)[] | undefined = undefined;

  finish(): void {
    this.done = true;
    const w = this.waiters;
    this.waiters = undefined;
    if (w !== undefined) for (const f of w) f();
  }

  then(fn: () => void): void {
    if (this.done) fn();
    else (this.waiters ??= []).push(fn);
  }
}

/** Batches one worker run may take before it yields to other events. */
const WORKER_WEIGHT = 16;

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}
