/**
 * The litmus API a user's test is written against (docs/LITMUS.md): locations and registers,
 * recording the state, handlers, validation, the runner's counting, the litmus7 formatting.
 */
import { describe, expect, it } from 'vitest';
import { isTlpwireError } from '../../src/core/index.js';
import {
  BUILTIN_LITMUS_TESTS,
  formatLitmusResult,
  formatLitmusSummary,
  litmusRunSeed,
  observationOf,
  resolveLitmusTest,
  runLitmusTest,
  selectLitmusTests,
  type LitmusResult,
  type LitmusTest,
} from '../../src/sim/index.js';

const WEAK = { hostPlatform: 'weak', devicePlatform: 'weak', seed: 1 } as const;

async function usageError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(isTlpwireError(e, 'ERR_USAGE'), String(e)).toBe(true);
    return (e as Error).message;
  }
  throw new Error('expected an ERR_USAGE error');
}

function resolveError(v: unknown): string {
  try {
    resolveLitmusTest(v, 'here');
  } catch (e) {
    expect(isTlpwireError(e, 'ERR_USAGE')).toBe(true);
    return (e as Error).message;
  }
  throw new Error('expected an ERR_USAGE error');
}

describe('locations, registers and the final state', () => {
  it('reads and writes locations of every width, with initial values and final RAM values', async () => {
    const test: LitmusTest = {
      name: 'widths',
      memory: { a: { address: 0x1000, size: 1, init: 7 }, b: { address: 0x1002, size: 2 }, c: { address: 0x1008, size: 8, init: 2 ** 40 + 3 }, d: 0x2000 },
      final: ['a', 'b', 'c', 'd'],
      host: (h) => {
        h.set('a0', h.read('a'));
        h.set('c0', h.read('c'));
        h.write('a', 255);
        h.write('b', 0xbeef);
        h.barrier('mb');
      },
      device: async (d) => {
        await d.delay(10_000);
        d.set('dc', await d.read('c'));
        d.write('c', 2 ** 50 + 1);
        d.write('d', 0xffffffff);
      },
      condition: () => true,
      start: { host: 0, device: 0 },
    };
    const r = await runLitmusTest(test, { ...WEAK, iterations: 3 });
    expect(r.histogram).toHaveLength(1);
    expect(r.histogram[0]!.values).toEqual({ a: 255, a0: 7, b: 0xbeef, c: 2 ** 50 + 1, c0: 2 ** 40 + 3, d: 0xffffffff, dc: 2 ** 40 + 3 });
    // Without `observed`, names print in alphabetical order.
    expect(r.histogram[0]!.state).toBe(`a=255; a0=7; b=48879; c=${2 ** 50 + 1}; c0=${2 ** 40 + 3}; d=4294967295; dc=${2 ** 40 + 3};`);
    expect(r.observation).toBe('Always');
  });

  it('places a list of location names on pages of their own', () => {
    const r = resolveLitmusTest({ name: 'x', memory: ['p', 'q'], host: () => undefined, condition: () => true });
    const p = r.locations.get('p')!;
    const q = r.locations.get('q')!;
    expect(p.size).toBe(4);
    expect(Math.floor(p.address / 4096)).not.toBe(Math.floor(q.address / 4096));
  });

  it('merges what a program returns into the state, in the observed order', async () => {
    const test: LitmusTest = {
      name: 'ret',
      memory: ['x'],
      observed: ['r1', 'r0'],
      host: () => ({ r0: 5 }),
      device: async (d) => ({ r1: await d.read('x') }),
      condition: (s) => s.r0 === 5 && s.r1 === 0,
    };
    const r = await runLitmusTest(test, { ...WEAK, iterations: 2 });
    expect(r.histogram).toEqual([{ state: 'r1=0; r0=5;', values: { r1: 0, r0: 5 }, count: 2, satisfies: true }]);
  });

  it('prints an observed name no run recorded as "-"', async () => {
    const test: LitmusTest = { name: 'unset', observed: ['a', 'b'], host: (h) => h.set('a', 1), condition: (s) => s.b === undefined };
    const r = await runLitmusTest(test, { ...WEAK, iterations: 1 });
    expect(r.histogram[0]!.state).toBe('a=1; b=-;');
    expect(r.histogram[0]!.values).toEqual({ a: 1, b: null });
    expect(r.positive).toBe(1);
  });

  it('device registers: the host reads what the device set, the device sees the host write', async () => {
    const test: LitmusTest = {
      name: 'regs',
      registers: { ID: { init: 0x1234 }, DB: {} },
      observed: ['id', 'db', 'seen'],
      start: { host: 0, device: 0 },
      host: async (h) => {
        h.set('id', await h.readl('ID'));
        h.writel('DB', 9);
      },
      // Registered late: the doorbell write that arrived before waits for the handler.
      device: async (d) => {
        await d.delay(20_000);
        d.onRegisterWrite('DB', (v) => {
          d.set('db', v);
          d.set('seen', d.getRegister('DB'));
        });
      },
      condition: () => true,
    };
    const r = await runLitmusTest(test, { ...WEAK, iterations: 5 });
    expect(r.histogram.map((h) => h.state)).toEqual([`id=${0x1234}; db=9; seen=9;`]);
  });

  it('an MSI-X that arrives before the handler is set waits for it, and is delivered once', async () => {
    const test: LitmusTest = {
      name: 'irq',
      memory: ['data'],
      start: { host: 0, device: 0 },
      host: async (h) => {
        await h.delay(20_000);
        h.onInterrupt((vector) => {
          h.set('vector', vector);
          h.set('data', h.read('data'));
          h.set('calls', (h.now() >= 20_000 ? 1 : 0) + (calls++ > 0 ? 100 : 0));
        });
      },
      device: (d) => {
        d.write('data', 3);
        d.interrupt(5);
      },
      condition: (s) => s.data === 3,
    };
    let calls = 0;
    const r = await runLitmusTest(test, { ...WEAK, iterations: 1 });
    expect(r.histogram[0]!.values).toEqual({ calls: 1, data: 3, vector: 5 });
    expect(r.observation).toBe('Always');
  });
});

