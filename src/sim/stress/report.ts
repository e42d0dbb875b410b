import { type MatrixCellResult, SITE_NOT_NEEDED, shellLine } from './matrix.js';

export interface MatrixReportInfo {
  secondsPerCell: number;
  firstSeed: number;
  /** Free text for the header (when, where: the caller knows, the simulation does not). */
  generated?: string;
  layers: string;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const num = (n: number): string => n.toLocaleString('en-US');

/**
 * The matrix as one self-contained HTML page: the table, and inline SVG bar charts (ring
 * operations explored per configuration; for failing cells, how many it took to find the
 * failure). No scripts, no external assets.
 */
export function matrixReportHtml(results: readonly MatrixCellResult[], info: MatrixReportInfo): string {
  const rows = results
    .map((r) => {
      const ok = r.verdict === r.cell.expected;
      const f = r.failure;
      const why = f !== undefined ? `${f.kind}: ${f.message}` : r.cell.site !== undefined ? `not needed here (reached ${num(r.siteRuns ?? 0)}×): ${SITE_NOT_NEEDED[r.cell.site]}` : '';
      return `<tr class="${r.verdict}${ok ? '' : ' unexpected'}">
<td>${esc(r.cell.label)}</td><td class="n">${num(r.ringOps)}</td><td class="n">${r.seeds}</td><td class="n">${r.corruptions}</td><td class="n">${r.stalls}</td>
<td class="v">${r.verdict === 'pass' ? 'pass' : 'FAIL'}</td><td>${r.cell.expected}${ok ? '' : ' ⚠'}</td>
<td class="n">${f === undefined ? '—' : String(f.seed)}</td>
<td>${esc(why)}${f === undefined ? '' : `<br><code>${esc(shellLine(f.argv))}</code>`}</td></tr>`;
    })
    .join('\n');
  const explored = barChart(
    'Ring operations explored per configuration',
    results.map((r) => ({ label: r.cell.label, value: r.ringOps, cls: r.verdict })),
  );
  const failing = results.filter((r) => r.failure !== undefined);
  const found = failing.length === 0 ? '' : barChart('Ring operations until the first failure (log scale)', failing.map((r) => ({ label: r.cell.label, value: r.failure!.ringOps, cls: 'fail' })), true);
  const total = results.reduce((a, r) => a + r.ringOps, 0);
  const unexpected = results.filter((r) => r.verdict !== r.cell.expected).length;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tlpwire stress matrix</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f2f2f2;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.pass td.v{color:#17692b;font-weight:600}tr.fail td.v{color:#b00020;font-weight:600}
tr.unexpected{background:#fff3cd}code{font-size:12px;background:#f6f6f6;padding:1px 3px}
svg text{font:12px system-ui,sans-serif}.bar.pass{fill:#3b9b55}.bar.fail{fill:#d0443c}
</style></head><body>
<h1>tlpwire stress matrix</h1>
<p>${esc(info.generated ?? '')} ${info.secondsPerCell} s per cell, seeds from ${info.firstSeed}; ${num(total)} ring operations in all;
${unexpected === 0 ? 'every verdict as the memory model implies.' : `<b>${unexpected} verdict(s) differ from what the memory model implies.</b>`}</p>
<p>Layers exercised: ${esc(info.layers)}</p>
<table><thead><tr><th>configuration</th><th>ring ops</th><th>seeds</th><th>corruptions</th><th>stalls</th><th>verdict</th><th>expected</th><th>first failing seed</th><th>what failed / why not needed · reproduce</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${explored}
${found}
</body></html>
`;
}

interface Bar {
  label: string;
  value: number;
  cls: string;
}

function barChart(title: string, bars: readonly Bar[], log = false): string {
  const labelW = 500;
  const barW = 560;
  const rowH = 20;
  const h = bars.length * rowH + 30;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const scale = (v: number): number => (log ? (Math.log10(Math.max(1, v)) / Math.log10(Math.max(10, max))) * barW : (v / max) * barW);
  const rows = bars
    .map((b, i) => {
      const y = 24 + i * rowH;
      const w = Math.max(1, scale(b.value));
      return `<text x="${labelW - 6}" y="${y + 13}" text-anchor="end">${esc(b.label)}</text><rect class="bar ${b.cls}" x="${labelW}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 5}"/><text x="${(labelW + w + 4).toFixed(1)}" y="${y + 13}">${num(b.value)}</text>`;
    })
    .join('\n');
  return `<h2>${esc(title)}</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + barW + 120}" height="${h}" role="img" aria-label="${esc(title)}">
${rows}
</svg>`;
}
