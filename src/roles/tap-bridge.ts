/**
 * The root complex's `--tap IFNAME [--ip CIDR] [--pcap FILE]`: the virtio-net driver's NetDevice
 * (the host's NIC, a card that exists only as TLPs) bridged to a Linux TAP, so the host's kernel
 * sends and receives through the card.
 *
 *   kernel ─▶ TAP ─▶ fromTap ─▶ net.send ─▶ TX ring ─▶ TLPs ─▶ the card ─▶ its backend
 *   kernel ◀─ TAP ◀─ tap.send ◀─ fromDevice ◀─ RX ring ◀─ TLPs ◀─ the card ◀─ its backend
 *
 * Backpressure follows ws's rule: when `net.send` returns false (TX ring full) the frame is held
 * and the TAP paused (frames wait in the kernel's queue, which drops beyond txqueuelen) until
 * `onWritable`. The TAP's carrier follows the virtio link status, and is off while no card is
 * attached. Nothing here throws at a frame: runts, oversize frames, a dead ring and a TAP that
 * disappears (`ip link del`) are counted and logged once; the PCIe link stays up.
 */
import { Counters, TlpwireError, errorMessage, silentLogger, type Clock, type Logger } from '../core/index.js';
import {
  PcapWriter,
  checkFrameSize,
  openHostTap,
  parseCidr,
  runIp,
  validateIfname,
  wallClockEpochOffsetNs,
  type FrameCapture,
  type IpCommand,
  type NetBackend,
  type NetDevice,
  type TapAddon,
} from '../net/index.js';
import { formatBdf } from '../pci/index.js';
import type { HostFunctionContext } from './run-root-complex.js';

/** What the bridge needs of a TAP. TapBackend has all of it; tests pass a fake. */
export interface BridgeTap extends NetBackend {
  readonly ifname: string;
  readonly mtu: number;
  /** True once the interface is gone or the backend was closed. */
  readonly closed: boolean;
  /** Called once when the interface disappears under the backend. */
  onClosed: (reason: string) => void;
  setCarrier(up: boolean): void;
  setMtu?(mtu: number): void;
}

export interface TapBridgeOptions {
  tap: BridgeTap;
  /** Records every frame that crosses the virtio-net link on this side (rx: card → TAP, tx: TAP → card). */
  capture?: FrameCapture;
  logger?: Logger;
  /** Give the TAP the card's MTU on attach (default true); a failure is logged, not fatal. */
  syncMtu?: boolean;
}

/** A NetDevice that can tell it is dead (VirtioNetDriver: a broken ring never calls onWritable). */
interface MaybeBroken {
  readonly broken?: string | undefined;
}

const noop = (): void => {};

