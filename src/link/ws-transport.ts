/**
 * ws://HOST:PORT[/path] with the `ws` library: one batch per binary WebSocket message, subprotocol
 * "tlpwire" (docs/PROTOCOL.md, "Transports").
 */
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { TlpwireError, silentLogger, type Logger } from '../core/index.js';
import { DEFAULT_HIGH_WATER_BYTES, MAX_MESSAGE_BYTES, WS_SUBPROTOCOL } from './constants.js';
import { joinBytes } from './framing.js';
import { SocketTransportBase } from './socket-transport-base.js';
import type { Transport, TransportOptions, TransportServer } from './transport.js';
import { connectError, formatLinkUrl, listenError, type LinkUrl } from './url.js';

/**
 * Client frames must be masked (RFC 6455 §5.3), and XOR-ing every byte with a random mask costs
 * about as much as the rest of the send path on bulk data. Masking exists so that a *browser*
 * script cannot make an intermediary HTTP proxy cache forged responses; our peer is never a
 * browser, so we use the all-zero mask, which is valid on the wire and which ws recognises and
 * skips (no XOR, no copy of the payload).
 */
function zeroMask(mask: Buffer): void {
  mask[0] = mask[1] = mask[2] = mask[3] = 0;
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

function concatChunks(chunks: readonly Uint8Array[]): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : joinBytes(chunks);
}

export class WsTransport extends SocketTransportBase {
  private readonly highWater: number;
  private readonly log: Logger;
  private error: Error | undefined;
  private closing = false;
  private closed = false;
  private congested = false;
  /** ws calls this when a message has been handed to the kernel: our drain signal. */
  private readonly afterWrite = (): void => {
    if (this.congested && !this.closed && this.ws.bufferedAmount <= this.highWater / 2) {
      this.congested = false;
      this.onDrain();
    }
  };

  constructor(
    private readonly ws: WebSocket,
    readonly remote: string,
    opts: TransportOptions = {},
  ) {
    super();
    this.highWater = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.log = opts.logger ?? silentLogger;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (this.closing || this.closed) return;
      if (!isBinary) {
        this.log.warn({ remote }, 'closing connection: text WebSocket message (tlpwire sends binary messages only)');
        this.error = new TlpwireError('ERR_LINK_PROTOCOL', 'text WebSocket message received (tlpwire uses binary messages only)');
        this.closing = true;
        ws.close(1003, 'binary messages only');
        return;
      }
      this.deliverMessage(toBytes(data));
    });
    ws.on('error', (err: Error) => {
      this.error ??= err;
      this.log.debug({ remote, err: err.message }, 'websocket error');
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.closed) return;
      this.closed = true;
      if (this.error === undefined && code !== 1000 && code !== 1005 && !this.closing) {
        this.error = new TlpwireError('ERR_TRANSPORT', `WebSocket closed with code ${code}${reason.length ? ` (${reason.toString('utf8')})` : ''}`);
      }
      this.deliverClose(this.error);
    });
  }

  override send(chunks: readonly Uint8Array[], done?: () => void): boolean {
    if (this.closing || this.closed || this.ws.readyState !== WebSocket.OPEN) {
      done?.();
      return true;
    }
    const afterWrite =
      done === undefined
        ? this.afterWrite
        : (): void => {
            done();
            this.afterWrite();
          };
    this.ws.send(concatChunks(chunks), { binary: true }, afterWrite);
    if (this.ws.bufferedAmount > this.highWater) this.congested = true;
    return !this.congested;
  }

  override close(reason?: string): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    // A close frame's reason is at most 123 bytes (RFC 6455 §5.5).
    const r = Buffer.from(reason ?? '', 'utf8').subarray(0, 123).toString('utf8').replace(/\uFFFD+$/, '');
    this.ws.close(1000, r);
  }
}

const WS_OPTIONS = {
  perMessageDeflate: false, // TLP payloads are mostly incompressible; deflate costs CPU and latency
  skipUTF8Validation: true, // we never accept text frames anyway
} as const;

class WsServer implements TransportServer {
  onConnection: (transport: Transport) => void = () => {};
  private readonly live = new Set<WsTransport>();

