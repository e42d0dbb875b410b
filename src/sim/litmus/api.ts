/**
 * The litmus test API: what a built-in test, and a user's ES module, are written against.
 * docs/LITMUS.md documents it with a complete example; keep the two in step.
 */
import { TlpwireError } from '../../core/index.js';
import type { CpuBarrierKind, DeviceBarrierKind, DeviceEngine, HostCpu, MemoryPlatform } from '../../memory/index.js';
import { LITMUS_RAM_BYTES } from './env.js';

/** How often the condition held over the runs: litmus7's three verdicts. */
export type LitmusObservation = 'Never' | 'Sometimes' | 'Always';
export const LITMUS_OBSERVATIONS: readonly LitmusObservation[] = ['Never', 'Sometimes', 'Always'];

/** A platform combination, written host/device. */
export type PlatformPair = 'tso/tso' | 'tso/weak' | 'weak/tso' | 'weak/weak';
export const PLATFORM_PAIRS: readonly PlatformPair[] = ['tso/tso', 'tso/weak', 'weak/tso', 'weak/weak'];

export function platformPair(host: MemoryPlatform, device: MemoryPlatform): PlatformPair {
  return `${host}/${device}`;
}

/** The final state of one run: every value the programs recorded, and the `final` locations. */
export type LitmusState = Readonly<Record<string, number | undefined>>;

/** A location in host RAM. */
export interface LitmusLocation {
  address: number;
  /** Bytes (default 4); reads and writes of the location have this width. */
  size?: 1 | 2 | 4 | 8;
  /** Value before the programs start (default 0). */
  init?: number;
}

/** A device register the host reaches by MMIO (32 bits). */
export interface LitmusRegister {
  /** Value before the programs start (default 0). */
  init?: number;
}

/** What a program may return: values to record in the state (as `set` does). */
export type LitmusProgramResult = void | undefined | Readonly<Record<string, number>>;

/** Common to both sides. */
export interface LitmusSide {
  /** This side's memory platform in this run. */
  readonly platform: MemoryPlatform;
  /** Records a value in the final state (the last value set wins). */
  set(name: string, value: number): void;
  /** Resolves after `ns` nanoseconds of virtual time. */
  delay(ns: number): Promise<void>;
  /** A seeded random integer in [0, n): use it, never Math.random, so a seed reproduces a run. */
  random(n: number): number;
  /** Virtual time in nanoseconds since the run began. */
  now(): number;
}

/** The host CPU running the driver (Linux's primitives; docs/MEMORY-MODEL.md). */
export interface LitmusHost extends LitmusSide {
  /** A CPU load of a location. */
  read(location: string): number;
  /** A CPU store to a location (it goes through the store buffer). */
  write(location: string, value: number): void;
  /** A Linux barrier; 'none' does nothing (handy in parameterised tests). */
  barrier(kind: CpuBarrierKind | 'none'): void;
  /** MMIO write of a device register; writel orders after earlier stores, writel_relaxed does not. */
  writel(register: string, value: number): void;
  writel_relaxed(register: string, value: number): void;
  /** MMIO read of a device register; readl orders later loads after it, readl_relaxed does not. */
  readl(register: string): Promise<number>;
  readl_relaxed(register: string): Promise<number>;
  /**
   * The MSI-X handler: runs when the device's MSI-X write reaches the CPU (after the CPU took
   * the interrupt). An interrupt that arrives before a handler is set waits for it.
   */
  onInterrupt(handler: (vector: number) => unknown): void;
  /** The CPU model itself, for what the API does not cover (stats, other widths). */
  readonly cpu: HostCpu;
}

/** The device's DMA engine and its registers. */
export interface LitmusDevice extends LitmusSide {
  /** A DMA read (MRd) of a location. */
  read(location: string): Promise<number>;
  /** A DMA write (MWr) to a location; `relaxedOrdering` sets the RO attribute. */
  write(location: string, value: number, opts?: { relaxedOrdering?: boolean }): void;
  /** A device barrier; 'none' does nothing. The promise resolves when the barrier is done. */
  barrier(kind: DeviceBarrierKind | 'none'): Promise<void>;
  /** Puts every buffered write on the link now (as far as ordering allows). */
  drainWrites(): void;
  /** Sends an MSI-X message (a posted write, ordered like the others). */
  interrupt(vector?: number): void;
  /** Sets a register's value (what the host's readl returns from then on). */
  setRegister(register: string, value: number): void;
  /** A register's current value. */
  getRegister(register: string): number;
  /** Runs `handler` when a host MMIO write to the register arrives (earlier ones wait for it). */
  onRegisterWrite(register: string, handler: (value: number) => unknown): void;
  /** The engine model itself, for what the API does not cover (stats, byte ranges). */
  readonly engine: DeviceEngine;
}

export type LitmusProgram<S> = (side: S) => LitmusProgramResult | Promise<LitmusProgramResult>;

