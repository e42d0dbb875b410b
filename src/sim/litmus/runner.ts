/**
 * Runs a litmus test many times, each run a fresh world (createLitmusEnv) seeded from the run
 * seed, and counts the final states the way litmus7 does: a histogram, how many runs satisfied
 * the condition (Positive) and how many did not (Negative), and the observation
 * (Never / Sometimes / Always).
 */
import { TlpwireError, errorMessage, type Rng } from '../../core/index.js';
import type { CpuBarrierKind, DeviceBarrierKind, DeviceEngine, HostCpu, HostRam, MemoryPlatform } from '../../memory/index.js';
import {
  expectedObservation,
  maxValueOfSize,
  platformPair,
  resolveLitmusTest,
  type LitmusDevice,
  type LitmusHost,
  type LitmusObservation,
  type LitmusProgram,
  type LitmusTest,
  type ResolvedLitmusTest,
  type ResolvedLocation,
  type ResolvedRegister,
} from './api.js';
import { createLitmusEnv, LITMUS_MSIX_ADDRESS, type LitmusEnv } from './env.js';
import { le32, runToEnd } from './fabric.js';

export interface LitmusRunOptions {
  hostPlatform: MemoryPlatform;
  devicePlatform: MemoryPlatform;
  /** Runs of the test (each a fresh world). */
  iterations: number;
  /** The seed: the same seed gives the same histogram. */
  seed: number;
  /** Bound on events in one run (default 100 000): a program that never ends fails fast. */
  maxEventsPerRun?: number;
}

/** One final state and how many runs ended in it. */
export interface LitmusHistogramEntry {
  /** As litmus7 prints it: "flag=1; data=0;". */
  state: string;
  /** The same, as values (null: the name was not recorded in those runs). */
  values: Record<string, number | null>;
  count: number;
  /** Whether the state satisfies the condition (litmus7's `*>`). */
  satisfies: boolean;
}

export interface LitmusResult {
  name: string;
  description: string | null;
  /** The condition as printed: `exists (…)`. */
  condition: string;
  hostPlatform: MemoryPlatform;
  devicePlatform: MemoryPlatform;
  iterations: number;
  seed: number;
  /** States in a stable order (by name, then value). */
  histogram: LitmusHistogramEntry[];
  positive: number;
  negative: number;
  observation: LitmusObservation;
  /** What the test expects on this platform pair (null when it says nothing). */
  expected: LitmusObservation | null;
  /** observation === expected (null when nothing is expected). */
  matches: boolean | null;
}

const DEFAULT_MAX_EVENTS_PER_RUN = 100_000;
const MAX_ITERATIONS = 100_000_000;

/** FNV-1a of the test name: each test's runs have their own seeds, whatever else is run. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The seed of run `i` of test `name` under `seed`. Depends only on these three, so a test gives
 * the same histogram alone or among others.
 */
