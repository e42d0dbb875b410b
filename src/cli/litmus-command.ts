import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { TlpwireError, errorMessage } from '../core/index.js';
import type { MemoryPlatform } from '../memory/index.js';
import {
  BUILTIN_LITMUS_TESTS,
  PLATFORM_PAIRS,
  expectedObservation,
  formatLitmusResult,
  formatLitmusSummary,
  resolveLitmusTest,
  runLitmusTest,
  selectLitmusTests,
  type LitmusResult,
  type LitmusTest,
  type ResolvedLitmusTest,
} from '../sim/index.js';
import type { CliIo } from './io.js';
import { collect } from './options.js';

const EXIT_FAIL = 1;
const DEFAULT_ITERATIONS = 1_000;
const MAX_ITERATIONS = 10_000_000;

const LITMUS_HELP = `
Runs small two-sided programs — the host CPU and the device, over the simulated PCIe link —
many times, each run with its own seeded interleaving, and prints per test what litmus7 prints:
the histogram of final states (*> marks states that satisfy the condition, :> the others),
Positive/Negative counts and the observation (Never, Sometimes, Always), then the expected
observation from docs/MEMORY-MODEL.md and whether it matched.

NAME is a built-in test (--list shows them) or a glob with *; no NAME runs every built-in test
(or, with --file, every test in the files). The exit code is 1 when an observation contradicts
its expectation, 2 for bad input.

Examples:
  $ tlpwire litmus                                   # every built-in, weak host and device
  $ tlpwire litmus 'MP-h2d+*' --host-platform tso     # the hypervisor case for the driver's side
  $ tlpwire litmus SB-notify+mb+mb --iterations 20000 --seed 7
  $ tlpwire litmus --file ./my-test.mjs --json        # your own test (docs/LITMUS.md)
  $ tlpwire litmus --list
`;

interface LitmusCliOptions {
  iterations?: string;
  seed?: string;
  hostPlatform?: string;
  devicePlatform?: string;
  json?: boolean;
  file?: string[];
  list?: boolean;
}

