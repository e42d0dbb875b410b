/**
 * TapBackend against a scripted stand-in for the addon: the batching, backpressure and robustness
 * logic, deterministically and without root. The real addon is exercised in tap-real.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { isTlpwireError, type LogFn, type Logger } from '../../src/core/index.js';
import {
  TapBackend,
  assignTapAddress,
  describeTapError,
  loadTapAddon,
  openHostTap,
  openRealBackend,
  parseCidr,
  tapAddonStatus,
  validateIfname,
  type IpCommand,
  type NativeArrayCallback,
  type NativeSlabCallback,
  type NativeTap,
  type NativeTapError,
  type TapAddon,
} from '../../src/net/index.js';

/** A Logger that keeps every line, to check what is logged and how often. */
function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const fn =
    (level: string): LogFn =>
    (a: object | string, b?: string) =>
      lines.push({ level, msg: typeof a === 'string' ? a : (b ?? '') });
  const logger: Logger & { lines: typeof lines } = {
    lines,
    trace: fn('trace'),
    debug: fn('debug'),
    info: fn('info'),
    warn: fn('warn'),
    error: fn('error'),
    child: () => logger,
  };
  return logger;
}

function nativeError(code: string, errno: number, syscall: string): NativeTapError {
  return Object.assign(new Error(`${syscall}: ${code}`), { code, errno, syscall });
}

/** A NativeTap whose kernel side the test drives: push batches in, see what was written. */
class FakeTap implements NativeTap {
  written: Uint8Array[] = [];
  writeErrno = 0;
  mtu = 1500;
  up = false;
  carrier: boolean[] = [];
  reading = false;
  closed = false;
  setUpError: NativeTapError | undefined;
  private onFrames: NativeSlabCallback | undefined;
  private onError: ((e: NativeTapError) => void) | undefined;
  private lengths: Uint32Array | undefined;

  constructor(private readonly ifname: string) {}

  setCallbacks(onFrames: NativeSlabCallback | NativeArrayCallback, onError: (err: NativeTapError) => void, lengths: Uint32Array | null): void {
    if (lengths === null) throw new Error('the backend uses slab mode');
    this.onFrames = onFrames as NativeSlabCallback;
    this.onError = onError;
    this.lengths = lengths;
  }
  startReading(): void {
    this.reading = true;
  }
  stopReading(): void {
    this.reading = false;
  }
  ref(): void {}
  write(frame: Uint8Array): number {
    if (this.writeErrno !== 0) return this.writeErrno;
    this.written.push(Uint8Array.from(frame));
    return 0;
  }
  writeMany(frames: readonly Uint8Array[]): number {
    for (const f of frames) this.write(f);
    return frames.length;
  }
  lastErrno(): number {
    return this.writeErrno;
  }
  setUp(up: boolean): void {
    if (this.setUpError !== undefined) throw this.setUpError;
    this.up = up;
  }
  flags(): number {
    return this.up ? 1 : 0;
  }
  setCarrier(on: boolean): void {
    this.carrier.push(on);
  }
  setMtu(mtu: number): void {
    this.mtu = mtu;
  }
  getMtu(): number {
    return this.mtu;
  }
  setPersist(): void {}
  setNonBlocking(): void {}
  close(): void {
    this.closed = true;
    this.reading = false;
  }
  name(): string {
    return this.ifname;
  }
  fd(): number {
    return this.closed ? -1 : 42;
  }

  /** The kernel has frames: one poll wakeup, one batch (as the addon does it). */
  arrive(...frames: Uint8Array[]): void {
    if (!this.reading) throw new Error('not reading: the addon would not call back');
    const lengths = this.lengths!;
    const batch = Buffer.concat(frames.map((f) => Buffer.from(f)));
    frames.forEach((f, i) => (lengths[i] = f.length));
    this.onFrames!(batch, frames.length);
  }

  /** The interface was deleted: the poll reports an error. */
  vanish(): void {
    this.reading = false;
    this.onError!(nativeError('EBADFD', 77, 'read'));
  }
}

function fakeAddon(opts: { open?: (name: string) => FakeTap; openError?: NativeTapError } = {}): TapAddon & { last: FakeTap | undefined } {
  const addon = {
    version: 1,
    last: undefined as FakeTap | undefined,
    Tap: function (this: unknown, name: string) {
      if (opts.openError !== undefined) throw opts.openError;
      const t = opts.open?.(name) ?? new FakeTap(name);
      addon.last = t;
      return t;
    } as unknown as TapAddon['Tap'],
  };
  return addon;
}