export function litmusRunSeed(seed: number, name: string, i: number): number {
  const base = (nameHash(name) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  return (base + Math.imul(i, 0x632be5ab)) >>> 0;
}

/** The verdict litmus7 gives for P positive and N negative runs. */
export function observationOf(positive: number, negative: number): LitmusObservation {
  if (positive === 0) return 'Never';
  if (negative === 0) return 'Always';
  return 'Sometimes';
}

function usage(message: string, cause?: unknown): TlpwireError {
  return new TlpwireError('ERR_USAGE', message, cause === undefined ? undefined : { cause });
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** The values recorded in one run. */
class Recorder {
  readonly values = new Map<string, number>();
  private readonly owner = new Map<string, string>();

  constructor(private readonly observed: readonly string[] | undefined) {}

  set(side: string, name: string, value: unknown): void {
    if (typeof name !== 'string' || name === '') throw usage(`${side}: set needs a name`);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw usage(`${side}: set(${JSON.stringify(name)}) needs a finite number, got ${String(value)}`);
    if (this.observed !== undefined && !this.observed.includes(name)) {
      throw usage(`${side}: ${JSON.stringify(name)} is not one of the observed names (${this.observed.join(', ')})`);
    }
    const o = this.owner.get(name);
    if (o !== undefined && o !== side) throw usage(`${side}: ${JSON.stringify(name)} is already recorded by the ${o} (use distinct names on the two sides)`);
    this.owner.set(name, side);
    this.values.set(name, value);
  }

  /** Merges what a program returned. */
  merge(side: string, result: unknown): void {
    if (result === undefined || result === null) return;
    if (typeof result !== 'object' || Array.isArray(result)) throw usage(`${side} program returned ${String(result)}; return nothing or an object of numbers`);
    for (const [k, v] of Object.entries(result)) this.set(side, k, v);
  }
}

function readLocation(ram: HostRam, l: ResolvedLocation): number {
  switch (l.size) {
    case 1:
      return ram.read8(l.address);
    case 2:
      return ram.read16(l.address);
    case 4:
      return ram.read32(l.address);
    case 8:
      return ram.read64(l.address);
  }
}

function writeLocation(ram: HostRam, l: ResolvedLocation, v: number): void {
  switch (l.size) {
    case 1:
      return ram.write8(l.address, v);
    case 2:
      return ram.write16(l.address, v);
    case 4:
      return ram.write32(l.address, v);
    case 8:
      return ram.write64(l.address, v);
  }
}

function encodeLe(v: number, size: 1 | 2 | 4 | 8): Uint8Array {
  const b = new Uint8Array(size);
  const view = new DataView(b.buffer);
  if (size === 1) view.setUint8(0, v);
  else if (size === 2) view.setUint16(0, v, true);
  else if (size === 4) view.setUint32(0, v, true);
  else {
    view.setUint32(0, v >>> 0, true);
    view.setUint32(4, Math.floor(v / 0x1_0000_0000), true);
  }
  return b;
}

function decodeLe(b: Uint8Array, size: 1 | 2 | 4 | 8): number {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (size === 1) return view.getUint8(0);
  if (size === 2) return view.getUint16(0, true);
  if (size === 4) return view.getUint32(0, true);
  return view.getUint32(0, true) + view.getUint32(4, true) * 0x1_0000_0000;
}

/** What both sides share: locations, registers, time, randomness, the recorder. */
class SideBase {
  constructor(
    protected readonly env: LitmusEnv,
    protected readonly r: ResolvedLitmusTest,
    protected readonly rec: Recorder,
    protected readonly side: 'host' | 'device',
    readonly platform: MemoryPlatform,
  ) {}

  protected loc(name: string): ResolvedLocation {
    const l = this.r.locations.get(name);
    if (l === undefined) throw usage(`${this.side}: unknown location ${JSON.stringify(name)} (the test declares: ${[...this.r.locations.keys()].join(', ') || 'none'})`);
    return l;
  }

  protected reg(name: string): ResolvedRegister {
    const g = this.r.registers.get(name);
    if (g === undefined) throw usage(`${this.side}: unknown register ${JSON.stringify(name)} (the test declares: ${[...this.r.registers.keys()].join(', ') || 'none'})`);
    return g;
  }

  protected value(what: string, v: unknown, max: number): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw usage(`${this.side}: ${what}: value must be an integer from 0 to ${max}, got ${String(v)}`);
    return v;
  }

  set(name: string, value: number): void {
    this.rec.set(this.side, name, value);
  }

  delay(ns: number): Promise<void> {
    if (typeof ns !== 'number' || !Number.isFinite(ns) || ns < 0) throw usage(`${this.side}: delay needs a non-negative number of ns, got ${String(ns)}`);
    return new Promise<void>((resolve) => {
      this.env.clock.setTimer(ns, resolve);
    });
  }

  random(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw usage(`${this.side}: random(n) needs an integer n ≥ 1, got ${String(n)}`);
    return this.env.prog.int(n);
  }

  now(): number {
    return this.env.clock.nowNs();
  }
}

class HostSide extends SideBase implements LitmusHost {
  readonly cpu: HostCpu;

  constructor(
    env: LitmusEnv,
    r: ResolvedLitmusTest,
    rec: Recorder,
    private readonly setHandler: (h: (vector: number) => unknown) => void,
  ) {
    super(env, r, rec, 'host', env.cpu.platform);
    this.cpu = env.cpu;
  }

  read(location: string): number {
    const l = this.loc(location);
    switch (l.size) {
      case 1:
        return this.cpu.read8(l.address);
      case 2:
        return this.cpu.read16(l.address);
      case 4:
        return this.cpu.read32(l.address);
      case 8:
        return this.cpu.read64(l.address);
    }
  }

  write(location: string, value: number): void {
    const l = this.loc(location);
    const v = this.value(`write(${location})`, value, maxValueOfSize(l.size));
    if (l.size === 1) this.cpu.write8(l.address, v);
    else if (l.size === 2) this.cpu.write16(l.address, v);
    else if (l.size === 4) this.cpu.write32(l.address, v);
    else this.cpu.write64(l.address, v);
  }

  barrier(kind: CpuBarrierKind | 'none'): void {
    if (kind !== 'none') this.cpu.barrier(kind);
  }

  writel(register: string, value: number): void {
    this.cpu.writel(this.reg(register).offset, this.value(`writel(${register})`, value, 0xffffffff));
  }

  writel_relaxed(register: string, value: number): void {
    this.cpu.writel_relaxed(this.reg(register).offset, this.value(`writel_relaxed(${register})`, value, 0xffffffff));
  }

  readl(register: string): Promise<number> {
    return this.cpu.readl(this.reg(register).offset);
  }

  readl_relaxed(register: string): Promise<number> {
    return this.cpu.readl_relaxed(this.reg(register).offset);
  }

  onInterrupt(handler: (vector: number) => unknown): void {
    if (typeof handler !== 'function') throw usage('host: onInterrupt needs a function');
    this.setHandler(handler);
  }
}

class DeviceSide extends SideBase implements LitmusDevice {
  readonly engine: DeviceEngine;

  constructor(
    env: LitmusEnv,
    r: ResolvedLitmusTest,
    rec: Recorder,
    private readonly setHandler: (register: ResolvedRegister, h: (value: number) => unknown) => void,
  ) {
    super(env, r, rec, 'device', env.engine.platform);
    this.engine = env.engine;
  }

  read(location: string): Promise<number> {
    const l = this.loc(location);
    return this.engine.read(l.address, l.size).then((b) => decodeLe(b, l.size));
  }

  write(location: string, value: number, opts?: { relaxedOrdering?: boolean }): void {
    const l = this.loc(location);
    const v = this.value(`write(${location})`, value, maxValueOfSize(l.size));
    this.engine.write(l.address, encodeLe(v, l.size), opts?.relaxedOrdering === true ? { relaxedOrdering: true } : undefined);
  }

  barrier(kind: DeviceBarrierKind | 'none'): Promise<void> {
    if (kind === 'none') return Promise.resolve();
    return Promise.resolve(this.engine.barrier(kind));
  }

  drainWrites(): void {
    this.engine.drainWrites();
  }

  interrupt(vector = 0): void {
    this.engine.write(LITMUS_MSIX_ADDRESS, le32(this.value('interrupt', vector, 0xffffffff)));
  }

  setRegister(register: string, value: number): void {
    this.env.registers.set(this.reg(register).offset, this.value(`setRegister(${register})`, value, 0xffffffff));
  }

  getRegister(register: string): number {
    return this.env.registers.get(this.reg(register).offset);
  }

  onRegisterWrite(register: string, handler: (value: number) => unknown): void {
    if (typeof handler !== 'function') throw usage('device: onRegisterWrite needs a function');
    this.setHandler(this.reg(register), handler);
  }
}

/** A handler slot: events that arrive before the handler is set wait for it, in order. */
class HandlerSlot<T> {
  private handler: ((v: T) => unknown) | undefined = undefined;
  private readonly waiting: T[] = [];

  constructor(
    private readonly env: LitmusEnv,
    private readonly what: string,
    private readonly before?: () => void,
  ) {}

  deliver(v: T): void {
    if (this.handler === undefined) this.waiting.push(v);
    else this.run(this.handler, v);
  }

  set(h: (v: T) => unknown): void {
    this.handler = h;
    if (this.waiting.length > 0) {
      const vs = this.waiting.splice(0);
      // After the program that set the handler has finished its current step.
      this.env.clock.defer(() => {
        for (const v of vs) this.run(h, v);
      });
    }
  }

  private run(h: (v: T) => unknown, v: T): void {
    this.before?.();
    runLabelled(this.env, this.what, () => h(v), undefined);
  }
}

/** Runs fn, turning what it throws or rejects with into a labelled error of the run. */
function runLabelled(env: LitmusEnv, what: string, fn: () => unknown, onResult: ((r: unknown) => void) | undefined): void {
  const fail = (e: unknown): void => {
    env.errors.push(usage(`${what}: ${errorMessage(e)}`, e));
  };
  try {
    const r = fn();
    if (isThenable(r)) {
      r.then((v) => {
        try {
          onResult?.(v);
        } catch (e) {
          fail(e);
        }
      }, fail);
    } else {
      onResult?.(r);
    }
  } catch (e) {
    fail(e);
  }
}

function startDelay(rng: Rng, maxNs: number): number {
  return maxNs > 0 ? rng.int(maxNs) : 0;
}

/** One run: builds the world, starts the programs, runs to the end, returns the recorded state. */
async function runOnce(r: ResolvedLitmusTest, o: LitmusRunOptions, runSeed: number): Promise<Map<string, number>> {
  const env = createLitmusEnv({ hostPlatform: o.hostPlatform, devicePlatform: o.devicePlatform, seed: runSeed });
  for (const l of r.locations.values()) if (l.init !== 0) writeLocation(env.ram, l, l.init);
  const rec = new Recorder(r.observed);

  // Interrupts and register writes that arrive before their handler is set wait for it (a CPU
  // with interrupts off takes it later; a device notices the doorbell when it looks).
  const irq = new HandlerSlot<number>(env, 'interrupt handler', () => env.cpu.interrupt());
  env.onMsix = (vector) => irq.deliver(vector);
  const regSlots = new Map<number, HandlerSlot<number>>();
  for (const [name, g] of r.registers) {
    env.registers.set(g.offset, g.init);
    const slot = new HandlerSlot<number>(env, `register write handler (${name})`);
    regSlots.set(g.offset, slot);
    env.registers.onWrite(g.offset, (value) => slot.deliver(value));
  }

  const host = new HostSide(env, r, rec, (h) => irq.set(h));
  const device = new DeviceSide(env, r, rec, (g, h) => regSlots.get(g.offset)!.set(h));
  const start = <S>(side: 'host' | 'device', prog: LitmusProgram<S> | undefined, ctx: S, maxNs: number): void => {
    if (prog === undefined) return;
    env.clock.setTimer(startDelay(env.prog, maxNs), () =>
      runLabelled(env, `${side} program`, () => prog(ctx), (result) => rec.merge(side, result)),
    );
  };
  start('host', r.test.host, host as LitmusHost, r.startHostNs);
  start('device', r.test.device, device as LitmusDevice, r.startDeviceNs);

  try {
    await runToEnd(env.clock, o.maxEventsPerRun ?? DEFAULT_MAX_EVENTS_PER_RUN);
  } finally {
    env.cpu.dispose();
  }
  if (env.errors.length > 0) throw env.errors[0];
  for (const f of r.final) rec.values.set(f, readLocation(env.ram, r.locations.get(f)!));
  return rec.values;
}

type Pairs = [string, number | undefined][];

function statePairs(values: Map<string, number>, observed: readonly string[] | undefined): Pairs {
  if (observed !== undefined) return observed.map((n) => [n, values.get(n)]);
  return [...values.keys()].sort().map((n) => [n, values.get(n)]);
}

function formatState(pairs: Pairs): string {
  return pairs.map(([n, v]) => `${n}=${v === undefined ? '-' : String(v)};`).join(' ');
}

function compareStates(a: Pairs, b: Pairs): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const [an, av] = a[i]!;
    const [bn, bv] = b[i]!;
    if (an !== bn) return an < bn ? -1 : 1;
    if (av !== bv) return (av ?? -Infinity) - (bv ?? -Infinity);
  }
  return a.length - b.length;
}

