/**
 * tcp://HOST:PORT and unix:PATH transports over node:net. Each message is one record: a 4-byte
 * big-endian length, then the message (docs/PROTOCOL.md, "Transports").
 */
import { closeSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createConnection, createServer, Socket, type Server, type SocketConstructorOpts } from 'node:net';
import { fileURLToPath } from 'node:url';
import { TlpwireError, errorMessage, silentLogger, type Logger } from '../core/index.js';
import { DEFAULT_HIGH_WATER_BYTES, MAX_MESSAGE_BYTES } from './constants.js';
import { RECORD_PREFIX_BYTES, RecordParser, recordPrefix } from './record-parser.js';
import { SocketTransportBase } from './socket-transport-base.js';
import type { Transport, TransportOptions, TransportServer } from './transport.js';
import { formatLinkUrl, listenError, connectError, type LinkUrl } from './url.js';

/** How much one socket read may take into a connecting socket's reused buffer. */
const READ_BUFFER_BYTES = 256 * 1024;

/**
 * A socket's receive memory (node:net `onread`): every read goes into the same buffer instead of
 * a new one, sparing an allocation per read and the garbage collections that such buffers bring
 * (measured here: a full collection every few dozen MiB received, and about a quarter of the
 * receiving side's CPU time on DMA reads). The bytes are then valid only until the next read, so
 * the transport says so (Transport.reusesReceiveMemory). node:net gives `onread` only to sockets
 * it creates, connecting ones and those made from a descriptor; an accepted socket gets it by
 * being remade from a duplicate of its descriptor (ownReads below).
 */
class ReusedReadBuffer {
  readonly buffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  /** Where reads go once the transport exists; until then they are kept (copied). */
  private sink: ((chunk: Uint8Array) => void) | undefined;
  private early: Uint8Array[] = [];

  readonly onread = {
    buffer: this.buffer,
    callback: (bytes: number, buf: Uint8Array): boolean => {
      // A plain Uint8Array view: the link makes many views of it, cheaper than views of a Buffer.
      const chunk = new Uint8Array(buf.buffer, buf.byteOffset, bytes);
      if (this.sink !== undefined) this.sink(chunk);
      else this.early.push(chunk.slice());
      return true;
    },
  };

  attach(sink: (chunk: Uint8Array) => void): void {
    this.sink = sink;
    const early = this.early;
    this.early = [];
    for (const c of early) sink(c);
  }
}

export const DEFAULT_SOCKFD_ADDON_PATH = fileURLToPath(new URL('../../native/tap/build/Release/sockfd.node', import.meta.url));

type DupFd = (fd: number) => number;
let dupFdChoice: DupFd | string | undefined;

/**
 * The addon's dupFd (native/tap/sockfd.c), or why accepted sockets keep node:net's new buffer per
 * read: not built, does not load, or TLPWIRE_ACCEPTED_READS=node. Never throws.
 */
export function acceptedReadsSupport(): DupFd | string {
  if (dupFdChoice !== undefined) return dupFdChoice;
  if (process.env['TLPWIRE_ACCEPTED_READS'] === 'node') {
    dupFdChoice = 'TLPWIRE_ACCEPTED_READS=node';
  } else if (!existsSync(DEFAULT_SOCKFD_ADDON_PATH)) {
    dupFdChoice = 'the native addon is not built (npm run build:native)';
  } else {
    try {
      const mod = createRequire(import.meta.url)(DEFAULT_SOCKFD_ADDON_PATH) as { dupFd?: unknown };
      dupFdChoice = typeof mod.dupFd === 'function' ? (mod.dupFd as DupFd) : `${DEFAULT_SOCKFD_ADDON_PATH} has no dupFd (an older build: npm run build:native)`;
    } catch (e) {
      dupFdChoice = `the native addon does not load (${errorMessage(e).split('\n')[0] ?? ''})`;
    }
  }
  return dupFdChoice;
}

/**
 * An accepted socket (still paused, so nothing has been read from it) remade from a duplicate of
 * its descriptor with `onread` into a buffer of its own; the accepted one is destroyed, which
 * closes only its descriptor, not the connection. Undefined, the accepted socket untouched, when
 * that cannot be done here (no addon, no descriptor: the socket is then read as node:net gives it).
 */
