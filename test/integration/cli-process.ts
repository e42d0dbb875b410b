/**
 * Real `tlpwire` processes for integration tests, started from source (test/fixtures/tlpwire-cli.ts
 * under tsx, so no build is needed): their stdout lines, their stderr, their exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface CliProcess {
  proc: ChildProcess;
  stdout: string[];
  stderr: () => string;
  /** Resolves with the first stdout line matching `re` (rejects after `timeoutMs` or on exit). */
  line(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Resolves once `n` stdout lines match `re`. */
  lines(re: RegExp, n: number, timeoutMs?: number): Promise<void>;
  /** Resolves when stderr contains `text` (log lines). */
  logged(text: string, timeoutMs?: number): Promise<void>;
  exited: Promise<number | NodeJS.Signals>;
  kill(signal?: NodeJS.Signals): void;
}

const started: CliProcess[] = [];

export function startCli(args: readonly string[]): CliProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/tlpwire-cli.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  let err = '';
  let partial = '';
  const waiters = new Set<() => void>();
  const poke = (): void => {
    for (const w of [...waiters]) w();
  };
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    stdout.push(...parts);
    poke();
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    err += chunk;
    poke();
  });
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    proc.on('exit', (code, signal) => {
      if (partial !== '') stdout.push(partial);
      resolve(code ?? signal ?? 'SIGKILL');
      poke();
    });
  });
  let done = false;
  void exited.then(() => (done = true));
  const waitFor = <T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const test = (): void => {
        const v = check();
        if (v !== undefined) {
          finish();
          resolve(v);
        } else if (done) {
          finish();
          reject(new Error(`process exited before ${what}; stdout:\n${stdout.join('\n')}\nstderr:\n${err}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting for ${what}; stdout:\n${stdout.join('\n')}\nstderr:\n${err}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        waiters.delete(test);
      };
      waiters.add(test);
      test();
    });
  const p: CliProcess = {
    proc,
    stdout,
    stderr: () => err,
    line: (re, timeoutMs = 20_000) =>
      waitFor(
        () => {
          for (const l of stdout) {
            const m = re.exec(l);
            if (m !== null) return m;
          }
          return undefined;
        },
        `a line matching ${re}`,
        timeoutMs,
      ),
    lines: (re, n, timeoutMs = 20_000) =>
      waitFor(() => (stdout.filter((l) => re.test(l)).length >= n ? true : undefined), `${n} lines matching ${re}`, timeoutMs).then(() => {}),
    logged: (text, timeoutMs = 20_000) => waitFor(() => (err.includes(text) ? true : undefined), `log "${text}"`, timeoutMs).then(() => {}),
    exited,
    kill: (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
  started.push(p);
  return p;
}

/** Kills whatever a test left running (call in afterEach). */
export async function killAll(): Promise<void> {
  const left = started.splice(0);
  for (const p of left) p.kill('SIGKILL');
  await Promise.all(left.map((p) => p.exited));
}

/** Log lines (JSON, one per line) of a process's stderr. */
export function logLines(stderr: string): { msg?: string; level?: number; [k: string]: unknown }[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; level?: number });
}
