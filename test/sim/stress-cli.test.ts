import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/run-cli.js';
import { BARRIER_SITE_NAMES } from '../../src/virtio/index.js';

const run = runCli;

const dir = mkdtempSync(join(tmpdir(), 'tlpwire-stress-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The argv of the "reproduce:" line (after "tlpwire"). */
function reproduceArgv(out: string): string[] {
  const line = out.split('\n').find((l) => l.startsWith('reproduce: tlpwire '));
  if (line === undefined) throw new Error(`no reproduce line in:\n${out}`);
  return line.slice('reproduce: tlpwire '.length).trim().split(/\s+/);
}

function traceHash(out: string): string {
  const m = /^trace sha256 ([0-9a-f]{64}) /m.exec(out);
  if (m === null) throw new Error(`no trace hash in:\n${out}`);
  return m[1]!;
}

describe('tlpwire stress', () => {
  it('passes with strict barriers and prints ring operations per second', async () => {
    const r = await run('stress', '--ops', '20000', '--seed', '2');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^PASS {2}[\d,]+ ring operations \(driver add/m);
    expect(r.out).toMatch(/[\d,]+ ring operations\/s/);
    expect(r.out).toContain('0 doorbells · 0 interrupts');
    expect(r.out).toContain('no TLP encoding');
  });

  it('--trace-hash is the same for two runs with the same seed and options, and differs with the seed', async () => {
    const a = await run('stress', '--seed', '3', '--ops', '15000', '--trace-hash');
    const b = await run('stress', '--seed', '3', '--ops', '15000', '--trace-hash');
    const c = await run('stress', '--seed', '4', '--ops', '15000', '--trace-hash');
    expect(a.code).toBe(0);
    expect(traceHash(b.out)).toBe(traceHash(a.out));
    expect(traceHash(c.out)).not.toBe(traceHash(a.out));
  });

  it('a run cut by --seconds prints a replay command that gives the same trace hash', async () => {
    const a = await run('stress', '--seed', '8', '--seconds', '0.3', '--trace-hash');
    expect(a.code).toBe(0);
    const replay = /replay: tlpwire (.*)\)$/m.exec(a.out)![1]!.split(' ');
    expect(replay).toContain('--ops');
    const b = await run(...replay);
    expect(traceHash(b.out)).toBe(traceHash(a.out));
  });

  it("a failure prints the seed, the events before it, and a command line that reproduces it exactly", async () => {
    const a = await run('stress', '--driver-barriers', 'weak', '--device-barriers', 'weak', '--seed', '5', '--trace-hash');
    expect(a.code).toBe(1);
    expect(a.out).toMatch(/^FAIL {2}\S+: /m);
    expect(a.out).toMatch(/^seed 5$/m);
    expect(a.out).toMatch(/the last events before the failure/);
    expect(a.out).toMatch(/driver add +tx head \d+, \d+ bytes/);
    expect(a.out).toMatch(/MRd +\(issue\) +0x[0-9a-f]+ \+\d+/);
    const argv = reproduceArgv(a.out);
    expect(argv).toEqual(expect.arrayContaining(['--seed', '5', '--driver-barriers', 'weak', '--device-barriers', 'weak', '--ops', '--trace-hash']));
    const b = await run(...argv);
    expect(b.code).toBe(1);
    const failLines = (o: string): string[] => o.split('\n').filter((l) => /^(FAIL|      after|  +[\d,]+ ns)/.test(l));
    expect(failLines(b.out)).toEqual(failLines(a.out));
    expect(traceHash(b.out)).toBe(traceHash(a.out));
  });

  it('--disable-barrier removes one site (and the removal is caught)', async () => {
    const r = await run('stress', '--disable-barrier', 'device.push.wmb-before-used-idx', '--seconds', '20', '--json');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { pass: boolean; barriers: Record<string, string>; failure: { kind: string } | null; reproduce: string };
    expect(j.pass).toBe(false);
    expect(j.barriers['device.push.wmb-before-used-idx']).toBe('none');
    expect(j.barriers['driver.add.wmb-before-avail-idx']).toBe('strict');
    expect(j.failure).not.toBeNull();
    expect(j.reproduce).toContain('--disable-barrier device.push.wmb-before-used-idx');
  });

  it('--notifications on rings doorbells and takes interrupts; without the kick barrier a wakeup is lost', async () => {
    const ok = await run('stress', '--notifications', 'on', '--ops', '20000', '--json');
    expect(ok.code).toBe(0);
    const j = JSON.parse(ok.out) as { doorbells: number; interrupts: number };
    expect(j.doorbells).toBeGreaterThan(0);
    expect(j.interrupts).toBeGreaterThan(0);
    const bad = await run('stress', '--notifications', 'on', '--disable-barrier', 'driver.kick.mb-before-event-check');
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/^FAIL {2}stall: \d+ frames in flight and none came back/m);
    expect(reproduceArgv(bad.out)).toEqual(expect.arrayContaining(['--notifications', 'on', '--disable-barrier', 'driver.kick.mb-before-event-check']));
  });

  it('--json prints one object with the counts', async () => {
    const r = await run('stress', '--ops', '5000', '--json', '--host-platform', 'tso', '--order-platform', 'off');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as Record<string, unknown>;
    expect(j.pass).toBe(true);
    expect(j.ringOps).toBeGreaterThanOrEqual(5000);
    expect((j.config as { hostPlatform: string }).hostPlatform).toBe('tso');
    // ORDER_PLATFORM not offered: Linux's rule gives the driver weak barriers
    expect((j.barriers as Record<string, string>)['driver.add.wmb-before-avail-idx']).toBe('weak');
    expect(typeof j.ringOpsPerSecond).toBe('number');
  });

  it('rejects bad input with one line and exit code 2', async () => {
    const bad: [string[], RegExp][] = [
      [['stress', '--disable-barrier', 'driver.add.nope'], /unknown barrier site "driver.add.nope"; the sites are: driver\.add\.wmb-before-avail-idx, /],
      [['stress', '--host-platform', 'arm'], /--host-platform: expected tso or weak/],
      [['stress', '--driver-barriers', 'maybe'], /--driver-barriers: expected auto or weak or strict/],
      [['stress', '--device-barriers', 'auto'], /--device-barriers: expected weak or strict/],
      [['stress', '--order-platform', 'yes'], /--order-platform: expected on or off/],
      [['stress', '--notifications', 'maybe'], /--notifications: expected off or on/],
      [['stress', '--matrix', '--notifications', 'on'], /--matrix runs its own configurations: --notifications/],
      [['stress', '--ops', '0'], /--ops: expected a whole number/],
      [['stress', '--seconds', '-1'], /--seconds: expected a number of seconds/],
      [['stress', '--seed', 'x'], /--seed: expected a whole number/],
      [['stress', '--report', 'x.html'], /--report goes with --matrix/],
      [['stress', '--seconds-per-cell', '1'], /--seconds-per-cell goes with --matrix/],
      [['stress', '--matrix', '--host-platform', 'tso'], /--matrix runs its own configurations: --host-platform/],
      [['stress', '--matrix', '--seconds-per-cell', '0'], /--seconds-per-cell: expected a number of seconds above 0/],
    ];
    for (const [argv, msg] of bad) {
      const r = await run(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(msg);
      expect(r.err.trim().split('\n'), argv.join(' ')).toHaveLength(1);
    }
    // the message lists every valid site
    const r = await run('stress', '--disable-barrier', 'nope');
    for (const s of BARRIER_SITE_NAMES) expect(r.err).toContain(s);
  });

  it('--matrix prints the table and writes a self-contained HTML report', async () => {
    const file = join(dir, 'matrix.html');
    const r = await run('stress', '--matrix', '--seconds-per-cell', '0.05', '--report', file);
    expect([0, 1]).toContain(r.code);
    expect(r.out).toMatch(/^configuration +ring ops +seeds +corruptions +stalls +verdict +first failing seed$/m);
    expect(r.out).toMatch(/^host weak · device weak · weak barriers +[\d,]+ +\d+ +1 +0 +FAIL +1/m);
    expect(r.out).toContain('driver.get.mb-after-used-event removed');
    expect(r.out).toContain(`report written to ${file}`);
    const html = readFileSync(file, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<svg');
    expect(html).toContain('<table>');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect((html.match(/<tr class=/g) ?? []).length).toBe(27);
  }, 60_000);
});
