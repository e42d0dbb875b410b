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
