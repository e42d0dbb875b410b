import { TlpwireError, silentLogger, type Clock, type Logger } from '../core/index.js';
import { LoopbackBackend, NullBackend, isRealBackendSpec, openRealBackend, withPcap, wallClockEpochOffsetNs, type NetBackend } from '../net/index.js';
import { registerFunctionKind, type FunctionSpec } from './functions.js';
import { VirtioNetCard } from './virtio-net-card.js';

/** The parameters `--function virtio-net:key=value,…` takes (the ep's flags fill the defaults). */
export const VIRTIO_NET_PARAMS = ['backend', 'order-platform', 'access-platform', 'device-platform', 'device-barriers', 'mac', 'mtu', 'queue-size', 'pcap'] as const;

function onOff(params: Readonly<Record<string, string>>, key: string, dflt: boolean): boolean {
  const v = params[key];
  if (v === undefined) return dflt;
  if (v === 'on') return true;
  if (v === 'off') return false;
  throw new TlpwireError('ERR_USAGE', `${key}=${v}: expected on or off`);
}

function oneOf<T extends string>(params: Readonly<Record<string, string>>, key: string, allowed: readonly T[], dflt: T): T {
  const v = params[key];
  if (v === undefined) return dflt;
  if ((allowed as readonly string[]).includes(v)) return v as T;
  throw new TlpwireError('ERR_USAGE', `${key}=${v}: expected ${allowed.join(' or ')}`);
}

export function parseMac(text: string): Uint8Array {
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(text);
  if (m === null) throw new TlpwireError('ERR_USAGE', `mac=${text}: expected six hex bytes like 52:54:00:12:34:56`);
  const b = Uint8Array.from([m[1], m[3], m[4], m[5], m[6], m[7]].map((h) => parseInt(h!, 16)));
  if ((b[0]! & 1) !== 0) throw new TlpwireError('ERR_USAGE', `mac=${text} is a multicast address`);
  return b;
}

function checkParams(params: Readonly<Record<string, string>>): void {
  for (const k of Object.keys(params)) {
    if (!(VIRTIO_NET_PARAMS as readonly string[]).includes(k)) {
      throw new TlpwireError('ERR_USAGE', `--function virtio-net: unknown parameter "${k}" (known: ${VIRTIO_NET_PARAMS.join(', ')})`);
    }
  }
}

/**
 * Opens the backends of the virtio-net functions that need I/O (tap:, udp:, --pcap) before the
 * device is built, so a missing TAP or a busy port is a clear start-up error.
 */
export async function openNetBackends(specs: readonly FunctionSpec[], clock: Clock, logger: Logger = silentLogger): Promise<Map<number, NetBackend>> {
  const out = new Map<number, NetBackend>();
  try {
    for (const [n, spec] of specs.entries()) {
      if (spec.kind !== 'virtio-net') continue;
      const params = spec.params ?? {};
      checkParams(params);
      const name = params.backend ?? 'loopback';
      const mtu = params.mtu === undefined ? undefined : Number(params.mtu);
      let backend: NetBackend | undefined;
      if (isRealBackendSpec(name)) {
        backend = await openRealBackend(name, { logger: logger.child({ fn: n }), ...(mtu === undefined ? {} : { mtu }) });
      } else if (params.pcap !== undefined) {
        backend = localBackend(name, clock);
      }
      if (backend !== undefined && params.pcap !== undefined) {
        backend = await withPcap(backend, params.pcap, { clock, epochOffsetNs: wallClockEpochOffsetNs(clock, Date.now()), logger });
      }
      if (backend !== undefined) out.set(n, backend);
    }
  } catch (e) {
    for (const b of out.values()) void b.close();
    throw e;
  }
  return out;
}

function localBackend(name: string, clock: Clock): NetBackend {
  if (name === 'loopback') return new LoopbackBackend(clock);
  if (name === 'null') return new NullBackend();
  throw new TlpwireError('ERR_USAGE', `backend=${name}: expected loopback, null, tap:IFNAME or udp:LOCALPORT:HOST:PORT`);
}

registerFunctionKind(
  'virtio-net',
  'a virtio-net card (virtio 1.x over PCI, offers ACCESS_PLATFORM and ORDER_PLATFORM); backend=loopback|null|tap:IF|udp:…, order-platform=on|off, access-platform=on|off, device-platform=tso|weak, mac=…, mtu=…',
  (ctx) => {
    const p = ctx.params;
    checkParams(p);
    const backend = ctx.netBackend ?? localBackend(p.backend ?? 'loopback', ctx.clock);
    const mtu = p.mtu === undefined ? undefined : Number(p.mtu);
    if (mtu !== undefined && !(Number.isInteger(mtu) && mtu >= 68 && mtu <= 65_000)) throw new TlpwireError('ERR_USAGE', `mtu=${p.mtu}: expected 68..65000`);
    const queueSize = p['queue-size'] === undefined ? undefined : Number(p['queue-size']);
    if (queueSize !== undefined && !(Number.isInteger(queueSize) && queueSize >= 2 && queueSize <= 32768 && (queueSize & (queueSize - 1)) === 0)) {
      throw new TlpwireError('ERR_USAGE', `queue-size=${p['queue-size']}: expected a power of two 2..32768`);
    }
    const mac = p.mac === undefined ? Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56 + ctx.number) : parseMac(p.mac);
    const card = new VirtioNetCard({
      clock: ctx.clock,
      rng: ctx.rng,
      logger: ctx.logger,
      backend,
      mac,
      ...(mtu === undefined ? {} : { mtu }),
      ...(queueSize === undefined ? {} : { queueSize }),
      devicePlatform: oneOf(p, 'device-platform', ['tso', 'weak'], 'weak'),
      deviceBarriers: oneOf(p, 'device-barriers', ['weak', 'strict'], 'strict'),
      orderPlatform: onOff(p, 'order-platform', true),
      accessPlatform: onOff(p, 'access-platform', true),
      serialNumber: ctx.serialNumber,
    });
    card.bindDma(ctx.dma);
    const feats = [onOff(p, 'access-platform', true) ? 'ACCESS_PLATFORM' : '', onOff(p, 'order-platform', true) ? 'ORDER_PLATFORM' : ''].filter(Boolean);
    return {
      kind: 'virtio-net',
      pci: card.pci,
      description: `virtio-net ${[...mac].map((b) => b.toString(16).padStart(2, '0')).join(':')} backend ${backend.name}, offers ${feats.join(' + ') || 'neither ACCESS_PLATFORM nor ORDER_PLATFORM'}`,
      close: () => {
        void backend.close();
      },
    };
  },
);


