/**
 * `udp:LOCALPORT:HOST:PORT` — one Ethernet frame per UDP datagram, nothing else in it: no length
 * prefix, no virtio-net header. That is exactly what QEMU's `-netdev dgram` sends and expects
 * (net/dgram.c: recv() into a buffer and hand the bytes to the NIC as one packet; send() each
 * packet as one datagram), so a tlpwire endpoint can face a QEMU guest, another tlpwire, or any
 * program speaking that format:
 *
 *   qemu … -netdev dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=PORT,
 *                        remote.type=inet,remote.host=127.0.0.1,remote.port=LOCALPORT
 *
 * Frames go only to the configured HOST:PORT. Datagrams from anyone else are counted (`foreign`)
 * and dropped; runts and oversize datagrams are counted and dropped, never delivered.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Counters, FixedQueue, TlpwireError, errorMessage, silentLogger, type Logger } from '../core/index.js';
import type { NetBackend } from './backend.js';
import { checkFrameSize } from './frame-size.js';

export interface UdpSpec {
  /** Local address to bind; default: loopback when HOST is loopback, else all addresses. */
  localAddress?: string;
  /** Local port (0 picks a free one: fine for tests, useless for a peer that needs to know it). */
  localPort: number;
  host: string;
  port: number;
}

const USAGE = 'expected udp:LOCALPORT:HOST:PORT or udp:LOCALADDR:LOCALPORT:HOST:PORT (IPv6 in brackets), e.g. udp:5555:127.0.0.1:5556';

/** Parses `udp:LOCALPORT:HOST:PORT` (and `udp:LOCALADDR:LOCALPORT:HOST:PORT`); throws ERR_USAGE. */
export function parseUdpSpec(spec: string): UdpSpec {
  const bad = (why: string): TlpwireError => new TlpwireError('ERR_USAGE', `udp: ${why} in '${spec}': ${USAGE}`);
  if (!spec.startsWith('udp:')) throw bad("missing 'udp:' prefix");
  const parts = splitHostParts(spec.slice(4));
  if (parts === undefined) throw bad('unbalanced [ ] around an IPv6 address');
  let localAddress: string | undefined;
  let rest = parts;
  if (parts.length === 4) {
    localAddress = parts[0]!;
    if (isIP(localAddress) === 0) throw bad(`local address '${localAddress}' is not an IP address`);
    rest = parts.slice(1);
  } else if (parts.length !== 3) {
    throw bad(`${parts.length} fields instead of 3`);
  }
  const [lp, host, p] = rest as [string, string, string];
  const localPort = parsePort(lp, true);
  if (localPort === undefined) throw bad(`local port '${lp}' is not 0..65535`);
  if (host.length === 0) throw bad('HOST is empty');
  const port = parsePort(p, false);
  if (port === undefined) throw bad(`port '${p}' is not 1..65535`);
  return localAddress === undefined ? { localPort, host, port } : { localAddress, localPort, host, port };
}

export function formatUdpSpec(s: UdpSpec): string {
  const h = (a: string): string => (a.includes(':') ? `[${a}]` : a);
  return `udp:${s.localAddress !== undefined ? `${h(s.localAddress)}:` : ''}${s.localPort}:${h(s.host)}:${s.port}`;
}

export interface UdpBackendOptions {
  /** Frames larger than MTU + 14 (+4 when VLAN-tagged) are oversize. Default 1500. */
  mtu?: number;
  logger?: Logger;
  /** Datagrams held while the device has paused delivery; more are dropped. Default 256. */
  maxQueued?: number;
  /** Datagrams waiting in the socket's send queue beyond which frames are dropped. Default 1024. */
  maxSendQueue?: number;
  /** SO_RCVBUF to ask for (bursts arrive faster than a paused device drains). Default 4 MiB. */
  receiveBufferBytes?: number;
}

/**
 * Counters: frames_in/bytes_in (sent to the peer), frames_out/bytes_out (delivered to the
 * device), runt, oversize, foreign (from another sender), dropped_paused, dropped_busy,
 * dropped_closed, send_errors, socket_errors.
 */
