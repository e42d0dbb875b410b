/**
 * Prints litmus results the way litmus7 does, so that people who read herd/litmus7 output read
 * these at a glance:
 *
 *   % host: W data=1; smp_wmb; W flag=1 — device: R flag; rmb; R data
 *   Test MP-h2d+smp_wmb+rmb Allowed
 *   Histogram (3 states)
 *   180   :>flag=0; data=0;
 *   9     *>flag=1; data=0;
 *   211   :>flag=1; data=1;
 *   Positive: 9, Negative: 391
 *   Condition exists (flag=1 /\ data=0) is validated
 *   Observation MP-h2d+smp_wmb+rmb Sometimes 9 391
 *   Expected MP-h2d+smp_wmb+rmb Sometimes (weak/weak): ok
 *
 * `*>` marks states that satisfy the condition, `:>` the others. The last line is tlpwire's
 * own: the expected observation (docs/MEMORY-MODEL.md) and whether this run matched it.
 */
import type { LitmusResult } from './runner.js';

/** litmus7 pads the count to six columns; a wider count runs into the marker. */
const COUNT_WIDTH = 6;

export function formatLitmusResult(r: LitmusResult): string {
  const lines: string[] = [];
  if (r.description !== null) lines.push(`% ${r.description}`);
  lines.push(`Test ${r.name} Allowed`);
  lines.push(`Histogram (${r.histogram.length} state${r.histogram.length === 1 ? '' : 's'})`);
  for (const h of r.histogram) lines.push(`${String(h.count).padEnd(COUNT_WIDTH)}${h.satisfies ? '*>' : ':>'}${h.state}`);
  lines.push(`Positive: ${r.positive}, Negative: ${r.negative}`);
  lines.push(`Condition exists (${r.condition}) is ${r.positive > 0 ? '' : 'NOT '}validated`);
  lines.push(`Observation ${r.name} ${r.observation} ${r.positive} ${r.negative}`);
  lines.push(expectationLine(r));
  return `${lines.join('\n')}\n`;
}

export function expectationLine(r: LitmusResult): string {
  const where = `${r.hostPlatform}/${r.devicePlatform}`;
  if (r.expected === null) return `Expected ${r.name} (no expectation given for ${where})`;
  if (r.matches === true) return `Expected ${r.name} ${r.expected} (${where}): ok`;
  const hint = r.expected === 'Sometimes' ? `; not both outcomes in ${r.iterations} runs, try more --iterations` : '';
  return `Expected ${r.name} ${r.expected} (${where}): CONTRADICTED, observed ${r.observation}${hint}`;
}

/** The closing summary: how many tests matched their expectation. */
export function formatLitmusSummary(results: readonly LitmusResult[]): string {
  const contradicted = results.filter((r) => r.matches === false);
  const checked = results.filter((r) => r.matches !== null).length;
  const head = `% ${results.length} test${results.length === 1 ? '' : 's'}: ${checked - contradicted.length} as expected, ${contradicted.length} contradicted`;
  const unchecked = results.length - checked;
  const tail = unchecked > 0 ? `, ${unchecked} without expectation` : '';
  const list = contradicted.length > 0 ? `\n% contradicted: ${contradicted.map((r) => r.name).join(' ')}` : '';
  return `${head}${tail}${list}\n`;
}
