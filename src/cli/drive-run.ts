/**
 * What the closed-loop subcommands do (src/cli/drive.ts registers them and loads this module only
 * when one of them runs): `drive` (one scenario, or a sweep of held-out scenarios x settings,
 * optionally one shard of it) and `merge` (shard reports into one).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { packageRoot, resolveModelPath } from '../util/paths.js';
import type { PruneRequest } from '../engine/calibration.js';
import { Engine, parseBudget } from '../engine/engine.js';
import { engineLoadOptions, loadParamsFile, type NodeConfig } from '../pipeline/params.js';
import { resolveShareBudgets } from './evaluate.js';
import { parseSweep, settingLabel, type ReplaySetting } from '../replay/replay.js';
import { SCENARIO_KINDS, sampleScenario, type Scenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { logger } from '../util/logger.js';
import { runDrive, type DriveOptions, type PlannerEngine } from '../sim/drive.js';
import { latencyIsDeterministic, latencyLabel, modelArithFromDir, parseLatency, type LatencySpec, type ModelArith } from '../sim/latency.js';
import { loadScenarioFile } from '../sim/scenario-file.js';
import { heldOutScenarios, jobResult, mergeShards, parseSeedList, parseShard, sweepJobs, sweepReport, sweepSettings, sweepTable, TEST_SEED_BASE, writeSweep, type Job } from '../sim/sweep.js';
import type { DriveReport, PlannerKind, SweepJobResult, SweepReport } from '../sim/types.js';

import { EXIT_INTERRUPTED, type Io } from './common.js';
import { DEFAULT_SWEEP, type DriveCliOptions } from './drive.js';



/** Inside the package: relative to it (reports must not depend on where the package lies). */
const rel = (p: string) => {
  const r = path.relative(packageRoot, path.resolve(p));
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : path.resolve(p);
};

const resolveModel = resolveModelPath;

/** Waypoint count and spacing of a model directory (the reference planners plan as many). */
function waypointsOf(dir: string): { count: number; dtS: number } {
  try {
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { vla?: { num_waypoints?: number; waypoint_dt_s?: number } };
    return { count: cfg.vla?.num_waypoints ?? 6, dtS: cfg.vla?.waypoint_dt_s ?? 0.5 };
  } catch {
    return { count: 6, dtS: 0.5 };
  }
}

/** The visual tokens a frame gives the decoder (for budgets given as a share). */
const visualTokensOf = (a: ModelArith, config: NodeConfig) => a.tokensPerView * config.node.cameras.length;

function budgetOf(spec: string, visualTokens: number) {
  const m = /^(\d+(?:\.\d+)?)%$/.exec(spec.trim());
  if (!m) return parseBudget(spec);
  const share = Number(m[1]) / 100;
  if (!(share > 0 && share <= 1)) throw new VlaError(ErrorCodes.ARGS, `--budget share '${spec}' must be in (0%, 100%]`);
  return { kind: 'tokens' as const, value: Math.max(1, Math.round(share * visualTokens)) };
}

interface Setup {
  config: NodeConfig;
  configLabel: string;
  modelDir: string;
  modelLabel: string;
  arith: ModelArith;
  latency: LatencySpec;
  engine?: Engine;
}

async function setup(o: DriveCliOptions, needModel: boolean): Promise<Setup> {
  const overrides: Record<string, unknown> = {};
  if (o.model) overrides.model_path = o.model;
  if (o.backend) overrides.backend = o.backend;
  if (o.threads !== undefined) overrides.threads = o.threads;
  if (o.calibration === false) overrides.use_calibration = false;
  const config = loadParamsFile(o.config, overrides);
  config.engine.modelPath = resolveModel(config.engine.modelPath);
  const latency = parseLatency(o.latency);
  const arith = modelArithFromDir(config.engine.modelPath);
  const engine = needModel ? await Engine.load(config.engine.modelPath, engineLoadOptions(config.engine)) : undefined;
  return { config, configLabel: rel(o.config), modelDir: config.engine.modelPath, modelLabel: rel(config.engine.modelPath), arith, latency, engine };
}

