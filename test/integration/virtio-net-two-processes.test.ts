import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { killAll, startCli } from './cli-process.js';
import { tempDirs } from '../support/temp-dir.js';

const tempDir = tempDirs();

afterEach(killAll);

describe('virtio-net between two real processes', () => {
  it('passes 100k checksummed frames through the card and back with 0 errors (strict barriers, IOMMU on)', async () => {
    const sock = join(tempDir('tlpwire-vnet-'), 'link.sock');
    const ep = startCli(['ep', '--listen', `unix:${sock}`, '--once', '--log-level', 'warn']);
    await ep.line(/^listening on /);
    const rc = startCli(['rc', '--connect', `unix:${sock}`, '--traffic', '100000', '--traffic-window', '128', '--once', '--log-level', 'warn']);
    const code = await rc.exited;
    const out = rc.stdout.join('\n');
    expect(code, `${out}\n${rc.stderr()}`).toBe(0);
    expect(out).toContain('barriers:   strict (ORDER_PLATFORM negotiated');
    expect(out).toContain('addressing: I/O virtual addresses through the IOMMU (ACCESS_PLATFORM)');
    expect(out).toMatch(/frames: +100000 of 100000 back \(100000 intact\)/);
    expect(out).toMatch(/errors: +0 \(corrupted 0, lost 0, duplicate 0, out of order 0, foreign 0\)/);
    expect(await ep.exited).toBe(0);
  }, 240_000);

  it('an rc with the IOMMU translating refuses a card without ACCESS_PLATFORM, and works with --iommu off', async () => {
    const sock = join(tempDir('tlpwire-vnet-'), 'link.sock');
    const ep = startCli(['ep', '--listen', `unix:${sock}`, '--access-platform', 'off', '--log-level', 'warn']);
    await ep.line(/^listening on /);
    const refused = startCli(['rc', '--connect', `unix:${sock}`, '--traffic', '100', '--once', '--log-level', 'warn']);
    expect(await refused.exited).toBe(1);
    expect(refused.stdout.join('\n')).toMatch(/virtio-net on 01:00\.0: FAILED — .*--iommu off/);
    const ok = startCli(['rc', '--connect', `unix:${sock}`, '--iommu', 'off', '--traffic', '300', '--once', '--log-level', 'warn']);
    expect(await ok.exited).toBe(0);
    const out = ok.stdout.join('\n');
    expect(out).toContain('addressing: physical addresses (no ACCESS_PLATFORM)');
    expect(out).toMatch(/frames: +300 of 300 back \(300 intact\)/);
    ep.kill('SIGTERM');
    expect(await ep.exited).toBe(0);
  }, 120_000);
});
