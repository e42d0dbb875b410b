import { describe, expect, it } from 'vitest';
import { isTlpwireError } from '../../src/core/index.js';
import { formatLinkUrl, parseLinkUrl } from '../../src/link/index.js';

describe('parseLinkUrl', () => {
  it('parses the three schemes', () => {
    expect(parseLinkUrl('ws://127.0.0.1:5301')).toEqual({ scheme: 'ws', host: '127.0.0.1', port: 5301, path: '/' });
    expect(parseLinkUrl('ws://host.example:80/pcie/link0')).toEqual({ scheme: 'ws', host: 'host.example', port: 80, path: '/pcie/link0' });
    expect(parseLinkUrl('tcp://[::1]:0')).toEqual({ scheme: 'tcp', host: '::1', port: 0, path: '' });
    expect(parseLinkUrl('tcp://localhost:65535/')).toEqual({ scheme: 'tcp', host: 'localhost', port: 65535, path: '' });
    expect(parseLinkUrl('unix:/run/tlpwire.sock')).toEqual({ scheme: 'unix', host: '', port: 0, path: '/run/tlpwire.sock' });
    expect(parseLinkUrl('unix:///run/tlpwire.sock')).toEqual({ scheme: 'unix', host: '', port: 0, path: '/run/tlpwire.sock' });
    expect(parseLinkUrl('unix:rel.sock').path).toBe('rel.sock');
  });

  it('formats back what it parses', () => {
    for (const u of ['ws://127.0.0.1:5301/', 'ws://[::1]:9/x', 'tcp://h:1', 'unix:/tmp/a.sock']) {
      expect(formatLinkUrl(parseLinkUrl(u))).toBe(u);
    }
  });

  it('refuses malformed URLs with one clear ERR_BAD_URL line', () => {
    const cases: [string, string][] = [
      ['', 'empty'],
      ['127.0.0.1:5301', 'unknown scheme "127.0.0.1:"'],
      ['http://h:1', 'unknown scheme "http:"'],
      ['wss://h:1', 'reserved for a later version'],
      ['ws:h:1', 'expected ws://HOST:PORT'],
      ['tcp://h', 'missing or non-numeric port'],
      ['tcp://h:port', 'missing or non-numeric port'],
      ['tcp://:5', 'missing host'],
      ['tcp://h:70000', 'port 70000 is out of range'],
      ['tcp://h:1/x', 'tcp:// URLs have no path'],
      ['ws://u@h:1', 'user info'],
      ['ws://h:1/?a=b', 'queries and fragments'],
      ['unix:', 'needs a socket path'],
    ];
    for (const [url, why] of cases) {
      let err: unknown;
      try {
        parseLinkUrl(url);
      } catch (e) {
        err = e;
      }
      expect(isTlpwireError(err, 'ERR_BAD_URL'), url).toBe(true);
      expect((err as Error).message, url).toContain(why);
      expect((err as Error).message).not.toContain('\n');
    }
  });
});