/** Ctrl-C: finish the running step, write a partial report; a second Ctrl-C quits at once. */
function onInterrupt(): { signal: AbortSignal; dispose: () => void } {
  const abort = new AbortController();
  let n = 0;
  const handler = () => {
    if (++n > 1) process.exit(EXIT_INTERRUPTED);
    abort.abort();
  };
  process.on('SIGINT', handler);
  return { signal: abort.signal, dispose: () => process.off('SIGINT', handler) };
}

function driveOptions(s: Setup, o: DriveCliOptions, scenario: Scenario, source: string, planner: PlannerKind, setting: ReplaySetting | 'config', outDir: string, artifacts: { bag: boolean; animation: boolean; svg: boolean }, signal: AbortSignal | undefined, quiet = false): DriveOptions {
  let prune: PruneRequest | undefined;
  let deadline = false;
  let label: string = planner === 'expert' ? 'expert' : planner === 'constant-velocity' ? 'constant velocity' : '';
  if (planner === 'model') {
    if (setting === 'config') {
      prune = s.config.node.prune;
      deadline = s.config.node.deadlineMs !== undefined;
      label = deadline ? `${prune?.policy ?? 'autoprune'} latency:${s.config.node.deadlineMs}ms` : settingLabel({ policy: prune?.policy ?? 'none', ...(prune?.budget ? { budget: prune.budget } : {}) });
    } else {
      prune = setting.policy === 'none' ? undefined : { ...s.config.pruneOptions, ...(s.config.node.prune ?? {}), explicit: s.config.explicitPruneOptions, policy: setting.policy, ...(setting.budget ? { budget: setting.budget } : {}) };
      label = settingLabel(setting);
    }
  }
  return {
    scenario,
    scenarioSource: source,
    planner,
    ...(s.engine ? { engine: s.engine as PlannerEngine } : {}),
    modelArith: s.arith,
    modelLabel: s.modelLabel,
    waypoints: waypointsOf(s.modelDir),
    config: s.config,
    configLabel: s.configLabel,
    prune,
    deadline,
    label,
    latency: s.latency,
    maxPlanAgeMs: o.maxPlanAge,
    reactiveTraffic: o.reactiveTraffic ?? false,
    cameraHz: o.cameraHz,
    width: o.width,
    height: o.height,
    ...(o.timeout !== undefined ? { timeoutS: o.timeout } : {}),
    outDir,
    writeBag: artifacts.bag,
    writeAnimation: artifacts.animation,
    writeSvg: artifacts.svg,
    ...(signal ? { signal } : {}),
    // a sweep with a budget a policy cannot meet would log every frame; the report counts them (LOG_LEVEL shows each)
    log: logger.child({ component: 'sim' }, process.env.LOG_LEVEL === undefined ? { level: quiet ? 'fatal' : 'warn' } : {}),
  };
}

function summary(r: DriveReport, wallS: number): string {
  const m = r.metrics;
  const inf = Object.entries(m.infractions).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  const f = (v: number | null, d = 1) => (v === null ? '–' : v.toFixed(d));
  return [
    `scenario ${r.scenario.seed} (${r.scenario.kind}, ${r.scenario.complexity}): '${r.scenario.instruction}' — ${r.planner.label}, latency ${r.setup.latency}`,
    `${m.status}: driving score ${m.drivingScore.toFixed(1)} = route completion ${m.routeCompletion.toFixed(1)}% x penalty ${m.infractionPenalty.toFixed(3)}; infractions: ${inf}; outside lanes ${m.outsideLanesPercent.toFixed(1)}%, in the route's lane ${m.routeLanePercent.toFixed(1)}%`,
    `min TTC ${f(m.minTtcS, 2)} s; plan age at use mean ${f(r.planAgeAtUse.meanMs)} ms (p95 ${f(r.planAgeAtUse.p95Ms)}); inference latency mean ${f(r.inferenceLatency.meanMs)} ms; safe stops ${r.safeStops.count}; comfort: max |jerk| ${m.comfort.maxAbsLonJerkMps3.toFixed(2)} m/s^3, max |lat. acc.| ${m.comfort.maxAbsLatAccelMps2.toFixed(2)} m/s^2`,
    `${m.simTimeS.toFixed(1)} s simulated in ${wallS.toFixed(1)} s (${(wallS / Math.max(1e-3, m.simTimeS)).toFixed(2)} s wall per simulated second)${r.setup.deterministic ? '' : '; measured latency: not reproducible'}`,
  ].join('\n');
}

