import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { killAll, startCli } from './cli-process.js';
import { tempDirs } from '../support/temp-dir.js';

const tempDir = tempDirs();

afterEach(killAll);

describe('tlpwire linktest against tlpwire ep, two real processes', () => {
  const transports: [string, () => string][] = [
    ['ws://', () => 'ws://127.0.0.1:0'],
    ['tcp://', () => 'tcp://127.0.0.1:0'],
    ['unix:', () => `unix:${join(tempDir('tlpwire-'), 'link.sock')}`],
  ];
  for (const [name, url] of transports) {
    it(`over ${name}: every row of the pcitest matrix passes, throughput is reported, both exit 0`, async () => {
      const ep = startCli(['ep', '--listen', url(), '--function', 'linktest', '--once', '--log-level', 'warn']);
      const listening = (await ep.line(/^listening on (\S+)$/))[1]!;
      const lt = startCli(['linktest', '--connect', listening, '--throughput-bytes', '4M', '--log-level', 'warn']);
      expect(await lt.exited).toBe(0);
      const out = lt.stdout.join('\n');
      expect(out).toMatch(/-\[0000:00\]---00\.0-\[01\]----00\.0 {2}104c:b500 \[ff00\]/);
      expect(out).toMatch(/ 4[0-9] passed, 0 failed, 0 skipped/);
      expect(out).not.toMatch(/ FAIL /);
      for (const row of ['BAR0', 'BAR5', 'consecutive BARs', 'INTx', 'MSI vectors 1-32', 'MSI-X vectors 1-32', 'READ 1024001 B DMA', 'WRITE 1 B', 'COPY 1025 B DMA']) {
        expect(out).toMatch(new RegExp(`\\n  ${row} +PASS `));
      }
      const rates = [...out.matchAll(/throughput (host→device|device→host) .*: ([0-9.]+) MB\/s/g)].map((m) => [m[1], Number(m[2])]);
      expect(rates.map((r) => r[0])).toEqual(['host→device', 'device→host']);
      for (const [, mbs] of rates) expect(mbs).toBeGreaterThan(0);
      // The endpoint ran with --once: it leaves by itself once the root complex hung up.
      expect(await ep.exited).toBe(0);
      expect(ep.stderr()).toBe('');
    }, 40_000);
  }
});
