/**
 * Closed-loop subcommands of the CLI: `drive` (one scenario, or a sweep of held-out scenarios
 * x settings, optionally one shard of it) and `merge` (shard reports into one). Registered by
 * registerDriveCommands, as the replay commands are by registerReplayCommands; what they do is in
 * commands.ts, loaded when one of them runs.
 */
import path from 'node:path';

import { Option, type Command } from 'commander';

import type { BackendName } from '../engine/engine.js';
import { PRUNE_POLICIES, type PrunePolicyName } from '../engine/policies.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import type { PlannerKind } from '../sim/types.js';
import { SAMPLE_CONFIG } from '../util/paths.js';
import type { Io, SetExit } from './common.js';

export const DEFAULT_CONFIG = SAMPLE_CONFIG;
export const DEFAULT_SWEEP = ['policy=none,autoprune,fastv,pdrop,sparsevlm-fixed,cls-prior,random', 'budget=33%,22%,11%'];

export interface DriveCliOptions {
  /** false: --no-calibration. */
  calibration?: boolean;
  scenario?: number;
  scenarioFile?: string;
  out: string;
  planner: PlannerKind;
  policy?: PrunePolicyName;
  budget?: string;
  latency: string;
  maxPlanAge: number;
  reactiveTraffic?: boolean;
  config: string;
  model?: string;
  backend?: BackendName;
  threads?: number;
  cameraHz: number;
  width: number;
  height: number;
  timeout?: number;
  bag?: boolean;
  animation?: boolean;
  svg?: boolean;
  sweep?: string[];
  scenarios?: string;
  heldOut?: number;
  perKind?: number;
  shard?: string;
  allArtifacts?: boolean;
  json?: boolean;
  progress?: boolean;
}

export function registerDriveCommands(program: Command, io: Io, setExit: SetExit): void {
  const POLICIES: readonly PrunePolicyName[] = PRUNE_POLICIES;
  const count = (name: string) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new VlaError(ErrorCodes.ARGS, `${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
  const positive = (name: string) => (v: string) => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new VlaError(ErrorCodes.ARGS, `${name} must be a positive number, got '${v}'`);
    return n;
  };
  program
    .command('drive')
    .description('closed-loop driving: the node in the loop of the synthetic world (cameras rendered from the pose the plans steer to, inference latency delaying the plans); writes DIR/report.json (driving score, route completion, infractions), a top-down SVG, an animated WebP and an MCAP bag; --sweep evaluates held-out scenarios x settings')
    .option('--scenario <seed>', 'scenario seed (held-out: 900000 and up)', count('--scenario'))
    .option('--scenario-file <json>', 'a hand-made scenario (a Scenario as JSON; any drive\'s report.json works too)')
    .requiredOption('--out <dir>', 'output directory')
    .addOption(new Option('--planner <kind>', 'who plans: the model, the scenario\'s expert (upper bound) or constant velocity').choices(['model', 'expert', 'constant-velocity']).default('model'))
    .addOption(new Option('--policy <name>', 'pruning policy (default: the config\'s)').choices(POLICIES))
    .option('--budget <spec>', 'tokens:<T>, flops:<GFLOP>, or a share of the visual tokens such as 33%')
    .option('--latency <model>', 'measured | fixed:MS | device:orin | device:h100, a device optionally @llava-1.5-7b', 'device:orin')
    .option('--max-plan-age <ms>', 'a plan older than this (from its camera stamp) makes the car stop safely', positive('--max-plan-age'), 1000)
    .option('--reactive-traffic', 'other cars react to the ego (default: they drive as recorded beside the expert)')
    .option('--config <yaml>', 'node parameter file', DEFAULT_CONFIG)
    .option('--model <dir>', "model directory (default: the config's model_path)")
    .addOption(new Option('--backend <name>', "compute backend (default: the config's)").choices(['cpu', 'cuda', 'auto']))
    .option('--threads <n>', 'CPU threads (0 = all cores)', count('--threads'))
    .option('--camera-hz <hz>', 'camera rate', positive('--camera-hz'), 10)
    .option('--width <px>', 'camera image width', count('--width'), 320)
    .option('--height <px>', 'camera image height', count('--height'), 180)
    .option('--timeout <s>', 'simulated seconds before the drive times out (default: twice the scenario\'s duration plus 2 s)', positive('--timeout'))
    .option('--no-bag', 'do not write the MCAP bag')
    .option('--no-animation', 'do not write the animated WebP')
    .option('--no-svg', 'do not write the top-down SVG')
    .option('--sweep <key=values...>', `evaluate settings: policy=... budget=... (budgets as tokens or shares; the expert and constant velocity are added); default ${DEFAULT_SWEEP.join(' ')}`)
    .option('--scenarios <seeds>', 'sweep: these seeds (900000,900003-900006)')
    .option('--held-out <n>', 'sweep: the first n held-out scenarios of every instruction kind and complexity', count('--held-out'))
    .option('--per-kind <k>', 'sweep: the first k held-out scenarios of every instruction kind (default 1)', count('--per-kind'))
    .option('--shard <i/n>', 'sweep: run only jobs i, i+n, i+2n, ... (merge the shards with `merge`)')
    .option('--all-artifacts', 'sweep: also write every drive\'s bag and animation')
    .option('--no-progress', 'no progress lines')
    .option('--no-calibration', "do not take unset prune options from the model's calibration.json: the reference's values (parity runs)")
    .option('--json', 'print the report as one JSON object')
    .action(async (o: DriveCliOptions) => {
      const c = await import('./drive-run.js');
      setExit(o.sweep ? await c.runSweep(io, o) : await c.runOne(io, o));
    });

  program
    .command('merge <reports...>')
    .description('merge the shard reports of one drive sweep (directories or report.json files) into the report one process would have written')
    .requiredOption('--out <dir>', 'output directory')
    .option('--json', 'print the report as one JSON object')
    .action(async (reports: string[], o: { out: string; json?: boolean }) => setExit(await (await import('./drive-run.js')).runMerge(io, reports, o)));
}