export async function runOne(io: Io, o: DriveCliOptions): Promise<number> {
  if (o.scenario === undefined && !o.scenarioFile) throw new VlaError(ErrorCodes.ARGS, 'drive needs --scenario SEED, --scenario-file FILE or --sweep');
  if (o.scenario !== undefined && o.scenarioFile) throw new VlaError(ErrorCodes.ARGS, '--scenario and --scenario-file exclude each other');
  if (o.planner !== 'model' && (o.policy || o.budget)) throw new VlaError(ErrorCodes.ARGS, `--policy and --budget are for the model planner, not '${o.planner}'`);
  const scenario = o.scenarioFile ? loadScenarioFile(o.scenarioFile) : sampleScenario(o.scenario as number);
  const s = await setup(o, o.planner === 'model');
  const it = onInterrupt();
  try {
    let setting: ReplaySetting | 'config' = 'config';
    if (o.policy || o.budget) {
      const vt = visualTokensOf(s.arith, s.config);
      const policy = o.policy ?? s.config.node.prune?.policy ?? 'autoprune';
      if (policy !== 'none' && !o.budget && !s.config.node.prune?.budget) throw new VlaError(ErrorCodes.ARGS, `--policy ${policy} needs --budget tokens:<T>, flops:<GFLOP> or a share like 33%`);
      setting = { policy, ...(policy !== 'none' ? { budget: o.budget ? budgetOf(o.budget, vt) : s.config.node.prune?.budget } : {}) } as ReplaySetting;
    }
    const t0 = performance.now();
    const r = await runDrive(driveOptions(s, o, scenario, o.scenarioFile ? path.basename(o.scenarioFile) : 'seed', o.planner, setting, path.resolve(o.out), { bag: o.bag !== false, animation: o.animation !== false, svg: o.svg !== false }, it.signal));
    const wallS = (performance.now() - t0) / 1000;
    await writeFile(path.join(o.out, 'timing.json'), JSON.stringify({ wallS, simS: r.metrics.simTimeS, wallPerSimS: wallS / Math.max(1e-3, r.metrics.simTimeS), planner: r.planner.label, latency: r.setup.latency, createdAt: new Date().toISOString() }, null, 1) + '\n');
    io.out(o.json ? JSON.stringify(r) : `${summary(r, wallS)}\nreport: ${path.join(o.out, 'report.json')}`);
    return r.interrupted ? EXIT_INTERRUPTED : 0;
  } finally {
    it.dispose();
    await s.engine?.dispose();
  }
}

function pickScenarios(o: DriveCliOptions): Scenario[] {
  const given = [o.scenarios !== undefined, o.heldOut !== undefined, o.perKind !== undefined].filter(Boolean).length;
  if (given > 1) throw new VlaError(ErrorCodes.ARGS, '--scenarios, --held-out and --per-kind exclude each other');
  if (o.scenarios !== undefined) return parseSeedList(o.scenarios).map((seed) => sampleScenario(seed));
  if (o.heldOut !== undefined) return heldOutScenarios(o.heldOut);
  const k = o.perKind ?? 1;
  if (!Number.isInteger(k) || k < 1) throw new VlaError(ErrorCodes.ARGS, `--per-kind takes a positive integer, got ${k}`);
  const have = new Map<string, number>();
  const out: Scenario[] = [];
  for (let seed = TEST_SEED_BASE; out.length < k * SCENARIO_KINDS.length && seed < TEST_SEED_BASE + 100_000; seed++) {
    const sc = sampleScenario(seed);
    const n = have.get(sc.kind) ?? 0;
    if (n < k) {
      have.set(sc.kind, n + 1);
      out.push(sc);
    }
  }
  return out;
}