function parseCount(text: string, flag: string, min: number, max: number): number {
  const t = text.trim();
  const n = /^[0-9]+$/.test(t) ? Number(t) : /^0x[0-9a-f]+$/i.test(t) ? parseInt(t.slice(2), 16) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new TlpwireError('ERR_USAGE', `${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return n;
}

function parsePlatform(text: string, flag: string): MemoryPlatform {
  if (text === 'tso' || text === 'weak') return text;
  throw new TlpwireError('ERR_USAGE', `${flag}: expected tso or weak, got ${JSON.stringify(text)}`);
}

/** The first line of an error message: the CLI reports bad input in one line. */
function firstLine(e: unknown): string {
  return errorMessage(e).split('\n')[0] ?? '';
}

/** Loads a user's test module: its default export is one test or a list of tests. */
async function loadTestFile(file: string): Promise<ResolvedLitmusTest[]> {
  let mod: unknown;
  try {
    mod = await import(pathToFileURL(resolvePath(file)).href);
  } catch (e) {
    throw new TlpwireError('ERR_USAGE', `--file ${file}: cannot load it: ${firstLine(e)}`, { cause: e });
  }
  const exported = (mod as { default?: unknown }).default;
  if (exported === undefined || exported === null) {
    throw new TlpwireError('ERR_USAGE', `--file ${file}: it does not export a litmus test (expected export default { name, host, device, condition }; see docs/LITMUS.md)`);
  }
  const list = Array.isArray(exported) ? (exported as unknown[]) : [exported];
  if (list.length === 0) throw new TlpwireError('ERR_USAGE', `--file ${file}: its default export is an empty list of tests`);
  return list.map((t) => resolveLitmusTest(t, `--file ${file}:`));
}

/** Every test the command may run: the built-ins, then the files' tests (names unique). */
async function candidates(files: readonly string[]): Promise<{ builtins: ResolvedLitmusTest[]; fromFiles: ResolvedLitmusTest[] }> {
  const builtins = BUILTIN_LITMUS_TESTS.map((t) => resolveLitmusTest(t, 'built-in test'));
  const names = new Map<string, string>(builtins.map((t) => [t.test.name, 'a built-in test']));
  const fromFiles: ResolvedLitmusTest[] = [];
  for (const file of files) {
    for (const t of await loadTestFile(file)) {
      const other = names.get(t.test.name);
      if (other !== undefined) throw new TlpwireError('ERR_USAGE', `--file ${file}: the test name ${t.test.name} is already ${other}; rename it`);
      names.set(t.test.name, `the name of a test in ${file}`);
      fromFiles.push(t);
    }
  }
  return { builtins, fromFiles };
}

function listTests(io: CliIo, tests: readonly ResolvedLitmusTest[], json: boolean): void {
  if (json) {
    const out = tests.map(({ test: t }) => ({
      name: t.name,
      description: t.description ?? null,
      condition: t.conditionText ?? null,
      expected: Object.fromEntries(PLATFORM_PAIRS.map((p) => [p, expectedObservation(t, p) ?? null])),
    }));
    io.out(`${JSON.stringify({ tests: out }, null, 2)}\n`);
    return;
  }
  const width = Math.max(...tests.map((t) => t.test.name.length));
  const cell = (s: string): string => s.padEnd(10);
  io.out(`% expected observation per platform (host/device), from docs/MEMORY-MODEL.md\n`);
  io.out(`${'% test'.padEnd(width + 2)}${PLATFORM_PAIRS.map(cell).join('')}\n`);
  for (const { test: t } of tests) {
    const exp = PLATFORM_PAIRS.map((p) => cell(expectedObservation(t, p) ?? '-')).join('');
    io.out(`${t.name.padEnd(width + 2)}${exp}${t.description ?? ''}\n`);
  }
}

/** `tlpwire litmus`. */
export function registerLitmusCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  program
    .command('litmus')
    .description('run litmus tests of host <-> device memory ordering in the simulator, reported like litmus7')
    .argument('[names...]', 'tests to run (names or globs with *); default: all')
    .option('--iterations <n>', `runs per test (default ${DEFAULT_ITERATIONS})`)
    .option('--seed <s>', 'seed of the runs: the same seed gives the same histograms (default 0)')
    .option('--host-platform <tso|weak>', 'the host CPU memory model (default weak)')
    .option('--device-platform <tso|weak>', "the device engine's memory model (default weak)")
    .option('--json', 'print the results as one JSON document')
    .option('--file <path>', 'also load tests from an ES module (repeatable; see docs/LITMUS.md)', collect)
    .option('--list', 'list the tests and their expected observations, run nothing')
    .addHelpText('after', LITMUS_HELP)
    .action(async (names: string[], opts: LitmusCliOptions) => {
      const iterations = opts.iterations === undefined ? DEFAULT_ITERATIONS : parseCount(opts.iterations, '--iterations', 1, MAX_ITERATIONS);
      const seed = opts.seed === undefined ? 0 : parseCount(opts.seed, '--seed', 0, 0xffffffff);
      const hostPlatform = opts.hostPlatform === undefined ? 'weak' : parsePlatform(opts.hostPlatform, '--host-platform');
      const devicePlatform = opts.devicePlatform === undefined ? 'weak' : parsePlatform(opts.devicePlatform, '--device-platform');
      const json = opts.json === true;
      const files = opts.file ?? [];

      const { builtins, fromFiles } = await candidates(files);
      const all = [...builtins, ...fromFiles];
      const byTest = new Map<LitmusTest, ResolvedLitmusTest>(all.map((r) => [r.test, r]));
      const pool = names.length === 0 && fromFiles.length > 0 ? fromFiles : all;
      const chosen = selectLitmusTests(
        pool.map((r) => r.test),
        names,
      ).map((t) => byTest.get(t)!);

      if (opts.list === true) {
        listTests(io, chosen, json);
        return;
      }

      if (!json) io.out(`% tlpwire litmus: host ${hostPlatform}, device ${devicePlatform}, ${iterations} runs per test, seed ${seed}\n\n`);
      const results: LitmusResult[] = [];
      for (const r of chosen) {
        const result = await runLitmusTest(r, { hostPlatform, devicePlatform, iterations, seed });
        results.push(result);
        if (!json) io.out(`${formatLitmusResult(result)}\n`);
      }
      const contradicted = results.filter((r) => r.matches === false);
      if (json) {
        const summary = {
          tests: results.length,
          asExpected: results.filter((r) => r.matches === true).length,
          contradicted: contradicted.map((r) => r.name),
          withoutExpectation: results.filter((r) => r.matches === null).length,
        };
        io.out(`${JSON.stringify({ hostPlatform, devicePlatform, iterations, seed, tests: results, summary }, null, 2)}\n`);
      } else {
        io.out(formatLitmusSummary(results));
      }
      if (contradicted.length > 0) setCode(EXIT_FAIL);
    });
}