/** A litmus test: two programs, the locations they share, and a condition on the final state. */
export interface LitmusTest {
  /** Unique, no spaces (it is typed on the command line). */
  name: string;
  /** One line on what the test shows. */
  description?: string;
  /** Host RAM locations by name: an address, a LitmusLocation, or a list of names (one 4 KiB page each). */
  memory?: Readonly<Record<string, number | LitmusLocation>> | readonly string[];
  /** Device registers by name, reached by the host's readl/writel. */
  registers?: Readonly<Record<string, LitmusRegister>> | readonly string[];
  host?: LitmusProgram<LitmusHost>;
  device?: LitmusProgram<LitmusDevice>;
  /** Names of the state in print order; when given, recording any other name is an error. */
  observed?: readonly string[];
  /** Locations whose value in RAM at the end is part of the state. */
  final?: readonly string[];
  /** The condition (litmus7's `exists`): true for the outcome the test looks for. */
  condition: (state: LitmusState) => boolean;
  /** How the condition prints, e.g. "flag=1 /\ data=0". */
  conditionText?: string;
  /** Each program starts at a random time in [0, this) ns (default 1000 each; 0 = at once). */
  start?: { host?: number; device?: number };
  /** The expected observation: one for every platform pair, or per pair ("host/device"). */
  expect?: LitmusObservation | Partial<Readonly<Record<PlatformPair, LitmusObservation>>>;
}

/** A location after defaults are applied. */
export interface ResolvedLocation {
  readonly address: number;
  readonly size: 1 | 2 | 4 | 8;
  readonly init: number;
}

export interface ResolvedRegister {
  readonly offset: number;
  readonly init: number;
}

/** A test checked and with defaults applied: what the runner works from. */
export interface ResolvedLitmusTest {
  readonly test: LitmusTest;
  readonly locations: ReadonlyMap<string, ResolvedLocation>;
  readonly registers: ReadonlyMap<string, ResolvedRegister>;
  readonly observed: readonly string[] | undefined;
  readonly final: readonly string[];
  readonly startHostNs: number;
  readonly startDeviceNs: number;
}

/** Where auto-placed locations (a list of names) start; each gets its own 4 KiB page. */
const AUTO_LOCATION_BASE = 0x10000;
const AUTO_LOCATION_STRIDE = 0x1000;
/** Register offsets in the device's BAR: one 32-bit register every 4 bytes. */
const REGISTER_STRIDE = 4;
const DEFAULT_START_NS = 1_000;
const NAME_RE = /^[A-Za-z0-9_.+\-:=]+$/;
const MAX_U64_SAFE = Number.MAX_SAFE_INTEGER;

