import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isTlpwireError } from '../../src/core/index.js';
import { UdpBackend, formatUdpSpec, openRealBackend, parseUdpSpec, withPcap } from '../../src/net/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { readPcap } from './pcap-reader.js';
import { icmpEchoFrame, ipv4, mac } from './tap-frames.js';

const A = mac('52:54:00:12:34:56'); // a QEMU-style guest MAC
const B = mac('02:00:00:00:00:0b');
const ping = icmpEchoFrame(8, A, B, ipv4('10.0.2.15'), ipv4('10.0.2.2'), 1, 1);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** A stand-in for QEMU's -netdev dgram on 127.0.0.1: a UDP socket that records what it gets. */
async function qemuPeer(): Promise<{ sock: Socket; port: number; got: Buffer[] }> {
  const sock = createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { sock, port: sock.address().port, got };
}

async function openBackend(spec: string, opts: Parameters<typeof UdpBackend.open>[1] = {}): Promise<UdpBackend> {
  const b = await UdpBackend.open(spec, opts);
  cleanups.push(() => b.close());
  return b;
}

function sendFrom(sock: Socket, data: Uint8Array, port: number): Promise<void> {
  return new Promise((resolve, reject) => sock.send(data, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('parseUdpSpec', () => {
  it('parses LOCALPORT:HOST:PORT, a local address, and bracketed IPv6', () => {
    expect(parseUdpSpec('udp:5555:127.0.0.1:5556')).toEqual({ localPort: 5555, host: '127.0.0.1', port: 5556 });
    expect(parseUdpSpec('udp:0:qemu-host:1234')).toEqual({ localPort: 0, host: 'qemu-host', port: 1234 });
    expect(parseUdpSpec('udp:10.0.0.1:5555:10.0.0.2:5556')).toEqual({ localAddress: '10.0.0.1', localPort: 5555, host: '10.0.0.2', port: 5556 });
    expect(parseUdpSpec('udp:5555:[::1]:5556')).toEqual({ localPort: 5555, host: '::1', port: 5556 });
    expect(parseUdpSpec('udp:[::1]:5555:[fe80::1]:5556')).toEqual({ localAddress: '::1', localPort: 5555, host: 'fe80::1', port: 5556 });
  });

  it('formats back to the same spelling', () => {
    for (const s of ['udp:5555:127.0.0.1:5556', 'udp:[::1]:1:[::2]:2', 'udp:10.0.0.1:7:h:8']) expect(formatUdpSpec(parseUdpSpec(s))).toBe(s);
  });

  it.each([
    ['tcp:1:h:2', "missing 'udp:' prefix"],
    ['udp:1:h', '2 fields instead of 3'],
    ['udp:5555:::1:5556', 'fields instead of 3'],
    ['udp:70000:h:1', "local port '70000'"],
    ['udp:x:h:1', "local port 'x'"],
    ['udp:1:h:0', "port '0' is not 1..65535"],
    ['udp:1::2', 'HOST is empty'],
    ['udp:1:[::1:2', 'unbalanced'],
    ['udp:1:[::1]x:2', 'unbalanced'],
    ['udp:nothost:1:h:2', "local address 'nothost'"],
  ])('rejects %s with a clear message', (spec, why) => {
    let err: unknown;
    try {
      parseUdpSpec(spec);
    } catch (e) {
      err = e;
    }
    expect(isTlpwireError(err, 'ERR_USAGE')).toBe(true);
    expect((err as Error).message).toContain(why);
    expect((err as Error).message).toContain('udp:LOCALPORT:HOST:PORT');
  });
});

describe('UdpBackend (QEMU -netdev dgram format)', () => {
  it('sends each frame as one datagram with nothing added, only to HOST:PORT', async () => {
    const peer = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`);
    expect(b.localPort).toBeGreaterThan(0);
    const big = new Uint8Array(1514).map((_, i) => i * 7);
    b.send(ping);
    b.send(big);
    await until(() => peer.got.length === 2, 'two datagrams');
    expect(new Uint8Array(peer.got[0]!)).toEqual(ping);
    expect(new Uint8Array(peer.got[1]!)).toEqual(big);
    expect(b.counters.snapshot()).toMatchObject({ frames_in: 2, bytes_in: ping.length + 1514 });
  });

  it('does not keep the caller’s buffer: it may be reused right after send', async () => {
    const peer = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`);
    const buf = Uint8Array.from(ping);
    b.send(buf);
    buf.fill(0xee);
    await until(() => peer.got.length === 1, 'one datagram');
    expect(new Uint8Array(peer.got[0]!)).toEqual(ping);
  });

  it('delivers each datagram from the peer as one frame', async () => {
    const peer = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`);
    const got: Uint8Array[] = [];
    b.onFrame = (f) => got.push(Uint8Array.from(f));
    await sendFrom(peer.sock, ping, b.localPort);
    await until(() => got.length === 1, 'a frame');
    expect(got[0]).toEqual(ping);
  });

  it('counts and drops garbage from the peer and a stranger, and keeps working', async () => {
    const peer = await qemuPeer();
    const stranger = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`, { mtu: 1500 });
    const got: Uint8Array[] = [];
    b.onFrame = (f) => got.push(Uint8Array.from(f));
    const tagged = new Uint8Array(1518);
    tagged[12] = 0x81; // 802.1Q: 4 bytes over MTU + 14 are allowed
    await sendFrom(peer.sock, new Uint8Array(0), b.localPort); // empty datagram
    await sendFrom(peer.sock, new Uint8Array(5), b.localPort); // runt
    await sendFrom(peer.sock, new Uint8Array(13), b.localPort); // runt
    await sendFrom(peer.sock, new Uint8Array(1515), b.localPort); // untagged, 1 byte too long
    await sendFrom(peer.sock, new Uint8Array(9000).fill(0xaa), b.localPort); // jumbo
    await sendFrom(stranger.sock, ping, b.localPort); // not the configured peer
    await sendFrom(peer.sock, tagged, b.localPort);
    await sendFrom(peer.sock, ping, b.localPort);
    await until(() => got.length === 2, 'the two good frames');
    expect(got).toEqual([tagged, ping]);
    expect(b.counters.snapshot()).toMatchObject({ runt: 3, oversize: 2, foreign: 1, frames_out: 2 });
  });

  it('counts and drops runt and oversize frames from the device instead of sending them', async () => {
    const peer = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`, { mtu: 1000 });
    b.send(new Uint8Array(10));
    b.send(new Uint8Array(1015));
    b.send(ping);
    await until(() => peer.got.length === 1, 'the good frame');
    await new Promise((r) => setTimeout(r, 20));
    expect(peer.got).toHaveLength(1);
    expect(b.counters.snapshot()).toMatchObject({ runt: 1, oversize: 1, frames_in: 1 });
  });

  it('holds frames while paused (bounded, counted beyond) and delivers them in order on resume', async () => {
    const peer = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`, { maxQueued: 3 });
    const got: number[] = [];
    b.onFrame = (f) => got.push(f[14]!);
    b.pause();
    for (let i = 0; i < 5; i++) {
      const f = new Uint8Array(60);
      f[14] = i;
      await sendFrom(peer.sock, f, b.localPort);
    }
    await until(() => b.counters.get('dropped_paused') === 2, 'two drops');
    expect(got).toEqual([]);
    b.resume();
    expect(got).toEqual([0, 1, 2]);
  });

  it('stops delivering when the device pauses inside onFrame, and resumes where it stopped', async () => {
    const peer = await qemuPeer();
    const b = await openBackend(`udp:0:127.0.0.1:${peer.port}`);
    const got: number[] = [];
    b.onFrame = (f) => {
      got.push(f[14]!);
      if (got.length === 1) b.pause();
    };
    for (let i = 0; i < 3; i++) {
      const f = new Uint8Array(60);
      f[14] = i;
      await sendFrom(peer.sock, f, b.localPort);
    }
    await until(() => b.counters.get('pauses') === 1, 'a pause');
    await new Promise((r) => setTimeout(r, 30));
    expect(got).toEqual([0]);
    b.resume();
    expect(got).toEqual([0, 1, 2]);
  });

  it('drops frames sent after close', async () => {
    const peer = await qemuPeer();
    const b = await UdpBackend.open(`udp:0:127.0.0.1:${peer.port}`);
    await b.close();
    b.send(ping);
    expect(b.counters.get('dropped_closed')).toBe(1);
  });

  it('reports a local port in use as ERR_ADDRESS_IN_USE', async () => {
    const peer = await qemuPeer();
    await expect(UdpBackend.open(`udp:${peer.port}:127.0.0.1:9`)).rejects.toMatchObject({
      code: 'ERR_ADDRESS_IN_USE',
      message: expect.stringContaining(`local port 127.0.0.1:${peer.port} is in use`),
    });
  });

  it('reports a host that does not resolve as ERR_NET', async () => {
    await expect(UdpBackend.open('udp:0:no-such-host.invalid:9')).rejects.toMatchObject({
      code: 'ERR_NET',
      message: expect.stringContaining("cannot resolve 'no-such-host.invalid'"),
    });
  });
});

describe('openRealBackend and withPcap', () => {
  it('opens udp: specs, leaves other schemes to the caller, and captures through --pcap', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlpwire-udp-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    expect(await openRealBackend('loopback')).toBeUndefined();
    const peer = await qemuPeer();
    const inner = await openRealBackend(`udp:0:127.0.0.1:${peer.port}`);
    expect(inner).toBeInstanceOf(UdpBackend);
    const clock = new VirtualClock();
    const b = await withPcap(inner!, join(dir, 'udp.pcap'), { clock, epochOffsetNs: 1_000_000_000n });
    const got: Uint8Array[] = [];
    b.onFrame = (f) => got.push(Uint8Array.from(f));
    b.send(ping);
    await until(() => peer.got.length === 1, 'the sent frame');
    await sendFrom(peer.sock, peer.got[0]!, (inner as UdpBackend).localPort);
    await until(() => got.length === 1, 'the echoed frame');
    await b.close();
    const f = readPcap(new Uint8Array(readFileSync(join(dir, 'udp.pcap'))));
    expect(f.records.map((r) => r.data)).toEqual([ping, ping]);
    expect(f.records[0]!.tsSec).toBe(1);
  });
});
