/**
 * Parsing of the values users type: sizes (64M), durations (500ms), link URLs, --retry,
 * --function specs, address windows. Every failure is a TlpwireError('ERR_USAGE' / 'ERR_BAD_URL')
 * whose message is one line naming the flag and what was expected.
 */
import { TlpwireError } from '../core/index.js';
import { parseLinkUrl } from '../link/index.js';
import type { AddressWindow } from '../pci/index.js';
import type { FunctionSpec, RetryPolicy } from '../roles/index.js';

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * A byte count: a number with an optional binary unit, "64M", "64MiB", "512k", "1G", "4096",
 * "0x1000". Units are powers of 1024 (M = MiB), as for RAM.
 */
export function parseSize(text: string, flag: string): number {
  const t = text.trim();
  const hex = /^0x([0-9a-f]+)$/i.exec(t);
  if (hex !== null) return checkSize(parseInt(hex[1]!, 16), text, flag);
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(t);
  if (m === null) {
    throw new TlpwireError('ERR_USAGE', `${flag}: bad size ${JSON.stringify(text)} (expected a number with an optional K, M, G or T suffix, e.g. 64M)`);
  }
  const unit = SIZE_UNITS[m[2]!.toLowerCase()] ?? 1;
  return checkSize(Number(m[1]) * unit, text, flag);
}

function checkSize(n: number, text: string, flag: string): number {
  if (!Number.isSafeInteger(n)) throw new TlpwireError('ERR_USAGE', `${flag}: ${JSON.stringify(text)} is not a whole number of bytes`);
  return n;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** A duration in nanoseconds: "500ms", "2s", "1.5s", "3m"; a bare number is seconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new TlpwireError('ERR_USAGE', `${flag}: bad duration ${JSON.stringify(text)} (e.g. 500ms, 2s, 1m)`);
  const ns = Number(m[1]) * (DURATION_UNITS[m[2] ?? 's'] ?? 1e9);
  if (!Number.isFinite(ns) || ns <= 0) throw new TlpwireError('ERR_USAGE', `${flag}: duration must be positive, got ${JSON.stringify(text)}`);
  return Math.round(ns);
}

/** Checks a link URL now (ERR_BAD_URL with the reason) so that a typo fails before anything starts. */
export function parseUrl(text: string, flag: string): string {
  try {
    parseLinkUrl(text);
  } catch (e) {
    if (e instanceof TlpwireError) throw new TlpwireError('ERR_BAD_URL', `${flag}: ${e.message}`);
    throw e;
  }
  return text;
}

/**
 * `--retry` (keep trying, forever) or `--retry N` (N more attempts), with exponential backoff
 * from 100 ms, doubling, capped at `maxDelayNs` (default 5 s).
 */
export function parseRetry(value: string | boolean | undefined, maxDelayNs?: number): RetryPolicy | undefined {
  if (value === undefined || value === false) return undefined;
  const base = { initialDelayNs: 100_000_000, maxDelayNs: maxDelayNs ?? 5_000_000_000 };
  if (value === true) return { retries: Infinity, ...base };
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new TlpwireError('ERR_USAGE', `--retry: expected a count of retries, got ${JSON.stringify(value)}`);
  return { retries: n, ...base };
}

/** "linktest", "linktest:msix=64,bars=64". */
export function parseFunctionSpec(text: string): FunctionSpec {
  const [kind = '', rest] = text.split(/:(.*)/s, 2);
  if (!/^[a-z][a-z0-9-]*$/.test(kind)) throw new TlpwireError('ERR_USAGE', `--function: bad function ${JSON.stringify(text)} (e.g. linktest or linktest:msix=64)`);
  const params: Record<string, string> = {};
  if (rest !== undefined && rest !== '') {
    for (const part of rest.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new TlpwireError('ERR_USAGE', `--function ${kind}: expected key=value, got ${JSON.stringify(part)}`);
      params[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
  }
  return { kind, params };
}

function parseAddress(text: string, flag: string): number {
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t.slice(2), 16) : /^[0-9]+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n)) throw new TlpwireError('ERR_USAGE', `${flag}: bad address ${JSON.stringify(text)} (e.g. 0xc0000000)`);
  return n;
}

/** An address window: "BASE-LIMIT" (limit exclusive) or "BASE+SIZE", e.g. 0xc0000000+512M. */
export function parseWindow(text: string, flag: string): AddressWindow {
  const plus = text.indexOf('+');
  const dash = text.indexOf('-');
  let base: number;
  let limit: number;
  if (plus > 0) {
    base = parseAddress(text.slice(0, plus), flag);
    limit = base + parseSize(text.slice(plus + 1), flag);
  } else if (dash > 0) {
    base = parseAddress(text.slice(0, dash), flag);
    limit = parseAddress(text.slice(dash + 1), flag);
  } else {
    throw new TlpwireError('ERR_USAGE', `${flag}: expected BASE+SIZE or BASE-LIMIT, e.g. 0xc0000000+512M`);
  }
  if (!(limit > base) || !Number.isSafeInteger(limit)) throw new TlpwireError('ERR_USAGE', `${flag}: the window ${JSON.stringify(text)} is empty or too large`);
  return { base, limit };
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function parseLogLevel(text: string): LogLevel {
  const l = text.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(l)) {
    throw new TlpwireError('ERR_USAGE', `--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(text)}`);
  }
  return l as LogLevel;
}

/** For repeatable options: commander calls it with each value and the list so far. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