function usage(where: string, message: string): TlpwireError {
  return new TlpwireError('ERR_USAGE', `${where}: ${message}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Largest value a location of `size` bytes holds (exact numbers only). */
export function maxValueOfSize(size: 1 | 2 | 4 | 8): number {
  return size === 8 ? MAX_U64_SAFE : 2 ** (8 * size) - 1;
}

function checkValue(where: string, what: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) {
    throw usage(where, `${what} must be an integer from 0 to ${max}, got ${String(v)}`);
  }
  return v;
}

function checkNames(where: string, what: string, v: unknown): readonly string[] {
  if (!Array.isArray(v) || !v.every((n) => typeof n === 'string' && NAME_RE.test(n))) {
    throw usage(where, `${what} must be a list of names (letters, digits, _ . + - : =)`);
  }
  const names = v as string[];
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw usage(where, `${what} names ${JSON.stringify(dup)} twice`);
  return names;
}

function resolveLocations(where: string, memory: unknown): Map<string, ResolvedLocation> {
  const out = new Map<string, ResolvedLocation>();
  if (memory === undefined) return out;
  if (Array.isArray(memory)) {
    checkNames(where, 'memory', memory).forEach((name, i) => {
      out.set(name, { address: AUTO_LOCATION_BASE + i * AUTO_LOCATION_STRIDE, size: 4, init: 0 });
    });
    return out;
  }
  if (!isRecord(memory)) throw usage(where, 'memory must be an object of locations ({ data: 0x1000, flag: { address: 0x2000 } }) or a list of names');
  for (const [name, spec] of Object.entries(memory)) {
    if (!NAME_RE.test(name)) throw usage(where, `bad location name ${JSON.stringify(name)}`);
    const loc: unknown = typeof spec === 'number' ? { address: spec } : spec;
    if (!isRecord(loc)) throw usage(where, `location ${name} must be an address or { address, size?, init? }`);
    const size = loc.size ?? 4;
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw usage(where, `location ${name}: size must be 1, 2, 4 or 8, got ${String(loc.size)}`);
    const address = loc.address;
    if (typeof address !== 'number' || !Number.isSafeInteger(address) || address < 0 || address + size > LITMUS_RAM_BYTES) {
      throw usage(where, `location ${name}: address must be an integer in [0, 0x${LITMUS_RAM_BYTES.toString(16)} - size), got ${String(address)}`);
    }
    const init = checkValue(where, `location ${name}: init`, loc.init ?? 0, maxValueOfSize(size));
    for (const [other, o] of out) {
      if (address < o.address + o.size && o.address < address + size) throw usage(where, `locations ${other} and ${name} overlap`);
    }
    out.set(name, { address, size, init });
  }
  return out;
}

function resolveRegisters(where: string, registers: unknown): Map<string, ResolvedRegister> {
  const out = new Map<string, ResolvedRegister>();
  if (registers === undefined) return out;
  if (Array.isArray(registers)) {
    checkNames(where, 'registers', registers).forEach((name, i) => out.set(name, { offset: i * REGISTER_STRIDE, init: 0 }));
    return out;
  }
  if (!isRecord(registers)) throw usage(where, 'registers must be a list of names or an object { NAME: { init? } }');
  Object.entries(registers).forEach(([name, spec], i) => {
    if (!NAME_RE.test(name)) throw usage(where, `bad register name ${JSON.stringify(name)}`);
    if (!isRecord(spec)) throw usage(where, `register ${name} must be an object { init? }`);
    out.set(name, { offset: i * REGISTER_STRIDE, init: checkValue(where, `register ${name}: init`, spec.init ?? 0, 0xffffffff) });
  });
  return out;
}

function checkExpect(where: string, e: unknown): void {
  if (e === undefined) return;
  const isObs = (v: unknown): boolean => typeof v === 'string' && (LITMUS_OBSERVATIONS as readonly string[]).includes(v);
  if (isObs(e)) return;
  if (isRecord(e) && Object.entries(e).every(([k, v]) => (PLATFORM_PAIRS as readonly string[]).includes(k) && isObs(v))) return;
  throw usage(where, `expect must be Never, Sometimes or Always, or an object like { "weak/weak": "Sometimes" } (keys ${PLATFORM_PAIRS.join(', ')})`);
}

/**
 * Checks a value that should be a litmus test (a user's module export is `unknown`) and applies
 * the defaults. Throws ERR_USAGE naming `where` and the first problem.
 */
export function resolveLitmusTest(value: unknown, where = 'litmus test'): ResolvedLitmusTest {
  if (!isRecord(value)) throw usage(where, 'a litmus test is an object { name, host, device, condition, ... }');
  const t = value;
  if (typeof t.name !== 'string' || !NAME_RE.test(t.name)) {
    throw usage(where, `the test needs a name without spaces (letters, digits, _ . + - : =), got ${JSON.stringify(t.name)}`);
  }
  const at = `${where} ${t.name}`;
  if (t.description !== undefined && typeof t.description !== 'string') throw usage(at, 'description must be a string');
  if (t.host !== undefined && typeof t.host !== 'function') throw usage(at, 'host must be a function (h) => { ... }');
  if (t.device !== undefined && typeof t.device !== 'function') throw usage(at, 'device must be a function (d) => { ... }');
  if (t.host === undefined && t.device === undefined) throw usage(at, 'the test needs a host program, a device program, or both');
  if (typeof t.condition !== 'function') throw usage(at, 'condition must be a function (state) => boolean');
  if (t.conditionText !== undefined && typeof t.conditionText !== 'string') throw usage(at, 'conditionText must be a string');
  const locations = resolveLocations(at, t.memory);
  const registers = resolveRegisters(at, t.registers);
  const observed = t.observed === undefined ? undefined : checkNames(at, 'observed', t.observed);
  const final = t.final === undefined ? [] : checkNames(at, 'final', t.final);
  for (const f of final) if (!locations.has(f)) throw usage(at, `final names ${JSON.stringify(f)}, which is not a memory location`);
  if (observed !== undefined) for (const f of final) if (!observed.includes(f)) throw usage(at, `final location ${f} must be in observed too`);
  let startHostNs = DEFAULT_START_NS;
  let startDeviceNs = DEFAULT_START_NS;
  if (t.start !== undefined) {
    if (!isRecord(t.start)) throw usage(at, 'start must be an object { host?, device? } of nanoseconds');
    startHostNs = checkValue(at, 'start.host', t.start.host ?? DEFAULT_START_NS, 1e9);
    startDeviceNs = checkValue(at, 'start.device', t.start.device ?? DEFAULT_START_NS, 1e9);
  }
  checkExpect(at, t.expect);
  return { test: value as unknown as LitmusTest, locations, registers, observed, final, startHostNs, startDeviceNs };
}

/** The expected observation of a test on a platform pair, if the test states one. */
export function expectedObservation(test: LitmusTest, pair: PlatformPair): LitmusObservation | undefined {
  const e = test.expect;
  if (e === undefined || typeof e === 'string') return e;
  return e[pair];
}