export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * One TAP, bridged to at most one NetDevice at a time (a card that comes back after its link
 * dropped is attached again; a second card while one is attached is refused).
 *
 * Counters: to_card_frames/to_card_bytes (TAP → net.send accepted), to_tap_frames/to_tap_bytes
 * (card → TAP), runt, oversize (from the TAP, against the card's MTU), pauses, resumes,
 * dropped_no_card, dropped_overrun, dropped_broken, dropped_tap_gone, send_errors, tap_gone,
 * attaches, detaches, attach_refused, link_up, link_down.
 */
export class TapBridge {
  readonly counters = new Counters();
  readonly tap: BridgeTap;
  private readonly capture: FrameCapture | undefined;
  private readonly log: Logger;
  private readonly syncMtu: boolean;
  private net: NetDevice | undefined;
  private label: string | undefined;
  /** The frame net.send refused (TX ring full); sent first on onWritable. */
  private pending: Uint8Array | undefined;
  private paused = false;
  private goneReason: string | undefined;
  private readonly logged = new Set<string>();

  constructor(o: TapBridgeOptions) {
    this.tap = o.tap;
    this.capture = o.capture;
    this.log = (o.logger ?? silentLogger).child({ bridge: o.tap.ifname });
    this.syncMtu = o.syncMtu ?? true;
    o.tap.onFrame = this.fromTap;
    o.tap.onClosed = this.tapGone;
    // No card yet: the kernel sees a cable that is not plugged in.
    o.tap.setCarrier(false);
  }

  /** The card the TAP is bridged to (its label), or undefined. */
  get attached(): string | undefined {
    return this.label;
  }

  /** Why the TAP is gone, or undefined while it exists. */
  get tapGoneReason(): string | undefined {
    return this.goneReason;
  }

  /**
   * Bridges `net` to the TAP. False (and a warning) when another card is already attached: a TAP
   * is one interface, one NIC.
   */
  attach(net: NetDevice, label: string): boolean {
    if (this.net !== undefined) {
      this.counters.add('attach_refused');
      this.log.warn(`${this.tap.ifname} already carries ${this.label ?? '?'}; ${label} is not bridged`);
      return false;
    }
    this.net = net;
    this.label = label;
    this.pending = undefined;
    this.counters.add('attaches');
    net.onFrame = this.fromDevice;
    net.onWritable = this.writable;
    net.onLinkChange = this.linkChange;
    if (this.goneReason === undefined) {
      if (this.syncMtu && this.tap.setMtu !== undefined && this.tap.mtu !== net.mtu) {
        try {
          this.tap.setMtu(net.mtu);
        } catch (e) {
          // Frames above the smaller of the two MTUs are counted as oversize on the way.
          this.logOnce('mtu', `cannot give ${this.tap.ifname} the card's MTU ${net.mtu} (${errorMessage(e)}); keeping ${this.tap.mtu}`);
        }
      }
      this.tap.setCarrier(net.linkUp);
    }
    this.log.info({ card: label, mtu: net.mtu, link: net.linkUp ? 'up' : 'down' }, `${this.tap.ifname} bridged to virtio-net ${label}`);
    return true;
  }

  /**
   * Unbridges `net` (its link went down, or the rc is closing): carrier off, the TAP keeps
   * reading. False when `net` was not the attached card.
   */
  detach(net: NetDevice, reason = 'detached'): boolean {
    if (this.net !== net) return false;
    net.onFrame = noop;
    net.onWritable = noop;
    net.onLinkChange = noop;
    this.net = undefined;
    this.counters.add('detaches');
    if (this.pending !== undefined) {
      this.pending = undefined;
      this.counters.add('dropped_no_card');
    }
    this.log.info({ card: this.label, reason }, `${this.tap.ifname} unbridged from virtio-net ${this.label ?? '?'}`);
    this.label = undefined;
    if (this.goneReason !== undefined) return true;
    this.tap.setCarrier(false);
    // Frames the kernel queued meanwhile are read and dropped (counted), not delivered to the next card.
    this.resumeTap();
    return true;
  }

  /** Detaches, closes the TAP (which removes an interface this process created). */
  async close(): Promise<void> {
    if (this.net !== undefined) this.detach(this.net, 'closing');
    await this.tap.close();
  }

  // ------------------------------------------------------------------ TAP → card

  private readonly fromTap = (frame: Uint8Array): void => {
    const net = this.net;
    if (net === undefined) {
      this.counters.add('dropped_no_card');
      return;
    }
    if (this.pending !== undefined) {
      // The TAP delivered while paused (TapBackend does not): order matters more than this frame.
      this.counters.add('dropped_overrun');
      return;
    }
    const verdict = checkFrameSize(frame, net.mtu);
    if (verdict !== 'ok') {
      this.counters.add(verdict);
      this.logOnce(verdict, `dropping ${verdict} frames from ${this.tap.ifname} (${frame.length} bytes, card MTU ${net.mtu})`);
      return;
    }
    if (this.trySend(net, frame)) return;
    if ((net as MaybeBroken).broken !== undefined) {
      // A broken ring never frees a slot: drop instead of waiting forever.
      this.counters.add('dropped_broken');
      this.logOnce('broken', `virtio-net ${this.label ?? '?'} stopped (${(net as MaybeBroken).broken ?? ''}); frames from ${this.tap.ifname} are dropped`);
      return;
    }
    // TX ring full: keep this frame (the TAP's batch buffer is not ours to hold) and stop reading.
    this.pending = Uint8Array.from(frame);
    this.pauseTap();
  };

  /** net.send that never throws; true when the card took the frame. */
  private trySend(net: NetDevice, frame: Uint8Array): boolean {
    let ok: boolean;
    try {
      ok = net.send(frame);
    } catch (e) {
      this.counters.add('send_errors');
      this.logOnce('send', `virtio-net ${this.label ?? '?'} refused a ${frame.length}-byte frame: ${errorMessage(e)}`);
      return true; // dropped: counted, nothing to retry
    }
    if (!ok) return false;
    this.counters.add('to_card_frames');
    this.counters.add('to_card_bytes', frame.length);
    this.capture?.capture(frame, 'tx');
    return true;
  }

  private readonly writable = (): void => {
    const net = this.net;
    if (net === undefined) return;
    const held = this.pending;
    if (held !== undefined) {
      if (!this.trySend(net, held)) return; // still full: the next onWritable retries
      this.pending = undefined;
    }
    this.resumeTap();
  };

  private pauseTap(): void {
    if (this.paused) return;
    this.paused = true;
    this.counters.add('pauses');
    this.tap.pause();
  }

  private resumeTap(): void {
    if (!this.paused) return;
    this.paused = false;
    this.counters.add('resumes');
    // May deliver the TAP's backlog right here, which may pause again.
    this.tap.resume();
  }

  // ------------------------------------------------------------------ card → TAP

  private readonly fromDevice = (frame: Uint8Array): void => {
    this.capture?.capture(frame, 'rx');
    if (this.goneReason !== undefined) {
      this.counters.add('dropped_tap_gone');
      return;
    }
    this.counters.add('to_tap_frames');
    this.counters.add('to_tap_bytes', frame.length);
    // TapBackend checks the size against the TAP's MTU and counts what it drops.
    this.tap.send(frame);
  };

  private readonly linkChange = (up: boolean): void => {
    this.counters.add(up ? 'link_up' : 'link_down');
    this.log.info(`virtio-net ${this.label ?? '?'} link ${up ? 'up' : 'down'}: carrier ${up ? 'on' : 'off'} on ${this.tap.ifname}`);
    if (this.goneReason === undefined) this.tap.setCarrier(up);
  };

  private readonly tapGone = (reason: string): void => {
    if (this.goneReason !== undefined) return;
    this.goneReason = reason;
    this.counters.add('tap_gone');
    this.pending = undefined;
    this.paused = false;
    // TapBackend has logged the cause; say what happens next, once.
    this.log.warn(`${this.tap.ifname} is gone: frames from the card are dropped from now on; the PCIe link and the card stay up`);
  };

  private logOnce(key: string, msg: string): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    this.log.warn(`tap bridge: ${msg}`);
  }
}

