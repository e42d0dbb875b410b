/**
 * The benchmarks measure the build that users run (dist/, which `npm run bench` makes first),
 * not the TypeScript sources as tsx compiles them on the fly: tsx keeps function names by
 * wrapping every closure it creates in a helper call, which puts a cost on hot paths that the
 * real build does not have. Types still come from src/.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export async function loadDist<T>(modulePath: string): Promise<T> {
  const url = new URL(`../dist/${modulePath}`, import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    throw new Error(`${fileURLToPath(url)} is missing: run \`npm run build\` first (npm run bench does)`);
  }
  return (await import(url.href)) as T;
}

export type RolesModule = typeof import('../src/roles/index.js');
export type CoreModule = typeof import('../src/core/index.js');
export type LinkModule = typeof import('../src/link/index.js');
export type TlpModule = typeof import('../src/tlp/index.js');
export type SpecModule = typeof import('../src/spec/index.js');

/**
 * V8 flags of every benchmark process, the parent (`npm run bench` starts it with them) and the
 * peers it spawns alike, the raw baseline's included. `--single-threaded-gc`: V8's parallel and
 * concurrent GC helper threads run on the cores the peer process needs; on a 2-core machine with
 * two busy processes that costs both DMA directions about 1.3× (measured with and without,
 * alternating). The same flag is on `npm start`; docs/PERFORMANCE.md explains it.
 */
export const BENCH_NODE_FLAGS: readonly string[] = ['--single-threaded-gc'];

/** How to start a benchmark peer that runs TypeScript: node, these, then the script. */
export function peerNodeArgs(extra: readonly string[] = []): string[] {
  return [...BENCH_NODE_FLAGS, ...extra, '--import', 'tsx'];
}

/** The flags this process lacks (it was started some other way than `npm run bench`). */
export function missingBenchFlags(): string[] {
  return BENCH_NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
}
