/**
 * Real traffic through tlpwire in two network namespaces: scripts/netns-demo.sh end to end
 * (ping with 0% loss; iperf3 both ways and an nc transfer with a sha256 check when those tools
 * are installed), and the rc side's edges on a real kernel — frames over the card's MTU from
 * the TAP, and the TAP deleted under a running rc — with the PCIe link staying up.
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and the built TAP addon; otherwise each test is
 * skipped with the reason in its title. tlpwire runs from source (tsx), so no build is needed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tapAddonStatus } from '../../src/net/index.js';

const root = new URL('../..', import.meta.url).pathname;
const CLI = [process.execPath, '--import', 'tsx', 'test/fixtures/tlpwire-cli.ts'];

function works(cmd: string, args: readonly string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function whyNot(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root';
  if (!works('ip', ['netns', 'list'])) return "needs 'ip netns' (iproute2)";
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun';
  if (!works('sh', ['-c', 'command -v ping'])) return 'needs ping (iputils-ping)';
  const addon = tapAddonStatus();
  if (!addon.available) return `needs the TAP addon: ${addon.reason}`;
  return undefined;
}

const reason = whyNot();
const canNetns = reason === undefined;
const skipped = canNetns ? '' : ` (skipped: needs root, ip netns, /dev/net/tun and the TAP addon — ${reason})`;

/** Runs a child to completion; resolves with its exit code and output. */
function runToEnd(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, [...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // SIGTERM lets the script tear its namespaces down
    const timer = setTimeout(() => p.kill('SIGTERM'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('network namespaces', () => {
  it.skipIf(!canNetns)(`npm run demo:netns: ping crosses the PCIe link with 0% loss${skipped}`, async () => {
    const env = {
      ...process.env,
      TLPWIRE: CLI.join(' '),
      DEMO_PING_COUNT: '5',
      DEMO_IPERF_SECONDS: '2',
      DEMO_NC_MIB: '4',
    };
    const { code, out } = await runToEnd('bash', [join(root, 'scripts/netns-demo.sh')], env, 45_000);
    expect(out).toMatch(/ 5 received, 0% packet loss/);
    expect(out).toMatch(/^ {2}ping {5}PASS {2}5\/5 replies, 0% loss/m);
    if (works('sh', ['-c', 'command -v iperf3'])) expect(out).toMatch(/^ {2}iperf3 {3}PASS {2}rc->ep [\d.]+ Mbit\/s, ep->rc [\d.]+ Mbit\/s/m);
    else expect(out).toMatch(/iperf3 {3}SKIP {2}skipped: iperf3 is not installed/);
    if (works('sh', ['-c', 'nc -h 2>&1 | grep -q -- -N'])) expect(out).toMatch(/^ {2}nc {7}PASS {2}4 MiB .* sha256 match/m);
    expect(out).toMatch(/netns-demo: PASS/);
    expect(code, out).toBe(0);
  }, 60_000);

  describe.skipIf(!canNetns)(`rc --tap at the edges${skipped}`, () => {
    const tag = `${process.pid % 100000}`;
    const nsRc = `tlpwt-${tag}-rc`;
    const nsEp = `tlpwt-${tag}-ep`;
    const dir = canNetns ? mkdtempSync(join(tmpdir(), 'tlpw-netns-')) : '';
    const procs: ChildProcess[] = [];

    afterAll(async () => {
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      for (const ns of [nsRc, nsEp]) works('ip', ['netns', 'del', ns]);
      rmSync(dir, { recursive: true, force: true });
    });

    /** A tlpwire process inside `ns`, with its stdout and stderr collected. */
    function tlpwire(ns: string, args: readonly string[]): { proc: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
      const proc = spawn('ip', ['netns', 'exec', ns, ...CLI, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(proc);
      let out = '';
      let err = '';
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
      return { proc, out: () => out, err: () => err, exited };
    }

    async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
      const end = Date.now() + timeoutMs;
      while (!check()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    const ping = (args: readonly string[]): string => {
      try {
        return execFileSync('ip', ['netns', 'exec', nsRc, 'ping', ...args], { encoding: 'utf8', timeout: 20_000 });
      } catch (e) {
        return String((e as { stdout?: unknown }).stdout ?? '');
      }
    };

    it('drops frames over the card MTU, survives `ip link del` of its TAP, and keeps the link up', async () => {
      for (const ns of [nsRc, nsEp]) {
        execFileSync('ip', ['netns', 'add', ns]);
        execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      }
      const sock = join(dir, 'rc.sock');
      const rc = tlpwire(nsRc, ['rc', '--listen', `unix:${sock}`, '--tap', 'tap0', '--ip', '10.99.0.1/24', '--log-format', 'json']);
      await until(() => /^listening on /m.test(rc.out()), 'the rc to listen');
      const ep = tlpwire(nsEp, ['ep', '--connect', `unix:${sock}`, '--retry', '--backend', 'tap:tap0', '--log-format', 'json']);
      await until(() => works('ip', ['-n', nsEp, 'link', 'show', 'tap0']), 'tap0 in the ep namespace');
      execFileSync('ip', ['-n', nsEp, 'addr', 'add', '10.99.0.2/24', 'dev', 'tap0']);
      execFileSync('ip', ['-n', nsEp, 'link', 'set', 'tap0', 'up']);
      await until(() => rc.out().includes('bridged to tap0'), 'the card to be bridged');
      expect(ping(['-c', '3', '-i', '0.2', '-W', '2', '10.99.0.2'])).toMatch(/ 0% packet loss/);

      // An administrator raises the TAP's MTU above the card's: big frames are counted and dropped.
      execFileSync('ip', ['-n', nsRc, 'link', 'set', 'tap0', 'mtu', '9000']);
      expect(ping(['-c', '2', '-i', '0.2', '-W', '1', '-s', '4000', '10.99.0.2'])).toMatch(/ 100% packet loss/);
      await until(() => rc.err().includes('dropping oversize frames from tap0'), 'the oversize warning');
      expect(ping(['-c', '2', '-i', '0.2', '-W', '2', '10.99.0.2'])).toMatch(/ 0% packet loss/);

      // The TAP disappears under the rc: logged once, the rc and the PCIe link carry on.
      execFileSync('ip', ['-n', nsRc, 'link', 'del', 'tap0']);
      await until(() => rc.err().includes('tap0 is gone'), 'the rc to notice');
      await new Promise((r) => setTimeout(r, 500));
      expect(rc.proc.exitCode).toBeNull();
      expect(ep.proc.exitCode).toBeNull();
      expect(rc.out()).not.toContain('unbridged');
      expect(rc.err().split('\n').filter((l) => l.includes('is gone')).length).toBeLessThanOrEqual(2);

      rc.proc.kill('SIGTERM');
      expect(await rc.exited).toBe(0);
      expect(rc.out()).toMatch(/^tap tap0: .* dropped [1-9]\d* from the TAP, .*interface tap0 is gone/m);
      ep.proc.kill('SIGTERM');
      await ep.exited;
    }, 40_000);
  });
});
