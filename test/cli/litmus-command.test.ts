import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/run-cli.js';
import { BUILTIN_LITMUS_TESTS } from '../../src/sim/index.js';

const run = runCli;

const dir = mkdtempSync(join(tmpdir(), 'tlpwire-litmus-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

// The complete example of docs/LITMUS.md, as a user saves it.
const DOC = readFileSync(new URL('../../docs/LITMUS.md', import.meta.url), 'utf8');
const MY_TEST = /```js\n(\/\/ my-test\.mjs\n[\s\S]*?)```/.exec(DOC)![1]!;

/** The text of the fenced block that contains `marker`, or else the first one after it. */
function docBlock(marker: string, inside: boolean): string {
  const at = DOC.indexOf(marker);
  expect(at).toBeGreaterThan(0);
  return /```\n([\s\S]*?)```/.exec(DOC.slice(inside ? DOC.lastIndexOf('```', at) : at))![1]!;
}

describe('tlpwire litmus', () => {
  it('prints each test the way litmus7 does, with the expectation, and exits 0', async () => {
    const r = await run('litmus', 'MP-d2h+none+none', 'SB-notify+mb+mb', '--iterations', '200', '--host-platform', 'weak', '--device-platform', 'weak');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('% tlpwire litmus: host weak, device weak, 200 runs per test, seed 0');
    expect(lines).toContain('Test MP-d2h+none+none Allowed');
    expect(lines).toContain('Test SB-notify+mb+mb Allowed');
    // One histogram line per state, *> for the condition, :> for the others; counts add up.
    const block = r.out.slice(r.out.indexOf('Test MP-d2h+none+none'), r.out.indexOf('Test SB-notify+mb+mb'));
    const k = Number(/Histogram \((\d+) states?\)/.exec(block)![1]);
    const states = block.split('\n').filter((l) => /^\d+ *[*:]>/.test(l));
    expect(states).toHaveLength(k);
    expect(states.every((l) => /^\d+ *[*:]>(\w+=-?\d+; )*\w+=-?\d+;$/.test(l))).toBe(true);
    const pos = states.filter((l) => l.includes('*>')).reduce((n, l) => n + parseInt(l, 10), 0);
    const neg = states.filter((l) => l.includes(':>')).reduce((n, l) => n + parseInt(l, 10), 0);
    expect(pos + neg).toBe(200);
    expect(states.some((l) => /^\d+ *\*>flag=1; data=0;$/.test(l))).toBe(true);
    expect(block).toContain(`Positive: ${pos}, Negative: ${neg}`);
    expect(block).toContain('Condition exists (flag=1 /\\ data=0) is validated');
    expect(block).toContain(`Observation MP-d2h+none+none Sometimes ${pos} ${neg}`);
    expect(block).toContain('Expected MP-d2h+none+none Sometimes (weak/weak): ok');
    expect(r.out).toMatch(/Observation SB-notify\+mb\+mb Never 0 200\n/);
    expect(r.out).toContain('Expected SB-notify+mb+mb Never (weak/weak): ok');
    expect(r.out).toMatch(/% 2 tests: 2 as expected, 0 contradicted\n$/);
  });

  it('--json gives the same as one JSON document', async () => {
    const r = await run('litmus', 'MP-h2d+dma_wmb+*', '--iterations', '100', '--seed', '5', '--host-platform', 'tso', '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as {
      hostPlatform: string;
      devicePlatform: string;
      iterations: number;
      seed: number;
      tests: { name: string; histogram: { state: string; count: number; satisfies: boolean }[]; positive: number; negative: number; observation: string; expected: string; matches: boolean }[];
      summary: { tests: number; asExpected: number; contradicted: string[] };
    };
    expect(doc).toMatchObject({ hostPlatform: 'tso', devicePlatform: 'weak', iterations: 100, seed: 5 });
    expect(doc.tests.map((t) => t.name)).toEqual(['MP-h2d+dma_wmb+none', 'MP-h2d+dma_wmb+rmb']);
    for (const t of doc.tests) {
      expect(t.positive + t.negative).toBe(100);
      expect(t.histogram.reduce((n, h) => n + h.count, 0)).toBe(100);
      expect(t.matches).toBe(true);
    }
    expect(doc.tests[0]!.observation).toBe('Sometimes');
    expect(doc.tests[1]!.observation).toBe('Never');
    expect(doc.summary).toEqual({ tests: 2, asExpected: 2, contradicted: [], withoutExpectation: 0 });
  });

  it('the same seed prints the same histograms', async () => {
    const a = await run('litmus', 'SB-notify+none+none', 'MP-h2d-await+dma_wmb+none', '--iterations', '150', '--seed', '77');
    const b = await run('litmus', 'SB-notify+none+none', 'MP-h2d-await+dma_wmb+none', '--iterations', '150', '--seed', '77');
    const c = await run('litmus', 'SB-notify+none+none', 'MP-h2d-await+dma_wmb+none', '--iterations', '150', '--seed', '78');
    expect(a.code).toBe(0);
    expect(b.out).toBe(a.out);
    expect(c.out).not.toBe(a.out);
  });

  it('--list shows every built-in test with its expectations', async () => {
    const r = await run('litmus', '--list');
    expect(r.code).toBe(0);
    for (const t of BUILTIN_LITMUS_TESTS) expect(r.out).toMatch(new RegExp(`^${t.name.replace(/\+/g, '\\+')} +(Never|Sometimes) `, 'm'));
    expect(r.out).toMatch(/^MP-h2d\+dma_wmb\+none +Never +Sometimes +Never +Sometimes /m);
    const json = await run('litmus', '--list', '--json', 'SB-notify+mb+mb');
    expect(JSON.parse(json.out)).toEqual({
      tests: [
        {
          name: 'SB-notify+mb+mb',
          description: expect.any(String) as unknown,
          condition: 'event=0 /\\ idx=0',
          expected: { 'tso/tso': 'Never', 'tso/weak': 'Never', 'weak/tso': 'Never', 'weak/weak': 'Never' },
        },
      ],
    });
  });

  it('runs a user test from an ES module with --file', async () => {
    const p = file('my-test.mjs', MY_TEST);
    const weak = await run('litmus', '--file', p, '--iterations', '200');
    expect(weak.err).toBe('');
    expect(weak.code).toBe(0);
    expect(weak.out).toContain('Test MP-desc-idx+virt_wmb+rmb Allowed');
    expect(weak.out).toMatch(/^\d+ *\*>idx=1; desc=0;$/m);
    expect(weak.out).toContain('Expected MP-desc-idx+virt_wmb+rmb Sometimes (weak/weak): ok');
    expect(weak.out).toMatch(/% 1 test: 1 as expected, 0 contradicted/);
    const tso = await run('litmus', '--file', p, '--iterations', '200', '--host-platform', 'tso');
    expect(tso.code).toBe(0);
    expect(tso.out).toMatch(/Observation MP-desc-idx\+virt_wmb\+rmb Never 0 200/);
    // Names select among the built-ins and the file's tests.
    const both = await run('litmus', '--file', p, 'MP-desc-*', 'MMIO-doorbell+writel', '--iterations', '20', '--host-platform', 'tso');
    expect(both.code).toBe(0);
    expect(both.out.match(/^Test /gm)).toHaveLength(2);
  });

  it('prints what docs/LITMUS.md shows for its examples', async () => {
    const p = file('my-test.mjs', MY_TEST);
    const example = docBlock('$ tlpwire litmus --file ./my-test.mjs', true);
    const r = await run('litmus', '--file', p);
    expect(r.code).toBe(0);
    expect(`$ tlpwire litmus --file ./my-test.mjs\n${r.out}`).toBe(example);
    const reading = docBlock('## Reading the output', false);
    const r2 = await run('litmus', 'MP-d2h+none+dma_rmb');
    expect(r2.out).toBe(reading);
  });

  it('a file may export a list of tests, without expectations', async () => {
    const p = file(
      'list.mjs',
      `export default [
        { name: 'one', host: (h) => h.set('x', 1), condition: (s) => s.x === 1 },
        { name: 'two', device: async (d) => ({ y: await d.read('m') }), memory: ['m'], condition: (s) => s.y === 0, expect: 'Always' },
      ];`,
    );
    const r = await run('litmus', '--file', p, '--iterations', '10');
    expect(r.code).toBe(0);
    expect(r.out).toContain('Observation one Always 10 0');
    expect(r.out).toContain('Expected one (no expectation given for weak/weak)');
    expect(r.out).toContain('Expected two Always (weak/weak): ok');
    expect(r.out).toMatch(/% 2 tests: 1 as expected, 0 contradicted, 1 without expectation/);
  });

  it('exits 1 when an observation contradicts its expectation', async () => {
    const p = file('wrong.mjs', MY_TEST.replace("'weak/weak': 'Sometimes'", "'weak/weak': 'Never'"));
    const r = await run('litmus', '--file', p, '--iterations', '200');
    expect(r.code).toBe(1);
    expect(r.out).toContain('Expected MP-desc-idx+virt_wmb+rmb Never (weak/weak): CONTRADICTED, observed Sometimes');
    expect(r.out).toMatch(/% 1 test: 0 as expected, 1 contradicted\n% contradicted: MP-desc-idx\+virt_wmb\+rmb\n$/);
    const json = await run('litmus', '--file', p, '--iterations', '200', '--json');
    expect(json.code).toBe(1);
    expect((JSON.parse(json.out) as { summary: { contradicted: string[] } }).summary.contradicted).toEqual(['MP-desc-idx+virt_wmb+rmb']);
  });

  describe('bad input: one line on stderr, exit code 2', () => {
    const cases: [string, () => string[], RegExp][] = [
      ['an unknown test', () => ['litmus', 'MP-nothing'], /no litmus test named "MP-nothing"/],
      ['a bad --iterations', () => ['litmus', '--iterations', 'ten'], /--iterations: expected a whole number from 1 to 10000000, got "ten"/],
      ['--iterations 0', () => ['litmus', '--iterations', '0'], /--iterations: expected a whole number/],
      ['a negative --seed', () => ['litmus', '--seed', '-3'], /--seed: expected a whole number from 0 to 4294967295/],
      ['a seed too large', () => ['litmus', '--seed', '4294967296'], /--seed: expected a whole number/],
      ['a bad platform', () => ['litmus', '--device-platform', 'arm64'], /--device-platform: expected tso or weak, got "arm64"/],
      ['a missing file', () => ['litmus', '--file', join(dir, 'missing.mjs')], /--file .*missing\.mjs: cannot load it: /],
      ['a file that does not parse', () => ['litmus', '--file', file('syntax.mjs', 'export default {')], /--file .*syntax\.mjs: cannot load it: /],
      ['a file without a default export', () => ['litmus', '--file', file('none.mjs', 'export const x = 1;')], /does not export a litmus test \(expected export default \{ name, host, device, condition \}/],
      ['a file exporting something else', () => ['litmus', '--file', file('num.mjs', 'export default 5;')], /a litmus test is an object/],
      ['a test without a condition', () => ['litmus', '--file', file('nocond.mjs', "export default { name: 'n', host: () => {} };")], /--file .*nocond\.mjs: n: condition must be a function/],
      ['a test named like a built-in', () => ['litmus', '--file', file('dup.mjs', "export default { name: 'SB-notify+mb+mb', host: () => {}, condition: () => true };")], /SB-notify\+mb\+mb is already a built-in test; rename it/],
      [
        'a program that throws',
        () => ['litmus', '--iterations', '5', '--file', file('throws.mjs', "export default { name: 't', memory: ['a'], host: (h) => h.read('b'), condition: () => true };")],
        /litmus test t, run 0 \(run seed \d+\): host program: host: unknown location "b"/,
      ],
    ];
    for (const [what, argv, message] of cases) {
      it(what, async () => {
        const r = await run(...argv());
        expect(r.code).toBe(2);
        expect(r.out).not.toMatch(/^Test /m);
        const lines = r.err.trimEnd().split('\n');
        expect(lines, r.err).toHaveLength(1);
        expect(lines[0]).toMatch(message);
      });
    }
  });
});
