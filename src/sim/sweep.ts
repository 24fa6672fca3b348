/**
 * Closed-loop evaluation over many drives: held-out scenarios x settings (the expert, constant
 * velocity, and the model under each pruning policy and budget), pooled into one table. The job
 * list is fixed by the sweep's arguments, so it splits across machines: `--shard i/n` runs the
 * jobs whose index is i modulo n, and `merge` joins the shards' reports into the report one
 * process would have written (same bytes; a test checks it). The scheduler that runs the shards
 * is Kubernetes (an Indexed Job, deploy/k8s/), not ours.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { ReplaySetting } from '../replay/replay.js';
import { settingLabel, settingSlug } from '../replay/replay.js';
import { scatterChart } from '../replay/svg.js';
import { SCENARIO_KINDS, sampleScenario, type Complexity, type Scenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import type { InfractionCounts } from './metrics.js';
import { PENALTY_COEFFICIENTS } from './metrics.js';
import type { DriveReport, PlannerKind, SweepJobResult, SweepReport, SweepRow } from './types.js';

/** First seed of the held-out (test) split. */
export const TEST_SEED_BASE = 900_000;

export interface SweepSetting {
  planner: PlannerKind;
  /** For the model. */
  setting?: ReplaySetting;
  label: string;
}

export const EXPERT_LABEL = 'expert';
export const CV_LABEL = 'constant velocity';

/** The references first, then the model's settings in sweep order. */
export function sweepSettings(model: ReplaySetting[]): SweepSetting[] {
  return [
    { planner: 'expert', label: EXPERT_LABEL },
    { planner: 'constant-velocity', label: CV_LABEL },
    ...model.map((s) => ({ planner: 'model' as const, setting: s, label: settingLabel(s) })),
  ];
}

/**
 * Held-out scenarios: walking the test seeds from 900000, the first `perCell` of every
 * (instruction kind, complexity) pair (pairs the generator never makes within `maxSeeds` are
 * skipped); ordered by seed.
 */
export function heldOutScenarios(perCell: number, maxSeeds = 3000): Scenario[] {
  if (!Number.isInteger(perCell) || perCell < 1) throw new VlaError(ErrorCodes.ARGS, `--held-out takes a positive integer, got ${perCell}`);
  const want = SCENARIO_KINDS.length * 3 * perCell;
  const have = new Map<string, number>();
  const out: Scenario[] = [];
  for (let seed = TEST_SEED_BASE; seed < TEST_SEED_BASE + maxSeeds && out.length < want; seed++) {
    const sc = sampleScenario(seed);
    const key = `${sc.kind}/${sc.complexity}`;
    const n = have.get(key) ?? 0;
    if (n < perCell) {
      have.set(key, n + 1);
      out.push(sc);
    }
  }
  return out;
}

/** `900000,900003-900006` -> seeds. */
export function parseSeedList(spec: string): number[] {
  const out: number[] = [];
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new VlaError(ErrorCodes.ARGS, `--scenarios takes seeds and ranges (900000,900003-900006), got '${part}'`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 10_000) throw new VlaError(ErrorCodes.ARGS, `--scenarios: bad range '${part}'`);
    for (let s = a; s <= b; s++) out.push(s);
  }
  if (!out.length) throw new VlaError(ErrorCodes.ARGS, '--scenarios: no seeds');
  return out;
}

/** `i/n` -> shard (0 <= i < n). */
export function parseShard(spec: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(String(spec).trim());
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index >= 0 && index < count)) throw new VlaError(ErrorCodes.ARGS, `--shard takes i/n with 0 <= i < n, got '${spec}'`);
  return { index, count };
}

export interface Job {
  job: number;
  scenario: Scenario;
  setting: SweepSetting;
  /** The drive's directory, relative to the sweep's. */
  dir: string;
}

export function sweepJobs(scenarios: Scenario[], settings: SweepSetting[]): Job[] {
  const jobs: Job[] = [];
  for (const scenario of scenarios) for (const setting of settings) jobs.push({ job: jobs.length, scenario, setting, dir: path.join('drives', String(scenario.seed), settingSlug(setting.label)) });
  return jobs;
}