export class UdpBackend implements NetBackend {
  readonly name: string;
  readonly counters = new Counters();
  onFrame: (frame: Uint8Array) => void = () => {};
  private readonly log: Logger;
  private readonly queue: FixedQueue<Buffer>;
  private readonly logged = new Set<string>();
  private readonly maxSendQueue: number;
  private paused = false;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    readonly spec: UdpSpec,
    /** HOST resolved once at open: every datagram goes there, and only its datagrams come in. */
    readonly remoteAddress: string,
    readonly mtu: number,
    opts: UdpBackendOptions,
  ) {
    this.name = formatUdpSpec(spec);
    this.log = (opts.logger ?? silentLogger).child({ backend: this.name });
    const max = opts.maxQueued ?? 256;
    this.queue = new FixedQueue<Buffer>(Math.min(max, 64), max);
    this.maxSendQueue = opts.maxSendQueue ?? 1024;
    socket.on('message', this.onMessage);
    socket.on('error', (err) => {
      // Errors of unconnected UDP sockets are per datagram (e.g. EMSGSIZE, ENETUNREACH):
      // count them and keep the backend up.
      this.counters.add('socket_errors');
      this.logOnce(`err-${(err as NodeJS.ErrnoException).code ?? ''}`, `socket error: ${err.message}`);
    });
  }

  /** Resolves HOST, binds LOCALPORT and starts receiving. Throws ERR_USAGE / ERR_ADDRESS_IN_USE / ERR_NET. */
  static async open(spec: string | UdpSpec, opts: UdpBackendOptions = {}): Promise<UdpBackend> {
    const s = typeof spec === 'string' ? parseUdpSpec(spec) : spec;
    const mtu = opts.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535 - 14) {
      throw new TlpwireError('ERR_USAGE', `udp: MTU ${mtu} is outside 68..65521`);
    }
    let remote: { address: string; family: number };
    try {
      remote = await lookup(s.host);
    } catch (e) {
      throw new TlpwireError('ERR_NET', `udp: cannot resolve '${s.host}': ${errorMessage(e)}`, { cause: e });
    }
    const family = remote.family === 6 ? 6 : 4;
    const localAddress = s.localAddress ?? (isLoopback(remote.address) ? remote.address : family === 6 ? '::' : '0.0.0.0');
    if (isIP(localAddress) !== family) {
      throw new TlpwireError('ERR_USAGE', `udp: local address ${localAddress} and ${s.host} (${remote.address}) are not the same IP version`);
    }
    const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        socket.close();
        reject(
          err.code === 'EADDRINUSE'
            ? new TlpwireError('ERR_ADDRESS_IN_USE', `udp: local port ${localAddress}:${s.localPort} is in use`, { cause: err })
            : new TlpwireError('ERR_NET', `udp: cannot bind ${localAddress}:${s.localPort}: ${err.message}`, { cause: err }),
        );
      };
      socket.once('error', onError);
      socket.bind(s.localPort, localAddress, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    try {
      socket.setRecvBufferSize(opts.receiveBufferBytes ?? 4 * 1024 * 1024);
    } catch {
      // Capped by net.core.rmem_max without privileges; the default still works.
    }
    const bound = socket.address();
    return new UdpBackend(socket, { ...s, localAddress, localPort: bound.port }, remote.address, mtu, opts);
  }

  /** The bound local port (useful with LOCALPORT 0). */
  get localPort(): number {
    return this.spec.localPort;
  }

  send(frame: Uint8Array): void {
    if (this.closed) {
      this.counters.add('dropped_closed');
      return;
    }
    const verdict = checkFrameSize(frame, this.mtu);
    if (verdict !== 'ok') {
      this.counters.add(verdict);
      this.logOnce(`${verdict}-tx`, `dropping ${verdict} frames from the device (${frame.length} bytes, MTU ${this.mtu})`);
      return;
    }
    // UDP has no backpressure of its own: bound what libuv may queue and drop beyond it.
    if (this.socket.getSendQueueCount() >= this.maxSendQueue) {
      this.counters.add('dropped_busy');
      return;
    }
    // The datagram may leave after we return, and the device may reuse `frame`: send a copy.
    this.socket.send(Buffer.from(frame), this.spec.port, this.remoteAddress, this.onSent);
    this.counters.add('frames_in');
    this.counters.add('bytes_in', frame.length);
  }

  pause(): void {
    if (!this.paused) this.counters.add('pauses');
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (!this.paused && !this.closed) {
      const f = this.queue.shift();
      if (f === undefined) break;
      this.deliver(f);
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.counters.add('dropped_closed', this.queue.length);
    this.queue.clear();
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private readonly onSent = (err: Error | null): void => {
    if (err === null) return;
    this.counters.add('send_errors');
    this.logOnce(`send-${(err as NodeJS.ErrnoException).code ?? ''}`, `send to ${this.remoteAddress}:${this.spec.port} failed: ${err.message}`);
  };

  private readonly onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (this.closed) return;
    if (rinfo.port !== this.spec.port || rinfo.address !== this.remoteAddress) {
      this.counters.add('foreign');
      this.logOnce('foreign', `ignoring datagrams from ${rinfo.address}:${rinfo.port} (the peer is ${this.remoteAddress}:${this.spec.port})`);
      return;
    }
    const verdict = checkFrameSize(msg, this.mtu);
    if (verdict !== 'ok') {
      this.counters.add(verdict);
      this.logOnce(`${verdict}-rx`, `dropping ${verdict} datagrams from the peer (${msg.length} bytes, MTU ${this.mtu})`);
      return;
    }
    if (this.paused || this.queue.length > 0) {
      if (!this.queue.push(msg)) this.counters.add('dropped_paused');
      return;
    }
    this.deliver(msg);
  };

  private deliver(frame: Buffer): void {
    this.counters.add('frames_out');
    this.counters.add('bytes_out', frame.length);
    this.onFrame(frame);
  }

  private logOnce(key: string, msg: string): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    this.log.warn(`udp: ${msg}`);
  }
}

function parsePort(s: string, allowZero: boolean): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n > 65535 || (n === 0 && !allowZero) ? undefined : n;
}

/** Splits on ':' outside [ ]; brackets are removed. undefined when they do not balance. */
function splitHostParts(s: string): string[] | undefined {
  const out: string[] = [];
  let cur = '';
  let inBracket = false;
  let justClosed = false;
  for (const ch of s) {
    if (justClosed && ch !== ':') return undefined;
    justClosed = false;
    if (ch === '[') {
      if (inBracket || cur.length > 0) return undefined;
      inBracket = true;
    } else if (ch === ']') {
      if (!inBracket) return undefined;
      inBracket = false;
      justClosed = true;
    } else if (ch === ':' && !inBracket) {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (inBracket) return undefined;
  out.push(cur);
  return out;
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}
