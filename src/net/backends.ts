/**
 * Opening the real-world backends from their command-line spellings — `tap:IFNAME` and
 * `udp:LOCALPORT:HOST:PORT` — and wrapping any backend with a pcap capture (`--pcap FILE`).
 * `loopback` and `null` need no system resources and are constructed directly.
 */
import type { Clock, Logger } from '../core/index.js';
import { TlpwireError } from '../core/index.js';
import type { NetBackend } from './backend.js';
import { CapturingBackend, PcapWriter } from './pcap.js';
import { TapBackend } from './tap.js';
import type { TapAddon } from './tap-native.js';
import { UdpBackend, parseUdpSpec } from './udp-backend.js';

export interface RealBackendOptions {
  logger?: Logger;
  /** For tap: set the interface MTU; for udp: the size limit (default 1500). */
  mtu?: number;
  /** tap: called once if the interface disappears. */
  onClosed?: (reason: string) => void;
  /** tap: the addon to use (tests). */
  tapAddon?: TapAddon;
}

/** Whether `spec` names a backend that `openRealBackend` opens. */
export function isRealBackendSpec(spec: string): boolean {
  return spec.startsWith('tap:') || spec.startsWith('udp:');
}

/**
 * Opens `tap:IFNAME` or `udp:…`; returns undefined for any other spec (loopback, null, …) so the
 * caller can handle those. Errors are TlpwireErrors whose message is one line for the user.
 */
export async function openRealBackend(spec: string, opts: RealBackendOptions = {}): Promise<NetBackend | undefined> {
  if (spec.startsWith('tap:')) {
    const ifname = spec.slice(4);
    if (ifname.length === 0) throw new TlpwireError('ERR_USAGE', `tap: expected tap:IFNAME, got '${spec}'`);
    return TapBackend.open({
      ifname,
      ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
      ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
      ...(opts.onClosed !== undefined ? { onClosed: opts.onClosed } : {}),
      ...(opts.tapAddon !== undefined ? { addon: opts.tapAddon } : {}),
    });
  }
  if (spec.startsWith('udp:')) {
    const parsed = parseUdpSpec(spec);
    return UdpBackend.open(parsed, {
      ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
      ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    });
  }
  return undefined;
}

export interface PcapCaptureOptions {
  clock: Clock;
  /** Unix time in ns minus clock.nowNs(); the real runtime uses wallClockEpochOffsetNs(clock, Date.now()). */
  epochOffsetNs?: bigint | number;
  logger?: Logger;
}

/** `--pcap FILE`: records every frame crossing `backend`; closing the result closes the file. */
export async function withPcap(backend: NetBackend, path: string, opts: PcapCaptureOptions): Promise<CapturingBackend> {
  const writer = await PcapWriter.open(path, {
    clock: opts.clock,
    ...(opts.epochOffsetNs !== undefined ? { epochOffsetNs: opts.epochOffsetNs } : {}),
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
  });
  return new CapturingBackend(backend, writer);
}