describe('errors in a test', () => {
  it('an unknown location, named with the test, the run and its seed', async () => {
    const test: LitmusTest = { name: 'typo', memory: ['data'], host: (h) => h.write('dta', 1), condition: () => false };
    const msg = await usageError(runLitmusTest(test, { ...WEAK, iterations: 3 }));
    expect(msg).toMatch(/litmus test typo, run 0 \(run seed \d+\): host program: host: unknown location "dta" \(the test declares: data\)/);
  });

  it('a device program that rejects, a handler that throws, a condition that throws', async () => {
    const rejects: LitmusTest = {
      name: 'rej',
      device: async (d) => {
        await d.delay(5);
        throw new Error('boom');
      },
      condition: () => false,
    };
    expect(await usageError(runLitmusTest(rejects, { ...WEAK, iterations: 1 }))).toMatch(/device program: boom/);
    const handler: LitmusTest = {
      name: 'handler',
      host: (h) =>
        h.onInterrupt(() => {
          throw new Error('in handler');
        }),
      device: (d) => d.interrupt(),
      condition: () => false,
    };
    expect(await usageError(runLitmusTest(handler, { ...WEAK, iterations: 1 }))).toMatch(/interrupt handler: in handler/);
    const cond: LitmusTest = {
      name: 'cond',
      host: (h) => h.set('x', 1),
      condition: () => {
        throw new Error('bad cond');
      },
    };
    expect(await usageError(runLitmusTest(cond, { ...WEAK, iterations: 1 }))).toMatch(/the condition threw on \{"x":1\}: bad cond/);
  });

  it('values out of range, names not observed, a name recorded by both sides', async () => {
    const big: LitmusTest = { name: 'big', memory: { b: { address: 0x1000, size: 1 } }, host: (h) => h.write('b', 256), condition: () => false };
    expect(await usageError(runLitmusTest(big, { ...WEAK, iterations: 1 }))).toMatch(/write\(b\): value must be an integer from 0 to 255, got 256/);
    const notObserved: LitmusTest = { name: 'no', observed: ['a'], host: (h) => h.set('b', 1), condition: () => false };
    expect(await usageError(runLitmusTest(notObserved, { ...WEAK, iterations: 1 }))).toMatch(/"b" is not one of the observed names \(a\)/);
    const both: LitmusTest = { name: 'both', host: (h) => h.set('r', 1), device: (d) => d.set('r', 2), condition: () => false, start: { host: 0, device: 10 } };
    expect(await usageError(runLitmusTest(both, { ...WEAK, iterations: 1 }))).toMatch(/"r" is already recorded by the host/);
  });

  it('a program that never ends fails fast', async () => {
    const forever: LitmusTest = {
      name: 'forever',
      host: async (h) => {
        for (;;) await h.delay(100);
      },
      condition: () => false,
    };
    expect(await usageError(runLitmusTest(forever, { ...WEAK, iterations: 1, maxEventsPerRun: 500 }))).toMatch(/did not settle within 500 events/);
  });

  it('bad run options', async () => {
    const t = BUILTIN_LITMUS_TESTS[0]!;
    expect(await usageError(runLitmusTest(t, { ...WEAK, iterations: 0 }))).toMatch(/iterations/);
    expect(await usageError(runLitmusTest(t, { ...WEAK, iterations: 1, seed: -1 }))).toMatch(/seed/);
  });
});

