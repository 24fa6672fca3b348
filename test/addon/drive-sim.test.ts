/**
 * Closed-loop drives with the bundled model (assets/models/drive) in the loop, and the CLI
 * (`drive`, `merge`) as users run it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { main } from '../../src/cli/main.js';
import { Engine } from '../../src/engine/engine.js';
import { loadParamsFile } from '../../src/pipeline/params.js';
import { sampleScenario } from '../../src/sample/scenario.js';
import { runDrive, type DriveOptions } from '../../src/sim/drive.js';
import { modelArithFromDir, parseLatency } from '../../src/sim/latency.js';
import type { DriveReport, SweepReport } from '../../src/sim/types.js';
import { requireBuilt, requireBuiltCli, root } from './helpers.js';

const CONFIG = path.join(root, 'configs', 'sample-drive.yaml');
const MODEL = path.join(root, 'assets', 'models', 'drive');
const BIN = path.join(root, 'bin', 'autoprune-ros.js');

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LOG_LEVEL: 'error' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe('closed loop with the bundled model', function () {
  this.timeout(600_000);
  let tmp: string;
  let engine: Engine;
  const config = loadParamsFile(CONFIG);
  before(async () => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'drive-model-'));
    engine = await Engine.load(MODEL, { threads: 1 });
  });
  after(async () => {
    await engine?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });
  const opts = (seed: number, planner: DriveOptions['planner'], dir: string, extra: Partial<DriveOptions> = {}): DriveOptions => ({
    scenario: sampleScenario(seed),
    scenarioSource: 'seed',
    planner,
    engine,
    modelArith: modelArithFromDir(MODEL),
    modelLabel: 'assets/models/drive',
    config,
    configLabel: 'configs/sample-drive.yaml',
    prune: undefined,
    deadline: false,
    label: planner === 'model' ? 'none' : planner,
    latency: parseLatency('device:orin'),
    outDir: path.join(tmp, dir),
    writeBag: false,
    writeAnimation: false,
    writeSvg: false,
    ...extra,
  });

  it('a held-out drive twice: the same report, byte for byte (device latency, virtual clock)', async () => {
    for (const d of ['det-a', 'det-b']) await runDrive(opts(900006, 'model', d, { timeoutS: 4, prune: { policy: 'autoprune', budget: { kind: 'tokens', value: 49 } }, label: 'autoprune tokens:49', latency: parseLatency('device:orin@llava-1.5-7b') }));
    const a = readFileSync(path.join(tmp, 'det-a', 'report.json'));
    assert.ok(a.equals(readFileSync(path.join(tmp, 'det-b', 'report.json'))));
    const r = JSON.parse(a.toString()) as DriveReport;
    assert.ok(r.inference.count > 0 && (r.inference.keptTokensMean ?? 147) < 147);
    // the 7B-class latency of a pruned frame on an Orin: hundreds of ms, and it shows in the plans' age
    assert.ok((r.inferenceLatency.meanMs ?? 0) > 100 && (r.planAgeAtUse.meanMs ?? 0) > (r.inferenceLatency.meanMs ?? 0));
    // the report says which prune options ran: the bundled model's calibration, nearest stored budget 33 %
    assert.equal(r.planner.calibration?.source, 'file', JSON.stringify(r.planner.calibration));
    assert.equal(r.planner.calibration?.storedShare, 0.33);
    assert.ok(typeof r.planner.calibration?.applied.k0 === 'number' && (r.planner.calibration.applied.k0 as number) > 0.4, 'the calibrated slope, not the reference');
    const ex = await runDrive(opts(900006, 'expert', 'det-expert', { timeoutS: 2 }));
    assert.equal(ex.planner.calibration, null);
  });

  it('held-out scenarios of every kind: the unpruned model completes more of its routes than constant velocity, with fewer penalised infractions and more successes', async () => {
    // the first held-out scenario of each instruction kind
    const seeds = [900000, 900001, 900002, 900004, 900006, 900013, 900058];
    const penalised = (r: DriveReport) => r.metrics.infractions.collisionVehicle + r.metrics.infractions.collisionStatic + r.metrics.infractions.stopLine + r.metrics.infractions.stopBehind;
    const total = { model: { infractions: 0, success: 0, rc: 0 }, cv: { infractions: 0, success: 0, rc: 0 } };
    for (const seed of seeds) {
      for (const [who, planner] of [['model', 'model'], ['cv', 'constant-velocity']] as const) {
        const r = await runDrive(opts(seed, planner, `cmp-${seed}-${who}`));
        total[who].infractions += penalised(r);
        total[who].success += r.metrics.success ? 1 : 0;
        total[who].rc += r.metrics.routeCompletion / seeds.length;
      }
    }
    assert.ok(total.model.rc > total.cv.rc, JSON.stringify(total));
    assert.ok(total.model.infractions < total.cv.infractions, JSON.stringify(total));
    assert.ok(total.model.success >= total.cv.success, JSON.stringify(total));
  });

  it('CLI: drive writes report, SVG, animation and a bag that `bag info` and `replay` open', async () => {
    const out = path.join(tmp, 'cli-drive');
    const r = await cli('drive', '--scenario', '900001', '--out', out, '--timeout', '3', '--json');
    assert.equal(r.code, 0, r.err);
    const rep = JSON.parse(r.out) as DriveReport;
    assert.equal(rep.kind, 'autoprune-ros.drive-report');
    assert.deepEqual(rep.outputs, { svg: 'topdown.svg', animation: 'drive.webp', bag: 'bag' });
    for (const f of ['report.json', 'timing.json', 'topdown.svg', 'drive.webp']) assert.ok(existsSync(path.join(out, f)), f);
    assert.ok(readFileSync(path.join(out, 'drive.webp')).subarray(0, 4).toString() === 'RIFF');
    const info = await cli('bag', 'info', path.join(out, 'bag'), '--json');
    assert.equal(info.code, 0, info.err);
    const topics = (JSON.parse(info.out) as { topics: Array<{ name: string; count: number }> }).topics.map((t) => t.name);
    for (const t of ['/sensing/camera/front/image/compressed', '/localization/odometry', '/planning/instruction', '/autoprune_ros/output/trajectory', '/autoprune_ros/output/metrics', '/sim/state', '/sim/report']) assert.ok(topics.includes(t), t);
    // the closed-loop recording replays open-loop through the node like any bag
    const rep2 = await cli('replay', path.join(out, 'bag'), '--config', CONFIG, '--policy', 'none', '--out', path.join(tmp, 'cli-replay'), '--no-bag', '--no-trace', '--json');
    assert.equal(rep2.code, 0, rep2.err);
    assert.ok((JSON.parse(rep2.out) as { settings: Array<{ frames: { published: number } }> }).settings[0]!.frames.published > 10);
  });

  it('CLI: a damaged scenario, a damaged node config, a bad latency model and missing arguments are coded errors', async () => {
    const bad = path.join(tmp, 'bad-scenario.json');
    writeFileSync(bad, JSON.stringify({ ...sampleScenario(900004), durationS: -3 }));
    let r = await cli('drive', '--scenario-file', bad, '--out', path.join(tmp, 'x'));
    assert.equal(r.code, 1);
    assert.match(r.err, /^VLA_E_SCENARIO: .*durationS/);
    const badConfig = path.join(tmp, 'bad-config.yaml');
    writeFileSync(badConfig, readFileSync(CONFIG, 'utf8').replace('slop_ms: 20.0', 'slop_ms: fast'));
    r = await cli('drive', '--scenario', '900004', '--config', badConfig, '--out', path.join(tmp, 'x'));
    assert.equal(r.code, 1);
    assert.match(r.err, /^VLA_E_PARAMS: .*slop_ms/);
    r = await cli('drive', '--scenario', '900004', '--latency', 'warp:9', '--out', path.join(tmp, 'x'));
    assert.equal(r.code, 1);
    assert.match(r.err, /^VLA_E_SIM_CONFIG: --latency/);
    r = await cli('drive', '--out', path.join(tmp, 'x'));
    assert.equal(r.code, 2);
    assert.match(r.err, /^VLA_E_ARGS: drive needs --scenario/);
    r = await cli('drive', '--scenario', '900004', '--planner', 'expert', '--policy', 'fastv', '--out', path.join(tmp, 'x'));
    assert.equal(r.code, 2);
    r = await cli('merge', path.join(tmp, 'nothing-here'), '--out', path.join(tmp, 'm'));
    assert.equal(r.code, 1);
    assert.match(r.err, /^VLA_E_SHARD: /);
  });

  it('n shard processes merged give the report one process writes (built CLI)', async function () {
    requireBuiltCli();
    const sweep = ['drive', '--sweep', 'policy=none', '--scenarios', '900004,900006', '--timeout', '2', '--width', '96', '--height', '54', '--no-progress', '--latency', 'fixed:40'];
    const one = path.join(tmp, 'sweep-one');
    const shards = [0, 1, 2].map((i) => path.join(tmp, `sweep-shard-${i}`));
    const results = await Promise.all([run([...sweep, '--out', one]), ...shards.map((d, i) => run([...sweep, '--shard', `${i}/3`, '--out', d]))]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const merged = path.join(tmp, 'sweep-merged');
    const m = await run(['merge', ...shards, '--out', merged]);
    assert.equal(m.code, 0, m.stderr);
    const a = readFileSync(path.join(one, 'report.json'));
    assert.ok(a.equals(readFileSync(path.join(merged, 'report.json'))), 'merged report differs from the one-process report');
    assert.ok(readFileSync(path.join(one, 'report.md')).equals(readFileSync(path.join(merged, 'report.md'))));
    const rep = JSON.parse(a.toString()) as SweepReport;
    assert.equal(rep.jobs.length, 6);
    assert.deepEqual(rep.rows.map((x) => x.label), ['expert', 'constant velocity', 'none']);
    for (const d of shards) assert.ok((JSON.parse(readFileSync(path.join(d, 'report.json'), 'utf8')) as SweepReport).jobs.length === 2);
  });

  it('Ctrl-C on the command line: exit 130 and a partial report (built CLI)', async function () {
    requireBuiltCli();
    const out = path.join(tmp, 'sigint');
    const child = spawn(process.execPath, [BIN, 'drive', '--scenario', '900001', '--out', out, '--no-animation'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    // interrupt once the drive is under way (its bag exists from the first simulated instant)
    for (let i = 0; i < 600 && !existsSync(path.join(out, 'bag', 'bag_0.mcap')); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000));
    child.kill('SIGINT');
    const code = await exited;
    assert.equal(code, 130, stderr);
    const rep = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as DriveReport;
    assert.equal(rep.interrupted, true);
    assert.equal(rep.metrics.status, 'interrupted');
    assert.ok(existsSync(path.join(out, 'bag', 'metadata.yaml')));
  });
});
