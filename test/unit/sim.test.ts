/**
 * The closed-loop simulator without the addon: the expert and constant-velocity planners go
 * through the node logic exactly as the model does (cameras rendered, JPEG, CDR, virtual clock),
 * so the loop, the metrics, latency and the failure paths are tested here; the model's drives are
 * in test/addon/drive-sim.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { InferOutput } from '../../src/engine/engine.js';
import { loadParamsFile } from '../../src/pipeline/params.js';
import { sampleScenario, type Scenario } from '../../src/sample/scenario.js';
import { runDrive, type DriveOptions } from '../../src/sim/drive.js';
import { DEVICE_PROFILES, deviceTime, frameWork, LLAVA_15_7B, modelArithFromDir, parseLatency, type ModelArith } from '../../src/sim/latency.js';
import { checkScenario, loadScenarioFile } from '../../src/sim/scenario-file.js';
import { heldOutScenarios, mergeShards, parseSeedList, parseShard, sweepReport, type SweepSetting } from '../../src/sim/sweep.js';
import type { DriveReport, SweepJobResult, SweepReport } from '../../src/sim/types.js';
import { ErrorCodes, isVlaError } from '../../src/util/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG = path.join(root, 'configs', 'sample-drive.yaml');
const LEAD_BRAKES = path.join(root, 'assets', 'scenarios', 'lead-car-brakes.json');
const config = loadParamsFile(CONFIG);
const coded = (code: string) => (e: unknown) => isVlaError(e) && e.code === code;

/** A drive with small images (the renderer is most of the cost) and no files but report.json. */
function opts(scenario: Scenario, planner: DriveOptions['planner'], outDir: string, extra: Partial<DriveOptions> = {}): DriveOptions {
  return {
    scenario,
    scenarioSource: 'seed',
    planner,
    modelArith: null,
    modelLabel: null,
    config,
    configLabel: 'configs/sample-drive.yaml',
    prune: undefined,
    deadline: false,
    label: planner,
    latency: parseLatency('fixed:20'),
    width: 96,
    height: 54,
    outDir,
    writeBag: false,
    writeAnimation: false,
    writeSvg: false,
    ...extra,
  };
}

/** A model's inference output as the roofline needs it: one frame's prune statistics. */
function output(views: number, nVisual: number, kept: number[], flopsUnpruned: number): InferOutput {
  return {
    head: 'waypoints',
    waypoints: [],
    tokenIds: [],
    stopped: true,
    cameras: Array.from({ length: views }, (_, i) => `c${i}`),
    timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 0 },
    tokens: { prompt: 0, visual: nVisual, text: 60, generated: 0 },
    memory: { peakActivationBytes: 0, prefillHostReads: 0 },
    prune: { policy: 'autoprune', nVisual, kept, merged: [], keptPerView: [], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 0, avgTokens: 0, flops: 0, flopsUnpruned, budgetMet: true },
  };
}
const F = (n: number, d: number, m: number) => 4 * n * d * d + 2 * n * n * d + 3 * n * d * m;

