/**
 * The replay report for people and machines: report.json (the ReplayReport as it is),
 * report.md with tables, and SVG charts beside it (latency histogram, the retention curve per
 * complexity, L2 over time, and a sweep's accuracy against FLOPs). Files are written to a
 * temporary name and renamed, so an interrupted run never leaves half a report.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { FrameSummary, LatencyStage, ReplayReport, SettingResult } from './report-types.js';
import { latencyCaveats, LATENCY_NOTE, spreadOf } from './latency.js';
import { histogram, lineChart, PALETTE, REFERENCE_COLOR, scatterChart, type LineSeries } from './svg.js';

export { latencyStats, percentile } from './latency.js';

const dash = '–';
const m3 = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? dash : v.toFixed(3));
const ms = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? dash : v < 10 ? v.toFixed(2) : v.toFixed(1));
const pct = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? dash : `${(100 * v).toFixed(1)}%`);
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export const CHART_TITLES: Record<string, string> = {
  'latency-histogram.svg': 'Inference latency per frame',
  'retention-curve.svg': 'Visual tokens kept per decoder layer',
  'l2-over-time.svg': 'Planning error over the drive',
  'sweep-accuracy-flops.svg': 'Accuracy against prefill FLOPs',
  'trajectory-3s.svg': 'Where the ego is 3 s ahead: planned and driven (ego frame)',
};

const CV_LABEL = 'constant velocity';

/** The charts of a report, by file name. */
export function renderCharts(r: ReplayReport): Array<{ name: string; svg: string }> {
  const out: Array<{ name: string; svg: string }> = [];
  const cv = r.constantVelocity ?? null;
  out.push({
    name: 'latency-histogram.svg',
    svg: histogram({ title: CHART_TITLES['latency-histogram.svg'] as string, xLabel: 'inference latency (total) [ms]', series: r.settings.map((s) => ({ name: s.label, values: s.series.map((f) => f.totalMs) })) }),
  });
  const curves: LineSeries[] = [];
  for (const [i, s] of r.settings.entries()) curves.push({ name: s.label, points: s.tokens.keptPerLayerMean.map((k, l) => [l, k] as [number, number]), color: PALETTE[i % PALETTE.length] as string });
  const auto = r.settings.find((s) => s.policy === 'autoprune' && s.tokens.byComplexity.length);
  if (auto) {
    // Dashed, in colours of their own: where the buckets follow the setting's mean curve, both stay visible.
    auto.tokens.byComplexity.forEach((b, j) => {
      curves.push({ name: `${b.label} complexity (MI ${b.miMin.toFixed(2)}–${b.miMax.toFixed(2)})`, points: b.keptPerLayerMean.map((k, l) => [l, k] as [number, number]), color: PALETTE[(r.settings.length + j) % PALETTE.length] as string, dashed: true });
    });
  }
  out.push({ name: 'retention-curve.svg', svg: lineChart({ title: CHART_TITLES['retention-curve.svg'] as string, xLabel: 'decoder layer', yLabel: 'visual tokens kept', series: curves, xInteger: true }) });
  const l2 = (s: SettingResult) => s.series.map((f) => [f.tS, f.l2At3sM ?? f.l2FinalM] as [number, number | null]);
  out.push({
    name: 'l2-over-time.svg',
    svg: lineChart({
      title: CHART_TITLES['l2-over-time.svg'] as string,
      xLabel: 'time in the drive [s]',
      yLabel: 'L2 at 3 s (or last waypoint) [m]',
      series: [...r.settings.map((s, i) => ({ name: s.label, points: l2(s), color: PALETTE[i % PALETTE.length] as string })), ...(cv ? [{ name: CV_LABEL, points: l2(cv), color: REFERENCE_COLOR, dashed: true }] : [])],
    }),
  });
  // The plan against the drive, 3 s ahead: x shows speed and stops, y shows turns and lane changes.
  // One colour per setting (black: driven, grey: constant velocity), solid for x and dashed for y.
  const first = r.settings[0];
  if (first?.series.some((f) => f.drivenAt3s)) {
    const pick = (f: FrameSummary, k: 'plannedAt3s' | 'drivenAt3s', i: 0 | 1): number | null => f[k]?.[i] ?? null;
    const series: LineSeries[] = [];
    for (const [i, axis] of [[0, 'x (forward)'], [1, 'y (left)']] as const) {
      series.push({ name: `driven ${axis}`, points: first.series.map((f) => [f.tS, pick(f, 'drivenAt3s', i)]), color: '#000000', dashed: i === 1 });
      r.settings.forEach((st, k) => series.push({ name: `${st.label} ${axis}`, points: st.series.map((f) => [f.tS, pick(f, 'plannedAt3s', i)]), color: PALETTE[k % (PALETTE.length - 1)] as string, dashed: i === 1 }));
      // constant velocity plans straight ahead: its y is 0 throughout and says nothing
      if (cv && i === 0) series.push({ name: `${CV_LABEL} ${axis}`, points: cv.series.map((f) => [f.tS, pick(f, 'plannedAt3s', 0)]), color: REFERENCE_COLOR });
    }
    out.push({ name: 'trajectory-3s.svg', svg: lineChart({ title: CHART_TITLES['trajectory-3s.svg'] as string, xLabel: 'time in the drive [s]', yLabel: 'position 3 s ahead [m]', series, yFromZero: false }) });
  }
  if (r.settings.length > 1) {
    const useL2 = r.settings.some((s) => s.planning.l2At3sM !== null);
    const cvY = cv ? (useL2 ? cv.planning.l2At3sM : cv.planning.adeM) : null;
    out.push({
      name: 'sweep-accuracy-flops.svg',
      svg: scatterChart({
        title: CHART_TITLES['sweep-accuracy-flops.svg'] as string,
        xLabel: '% of unpruned prefill FLOPs',
        yLabel: useL2 ? 'L2 at 3 s [m]' : 'ADE [m]',
        points: r.settings.map((s) => ({ x: 100 * s.compute.relFlopsMean, y: useL2 ? s.planning.l2At3sM : s.planning.adeM, label: s.label, group: s.policy })),
        connect: true,
        references: cvY !== null ? [{ y: cvY, label: CV_LABEL }] : [],
      }),
    });
  }
  return out;
}

