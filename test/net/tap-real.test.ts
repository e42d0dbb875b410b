/**
 * The TAP addon and TapBackend on real Linux interfaces. Needs Linux, /dev/net/tun, the built
 * addon (npm run build:native) and the right to create interfaces (root / CAP_NET_ADMIN); the
 * suite title says which one is missing when it skips.
 *
 * The kernel side is driven without ping: the TAP gets an address, a UDP datagram to a neighbour
 * on its subnet makes the kernel ARP out of the TAP, and the test plays that neighbour — it
 * answers the ARP, receives the datagram, and pings the kernel with a hand-built ICMP echo.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { TapBackend, loadTapAddon, openHostTap, tapAddonStatus, type TapAddon } from '../../src/net/index.js';
import { arpFrame, etherType, icmpEchoFrame, ipv4, mac, macString, udpFrame } from './tap-frames.js';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the real-interface tests cannot run here, or undefined when they can. */
function whyNot(): string | undefined {
  if (process.platform !== 'linux') return 'TAP interfaces need Linux';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun missing';
  const status = tapAddonStatus();
  if (!status.available) return status.reason;
  if (!has('ip')) return "the 'ip' command (iproute2) is missing";
  try {
    const t = new (loadTapAddon().Tap)(`tlpwp${process.pid % 100000}`);
    t.close();
  } catch (e) {
    return `cannot create a TAP (needs root or CAP_NET_ADMIN): ${(e as Error).message}`;
  }
  return undefined;
}

const reason = whyNot();
const suffix = reason === undefined ? '' : ` — skipped: ${reason}`;
const pid = process.pid % 100000;
let seq = 0;
const ifname = (): string => `tlpw${pid}${String.fromCharCode(97 + seq++)}`;
/** A /24 of 198.18.0.0/15 (RFC 2544 benchmarking), picked per process so parallel runs do not clash. */
const net = 18 * 256 + (pid % 200) + 20;
const subnet = (host: number): string => `198.${net >> 8}.${net & 0xff}.${host}`;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) {
    try {
      await cleanups.pop()!();
    } catch {
      // best effort: an interface may already be gone
    }
  }
});

