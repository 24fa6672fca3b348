// The bundled trained models (assets/models/drive-deep, the default, and assets/models/drive, the
// small fixture): the engine against the PyTorch training module (tools/train/vla_model.py) on
// held-out inputs. The committed goldens are always checked; where PyTorch is installed the module
// also recomputes them live, so a change on either side shows.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { egoSpeedOf } from '../../src/model/prompt.js';
import { loadAddon } from '../../src/engine/addon.js';
import type { NativeEngine, NativeResult } from '../../src/engine/addon-types.js';
import { addonPath, root } from './helpers.js';

/** Each bundled model and its goldens (test/fixtures/golden/<name>-golden.json). */
const MODELS = ['drive-deep', 'drive'];
/** The issue's bar for the engine against PyTorch (fp32 compute on fp16 weights). */
const WAYPOINT_TOL_M = 1e-3;
const HIDDEN_TOL = 1e-3;

interface Case {
  name: string;
  kind: string;
  instruction: string;
  input_ids: number[];
  views: Array<{ width: number; height: number; encoding: 'rgb8'; data_b64: string }>;
  waypoints: number[];
  hidden: number[];
  ground_truth: number[][];
}
interface Golden {
  generator: { command: string; safetensors_sha256: string };
  cases: Case[];
}

const maxAbs = (a: ArrayLike<number>, b: number[]) => {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    const e = Math.abs(a[i]! - b[i]!);
    if (!(e <= m)) m = Number.isNaN(e) ? Infinity : e;
  }
  return m;
};

/** /usr/bin/python3 with torch and Pillow, or why not. */
function pytorch(): { ok: true } | { ok: false; why: string } {
  const py = '/usr/bin/python3';
  if (!existsSync(py)) return { ok: false, why: `${py} not found` };
  const r = spawnSync(py, ['-c', 'import torch, PIL'], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: `PyTorch not installed (${(r.stderr || '').trim().split('\n').pop()}); apt-get install python3-torch python3-pil` };
  return { ok: true };
}

for (const name of MODELS) describe(`the bundled driving model ${name} against PyTorch (addon, cpu)`, function () {
  this.timeout(120_000);
  const MODEL = path.join(root, 'assets', 'models', name);
  const GOLDEN = path.join(root, 'test', 'fixtures', 'golden', `${name}-golden.json`);
  const REGEN = `/usr/bin/python3 tools/train/golden.py --model assets/models/${name} --dataset build/dataset --out test/fixtures/golden/${name}-golden.json`;
  const golden: Golden = existsSync(GOLDEN) ? JSON.parse(readFileSync(GOLDEN, 'utf8')) : { generator: { command: REGEN, safetensors_sha256: '' }, cases: [] };
  if (!golden.cases.length) it('has golden outputs', () => assert.fail(`${GOLDEN} missing: generate it with \`${REGEN}\``));
  let engine: NativeEngine;
  const results = new Map<string, NativeResult>();
  const report: string[] = [];

  before(async () => {
    if (!existsSync(addonPath)) throw new Error(`addon missing at ${addonPath}: run \`npm run build\``);
    engine = await loadAddon().load(MODEL, { backend: 'cpu' });
  });
  after(() => {
    engine?.dispose();
    if (report.length) process.stdout.write(`\n  ${name} vs PyTorch, max abs errors (tolerance ${WAYPOINT_TOL_M} m):\n${report.map((l) => `    ${l}\n`).join('')}\n`);
  });

  it('the shipped weights are the ones the goldens were made from', () => {
    const have = createHash('sha256').update(readFileSync(path.join(MODEL, 'model.safetensors'))).digest('hex');
    assert.equal(have, golden.generator.safetensors_sha256, `assets/models/${name} changed: regenerate the goldens with \`${REGEN}\``);
  });

  it('covers every instruction kind of the dataset with a held-out case', () => {
    const kinds = new Set(golden.cases.map((c) => c.kind));
    for (const k of ['keep_lane', 'change_left', 'change_right', 'turn_left', 'turn_right', 'stop_behind']) assert.ok(kinds.has(k), `no golden case of kind ${k}`);
  });

  for (const c of golden.cases) {
    it(`${c.name}: waypoints within ${WAYPOINT_TOL_M} m of PyTorch`, async () => {
      const r = await engine.infer({
        inputIds: Int32Array.from(c.input_ids),
        views: c.views.map((v) => ({ data: new Uint8Array(Buffer.from(v.data_b64, 'base64')), width: v.width, height: v.height, step: v.width * 3, encoding: v.encoding })),
        head: 'waypoints',
        returnHidden: true,
      });
      results.set(c.name, r);
      const ew = maxAbs(r.waypoints, c.waypoints);
      const eh = maxAbs(r.hidden!, c.hidden);
      report.push(`${c.name}: waypoints ${ew.toExponential(2)} m, action hidden states ${eh.toExponential(2)}`);
      assert.ok(ew <= WAYPOINT_TOL_M, `waypoints max abs error ${ew} m`);
      assert.ok(eh <= HIDDEN_TOL, `hidden max abs error ${eh}`);
    });
  }

  it('drives: on the held-out cases its plans beat constant velocity at 3 s', () => {
    let model = 0, cv = 0;
    for (const c of golden.cases) {
      const r = results.get(c.name);
      assert.ok(r, `${c.name} did not run`);
      const gt = c.ground_truth;
      const last = gt[gt.length - 1]!;
      const n = gt.length;
      model += Math.hypot(r.waypoints[2 * n - 2]! - last[0]!, r.waypoints[2 * n - 1]! - last[1]!);
      // constant velocity: the speed is in the prompt; straight ahead for 3 s
      const v = egoSpeedOf(c.instruction);
      assert.ok(v !== undefined, `${c.name}: no ego speed in '${c.instruction}'`);
      cv += Math.hypot(v * 0.5 * n - last[0]!, last[1]!);
    }
    assert.ok(model < cv, `mean L2@3s: model ${(model / golden.cases.length).toFixed(2)} m, constant velocity ${(cv / golden.cases.length).toFixed(2)} m`);
  });

  it('PyTorch recomputes the committed goldens (live; skipped without PyTorch)', function () {
    const p = pytorch();
    if (!p.ok) {
      process.stdout.write(`      skipped: ${p.why}\n`);
      this.skip();
    }
    const r = spawnSync('/usr/bin/python3', [path.join(root, 'tools', 'train', 'golden.py'), '--model', MODEL, '--check', GOLDEN], { encoding: 'utf8', timeout: 100_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { cases: number; max_abs_diff: { waypoints: number; hidden: number } };
    assert.equal(out.cases, golden.cases.length);
    assert.ok(out.max_abs_diff.waypoints <= 1e-5 && out.max_abs_diff.hidden <= 1e-5, `PyTorch now differs from the goldens: ${JSON.stringify(out.max_abs_diff)}`);
  });
});
