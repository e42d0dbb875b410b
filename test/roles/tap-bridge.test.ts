/**
 * TapBridge between a scripted TAP and a scripted NetDevice: both directions, backpressure (a
 * full TX ring pauses the TAP, onWritable resumes it, nothing lost or reordered), carrier
 * following the virtio link, robustness (runts, oversize, a dead ring, a throwing send, a TAP
 * that disappears), and the rc's openRcTap with a scripted addon and `ip`. The real kernel path
 * is exercised by test/integration/netns.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Counters, isTlpwireError, type LogFn, type Logger } from '../../src/core/index.js';
import type { CaptureDirection, FrameCapture, NativeArrayCallback, NativeSlabCallback, NativeTap, NativeTapError, NetDevice, TapAddon } from '../../src/net/index.js';
import { RealClock, TapBridge, checkRcTapFlags, formatMac, openRcTap, type BridgeTap, type HostFunctionContext } from '../../src/roles/index.js';
import { readPcap } from '../net/pcap-reader.js';

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

/** An Ethernet frame of `len` bytes whose bytes 14..17 carry `seq` (big-endian), IPv4 type. */
function frame(len: number, seq = 0): Uint8Array {
  const f = new Uint8Array(len);
  f[12] = 0x08;
  if (len >= 18) new DataView(f.buffer).setUint32(14, seq);
  return f;
}
const seqOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(14);

/** A TAP that behaves as TapBackend does toward its listener: pause holds a backlog, resume drains it in place. */
class FakeTap implements BridgeTap {
  readonly name = 'tap:tap9';
  readonly ifname = 'tap9';
  readonly counters = new Counters();
  onFrame: (frame: Uint8Array) => void = () => {};
  onClosed: (reason: string) => void = () => {};
  mtu = 1500;
  closed = false;
  paused = false;
  carrier: boolean[] = [];
  sent: Uint8Array[] = [];
  mtuError: Error | undefined;
  private readonly backlog: Uint8Array[] = [];

  send(frame: Uint8Array): void {
    if (this.closed) throw new Error('send on a closed TAP');
    this.sent.push(Uint8Array.from(frame));
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    while (!this.paused && this.backlog.length > 0) this.onFrame(this.backlog.shift()!);
  }
  setCarrier(up: boolean): void {
    if (this.closed) throw new Error('carrier on a closed TAP');
    this.carrier.push(up);
  }
  setMtu(mtu: number): void {
    if (this.mtuError !== undefined) throw this.mtuError;
    this.mtu = mtu;
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  /** The kernel hands frames to the TAP; delivered now unless paused (then in order, later). */
  arrive(...frames: Uint8Array[]): void {
    for (const f of frames) {
      if (this.paused || this.backlog.length > 0) this.backlog.push(f);
      else this.onFrame(f);
    }
  }
  get held(): number {
    return this.backlog.length;
  }
  /** `ip link del`: the backend closes itself and reports once. */
  vanish(): void {
    this.closed = true;
    this.onClosed('interface tap9 is gone (poll: EBADF)');
  }
}

/** A NetDevice with a TX ring of `slots`; `complete(n)` frees slots and owes onWritable as the driver does. */
class FakeNet implements NetDevice {
  mac = Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56);
  mtu = 1500;
  linkUp = true;
  broken: string | undefined;
  throwOnSend = false;
  onFrame: (frame: Uint8Array) => void = () => {};
  onWritable: () => void = () => {};
  onLinkChange: (up: boolean) => void = () => {};
  inFlight: Uint8Array[] = [];
  delivered: Uint8Array[] = [];
  refused = 0;
  private stopped = false;

  constructor(public slots = 256) {}

  send(frame: Uint8Array): boolean {
    if (this.throwOnSend) throw new Error('send() before start()');
    if (this.broken !== undefined || this.inFlight.length >= this.slots) {
      this.refused++;
      this.stopped = true;
      return false;
    }
    this.inFlight.push(Uint8Array.from(frame));
    return true;
  }
  complete(n = this.inFlight.length): void {
    this.delivered.push(...this.inFlight.splice(0, n));
    if (this.stopped && this.inFlight.length < this.slots) {
      this.stopped = false;
      this.onWritable();
    }
  }
  setLink(up: boolean): void {
    this.linkUp = up;
    this.onLinkChange(up);
  }
}

