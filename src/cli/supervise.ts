/**
 * Running a long-lived role from the CLI: wait until it ends by itself, a signal arrives
 * (SIGINT/SIGTERM: close cleanly, tell the partner, exit 0) or --exit-after runs out. Prints the
 * run's error, if any, as one line.
 */
import { errorMessage, type Logger } from '../core/index.js';
import type { RunExit } from '../roles/index.js';
import type { CliIo } from './io.js';

export interface Supervised {
  done: Promise<RunExit>;
  close(reason?: string): Promise<void>;
}

export interface SuperviseOptions {
  log: Logger;
  io: CliIo;
  /** Stop (exit 0) after this long. */
  exitAfterNs?: number;
  /** Handle SIGINT/SIGTERM (default true). */
  signals?: boolean;
  /** Give up waiting for a clean close after this long. Default 3 s. */
  closeTimeoutMs?: number;
}

export function supervise(run: Supervised, o: SuperviseOptions): Promise<number> {
  return new Promise<number>((resolve) => {
    let settled = false;
    // RealClock timers are unref'd: while a run only waits (a retry backoff, an idle listener
    // that lost its socket) something must keep the process alive until it is really done.
    const keepAlive = setInterval(() => {}, 1 << 30);
    const timers: NodeJS.Timeout[] = [];
    const onSignal = (signal: NodeJS.Signals): void => {
      o.log.info(`${signal}: shutting down`);
      void finish({ code: 0 }, `${signal === 'SIGINT' ? 'interrupted' : 'terminated'}: shutting down`);
    };
    const cleanup = (): void => {
      clearInterval(keepAlive);
      for (const t of timers) clearTimeout(t);
      if (o.signals ?? true) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    };
    const finish = async (exit: RunExit, reason?: string): Promise<void> => {
      if (settled) return;
      settled = true;
      cleanup();
      try {
        await Promise.race([
          run.close(reason),
          new Promise<void>((r) => {
            const t = setTimeout(r, o.closeTimeoutMs ?? 3000);
            t.unref();
          }),
        ]);
      } catch (e) {
        o.log.warn({ err: errorMessage(e) }, 'closing failed');
      }
      if (exit.error !== undefined) o.io.err(`tlpwire: ${exit.error.message}\n`);
      resolve(exit.code);
    };
    run.done.then(
      (exit) => void finish(exit),
      (e: unknown) => void finish({ code: 1 }, errorMessage(e)),
    );
    if (o.signals ?? true) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }
    if (o.exitAfterNs !== undefined) {
      timers.push(
        setTimeout(() => {
          o.log.info('--exit-after reached: shutting down');
          void finish({ code: 0 }, 'exit-after reached');
        }, o.exitAfterNs / 1e6),
      );
    }
  });
}
