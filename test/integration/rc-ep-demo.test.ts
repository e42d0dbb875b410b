import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { killAll, startCli } from './cli-process.js';

afterEach(killAll);

/** Command lines of live processes that contain `marker`. */
function processesWith(marker: string): string[] {
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return ps.split('\n').filter((l) => l.includes(marker) && !l.includes('ps -eo'));
}

describe('tlpwire demo (npm start)', () => {
  it('runs an endpoint and a root complex as two processes, prints the tree and an all-pass table, exits 0, leaves nothing behind', async () => {
    // An unusual vector count marks this run's children so they can be looked for afterwards.
    const marker = 'linktest:msix=29';
    const demo = startCli(['demo', '--function', marker, '--throughput-bytes', '2M']);
    expect(await demo.exited).toBe(0);
    const out = demo.stdout.join('\n');
    expect(out).toMatch(/-\[0000:00\]---00\.0-\[01\]----00\.0 {2}104c:b500/);
    expect(out).toContain('MSI-X vectors 1-29');
    expect(out).toMatch(/ \d+ passed, 0 failed, 0 skipped/);
    expect(out).toContain('tlpwire demo: enumeration and every link test passed');
    expect(processesWith(marker)).toEqual([]);
  }, 40_000);

  it('by default shows a virtio-net card negotiating ORDER_PLATFORM and ACCESS_PLATFORM, strict barriers, traffic with 0 errors, and the link tester', async () => {
    const demo = startCli(['demo', '--frames', '1500', '--throughput-bytes', '1M']);
    expect(await demo.exited).toBe(0);
    const out = demo.stdout.join('\n');
    expect(out).toMatch(/00\.0 {2}1af4:1041 \[0200\] Virtio network device/);
    expect(out).toMatch(/00\.1 {2}104c:b500/);
    expect(out).toMatch(/negotiated: .*ACCESS_PLATFORM ORDER_PLATFORM/);
    expect(out).toContain('barriers:   strict (ORDER_PLATFORM negotiated');
    expect(out).toMatch(/frames: +1500 of 1500 back \(1500 intact\)/);
    expect(out).toMatch(/errors: +0 /);
    expect(out).toMatch(/rate: +\d+ frames\/s, [\d.]+ Mbit\/s/);
    expect(out).toMatch(/round trip: p50 \d+ µs, p99 \d+ µs/);
    expect(out).toMatch(/ \d+ passed, 0 failed, 0 skipped/);
    expect(out).toContain('tlpwire demo: enumeration, virtio-net traffic and every link test passed');
  }, 60_000);

  it('with a card that does not offer ORDER_PLATFORM the driver says it falls back to weak barriers', async () => {
    const demo = startCli(['demo', '--function', 'virtio-net', '--order-platform', 'off', '--frames', '500']);
    expect(await demo.exited).toBe(0);
    const out = demo.stdout.join('\n');
    expect(out).not.toMatch(/negotiated: .*ORDER_PLATFORM/);
    expect(out).toContain('barriers:   weak (the device does not offer ORDER_PLATFORM: falling back to weak (virt_*) barriers, as Linux does)');
  }, 60_000);

  it('stops both children when it runs out of time, and exits 1', async () => {
    const marker = 'linktest:msix=27';
    const demo = startCli(['demo', '--function', marker, '--timeout', '300ms']);
    expect(await demo.exited).toBe(1);
    expect(demo.stderr()).toMatch(/tlpwire demo: (the endpoint did not start listening in time|not finished within)/);
    expect(processesWith(marker)).toEqual([]);
  }, 30_000);

  it('stops both children on SIGTERM', async () => {
    const marker = 'linktest:msix=25';
    const demo = startCli(['demo', '--function', marker, '--throughput-bytes', '64M', '--log-level', 'info']);
    await demo.line(/starting a root complex/);
    demo.kill('SIGTERM');
    expect(await demo.exited).toBe(1);
    expect(processesWith(marker)).toEqual([]);
  }, 30_000);
});
