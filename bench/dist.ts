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
export type TlpModule = typeof import('../src/tlp/index.js');
export type SpecModule = typeof import('../src/spec/index.js');
