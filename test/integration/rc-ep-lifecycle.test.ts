import { afterEach, describe, expect, it } from 'vitest';
import { killAll, logLines, startCli } from './cli-process.js';

afterEach(killAll);

const TREE = /^-\[0000:00\]---00\.0-\[01\]----00\.0 {2}104c:b500/;

function count(lines: string[], re: RegExp): number {
  return lines.filter((l) => re.test(l)).length;
}

/** Nothing a person would call a crash: no stack frames, no internal errors. */
function noStackTraces(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toContain('internal error');
}

describe('rc and ep processes: signals, link loss, reconnection, re-enumeration', () => {
  it('SIGTERM on the ep: the rc logs it, keeps serving, and re-enumerates the endpoint when it comes back', async () => {
    const rc = startCli(['rc', '--listen', 'ws://127.0.0.1:0', '--log-level', 'info']);
    const url = (await rc.line(/^listening on (\S+)$/))[1]!;
    const ep1 = startCli(['ep', '--connect', url, '--function', 'linktest', '--retry', '--log-level', 'info']);
    await rc.line(TREE);
    ep1.kill('SIGTERM');
    expect(await ep1.exited).toBe(0);
    await rc.logged('went away; waiting for endpoints');
    expect(rc.proc.exitCode).toBeNull();

    const ep2 = startCli(['ep', '--connect', url, '--function', 'linktest', '--log-level', 'warn']);
    // Enumerated once more, on bus 01 again.
    await rc.lines(TREE, 2);
    expect(count(rc.stdout, TREE)).toBe(2);

    // SIGINT on the rc: it closes the link cleanly; the ep without --retry exits 0.
    rc.kill('SIGINT');
    expect(await rc.exited).toBe(0);
    expect(await ep2.exited).toBe(0);
    const epLogs = logLines(ep1.stderr());
    expect(epLogs.some((l) => l.msg === 'SIGTERM: shutting down')).toBe(true);
    const rcLogs = logLines(rc.stderr());
    expect(rcLogs.some((l) => l.msg === 'SIGINT: shutting down')).toBe(true);
    noStackTraces(rc.stderr());
    noStackTraces(ep1.stderr());
    noStackTraces(ep2.stderr());
  }, 40_000);

  it('SIGINT on the rc: an ep with --retry logs the link going down, keeps trying, and reconnects to a new rc', async () => {
    const rc1 = startCli(['rc', '--listen', 'tcp://127.0.0.1:0', '--log-level', 'warn']);
    const url = (await rc1.line(/^listening on (\S+)$/))[1]!;
    const ep = startCli(['ep', '--connect', url, '--function', 'linktest', '--retry', '--retry-max-delay', '200ms', '--log-level', 'info']);
    await rc1.line(TREE);
    rc1.kill('SIGINT');
    expect(await rc1.exited).toBe(0);
    await ep.logged('partner closed: interrupted: shutting down');
    await ep.logged('; retrying');
    expect(ep.proc.exitCode).toBeNull();

    // A new root complex on the same address: the endpoint finds it by itself.
    const rc2 = startCli(['rc', '--listen', url, '--log-level', 'warn']);
    await rc2.line(TREE);
    ep.kill('SIGTERM');
    expect(await ep.exited).toBe(0);
    await rc2.logged('went away');
    rc2.kill('SIGTERM');
    expect(await rc2.exited).toBe(0);
    noStackTraces(ep.stderr());
    noStackTraces(rc2.stderr());
  }, 40_000);
});