// ---------------------------------------------------------------------- the rc's --tap

export interface RcTapOptions {
  ifname: string;
  /** ADDRESS/PREFIX for the TAP (`--ip`). */
  ip?: string;
  /** `--pcap FILE`: frames crossing the virtio-net link on the rc side. */
  pcap?: string;
  clock: Clock;
  /** Unix ms now, for the capture's timestamps (the CLI passes Date.now()). */
  wallNowMs?: number;
  logger?: Logger;
  /** One line per event for the user (stdout). */
  out?: (line: string) => void;
  /** Give the TAP the card's MAC (default true). */
  setMac?: boolean;
  /** Tests: the addon and the `ip` runner. */
  addon?: TapAddon;
  ipCommand?: IpCommand;
}

/** What `rc --tap` holds for the life of the process. */
export interface RcTap {
  readonly bridge: TapBridge;
  readonly pcap: PcapWriter | undefined;
  /** The virtio-net driver's `attach` hook. */
  attach(net: NetDevice, ctx: HostFunctionContext): Promise<void>;
  /** One line of counters. */
  summary(): string;
  close(): Promise<void>;
}

/**
 * Opens (creating if missing) the TAP, assigns `--ip`, opens the capture. Throws ERR_TAP with a
 * one-line message saying what is missing (no addon, no rights, no /dev/net/tun) before anything
 * else starts, so `rc --tap` fails fast.
 */