const STAGES: LatencyStage[] = ['decode', 'tokenize', 'preprocess', 'vision', 'prefill', 'head', 'engine', 'total', 'sensorToPublish'];

function settingsTable(settings: SettingResult[]): string[] {
  const rows = [
    '| setting | inferred | published | dropped | failed | L2@1s [m] | L2@2s [m] | L2@3s [m] | ADE [m] | FDE [m] | vs none ADE [m] | kept tokens | prefill FLOPs | budget met | total p50 / p95 / p99 / max [ms] | sensor→publish p95 [ms] |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of settings) {
    const l = s.latency.total;
    rows.push(
      `| ${cell(s.label)} | ${s.frames.setsInferred} | ${s.frames.published} | ${s.frames.droppedStale + s.frames.droppedSuperseded} | ${s.frames.failed} | ${m3(s.planning.l2At1sM)} | ${m3(s.planning.l2At2sM)} | ${m3(s.planning.l2At3sM)} | ${m3(s.planning.adeM)} | ${m3(s.planning.fdeM)} | ${m3(s.agreementWithNone?.adeM)} | ${s.tokens.keptMean.toFixed(1)} / ${s.tokens.visualIn} | ${pct(s.compute.relFlopsMean)} | ${pct(s.compute.budgetMetFraction)} | ${ms(l.p50Ms)} / ${ms(l.p95Ms)} / ${ms(l.p99Ms)} / ${ms(l.maxMs)} | ${ms(s.latency.sensorToPublish.p95Ms)} |`,
    );
  }
  return rows;
}