function ownReads(accepted: Socket): { socket: Socket; reads: ReusedReadBuffer } | undefined {
  const dupFd = acceptedReadsSupport();
  if (typeof dupFd === 'string') return undefined;
  // node:net keeps the libuv handle in _handle; on POSIX systems its fd is the descriptor.
  const fd = (accepted as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  let copy: number;
  try {
    copy = dupFd(fd);
  } catch {
    return undefined; // out of descriptors, say: the accepted socket still works
  }
  const reads = new ReusedReadBuffer();
  let socket: Socket;
  try {
    // node:net takes `onread` here too (its typings list it for connect() only).
    const options: SocketConstructorOpts & { onread: ReusedReadBuffer['onread'] } = { fd: copy, readable: true, writable: true, onread: reads.onread };
    socket = new Socket(options);
  } catch {
    closeSync(copy);
    return undefined;
  }
  accepted.destroy();
  return { socket, reads };
}

export class NetTransport extends SocketTransportBase {
  private readonly parser: RecordParser;
  private readonly highWater: number;
  private readonly log: Logger;
  private error: Error | undefined;
  private closing = false;
  private closed = false;
  private congested = false;

  /** `reads`: the socket was made with that buffer's `onread`. */
  constructor(
    private readonly socket: Socket,
    readonly remote: string,
    opts: TransportOptions = {},
    reads?: ReusedReadBuffer,
  ) {
    super(reads !== undefined);
    this.highWater = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.log = opts.logger ?? silentLogger;
    const maxBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    const onRecord = (rec: Uint8Array): void => this.deliverMessage(rec);
    const onError = (err: TlpwireError): void => {
      this.log.warn({ remote }, `closing connection: ${err.message}`);
      this.error = err;
      this.socket.destroy();
    };
    // Reads into our own buffer: records split across reads are assembled in the parser's own
    // (reused) buffer. Otherwise each read is a new buffer and split records go as their parts.
    this.parser =
      reads === undefined
        ? new RecordParser(maxBytes, onRecord, onError, (parts) => this.deliverMessageParts(parts))
        : new RecordParser(maxBytes, onRecord, onError, undefined, 'reused');
    // We batch ourselves; Nagle would only add latency to the last small batch of a burst.
    if (typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
    if (reads === undefined) socket.on('data', (chunk: Buffer) => this.parser.push(chunk));
    else reads.attach((chunk) => this.parser.push(chunk));
    socket.on('drain', () => {
      if (!this.congested || this.closed) return;
      this.congested = false;
      this.onDrain();
    });
    socket.on('error', (err) => {
      this.error ??= err;
    });
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      this.parser.stop();
      this.deliverClose(this.error);
    });
  }

  override send(chunks: readonly Uint8Array[], done?: () => void): boolean {
    if (this.closing || this.closed) {
      done?.();
      return true; // the owner learns about it from onClose
    }
    let total = 0;
    for (const c of chunks) total += c.length;
    const s = this.socket;
    // cork/uncork: prefix and chunks leave in one writev, so one batch is one syscall. The last
    // write's callback runs once all of them were written (or failed): the chunks are free then.
    s.cork();
    s.write(recordPrefix(total, Buffer.allocUnsafe(RECORD_PREFIX_BYTES)));
    let last = -1;
    for (let i = 0; i < chunks.length; i++) if (chunks[i]!.length > 0) last = i;
    for (let i = 0; i <= last; i++) {
      const c = chunks[i]!;
      if (c.length === 0) continue;
      if (i === last && done !== undefined) s.write(c, () => done());
      else s.write(c);
    }
    s.uncork();
    if (last < 0) done?.();
    // write() itself says "false" above the socket's own 16 KiB mark, far below a batch, so we use
    // our own mark; 'drain' still fires because each such write() did return false.
    if (s.writableLength > this.highWater) this.congested = true;
    return !this.congested;
  }

  override close(reason?: string): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    this.parser.stop();
    if (reason !== undefined) this.log.debug({ remote: this.remote, reason }, 'closing');
    // end() flushes what was sent; destroy once that is done so a peer that never closes its
    // side cannot keep the socket half-open.
    this.socket.end(() => this.socket.destroy());
  }
}