function frame(len: number, tag = 0): Uint8Array {
  const f = new Uint8Array(len);
  f[12] = 0x08;
  if (len > 14) f[14] = tag;
  return f;
}

describe('TapBackend (scripted addon)', () => {
  it('opens, brings the interface up, applies the MTU, and starts reading', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap7', addon, mtu: 9000, carrier: false });
    const t = addon.last!;
    expect(b.name).toBe('tap:tap7');
    expect(b.mtu).toBe(9000);
    expect(t.up).toBe(true);
    expect(t.reading).toBe(true);
    expect(t.carrier).toEqual([false]);
  });

  it('delivers a batch frame by frame, in order, as views of one buffer', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap0', addon });
    const got: number[] = [];
    b.onFrame = (f) => got.push(f[14]!);
    addon.last!.arrive(frame(60, 1), frame(1514, 2), frame(42, 3));
    expect(got).toEqual([1, 2, 3]);
    expect(b.counters.snapshot()).toMatchObject({ frames_out: 3, bytes_out: 60 + 1514 + 42 });
  });

  it('counts and drops runts and oversize frames from the TAP, keeps the rest', () => {
    const addon = fakeAddon();
    const log = recordingLogger();
    const b = TapBackend.open({ ifname: 'tap0', addon, logger: log });
    const got: number[] = [];
    b.onFrame = (f) => got.push(f.length);
    const tagged = frame(1518);
    tagged[12] = 0x81;
    tagged[13] = 0x00;
    addon.last!.arrive(frame(10), frame(1515), frame(60), tagged, frame(0), frame(1519));
    expect(got).toEqual([60, 1518]);
    expect(b.counters.snapshot()).toMatchObject({ runt: 2, oversize: 2, frames_out: 2 });
    // logged once per kind and direction, not per frame
    expect(log.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      'tap: dropping runt frames from the TAP (10 bytes, MTU 1500)',
      'tap: dropping oversize frames from the TAP (1515 bytes, MTU 1500)',
    ]);
  });

  it('re-reads the MTU before calling a frame oversize (an admin may have raised it)', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap0', addon });
    addon.last!.mtu = 9000;
    const got: number[] = [];
    b.onFrame = (f) => got.push(f.length);
    addon.last!.arrive(frame(4000));
    expect(got).toEqual([4000]);
    expect(b.mtu).toBe(9000);
  });

  it('counts and drops runts and oversize frames from the device instead of writing them', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap0', addon, mtu: 1500 });
    b.send(frame(13));
    b.send(frame(1600));
    b.send(frame(64));
    expect(addon.last!.written.map((f) => f.length)).toEqual([64]);
    expect(b.counters.snapshot()).toMatchObject({ runt: 1, oversize: 1, frames_in: 1, bytes_in: 64 });
  });

  it('pausing inside onFrame holds the rest of the batch, stops reading, and resume delivers it in order', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap0', addon });
    const got: number[] = [];
    b.onFrame = (f) => {
      got.push(f[14]!);
      if (f[14] === 2) b.pause();
    };
    addon.last!.arrive(frame(60, 1), frame(60, 2), frame(60, 3), frame(60, 4));
    expect(got).toEqual([1, 2]);
    expect(addon.last!.reading).toBe(false);
    b.resume();
    expect(got).toEqual([1, 2, 3, 4]);
    expect(addon.last!.reading).toBe(true);
  });

  it('pause then resume inside one onFrame call keeps order and does not recurse', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap0', addon });
    const got: number[] = [];
    b.onFrame = (f) => {
      got.push(f[14]!);
      if (f[14] === 1) {
        b.pause();
        b.resume();
      }
    };
    addon.last!.arrive(frame(60, 1), frame(60, 2), frame(60, 3));
    expect(got).toEqual([1, 2, 3]);
    expect(addon.last!.reading).toBe(true); // and the fd is polled again
  });

  it('a pause that outlives the batch keeps the fd unpolled until resume', () => {
    const addon = fakeAddon();
    const b = TapBackend.open({ ifname: 'tap0', addon });
    b.onFrame = () => b.pause();
    addon.last!.arrive(frame(60, 1));
    expect(addon.last!.reading).toBe(false);
    b.onFrame = () => {};
    b.resume();
    expect(addon.last!.reading).toBe(true);
  });

  it('treats a full kernel queue (EAGAIN) and a down interface (EIO) as counted drops', () => {
    const addon = fakeAddon();
    const log = recordingLogger();
    const b = TapBackend.open({ ifname: 'tap0', addon, logger: log });
    addon.last!.writeErrno = 11;
    b.send(frame(60));
    addon.last!.writeErrno = 5;
    b.send(frame(60));
    b.send(frame(60));
    expect(b.counters.snapshot()).toMatchObject({ dropped_busy: 1, dropped_link_down: 2 });
    expect(b.closed).toBe(false);
    expect(log.lines.filter((l) => l.msg.includes('is down'))).toHaveLength(1);
  });

  it('reports a vanished interface once through onClosed; later frames are counted, nothing throws', async () => {
    const addon = fakeAddon();
    const log = recordingLogger();
    const reasons: string[] = [];
    const b = TapBackend.open({ ifname: 'tap0', addon, logger: log, onClosed: (r) => reasons.push(r) });
    addon.last!.vanish();
    expect(reasons).toEqual(['interface tap0 is gone (read: EBADFD)']);
    expect(b.closed).toBe(true);
    expect(addon.last!.closed).toBe(true);
    b.send(frame(60));
    b.pause();
    b.resume();
    b.setCarrier(true);
    await b.close();
    expect(b.counters.snapshot()).toMatchObject({ gone: 1, read_errors: 1, dropped_closed: 1 });
    expect(log.lines.filter((l) => l.level === 'error')).toHaveLength(1);
  });

  it('a write that finds the interface gone (EBADFD) closes the backend the same way', () => {
    const addon = fakeAddon();
    const reasons: string[] = [];
    const b = TapBackend.open({ ifname: 'tap0', addon, onClosed: (r) => reasons.push(r) });
    addon.last!.writeErrno = 77;
    b.send(frame(60));
    expect(reasons).toEqual(['interface tap0 is gone (write: EBADFD)']);
    expect(b.counters.snapshot()).toMatchObject({ gone: 1, write_errors: 1 });
  });

  it('a TAP an administrator prepared but left down opens without CAP_NET_ADMIN, with a warning', () => {
    const addon = fakeAddon({
      open: (n) => {
        const t = new FakeTap(n);
        t.setUpError = nativeError('EPERM', 1, 'SIOCSIFFLAGS');
        return t;
      },
    });
    const log = recordingLogger();
    const b = TapBackend.open({ ifname: 'tap0', addon, logger: log });
    expect(b.closed).toBe(false);
    expect(log.lines.map((l) => l.msg)).toContain("tap: tap0 is down and bringing it up needs CAP_NET_ADMIN: run 'ip link set tap0 up'");
  });

  it('turns the addon’s open errors into one-line ERR_TAP messages that say what is missing', () => {
    const uid = process.getuid?.() ?? 1000;
    const cases: [NativeTapError, string][] = [
      [nativeError('EPERM', 1, 'TUNSETIFF'), `tap: need CAP_NET_ADMIN or a TAP created with 'ip tuntap add dev tap0 mode tap user ${uid}'`],
      [nativeError('ENOENT', 2, 'open /dev/net/tun'), 'tap: /dev/net/tun missing (load the tun module with modprobe tun; in a container pass --device /dev/net/tun)'],
      [nativeError('EACCES', 13, 'open /dev/net/tun'), `tap: no access to /dev/net/tun (needs read and write permission for uid ${uid}; it is normally mode 0666)`],
      [nativeError('EBUSY', 16, 'TUNSETIFF'), 'tap: tap0 is already open in another process (a TAP has one reader)'],
      [nativeError('EINVAL', 22, 'TUNSETIFF'), 'tap: tap0 exists and is not a TAP (a TUN device or another kind of interface)'],
    ];
    for (const [err, msg] of cases) {
      let thrown: unknown;
      try {
        TapBackend.open({ ifname: 'tap0', addon: fakeAddon({ openError: err }) });
      } catch (e) {
        thrown = e;
      }
      expect(isTlpwireError(thrown, 'ERR_TAP')).toBe(true);
      expect((thrown as Error).message).toBe(msg);
      expect((thrown as Error).message).not.toContain('\n');
    }
    expect(describeTapError(nativeError('EPERM', 1, 'SIOCSIFMTU'), 'tap0').message).toContain("'ip link set tap0 mtu N'");
  });

  it('validates interface names before touching the system', () => {
    for (const bad of ['', 'a'.repeat(16), 'a/b', 'a b', 'a:b', '.', '..']) {
      expect(() => validateIfname(bad)).toThrow(/invalid interface name/);
    }
    expect(() => validateIfname('tap%d')).not.toThrow();
    expect(() => validateIfname('a'.repeat(15))).not.toThrow();
  });
});

