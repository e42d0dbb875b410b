/**
 * Link URLs: ws://HOST:PORT[/path], tcp://HOST:PORT, unix:PATH. Parsed by hand rather than with
 * WHATWG URL, which drops a ws port of 80 and accepts things we would rather refuse (user info,
 * queries). IPv6 hosts go in brackets: tcp://[::1]:5301.
 */
import { TlpwireError } from '../core/index.js';

export type LinkScheme = 'ws' | 'tcp' | 'unix';

export interface LinkUrl {
  scheme: LinkScheme;
  /** Host name or address without brackets; '' for unix. */
  host: string;
  /** 0..65535 (0 = any free port when listening); 0 for unix. */
  port: number;
  /** ws: the request path ('/' by default); unix: the socket path; tcp: ''. */
  path: string;
}

function bad(url: string, why: string): TlpwireError {
  return new TlpwireError('ERR_BAD_URL', `bad link URL ${JSON.stringify(url)}: ${why}`);
}

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s/:@?#[\]]+):([0-9]+)(.*)$/;

export function parseLinkUrl(url: string): LinkUrl {
  if (typeof url !== 'string' || url.length === 0) throw bad(String(url), 'empty');
  const schemeEnd = url.indexOf(':');
  if (schemeEnd <= 0) throw bad(url, 'expected ws://HOST:PORT[/path], tcp://HOST:PORT or unix:PATH');
  const scheme = url.slice(0, schemeEnd).toLowerCase();
  const rest = url.slice(schemeEnd + 1);
  if (scheme === 'unix') {
    // unix:/run/x.sock, unix:rel.sock, and unix:///run/x.sock (URL style) all name a path.
    const path = rest.startsWith('//') ? rest.slice(2) : rest;
    if (path.length === 0) throw bad(url, 'unix: needs a socket path, e.g. unix:/tmp/tlpwire.sock');
    if (path.includes('\0')) throw bad(url, 'the socket path contains a NUL byte');
    return { scheme: 'unix', host: '', port: 0, path };
  }
  if (scheme === 'wss') throw bad(url, 'wss:// (TLS) is reserved for a later version; use ws:// over a trusted network or a TLS tunnel');
  if (scheme !== 'ws' && scheme !== 'tcp') throw bad(url, `unknown scheme "${scheme}:" (use ws:, tcp: or unix:)`);
  if (!rest.startsWith('//')) throw bad(url, `expected ${scheme}://HOST:PORT`);
  const m = HOST_PORT.exec(rest.slice(2));
  if (m === null) {
    const authority = rest.slice(2).split('/')[0] ?? '';
    if (authority.includes('@')) throw bad(url, 'user info (user@host) is not supported');
    if (authority.length === 0 || authority.startsWith(':')) throw bad(url, 'missing host');
    if (!/:[0-9]+$/.test(authority)) throw bad(url, 'missing or non-numeric port (HOST:PORT)');
    throw bad(url, 'malformed host');
  }
  const hostPart = m[1]!;
  const port = Number(m[2]);
  const tail = m[3]!;
  if (port > 65535) throw bad(url, `port ${port} is out of range 0..65535`);
  const host = hostPart.startsWith('[') ? hostPart.slice(1, -1) : hostPart;
  if (tail.includes('?') || tail.includes('#')) throw bad(url, 'queries and fragments are not supported');
  if (scheme === 'tcp') {
    if (tail !== '' && tail !== '/') throw bad(url, 'tcp:// URLs have no path');
    return { scheme: 'tcp', host, port, path: '' };
  }
  if (tail !== '' && !tail.startsWith('/')) throw bad(url, 'malformed port');
  return { scheme: 'ws', host, port, path: tail === '' ? '/' : tail };
}

export function formatLinkUrl(u: LinkUrl): string {
  if (u.scheme === 'unix') return `unix:${u.path}`;
  const host = u.host.includes(':') ? `[${u.host}]` : u.host;
  return u.scheme === 'tcp' ? `tcp://${host}:${u.port}` : `ws://${host}:${u.port}${u.path}`;
}

/** One clear line for a failed listen. */
export function listenError(err: NodeJS.ErrnoException, u: LinkUrl): TlpwireError {
  const url = formatLinkUrl(u);
  switch (err.code) {
    case 'EADDRINUSE':
      return new TlpwireError(
        'ERR_ADDRESS_IN_USE',
        u.scheme === 'unix'
          ? `address in use: ${url} (another server is listening, or a stale socket file is left over: remove it if no server runs)`
          : `address in use: ${url} (another process listens on that port)`,
        { cause: err },
      );
    case 'EACCES':
    case 'EPERM':
      return new TlpwireError('ERR_TRANSPORT', `cannot listen on ${url}: permission denied`, { cause: err });
    case 'EADDRNOTAVAIL':
      return new TlpwireError('ERR_TRANSPORT', `cannot listen on ${url}: that address is not on this machine`, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new TlpwireError('ERR_TRANSPORT', `cannot listen on ${url}: host name not found`, { cause: err });
    default:
      return new TlpwireError('ERR_TRANSPORT', `cannot listen on ${url}: ${err.message}`, { cause: err });
  }
}

/** One clear line for a failed connect. */
export function connectError(err: NodeJS.ErrnoException, u: LinkUrl): TlpwireError {
  const url = formatLinkUrl(u);
  const why = ((): string => {
    switch (err.code) {
      case 'ECONNREFUSED':
        return u.scheme === 'unix' ? 'connection refused (the socket file exists but nobody listens)' : 'connection refused (is a tlpwire server listening there?)';
      case 'ENOENT':
        return 'no such socket file';
      case 'ETIMEDOUT':
        return 'timed out';
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return 'host name not found';
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
        return 'host unreachable';
      case 'ECONNRESET':
        return 'connection reset by the server';
      case 'EACCES':
      case 'EPERM':
        return 'permission denied';
      default:
        return err.message;
    }
  })();
  return new TlpwireError('ERR_TRANSPORT', `cannot connect to ${url}: ${why}`, { cause: err });
}
