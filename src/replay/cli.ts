/**
 * Replay subcommands of the CLI: `replay`, `bag info`, `make-sample-drive`, `trace`, and the
 * quick start (the default command), which replays the generated sample drive.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';

import { packageRoot } from '../native/addon.js';
import type { PrunePolicyName } from '../native/addon-types.js';
import { Engine, parseBudget, type BackendName } from '../native/engine.js';
import { makeModel } from '../model/tiny.js';
import { loadParamsFile } from '../pipeline/params.js';
import { defaultSampleDriveDir, makeSampleDrive } from '../sample/drive.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { logger } from '../util/logger.js';
import { bagInfoJson, formatBagInfo, openBag } from './bag/reader.js';
import { parseSweep, replayBag, type ReplayProgress, type ReplaySetting } from './replay.js';
import { summaryText, writeReport } from './report.js';
import { diffTraces, readTrace, scoreTrace } from './trace.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const DEFAULT_MODEL_DIR = path.join(packageRoot, 'build', 'models', 'tiny');
export const SAMPLE_CONFIG = path.join(packageRoot, 'configs', 'sample-drive.yaml');

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
  const engine = await Engine.load(config.engine.modelPath, { backend: config.engine.backend, threads: config.engine.threads });

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
    return report.error ? 1 : 0;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    await engine.dispose();
  }
}

export function registerReplayCommands(program: Command, io: Io, setExit: (code: number) => void): void {
  const backend = () => new Option('--backend <name>', 'compute backend (default: the config\'s)').choices(['cpu', 'cuda', 'auto']);
  const POLICIES: PrunePolicyName[] = ['none', 'autoprune', 'fastv', 'pdrop', 'sparsevlm-fixed', 'cls-prior', 'random'];
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
    .addOption(new Option('--policy <name>', 'pruning policy (default: the config\'s)').choices(POLICIES))
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
    .description('write the deterministic synthetic multi-camera drive (rosbag2 MCAP) the quick start replays')
    .requiredOption('--out <dir>', 'bag directory to create')
    .option('--duration <s>', 'seconds of driving', positive('--duration'), 12)
    .option('--camera-hz <hz>', 'camera rate', positive('--camera-hz'), 10)
    .option('--seed <n>', 'textures, traffic colours, timing jitter', count('--seed'), 1)
    .option('--width <px>', 'image width', count('--width'), 320)
    .option('--height <px>', 'image height', count('--height'), 180)
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; duration: number; cameraHz: number; seed: number; width: number; height: number; json?: boolean }) => {
      const t0 = performance.now();
      const info = await makeSampleDrive(o.out, { durationS: o.duration, cameraHz: o.cameraHz, seed: o.seed, width: o.width, height: o.height });
      const ms = performance.now() - t0;
      io.out(o.json ? JSON.stringify({ ...bagInfoJson(info), ms }) : `wrote ${o.out}: ${info.messageCount} messages, ${(Number(info.durationNs) / 1e9).toFixed(1)} s, in ${ms.toFixed(0)} ms`);
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
    .description('the main job on the bundled default: generate the sample drive, replay it with the tiny model, print the report summary')
    .option('--out <dir>', 'output directory', path.join(packageRoot, 'build', 'replay', 'sample-drive'))
    .option('--json', 'print the report as one JSON object')
    .action(async (o: { out: string; json?: boolean }) => {
      const bag = defaultSampleDriveDir(packageRoot);
      if (!existsSync(path.join(bag, 'metadata.yaml'))) {
        const t0 = performance.now();
        await makeSampleDrive(bag);
        if (!o.json) io.out(`generated the sample drive ${bag} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      setExit(await runReplay(io, bag, { config: SAMPLE_CONFIG, out: o.out, sweep: ['policy=none,autoprune', 'budget=24'], json: o.json }));
    });
}