export async function openRcTap(o: RcTapOptions): Promise<RcTap> {
  const log = o.logger ?? silentLogger;
  const out = o.out ?? noop;
  const ip = o.ipCommand ?? runIp;
  const tap = await openHostTap({
    ifname: o.ifname,
    logger: log,
    // carrier off until a card is attached: the kernel does not route into an empty slot
    carrier: false,
    ...(o.ip === undefined ? {} : { ip: o.ip }),
    ...(o.addon === undefined ? {} : { addon: o.addon }),
    ...(o.ipCommand === undefined ? {} : { ipCommand: o.ipCommand }),
  });
  let pcap: PcapWriter | undefined;
  if (o.pcap !== undefined) {
    try {
      pcap = await PcapWriter.open(o.pcap, {
        clock: o.clock,
        epochOffsetNs: wallClockEpochOffsetNs(o.clock, o.wallNowMs ?? 0),
        logger: log,
      });
    } catch (e) {
      await tap.close();
      throw e;
    }
  }
  const setMac =
    o.setMac === false
      ? undefined
      : async (ifname: string, mac: Uint8Array): Promise<void> => {
          await ip(['link', 'set', 'dev', ifname, 'address', formatMac(mac)]);
        };
  const bridge = new TapBridge({ tap, logger: log, ...(pcap === undefined ? {} : { capture: pcap }) });
  out(`tap ${tap.ifname}: ready${o.ip === undefined ? '' : ` with ${o.ip}`}, carrier off until a virtio-net card is attached${o.pcap === undefined ? '' : `; capturing to ${o.pcap}`}`);
  let closing: Promise<void> | undefined;
  return {
    bridge,
    pcap,
    async attach(net, ctx) {
      const label = formatBdf(ctx.fn.bdf);
      if (bridge.tapGoneReason !== undefined) {
        out(`virtio-net ${label}: not bridged: ${bridge.tapGoneReason}`);
        return;
      }
      if (bridge.attached !== undefined) {
        out(`virtio-net ${label}: not bridged: ${tap.ifname} already carries ${bridge.attached}`);
        return;
      }
      if (setMac !== undefined) {
        try {
          // The host's interface is the card: it uses the card's MAC, as a guest's eth0 would.
          await setMac(tap.ifname, net.mac);
        } catch (e) {
          log.warn(`tap: keeping ${tap.ifname}'s own MAC: ${errorMessage(e)}`);
        }
      }
      if (!bridge.attach(net, label)) return;
      out(`virtio-net ${label}: bridged to ${tap.ifname} (mac ${formatMac(net.mac)}, mtu ${net.mtu}, carrier ${net.linkUp ? 'on' : 'off'})`);
      void ctx.rootPort.stack.link.whenDown().then((why) => {
        if (bridge.detach(net, why)) out(`virtio-net ${label}: unbridged from ${tap.ifname} (${why}); carrier off`);
      });
    },
    summary() {
      const c = bridge.counters;
      const t = tap.counters;
      const drops =
        c.get('runt') + c.get('oversize') + c.get('dropped_no_card') + c.get('dropped_overrun') + c.get('dropped_broken') + c.get('dropped_tap_gone') + c.get('send_errors');
      const tapDrops = t.get('runt') + t.get('oversize') + t.get('dropped_busy') + t.get('dropped_link_down') + t.get('dropped_closed') + t.get('write_errors');
      return (
        `tap ${tap.ifname}: ${c.get('to_card_frames')} frames to the card (${c.get('to_card_bytes')} bytes), ` +
        `${c.get('to_tap_frames')} from it (${c.get('to_tap_bytes')} bytes); dropped ${drops} from the TAP, ${tapDrops} toward it; ` +
        `${c.get('pauses')} pauses` +
        (pcap === undefined ? '' : `; ${pcap.counters.get('records')} frames captured${pcap.counters.get('dropped') > 0 ? ` (${pcap.counters.get('dropped')} not)` : ''}`) +
        (bridge.tapGoneReason === undefined ? '' : `; ${bridge.tapGoneReason}`)
      );
    },
    close() {
      closing ??= (async () => {
        await bridge.close();
        await pcap?.close();
      })();
      return closing;
    },
  };
}

/** Usage checks for `--tap/--ip/--pcap` before anything touches the system. */
export function checkRcTapFlags(f: { tap?: string; ip?: string; pcap?: string; once?: boolean }): void {
  if (f.tap !== undefined) validateIfname(f.tap);
  if (f.ip !== undefined) parseCidr(f.ip);
  if (f.tap === undefined) {
    if (f.ip !== undefined) throw new TlpwireError('ERR_USAGE', '--ip needs --tap IFNAME (the address goes on that TAP)');
    if (f.pcap !== undefined) throw new TlpwireError('ERR_USAGE', '--pcap needs --tap IFNAME on the rc side (it records the frames bridged to the TAP)');
    return;
  }
  if (f.once === true) {
    throw new TlpwireError('ERR_USAGE', '--once with --tap would close the link as soon as the TAP is bridged: use --exit-after DURATION, or stop the rc with a signal');
  }
}
