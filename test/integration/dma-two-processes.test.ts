import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { RealClock, RootComplex } from '../../src/roles/index.js';
import { tempDirs } from '../support/temp-dir.js';

const tempDir = tempDirs();

const MiB = 1 << 20;
const BYTES = 256 * MiB;
const BASE = 0x10_0000;

interface Result {
  bytes: number;
  writeNs: number;
  readNs: number;
  writeSha256: string;
  readSha256: string;
}

function runEndpoint(url: string, bytes: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/dma-endpoint.ts', url, String(bytes)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`endpoint exited ${code}: ${err}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as Result);
    });
  });
}

describe('two real processes exchange 256 MiB of DMA writes and reads', () => {
  const urls: [string, () => string][] = [
    ['ws', () => 'ws://127.0.0.1:0'],
    ['tcp', () => 'tcp://127.0.0.1:0'],
    ['unix', () => `unix:${join(tempDir('tlpwire-'), 'link.sock')}`],
  ];
  for (const [name, url] of urls) {
    it(`over ${name}: the checksums of what was written, what landed in host RAM and what was read back agree`, async () => {
      const rc = new RootComplex({ clock: new RealClock(), memoryBytes: BASE + BYTES + MiB });
      const listening = await rc.listen(url());
      try {
        const result = await runEndpoint(listening, BYTES);
        const ramHash = createHash('sha256');
        for (let a = 0; a < BYTES; a += 16 * MiB) ramHash.update(rc.ram.readBytes(BASE + a, 16 * MiB));
        expect(result.bytes).toBe(BYTES);
        expect(result.readSha256).toBe(result.writeSha256);
        expect(ramHash.digest('hex')).toBe(result.writeSha256);
      } finally {
        await rc.close();
      }
    }, 180_000);
  }
});