function stat(ifn: string, name: string): number {
  return Number(readFileSync(`/sys/class/net/${ifn}/statistics/${name}`, 'utf8'));
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function isArpRequestFor(f: Uint8Array, ip: Uint8Array): boolean {
  return etherType(f) === 0x0806 && f[21] === 1 && Buffer.from(f.subarray(38, 42)).equals(Buffer.from(ip));
}

const PEER_MAC = mac('02:74:6c:70:77:02');

describe.skipIf(reason !== undefined)(`TAP on a real interface${suffix}`, () => {
  it('exchanges frames with the kernel: ARP, UDP and an ICMP echo, both directions', async () => {
    const name = ifname();
    const tap = await openHostTap({ ifname: name, ip: `${subnet(1)}/24` });
    cleanups.push(() => tap.close());
    const frames: Uint8Array[] = [];
    tap.onFrame = (f) => frames.push(Uint8Array.from(f));
    const kernelMac = mac(readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim());
    expect(Number(readFileSync(`/sys/class/net/${name}/flags`, 'utf8')) & 1).toBe(1); // IFF_UP

    // 1. kernel → TAP: a datagram to the neighbour makes the kernel ask who has it
    const sock = createSocket('udp4');
    cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
    await new Promise<void>((r) => sock.bind(0, subnet(1), r));
    const got: Buffer[] = [];
    sock.on('message', (m) => got.push(m));
    sock.send(Buffer.from('hello from the kernel side'), 9999, subnet(2));
    await until(() => frames.some((f) => isArpRequestFor(f, ipv4(subnet(2)))), 'an ARP request on the TAP');
    const arp = frames.find((f) => isArpRequestFor(f, ipv4(subnet(2))))!;
    expect(macString(arp.subarray(6, 12))).toBe(macString(kernelMac));

    // 2. TAP → kernel: answer it; the kernel then sends the queued datagram out of the TAP
    const rxBefore = stat(name, 'rx_packets');
    tap.send(arpFrame(2, PEER_MAC, ipv4(subnet(2)), kernelMac, ipv4(subnet(1))));
    await until(() => frames.some((f) => etherType(f) === 0x0800 && f[23] === 17), 'the UDP datagram');
    const udp = frames.find((f) => etherType(f) === 0x0800 && f[23] === 17)!;
    expect(Buffer.from(udp.subarray(42)).toString()).toBe('hello from the kernel side');
    expect(macString(udp.subarray(0, 6))).toBe(macString(PEER_MAC));

    // 3. the neighbour pings the kernel; the kernel answers through the TAP. The request is a
    //    view into a larger buffer: the addon must write the view, not the buffer from its start.
    const echo = icmpEchoFrame(8, PEER_MAC, kernelMac, ipv4(subnet(2)), ipv4(subnet(1)), 0x7777, 3);
    const padded = new Uint8Array(echo.length + 20).fill(0xee);
    padded.set(echo, 7);
    tap.send(padded.subarray(7, 7 + echo.length));
    await until(() => frames.some((f) => etherType(f) === 0x0800 && f[23] === 1 && f[34] === 0), 'an ICMP echo reply');
    const reply = frames.find((f) => etherType(f) === 0x0800 && f[23] === 1 && f[34] === 0)!;
    expect((reply[38]! << 8) | reply[39]!).toBe(0x7777);

    // 4. and a UDP datagram from the neighbour reaches a socket on the host
    const port = sock.address().port;
    tap.send(udpFrame(PEER_MAC, kernelMac, ipv4(subnet(2)), ipv4(subnet(1)), 4242, port, Buffer.from('hello from the wire')));
    await until(() => got.length === 1, 'the datagram at the socket');
    expect(got[0]!.toString()).toBe('hello from the wire');
    expect(stat(name, 'rx_packets') - rxBefore).toBe(3);
    expect(tap.counters.get('frames_in')).toBe(3);
    expect(tap.counters.get('frames_out')).toBeGreaterThanOrEqual(3);
  });

  it('counts and drops runt and oversize frames from the device; the kernel never sees them', async () => {
    const name = ifname();
    const tap = TapBackend.open({ ifname: name, mtu: 1400 });
    cleanups.push(() => tap.close());
    expect(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim()).toBe('1400');
    const before = stat(name, 'rx_packets');
    tap.send(new Uint8Array(8));
    tap.send(new Uint8Array(1415));
    const ok = new Uint8Array(1414);
    ok.set(mac('ff:ff:ff:ff:ff:ff'), 0);
    ok.set(PEER_MAC, 6);
    ok[12] = 0x88;
    ok[13] = 0xb5; // local experimental EtherType: the stack drops it after counting
    tap.send(ok);
    expect(stat(name, 'rx_packets') - before).toBe(1);
    expect(tap.counters.snapshot()).toMatchObject({ runt: 1, oversize: 1, frames_in: 1 });
    // an administrator raises the MTU: the backend notices instead of dropping
    execFileSync('ip', ['link', 'set', 'dev', name, 'mtu', '2000']);
    tap.send(new Uint8Array(1600).fill(0xff, 0, 12));
    expect(tap.mtu).toBe(2000);
    expect(stat(name, 'rx_packets') - before).toBe(2);
  });

  it('sets carrier and admin state; a down interface drops (counted) instead of failing', async () => {
    const name = ifname();
    const tap = TapBackend.open({ ifname: name });
    cleanups.push(() => tap.close());
    const carrier = (): string => readFileSync(`/sys/class/net/${name}/carrier`, 'utf8').trim();
    tap.setCarrier(false);
    expect(carrier()).toBe('0');
    tap.setCarrier(true);
    expect(carrier()).toBe('1');
    tap.setUp(false);
    tap.send(new Uint8Array(60).fill(0xff, 0, 12));
    expect(tap.counters.get('dropped_link_down')).toBe(1);
    tap.setUp(true);
    tap.send(new Uint8Array(60).fill(0xff, 0, 12));
    expect(tap.counters.get('frames_in')).toBe(1);
  });

  it('holds kernel frames while paused and delivers them after resume', async () => {
    const name = ifname();
    const tap = await openHostTap({ ifname: name, ip: `${subnet(1)}/24` });
    cleanups.push(() => tap.close());
    const arps: number[] = [];
    tap.onFrame = (f) => {
      if (etherType(f) === 0x0806) arps.push(f[41]!);
    };
    tap.pause();
    const sock = createSocket('udp4');
    cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
    for (const host of [3, 4, 5]) sock.send(Buffer.from('x'), 9, subnet(host));
    await new Promise((r) => setTimeout(r, 200));
    expect(arps).toEqual([]);
    tap.resume();
    await until(() => [3, 4, 5].every((h) => arps.includes(h)), 'the ARP requests held while paused');
  });

  it('survives `ip link del` under it: counted, logged once, reported through onClosed', async () => {
    const name = ifname();
    const reasons: string[] = [];
    const tap = TapBackend.open({ ifname: name, onClosed: (r) => reasons.push(r) });
    cleanups.push(() => tap.close());
    await run('ip', ['link', 'del', name]);
    await until(() => reasons.length > 0, 'onClosed');
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(new RegExp(`interface ${name} is gone`));
    expect(tap.closed).toBe(true);
    tap.send(new Uint8Array(60));
    expect(tap.counters.snapshot()).toMatchObject({ gone: 1, read_errors: 1, dropped_closed: 1 });
    await tap.close();
  });

  it('the addon can also deliver one Buffer per frame (array mode)', async () => {
    const name = ifname();
    const addon: TapAddon = loadTapAddon();
    const t = new addon.Tap(name);
    cleanups.push(() => t.close());
    t.setUp(true);
    await run('ip', ['addr', 'add', `${subnet(1)}/24`, 'dev', name]);
    const frames: Buffer[] = [];
    t.setCallbacks((bufs: Buffer[]) => frames.push(...bufs), () => {}, null);
    t.startReading();
    const sock = createSocket('udp4');
    cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
    sock.send(Buffer.from('x'), 9, subnet(7));
    await until(() => frames.some((f) => isArpRequestFor(f, ipv4(subnet(7)))), 'an ARP request');
    expect(t.writeMany([arpFrame(2, PEER_MAC, ipv4(subnet(7)), PEER_MAC, ipv4(subnet(1)))])).toBe(1);
    expect(t.lastErrno()).toBe(0);
  });

  it('reports a name taken by another kind of interface, and a TAP already open elsewhere', async () => {
    const name = ifname();
    await run('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tun']);
    cleanups.push(() => run('ip', ['link', 'del', name]).then(() => {}));
    expect(() => TapBackend.open({ ifname: name })).toThrow(`tap: ${name} exists and is not a TAP`);
    const name2 = ifname();
    const first = TapBackend.open({ ifname: name2 });
    cleanups.push(() => first.close());
    expect(() => TapBackend.open({ ifname: name2 })).toThrow(`tap: ${name2} is already open in another process`);
  });

  const privTools = has('unshare') && has('setpriv') && has('mount') && has('mknod');
  const privTitle = privTools
    ? "a TAP made with 'ip tuntap add … user UID' opens without root; creating one does not"
    : "a TAP made with 'ip tuntap add … user UID' opens without root — skipped: needs unshare, setpriv, mount and mknod";
  it.skipIf(!privTools)(privTitle, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlpwire-tap-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    const name = ifname();
    const missing = ifname();
    await run('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap', 'user', '65534']);
    cleanups.push(() => run('ip', ['link', 'del', name]).then(() => {}));
    await run('ip', ['link', 'set', 'dev', name, 'up']);
    const script = join(dir, 'child.mts');
    writeFileSync(
      script,
      `import { TapBackend } from ${JSON.stringify(join(root, 'src/net/index.ts'))};
const out: Record<string, string> = { uid: String(process.getuid?.()) };
try { const t = TapBackend.open({ ifname: ${JSON.stringify(name)} }); out.opened = t.ifname; t.send(new Uint8Array(60).fill(0xff, 0, 12)); out.sent = String(t.counters.get('frames_in')); await t.close(); } catch (e) { out.opened = 'error: ' + (e as Error).message; }
try { TapBackend.open({ ifname: ${JSON.stringify(missing)} }); out.created = 'yes'; } catch (e) { out.created = (e as Error).message; }
console.log(JSON.stringify(out));
`,
    );
    // /dev/net/tun is 0600 on some hosts; give the child a 0666 node in a private mount namespace,
    // as distributions ship it, so the test checks the TAP ownership rule and nothing else.
    const node = join(dir, 'tun');
    execFileSync('mknod', [node, 'c', '10', '200']);
    chmodSync(node, 0o666);
    const { stdout } = await run(
      'unshare',
      ['-m', 'sh', '-c', `mount --bind ${node} /dev/net/tun && exec setpriv --reuid 65534 --regid 65534 --clear-groups "${process.execPath}" --import tsx ${script}`],
      { cwd: root, env: { ...process.env, HOME: dir, TSX_TSCONFIG_PATH: join(root, 'tsconfig.json') } },
    );
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, string>;
    expect(out).toEqual({
      uid: '65534',
      opened: name,
      sent: '1',
      created: `tap: need CAP_NET_ADMIN or a TAP created with 'ip tuntap add dev ${missing} mode tap user 65534'`,
    });
  });
});