describe('the addon loader', () => {
  it('says how to build the addon when it is missing', () => {
    let err: unknown;
    try {
      loadTapAddon('/nonexistent/tap.node');
    } catch (e) {
      err = e;
    }
    expect(isTlpwireError(err, 'ERR_TAP')).toBe(true);
    expect((err as Error).message).toBe('tap: native addon not built: run npm run build:native; needs python3, make and a C compiler');
    expect(tapAddonStatus('/nonexistent/tap.node')).toEqual({
      available: false,
      path: '/nonexistent/tap.node',
      reason: 'tap: native addon not built: run npm run build:native; needs python3, make and a C compiler',
    });
  });

  it('says so when the file is not a loadable addon', () => {
    expect(() => loadTapAddon(new URL(import.meta.url).pathname)).toThrow(/tap: native addon failed to load .*run npm run build:native/);
  });
});

describe('root complex side: --tap IFNAME --ip CIDR', () => {
  it('parses CIDRs and rejects typos with the reason', () => {
    expect(parseCidr('10.0.0.1/24')).toEqual({ address: '10.0.0.1', prefix: 24, family: 4 });
    expect(parseCidr('fd00::1/64')).toEqual({ address: 'fd00::1', prefix: 64, family: 6 });
    expect(() => parseCidr('10.0.0.1')).toThrow(/\/PREFIX is missing/);
    expect(() => parseCidr('10.0.0.300/24')).toThrow(/not an IP address/);
    expect(() => parseCidr('10.0.0.1/33')).toThrow(/0\.\.32/);
    expect(() => parseCidr('10.0.0.1/x')).toThrow(/not a prefix length/);
  });

  it('assigns the address and brings the interface up; an existing address is fine', async () => {
    const calls: string[] = [];
    const ip: IpCommand = (args) => {
      calls.push(args.join(' '));
      if (args[0] === 'addr' && calls.length > 2) return Promise.reject(new Error('tap: ip addr add: RTNETLINK answers: File exists'));
      return Promise.resolve('');
    };
    await assignTapAddress('tap0', '10.0.0.1/24', ip);
    await assignTapAddress('tap0', '10.0.0.1/24', ip);
    expect(calls).toEqual(['addr add 10.0.0.1/24 dev tap0', 'link set dev tap0 up', 'addr add 10.0.0.1/24 dev tap0', 'link set dev tap0 up']);
  });

  it('says CAP_NET_ADMIN is missing when ip refuses', async () => {
    const ip: IpCommand = () => Promise.reject(new Error('tap: ip addr add 10.0.0.1/24 dev tap0: RTNETLINK answers: Operation not permitted'));
    await expect(assignTapAddress('tap0', '10.0.0.1/24', ip)).rejects.toMatchObject({
      code: 'ERR_TAP',
      message: "tap: cannot assign 10.0.0.1/24 to tap0: need CAP_NET_ADMIN (or assign it beforehand with 'ip addr add 10.0.0.1/24 dev tap0')",
    });
  });

  it('openHostTap opens the TAP, assigns the address, and closes the TAP again if that fails', async () => {
    const addon = fakeAddon();
    const calls: string[] = [];
    const tap = await openHostTap({ ifname: 'rc0', ip: '10.1.0.1/24', addon, ipCommand: (a) => (calls.push(a.join(' ')), Promise.resolve('')) });
    expect(tap.ifname).toBe('rc0');
    expect(calls[0]).toBe('addr add 10.1.0.1/24 dev rc0');
    await expect(openHostTap({ ifname: 'rc1', ip: '10.1.0.1/24', addon, ipCommand: () => Promise.reject(new Error('boom')) })).rejects.toThrow('boom');
    expect(addon.last!.closed).toBe(true);
    await expect(openHostTap({ ifname: 'rc2', ip: 'nonsense', addon })).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });

  it('openRealBackend opens tap: specs and rejects an empty name', async () => {
    const addon = fakeAddon();
    const b = await openRealBackend('tap:ep0', { tapAddon: addon });
    expect(b).toBeInstanceOf(TapBackend);
    expect(b!.name).toBe('tap:ep0');
    await expect(openRealBackend('tap:')).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });
});