class RecordingCapture implements FrameCapture {
  records: { dir: CaptureDirection; len: number }[] = [];
  capture(frame: Uint8Array, direction: CaptureDirection): void {
    this.records.push({ dir: direction, len: frame.length });
  }
}

describe('TapBridge', () => {
  it('carries frames both ways and captures each one that crosses', () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    const capture = new RecordingCapture();
    const bridge = new TapBridge({ tap, capture });
    expect(bridge.attach(net, '01:00.0')).toBe(true);
    tap.arrive(frame(60, 1), frame(1514, 2));
    net.onFrame(frame(98, 3));
    expect(net.inFlight.map(seqOf)).toEqual([1, 2]);
    expect(tap.sent.map(seqOf)).toEqual([3]);
    expect(capture.records).toEqual([
      { dir: 'tx', len: 60 },
      { dir: 'tx', len: 1514 },
      { dir: 'rx', len: 98 },
    ]);
    expect(bridge.counters.snapshot()).toMatchObject({ to_card_frames: 2, to_card_bytes: 1574, to_tap_frames: 1, to_tap_bytes: 98, attaches: 1 });
  });

  it('pauses the TAP when the TX ring is full and resumes on onWritable, losing and reordering nothing', () => {
    const tap = new FakeTap();
    const net = new FakeNet(2);
    const bridge = new TapBridge({ tap });
    bridge.attach(net, '01:00.0');
    tap.arrive(...[1, 2, 3, 4, 5].map((s) => frame(100, s)));
    // two fit, the third is held by the bridge, the rest wait in the TAP (the kernel's queue)
    expect(net.inFlight.map(seqOf)).toEqual([1, 2]);
    expect(tap.paused).toBe(true);
    expect(tap.held).toBe(2);
    net.complete();
    // onWritable: the held frame goes first, then the backlog until the ring is full again
    expect(net.inFlight.map(seqOf)).toEqual([3, 4]);
    expect(tap.paused).toBe(true);
    net.complete();
    expect(net.inFlight.map(seqOf)).toEqual([5]);
    expect(tap.paused).toBe(false);
    net.complete();
    expect(net.delivered.map(seqOf)).toEqual([1, 2, 3, 4, 5]);
    expect(bridge.counters.snapshot()).toMatchObject({ to_card_frames: 5, pauses: 2, resumes: 2 });
    expect(bridge.counters.get('dropped_overrun')).toBe(0);
  });

  it('under any interleaving of arrivals and completions, every frame reaches the card once, in order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.oneof(fc.record({ arrive: fc.integer({ min: 1, max: 12 }) }), fc.record({ complete: fc.integer({ min: 0, max: 8 }) })), { maxLength: 40 }),
        (slots, ops) => {
          const tap = new FakeTap();
          const net = new FakeNet(slots);
          const bridge = new TapBridge({ tap });
          bridge.attach(net, '01:00.0');
          let next = 0;
          for (const op of ops) {
            if ('arrive' in op) tap.arrive(...Array.from({ length: op.arrive }, () => frame(64, next++)));
            else net.complete(op.complete);
            // paused exactly while the ring is full and something waits
            expect(tap.paused).toBe(tap.held > 0 || bridge.counters.get('pauses') > bridge.counters.get('resumes'));
          }
          for (let i = 0; i < 1000 && (net.inFlight.length > 0 || tap.held > 0 || tap.paused); i++) net.complete();
          expect(net.delivered.map(seqOf)).toEqual(Array.from({ length: next }, (_, i) => i));
          expect(tap.paused).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('turns the carrier off until a card is attached, then follows the virtio link status', () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    const log = recordingLogger();
    const bridge = new TapBridge({ tap, logger: log });
    expect(tap.carrier).toEqual([false]);
    net.linkUp = false;
    bridge.attach(net, '01:00.0');
    expect(tap.carrier).toEqual([false, false]);
    net.setLink(true);
    net.setLink(false);
    net.setLink(true);
    expect(tap.carrier).toEqual([false, false, true, false, true]);
    expect(bridge.counters.snapshot()).toMatchObject({ link_up: 2, link_down: 1 });
    expect(bridge.detach(net, 'link down')).toBe(true);
    expect(tap.carrier.at(-1)).toBe(false);
    expect(bridge.detach(net, 'again')).toBe(false);
    // a detached card's callbacks go nowhere
    net.setLink(true);
    expect(tap.carrier.at(-1)).toBe(false);
  });

  it('gives the TAP the card MTU on attach, and keeps going when it may not', () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    net.mtu = 9000;
    new TapBridge({ tap }).attach(net, '01:00.0');
    expect(tap.mtu).toBe(9000);

    const tap2 = new FakeTap();
    tap2.mtuError = new Error('need CAP_NET_ADMIN');
    const log = recordingLogger();
    const b2 = new TapBridge({ tap: tap2, logger: log });
    expect(b2.attach(net, '01:00.0')).toBe(true);
    expect(tap2.mtu).toBe(1500);
    expect(log.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      "tap bridge: cannot give tap9 the card's MTU 9000 (need CAP_NET_ADMIN); keeping 1500",
    ]);
  });

  it('counts and drops runts and frames over the card MTU from the TAP, logging each kind once', () => {
    const tap = new FakeTap();
    tap.mtu = 9000; // an administrator raised the TAP's MTU; the card's is still 1500
    const net = new FakeNet();
    const log = recordingLogger();
    const bridge = new TapBridge({ tap, logger: log, syncMtu: false });
    bridge.attach(net, '01:00.0');
    tap.arrive(frame(10), frame(1515), frame(60, 7), frame(0), frame(4042), frame(1514, 8));
    expect(net.inFlight.map(seqOf)).toEqual([7, 8]);
    expect(bridge.counters.snapshot()).toMatchObject({ runt: 2, oversize: 2, to_card_frames: 2 });
    expect(log.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      'tap bridge: dropping runt frames from tap9 (10 bytes, card MTU 1500)',
      'tap bridge: dropping oversize frames from tap9 (1515 bytes, card MTU 1500)',
    ]);
  });

  it('a VLAN-tagged frame of MTU + 18 bytes passes, as Linux accepts it', () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    new TapBridge({ tap }).attach(net, '01:00.0');
    const tagged = frame(1518);
    tagged[12] = 0x81;
    tagged[13] = 0x00;
    tap.arrive(tagged);
    expect(net.inFlight).toHaveLength(1);
  });

  it('survives the TAP disappearing: logged once, frames from the card counted, the card stays attached', () => {
    const tap = new FakeTap();
    const net = new FakeNet(1);
    const log = recordingLogger();
    const bridge = new TapBridge({ tap, logger: log });
    bridge.attach(net, '01:00.0');
    tap.arrive(frame(60, 1), frame(60, 2)); // the second is held: ring full
    expect(tap.paused).toBe(true);
    tap.vanish();
    expect(bridge.tapGoneReason).toBe('interface tap9 is gone (poll: EBADF)');
    // the card keeps receiving (the PCIe link is fine); nothing reaches the closed TAP
    for (let i = 0; i < 5; i++) net.onFrame(frame(98, i));
    net.setLink(false);
    net.complete(); // onWritable after the TAP is gone: nothing to resume, nothing thrown
    expect(tap.sent).toHaveLength(0);
    expect(bridge.attached).toBe('01:00.0');
    expect(bridge.counters.snapshot()).toMatchObject({ tap_gone: 1, dropped_tap_gone: 5 });
    expect(log.lines.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.msg)).toEqual([
      'tap9 is gone: frames from the card are dropped from now on; the PCIe link and the card stay up',
    ]);
    // a second report changes nothing
    tap.onClosed('again');
    expect(bridge.counters.get('tap_gone')).toBe(1);
    bridge.detach(net);
  });

  it('drops instead of waiting when the card is broken (no onWritable will ever come)', () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    const bridge = new TapBridge({ tap });
    bridge.attach(net, '01:00.0');
    net.broken = 'virtio-net driver: used ring index jumped';
    tap.arrive(frame(60), frame(60));
    expect(tap.paused).toBe(false);
    expect(bridge.counters.get('dropped_broken')).toBe(2);
  });

  it('a send that throws is counted, not propagated', () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    const bridge = new TapBridge({ tap });
    bridge.attach(net, '01:00.0');
    net.throwOnSend = true;
    expect(() => tap.arrive(frame(60))).not.toThrow();
    expect(bridge.counters.get('send_errors')).toBe(1);
  });

  it('one card at a time; frames without a card are dropped; a returning card is attached again', () => {
    const tap = new FakeTap();
    const a = new FakeNet(1);
    const b = new FakeNet();
    const bridge = new TapBridge({ tap });
    tap.arrive(frame(60));
    expect(bridge.counters.get('dropped_no_card')).toBe(1);
    expect(bridge.attach(a, '01:00.0')).toBe(true);
    expect(bridge.attach(b, '02:00.0')).toBe(false);
    expect(bridge.counters.get('attach_refused')).toBe(1);
    tap.arrive(frame(60, 1), frame(60, 2), frame(60, 3));
    expect(tap.paused).toBe(true);
    // a's link goes down: the held frame is dropped, the TAP resumes and drains its queue into nothing
    bridge.detach(a, 'link down');
    expect(tap.paused).toBe(false);
    expect(tap.held).toBe(0);
    expect(bridge.counters.get('dropped_no_card')).toBe(1 + 1 + 1);
    expect(bridge.attach(b, '02:00.0')).toBe(true);
    tap.arrive(frame(60, 9));
    expect(b.inFlight.map(seqOf)).toEqual([9]);
    // detaching a card that is not attached changes nothing
    bridge.detach(a);
    expect(bridge.attached).toBe('02:00.0');
  });

  it('close detaches and closes the TAP', async () => {
    const tap = new FakeTap();
    const net = new FakeNet();
    const bridge = new TapBridge({ tap });
    bridge.attach(net, '01:00.0');
    await bridge.close();
    expect(tap.closed).toBe(true);
    expect(bridge.attached).toBeUndefined();
  });
});

