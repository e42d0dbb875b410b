/**
 * Building the endpoint's PCI device from `--function` options. Each kind registers a factory;
 * `buildDevice` makes function n from the n-th spec (several → a multi-function device).
 *
 *   tlpwire ep --function linktest                    one link tester (the default)
 *   tlpwire ep --function linktest --function linktest:msix=64,bars=64
 *
 * A function's DMA port is bound late (`bindEndpoint`): the Endpoint is built around the device,
 * and each function's requests must go through that Endpoint's `dmaPort(n)` (its Requester ID,
 * its Bus Master Enable).
 */
import { TlpwireError, errorMessage, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import type { DmaPort } from '../memory/index.js';
import {
  LinkTesterFunction,
  PciDevice,
  describeFunctionIds,
  functionInterrupts,
  type EnumeratedFunction,
  type LinkTesterIrq,
  type PciFunction,
} from '../pci/index.js';
import { PCI_EPF_TEST_HOWTO_IDS, PCI_MSIX_MAX_VECTORS } from '../spec/index.js';
import type { Endpoint } from './endpoint.js';
import type { NetBackend } from '../net/index.js';

/** One `--function` value: a kind and its `key=value` parameters. */
export interface FunctionSpec {
  kind: string;
  params?: Readonly<Record<string, string>>;
}

/** What a factory gets. */
export interface FunctionBuildContext {
  /** Function number 0..7. */
  number: number;
  params: Readonly<Record<string, string>>;
  /** DMA as this function (late-bound to the endpoint; rejects until the endpoint is bound). */
  dma: DmaPort;
  clock: Clock;
  rng: Rng;
  logger: Logger;
  /** A Device Serial Number unique to this function of this process. */
  serialNumber: bigint;
  /** A network backend opened for this function beforehand (tap:, udp:, with --pcap). */
  netBackend?: NetBackend;
}

/** A function as the endpoint hosts it. */
export interface HostedFunction {
  kind: string;
  pci: PciFunction;
  /** One line for logs. */
  description: string;
  /** Stops background work (the endpoint is shutting down). */
  close?(): void;
}

export type FunctionFactory = (ctx: FunctionBuildContext) => HostedFunction;

const factories = new Map<string, { factory: FunctionFactory; help: string }>();

/** Adds a function kind (`virtio-net` registers itself this way). */
export function registerFunctionKind(kind: string, help: string, factory: FunctionFactory): void {
  factories.set(kind, { factory, help });
}

/** The registered kinds with a one-line description each. */
export function functionKinds(): { kind: string; help: string }[] {
  return [...factories.entries()].map(([kind, v]) => ({ kind, help: v.help }));
}

export interface BuildDeviceOptions {
  clock: Clock;
  rng: Rng;
  logger?: Logger;
  /** Serial numbers are base + function number. Default: "tlpw" in ASCII in the upper half. */
  serialBase?: bigint;
  /** Backends opened beforehand, by function number. */
  netBackends?: ReadonlyMap<number, NetBackend>;
}

export interface BuiltDevice {
  device: PciDevice;
  functions: HostedFunction[];
  /** Routes every function's DMA through `endpoint.dmaPort(n)`. */
  bindEndpoint(endpoint: Endpoint): void;
  close(): void;
}

const DEFAULT_SERIAL_BASE = 0x746c_7077_0000_0000n;

/** Builds the device: function n from specs[n]. Throws ERR_USAGE for an unknown kind or bad parameter. */
export function buildDevice(specs: readonly FunctionSpec[], options: BuildDeviceOptions): BuiltDevice {
  if (specs.length === 0) throw new TlpwireError('ERR_USAGE', 'an endpoint needs at least one --function');
  if (specs.length > 8) throw new TlpwireError('ERR_USAGE', `a device has at most 8 functions, ${specs.length} were given`);
  const log = options.logger ?? silentLogger;
  let endpoint: Endpoint | undefined;
  const lateDma = (n: number): DmaPort => ({
    read: (address, length) =>
      endpoint === undefined ? Promise.reject(new TlpwireError('ERR_LINK_DOWN', 'function not attached to an endpoint')) : endpoint.dmaPort(n).read(address, length),
    write: (address, data, o) =>
      endpoint === undefined ? Promise.reject(new TlpwireError('ERR_LINK_DOWN', 'function not attached to an endpoint')) : endpoint.dmaPort(n).write(address, data, o),
  });
  const functions = specs.map((spec, n) => {
    const entry = factories.get(spec.kind);
    if (entry === undefined) {
      throw new TlpwireError('ERR_USAGE', `unknown function kind "${spec.kind}" (known: ${[...factories.keys()].join(', ')})`);
    }
    return entry.factory({
      number: n,
      params: spec.params ?? {},
      dma: lateDma(n),
      clock: options.clock,
      rng: options.rng,
      logger: log.child({ fn: n, kind: spec.kind }),
      serialNumber: (options.serialBase ?? DEFAULT_SERIAL_BASE) + BigInt(n),
      ...(options.netBackends?.get(n) === undefined ? {} : { netBackend: options.netBackends.get(n)! }),
    });
  });
  return {
    device: new PciDevice(functions.map((f) => f.pci)),
    functions,
    bindEndpoint(ep: Endpoint): void {
      endpoint = ep;
    },
    close(): void {
      for (const f of functions) f.close?.();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// parameters

function intParam(params: Readonly<Record<string, string>>, key: string, min: number, max: number, dflt: number): number {
  const raw = params[key];
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) throw new TlpwireError('ERR_USAGE', `${key}=${raw}: expected an integer ${min}..${max}`);
  return v;
}

function checkKeys(kind: string, params: Readonly<Record<string, string>>, known: readonly string[]): void {
  for (const k of Object.keys(params)) {
    if (!known.includes(k)) throw new TlpwireError('ERR_USAGE', `--function ${kind}: unknown parameter "${k}" (known: ${known.join(', ')})`);
  }
}

// ---------------------------------------------------------------------------------------------
// the link tester

const LINKTEST_PARAMS = ['msix', 'msi', 'bars'] as const;

function buildLinkTester(ctx: FunctionBuildContext): HostedFunction {
  checkKeys('linktest', ctx.params, LINKTEST_PARAMS);
  const msixVectors = intParam(ctx.params, 'msix', 0, PCI_MSIX_MAX_VECTORS, 32);
  const msiVectors = intParam(ctx.params, 'msi', 0, 32, 32);
  if (msiVectors !== 0 && (msiVectors & (msiVectors - 1)) !== 0) throw new TlpwireError('ERR_USAGE', `msi=${msiVectors}: MSI vector counts are powers of two`);
  const bars = ctx.params['bars'] ?? '32';
  if (bars !== '32' && bars !== '64') throw new TlpwireError('ERR_USAGE', `bars=${bars}: expected 32 or 64`);
  const log = ctx.logger;
  let irq: LinkTesterIrq | undefined;
  const tester = new LinkTesterFunction({
    dma: { read: (a, l) => ctx.dma.read(a, l), write: async (a, d) => ctx.dma.write(a, d) },
    irq: { raise: (type, number) => irq?.raise(type, number) ?? Promise.resolve() },
    rng: ctx.rng,
    clock: ctx.clock,
    msixVectors,
    msiVectors,
    barKind: bars === '64' ? 'mem64' : 'mem32',
    serialNumber: ctx.serialNumber,
  });
  // Interrupt messages are DMA writes of the function (its Requester ID, its Bus Master Enable).
  irq = functionInterrupts(tester.pci, async (address, data) => ctx.dma.write(address, data));
  tester.onCommandWritten = () => {
    tester.processCommand().then(
      (outcomes) => {
        for (const o of outcomes) {
          if (o.op.ok) log.debug({ command: o.op.op.kind, size: o.op.op.size, status: `0x${o.status.toString(16)}`, irq: o.irqRaised }, 'link test command done');
          else log.warn({ reason: o.op.reason }, 'link test command refused');
        }
      },
      (e: unknown) => log.error({ err: errorMessage(e) }, 'link test command failed'),
    );
  };
  return {
    kind: 'linktest',
    pci: tester.pci,
    description: `link tester (pci-epf-test registers), ${msixVectors} MSI-X / ${msiVectors} MSI vectors, ${bars}-bit BARs`,
  };
}

registerFunctionKind('linktest', "Linux's PCI endpoint test function (pcitest): BAR, interrupt and DMA tests; msix=N, msi=N, bars=32|64", buildLinkTester);

// ---------------------------------------------------------------------------------------------
// names for the tree

const KNOWN: ReadonlyMap<string, string> = new Map([
  [`${PCI_EPF_TEST_HOWTO_IDS.VENDOR_ID}:${PCI_EPF_TEST_HOWTO_IDS.DEVICE_ID}`, 'PCI endpoint test function (tlpwire link tester)'],
  [`${0x1af4}:${0x1041}`, 'Virtio network device'],
]);

/** "104c:b500 [ff00] PCI endpoint test function (tlpwire link tester)" — IDs, class, and a name when known. */
export function describeFunction(f: EnumeratedFunction): string {
  const name = KNOWN.get(`${f.vendorId}:${f.deviceId}`);
  return name === undefined ? describeFunctionIds(f) : `${describeFunctionIds(f)} ${name}`;
}
