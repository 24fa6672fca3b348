// calibrate on a tiny subset: one short validation drive, the tiny model; test-split drives refused.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { main } from '../../src/cli/main.js';
import { parseShares } from '../../src/cli/calibrate.js';
import { depthScaledX0, type CalibrationFile } from '../../src/replay/calibrate.js';
import { makeScenarioDrive } from '../../src/sample/drive.js';
import { sampleScenario } from '../../src/sample/scenario.js';
import { requireBuilt, root, testModels } from './helpers.js';

const sample = (cam: string) => path.join(root, 'assets', 'sample', `${cam}.jpg`);

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('calibrate (addon, tiny model, one validation drive)', function () {
  this.timeout(180_000);
  let tmp: string;
  let model: string;
  const config = path.join(root, 'configs', 'sample-drive.yaml');

  before(async () => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'calibrate-'));
    model = path.join(tmp, 'tiny');
    cpSync(path.join(testModels, 'tiny'), model, { recursive: true });
    const val = path.join(tmp, 'val');
    await makeScenarioDrive(path.join(val, 'val-500000'), sampleScenario(500_000), { odomTailS: 3 });
    writeFileSync(path.join(val, 'drives.json'), JSON.stringify({ split: 'val', drives: [{ seed: 500_000, bag: 'val-500000', kind: sampleScenario(500_000).kind, complexity: sampleScenario(500_000).complexity }] }));
    const test = path.join(tmp, 'test');
    await makeScenarioDrive(path.join(test, 'test-900000'), sampleScenario(900_000), { odomTailS: 3 });
    writeFileSync(path.join(test, 'drives.json'), JSON.stringify({ drives: [{ seed: 900_000, bag: 'test-900000' }] }));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('measures MI_1, normalises it so k varies, searches every policy with the same search budget, and stores it with the model', async () => {
    const r = await cli('calibrate', '--model', model, '--drives', path.join(tmp, 'val'), '--budgets', '33%,11%', '--config', config, '--search-budget', '2', '--json');
    assert.equal(r.code, 0, r.err);
    const file = path.join(model, 'calibration.json');
    assert.ok(existsSync(file));
    const c = JSON.parse(readFileSync(file, 'utf8')) as CalibrationFile;
    assert.deepEqual(JSON.parse(r.out), c);
    assert.equal(c.format, 'autoprune-ros-calibration');
    assert.equal(c.version, 2);
    assert.equal(c.searchBudget, 2);
    assert.match(c.model.weightsSha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(c.drives.map((d) => d.seed), [500_000]);
    assert.ok(c.frames > 10);
    assert.deepEqual(c.budgets.map((b) => b.tokens), [16, 5]);
    for (const b of c.budgets) {
      assert.equal(b.mi1.n, c.frames);
      assert.ok(b.mi1.p10 <= b.mi1.median && b.mi1.median <= b.mi1.p90);
      // k = max(k0' - gamma' MI_1, 0) is the reference's 0.4 - 0.2 z at the median (z = 0)
      assert.ok(Math.abs(b.engine.k0 - b.engine.gamma * b.mi1.median - 0.4) < 1e-9);
      assert.equal(b.engine.x0, depthScaledX0(c.model.layers));
      assert.ok(b.validation.kRange && b.validation.kRange[1] > b.validation.kRange[0], 'the slope differs between frames');
      assert.equal(typeof b.validation.adaptiveBeatsFlat === 'boolean' || b.validation.adaptiveBeatsFlat === null, true);
      assert.deepEqual(Object.keys(b.policies).sort(), ['autoprune', 'fastv', 'pdrop', 'sparsevlm-fixed']);
      for (const [policy, p] of Object.entries(b.policies)) {
        const ran = p.candidates.filter((x) => !x.skipped);
        // the same number of evaluated settings for every policy (each exposes at least two)
        assert.equal(ran.length, 2, policy);
        for (const x of ran) assert.ok(Number.isFinite(x.l2At3sM), policy);
        // the chosen setting is the best candidate tried (lowest L2@3s: the highest skill on these frames)
        const best = Math.min(...ran.map((x) => x.l2At3sM as number));
        assert.deepEqual(p.chosen, ran.find((x) => x.l2At3sM === best)?.options, policy);
      }
      // autoprune's two first candidates: the adaptive and the flat shape at the reference x0
      const [adaptive, flat] = b.policies.autoprune!.candidates;
      assert.deepEqual(flat!.options, { x0: b.engine.x0, k0: 0, gamma: 0, scoreRows: 'instruction' });
      assert.deepEqual(adaptive!.options, { ...b.engine, scoreRows: 'instruction' });
      assert.equal(b.validation.adaptiveBeatsFlat, (adaptive!.l2At3sM as number) < (flat!.l2At3sM as number));
    }
    assert.ok(c.notCovered.length > 0);
  });

  it('is used by default at inference: nearest budget, explicit flags win, --no-calibration, and results say so', async () => {
    const c = JSON.parse(readFileSync(path.join(model, 'calibration.json'), 'utf8')) as CalibrationFile;
    const infer = async (...extra: string[]) => {
      const r = await cli('infer', '--model', model, '--image', `front=${sample('front')}`, '--instruction', 'keep lane', '--json', '--warmup', '0', ...extra);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out) as { prune: { options: Record<string, unknown> }; calibration: { source: string; path: string | null; storedShare: number | null; budgetShare: number | null; reason?: string } };
    };
    // one view of the tiny model is 16 visual tokens: 2 tokens is 12.5 %, nearest the 11 % budget
    const near = c.budgets.find((b) => b.share === 0.11)!;
    const chosen = near.policies.autoprune!.chosen;
    const r = await infer('--budget', 'tokens:2');
    assert.equal(r.calibration.source, 'file');
    assert.equal(r.calibration.path, path.join(model, 'calibration.json'));
    assert.equal(r.calibration.storedShare, 0.11);
    for (const k of ['x0', 'k0', 'gamma', 'scoreRows'] as const) assert.equal(r.prune.options[k], chosen[k], k);
    // FastV takes its own stored K
    const f = await infer('--policy', 'fastv', '--budget', 'tokens:2');
    assert.equal(f.prune.options.fastvLayer, near.policies.fastv!.chosen.fastvLayer);
    // an explicit flag wins over the file, the rest still comes from it
    const x = await infer('--budget', 'tokens:2', '--x0', '0.7');
    assert.equal(x.prune.options.x0, 0.7);
    assert.equal(x.prune.options.k0, chosen.k0);
    // --no-calibration: the reference's values, x0 scaled to the depth
    const off = await infer('--budget', 'tokens:2', '--no-calibration');
    assert.equal(off.calibration.source, 'reference');
    assert.equal(off.calibration.reason, 'disabled');
    assert.equal(off.prune.options.x0, depthScaledX0(c.model.layers));
    assert.equal(off.prune.options.k0, 0.4);
    // evaluate's rows and replay's report say where the options came from
    const out = path.join(tmp, 'eval');
    const e = await cli('evaluate', path.join(tmp, 'val'), '--model', model, '--config', config, '--sweep', 'policy=autoprune', 'budget=16', '--out', out, '--timing-every', '1000', '--json');
    assert.equal(e.code, 0, e.err);
    const row = (JSON.parse(e.out) as { rows: Array<{ label: string; calibration?: { source: string; storedShare: number } }> }).rows.find((x) => x.label === 'autoprune tokens:16');
    assert.equal(row?.calibration?.source, 'file');
    assert.equal(row?.calibration?.storedShare, 0.33);
  });

  it('refuses test-split drives and bad budgets', async () => {
    const t = await cli('calibrate', '--model', model, '--drives', path.join(tmp, 'test'), '--config', config);
    assert.equal(t.code, 2);
    assert.match(t.err, /^VLA_E_ARGS: calibrate tunes on validation drives only; 1 of these are test-split drives \(test-900000\)/);
    assert.throws(() => parseShares('33%,0%'), (e: Error & { code?: string }) => e.code === 'VLA_E_ARGS');
    assert.throws(() => parseShares('49'), (e: Error & { code?: string }) => e.code === 'VLA_E_ARGS');
    assert.deepEqual(parseShares('33%,22%,11%'), [0.33, 0.22, 0.11]);
  });
});