/** report.md: what ran, what went wrong, the tables and the charts. */
export function renderMarkdown(r: ReplayReport, charts: string[]): string {
  const L: string[] = [`# Replay report: ${cell(path.basename(r.bag.path))}`, ''];
  if (r.error || r.interrupted) {
    const n = Math.max(0, ...r.settings.map((s) => s.frames.published));
    L.push('> **Partial report.**');
    if (r.error) L.push(`> ${r.error.code}: ${cell(r.error.message)}${r.error.file ? ` (file ${cell(r.error.file)}${r.error.offset !== undefined ? `, offset ${r.error.offset}` : ''})` : ''}.`);
    if (r.interrupted) L.push('> The replay was interrupted.');
    L.push(`> Evaluated the ${n} frames read before it.`, '');
  }
  L.push(
    `- bag: \`${r.bag.path}\` (${r.bag.storage}, ${r.bag.files.length} file${r.bag.files.length === 1 ? '' : 's'}, ${r.bag.durationS.toFixed(1)} s, ${r.bag.messageCount} messages; ${r.messagesRead} read)`,
    `- model: \`${r.model.path}\` (${r.model.params.toLocaleString('en-US')} parameters, ${r.model.backend}, cameras ${r.model.cameras.join(', ')})`,
    `- config: \`${r.config}\``,
    `- clock: ${r.mode.kind === 'every-set' ? 'every set (the bag clock waits for the model)' : `wall clock × ${r.mode.rate}`}`,
    `- ground truth: ${r.groundTruth ?? 'none in the bag: planning errors not computed'}`,
    `- wall time ${r.wallS.toFixed(2)} s${overheadText(r, 'replay overhead beyond inference: ', ' of wall time')}`,
    `- written ${r.createdAt}`,
    '',
    '## Settings',
    '',
    ...settingsTable(r.settings),
    ...(r.constantVelocity ? [`| ${CV_LABEL} (straight ahead at the odometry speed) | ${r.constantVelocity.frames.setsInferred} | ${r.constantVelocity.frames.published} | – | – | ${m3(r.constantVelocity.planning.l2At1sM)} | ${m3(r.constantVelocity.planning.l2At2sM)} | ${m3(r.constantVelocity.planning.l2At3sM)} | ${m3(r.constantVelocity.planning.adeM)} | ${m3(r.constantVelocity.planning.fdeM)} | – | – | – | – | – | – |`] : []),
    '',
    'L2 at a horizon: planned point at that time against the recorded ego position then (ego frame at the camera stamp). ADE: mean over waypoints; FDE: last waypoint. "vs none": distance from the unpruned plan of the same frame. Kept tokens: mean over layers and frames / visual tokens in. Dropped: camera sets dropped as stale or superseded by a newer one (in rate mode, while the model was busy).',
    '',
    `Latency: ${LATENCY_NOTE}.`,
    ...caveatsOf(r).map((c) => `- **Within the noise:** ${cell(c)}.`),
    '',
    '## Latency per stage [ms]',
    '',
  );
  for (const s of r.settings) {
    L.push(`### ${cell(s.label)}`, '', '| stage | n | mean | p50 | p95 | p99 | max |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const st of STAGES) {
      const l = s.latency[st];
      L.push(`| ${st} | ${l.n} | ${ms(l.meanMs)} | ${ms(l.p50Ms)} | ${ms(l.p95Ms)} | ${ms(l.p99Ms)} | ${ms(l.maxMs)} |`);
    }
    if (s.tokens.keptPerLayerMean.length) L.push('', `Kept visual tokens per layer (mean): ${s.tokens.keptPerLayerMean.map((k) => k.toFixed(1)).join(', ')}.`);
    for (const b of s.tokens.byComplexity) L.push(`- complexity ${b.label} (MI ${b.miMin.toFixed(3)}–${b.miMax.toFixed(3)}, ${b.n} frames): ${b.keptPerLayerMean.map((k) => k.toFixed(1)).join(', ')}`);
    L.push('');
  }
  L.push('## Topics', '', '| topic | type | messages |', '| --- | --- | ---: |');
  for (const t of r.bag.topics) L.push(`| ${cell(t.name)} | ${cell(t.type)} | ${t.count} |`);
  L.push('', '## Charts', '');
  for (const c of charts) L.push(`![${CHART_TITLES[c] ?? c}](${c})`, '');
  return L.join('\n');
}

/** The overhead as time per inferred set, which does not depend on how fast the model is. */
function perSet(r: ReplayReport): string {
  const sets = r.settings.reduce((a, s) => a + s.frames.setsInferred, 0);
  const inferS = r.settings.reduce((a, s) => a + s.inferenceMs, 0) / 1000;
  return sets ? `, ${(((r.wallS - inferS) * 1000) / sets).toFixed(2)} ms per set` : '';
}