export function jobResult(job: Job, r: DriveReport): SweepJobResult {
  const m = r.metrics;
  return {
    job: job.job,
    seed: r.scenario.seed,
    kind: r.scenario.kind,
    complexity: r.scenario.complexity,
    label: job.setting.label,
    planner: job.setting.planner,
    policy: r.planner.policy,
    budget: r.planner.budget,
    status: m.status,
    routeCompletion: m.routeCompletion,
    infractionPenalty: m.infractionPenalty,
    drivingScore: m.drivingScore,
    success: m.success,
    infractions: m.infractions,
    outsideLanesPercent: m.outsideLanesPercent,
    routeLanePercent: m.routeLanePercent,
    minTtcS: m.minTtcS,
    planAgeMeanMs: r.planAgeAtUse.meanMs,
    planAgeP95Ms: r.planAgeAtUse.p95Ms,
    latencyMeanMs: r.inferenceLatency.meanMs,
    safeStops: r.safeStops.count,
    keptTokensMean: r.inference.keptTokensMean,
    relFlopsMean: r.inference.relFlopsMean,
    maxAbsLonJerkMps3: m.comfort.maxAbsLonJerkMps3,
    comfortable: m.comfort.comfortable,
    simTimeS: m.simTimeS,
    dir: job.dir,
  };
}

const r4 = (v: number) => Number(v.toFixed(4));
const meanOf = (xs: number[]) => (xs.length ? r4(xs.reduce((a, b) => a + b, 0) / xs.length) : 0);
const meanOrNull = (xs: Array<number | null>) => {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length ? meanOf(v) : null;
};

/** One row per setting (in the sweep's order) over the given job results. */
export function poolRows(settings: SweepSetting[], results: SweepJobResult[]): SweepRow[] {
  const rows: SweepRow[] = [];
  for (const s of settings) {
    const rs = results.filter((r) => r.label === s.label);
    if (!rs.length) continue;
    const infractions = Object.fromEntries(Object.keys(rs[0]?.infractions ?? {}).map((k) => [k, rs.reduce((a, r) => a + (r.infractions[k as keyof InfractionCounts] ?? 0), 0)])) as unknown as InfractionCounts;
    const penalised = (Object.keys(PENALTY_COEFFICIENTS) as Array<keyof InfractionCounts>).reduce((a, k) => a + (infractions[k] ?? 0), 0);
    const ttcs = rs.map((r) => r.minTtcS).filter((x): x is number => x !== null);
    rows.push({
      label: s.label,
      planner: s.planner,
      policy: rs[0]?.policy ?? s.planner,
      budget: rs[0]?.budget ?? null,
      drives: rs.length,
      routeCompletion: meanOf(rs.map((r) => r.routeCompletion)),
      drivingScore: meanOf(rs.map((r) => r.drivingScore)),
      infractionPenalty: meanOf(rs.map((r) => r.infractionPenalty)),
      successRate: meanOf(rs.map((r) => (r.success ? 1 : 0))),
      infractions,
      infractionsPerDrive: r4(penalised / rs.length),
      outsideLanesPercent: meanOf(rs.map((r) => r.outsideLanesPercent)),
      routeLanePercent: meanOf(rs.map((r) => r.routeLanePercent)),
      minTtcS: ttcs.length ? r4(Math.min(...ttcs)) : null,
      planAgeMeanMs: meanOrNull(rs.map((r) => r.planAgeMeanMs)),
      latencyMeanMs: meanOrNull(rs.map((r) => r.latencyMeanMs)),
      safeStops: rs.reduce((a, r) => a + r.safeStops, 0),
      keptTokensMean: meanOrNull(rs.map((r) => r.keptTokensMean)),
      relFlopsMean: meanOrNull(rs.map((r) => r.relFlopsMean)),
      comfortableRate: meanOf(rs.map((r) => (r.comfortable ? 1 : 0))),
    });
  }
  return rows;
}

