/**
 * A Linux TAP interface as a NetBackend: the endpoint's `--backend tap:IFNAME`, and the root
 * complex's `--tap IFNAME [--ip CIDR]` (the same class; `openHostTap` adds the address).
 *
 * Frames come from the addon in batches (one Buffer per poll wakeup, frames back to back), are
 * size-checked and handed to the device one by one. Nothing a peer or the kernel does crashes the
 * process: runts and oversize frames are counted and dropped in both directions; the interface
 * disappearing (`ip link del`) is counted, logged once, and reported through `onClosed`.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { Counters, FixedQueue, TlpwireError, errorMessage, silentLogger, type Logger } from '../core/index.js';
import type { NetBackend } from './backend.js';
import { checkFrameSize } from './frame-size.js';
import {
  TAP_ERRNO,
  describeTapError,
  isNativeTapError,
  loadTapAddon,
  validateIfname,
  type NativeTap,
  type NativeTapError,
  type TapAddon,
} from './tap-native.js';

export interface TapBackendOptions {
  /** The interface name; created if missing (needs CAP_NET_ADMIN), opened if it exists. */
  ifname: string;
  /** Set this MTU on the interface. Default: keep the interface's (1500 for a new TAP). */
  mtu?: number;
  /** Bring the interface up on open (default true; a no-op when it is already up). */
  up?: boolean;
  /** Initial carrier state (default: leave it as the kernel has it, which is on). */
  carrier?: boolean;
  logger?: Logger;
  /** The addon to use (tests); default loadTapAddon(). */
  addon?: TapAddon;
  /** Frames per read batch (default 64). */
  maxBatch?: number;
  /** Called once if the interface goes away under us (the backend is closed by then). */
  onClosed?: (reason: string) => void;
}

const IFF_UP = 0x1;
const DEFAULT_MAX_BATCH = 64;

/**
 * Counters (NetBackend convention: "in" = from the device toward the world, "out" = toward the
 * device): frames_in/bytes_in written to the TAP, frames_out/bytes_out read from it and delivered;
 * runt, oversize (both directions); dropped_busy (kernel queue full), dropped_link_down
 * (interface administratively down), dropped_closed, write_errors, read_errors, gone.
 */
export class TapBackend implements NetBackend {
  readonly name: string;
  readonly ifname: string;
  readonly counters = new Counters();
  onFrame: (frame: Uint8Array) => void = () => {};
  onClosed: (reason: string) => void;
  private readonly native: NativeTap;
  private readonly log: Logger;
  private readonly lengths: Uint32Array;
  /** Frames of a batch that arrived after the device paused us; delivered first on resume. */
  private readonly backlog: FixedQueue<Uint8Array>;
  private readonly logged = new Set<string>();
  private mtuValue: number;
  private paused = false;
  /** Whether the addon is polling the fd (it is stopped while paused or holding a backlog). */
  private reading = false;
  private delivering = false;
  private closedReason: string | undefined;

  private constructor(native: NativeTap, opts: TapBackendOptions, log: Logger) {
    this.native = native;
    this.ifname = native.name();
    this.name = `tap:${this.ifname}`;
    this.log = log;
    this.onClosed = opts.onClosed ?? (() => {});
    const maxBatch = Math.max(1, Math.min(1024, opts.maxBatch ?? DEFAULT_MAX_BATCH));
    this.lengths = new Uint32Array(maxBatch);
    this.backlog = new FixedQueue<Uint8Array>(maxBatch);
    this.mtuValue = native.getMtu();
    native.setCallbacks(this.onBatch, this.onNativeError, this.lengths);
  }

  /** Opens (or creates) the TAP and starts reading. Throws ERR_TAP with what is missing. */
  static open(opts: TapBackendOptions): TapBackend {
    validateIfname(opts.ifname);
    const addon = opts.addon ?? loadTapAddon();
    const log = (opts.logger ?? silentLogger).child({ tap: opts.ifname });
    let native: NativeTap;
    try {
      native = new addon.Tap(opts.ifname);
    } catch (e) {
      throw describeTapError(e, opts.ifname);
    }
    try {
      if (opts.mtu !== undefined) native.setMtu(opts.mtu);
      if (opts.up !== false) bringUp(native, opts.ifname, log);
      const backend = new TapBackend(native, opts, log);
      if (opts.carrier !== undefined) backend.setCarrier(opts.carrier);
      backend.syncReading();
      return backend;
    } catch (e) {
      native.close();
      throw describeTapError(e, opts.ifname);
    }
  }