describe('closed loop: latency models', () => {
  it('parses the models and refuses bad ones with VLA_E_SIM_CONFIG', () => {
    assert.deepEqual(parseLatency('measured'), { kind: 'measured' });
    assert.deepEqual(parseLatency('fixed:120'), { kind: 'fixed', ms: 120 });
    assert.deepEqual(parseLatency('device:orin'), { kind: 'device', device: 'orin', as: 'self' });
    assert.deepEqual(parseLatency('device:h100@llava-1.5-7b'), { kind: 'device', device: 'h100', as: 'llava-1.5-7b' });
    for (const bad of ['fast', 'fixed:-3', 'fixed:1e9', 'device:tpu', 'device:orin@gpt-9', '']) assert.throws(() => parseLatency(bad), coded(ErrorCodes.SIM_CONFIG), bad);
  });

  it('LLaVA-1.5-7B on the profiles reproduces the physical floors (anchors: 0.41 TFLOP per image; prefill of 576+60 tokens 196 ms on AGX Orin, 8.4 ms on H100 at peak)', () => {
    const L = LLAVA_15_7B;
    const out = output(1, 576, Array(32).fill(576), 32 * F(636, 4096, 11008));
    const w = frameWork(L, out);
    assert.ok(Math.abs(w.visionFlops / 0.41e12 - 1) < 0.03, `vision ${w.visionFlops}`);
    // docs/autoprune.md "Budget" counts attention without the causal half: 8.45 TFLOP against the anchors' 8.34
    assert.ok(Math.abs(w.prefillFlops / 8.34e12 - 1) < 0.03, `prefill ${w.prefillFlops}`);
    const atPeak = (d: typeof DEVICE_PROFILES.orin) => deviceTime({ ...d, computeEfficiency: 1, memoryEfficiency: 1, overheadMs: 0 }, { ...w, visionFlops: 0 });
    assert.ok(Math.abs(atPeak(DEVICE_PROFILES.orin).totalMs / 196 - 1) < 0.05, `orin ${atPeak(DEVICE_PROFILES.orin).totalMs}`);
    assert.ok(Math.abs(atPeak(DEVICE_PROFILES.h100).totalMs / 8.4 - 1) < 0.05, `h100 ${atPeak(DEVICE_PROFILES.h100).totalMs}`);
  });

  it('pruning shortens the frame until the weights\' bandwidth sets the floor; @llava-1.5-7b keeps the frame\'s fractions', () => {
    const self: ModelArith = modelArithFromDir(path.join(root, 'assets', 'models', 'drive'));
    assert.equal(self.tokensPerView, 49);
    const d = self.text.hidden, m = self.text.ffn, Ls = self.text.layers;
    const nv = 147, other = 40;
    const full = output(3, nv, Array(Ls).fill(nv), Ls * F(other + nv, d, m));
    const pruned = output(3, nv, [49, 40, 30, 20, 10, 5], Ls * F(other + nv, d, m));
    const orin = DEVICE_PROFILES.orin;
    const tFull = deviceTime(orin, frameWork(self, full, LLAVA_15_7B));
    const tPruned = deviceTime(orin, frameWork(self, pruned, LLAVA_15_7B));
    assert.ok(tPruned.prefillMs < tFull.prefillMs / 2, `${tPruned.prefillMs} vs ${tFull.prefillMs}`);
    assert.equal(tPruned.visionMs, tFull.visionMs); // the vision tower sees every view
    const floorMs = (1e3 * LLAVA_15_7B.text.params * 2) / (orin.memBytesPerS * orin.memoryEfficiency);
    assert.ok(tPruned.prefillMs >= floorMs - 1e-9);
    // the running model's own arithmetic: microseconds on an Orin (only the overhead is left)
    assert.ok(deviceTime(orin, frameWork(self, full)).totalMs < orin.overheadMs + 0.5);
  });
});

