/** `replay`: a rosbag2 recording through the node, end to end: engine, bag, report files. */
import { existsSync } from 'node:fs';
import path from 'node:path';

import cliProgress from 'cli-progress';
import type { Command } from 'commander';

import { openBag } from '../bag/reader.js';
import { Engine, parseBudget, type BackendName } from '../engine/engine.js';
import type { PrunePolicyName } from '../engine/policies.js';
import { engineLoadOptions } from '../pipeline/params.js';
import { checkWithEngine } from '../pipeline/runner.js';
import { chooseBundledConfig } from '../replay/bundled-configs.js';
import { constantVelocityPlanner } from '../replay/evaluate.js';
import { bagLimits } from '../bag/limits.js';
import { prepareReplayOutput } from '../replay/outdir.js';
import { parseSweep, replayBag, settingLabel, type ReplayProgress, type ReplaySetting } from '../replay/replay.js';
import { summaryText, writeReport } from '../replay/report.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { logger, logLevelChosen } from '../util/logger.js';
import { resolveShareBudgets } from './evaluate.js';
import { addCalibrationFlag, addPruneOptionFlags, backendOption, budgetOption, ensureDefaultModel, EXIT_INTERRUPTED, maxChunkOption, maxDb3Option, maxMessageOption, policyOption, positiveNumber as positive, loadCliConfig, shortPath, threadsOption, type Io, type CalibrationFlag, type PruneOptionFlags, type SetExit } from './common.js';

interface ReplayCliOptions extends PruneOptionFlags, CalibrationFlag {
  /** Default: the bundled config whose camera topics are in the bag (bundled-configs.ts). */
  config?: string;
  out?: string;
  policy?: PrunePolicyName;
  budget?: string;
  sweep?: string[];
  rate?: number;
  asFastAsPossible?: boolean;
  remap?: string[];
  model?: string;
  backend?: BackendName;
  threads?: number;
  gtTopic?: string;
  gtFrame?: string;
  bag?: boolean;
  trace?: boolean;
  json?: boolean;
  progress?: boolean;
  /** Also replay a constant-velocity planner (the model's waypoint times) and print its errors. */
  baseline?: boolean;
  /** Replace the outputs of an earlier replay in --out (only in a directory replay wrote). */
  overwrite?: boolean;
  maxChunkMib?: number;
  maxMessageMib?: number;
  maxDb3Mib?: number;
}

function parseRemaps(list: string[] = []): Map<string, string> {
  const m = new Map<string, string>();
  for (const r of list) {
    const i = r.indexOf(':=');
    if (i <= 0 || i + 2 >= r.length) throw new VlaError(ErrorCodes.ARGS, `--remap takes FROM:=TO, got '${r}'`);
    m.set(r.slice(0, i), r.slice(i + 2));
  }
  return m;
}