describe('rc --tap flags', () => {
  const usage = (f: Parameters<typeof checkRcTapFlags>[0]): string => {
    try {
      checkRcTapFlags(f);
    } catch (e) {
      expect(isTlpwireError(e, 'ERR_USAGE')).toBe(true);
      return (e as Error).message;
    }
    return 'ok';
  };
  it('accepts --tap with or without --ip and --pcap', () => {
    expect(usage({ tap: 'tap0' })).toBe('ok');
    expect(usage({ tap: 'tap0', ip: '10.99.0.1/24', pcap: 'rc.pcap' })).toBe('ok');
    expect(usage({})).toBe('ok');
  });
  it('explains what is wrong, one line each', () => {
    expect(usage({ ip: '10.99.0.1/24' })).toBe('--ip needs --tap IFNAME (the address goes on that TAP)');
    expect(usage({ pcap: 'x.pcap' })).toMatch(/^--pcap needs --tap IFNAME/);
    expect(usage({ tap: 'tap0', once: true })).toMatch(/^--once with --tap would close the link/);
    expect(usage({ tap: 'a/b' })).toMatch(/invalid interface name 'a\/b'/);
    expect(usage({ tap: 'tap0', ip: '10.99.0.1' })).toMatch(/the \/PREFIX is missing/);
  });
});