export async function runSweep(io: Io, o: DriveCliOptions): Promise<number> {
  if (o.scenario !== undefined || o.scenarioFile) throw new VlaError(ErrorCodes.ARGS, '--sweep drives held-out scenarios: use --scenarios, --held-out or --per-kind instead of --scenario/--scenario-file');
  if (o.policy || o.budget) throw new VlaError(ErrorCodes.ARGS, '--sweep replaces --policy/--budget');
  const scenarios = pickScenarios(o);
  const shard = o.shard ? parseShard(o.shard) : null;
  // settings first (a bad sweep fails before any model loads)
  const pre = loadParamsFile(o.config, o.model ? { model_path: o.model } : {});
  const vt = visualTokensOf(modelArithFromDir(resolveModel(pre.engine.modelPath)), pre);
  const settings = sweepSettings(parseSweep(resolveShareBudgets(o.sweep ?? DEFAULT_SWEEP, vt)));
  const jobs = sweepJobs(scenarios, settings);
  const mine = jobs.filter((j) => !shard || j.job % shard.count === shard.index);
  const s = await setup(o, mine.some((j) => j.setting.planner === 'model'));
  const head: SweepReport['sweep'] = {
    scenarios: scenarios.map((sc) => ({ seed: sc.seed, kind: sc.kind, complexity: sc.complexity })),
    settings: settings.map((x) => x.label),
    latency: latencyLabel(s.latency),
    deterministic: latencyIsDeterministic(s.latency),
    model: s.modelLabel,
    maxPlanAgeMs: o.maxPlanAge,
    reactiveTraffic: o.reactiveTraffic ?? false,
    config: s.configLabel,
    jobs: jobs.length,
  };
  const outDir = path.resolve(o.out);
  await mkdir(outDir, { recursive: true });
  const it = onInterrupt();
  const results: SweepJobResult[] = [];
  const timing: Array<{ job: number; label: string; seed: number; wallS: number; simS: number }> = [];
  let interrupted = false;
  const all = o.allArtifacts === true;
  try {
    for (const [i, job] of mine.entries()) {
      if (it.signal.aborted) {
        interrupted = true;
        break;
      }
      const t0 = performance.now();
      const r = await runDrive(driveOptions(s, o, job.scenario, 'seed', job.setting.planner, job.setting.setting ?? 'config', path.join(outDir, job.dir), { bag: all && o.bag !== false, animation: all && o.animation !== false, svg: o.svg !== false }, it.signal, true));
      const wallS = (performance.now() - t0) / 1000;
      timing.push({ job: job.job, label: job.setting.label, seed: job.scenario.seed, wallS, simS: r.metrics.simTimeS });
      if (r.interrupted) {
        interrupted = true;
        break;
      }
      results.push(jobResult(job as Job, r));
      if (!o.json && o.progress !== false) io.err(`[${i + 1}/${mine.length}] ${job.scenario.seed} ${job.scenario.kind} — ${job.setting.label}: DS ${r.metrics.drivingScore.toFixed(1)}, RC ${r.metrics.routeCompletion.toFixed(1)}% (${r.metrics.status}) in ${wallS.toFixed(1)} s`);
    }
  } finally {
    it.dispose();
    await s.engine?.dispose();
  }
  const report = sweepReport(head, settings, results, shard, interrupted);
  const file = await writeSweep(outDir, report);
  // wall time per simulated second, per setting (not in report.json: it is not reproducible)
  const perSetting = settings.map((x) => {
    const t = timing.filter((y) => y.label === x.label);
    const wall = t.reduce((a, y) => a + y.wallS, 0), sim = t.reduce((a, y) => a + y.simS, 0);
    return { label: x.label, drives: t.length, wallS: wall, simS: sim, wallPerSimS: sim > 0 ? wall / sim : null };
  });
  await writeFile(path.join(outDir, shard ? `timing-${shard.index}.json` : 'timing.json'), JSON.stringify({ createdAt: new Date().toISOString(), shard, perSetting, drives: timing }, null, 1) + '\n');
  io.out(o.json ? JSON.stringify(report) : [...sweepTable(report.rows, vt), '', `${results.length} of ${mine.length} drives${shard ? ` (shard ${shard.index}/${shard.count} of ${jobs.length} jobs)` : ''}; report: ${file}`].join('\n'));
  return interrupted ? EXIT_INTERRUPTED : 0;
}


/** `merge`: shard reports into the report one process would have written. */
export async function runMerge(io: Io, reports: string[], o: { out: string; json?: boolean }): Promise<number> {
  const r = await mergeShards(reports);
  const file = await writeSweep(path.resolve(o.out), r);
  io.out(o.json ? JSON.stringify(r) : [...sweepTable(r.rows), '', `merged ${reports.length} shard reports (${r.jobs.length} drives): ${file}`].join('\n'));
  return 0;
}
