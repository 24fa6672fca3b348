// evaluate: pooling over drives, the constant-velocity baseline, budget shares, drives.json faults.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { egoSpeedOf, modelInstruction } from '../../src/model/prompt.js';
import type { InferInput, InferOutput } from '../../src/engine/engine.js';
import { loadParamsFile } from '../../src/pipeline/params.js';
import { constantVelocityPlanner, evaluateDrives, evaluationMarkdown, readDrives, writeEvaluation } from '../../src/replay/evaluate.js';
import { resolveShareBudgets } from '../../src/cli/evaluate.js';
import type { ReplayEngine } from '../../src/replay/replay.js';
import { makeScenarioDrive } from '../../src/sample/drive.js';
import { sampleScenario } from '../../src/sample/scenario.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const CONFIG = path.join(root, 'configs', 'sample-drive.yaml');
const code = (c: string) => (e: unknown) => e instanceof VlaError && e.code === c;

/** A planner that overshoots constant velocity by 10 % and reports a FLOPs ratio from its budget. */
function fakeModel(calls?: Map<string, number>, spinMsPerToken = 0): ReplayEngine {
  const cv = constantVelocityPlanner(['front', 'front_left', 'front_right'], 6, 0.5);
  return {
    cameras: cv.cameras,
    info: { backend: 'fake', nParams: 123, numWaypoints: 6, waypointDtS: 0.5 },
    infer: async (input: InferInput): Promise<InferOutput> => {
      const o = await cv.infer(input);
      const t = input.prune?.budget?.value ?? 147;
      const key = input.prune?.policy ?? 'none';
      calls?.set(key, (calls.get(key) ?? 0) + 1);
      const until = performance.now() + spinMsPerToken * t; // compute that scales with the tokens kept
      while (performance.now() < until);
      return {
        ...o,
        waypoints: o.waypoints.map((w) => ({ ...w, x: 1.1 * w.x })),
        tokens: { prompt: 200, visual: 147, text: 50, generated: 0 },
        prune: { ...o.prune, policy: input.prune?.policy ?? 'none', nVisual: 147, kept: [t, t], avgTokens: t, flops: t, flopsUnpruned: 147, mi1: 3 + (o.waypoints[5]?.x ?? 0) / 100, k: 0.01 },
      };
    },
  };
}