/** Runs a replay end to end: engine, bag, report files; returns the exit status. */
export async function runReplay(io: Io, bag: string, o: ReplayCliOptions): Promise<number> {
  if (o.rate !== undefined && o.asFastAsPossible) throw new VlaError(ErrorCodes.ARGS, '--rate and --as-fast-as-possible exclude each other');
  if (o.rate !== undefined && !(o.rate > 0 && o.rate <= 1000)) throw new VlaError(ErrorCodes.ARGS, `--rate must be in (0, 1000], got ${o.rate}`);
  if (o.sweep && (o.policy || o.budget)) throw new VlaError(ErrorCodes.ARGS, '--sweep replaces --policy/--budget');
  if (o.policy === 'none' && o.budget !== undefined) throw new VlaError(ErrorCodes.ARGS, '--policy none prunes nothing and takes no --budget');
  const remaps = parseRemaps(o.remap);
  // The bag first: a path that is not a bag fails here, before the model loads and before anything is written.
  if (!existsSync(bag)) throw new VlaError(ErrorCodes.IO, `${bag}: no such bag (a rosbag2 directory, or a .mcap or .db3 file)`, { file: path.resolve(bag) });
  const probe = await openBag(bag);
  const topics = probe.info.topics;
  await probe.close();
  const configFile = o.config ?? chooseBundledConfig(bag, topics, remaps);
  if (!o.config && !o.json) io.err(`config: ${shortPath(configFile)} (its camera topics are the bag's; --config FILE to choose another)`);
  const config = loadCliConfig(configFile, o);
  let settings: Array<ReplaySetting | 'config'> = ['config'];
  // Budgets given as a share ("33%") need the model's token count: checked now, resolved once it loads.
  if (o.sweep) settings = parseSweep(resolveShareBudgets(o.sweep, 1));
  else if (o.policy || o.budget) {
    // --budget alone: the config's policy, or AutoPrune where the config prunes nothing.
    const policy = o.policy ?? config.node.prune?.policy ?? 'autoprune';
    if (policy !== 'none' && !o.budget && !config.node.prune?.budget) throw new VlaError(ErrorCodes.ARGS, `--policy ${policy} needs --budget tokens:<T> or flops:<GFLOP>`);
    settings = [{ policy, ...(policy !== 'none' ? { budget: o.budget ? parseBudget(o.budget) : config.node.prune?.budget } : {}) } as ReplaySetting];
  }
  const outDir = path.resolve(o.out ?? `replay-${path.basename(path.resolve(bag))}`);
  // Before the model loads: an output directory over the input, or over an earlier replay, is refused.
  await prepareReplayOutput(bag, outDir, { overwrite: o.overwrite === true });
  const limits = bagLimits({ maxChunkMiB: o.maxChunkMib, maxMessageMiB: o.maxMessageMib, maxDb3MiB: o.maxDb3Mib });

  await ensureDefaultModel(config.engine.modelPath);
  const engine = await Engine.load(config.engine.modelPath, engineLoadOptions(config.engine));
  try {
    if (o.sweep) settings = parseSweep(resolveShareBudgets(o.sweep, engine.info.tokensPerView * engine.cameras.length));
    // What would fail every frame of a setting (an unreachable budget, the activation limit, the
    // default instruction) fails now, once, with the engine's own error.
    for (const s of settings) {
      const prune = s === 'config' ? config.node.prune : s.policy === 'none' ? undefined : { ...(config.node.prune ?? {}), policy: s.policy, ...(s.budget ? { budget: s.budget } : {}) };
      try {
        await checkWithEngine(engine, { ...config.node, prune });
      } catch (err) {
        const e = VlaError.from(err);
        throw new VlaError(e.code, `${s === 'config' ? configFile : `setting '${settingLabel(s)}'`}: the model refuses this setting: ${e.message}`, undefined, { cause: err });
      }
    }
  } catch (err) {
    await engine.dispose();
    throw err;
  }

  // Ctrl-C: finish the running inference, write a partial report; a second Ctrl-C quits at once.
  const abort = new AbortController();
  let sigints = 0;
  const onSigint = () => {
    if (++sigints > 1) process.exit(EXIT_INTERRUPTED);
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  const showBar = o.progress !== false && !o.json && process.stderr.isTTY === true;
  const bar = showBar
    ? new cliProgress.SingleBar(
        { stream: process.stderr, format: '{label} |{bar}| {percentage}% | bag {bagTime}/{bagDuration} s | {frames} frames | {fps} fps | ETA {eta_formatted}', hideCursor: true, etaBuffer: 50, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const wall0 = performance.now();
  let started = false;
  const onProgress = (p: ReplayProgress) => {
    if (!bar) return;
    const total = Math.max(0.001, p.durationS * p.settings);
    const value = Math.min(total, p.setting * p.durationS + Math.max(0, p.bagTimeS));
    const payload = { label: `[${p.setting + 1}/${p.settings}] ${p.label}`, bagTime: p.bagTimeS.toFixed(1), bagDuration: p.durationS.toFixed(1), frames: p.frames, fps: (p.frames / Math.max(1e-3, (performance.now() - wall0) / 1000)).toFixed(1) };
    if (!started) {
      bar.start(total, value, payload);
      started = true;
    } else bar.update(value, payload);
  };
  try {
    const { report } = await replayBag({
      bag,
      config,
      configPath: path.resolve(configFile),
      engine,
      outDir,
      settings,
      ...(o.rate !== undefined ? { rate: o.rate } : {}),
      remaps,
      ...(o.gtTopic ? { groundTruthTopic: o.gtTopic } : {}),
      ...(o.gtFrame ? { groundTruthFrame: o.gtFrame } : {}),
      writeBag: o.bag !== false,
      writeTrace: o.trace !== false,
      signal: abort.signal,
      limits,
      onProgress,
      // Info lines would tear the progress bar: with a bar, the node logs warnings and errors only (LOG_LEVEL, --verbose override).
      log: logger.child({ component: 'replay' }, bar && !logLevelChosen() ? { level: 'warn' } : {}),
    });
    bar?.stop();
    if (o.baseline && !report.error && !report.interrupted) {
      // The yardstick the model must beat: straight ahead at the odometry speed in the prompt. It goes into the report and its charts.
      const cv = constantVelocityPlanner(engine.cameras, engine.info.numWaypoints, engine.info.waypointDtS);
      const base = await replayBag({ bag, config, configPath: path.resolve(configFile), engine: cv, outDir: path.join(outDir, 'constant-velocity'), settings: [{ policy: 'none' }], remaps, writeBag: false, writeTrace: false, limits, log: logger.child({ component: 'replay' }, logLevelChosen() ? {} : { level: 'warn' }) });
      report.constantVelocity = base.report.settings[0] ?? null;
    }
    const files = await writeReport(outDir, report);
    io.out(o.json ? JSON.stringify(report) : summaryText(report));
    if (report.error) io.err(`${report.error.code}: ${report.error.message}${o.json ? '' : ` (partial report: ${files.markdown})`}`);
    if (report.interrupted) return EXIT_INTERRUPTED;
    if (report.error) return 1;
    // Success means frames were evaluated: a setting that published no plan (no set inferred, or
    // every inference failed) makes the run fail, with the report saying why.
    const empty = report.settings.filter((s) => s.frames.published === 0);
    if (!report.settings.length || empty.length) {
      const what = empty.map((s) => `${s.label}: ${s.frames.setsInferred} sets inferred, ${s.frames.failed} failed${s.frames.lastError ? ` (last: ${s.frames.lastError})` : ''}`).join('; ');
      io.err(`${ErrorCodes.NO_FRAMES}: nothing was evaluated${what ? ` (${what})` : ''}; check the camera topics (--remap) and the bag's content (report: ${files.markdown})`);
      return 1;
    }
    return 0;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    await engine.dispose();
  }
}

export function registerReplay(program: Command, io: Io, setExit: SetExit): void {
  const cmd = program
    .command('replay <bag>')
    .description('replay a rosbag2 recording through the node: output bag, per-frame trace, report (JSON, Markdown, SVG)')
    .option('--config <yaml>', 'node parameter file (default: the bundled config whose camera topics are in the bag, e.g. configs/sample-drive.yaml)')
    .option('--out <dir>', 'output directory (default ./replay-<bag name>)')
    .addOption(policyOption("pruning policy (default: the config's)"))
    .addOption(budgetOption("tokens:<T> or flops:<GFLOP> (default: the config's); alone, it keeps the config's policy, or AutoPrune where the config prunes nothing"))
    .option('--sweep <key=values...>', 'run several settings on the same bag: policy=none,autoprune,fastv budget=64,128,192 (budgets as tokens, or as a share of the visual tokens: 33%)')
    .option('--rate <factor>', 'play against the wall clock at this speed (a slow model drops sets, as on the car)', positive('--rate'))
    .option('--as-fast-as-possible', 'stop the bag clock while the model runs: every set is inferred (the default)')
    .option('--remap <from:=to...>', 'topic remaps, applied after ~ is resolved to /autoprune_ros')
    .option('--model <dir>', 'model directory (default: the config\'s model_path)')
    .addOption(backendOption("compute backend (default: the config's)"))
    .addOption(threadsOption())
    .option('--gt-topic <topic>', 'ego path: a nav_msgs/Odometry or tf2_msgs/TFMessage topic (default: the config\'s odometry_topic, else the bag\'s first odometry, else /tf)')
    .option('--gt-frame <frame>', 'with tf: the ego frame whose transforms give the path', 'base_link')
    .option('--no-bag', 'do not write the output bag')
    .option('--no-trace', 'do not write the trace')
    .option('--no-progress', 'no progress bar')
    .option('--baseline', 'also replay a constant-velocity planner on the same frames: its errors in the summary, a reference line in the charts')
    .option('--json', 'print the report as one JSON object')
    .option('--overwrite', 'replace the outputs of an earlier replay in --out (never anything else, never the input)')
    .addOption(maxChunkOption())
    .addOption(maxMessageOption())
    .addOption(maxDb3Option());
  addCalibrationFlag(addPruneOptionFlags(cmd)).action(async (bag: string, o: ReplayCliOptions) => setExit(await runReplay(io, bag, o)));
}