  /** The MTU frames are checked against (the interface's, refreshed when it seems to change). */
  get mtu(): number {
    return this.mtuValue;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  send(frame: Uint8Array): void {
    if (this.closedReason !== undefined) {
      this.counters.add('dropped_closed');
      return;
    }
    if (!this.sizeOk(frame, 'from the device')) return;
    const err = this.native.write(frame);
    if (err === 0) {
      this.counters.add('frames_in');
      this.counters.add('bytes_in', frame.length);
      return;
    }
    this.writeFailed(err);
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.counters.add('pauses');
    // Frames now wait in the kernel's queue (txqueuelen), which drops beyond it: backpressure.
    if (this.reading) {
      this.reading = false;
      this.native.stopReading();
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    // Called from inside onFrame: the delivery loop picks the backlog up and restarts reading.
    if (this.delivering) return;
    this.drainBacklog();
    this.syncReading();
  }

  close(): Promise<void> {
    this.shutdown('closed');
    return Promise.resolve();
  }

  /** Carrier follows the virtio link status (TUNSETCARRIER; Linux ≥ 5.0). */
  setCarrier(up: boolean): void {
    if (this.closedReason !== undefined) return;
    try {
      this.native.setCarrier(up);
    } catch (e) {
      this.logOnce('carrier', `cannot set carrier on ${this.ifname}: ${errorMessage(e)}`);
    }
  }

  /** Administrative up/down (SIOCSIFFLAGS). Throws ERR_TAP when not permitted. */
  setUp(up: boolean): void {
    if (this.closedReason !== undefined) return;
    try {
      this.native.setUp(up);
    } catch (e) {
      throw describeTapError(e, this.ifname);
    }
  }

  /** Sets the interface MTU (and the limit frames are checked against). */
  setMtu(mtu: number): void {
    try {
      this.native.setMtu(mtu);
    } catch (e) {
      throw describeTapError(e, this.ifname);
    }
    this.mtuValue = mtu;
  }

  /** Whether an open TAP keeps the event loop alive (default true). */
  ref(keepAlive: boolean): void {
    if (this.closedReason === undefined) this.native.ref(keepAlive);
  }

  // ------------------------------------------------------------------ reading

  private readonly onBatch = (batch: Buffer, count: number): void => {
    const lengths = this.lengths;
    this.delivering = true;
    try {
      let off = 0;
      for (let i = 0; i < count; i++) {
        const len = lengths[i]!;
        const frame = batch.subarray(off, off + len);
        off += len;
        if (this.closedReason !== undefined) return;
        // Keep order: once something waits in the backlog, everything behind it waits too.
        if (this.paused || this.backlog.length > 0) this.backlog.push(frame);
        else this.deliver(frame);
      }
    } finally {
      this.delivering = false;
    }
    if (!this.paused && this.backlog.length > 0) this.drainBacklog();
    this.syncReading();
  };

  /** Polls the fd exactly when frames can be delivered: not paused, nothing held back, open. */
  private syncReading(): void {
    if (this.reading || this.paused || this.backlog.length > 0 || this.closedReason !== undefined) return;
    this.reading = true;
    this.native.startReading();
  }

  private drainBacklog(): void {
    this.delivering = true;
    try {
      while (!this.paused && this.closedReason === undefined) {
        const f = this.backlog.shift();
        if (f === undefined) break;
        this.deliver(f);
      }
    } finally {
      this.delivering = false;
    }
  }

  private deliver(frame: Uint8Array): void {
    if (!this.sizeOk(frame, 'from the TAP')) return;
    this.counters.add('frames_out');
    this.counters.add('bytes_out', frame.length);
    this.onFrame(frame);
  }

  private readonly onNativeError = (err: NativeTapError): void => {
    // The poll or a read failed: on a TAP that means the interface was deleted (EBADFD/EBADF from
    // a detached queue, EIO/ENODEV on older kernels). Nothing more will ever arrive on this fd.
    this.counters.add('read_errors');
    this.gone(err.syscall, err.code);
  };

  private gone(syscall: string, code: string): void {
    if (this.closedReason !== undefined) return;
    this.counters.add('gone');
    const reason = `interface ${this.ifname} is gone (${syscall}: ${code})`;
    this.log.error({ code }, `tap: ${reason}; backend closed`);
    this.shutdown(reason);
    this.onClosed(reason);
  }

  // ------------------------------------------------------------------ writing

  private writeFailed(err: number): void {
    switch (err) {
      case TAP_ERRNO.EAGAIN:
        // The kernel's queue toward the stack is full: drop, never block the loop.
        this.counters.add('dropped_busy');
        return;
      case TAP_ERRNO.EIO:
        // tun refuses writes while the interface is administratively down.
        this.counters.add('dropped_link_down');
        this.logOnce('down', `${this.ifname} is down: frames toward it are dropped until 'ip link set ${this.ifname} up'`);
        return;
      case TAP_ERRNO.EBADFD:
      case TAP_ERRNO.EBADF:
      case TAP_ERRNO.ENODEV:
        this.counters.add('write_errors');
        this.gone('write', err === TAP_ERRNO.ENODEV ? 'ENODEV' : err === TAP_ERRNO.EBADF ? 'EBADF' : 'EBADFD');
        return;
      default:
        this.counters.add('write_errors');
        this.logOnce(`write-${err}`, `write to ${this.ifname} failed with errno ${err}; frame dropped`);
    }
  }

  // ------------------------------------------------------------------ helpers

  private sizeOk(frame: Uint8Array, from: string): boolean {
    let verdict = checkFrameSize(frame, this.mtuValue);
    if (verdict === 'oversize') {
      // An administrator may have raised the MTU with `ip link`: look again before dropping.
      this.refreshMtu();
      verdict = checkFrameSize(frame, this.mtuValue);
    }
    if (verdict === 'ok') return true;
    this.counters.add(verdict);
    this.logOnce(`${verdict}-${from}`, `dropping ${verdict} frames ${from} (${frame.length} bytes, MTU ${this.mtuValue})`);
    return false;
  }

  private refreshMtu(): void {
    if (this.closedReason !== undefined) return;
    try {
      this.mtuValue = this.native.getMtu();
    } catch {
      // The interface is going away; the read side reports that.
    }
  }

  private logOnce(key: string, msg: string): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    this.log.warn(`tap: ${msg}`);
  }

  private shutdown(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.reading = false;
    this.counters.add('dropped_closed', this.backlog.length);
    this.backlog.clear();
    this.native.close();
  }
}

function bringUp(native: NativeTap, ifname: string, log: Logger): void {
  try {
    native.setUp(true);
  } catch (e) {
    // A TAP prepared by an administrator may be opened without CAP_NET_ADMIN; if it is still
    // down, say how to fix it instead of refusing to start (it works as soon as it is up).
    if (isNativeTapError(e) && e.errno === TAP_ERRNO.EPERM && (safeFlags(native) & IFF_UP) === 0) {
      log.warn(`tap: ${ifname} is down and bringing it up needs CAP_NET_ADMIN: run 'ip link set ${ifname} up'`);
      return;
    }
    throw e;
  }
}

function safeFlags(native: NativeTap): number {
  try {
    return native.flags();
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------- root complex side

export interface Cidr {
  address: string;
  prefix: number;
  family: 4 | 6;
}

/** `10.0.0.1/24` or `fd00::1/64`; throws ERR_USAGE with what is wrong. */
export function parseCidr(cidr: string): Cidr {
  const slash = cidr.lastIndexOf('/');
  const bad = (why: string): TlpwireError =>
    new TlpwireError('ERR_USAGE', `--ip: expected ADDRESS/PREFIX such as 10.0.0.1/24, got '${cidr}': ${why}`);
  if (slash < 0) throw bad('the /PREFIX is missing');
  const address = cidr.slice(0, slash);
  const prefixText = cidr.slice(slash + 1);
  const family = isIP(address);
  if (family !== 4 && family !== 6) throw bad(`'${address}' is not an IP address`);
  if (!/^\d{1,3}$/.test(prefixText)) throw bad(`'${prefixText}' is not a prefix length`);
  const prefix = Number(prefixText);
  const max = family === 4 ? 32 : 128;
  if (prefix > max) throw bad(`the prefix must be 0..${max}`);
  return { address, prefix, family };
}

/** Runs `ip ARGS`; resolves with stdout. Replaceable in tests. */
export type IpCommand = (args: readonly string[]) => Promise<string>;

export const runIp: IpCommand = (args) =>
  new Promise((resolve, reject) => {
    execFile('ip', [...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout);
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        reject(new TlpwireError('ERR_TAP', "tap: the 'ip' command is missing (install iproute2)", { cause: err }));
        return;
      }
      const detail = firstLine(stderr.trim()) || errorMessage(err);
      reject(new TlpwireError('ERR_TAP', `tap: ip ${args.join(' ')}: ${detail}`, { cause: err }));
    });
  });

/**
 * Assigns `cidr` to `ifname` and brings it up (`ip addr add` + `ip link set up`). An address
 * that is already there is fine, so a restart of the root complex does not fail.
 */
export async function assignTapAddress(ifname: string, cidr: string, ip: IpCommand = runIp): Promise<void> {
  validateIfname(ifname);
  const c = parseCidr(cidr);
  try {
    await ip(['addr', 'add', `${c.address}/${c.prefix}`, 'dev', ifname]);
  } catch (e) {
    if (!/File exists|Address already assigned/i.test(errorMessage(e))) {
      const msg = errorMessage(e);
      throw new TlpwireError(
        'ERR_TAP',
        /Operation not permitted/i.test(msg)
          ? `tap: cannot assign ${cidr} to ${ifname}: need CAP_NET_ADMIN (or assign it beforehand with 'ip addr add ${cidr} dev ${ifname}')`
          : msg,
        { cause: e },
      );
    }
  }
  await ip(['link', 'set', 'dev', ifname, 'up']);
}

export interface HostTapOptions extends TapBackendOptions {
  /** ADDRESS/PREFIX to assign to the interface (the root complex's `--ip`). */
  ip?: string;
  /** How to run `ip` (tests). */
  ipCommand?: IpCommand;
}

/** The root complex's `--tap IFNAME [--ip CIDR]`: open the TAP, assign the address, bring it up. */
export async function openHostTap(opts: HostTapOptions): Promise<TapBackend> {
  if (opts.ip !== undefined) parseCidr(opts.ip); // fail on a typo before touching the system
  const tap = TapBackend.open(opts);
  if (opts.ip !== undefined) {
    try {
      await assignTapAddress(tap.ifname, opts.ip, opts.ipCommand);
    } catch (e) {
      await tap.close();
      throw e;
    }
  }
  return tap;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}