/** The replay's own cost beyond inference; in rate mode the wall clock is the bag's, and there is none to speak of. */
function overheadText(r: ReplayReport, before: string, after: string): string {
  if (r.overheadFraction === null || r.mode.kind === 'rate') return ' (rate mode: the wall clock follows the bag)';
  return `; ${before}${pct(r.overheadFraction)}${after}${perSet(r)}`;
}

/** Settings whose latency this run cannot tell from the unpruned one's (or the first setting's). */
export function caveatsOf(r: ReplayReport): string[] {
  const ref = r.settings.find((s) => s.policy === 'none') ?? r.settings[0];
  if (!ref) return [];
  const spread = (s: SettingResult) => spreadOf(s.series.slice(s.latencyWarmupFrames ?? 0).map((f) => f.totalMs));
  return latencyCaveats({ label: ref.label, spread: spread(ref) }, r.settings.map((s) => ({ label: s.label, spread: spread(s) })));
}

/** A few lines for the console. */
export function summaryText(r: ReplayReport): string {
  const overhead = overheadText(r, 'overhead beyond inference ', '');
  const lines = [
    `replay of ${r.bag.path}: ${r.bag.durationS.toFixed(1)} s, ${r.messagesRead} messages read, ${r.mode.kind === 'every-set' ? 'every set' : `rate ×${r.mode.rate}`}, wall ${r.wallS.toFixed(1)} s${overhead.startsWith(';') ? ` (${overhead.slice(2)})` : overhead}`,
    `model ${r.model.name} (${r.model.backend}); ground truth: ${r.groundTruth ?? 'none'}`,
  ];
  const cv = r.constantVelocity;
  const w = Math.max(8, ...r.settings.map((s) => s.label.length), cv ? CV_LABEL.length : 0);
  const errs = (s: SettingResult) => [s.planning.l2At1sM, s.planning.l2At2sM, s.planning.l2At3sM, s.planning.adeM, s.planning.fdeM].map((v) => m3(v).padStart(6)).join('  ');
  lines.push(`${'setting'.padEnd(w)}  frames  dropped  L2@1s   L2@2s   L2@3s   ADE     FDE     kept       FLOPs   p50 ms  budget`);
  for (const s of r.settings) {
    lines.push(
      `${s.label.padEnd(w)}  ${String(s.frames.published).padStart(6)}  ${String(s.frames.droppedStale + s.frames.droppedSuperseded).padStart(7)}  ${errs(s)}  ${`${s.tokens.keptMean.toFixed(1)}/${s.tokens.visualIn}`.padStart(9)}  ${pct(s.compute.relFlopsMean).padStart(6)}  ${ms(s.latency.total.p50Ms).padStart(6)}  ${pct(s.compute.budgetMetFraction)}`,
    );
  }
  if (cv) lines.push(`${CV_LABEL.padEnd(w)}  ${String(cv.frames.published).padStart(6)}  ${'–'.padStart(7)}  ${errs(cv)}  (straight ahead at the odometry speed)`);
  for (const s of r.settings) if (s.frames.failed) lines.push(`${s.label}: ${s.frames.failed} frame${s.frames.failed === 1 ? '' : 's'} failed (report.md)`);
  for (const c of caveatsOf(r)) lines.push(`note: ${c}`);
  if (r.error) lines.push(`PARTIAL: ${r.error.code}: ${r.error.message}`);
  if (r.interrupted) lines.push('PARTIAL: interrupted');
  if (r.outputs.markdown) lines.push(`report: ${r.outputs.markdown}`);
  return lines.join('\n');
}

async function atomicWrite(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

/** Writes report.json, the charts and report.md into dir; returns their absolute paths. */
export async function writeReport(dir: string, report: ReplayReport): Promise<{ json: string; markdown: string; svgs: string[] }> {
  await mkdir(dir, { recursive: true });
  const charts = renderCharts(report);
  const svgs: string[] = [];
  for (const c of charts) {
    const f = path.resolve(dir, c.name);
    await atomicWrite(f, c.svg);
    svgs.push(f);
  }
  const markdown = path.resolve(dir, 'report.md');
  report.outputs.markdown = markdown;
  report.outputs.svgs = svgs;
  await atomicWrite(markdown, renderMarkdown(report, charts.map((c) => c.name)));
  const json = path.resolve(dir, 'report.json');
  await atomicWrite(json, JSON.stringify(report, null, 2));
  return { json, markdown, svgs };
}