describe('evaluate (accuracy against compute over drives)', function () {
  this.timeout(120_000);
  let tmp: string;
  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'evaluate-'));
    for (const seed of [900000, 900004]) await makeScenarioDrive(path.join(tmp, `test-${seed}`), sampleScenario(seed), { odomTailS: 3 });
    writeFileSync(path.join(tmp, 'drives.json'), JSON.stringify({ drives: [{ seed: 900000, bag: 'test-900000', kind: 'change_right', complexity: 'medium' }, { seed: 900004, bag: 'test-900004', kind: 'stop_behind', complexity: 'medium' }] }));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the constant-velocity planner reads the speed the node writes into the prompt', async () => {
    for (const v of [0, 7.44, 12.96]) assert.equal(egoSpeedOf(modelInstruction('keep the lane', v)), Number(v.toFixed(1)));
    assert.equal(egoSpeedOf('keep the lane'), undefined);
    assert.equal(egoSpeedOf('drive at (ego speed 5 m/s) then stop'), undefined, 'only the suffix counts');
    const cv = constantVelocityPlanner(['front'], 3, 1);
    const out = await cv.infer({ views: {}, instruction: modelInstruction('go', 4) });
    assert.deepEqual(out.waypoints.map((w) => [w.tS, w.x, w.y]), [[1, 4, 0], [2, 8, 0], [3, 12, 0]]);
    const still = await cv.infer({ views: {}, instruction: 'go' });
    assert.ok(still.waypoints.every((w) => w.x === 0), 'no odometry: no speed to extrapolate');
  });

  it('budget shares become token budgets of the model', () => {
    assert.deepEqual(resolveShareBudgets(['policy=none,autoprune', 'budget=33%,22%,11%'], 147), ['policy=none,autoprune', 'budget=49,32,16']);
    assert.deepEqual(resolveShareBudgets(['budget=24,tokens:8'], 147), ['budget=24,tokens:8']);
    assert.throws(() => resolveShareBudgets(['budget=0%'], 147), code(ErrorCodes.ARGS));
    assert.throws(() => resolveShareBudgets(['budget=150%'], 147), code(ErrorCodes.ARGS));
  });

  it('drives.json: missing, empty and malformed lists are coded errors', async () => {
    await assert.rejects(readDrives(path.join(tmp, 'nowhere')), code(ErrorCodes.IO));
    const bad = path.join(tmp, 'bad');
    for (const [text, c] of [['{"drives": []}', ErrorCodes.INPUT], ['{"drives": [{"seed": 1}]}', ErrorCodes.INPUT], ['not json', ErrorCodes.IO]] as const) {
      rmSync(bad, { recursive: true, force: true });
      (await import('node:fs')).mkdirSync(bad);
      writeFileSync(path.join(bad, 'drives.json'), text);
      await assert.rejects(readDrives(bad), code(c), text);
    }
    const ok = await readDrives(tmp);
    assert.equal(ok[0]?.dir, path.join(tmp, 'test-900000'));
  });

  it('pools frames over drives: the baseline row, skill retained 100 % for none, per kind and complexity', async () => {
    const drives = await readDrives(tmp);
    const config = loadParamsFile(CONFIG);
    const r = await evaluateDrives({ drives, config, configPath: CONFIG, engine: fakeModel(), modelPath: 'fake', visualTokens: 147, settings: [{ policy: 'none' }, { policy: 'autoprune', budget: { kind: 'tokens', value: 49 } }], outDir: path.join(tmp, 'out'), command: 'test' });
    assert.deepEqual(r.rows.map((x) => x.label), ['constant velocity', 'none', 'autoprune tokens:49']);
    const [cv, none, auto] = r.rows as [typeof r.rows[0], typeof r.rows[0], typeof r.rows[0]];
    assert.equal(none.all.n, r.drives[0]!.frames + r.drives[1]!.frames, 'every scored frame of both drives');
    assert.equal(none.all.skillRetained, null, 'the fake is worse than constant velocity: no gain to retain');
    assert.ok(none.all.l2At3sM! > cv.all.l2At3sM!, 'overshooting by 10 % is worse than constant velocity');
    assert.ok(Math.abs(auto.all.relFlops - 49 / 147) < 1e-9);
    assert.equal(auto.all.adeRatio, 1, 'the fake plans the same at any budget');
    assert.deepEqual(Object.keys(none.byKind), ['change_right', 'stop_behind']);
    assert.equal(none.byComplexity.medium?.n, none.all.n);
    // pooled = frame-weighted mean of the per-kind figures
    const k = Object.values(none.byKind);
    const pooled = k.reduce((a, p) => a + p.n * p.adeM!, 0) / k.reduce((a, p) => a + p.n, 0);
    assert.ok(Math.abs(pooled - none.all.adeM!) < 1e-9);
    const md = evaluationMarkdown(r);
    assert.match(md, /\| constant velocity \|/);
    assert.match(md, /## Instruction kind: stop_behind/);
  });

  it('times every setting warm and repeated (medians, speed-up over none) and keeps MI_1 and k per complexity bucket', async () => {
    const drives = await readDrives(tmp);
    const config = loadParamsFile(CONFIG);
    const calls = new Map<string, number>();
    const r = await evaluateDrives({ drives, config, configPath: CONFIG, engine: fakeModel(calls, 0.02), modelPath: 'fake', visualTokens: 147, settings: [{ policy: 'none' }, { policy: 'autoprune', budget: { kind: 'tokens', value: 16 } }], outDir: path.join(tmp, 'timed'), command: 'test', timing: { every: 5, repeats: 2 } });
    const [cv, none, auto] = r.rows as [typeof r.rows[0], typeof r.rows[0], typeof r.rows[0]];
    const frames = r.drives[0]!.frames + r.drives[1]!.frames;
    // every 5th frame of each setting (counted over the drives) is run twice more
    const timed = Math.ceil(frames / 5);
    assert.equal(calls.get('none'), frames + 2 * timed);
    assert.equal(none.timing?.frames, timed);
    assert.equal(cv.timing, null);
    assert.equal(none.timing?.speedup, 1);
    assert.ok(auto.timing!.wallMsMedian! < none.timing!.wallMsMedian!, 'fewer tokens, less spinning');
    assert.ok(auto.timing!.speedup! > 1.5, String(auto.timing!.speedup));
    assert.ok(none.timing!.cpuMsMedian! > 0);
    assert.deepEqual(r.timing, { every: 5, repeats: 2 });
    assert.deepEqual(Object.keys(auto.complexitySignal ?? {}), ['medium']);
    assert.equal(auto.complexitySignal?.medium?.n, frames);
    assert.equal(auto.complexitySignal?.medium?.kMax, 0.01);
    assert.equal(none.complexitySignal, undefined);
    const md = evaluationMarkdown(r);
    assert.match(md, /\| setting \| kept tokens \| rel\. prefill FLOPs \| CPU ms \/ frame \| wall ms \/ frame \| speed-up \|/);
    assert.match(md, /## AutoPrune's complexity signal/);
    const files = await writeEvaluation(path.join(tmp, 'timed'), r);
    assert.match(readFileSync(files.signalChart!, 'utf8'), /^<svg/);
  });
});