/** The sweep report from job results (sorted by job), the same whichever process ran them. */
export function sweepReport(head: SweepReport['sweep'], settings: SweepSetting[], results: SweepJobResult[], shard: SweepReport['shard'], interrupted: boolean): SweepReport {
  const jobs = [...results].sort((a, b) => a.job - b.job);
  const group = (key: (r: SweepJobResult) => string, order: string[]) => {
    const out: Record<string, SweepRow[]> = {};
    for (const k of order) {
      const rs = jobs.filter((r) => key(r) === k);
      if (rs.length) out[k] = poolRows(settings, rs);
    }
    return out;
  };
  const complexities: Complexity[] = ['low', 'medium', 'high'];
  return {
    kind: 'autoprune-ros.drive-sweep',
    version: 1,
    sweep: head,
    shard,
    jobs,
    rows: poolRows(settings, jobs),
    byKind: group((r) => r.kind, [...SCENARIO_KINDS]),
    byComplexity: group((r) => r.complexity, complexities),
    interrupted,
  };
}

const f1 = (v: number | null) => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(1));
const f2 = (v: number | null) => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(2));
const pct = (v: number | null) => (v === null || !Number.isFinite(v) ? '–' : `${(100 * v).toFixed(0)}%`);

/** The table: one row per setting. */
export function sweepTable(rows: SweepRow[], visualTokens?: number | null): string[] {
  const L = [
    '| setting | drives | driving score | route completion [%] | infraction penalty | success | collisions (veh./static) | stop infr. | outside lanes [%] | in route lane [%] | min TTC [s] | plan age [ms] | latency [ms] | safe stops | kept tokens | rel. FLOPs |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const model = r.planner === 'model';
    L.push(
      `| ${r.label} | ${r.drives} | ${f1(r.drivingScore)} | ${f1(r.routeCompletion)} | ${f2(r.infractionPenalty)} | ${pct(r.successRate)} | ${r.infractions.collisionVehicle}/${r.infractions.collisionStatic} | ${r.infractions.stopLine + r.infractions.stopBehind} | ${f1(r.outsideLanesPercent)} | ${f1(r.routeLanePercent)} | ${f2(r.minTtcS)} | ${f1(r.planAgeMeanMs)} | ${f1(r.latencyMeanMs)} | ${r.safeStops} | ${model && r.keptTokensMean !== null ? `${r.keptTokensMean.toFixed(1)}${visualTokens ? ` / ${visualTokens}` : ''}` : '–'} | ${model ? pct(r.relFlopsMean) : '–'} |`,
    );
  }
  return L;
}

export function sweepMarkdown(r: SweepReport): string {
  const command = `autoprune-ros drive --sweep ... --scenarios ${r.sweep.scenarios.map((x) => x.seed).join(',')} --latency ${r.sweep.latency} --max-plan-age ${r.sweep.maxPlanAgeMs}${r.sweep.reactiveTraffic ? ' --reactive-traffic' : ''}`;
  const L = [
    '# Closed-loop evaluation',
    '',
    `${r.sweep.scenarios.length} held-out scenarios x ${r.sweep.settings.length} settings (${r.sweep.settings.join('; ')}), model \`${r.sweep.model ?? '–'}\`, latency \`${r.sweep.latency}\`${r.sweep.deterministic ? '' : ' (measured: not reproducible)'}, plan-age limit ${r.sweep.maxPlanAgeMs} ms, ${r.sweep.reactiveTraffic ? 'reactive' : 'non-reactive'} traffic. Command: \`${command}\`.`,
    '',
    'Driving score = route completion x infraction penalty (CARLA leaderboard 2.0); means over the drives. Collisions and stop infractions are counts over all drives. See docs/closed-loop.md.',
    '',
    ...sweepTable(r.rows),
    '',
  ];
  for (const [k, rows] of Object.entries(r.byKind)) L.push(`## Instruction kind: ${k}`, '', ...sweepTable(rows), '');
  for (const [k, rows] of Object.entries(r.byComplexity)) L.push(`## Complexity: ${k}`, '', ...sweepTable(rows), '');
  L.push('![Driving score against prefill FLOPs](driving-score-flops.svg)', '');
  return L.join('\n');
}

