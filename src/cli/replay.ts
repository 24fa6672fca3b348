/**
 * Replay subcommands of the CLI: `replay`, `bag info`, `make-sample-drive`, `make-test-drives`,
 * `make-dataset`, `trace`, and the quick start (the default command), which replays a held-out
 * episode with the bundled model.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';

import { packageRoot } from '../util/paths.js';
import { PRUNE_POLICIES, type PrunePolicyName } from '../engine/policies.js';
import { Engine, parseBudget, type BackendName } from '../engine/engine.js';
import { makeModel } from '../model/tiny.js';
import { loadParamsFile, engineLoadOptions } from '../pipeline/params.js';
import { makeDataset, SPLIT_SEED_BASE, splitSeeds } from '../sample/dataset.js';
import { makeSampleDrive, makeScenarioDrive } from '../sample/drive.js';
import { SCENARIO_KINDS, sampleScenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { logger } from '../util/logger.js';
import { bagInfoJson, formatBagInfo, openBag } from '../bag/reader.js';
import { parseSweep, replayBag, type ReplayProgress, type ReplaySetting } from '../replay/replay.js';
import { summaryText, writeReport } from '../replay/report.js';
import { diffTraces, readTrace, scoreTrace } from '../replay/trace.js';
import { constantVelocityPlanner } from '../replay/evaluate.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const DEFAULT_MODEL_DIR = path.join(packageRoot, 'build', 'models', 'tiny');
export const SAMPLE_CONFIG = path.join(packageRoot, 'configs', 'sample-drive.yaml');

/** Test drives carry odometry this far past their last frame, so every frame's 3 s plan is scored, s. */
const TEST_DRIVE_ODOM_TAIL_S = 3;

/** The quick start's held-out episode: the second test seed, a left turn at a crossing in traffic. */
export const QUICKSTART_SCENARIO = 900_001;
/** A third of the bundled model's 147 visual tokens (3 views x 49). */
const QUICKSTART_BUDGET_TOKENS = 49;

/** Exit status of a replay that was interrupted (as a shell reports SIGINT). */
export const EXIT_INTERRUPTED = 130;

/** A relative model path is taken from the working directory, else from the package. */
function resolveModel(p: string): string {
  if (path.isAbsolute(p) || existsSync(p)) return path.resolve(p);
  return path.join(packageRoot, p);
}

interface ReplayCliOptions {
  config: string;
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
  const overrides: Record<string, unknown> = {};
  if (o.model) overrides.model_path = o.model;
  if (o.backend) overrides.backend = o.backend;
  if (o.threads !== undefined) overrides.threads = o.threads;
  const config = loadParamsFile(o.config, overrides);
  config.engine.modelPath = resolveModel(config.engine.modelPath);
  let settings: Array<ReplaySetting | 'config'> = ['config'];
  if (o.sweep) settings = parseSweep(o.sweep);
  else if (o.policy || o.budget) {
    const policy = o.policy ?? config.node.prune?.policy ?? 'autoprune';
    if (policy !== 'none' && !o.budget && !config.node.prune?.budget) throw new VlaError(ErrorCodes.ARGS, `--policy ${policy} needs --budget tokens:<T> or flops:<GFLOP>`);
    settings = [{ policy, ...(policy !== 'none' ? { budget: o.budget ? parseBudget(o.budget) : config.node.prune?.budget } : {}) } as ReplaySetting];
  }
  const outDir = path.resolve(o.out ?? `replay-${path.basename(path.resolve(bag))}`);

