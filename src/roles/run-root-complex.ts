/**
 * `tlpwire rc` as a library call: a root complex that accepts endpoints (or connects to one),
 * enumerates each when its link comes up, optionally dumps config space and runs the link test
 * (and any other host drivers), re-enumerates endpoints that come back, and keeps running until
 * told to stop — or, with `once`, stops after the first endpoint with a pass/fail exit code.
 */
import { writeFile } from 'node:fs/promises';
import { TlpwireError, errorMessage, isTlpwireError, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import {
  enumerateDevice,
  formatBdf,
  formatConfigDump,
  readConfigSpace,
  type AddressRange,
  type AddressWindows,
  type ConfigAccess,
  type EnumeratedFunction,
  type EnumerationResult,
  type TreeBus,
} from '../pci/index.js';
import { DEFAULT_TRANSACTION_CONFIG, type TransactionConfig } from '../transaction/index.js';
import { describeFunction } from './functions.js';
import { isLinkTester, runLinkTest, type LinktestMmio, type LinktestOptions, type LinktestReport, type LinktestTarget } from './linktest.js';
import { StopSignal, dialThenLoop, type RetryPolicy, type RunExit } from './retry.js';
import { RootComplex, type RootPort } from './root-complex.js';

/** What a host-side driver gets for one function (the link test uses the same). */
/** What a host driver gets for one enumerated function. */
export type HostFunctionContext = LinktestTarget & { rootPort: RootPort; rc: RootComplex };

/** A host driver for some functions (the link test is built in; virtio-net plugs in here). */
export interface FunctionDriver {
  name: string;
  matches(fn: EnumeratedFunction): boolean;
  /** Runs after enumeration; `ok: false` makes a `once` run exit 1. */
  run(ctx: HostFunctionContext): Promise<{ ok: boolean; text?: string }>;
}

export interface PortEnumeration {
  port: RootPort;
  result: EnumerationResult;
}

export interface RootComplexRunOptions {
  /** Exactly one of listen / connect. */
  listen?: string;
  connect?: string;
  /** Keep (re)connecting with backoff (connect only). */
  retry?: RetryPolicy;
  memoryBytes: number;
  windows?: Partial<AddressWindows>;
  maxReadRequestSize?: number;
  /** Run the link test on every link tester function found. */
  linktest?: LinktestOptions | false;
  drivers?: readonly FunctionDriver[];
  /** Write every function's 4096-byte config space here (lspci -xxxx format) after each enumeration. */
  dumpConfigPath?: string;
  /** Stop after the first endpoint was enumerated (and tested). */
  once?: boolean;
  clock: Clock;
  rng: Rng;
  logger?: Logger;
  transaction?: Partial<TransactionConfig>;
  onListening?: (url: string) => void;
  onEnumerated?: (e: PortEnumeration, all: readonly PortEnumeration[]) => void;
  onLinktest?: (e: PortEnumeration, report: LinktestReport) => void;
  onDriverResult?: (e: PortEnumeration, fn: EnumeratedFunction, driver: string, result: { ok: boolean; text?: string }) => void;
  onConfigDump?: (path: string, functions: number) => void;
  onPortDown?: (port: RootPort, reason: string) => void;
}

export interface RootComplexHandle {
  rc: RootComplex;
  url: string | undefined;
  done: Promise<RunExit>;
  /** Endpoints enumerated and still connected. */
  enumerations(): PortEnumeration[];
  /** The same, in the shape formatLspciTree takes. */
  treeBuses(): TreeBus[];
  close(reason?: string): Promise<void>;
}

/** Config access through a root port's requester (Type 0: the device on that link). */
export function portConfigAccess(port: RootPort): ConfigAccess {
  return {
    cfgRead: (bdf, reg) => port.tl.requester.cfgRead(bdf, reg),
    cfgWrite: (bdf, reg, value, be) => port.tl.requester.cfgWrite(bdf, reg, value, be),
  };
}

/** CPU MMIO through a root port's requester: loads return all ones on UR, as a CPU's do. */
export function portMmio(port: RootPort): LinktestMmio {
  const r = port.tl.requester;
  return {
    write32: (a, v) => r.cpuWrite(a, v, 4),
    read32: (a) => r.cpuRead32(a),
    write: (a, d) => r.memWrite(a, d),
    read: (a, l) => r.memRead(a, l),
  };
}

export function treeBusesOf(list: readonly PortEnumeration[]): TreeBus[] {
  return list.map((e) => ({ rootPortDevice: e.port.bus - 1, secondaryBus: e.port.bus, functions: e.result.functions }));
}

export async function runRootComplex(o: RootComplexRunOptions): Promise<RootComplexHandle> {
  if ((o.listen === undefined) === (o.connect === undefined)) {
    throw new TlpwireError('ERR_USAGE', 'give exactly one of --listen URL or --connect URL');
  }
  if (o.retry !== undefined && o.connect === undefined) throw new TlpwireError('ERR_USAGE', '--retry needs --connect');
  RootComplex.checkMemorySize(o.memoryBytes);
  const log = (o.logger ?? silentLogger).child({ role: 'rc' });
  const rc = new RootComplex({
    clock: o.clock,
    rng: o.rng,
    logger: o.logger ?? silentLogger,
    memoryBytes: o.memoryBytes,
    ...(o.transaction === undefined ? {} : { transaction: o.transaction }),
  });
  const mps = o.transaction?.maxPayloadSize ?? DEFAULT_TRANSACTION_CONFIG.maxPayloadSize;
  const enumerated = new Map<RootPort, EnumerationResult>();
  const upPorts = new Set<RootPort>();
  const list = (): PortEnumeration[] => [...enumerated.entries()].map(([port, result]) => ({ port, result }));
  const stop = new StopSignal();
  let finish: (exit: RunExit) => void = () => {};
  const done = new Promise<RunExit>((resolve) => {
    finish = resolve;
  });
  let closing: Promise<void> | undefined;
  const close = (reason = 'root complex shutting down'): Promise<void> => {
    closing ??= (async () => {
      stop.stop();
      for (const p of [...rc.ports]) p.stack.close(reason);
      await rc.close();
      finish({ code: 0 });
    })();
    return closing;
  };

  // Enumerations run one at a time: each plans its BARs around the ranges the others hold.
  let queue: Promise<void> = Promise.resolve();
  const serial = <T>(job: () => Promise<T>): Promise<T> => {
    const p = queue.then(job);
    queue = p.then(
      () => {},
      () => {},
    );
    return p;
  };

  const enumerate = (port: RootPort): Promise<EnumerationResult> =>
    serial(async () => {
      const taken: AddressRange[] = [];
      for (const [p, r] of enumerated) if (p !== port) taken.push(...r.ranges);
      const result = await enumerateDevice(portConfigAccess(port), {
        bus: port.bus,
        taken,
        mmio: portMmio(port),
        interrupts: rc.interrupts,
        maxPayloadSize: mps,
        linkMaxPayloadSize: port.stack.link.partner?.maxPayloadSize ?? 4096,
        ...(o.windows === undefined ? {} : { windows: o.windows }),
        ...(o.maxReadRequestSize === undefined ? {} : { maxReadRequestSize: o.maxReadRequestSize }),
        logger: log,
      });
      if (port.stack.link.state === 'up') {
        enumerated.set(port, result);
        // The root port sends this device nothing larger than the MPS its functions were given.
        port.tl.completer.setMaxPayloadSize(Math.min(mps, result.maxPayloadSize));
        const partner = port.stack.link.partner;
        if (partner !== undefined) port.tl.requester.setLinkPartner({ ...partner, maxPayloadSize: Math.min(partner.maxPayloadSize, result.maxPayloadSize) });
      }
      return result;
    });

  const dumpConfig = async (): Promise<void> => {
    if (o.dumpConfigPath === undefined) return;
    const entries = [];
    for (const [port, result] of enumerated) {
      for (const f of result.functions) {
        const config = await readConfigSpace(portConfigAccess(port), f.bdf, 4096);
        entries.push({ bus: f.bus, device: f.device, function: f.function, config, description: describeFunction(f) });
      }
    }
    entries.sort((a, b) => a.bus - b.bus || a.device - b.device || a.function - b.function);
    await writeFile(o.dumpConfigPath, formatConfigDump(entries));
    log.info({ path: o.dumpConfigPath, functions: entries.length }, 'config space dumped');
    o.onConfigDump?.(o.dumpConfigPath, entries.length);
  };

  /** Everything that happens when an endpoint's link comes up; resolves with its pass/fail. */
  const bringUp = async (port: RootPort): Promise<RunExit> => {
    let result: EnumerationResult;
    try {
      result = await enumerate(port);
    } catch (e) {
      const msg = `enumeration of bus ${port.bus.toString(16).padStart(2, '0')} failed: ${errorMessage(e)}`;
      if (isTlpwireError(e, 'ERR_LINK_DOWN')) log.info(msg);
      else log.error(msg);
      return { code: 1, error: new TlpwireError(isTlpwireError(e) ? e.code : 'ERR_INTERNAL', msg) };
    }
    if (result.functions.length === 0) {
      log.warn({ bus: port.bus }, 'no function answered on the new link');
      return { code: 1, error: new TlpwireError('ERR_CONFIG', `nothing answered configuration requests on bus ${port.bus.toString(16).padStart(2, '0')}`) };
    }
    log.info({ bus: port.bus, functions: result.functions.map((f) => formatBdf(f.bdf)) }, 'endpoint enumerated');
    const entry = { port, result };
    o.onEnumerated?.(entry, list());
    let ok = true;
    const problems: string[] = [];
    try {
      await dumpConfig();
    } catch (e) {
      ok = false;
      problems.push(`config dump: ${errorMessage(e)}`);
      log.error({ err: errorMessage(e) }, 'config dump failed');
    }
    const ctx = (fn: EnumeratedFunction): HostFunctionContext => ({
      fn,
      rootPort: port,
      rc,
      port: port.index,
      config: portConfigAccess(port),
      mmio: portMmio(port),
      ram: rc.ram,
      interrupts: rc.interrupts,
      clock: o.clock,
      rng: o.rng,
      logger: log,
    });
    if (o.linktest !== undefined && o.linktest !== false) {
      const testers = result.functions.filter(isLinkTester);
      if (testers.length === 0) {
        ok = false;
        problems.push('no link tester function found');
        log.warn({ bus: port.bus }, 'no link tester function to test');
      }
      for (const fn of testers) {
        const report = await runLinkTest(ctx(fn), o.linktest);
        o.onLinktest?.(entry, report);
        if (!report.passed) {
          ok = false;
          problems.push(`link test of ${formatBdf(fn.bdf)} failed`);
        }
      }
    }
    for (const d of o.drivers ?? []) {
      for (const fn of result.functions.filter((f) => d.matches(f))) {
        let r: { ok: boolean; text?: string };
        try {
          r = await d.run(ctx(fn));
        } catch (e) {
          r = { ok: false, text: errorMessage(e) };
        }
        o.onDriverResult?.(entry, fn, d.name, r);
        if (!r.ok) {
          ok = false;
          problems.push(`${d.name} on ${formatBdf(fn.bdf)}: ${r.text ?? 'failed'}`);
        }
      }
    }
    return ok ? { code: 0 } : { code: 1, error: new TlpwireError('ERR_REQUEST', problems.join('; ')) };
  };

  let firstBringUp: Promise<RunExit> | undefined;
  rc.onPortUp = (port) => {
    upPorts.add(port);
    const job = bringUp(port);
    firstBringUp ??= job;
    void job.then(async (exit) => {
      if (o.once === true && job === firstBringUp) {
        finish(exit);
        await close();
      }
    });
  };
  rc.onPortDown = (port, reason) => {
    const wasUp = upPorts.delete(port);
    const result = enumerated.get(port);
    enumerated.delete(port);
    for (const f of result?.functions ?? []) rc.interrupts.releaseOwner(f.bdf);
    if (!wasUp) {
      // A stranger or a failed handshake: the link layer has logged why.
      log.debug({ remote: port.remote, reason }, 'connection closed before the link came up');
      return;
    }
    if (!stop.requested) {
      log.warn({ bus: port.bus, remote: port.remote, reason }, `endpoint on bus ${port.bus.toString(16).padStart(2, '0')} went away${o.listen !== undefined ? '; waiting for endpoints' : ''}`);
    }
    o.onPortDown?.(port, reason);
  };

  let url: string | undefined;
  if (o.listen !== undefined) {
    url = await rc.listen(o.listen);
    log.info({ url }, 'listening for endpoints');
    o.onListening?.(url);
  } else {
    const target = o.connect!;
    const connectOnce = async (): Promise<{ whenDown(): Promise<string> }> => {
      const port = await rc.connect(target);
      return { whenDown: () => port.stack.link.whenDown() };
    };
    const loop = await dialThenLoop({ what: target, connect: connectOnce, retry: o.retry, once: o.once === true, clock: o.clock, log, stop });
    void loop.done.then(async (exit) => {
      // With `once`, the endpoint's results decide, even when it hung up before they were in.
      finish(o.once === true && firstBringUp !== undefined ? await firstBringUp : exit);
      await close();
    });
  }
  return { rc, url, done, enumerations: list, treeBuses: () => treeBusesOf(list()), close };
}