export function sweepChart(r: SweepReport): string {
  // settings whose every inference failed (a budget the policy cannot meet) have no FLOPs to place them at
  const pts = r.rows.filter((row) => row.planner === 'model' && row.relFlopsMean !== null).map((row) => ({ x: 100 * (row.relFlopsMean as number), y: row.drivingScore, label: row.budget ? row.budget.replace('tokens:', 'T=') : row.label, group: row.policy }));
  for (const row of r.rows.filter((x) => x.planner !== 'model')) pts.push({ x: 100, y: row.drivingScore, label: row.label, group: 'references' });
  return scatterChart({ title: `Closed-loop driving score against prefill FLOPs (latency ${r.sweep.latency})`, xLabel: '% of unpruned prefill FLOPs', yLabel: 'driving score', points: pts });
}

async function put(dir: string, name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
  return file;
}

/** report.json, report.md, driving-score-flops.svg. */
export async function writeSweep(dir: string, r: SweepReport): Promise<string> {
  await mkdir(dir, { recursive: true });
  await put(dir, 'report.json', JSON.stringify(r, null, 1) + '\n');
  if (r.shard === null) {
    await put(dir, 'driving-score-flops.svg', sweepChart(r));
    await put(dir, 'report.md', sweepMarkdown(r));
  }
  return path.join(dir, 'report.json');
}

/** Joins shard reports of one sweep into the whole sweep's report. */
export async function mergeShards(files: string[]): Promise<SweepReport> {
  if (!files.length) throw new VlaError(ErrorCodes.SHARD, 'merge: no shard reports given');
  const reports: SweepReport[] = [];
  for (const f of files) {
    const file = f.endsWith('.json') ? f : path.join(f, 'report.json');
    let r: SweepReport;
    try {
      r = JSON.parse((await readRegularFile(file, 1 << 30, { missing: ErrorCodes.SHARD, other: ErrorCodes.SHARD })).toString('utf8')) as SweepReport;
    } catch (err) {
      if (err instanceof VlaError) throw err;
      throw new VlaError(ErrorCodes.SHARD, `${file}: ${(err as Error).message}`, { file }, { cause: err });
    }
    if (r?.kind !== 'autoprune-ros.drive-sweep' || r.version !== 1 || !Array.isArray(r.jobs)) throw new VlaError(ErrorCodes.SHARD, `${file}: not a drive sweep report`, { file });
    reports.push(r);
  }
  const head = JSON.stringify((reports[0] as SweepReport).sweep);
  for (const [i, r] of reports.entries()) if (JSON.stringify(r.sweep) !== head) throw new VlaError(ErrorCodes.SHARD, `${files[i]}: from a different sweep (scenarios, settings, latency, model or limits differ)`, { file: files[i] });
  const sweep = (reports[0] as SweepReport).sweep;
  const byJob = new Map<number, SweepJobResult>();
  for (const [i, r] of reports.entries()) {
    for (const j of r.jobs) {
      if (byJob.has(j.job)) throw new VlaError(ErrorCodes.SHARD, `${files[i]}: job ${j.job} is in two shard reports`, { file: files[i] });
      byJob.set(j.job, j);
    }
  }
  const missing: number[] = [];
  for (let j = 0; j < sweep.jobs; j++) if (!byJob.has(j)) missing.push(j);
  if (missing.length) throw new VlaError(ErrorCodes.SHARD, `merge: ${missing.length} of ${sweep.jobs} jobs have no result (first: ${missing.slice(0, 5).join(', ')}); merge all shards, after each finished`);
  const settings: SweepSetting[] = sweep.settings.map((label) => {
    const any = [...byJob.values()].find((j) => j.label === label);
    return { planner: any?.planner ?? 'model', label };
  });
  return sweepReport(sweep, settings, [...byJob.values()], null, reports.some((r) => r.interrupted));
}