describe('resolveLitmusTest: what a module must export', () => {
  const ok: Readonly<Record<string, unknown>> = { name: 'ok', host: (): void => undefined, condition: (): boolean => true };

  it('accepts a minimal test and applies defaults', () => {
    const r = resolveLitmusTest(ok);
    expect(r.startHostNs).toBe(1_000);
    expect(r.startDeviceNs).toBe(1_000);
    expect(r.final).toEqual([]);
    expect(r.observed).toBeUndefined();
  });

  const cases: [unknown, RegExp][] = [
    [42, /a litmus test is an object/],
    [{ ...ok, name: 'has space' }, /name without spaces/],
    [{ ...ok, name: undefined }, /name without spaces/],
    [{ name: 'n', condition: (): boolean => true }, /needs a host program, a device program, or both/],
    [{ ...ok, host: 'x' }, /host must be a function/],
    [{ ...ok, condition: undefined }, /condition must be a function/],
    [{ ...ok, memory: { a: 0x1000, b: 0x1002 } }, /locations a and b overlap/],
    [{ ...ok, memory: { a: { address: 0x1000, size: 3 } } }, /size must be 1, 2, 4 or 8/],
    [{ ...ok, memory: { a: 1 << 20 } }, /address must be an integer/],
    [{ ...ok, memory: { a: { address: 0, init: -1 } } }, /init must be an integer/],
    [{ ...ok, memory: ['a', 'a'] }, /names "a" twice/],
    [{ ...ok, registers: { R: 5 } }, /register R must be an object/],
    [{ ...ok, final: ['nope'] }, /not a memory location/],
    [{ ...ok, expect: 'Maybe' }, /expect must be Never, Sometimes or Always/],
    [{ ...ok, expect: { 'arm/x86': 'Never' } }, /expect must be/],
    [{ ...ok, start: { host: -1 } }, /start.host/],
  ];
  it.each(cases)('rejects %o', (value, message) => {
    expect(resolveError(value)).toMatch(message);
    expect(resolveError(value)).toMatch(/^here/);
  });
});

