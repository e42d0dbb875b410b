import { afterEach, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { killAll, startCli } from './cli-process.js';
import { tempDirs } from '../support/temp-dir.js';

const tempDir = tempDirs();

afterEach(killAll);

describe('the endpoint on the udp: backend, facing a peer that speaks QEMU -netdev dgram (one frame per datagram)', () => {
  it('frames the driver sends reach the peer as bare Ethernet datagrams, and what the peer sends back reaches the driver intact', async () => {
    // The peer: echoes each datagram back with the MACs swapped, as the far end of a QEMU dgram link would answer.
    const peer = createSocket('udp4');
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
    const peerPort = peer.address().port;
    let seen = 0;
    let shortest = Infinity;
    peer.on('message', (msg, rinfo) => {
      seen++;
      shortest = Math.min(shortest, msg.length);
      const out = Buffer.from(msg);
      msg.copy(out, 0, 6, 12);
      msg.copy(out, 6, 0, 6);
      peer.send(out, rinfo.port, rinfo.address);
    });
    // A free local port for the endpoint's side.
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
    const epPort = probe.address().port;
    probe.close();
    try {
      const sock = join(tempDir('tlpwire-udp-'), 'link.sock');
      const ep = startCli(['ep', '--listen', `unix:${sock}`, '--once', '--backend', `udp:${epPort}:127.0.0.1:${peerPort}`, '--log-level', 'warn']);
      await ep.line(/^listening on /);
      const rc = startCli(['rc', '--connect', `unix:${sock}`, '--traffic', '2000', '--once', '--log-level', 'warn']);
      const code = await rc.exited;
      const out = rc.stdout.join('\n');
      expect(code, `${out}\n${rc.stderr()}`).toBe(0);
      expect(out).toMatch(/frames: +2000 of 2000 back \(2000 intact\)/);
      expect(seen).toBe(2000);
      // no virtio-net header and no length prefix: the smallest test frame is 60 bytes of Ethernet
      expect(shortest).toBeGreaterThanOrEqual(60);
      expect(await ep.exited).toBe(0);
    } finally {
      peer.close();
    }
  }, 120_000);
});
