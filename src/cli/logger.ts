/**
 * The CLI's logger: pino, one JSON object per line, or pino-pretty's one-line-per-event text
 * when a person is watching. Logs go to the error stream (io.err), so that what a command
 * prints as its result (the tree, the link-test table) stays clean on stdout for pipes.
 *
 * Writes are synchronous through `io.err`: no worker thread, nothing lost when the process exits
 * right after a log line, and tests capture logs with their own CliIo.
 */
import pino from 'pino';
import pretty from 'pino-pretty';
import type { Logger } from '../core/index.js';
import type { CliIo } from './io.js';
import type { LogLevel } from './options.js';

export type LogFormat = 'json' | 'pretty' | 'auto';

export interface CliLoggerOptions {
  level: LogLevel;
  io: CliIo;
  /** 'auto' (default): pretty when `tty` says the log stream is a terminal. */
  format?: LogFormat;
  /** Whether the log stream is a terminal (default: process.stderr.isTTY). */
  tty?: boolean;
  /** Bound to every line (e.g. { process: 'rc' }). */
  bindings?: Record<string, unknown>;
}

export function createCliLogger(o: CliLoggerOptions): Logger {
  const tty = o.tty ?? process.stderr.isTTY === true;
  const usePretty = o.format === 'pretty' || ((o.format ?? 'auto') === 'auto' && tty);
  const prettify = usePretty
    ? pretty.prettyFactory({ colorize: tty, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true })
    : undefined;
  const destination = {
    write(line: string): void {
      o.io.err(prettify === undefined ? line : prettify(line));
    },
  };
  const logger = pino(
    {
      level: o.level,
      base: { pid: process.pid, ...o.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
  return logger;
}
