/**
 * A root complex and an endpoint joined by an in-memory link under the VirtualClock, for
 * deterministic end-to-end tests of enumeration, the link tester and error reporting.
 */
import { SeededRng, type Logger } from '../../src/core/index.js';
import { createMemoryTransportPair, type MemoryTransport } from '../../src/link/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import {
  Endpoint,
  RootComplex,
  buildDevice,
  portConfigAccess,
  portMmio,
  type BuiltDevice,
  type FunctionSpec,
  type RootPort,
} from '../../src/roles/index.js';
import type { ConfigAccess } from '../../src/pci/index.js';
import type { LinktestMmio } from '../../src/roles/index.js';

/**
 * Runs the virtual clock until `p` settles; between events the microtask queue gets a few turns
 * so promise chains advance at the instant that resolved them. Throws on a hang.
 */
export async function settle<T>(clock: VirtualClock, p: Promise<T>, maxEvents = 50_000_000): Promise<T> {
  let done = false;
  const watched = p.finally(() => {
    done = true;
  });
  watched.catch(() => {});
  let events = 0;
  for (;;) {
    for (let hop = 0; hop < 16 && !done; hop++) await Promise.resolve();
    if (done) break;
    if (!clock.step()) {
      await new Promise((r) => setImmediate(r));
      if (done) break;
      if (clock.pending === 0) throw new Error(`simulation idle at ${clock.nowNs()} ns with the promise still pending`);
    }
    if (++events > maxEvents) throw new Error('simulation did not settle');
  }
  return watched;
}

export interface SimPair {
  clock: VirtualClock;
  rng: SeededRng;
  rc: RootComplex;
  ep: Endpoint;
  built: BuiltDevice;
  port: RootPort;
  rcTransport: MemoryTransport;
  epTransport: MemoryTransport;
  config: ConfigAccess;
  mmio: LinktestMmio;
  settle<T>(p: Promise<T>): Promise<T>;
  /** Lets `ns` of virtual time pass (default 1 ms): whatever is in flight lands. */
  idle(ns?: number): Promise<void>;
}

export interface SimOptions {
  functions?: FunctionSpec[];
  memoryBytes?: number;
  latencyNs?: number;
  seed?: number;
  logger?: Logger;
}

export async function simPair(o: SimOptions = {}): Promise<SimPair> {
  const clock = new VirtualClock();
  const rng = new SeededRng(o.seed ?? 1);
  const logger = o.logger;
  const rc = new RootComplex({ clock, rng: rng.fork(), memoryBytes: o.memoryBytes ?? 64 << 20, ...(logger ? { logger } : {}) });
  const built = buildDevice(o.functions ?? [{ kind: 'linktest' }], { clock, rng: rng.fork(), ...(logger ? { logger } : {}) });
  const ep = new Endpoint({ clock, rng: rng.fork(), device: built.device, ...(logger ? { logger } : {}) });
  built.bindEndpoint(ep);
  const [rcTransport, epTransport] = createMemoryTransportPair(clock, { latencyNs: o.latencyNs ?? 2_000, names: ['rc', 'ep'] });
  const port = rc.attach(rcTransport);
  ep.attach(epTransport);
  const s = <T>(p: Promise<T>): Promise<T> => settle(clock, p);
  await s(port.stack.link.whenUp());
  const idle = (ns = 1_000_000): Promise<void> => s(new Promise<void>((r) => clock.setTimer(ns, r)));
  return { clock, rng, rc, ep, built, port, rcTransport, epTransport, config: portConfigAccess(port), mmio: portMmio(port), settle: s, idle };
}