class NetServer implements TransportServer {
  onConnection: (transport: Transport) => void = () => {};
  /** Each live transport, with a promise of its socket's 'close'. */
  private readonly live = new Map<NetTransport, Promise<void>>();
  private seq = 0;

  constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly parsed: LinkUrl,
    opts: TransportOptions,
  ) {
    const log = opts.logger ?? silentLogger;
    // The server pauses accepted sockets (pauseOnConnect), so that nothing is read from one
    // before it is remade with reads of its own (node:net reads none before this handler runs
    // today; the pause keeps that true by design, not by timing).
    server.on('connection', (accepted: Socket) => {
      const remote =
        parsed.scheme === 'unix'
          ? `unix:${parsed.path}#${++this.seq}`
          : `tcp://${accepted.remoteAddress ?? '?'}:${accepted.remotePort ?? 0}`;
      const own = opts.reuseAcceptedReads === false ? undefined : ownReads(accepted);
      const socket = own?.socket ?? accepted;
      log.debug({ remote, ownReads: own !== undefined }, 'connection accepted');
      const t = new NetTransport(socket, remote, opts, own?.reads);
      if (own === undefined) accepted.resume();
      this.live.set(
        t,
        new Promise<void>((resolve) =>
          socket.once('close', () => {
            this.live.delete(t);
            resolve();
          }),
        ),
      );
      this.onConnection(t);
    });
    server.on('error', (err) => log.error({ url }, `listener error: ${err.message}`));
  }

  /**
   * Stops listening, closes every accepted connection and resolves once all are closed. (A socket
   * remade with reads of its own is not one node:net's server counts, so its own close() does not
   * wait for it.)
   */
  async close(): Promise<void> {
    const closing = [...this.live.values()];
    for (const t of this.live.keys()) t.close('server closing');
    await Promise.all([new Promise<void>((resolve) => this.server.close(() => resolve())), ...closing]);
  }
}

export function listenNet(parsed: LinkUrl, opts: TransportOptions): Promise<TransportServer> {
  const server = createServer({ noDelay: true, pauseOnConnect: true });
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, parsed));
    server.once('error', onError);
    const ready = (): void => {
      server.off('error', onError);
      let url: string;
      if (parsed.scheme === 'unix') {
        url = formatLinkUrl(parsed);
      } else {
        const addr = server.address();
        const port = typeof addr === 'object' && addr !== null ? addr.port : parsed.port;
        url = formatLinkUrl({ ...parsed, port });
      }
      resolve(new NetServer(server, url, parsed, opts));
    };
    if (parsed.scheme === 'unix') server.listen(parsed.path, ready);
    else server.listen(parsed.port, parsed.host, ready);
  });
}

export function connectNet(parsed: LinkUrl, opts: TransportOptions): Promise<Transport> {
  return new Promise((resolve, reject) => {
    const reads = new ReusedReadBuffer();
    const socket =
      parsed.scheme === 'unix'
        ? createConnection({ path: parsed.path, onread: reads.onread })
        : createConnection({ host: parsed.host, port: parsed.port, onread: reads.onread });
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    socket.setTimeout(timeoutMs);
    const fail = (err: NodeJS.ErrnoException): void => {
      socket.destroy();
      reject(connectError(err, parsed));
    };
    const onTimeout = (): void => {
      socket.destroy();
      reject(new TlpwireError('ERR_TRANSPORT', `cannot connect to ${formatLinkUrl(parsed)}: no answer within ${timeoutMs} ms`));
    };
    socket.once('error', fail);
    socket.once('timeout', onTimeout);
    socket.once('connect', () => {
      socket.off('error', fail);
      socket.off('timeout', onTimeout);
      socket.setTimeout(0);
      resolve(new NetTransport(socket, formatLinkUrl(parsed), opts, reads));
    });
  });
}
