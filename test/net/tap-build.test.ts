/**
 * scripts/build-native.mjs never fails an install: whatever goes wrong, it prints one line saying
 * that tap: is unavailable and why, and exits 0. Builds run on a copy of native/tap
 * (TLPWIRE_NATIVE_DIR), so these tests never touch the addon the other tests use.
 */
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../..', import.meta.url).pathname;
const script = join(root, 'scripts', 'build-native.mjs');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function copyOfSources(): string {
  const d = mkdtempSync(join(tmpdir(), 'tlpwire-native-'));
  dirs.push(d);
  for (const f of ['tap.c', 'bulkcopy.c', 'sockfd.c', 'binding.gyp']) copyFileSync(join(root, 'native', 'tap', f), join(d, f));
  return d;
}

function runScript(env: Record<string, string | undefined>): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script], { env: { ...process.env, ...env }, timeout: 240_000 }, (err, stdout) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout });
    });
  });
}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const canBuild = process.platform === 'linux' && has('make') && (has('cc') || has('gcc')) && (has('python3') || has('python'));

describe('scripts/build-native.mjs', () => {
  it('exits 0 with one line when the compiler fails (CC=false)', async () => {
    const dir = copyOfSources();
    const { code, stdout } = await runScript({ CC: 'false', TLPWIRE_NATIVE_DIR: dir });
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tap: is unavailable \(.+\); everything else in tlpwire works without it$/);
    if (canBuild) expect(lines[0]).toContain('compiling failed with CC=false');
    expect(existsSync(join(dir, 'build', 'Release', 'tap.node'))).toBe(false);
    expect(existsSync(join(dir, 'build-native.log'))).toBe(true);
  });

  it('exits 0 with one line when python3, make and a compiler are all missing (no PATH)', async () => {
    const { code, stdout } = await runScript({ PATH: '', CC: undefined, PYTHON: undefined, TLPWIRE_NATIVE_DIR: copyOfSources() });
    expect(code).toBe(0);
    expect(stdout.trim()).toBe('tap: is unavailable (the native build needs python3, make, a C compiler); everything else in tlpwire works without it');
  });

  it('can be skipped', async () => {
    const { code, stdout } = await runScript({ TLPWIRE_SKIP_NATIVE: '1', TLPWIRE_NATIVE_DIR: copyOfSources() });
    expect(code).toBe(0);
    expect(stdout.trim()).toBe('tap: is unavailable (build skipped: TLPWIRE_SKIP_NATIVE is set); everything else in tlpwire works without it');
  });

  const title = canBuild ? 'builds an addon that loads' : 'builds an addon that loads — skipped: needs Linux, python3, make and a C compiler';
  it.skipIf(!canBuild)(title, async () => {
    const dir = copyOfSources();
    const { code, stdout } = await runScript({ TLPWIRE_NATIVE_DIR: dir });
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')).toEqual([
      `tap: native addon built (${join(dir, 'build', 'Release', 'tap.node')})`,
      `bulk copies: native addon built (${join(dir, 'build', 'Release', 'bulkcopy.node')})`,
      `accepted sockets: native addon built (${join(dir, 'build', 'Release', 'sockfd.node')})`,
    ]);
    const out = execFileSync(process.execPath, ['-e', `const m = require(${JSON.stringify(join(dir, 'build', 'Release', 'tap.node'))}); console.log(typeof m.Tap, m.version)`], {
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('function 1');
    const bulk = execFileSync(process.execPath, ['-e', `const m = require(${JSON.stringify(join(dir, 'build', 'Release', 'bulkcopy.node'))}); console.log(typeof m.gather, typeof m.copyMany, typeof m.scanCompletions, typeof m.completionRun, m.version)`], {
      encoding: 'utf8',
    });
    expect(bulk.trim()).toBe('function function function function 4');
    const sockfd = execFileSync(process.execPath, ['-e', `const m = require(${JSON.stringify(join(dir, 'build', 'Release', 'sockfd.node'))}); console.log(typeof m.dupFd, m.version)`], {
      encoding: 'utf8',
    });
    expect(sockfd.trim()).toBe('function 1');
  });
});