// ---------------------------------------------------------------------- openRcTap

/** The addon's Tap for openRcTap: enough of NativeTap to open, configure, write and close. */
class ScriptedNativeTap implements NativeTap {
  carrier: boolean[] = [];
  written: Uint8Array[] = [];
  up = false;
  mtu = 1500;
  closed = false;
  constructor(private readonly ifname: string) {}
  setCallbacks(_onFrames: NativeSlabCallback | NativeArrayCallback, _onError: (err: NativeTapError) => void, _lengths: Uint32Array | null): void {}
  startReading(): void {}
  stopReading(): void {}
  ref(): void {}
  write(frame: Uint8Array): number {
    this.written.push(Uint8Array.from(frame));
    return 0;
  }
  writeMany(frames: readonly Uint8Array[]): number {
    for (const f of frames) this.write(f);
    return frames.length;
  }
  lastErrno(): number {
    return 0;
  }
  setUp(up: boolean): void {
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
  }
  name(): string {
    return this.ifname;
  }
  fd(): number {
    return 3;
  }
}

function scriptedAddon(): TapAddon & { last: ScriptedNativeTap | undefined } {
  const addon = {
    version: 1,
    last: undefined as ScriptedNativeTap | undefined,
    Tap: function (name: string) {
      addon.last = new ScriptedNativeTap(name);
      return addon.last;
    } as unknown as TapAddon['Tap'],
  };
  return addon;
}

