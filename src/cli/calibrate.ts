/** `autoprune-ros calibrate`: AutoPrune's complexity signal calibrated for one model on validation drives (replay/calibrate.ts). */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import type { Command } from 'commander';

import { openBag } from '../bag/reader.js';
import { Engine, type BackendName } from '../engine/engine.js';
import { engineLoadOptions } from '../pipeline/params.js';
import { chooseBundledConfig } from '../replay/bundled-configs.js';
import { calibrate, DEFAULT_SEARCH_BUDGET, refuseTestDrives, SEARCHED_POLICIES, type SearchedPolicy } from '../replay/calibrate.js';
import { readDrives } from '../replay/evaluate.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { logger, logLevelChosen } from '../util/logger.js';
import { addPruneOptionFlags, backendOption, integerAtLeast, loadCliConfig, shortPath, type Io, type PruneOptionFlags, type SetExit } from './common.js';

/** "autoprune,fastv" -> the policies calibrate searches. */
export function parsePolicies(s: string): SearchedPolicy[] {
  const out = s.split(',').map((v) => v.trim());
  for (const p of out) if (!(SEARCHED_POLICIES as readonly string[]).includes(p)) throw new VlaError(ErrorCodes.ARGS, `--policies takes some of ${SEARCHED_POLICIES.join(', ')}, got '${p}'`);
  return [...new Set(out)] as SearchedPolicy[];
}

/** "33%,22%,11%" -> [0.33, 0.22, 0.11]. */
export function parseShares(s: string): number[] {
  return s.split(',').map((v) => {
    const m = /^(\d+(?:\.\d+)?)%$/.exec(v.trim());
    const share = m ? Number(m[1]) / 100 : Number.NaN;
    if (!(share > 0 && share < 1)) throw new VlaError(ErrorCodes.ARGS, `--budgets takes shares of the visual tokens such as 33%,22%,11%, got '${v}'`);
    return share;
  });
}

export function registerCalibrate(program: Command, io: Io, setExit: SetExit, version: string): void {
  const cmd = program
    .command('calibrate')
    .description("calibrate a model on validation drives: normalise AutoPrune's complexity signal (MI_1) to the model's range, then search each policy's free parameters with the same number of settings per policy and keep the best by skill retained at L2@3s (writes calibration.json, which inference then uses by default)")
    .requiredOption('--model <dir>', 'model directory')
    .requiredOption('--drives <dir>', 'validation drives (make-test-drives --split val); test-split drives are refused')
    .option('--budgets <shares>', 'budgets as shares of the visual tokens', '33%,22%,11%')
    .option('--out <file>', 'where to write the calibration (default: DIR/calibration.json)')
    .option('--config <yaml>', "node parameter file (default: the bundled config whose camera topics are in the first drive)")
    .option('--limit <n>', 'only the first n drives', integerAtLeast('--limit', 1))
    .option('--search-budget <n>', 'settings evaluated per policy and budget (the same for every policy)', integerAtLeast('--search-budget', 1), DEFAULT_SEARCH_BUDGET)
    .option('--policies <list>', `policies to search (default all: ${SEARCHED_POLICIES.join(',')})`, parsePolicies)
    .addOption(backendOption('compute backend'))
    .option('--threads <n>', 'CPU threads (0 = all cores)', integerAtLeast('--threads', 0))
    .option('--json', 'print the calibration as one JSON object');
  addPruneOptionFlags(cmd).action(async (o: { model: string; drives: string; budgets: string; out?: string; config?: string; limit?: number; backend?: BackendName; threads?: number; json?: boolean; searchBudget: number; policies?: SearchedPolicy[] } & PruneOptionFlags) => {
    const shares = parseShares(o.budgets);
    let drives = await readDrives(o.drives);
    refuseTestDrives(drives);
    if (o.limit) drives = drives.slice(0, o.limit);
    let configFile = o.config;
    if (!configFile) {
      const first = await openBag((drives[0] as { dir: string }).dir);
      await first.close();
      configFile = chooseBundledConfig(first.info.path, first.info.topics);
    }
    const config = loadCliConfig(configFile, o);
    // The candidates are run as they are: never through an earlier calibration of this model.
    const engine = await Engine.load(config.engine.modelPath, { ...engineLoadOptions(config.engine), calibration: false });
    const work = await mkdtemp(path.join(os.tmpdir(), 'autoprune-calibrate-'));
    try {
      const out = o.out ?? path.join(config.engine.modelPath, 'calibration.json');
      await mkdir(path.dirname(path.resolve(out)), { recursive: true });
      const visualTokens = engine.info.tokensPerView * engine.cameras.length;
      const c = await calibrate({
        drives,
        config,
        configPath: path.resolve(configFile),
        engine,
        modelPath: config.engine.modelPath,
        layers: engine.info.textLayers,
        visualTokens,
        shares,
        searchBudget: o.searchBudget,
        ...(o.policies ? { policies: o.policies } : {}),
        // the runs' replay reports are scratch: never beside the model, where they could be committed
        outDir: work,
        toolVersion: version,
        log: logger.child({ component: 'calibrate' }, logLevelChosen() ? {} : { level: 'fatal' }),
        onProgress: (what) => {
          if (!o.json) io.err(`calibrate: ${what} (${drives.length} drives)`);
        },
      });
      await writeFile(out, JSON.stringify(c, null, 2) + '\n');
      if (o.json) io.out(JSON.stringify(c));
      else {
        const pc = (v: number | null) => (v === null ? '–' : `${(100 * v).toFixed(1)} %`);
        const opts = (x: Record<string, unknown>) => Object.entries(x).map(([k, v]) => `${k} ${typeof v === 'number' ? Number(v.toFixed(3)) : v}`).join(', ') || '–';
        io.out(
          [
            `| budget | MI_1 p10 / median / p90 | k on validation | best flat | best adaptive | adaptive better |`,
            '| --- | --- | --- | ---: | ---: | --- |',
            ...c.budgets.map((b) => `| ${Math.round(b.share * 100)} % (tokens:${b.tokens}) | ${b.mi1.p10.toFixed(2)} / ${b.mi1.median.toFixed(2)} / ${b.mi1.p90.toFixed(2)} | ${b.validation.kRange ? `${b.validation.kRange[0].toFixed(2)}–${b.validation.kRange[1].toFixed(2)}` : '–'} | ${pc(b.validation.flatSkill)} | ${pc(b.validation.adaptiveSkill)} | ${b.validation.adaptiveBeatsFlat === null ? '–' : b.validation.adaptiveBeatsFlat ? 'yes' : 'no'} |`),
            '',
            `| budget | policy | settings tried | chosen | skill retained |`,
            '| --- | --- | ---: | --- | ---: |',
            ...c.budgets.flatMap((b) => Object.entries(b.policies).map(([p, r]) => `| ${Math.round(b.share * 100)} % | ${p} | ${r.candidates.filter((x) => !x.skipped).length} | ${opts(r.chosen)} | ${pc(r.skill)} |`)),
            '',
            `${c.frames} validation frames of ${c.drives.length} drives, ${c.evaluations} inferences in ${c.runSeconds.toFixed(1)} s; search budget ${c.searchBudget} settings per policy and budget; written to ${shortPath(out)}`,
            ...c.notCovered.map((n) => `not covered: ${n}`),
          ].join('\n'),
        );
      }
      setExit(0);
    } finally {
      await rm(work, { recursive: true, force: true });
      await engine.dispose();
    }
  });
}