  constructor(
    private readonly http: HttpServer,
    private readonly wss: WebSocketServer,
    readonly url: string,
    private readonly parsed: LinkUrl,
    opts: TransportOptions,
  ) {
    const log = opts.logger ?? silentLogger;
    const peer = (req: IncomingMessage): string => `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;

    // Strangers: an ordinary HTTP request gets 426 and a one-line explanation.
    http.on('request', (req, res) => {
      log.warn({ remote: peer(req) }, `refused plain HTTP ${req.method ?? '?'} ${req.url ?? '?'}: not a WebSocket upgrade`);
      res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'close' });
      res.end(`tlpwire: this port speaks WebSocket (subprotocol "${WS_SUBPROTOCOL}") only\n`);
    });
    // Bytes that are not HTTP at all.
    http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const s = socket as Duplex & { remoteAddress?: string; remotePort?: number };
      log.warn({ remote: `${s.remoteAddress ?? '?'}:${s.remotePort ?? 0}`, code: err.code }, 'refused a connection that does not speak HTTP');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head, log, opts));
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, log: Logger, opts: TransportOptions): void {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const path = (req.url ?? '/').split('?')[0];
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    const refuse = (status: string, why: string): void => {
      log.warn({ remote }, `refused WebSocket upgrade: ${why}`);
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\ntlpwire: ${why}\n`);
    };
    if (path !== this.parsed.path) {
      refuse('404 Not Found', `path ${JSON.stringify(path)} (this server serves ${JSON.stringify(this.parsed.path)})`);
      return;
    }
    if (!protocols.includes(WS_SUBPROTOCOL)) {
      refuse('400 Bad Request', `the client did not ask for subprotocol "${WS_SUBPROTOCOL}"`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const t = new WsTransport(ws, `ws://${remote}`, opts);
      this.live.add(t);
      ws.once('close', () => this.live.delete(t));
      this.onConnection(t);
    });
  }

  close(): Promise<void> {
    for (const t of this.live) t.close('server closing');
    return new Promise((resolve) => {
      this.wss.close();
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }
}

export function listenWs(parsed: LinkUrl, opts: TransportOptions): Promise<TransportServer> {
  const maxPayload = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const wss = new WebSocketServer({
    noServer: true,
    ...WS_OPTIONS,
    maxPayload,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  const http = createServer();
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, parsed));
    http.once('error', onError);
    http.listen(parsed.port, parsed.host, () => {
      http.off('error', onError);
      const addr = http.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : parsed.port;
      resolve(new WsServer(http, wss, formatLinkUrl({ ...parsed, port }), parsed, opts));
    });
  });
}

export function connectWs(parsed: LinkUrl, opts: TransportOptions): Promise<Transport> {
  const url = formatLinkUrl(parsed);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [WS_SUBPROTOCOL], {
      ...WS_OPTIONS,
      maxPayload: opts.maxMessageBytes ?? MAX_MESSAGE_BYTES,
      generateMask: zeroMask,
      handshakeTimeout: opts.connectTimeoutMs ?? 10_000,
    });
    let settled = false;
    const fail = (e: TlpwireError): void => {
      if (settled) return;
      settled = true;
      ws.removeAllListeners();
      ws.on('error', () => {}); // late errors of an abandoned socket are not news
      ws.terminate();
      reject(e);
    };
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      fail(new TlpwireError('ERR_TRANSPORT', `cannot connect to ${url}: the server answered HTTP ${res.statusCode ?? '?'} instead of a WebSocket upgrade (not a tlpwire ws server, or wrong path?)`));
    });
    ws.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code;
      if (code !== undefined && code.startsWith('E')) fail(connectError(err, parsed));
      else fail(new TlpwireError('ERR_TRANSPORT', `cannot connect to ${url}: ${err.message}`, { cause: err }));
    });
    ws.once('open', () => {
      if (ws.protocol !== WS_SUBPROTOCOL) {
        fail(new TlpwireError('ERR_TRANSPORT', `cannot connect to ${url}: the server did not accept subprotocol "${WS_SUBPROTOCOL}" (not a tlpwire server?)`));
        return;
      }
      settled = true;
      ws.removeAllListeners('error');
      ws.removeAllListeners('unexpected-response');
      resolve(new WsTransport(ws, url, opts));
    });
  });
}