  if (config.engine.modelPath === DEFAULT_MODEL_DIR && !existsSync(path.join(DEFAULT_MODEL_DIR, 'config.json'))) await makeModel(DEFAULT_MODEL_DIR, { preset: 'tiny' });
  const engine = await Engine.load(config.engine.modelPath, engineLoadOptions(config.engine));

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
      configPath: path.resolve(o.config),
      engine,
      outDir,
      settings,
      ...(o.rate !== undefined ? { rate: o.rate } : {}),
      remaps: parseRemaps(o.remap),
      ...(o.gtTopic ? { groundTruthTopic: o.gtTopic } : {}),
      ...(o.gtFrame ? { groundTruthFrame: o.gtFrame } : {}),
      writeBag: o.bag !== false,
      writeTrace: o.trace !== false,
      signal: abort.signal,
      onProgress,
      // Info lines would tear the progress bar: with a bar, the node logs warnings and errors only (LOG_LEVEL overrides).
      log: logger.child({ component: 'replay' }, bar && process.env.LOG_LEVEL === undefined ? { level: 'warn' } : {}),
    });
    bar?.stop();
    const files = await writeReport(outDir, report);
    io.out(o.json ? JSON.stringify(report) : summaryText(report));
    if (report.error) io.err(`${report.error.code}: ${report.error.message}${o.json ? '' : ` (partial report: ${files.markdown})`}`);
    if (report.interrupted) return EXIT_INTERRUPTED;
    if (report.error) return 1;
    if (o.baseline && !o.json) {
      // The yardstick the model must beat: straight ahead at the odometry speed in the prompt.
      const cv = constantVelocityPlanner(engine.cameras, engine.info.numWaypoints, engine.info.waypointDtS);
      const base = await replayBag({ bag, config, configPath: path.resolve(o.config), engine: cv, outDir: path.join(outDir, 'constant-velocity'), settings: [{ policy: 'none' }], remaps: parseRemaps(o.remap), writeBag: false, writeTrace: false, log: logger.child({ component: 'replay' }, { level: 'warn' }) });
      const p = base.report.settings[0]?.planning;
      const f = (v: number | null | undefined) => (v === null || v === undefined ? '–' : v.toFixed(3));
      io.out(`constant-velocity baseline on the same frames: L2@3s ${f(p?.l2At3sM)} m, ADE ${f(p?.adeM)} m, FDE ${f(p?.fdeM)} m`);
    }
    return 0;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    await engine.dispose();
  }
}

/** The command line as parsed (commander keeps it on the root command, untyped). */
function commandLine(cmd: Command): string[] {
  let root: Command = cmd;
  while (root.parent) root = root.parent;
  const raw = (root as unknown as { rawArgs?: unknown }).rawArgs;
  return Array.isArray(raw) ? ['autoprune-ros', ...raw.slice(2).map(String)] : ['autoprune-ros', cmd.name()];
}