describe('counting and reporting', () => {
  it('observation: Never, Sometimes, Always', () => {
    expect(observationOf(0, 10)).toBe('Never');
    expect(observationOf(3, 7)).toBe('Sometimes');
    expect(observationOf(10, 0)).toBe('Always');
  });

  it('run seeds depend on the seed, the name and the run, and are u32', () => {
    const s = litmusRunSeed(0, 'A', 0);
    expect(litmusRunSeed(0, 'A', 0)).toBe(s);
    expect(new Set([s, litmusRunSeed(1, 'A', 0), litmusRunSeed(0, 'B', 0), litmusRunSeed(0, 'A', 1)]).size).toBe(4);
    expect(litmusRunSeed(0xffffffff, 'x'.repeat(100), 1e9)).toBeLessThanOrEqual(0xffffffff);
  });

  it('an expectation per platform pair, or none', async () => {
    const t: LitmusTest = { name: 'e', host: (h) => h.set('x', 1), condition: (s) => s.x === 1, expect: { 'weak/weak': 'Never' } };
    const r = await runLitmusTest(t, { ...WEAK, iterations: 2 });
    expect(r.expected).toBe('Never');
    expect(r.matches).toBe(false);
    const r2 = await runLitmusTest(t, { ...WEAK, hostPlatform: 'tso', iterations: 2 });
    expect(r2.expected).toBeNull();
    expect(r2.matches).toBeNull();
  });

  it('formats like litmus7', () => {
    const r: LitmusResult = {
      name: 'T',
      description: 'a test',
      condition: 'x=1',
      hostPlatform: 'weak',
      devicePlatform: 'tso',
      iterations: 1_000_010,
      seed: 3,
      histogram: [
        { state: 'x=0;', values: { x: 0 }, count: 10, satisfies: false },
        { state: 'x=1;', values: { x: 1 }, count: 1_000_000, satisfies: true },
      ],
      positive: 1_000_000,
      negative: 10,
      observation: 'Sometimes',
      expected: 'Never',
      matches: false,
    };
    expect(formatLitmusResult(r).split('\n')).toEqual([
      '% a test',
      'Test T Allowed',
      'Histogram (2 states)',
      '10    :>x=0;',
      '1000000*>x=1;',
      'Positive: 1000000, Negative: 10',
      'Condition exists (x=1) is validated',
      'Observation T Sometimes 1000000 10',
      'Expected T Never (weak/tso): CONTRADICTED, observed Sometimes',
      '',
    ]);
    expect(formatLitmusResult({ ...r, positive: 0, observation: 'Never', matches: true, description: null }).split('\n')).toContain('Condition exists (x=1) is NOT validated');
    expect(formatLitmusResult({ ...r, expected: 'Sometimes', observation: 'Never' })).toMatch(/try more --iterations/);
    expect(formatLitmusSummary([r, { ...r, name: 'U', matches: true }, { ...r, name: 'V', matches: null }])).toBe(
      '% 3 tests: 1 as expected, 1 contradicted, 1 without expectation\n% contradicted: T\n',
    );
  });
});

describe('selectLitmusTests', () => {
  it('exact names and globs, in built-in order, each once', () => {
    const names = selectLitmusTests(BUILTIN_LITMUS_TESTS, ['MMIO-*', 'MMIO-doorbell+writel', 'MP-h2d+none+none']).map((t) => t.name);
    expect(names[0]).toBe('MP-h2d+none+none');
    expect(names.filter((n) => n === 'MMIO-doorbell+writel')).toHaveLength(1);
    expect(names.every((n) => n === 'MP-h2d+none+none' || n.startsWith('MMIO-'))).toBe(true);
    expect(names).toHaveLength(7);
  });

  it('a name that matches nothing is an error that suggests', () => {
    let msg = '';
    try {
      selectLitmusTests(BUILTIN_LITMUS_TESTS, ['SB-notify+foo']);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/no litmus test named "SB-notify\+foo" \(did you mean SB-notify/);
  });
});