describe('closed loop: scenario files', () => {
  let tmp: string;
  before(() => (tmp = mkdtempSync(path.join(os.tmpdir(), 'scn-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const write = (name: string, value: unknown) => {
    const f = path.join(tmp, name);
    writeFileSync(f, typeof value === 'string' ? value : JSON.stringify(value));
    return f;
  };
  const good = JSON.parse(readFileSync(LEAD_BRAKES, 'utf8')) as Record<string, unknown>;

  it('a hand-made scenario loads (defaults filled in, complexity labelled); a sampled one passes the same checks', () => {
    const sc = loadScenarioFile(LEAD_BRAKES);
    assert.equal(sc.kind, 'keep_lane');
    assert.deepEqual(sc.laterInstructions, []);
    assert.ok(['low', 'medium', 'high'].includes(sc.complexity));
    const s = sampleScenario(900004);
    assert.deepEqual(checkScenario(JSON.parse(JSON.stringify(s)), 'sampled'), s);
  });

  it('a damaged scenario file is a VLA_E_SCENARIO naming the file and the field', () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['not-json.json', '{"seed": 1,', /not JSON/],
      ['missing.json', { ...good, traffic: undefined }, /missing field 'traffic'/],
      ['type.json', { ...good, durationS: 'long' }, /durationS must be number/],
      ['unknown.json', { ...good, speed: 3 }, /unknown field 'speed'/],
      ['color.json', { ...good, traffic: [{ ...(good.traffic as object[])[0], color: [300, 0, 0] }] }, /traffic\.0\.color\.0/],
      ['stop.json', { ...good, kind: 'stop_behind', stop: { reason: 'vehicle', targetSM: 10, vehicle: 5 } }, /stop\.vehicle must name a traffic object/],
      ['moving-stop.json', { ...good, kind: 'stop_behind', stop: { reason: 'vehicle', targetSM: 10, vehicle: 0 } }, /must stand still/],
      ['turn.json', { ...good, kind: 'turn_left', turn: { direction: 1, radiusM: 10, speedMps: 5, arcStartSM: 40, exitSpeedMps: 8 } }, /a turn needs an intersection/],
      ['bend.json', { ...good, road: { rampM: 5, bends: [{ startM: 50, endM: 20, curvature: 0.01 }] } }, /endM must be after startM/],
    ];
    for (const [name, value, re] of cases) {
      const f = write(name, value);
      assert.throws(() => loadScenarioFile(f), (e: unknown) => isVlaError(e, ErrorCodes.SCENARIO) && re.test(e.message) && e.message.includes(f), name);
    }
    assert.throws(() => loadScenarioFile(path.join(tmp, 'absent.json')), coded(ErrorCodes.IO));
  });
});

describe('closed loop: sweeps and shards', () => {
  it('parses seeds and shards; bad ones are VLA_E_ARGS', () => {
    assert.deepEqual(parseSeedList('900000,900003-900005'), [900000, 900003, 900004, 900005]);
    assert.deepEqual(parseShard('2/3'), { index: 2, count: 3 });
    for (const bad of ['3/3', '-1/2', 'a/b', '1']) assert.throws(() => parseShard(bad), coded(ErrorCodes.ARGS), bad);
    for (const bad of ['x', '900005-900001', '']) assert.throws(() => parseSeedList(bad), coded(ErrorCodes.ARGS), bad);
  });

  it('held-out scenarios: test seeds only, every instruction kind, every complexity the generator makes', () => {
    const s = heldOutScenarios(1);
    assert.ok(s.every((x) => x.seed >= 900_000));
    assert.equal(new Set(s.map((x) => x.kind)).size, 7);
    assert.equal(new Set(s.map((x) => x.complexity)).size, 3);
    assert.equal(new Set(s.map((x) => `${x.kind}/${x.complexity}`)).size, s.length);
  });

  it('merge refuses what is not one sweep\'s complete set of shards (VLA_E_SHARD)', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'shard-'));
    try {
      const settings: SweepSetting[] = [{ planner: 'expert', label: 'expert' }, { planner: 'constant-velocity', label: 'constant velocity' }];
      const job = (j: number, label: string): SweepJobResult => ({ job: j, seed: 900000, kind: 'keep_lane', complexity: 'low', label, planner: label === 'expert' ? 'expert' : 'constant-velocity', policy: label, budget: null, status: 'completed', routeCompletion: 100, infractionPenalty: 1, drivingScore: 100, success: true, infractions: { collisionVehicle: 0, collisionStatic: 0, collisionNotAtFault: 0, offRoad: 0, oncomingLane: 0, outsideRouteLane: 0, stopLine: 0, stopBehind: 0, routeDeviation: 0 }, outsideLanesPercent: 0, routeLanePercent: 100, minTtcS: null, planAgeMeanMs: 60, planAgeP95Ms: 90, latencyMeanMs: 20, safeStops: 0, keptTokensMean: null, relFlopsMean: null, maxAbsLonJerkMps3: 1, comfortable: true, simTimeS: 8, dir: `d${j}` });
      const head: SweepReport['sweep'] = { scenarios: [{ seed: 900000, kind: 'keep_lane', complexity: 'low' }], settings: ['expert', 'constant velocity'], latency: 'fixed:20', deterministic: true, model: null, maxPlanAgeMs: 1000, reactiveTraffic: false, config: 'c', jobs: 2 };
      const put = (name: string, r: unknown) => {
        writeFileSync(path.join(tmp, name), JSON.stringify(r));
        return path.join(tmp, name);
      };
      const a = put('a.json', sweepReport(head, settings, [job(0, 'expert')], { index: 0, count: 2 }, false));
      const b = put('b.json', sweepReport(head, settings, [job(1, 'constant velocity')], { index: 1, count: 2 }, false));
      const whole = sweepReport(head, settings, [job(1, 'constant velocity'), job(0, 'expert')], null, false);
      assert.deepEqual(await mergeShards([b, a]), whole);
      const other = put('c.json', sweepReport({ ...head, latency: 'fixed:50' }, settings, [job(1, 'constant velocity')], { index: 1, count: 2 }, false));
      const notReport = put('d.json', { kind: 'something else' });
      for (const files of [[a], [a, a], [a, other], [a, notReport], [path.join(tmp, 'none.json')], []]) await assert.rejects(mergeShards(files), coded(ErrorCodes.SHARD), files.join(' '));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('closed loop: drives without the model', function () {
  this.timeout(180_000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(path.join(os.tmpdir(), 'drive-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the expert completes held-out routes of every kind without an infraction', async () => {
    // one scenario of each kind (the first of its kind from the test seeds)
    for (const seed of [900000, 900001, 900002, 900004, 900006, 900013, 900058]) {
      const sc = sampleScenario(seed);
      const r = await runDrive(opts(sc, 'expert', path.join(tmp, `expert-${seed}`)));
      const m = r.metrics;
      assert.equal(m.status, 'completed', `${seed} ${sc.kind}: ${m.status} ${JSON.stringify(m.events)}`);
      assert.equal(m.drivingScore, 100, `${seed} ${sc.kind}`);
      assert.equal(m.success, true);
      assert.equal(m.routeLanePercent, 100, `${seed} ${sc.kind}`);
      assert.ok(r.node.setsInferred > 0 && r.plans.received === r.node.published && r.plans.invalid === 0);
      assert.equal(r.safeStops.count, 0);
    }
  });

  it('constant velocity runs into the car it should stop behind: a vehicle collision ends the drive, penalty 0.6', async () => {
    const r = await runDrive(opts(sampleScenario(900004), 'constant-velocity', path.join(tmp, 'cv-stop')));
    assert.equal(r.metrics.status, 'collision');
    assert.equal(r.metrics.infractions.collisionVehicle, 1);
    assert.ok(Math.abs(r.metrics.infractionPenalty - 0.6) < 1e-9);
    assert.ok(r.metrics.minTtcS !== null && r.metrics.minTtcS <= 0.5);
  });

  it('the lead car brakes: a small latency stops in time, a large one brakes late (the same planner)', async () => {
    const sc = loadScenarioFile(LEAD_BRAKES);
    const run = (ms: number) => runDrive(opts(sc, 'expert', path.join(tmp, `lead-${ms}`), { latency: parseLatency(`fixed:${ms}`), maxPlanAgeMs: 3000 }));
    const fast = await run(20);
    const slow = await run(1000);
    assert.equal(fast.metrics.infractions.collisionVehicle, 0);
    assert.ok(fast.metrics.minTtcS !== null && fast.metrics.minTtcS >= 1.0, `fast min TTC ${fast.metrics.minTtcS}`);
    const late = slow.metrics.infractions.collisionVehicle > 0 || (slow.metrics.minTtcS !== null && slow.metrics.minTtcS <= fast.metrics.minTtcS / 2);
    assert.ok(late, `slow: collisions ${slow.metrics.infractions.collisionVehicle}, min TTC ${slow.metrics.minTtcS}`);
    assert.ok((slow.planAgeAtUse.meanMs ?? 0) > (fast.planAgeAtUse.meanMs ?? 0) + 900);
    assert.equal(slow.inferenceLatency.meanMs, 1000);
  });

  it('plans older than the limit stop the car (safe stops counted); it is then blocked', async () => {
    const r = await runDrive(opts(sampleScenario(900058), 'expert', path.join(tmp, 'stale'), { latency: parseLatency('fixed:700'), maxPlanAgeMs: 300 }));
    assert.ok(r.safeStops.count >= 1 && r.safeStops.timeS > 0);
    assert.equal(r.metrics.status, 'blocked');
    assert.ok(r.metrics.routeCompletion < 100);
  });

  it('traffic as recorded runs into an ego that stopped (not its fault); reactive traffic brakes for it', async () => {
    // stale plans stop the ego early; a car follows it in its lane
    const stop = { latency: parseLatency('fixed:700'), maxPlanAgeMs: 300 };
    const logged = await runDrive(opts(sampleScenario(900000), 'expert', path.join(tmp, 'log-replay'), stop));
    assert.equal(logged.metrics.infractions.collisionNotAtFault, 1);
    assert.equal(logged.metrics.infractions.collisionVehicle, 0);
    assert.equal(logged.metrics.infractionPenalty, 1);
    const reactive = await runDrive(opts(sampleScenario(900000), 'expert', path.join(tmp, 'reactive'), { ...stop, reactiveTraffic: true }));
    assert.equal(reactive.metrics.infractions.collisionNotAtFault + reactive.metrics.infractions.collisionVehicle, 0);
    assert.equal(reactive.setup.reactiveTraffic, true);
  });

  it('deterministic: two runs write the same report and bag, byte for byte', async () => {
    const sc = sampleScenario(900001);
    const files: Buffer[][] = [];
    for (const k of [0, 1]) {
      const dir = path.join(tmp, `det-${k}`);
      await runDrive(opts(sc, 'expert', dir, { writeBag: true, writeSvg: true, timeoutS: 4 }));
      files.push(['report.json', 'topdown.svg', path.join('bag', 'bag_0.mcap')].map((f) => readFileSync(path.join(dir, f))));
    }
    for (let i = 0; i < 3; i++) assert.ok((files[0]?.[i] as Buffer).equals(files[1]?.[i] as Buffer), `file ${i} differs`);
  });

  it('an aborted drive (Ctrl-C) writes a partial report', async () => {
    const abort = new AbortController();
    const dir = path.join(tmp, 'abort');
    const r = await runDrive(opts(sampleScenario(900006), 'expert', dir, { signal: abort.signal, writeSvg: true, onProgress: (simS) => simS >= 2 && abort.abort() }));
    assert.equal(r.interrupted, true);
    assert.equal(r.metrics.status, 'interrupted');
    assert.ok(r.metrics.simTimeS >= 2 && r.metrics.simTimeS < 3, `${r.metrics.simTimeS}`);
    const onDisk = JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as DriveReport;
    assert.equal(onDisk.interrupted, true);
    assert.ok(onDisk.metrics.routeCompletion > 0 && onDisk.metrics.routeCompletion < 100);
  });

  it('bad settings are VLA_E_SIM_CONFIG before anything runs', async () => {
    const sc = sampleScenario(900006);
    for (const extra of [{ maxPlanAgeMs: 0 }, { safeStopDecelMps2: 50 }, { cameraHz: 0 }, { width: 3 }, { timeoutS: 1000 }] as Array<Partial<DriveOptions>>) {
      await assert.rejects(runDrive(opts(sc, 'expert', path.join(tmp, 'bad'), extra)), coded(ErrorCodes.SIM_CONFIG), JSON.stringify(extra));
    }
    await assert.rejects(runDrive(opts(sc, 'model', path.join(tmp, 'bad'))), coded(ErrorCodes.SIM_CONFIG));
  });
});