function checkRunOptions(o: LitmusRunOptions): void {
  if (!Number.isSafeInteger(o.iterations) || o.iterations < 1 || o.iterations > MAX_ITERATIONS) {
    throw usage(`iterations must be an integer from 1 to ${MAX_ITERATIONS}, got ${String(o.iterations)}`);
  }
  if (!Number.isSafeInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff) throw usage(`the seed must be an integer from 0 to 4294967295, got ${String(o.seed)}`);
  for (const p of [o.hostPlatform, o.devicePlatform]) if (p !== 'tso' && p !== 'weak') throw usage(`unknown platform ${String(p)} (tso or weak)`);
}

/**
 * Runs `test` `o.iterations` times and reports as litmus7 does. Throws ERR_USAGE when the test
 * is malformed or one of its programs throws (naming the run and its seed).
 */
export async function runLitmusTest(test: LitmusTest | ResolvedLitmusTest, o: LitmusRunOptions): Promise<LitmusResult> {
  checkRunOptions(o);
  const r = 'locations' in test ? test : resolveLitmusTest(test);
  const t = r.test;
  const states = new Map<string, { pairs: Pairs; count: number; satisfies: boolean }>();
  let positive = 0;
  for (let i = 0; i < o.iterations; i++) {
    const runSeed = litmusRunSeed(o.seed, t.name, i);
    let values: Map<string, number>;
    try {
      values = await runOnce(r, o, runSeed);
    } catch (e) {
      throw usage(`litmus test ${t.name}, run ${i} (run seed ${runSeed}): ${errorMessage(e)}`, e);
    }
    const stateObj: Record<string, number> = Object.fromEntries(values);
    let ok: boolean;
    try {
      ok = Boolean(t.condition(stateObj));
    } catch (e) {
      throw usage(`litmus test ${t.name}: the condition threw on ${JSON.stringify(stateObj)}: ${errorMessage(e)}`, e);
    }
    if (ok) positive++;
    const pairs = statePairs(values, r.observed);
    const key = formatState(pairs);
    const entry = states.get(key);
    if (entry === undefined) states.set(key, { pairs, count: 1, satisfies: ok });
    else entry.count++;
  }
  const histogram = [...states.entries()]
    .sort((a, b) => compareStates(a[1].pairs, b[1].pairs))
    .map(([state, e]) => ({
      state,
      values: Object.fromEntries(e.pairs.map(([n, v]) => [n, v ?? null])),
      count: e.count,
      satisfies: e.satisfies,
    }));
  const negative = o.iterations - positive;
  const observation = observationOf(positive, negative);
  const expected = expectedObservation(t, platformPair(o.hostPlatform, o.devicePlatform)) ?? null;
  return {
    name: t.name,
    description: t.description ?? null,
    // Without conditionText, the function's source, on one line.
    condition: t.conditionText ?? t.condition.toString().replace(/\s+/g, ' '),
    hostPlatform: o.hostPlatform,
    devicePlatform: o.devicePlatform,
    iterations: o.iterations,
    seed: o.seed,
    histogram,
    positive,
    negative,
    observation,
    expected,
    matches: expected === null ? null : expected === observation,
  };
}
