/** `autoprune-ros evaluate`: accuracy against compute over a directory of drives (see evaluate.ts). */
import path from 'node:path';

import type { Command } from 'commander';

import type { NativePruneOptions } from '../engine/addon-types.js';
import { Engine, type BackendName } from '../engine/engine.js';
import { PRUNE_POLICIES } from '../engine/policies.js';
import { engineLoadOptions } from '../pipeline/params.js';
import { openBag } from '../bag/reader.js';
import { chooseBundledConfig } from '../replay/bundled-configs.js';
import { evaluateDrives, evaluationCaveats, evaluationTable, readDrives, writeEvaluation } from '../replay/evaluate.js';
import { parseSweep, type ReplaySetting } from '../replay/replay.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { logger, logLevelChosen } from '../util/logger.js';
import { packageRoot } from '../util/paths.js';
import { addCalibrationFlag, addPruneOptionFlags, backendOption, integerAtLeast, loadCliConfig, pruneOptionsOf, shortPath, type Io, type CalibrationFlag, type PruneOptionFlags, type SetExit } from './common.js';

/** The prune-option flags as the user would type them (for the report's command line). */
function pruneFlagsText(o: Partial<NativePruneOptions>): string {
  const flag = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
  return Object.entries(o)
    .map(([k, v]) => (typeof v === 'boolean' ? ` ${v ? '' : '--no-'}${v ? flag(k) : flag(k).slice(2)}` : ` ${flag(k)} ${v}`))
    .join('');
}

/** Every policy at a third, two ninths and a ninth of the visual tokens. */
const DEFAULT_SWEEP = [`policy=${PRUNE_POLICIES.join(',')}`, 'budget=33%,22%,11%'];

/**
 * Budgets may be given as a share of the model's visual tokens ("33%"), turned into the
 * paper's average-tokens-per-layer budget for this model, or as parseSweep takes them.
 */
export function resolveShareBudgets(sweep: string[], visualTokens: number): string[] {
  return sweep.map((a) => {
    if (!a.startsWith('budget=')) return a;
    const vals = a.slice(7).split(',').map((v) => {
      const m = /^(\d+(?:\.\d+)?)%$/.exec(v.trim());
      if (!m) return v;
      const share = Number(m[1]) / 100;
      if (!(share > 0 && share <= 1)) throw new VlaError(ErrorCodes.ARGS, `--sweep: budget share '${v}' must be in (0%, 100%]`);
      return String(Math.max(1, Math.round(share * visualTokens)));
    });
    return `budget=${vals.join(',')}`;
  });
}

export function registerEvaluate(program: Command, io: Io, setExit: SetExit): void {
  const cmd = program
    .command('evaluate <drives>')
    .description('replay every drive of a directory (listed in drives.json as make-test-drives writes it, or every rosbag2 bag in it) with a sweep of policies and budgets and a constant-velocity baseline; pooled accuracy against compute')
    .option('--config <yaml>', 'node parameter file (default: the bundled config whose camera topics are in the first drive, e.g. configs/sample-drive.yaml)')
    .option('--model <dir>', "model directory (default: the config's model_path)")
    .option('--sweep <key=values...>', 'policies and budgets; budgets as tokens or as a share of the visual tokens (33%)', DEFAULT_SWEEP)
    .option('--out <dir>', 'output directory', path.join(packageRoot, 'build', 'evaluation'))
    .option('--limit <n>', 'only the first n drives', integerAtLeast('--limit', 1))
    .addOption(backendOption('compute backend'))
    .option('--threads <n>', 'CPU threads (0 = all cores)', integerAtLeast('--threads', 0))
    .option('--timing-every <n>', 'time every n-th frame of each setting with repeats', integerAtLeast('--timing-every', 1), 10)
    .option('--timing-repeats <r>', 'warm repeats of a timed frame (the median is its wall time; 0: no repeats)', integerAtLeast('--timing-repeats', 0), 3)
    .option('--json', 'print the evaluation as one JSON object');
  addCalibrationFlag(addPruneOptionFlags(cmd)).action(async (drivesDir: string, o: { config?: string; model?: string; sweep: string[]; out: string; limit?: number; backend?: BackendName; threads?: number; json?: boolean; timingEvery: number; timingRepeats: number } & PruneOptionFlags & CalibrationFlag) => {
      let drives = await readDrives(drivesDir);
      if (o.limit) drives = drives.slice(0, o.limit);
      let configFile = o.config;
      if (!configFile) {
        const first = await openBag((drives[0] as { dir: string }).dir);
        await first.close();
        configFile = chooseBundledConfig(first.info.path, first.info.topics);
        if (!o.json) io.err(`config: ${shortPath(configFile)} (its camera topics are the drives'; --config FILE to choose another)`);
      }
      const config = loadCliConfig(configFile, o);
      const engine = await Engine.load(config.engine.modelPath, engineLoadOptions(config.engine));
      try {
        const visualTokens = engine.info.tokensPerView * engine.cameras.length;
        const settings: ReplaySetting[] = parseSweep(resolveShareBudgets(o.sweep, visualTokens));
        const t0 = performance.now();
        const report = await evaluateDrives({
          drives,
          config,
          configPath: path.resolve(configFile),
          engine,
          modelPath: path.relative(packageRoot, config.engine.modelPath) || config.engine.modelPath,
          visualTokens,
          settings,
          outDir: o.out,
          command: `autoprune-ros evaluate ${path.relative(packageRoot, path.resolve(drivesDir)) || drivesDir} --sweep ${o.sweep.join(' ')}${o.limit ? ` --limit ${o.limit}` : ''}${pruneFlagsText(pruneOptionsOf(o))}`,
          pruneOptions: config.pruneOptions,
          timing: { every: o.timingEvery, repeats: o.timingRepeats },
          // A policy that cannot meet a budget fails every frame; the table says so once (LOG_LEVEL shows each).
          log: logger.child({ component: 'evaluate' }, logLevelChosen() ? {} : { level: 'fatal' }),
          onDrive: (i, d) => {
            if (!o.json) io.err(`[${i + 1}/${drives.length}] ${path.basename(d.dir)}${d.kind ? ` (${d.kind}, ${d.complexity ?? '?'})` : ''}`);
          },
        });
        const files = await writeEvaluation(o.out, report);
        io.out(o.json ? JSON.stringify(report) : [...evaluationTable(report), '', ...evaluationCaveats(report).map((c) => `note: ${c}`), `${drives.length} drives in ${((performance.now() - t0) / 1000).toFixed(1)} s; report: ${files.markdown}`].join('\n'));
        setExit(0);
      } finally {
        await engine.dispose();
      }
    });
}