export function registerReplayCommands(program: Command, io: Io, setExit: (code: number) => void): void {
  const backend = () => new Option('--backend <name>', 'compute backend (default: the config\'s)').choices(['cpu', 'cuda', 'auto']);
  const positive = (name: string) => (v: string) => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new VlaError(ErrorCodes.ARGS, `${name} must be a positive number, got '${v}'`);
    return n;
  };
  const count = (name: string) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new VlaError(ErrorCodes.ARGS, `${name} must be a non-negative integer, got '${v}'`);
    return n;
  };

  program
    .command('replay <bag>')
    .description('replay a rosbag2 recording through the node: output bag, per-frame trace, report (JSON, Markdown, SVG)')
    .requiredOption('--config <yaml>', 'node parameter file (e.g. configs/sample-drive.yaml)')
    .option('--out <dir>', 'output directory (default ./replay-<bag name>)')
    .addOption(new Option('--policy <name>', 'pruning policy (default: the config\'s)').choices(PRUNE_POLICIES))
    .option('--budget <spec>', 'tokens:<T> or flops:<GFLOP> (default: the config\'s)')
    .option('--sweep <key=values...>', 'run several settings on the same bag: policy=none,autoprune,fastv budget=64,128,192')
    .option('--rate <factor>', 'play against the wall clock at this speed (a slow model drops sets, as on the car)', positive('--rate'))
    .option('--as-fast-as-possible', 'stop the bag clock while the model runs: every set is inferred (the default)')
    .option('--remap <from:=to...>', 'topic remaps, applied after ~ is resolved to /autoprune_ros')
    .option('--model <dir>', 'model directory (default: the config\'s model_path)')
    .addOption(backend())
    .option('--threads <n>', 'CPU threads (0 = all cores)', count('--threads'))
    .option('--gt-topic <topic>', 'ego path: a nav_msgs/Odometry or tf2_msgs/TFMessage topic (default: the config\'s odometry_topic, else the bag\'s first odometry, else /tf)')
    .option('--gt-frame <frame>', 'with tf: the ego frame whose transforms give the path', 'base_link')
    .option('--no-bag', 'do not write the output bag')
    .option('--no-trace', 'do not write the trace')
    .option('--no-progress', 'no progress bar')
    .option('--baseline', 'also replay a constant-velocity planner on the same frames and print its errors')
    .option('--json', 'print the report as one JSON object')
    .action(async (bag: string, o: ReplayCliOptions) => setExit(await runReplay(io, bag, o)));

  program
    .command('bag')
    .description('rosbag2 tools')
    .command('info <bag>')
    .description('topics, types, counts and time range of a bag directory or a .mcap/.db3 file, like `ros2 bag info`')
    .option('--json', 'print one JSON object')
    .action(async (bag: string, o: { json?: boolean }) => {
      const r = await openBag(bag);
      try {
        io.out(o.json ? JSON.stringify(bagInfoJson(r.info)) : formatBagInfo(r.info));
      } finally {
        await r.close();
      }
    });

  program
    .command('make-sample-drive')
    .description('write the deterministic synthetic multi-camera drive (rosbag2 MCAP) the quick start replays, or with --scenario one generated episode')
    .requiredOption('--out <dir>', 'bag directory to create')
    .option('--duration <s>', 'seconds of driving (default 12; an episode sets its own)', positive('--duration'))
    .option('--camera-hz <hz>', 'camera rate', positive('--camera-hz'), 10)
    .option('--seed <n>', 'textures, traffic colours, timing jitter (default 1; an episode uses its seed)', count('--seed'))
    .option('--scenario <seed>', 'write the generated episode of this scenario seed instead of the fixed drive (test split: 900000 and up)', count('--scenario'))
    .option('--width <px>', 'image width', count('--width'), 320)
    .option('--height <px>', 'image height', count('--height'), 180)
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; duration?: number; cameraHz: number; seed?: number; scenario?: number; width: number; height: number; json?: boolean }) => {
      if (o.scenario !== undefined && (o.duration !== undefined || o.seed !== undefined)) throw new VlaError(ErrorCodes.ARGS, '--scenario sets the duration and the seed: drop --duration and --seed');
      const t0 = performance.now();
      const sc = o.scenario !== undefined ? sampleScenario(o.scenario) : undefined;
      const info = sc
        ? await makeScenarioDrive(o.out, sc, { cameraHz: o.cameraHz, width: o.width, height: o.height, odomTailS: TEST_DRIVE_ODOM_TAIL_S })
        : await makeSampleDrive(o.out, { durationS: o.duration ?? 12, cameraHz: o.cameraHz, seed: o.seed ?? 1, width: o.width, height: o.height });
      const ms = performance.now() - t0;
      const what = sc ? { scenario: { seed: sc.seed, kind: sc.kind, instruction: sc.instruction, complexity: sc.complexity } } : {};
      io.out(
        o.json
          ? JSON.stringify({ ...bagInfoJson(info), ...what, ms })
          : `wrote ${o.out}${sc ? ` (scenario ${sc.seed}: ${sc.kind}, '${sc.instruction}', ${sc.complexity})` : ''}: ${info.messageCount} messages, ${(Number(info.durationNs) / 1e9).toFixed(1)} s, in ${ms.toFixed(0)} ms`,
      );
    });

  program
    .command('make-test-drives')
    .description('write the first N test-split episodes as bags DIR/test-<seed>/ and a DIR/drives.json listing them')
    .requiredOption('--out <dir>', 'directory to create the bags in')
    .option('--count <n>', 'episodes', count('--count'), 10)
    .option('--per-kind <k>', 'instead: the first k test episodes of every instruction kind (a stratified test set)', count('--per-kind'))
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; count: number; perKind?: number; json?: boolean }) => {
      if (o.count < 1) throw new VlaError(ErrorCodes.ARGS, '--count must be at least 1');
      if (o.perKind !== undefined && o.perKind < 1) throw new VlaError(ErrorCodes.ARGS, '--per-kind must be at least 1');
      const t0 = performance.now();
      const drives: Array<{ seed: number; bag: string; kind: string; instruction: string; complexity: string; durationS: number }> = [];
      const scenarios: Array<ReturnType<typeof sampleScenario>> = [];
      if (o.perKind === undefined) {
        for (const seed of splitSeeds('test', o.count)) scenarios.push(sampleScenario(seed));
      } else {
        // walk the test seeds in order and keep each kind's first k episodes
        const have = new Map<string, number>();
        for (let seed = SPLIT_SEED_BASE.test; scenarios.length < o.perKind * SCENARIO_KINDS.length && seed < SPLIT_SEED_BASE.test + 100_000; seed++) {
          const sc = sampleScenario(seed);
          const n = have.get(sc.kind) ?? 0;
          if (n < o.perKind) {
            have.set(sc.kind, n + 1);
            scenarios.push(sc);
          }
        }
      }
      for (const sc of scenarios) {
        const seed = sc.seed;
        const bag = `test-${seed}`;
        await makeScenarioDrive(path.join(o.out, bag), sc, { odomTailS: TEST_DRIVE_ODOM_TAIL_S });
        drives.push({ seed, bag, kind: sc.kind, instruction: sc.instruction, complexity: sc.complexity, durationS: sc.durationS });
        if (!o.json) io.err(`${bag}: ${sc.kind}, '${sc.instruction}', ${sc.complexity}, ${sc.durationS.toFixed(1)} s`);
      }
      const list = path.join(o.out, 'drives.json');
      try {
        await mkdir(o.out, { recursive: true });
        await writeFile(list, JSON.stringify({ format: 'autoprune-ros-test-drives', version: 1, drives }, null, 2) + '\n');
      } catch (err) {
        throw new VlaError(ErrorCodes.IO, `${list}: ${(err as Error).message}`, { file: list }, { cause: err });
      }
      const ms = performance.now() - t0;
      io.out(o.json ? JSON.stringify({ dir: o.out, drives, ms }) : `wrote ${drives.length} test drives and ${list} in ${(ms / 1000).toFixed(1)} s`);
    });

  program
    .command('make-dataset')
    .description('write a training dataset of synthetic episodes: JPEG views (frames.bin), prompt token ids and future waypoints (index.json), tokenizer')
    .requiredOption('--out <dir>', 'dataset directory')
    .option('--train <n>', 'training episodes (seeds 1000 and up)', count('--train'), 3000)
    .option('--val <n>', 'validation episodes (seeds 500000 and up)', count('--val'), 300)
    .option('--test <n>', 'test episodes (seeds 900000 and up)', count('--test'), 300)
    .option('--frames-per-episode <k>', 'instants per episode', count('--frames-per-episode'), 2)
    .option('--width <px>', 'image width', count('--width'), 320)
    .option('--height <px>', 'image height', count('--height'), 180)
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; train: number; val: number; test: number; framesPerEpisode: number; width: number; height: number; progress?: boolean; json?: boolean }, cmd: Command) => {
      const showBar = o.progress !== false && !o.json && process.stderr.isTTY === true;
      const bar = showBar ? new cliProgress.SingleBar({ stream: process.stderr, format: 'episodes |{bar}| {value}/{total} | ETA {eta_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
      try {
        bar?.start(o.train + o.val + o.test, 0);
        const r = await makeDataset(o.out, {
          train: o.train,
          val: o.val,
          test: o.test,
          framesPerEpisode: o.framesPerEpisode,
          width: o.width,
          height: o.height,
          command: commandLine(cmd),
          onProgress: (done) => bar?.update(done),
        });
        bar?.stop();
        io.out(o.json ? JSON.stringify(r) : `wrote ${r.dir}: ${r.samples} samples from ${r.episodes} episodes, frames.bin ${(r.framesBytes / 1e6).toFixed(1)} MB, in ${(r.ms / 1000).toFixed(1)} s`);
      } finally {
        bar?.stop();
      }
    });

  program
    .command('trace <file>')
    .description('read a replay trace: summary and re-scored planning errors, or --diff against another run')
    .option('--diff <other>', 'compare with another trace of the same bag (plans, schedules; timings reported)')
    .option('--frames', 'print every frame')
    .option('--json', 'print one JSON object')
    .action(async (file: string, o: { diff?: string; frames?: boolean; json?: boolean }) => {
      const t = await readTrace(file);
      if (o.diff) {
        const d = diffTraces(t, await readTrace(o.diff));
        if (o.json) io.out(JSON.stringify(d));
        else {
          const f = (v: number | null, digits = 3) => (v === null ? '–' : v.toFixed(digits));
          io.out(
            [
              `${d.identical ? 'IDENTICAL (plans and schedules; timings not compared)' : 'DIFFERENT'}: ${d.a} vs ${d.b}`,
              `frames matched ${d.matched}, only in first ${d.onlyInA}, only in second ${d.onlyInB}`,
              `identical plans ${d.identicalPlans}/${d.matched}, identical schedules ${d.identicalSchedules}/${d.matched}, max waypoint difference ${d.maxWaypointDiffM.toExponential(3)} m, mean plan distance ${f(d.meanPlanDistanceM)} m`,
              `L2@3s ${f(d.planningA.l2At3sM)} vs ${f(d.planningB.l2At3sM)} m, ADE ${f(d.planningA.adeM)} vs ${f(d.planningB.adeM)} m`,
              `mean inference ${f(d.meanTotalMsA, 2)} vs ${f(d.meanTotalMsB, 2)} ms`,
            ].join('\n'),
          );
        }
        setExit(d.identical ? 0 : 3);
        return;
      }
      const { planning } = scoreTrace(t);
      const failed = t.frames.filter((f) => f.errorCode).length;
      const summary = { file, header: { ...t.header, bagStartNs: t.header.bagStartNs.toString() }, frames: t.frames.length, failed, complete: t.footer !== null, interrupted: t.footer?.interrupted ?? false, error: t.footer?.errorCode || null, planning };
      if (o.json) {
        io.out(JSON.stringify({ ...summary, ...(o.frames ? { frameList: t.frames } : {}) }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
        return;
      }
      const f = (v: number | null) => (v === null ? '–' : v.toFixed(3));
      const lines = [
        `trace ${file}: ${t.header.label} on ${t.header.bagPath}`,
        `model ${t.header.modelPath} (${t.header.backend}), ${t.header.mode}, written ${t.header.createdAt}`,
        `frames ${t.frames.length} (${failed} failed)${t.footer ? (t.footer.interrupted ? ', interrupted' : '') : ', no footer (the run was killed)'}${t.footer?.errorCode ? `, bag error ${t.footer.errorCode} at ${t.footer.errorFile}:${t.footer.errorOffset}` : ''}`,
        `re-scored: L2@1s ${f(planning.l2At1sM)} m, L2@2s ${f(planning.l2At2sM)} m, L2@3s ${f(planning.l2At3sM)} m, ADE ${f(planning.adeM)} m, FDE ${f(planning.fdeM)} m over ${planning.n} frames`,
      ];
      if (o.frames) {
        for (const fr of t.frames) {
          const kept = fr.prune ? fr.prune.kept.join('/') : '';
          const last = fr.waypoints[fr.waypoints.length - 1];
          lines.push(`  #${fr.index} stamp ${fr.stampNs} ${fr.errorCode || `kept ${kept} MI ${fr.prune?.mi1.toFixed(3)} total ${fr.timings?.totalMs.toFixed(2)} ms last waypoint (${last?.x.toFixed(2)}, ${last?.y.toFixed(2)})`}`);
        }
      }
      io.out(lines.join('\n'));
    });

  program
    .command('quickstart', { isDefault: true })
    .description('the main job on the bundled default: generate a held-out test drive, replay it with the bundled trained model (unpruned and AutoPrune at a third of the visual tokens), print the report summary beside a constant-velocity baseline')
    .option('--out <dir>', 'output directory', path.join(packageRoot, 'build', 'replay', 'held-out-drive'))
    .option('--scenario <seed>', 'the held-out episode to drive (test split: 900000 and up)', count('--scenario'), QUICKSTART_SCENARIO)
    .option('--json', 'print the report as one JSON object')
    .action(async (o: { out: string; scenario: number; json?: boolean }) => {
      if (o.scenario < SPLIT_SEED_BASE.test) throw new VlaError(ErrorCodes.ARGS, `--scenario ${o.scenario} is not a held-out episode (test seeds start at ${SPLIT_SEED_BASE.test})`);
      const sc = sampleScenario(o.scenario);
      const bag = path.join(packageRoot, 'build', `held-out-drive-${o.scenario}`);
      if (!existsSync(path.join(bag, 'metadata.yaml'))) {
        const t0 = performance.now();
        await makeScenarioDrive(bag, sc, { odomTailS: TEST_DRIVE_ODOM_TAIL_S });
        if (!o.json) io.out(`generated the held-out drive ${bag} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      if (!o.json) io.out(`episode ${sc.seed}: '${sc.instruction}' (${sc.kind}, ${sc.complexity} complexity, ${sc.durationS.toFixed(1)} s)`);
      setExit(await runReplay(io, bag, { config: SAMPLE_CONFIG, out: o.out, sweep: ['policy=none,autoprune', `budget=${QUICKSTART_BUDGET_TOKENS}`], json: o.json, baseline: true }));
    });
}
