/**
 * The quick start, the default command: generate a held-out test drive, replay it with the
 * bundled model (unpruned and AutoPrune at a third of the visual tokens) and print the report
 * summary beside a constant-velocity baseline.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { Command } from 'commander';

import { SPLIT_SEED_BASE } from '../sample/dataset.js';
import { makeScenarioDrive, TEST_DRIVE_ODOM_TAIL_S } from '../sample/drive.js';
import { sampleScenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { packageRoot, SAMPLE_CONFIG } from '../util/paths.js';
import { nonNegativeInt as count, type Io, type SetExit } from './common.js';
import { runReplay } from './replay.js';

/** The quick start's held-out episode: the second test seed, a left turn at a crossing in traffic. */
export const QUICKSTART_SCENARIO = 900_001;
/** Where the quick start writes by default (its own, under build/: replaced on each run). */
const DEFAULT_OUT = path.join(packageRoot, 'build', 'replay', 'held-out-drive');
/** A third of the bundled model's 147 visual tokens (3 views x 49). */
const QUICKSTART_BUDGET_TOKENS = 49;

export function registerQuickstart(program: Command, io: Io, setExit: SetExit): void {
  program
    .command('quickstart', { isDefault: true })
    .description('the main job on the bundled default: generate a held-out test drive, replay it with the bundled trained model (unpruned and AutoPrune at a third of the visual tokens), print the report summary beside a constant-velocity baseline')
    .option('--out <dir>', 'output directory', DEFAULT_OUT)
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
      setExit(await runReplay(io, bag, { config: SAMPLE_CONFIG, out: o.out, sweep: ['policy=none,autoprune', `budget=${QUICKSTART_BUDGET_TOKENS}`], json: o.json, baseline: true, overwrite: path.resolve(o.out) === DEFAULT_OUT }));
    });
}
