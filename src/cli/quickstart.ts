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
/** A third of the model's visual tokens (64 of 192 for the default model, 49 of 147 for the small one). */
const QUICKSTART_BUDGET = '33%';

/** Edit distance (insertions, deletions, substitutions, adjacent swaps) for "did you mean". */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[], prev = d[i - 1] as number[];
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

export function unknownCommand(name: string, program: Command): VlaError {
  const names = program.commands.map((c) => c.name());
  const near = names.filter((n) => editDistance(name, n) <= Math.max(1, Math.floor(n.length / 3)) || (name.length >= 3 && n.startsWith(name)));
  const hint = near.length ? ` (did you mean ${near.map((n) => `'${n}'`).join(' or ')}?)` : '';
  return new VlaError(ErrorCodes.ARGS, `unknown command '${name}'${hint}; the commands: ${names.join(', ')} (autoprune-ros --help)`);
}

export function registerQuickstart(program: Command, io: Io, setExit: SetExit): void {
  program
    .command('quickstart', { isDefault: true })
    .description('the main job on the bundled default: generate a held-out test drive, replay it with the bundled trained model (unpruned and AutoPrune at a third of the visual tokens), print the report summary beside a constant-velocity baseline')
    .option('--out <dir>', 'output directory', DEFAULT_OUT)
    .option('--scenario <seed>', 'the held-out episode to drive (test split: 900000 and up)', count('--scenario'), QUICKSTART_SCENARIO)
    .option('--json', 'print the report as one JSON object')
    // The default command would otherwise take a mistyped command name as its argument.
    .allowExcessArguments()
    .action(async (o: { out: string; scenario: number; json?: boolean }, cmd: Command) => {
      if (cmd.args.length) throw unknownCommand(cmd.args[0] as string, program);
      if (o.scenario < SPLIT_SEED_BASE.test) throw new VlaError(ErrorCodes.ARGS, `--scenario ${o.scenario} is not a held-out episode (test seeds start at ${SPLIT_SEED_BASE.test})`);
      const sc = sampleScenario(o.scenario);
      const bag = path.join(packageRoot, 'build', `held-out-drive-${o.scenario}`);
      if (!existsSync(path.join(bag, 'metadata.yaml'))) {
        const t0 = performance.now();
        await makeScenarioDrive(bag, sc, { odomTailS: TEST_DRIVE_ODOM_TAIL_S });
        if (!o.json) io.out(`generated the held-out drive ${bag} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      if (!o.json) io.out(`episode ${sc.seed}: '${sc.instruction}' (${sc.kind}, ${sc.complexity} complexity, ${sc.durationS.toFixed(1)} s)`);
      setExit(await runReplay(io, bag, { config: SAMPLE_CONFIG, out: o.out, sweep: ['policy=none,autoprune', `budget=${QUICKSTART_BUDGET}`], json: o.json, baseline: true, overwrite: path.resolve(o.out) === DEFAULT_OUT }));
    });
}