/** The few fields of a HostFunctionContext that the attach hook reads. */
function fakeContext(whenDown: Promise<string>): HostFunctionContext {
  const partial = { fn: { bdf: (1 << 8) | 0 }, rootPort: { stack: { link: { whenDown: () => whenDown } } } };
  return partial as unknown as HostFunctionContext;
}

describe('openRcTap (scripted addon and ip)', () => {
  it('opens the TAP, assigns the address, bridges the card with its MAC, captures, and unbridges when the link drops', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlpw-bridge-'));
    try {
      const addon = scriptedAddon();
      const ipCalls: string[] = [];
      const lines: string[] = [];
      const rcTap = await openRcTap({
        ifname: 'tap5',
        ip: '10.99.0.1/24',
        pcap: join(dir, 'rc.pcap'),
        clock: new RealClock(),
        wallNowMs: 1_700_000_000_000,
        addon,
        ipCommand: (args) => {
          ipCalls.push(args.join(' '));
          return Promise.resolve('');
        },
        out: (l) => lines.push(l),
      });
      const native = addon.last!;
      expect(native.up).toBe(true);
      expect(native.carrier.at(-1)).toBe(false);
      expect(ipCalls).toEqual(['addr add 10.99.0.1/24 dev tap5', 'link set dev tap5 up']);

      const net = new FakeNet();
      let drop: (why: string) => void = () => {};
      const down = new Promise<string>((r) => (drop = r));
      await rcTap.attach(net, fakeContext(down));
      expect(ipCalls.at(-1)).toBe(`link set dev tap5 address ${formatMac(net.mac)}`);
      expect(formatMac(net.mac)).toBe('52:54:00:12:34:56');
      expect(native.carrier.at(-1)).toBe(true);
      expect(lines.at(-1)).toBe('virtio-net 01:00.0: bridged to tap5 (mac 52:54:00:12:34:56, mtu 1500, carrier on)');

      // a second card is told why it is not bridged
      await rcTap.attach(new FakeNet(), fakeContext(new Promise<string>(() => {})));
      expect(lines.at(-1)).toBe('virtio-net 01:00.0: not bridged: tap5 already carries 01:00.0');

      net.onFrame(frame(98, 1));
      expect(native.written.map(seqOf)).toEqual([1]);
      drop('endpoint went away');
      await down;
      await Promise.resolve();
      expect(rcTap.bridge.attached).toBeUndefined();
      expect(native.carrier.at(-1)).toBe(false);
      expect(lines.at(-1)).toBe('virtio-net 01:00.0: unbridged from tap5 (endpoint went away); carrier off');

      expect(rcTap.summary()).toMatch(/^tap tap5: 0 frames to the card \(0 bytes\), 1 from it \(98 bytes\); dropped 0 from the TAP, 0 toward it; 0 pauses; 1 frames captured$/);
      await rcTap.close();
      expect(native.closed).toBe(true);
      const pcap = readPcap(readFileSync(join(dir, 'rc.pcap')));
      expect(pcap.linkType).toBe(1);
      expect(pcap.records.map((r) => r.origLen)).toEqual([98]);
      expect(pcap.records[0]!.tsSec).toBeGreaterThanOrEqual(1_700_000_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the TAP when the MAC cannot be set, and closes it when the address cannot be assigned', async () => {
    const addon = scriptedAddon();
    const rcTap = await openRcTap({
      ifname: 'tap6',
      clock: new RealClock(),
      addon,
      ipCommand: () => Promise.reject(new Error('RTNETLINK answers: Operation not permitted')),
    });
    const net = new FakeNet();
    await rcTap.attach(net, fakeContext(new Promise<string>(() => {})));
    expect(rcTap.bridge.attached).toBe('01:00.0');
    await rcTap.close();

    const addon2 = scriptedAddon();
    await expect(
      openRcTap({
        ifname: 'tap7',
        ip: '10.99.0.1/24',
        clock: new RealClock(),
        addon: addon2,
        ipCommand: () => Promise.reject(new Error('RTNETLINK answers: Operation not permitted')),
      }),
    ).rejects.toThrow(/need CAP_NET_ADMIN/);
    expect(addon2.last!.closed).toBe(true);
  });
});
