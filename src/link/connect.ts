/**
 * Opening transports by URL: the one entry point roles and the CLI use, whatever the scheme.
 */
import type { Transport, TransportOptions, TransportServer } from './transport.js';
import { connectNet, listenNet } from './net-transport.js';
import { parseLinkUrl } from './url.js';
import { connectWs, listenWs } from './ws-transport.js';

/**
 * Listens on `url` (ws://HOST:PORT[/path], tcp://HOST:PORT, unix:PATH). Port 0 picks a free port;
 * `server.url` has the real one. Fails with ERR_BAD_URL, ERR_ADDRESS_IN_USE or ERR_TRANSPORT.
 */
export function listenTransport(url: string, opts: TransportOptions = {}): Promise<TransportServer> {
  const parsed = parseLinkUrl(url);
  return parsed.scheme === 'ws' ? listenWs(parsed, opts) : listenNet(parsed, opts);
}

/** Connects to `url`. Fails with ERR_BAD_URL or ERR_TRANSPORT (one line saying why). */
export function connectTransport(url: string, opts: TransportOptions = {}): Promise<Transport> {
  const parsed = parseLinkUrl(url);
  return parsed.scheme === 'ws' ? connectWs(parsed, opts) : connectNet(parsed, opts);
}
