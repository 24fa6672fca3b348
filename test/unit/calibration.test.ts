// The model's calibration at inference (src/engine/calibration.ts) and calibrate's search (pure parts).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { depthScaledX0, loadCalibration, nearestBudget, resolvePrune, type LoadedCalibration } from '../../src/engine/calibration.js';
import { loadParamsFile, overridePruneOptions, valuesFromRos } from '../../src/pipeline/params.js';
import { finishSearch, pickBest, planSearch, scaleLayers, searchCandidates, type SearchSetting } from '../../src/replay/calibrate.js';
import { ErrorCodes } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

/** A logger that keeps what it is given. */
function recorder(): { log: Logger; lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> } {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => lines.push({ level, fields, msg });
  return { log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as Logger, lines };
}

const WEIGHTS = Buffer.from('not really safetensors, but bytes to hash');
const SHA = createHash('sha256').update(WEIGHTS).digest('hex');

function v2Budget(share: number, tokens: number, x0: number, fastvLayer: number) {
  return {
    share,
    tokens,
    engine: { x0: 2.8, k0: 9, gamma: 3 },
    policies: {
      autoprune: { chosen: { x0, k0: 0, gamma: 0, scoreRows: 'tail' }, skill: 0.9, candidates: [] },
      fastv: { chosen: { fastvLayer, reindexPositions: true }, skill: 0.8, candidates: [] },
      pdrop: { chosen: { pdropLayers: [0, fastvLayer], reindexPositions: false }, skill: 0.7, candidates: [] },
    },
  };
}

describe('calibration at inference', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'calib-'));
    writeFileSync(path.join(dir, 'model.safetensors'), WEIGHTS);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const write = (doc: unknown) => writeFileSync(path.join(dir, 'calibration.json'), JSON.stringify(doc));
  const v2 = (sha = SHA) => ({ format: 'autoprune-ros-calibration', version: 2, model: { weightsSha256: sha }, budgets: [v2Budget(0.33, 49, 1.5, 3), v2Budget(0.22, 32, 2.5, 2), v2Budget(0.11, 16, 4.2, 1)] });

  it('takes the stored setting of the budget nearest by share of the visual tokens, for the policy that runs', async () => {
    write(v2());
    const { calibration } = await loadCalibration(dir);
    assert.ok(calibration);
    assert.equal(nearestBudget(calibration.budgets, 0.3)?.share, 0.33);
    assert.equal(nearestBudget(calibration.budgets, 0.2)?.share, 0.22);
    assert.equal(nearestBudget(calibration.budgets, 0.01)?.share, 0.11);
    // 20 of 147 visual tokens (13.6 %): the 11 % budget's
    const r = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 20 }, x0: 14.9, k0: 0.4, gamma: 0.2, scoreRows: 'instruction', explicit: [] }, calibration, { layers: 6, share: 20 / 147, reason: '' });
    assert.deepEqual(r.prune, { policy: 'autoprune', budget: { kind: 'tokens', value: 20 }, x0: 4.2, k0: 0, gamma: 0, scoreRows: 'tail' });
    assert.equal(r.use.source, 'file');
    assert.equal(r.use.path, path.join(dir, 'calibration.json'));
    assert.equal(r.use.storedShare, 0.11);
    assert.equal(r.use.budgetShare, 20 / 147);
    // FastV at 33 %: its own stored setting
    const f = resolvePrune({ policy: 'fastv', budget: { kind: 'tokens', value: 48 }, fastvLayer: 2, explicit: [] }, calibration, { layers: 6, share: 48 / 147, reason: '' });
    assert.deepEqual(f.prune, { policy: 'fastv', budget: { kind: 'tokens', value: 48 }, fastvLayer: 3, reindexPositions: true });
    assert.deepEqual(f.use.applied, { fastvLayer: 3, reindexPositions: true });
    // PDrop at 22 %: its stored stage layers, unless the user gave them
    const p = resolvePrune({ policy: 'pdrop', budget: { kind: 'tokens', value: 32 }, pdropLayers: [], explicit: [] }, calibration, { layers: 6, share: 32 / 147, reason: '' });
    assert.deepEqual(p.prune, { policy: 'pdrop', budget: { kind: 'tokens', value: 32 }, pdropLayers: [0, 2], reindexPositions: false });
    assert.deepEqual(p.use.applied, { pdropLayers: [0, 2], reindexPositions: false });
    const pe = resolvePrune({ policy: 'pdrop', budget: { kind: 'tokens', value: 32 }, pdropLayers: [1, 3], explicit: ['pdropLayers'] }, calibration, { layers: 6, share: 32 / 147, reason: '' });
    assert.deepEqual(pe.prune.pdropLayers, [1, 3]);
    assert.deepEqual(pe.use.applied, { reindexPositions: false });
    // without a file: the engine's default stages
    const pr = resolvePrune({ policy: 'pdrop', budget: { kind: 'tokens', value: 32 }, explicit: [] }, null, { layers: 6, share: 32 / 147, reason: 'missing' });
    assert.deepEqual(pr.use.applied, { pdropLayers: [], reindexPositions: false });
    assert.equal(pr.use.source, 'reference');
    // a policy whose search ran nothing stored an empty choice: the reference's values
    const empty: LoadedCalibration = { ...calibration, budgets: [{ share: 0.33, tokens: 49, engine: { x0: 2.8, k0: 9, gamma: 3 }, policies: { fastv: { chosen: {}, skill: null, candidates: [] } } }] };
    const e = resolvePrune({ policy: 'fastv', budget: { kind: 'tokens', value: 48 }, fastvLayer: 2, explicit: [] }, empty, { layers: 6, share: 48 / 147, reason: '' });
    assert.equal(e.use.source, 'reference');
    assert.equal(e.prune.fastvLayer, 2);
    // version 2 without an autoprune search: its `engine` record is not applied
    const a = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 48 }, explicit: [] }, empty, { layers: 6, share: 48 / 147, reason: '' });
    assert.equal(a.use.source, 'reference');
    assert.equal(a.prune.x0, 2.8);
  });

  it('lets explicit options win over the file', async () => {
    write(v2());
    const { calibration } = await loadCalibration(dir);
    const r = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 49 }, x0: 3.3, k0: 0.4, gamma: 0.2, scoreRows: 'instruction', explicit: ['x0', 'scoreRows'] }, calibration, { layers: 6, share: 49 / 147, reason: '' });
    assert.equal(r.prune.x0, 3.3);
    assert.equal(r.prune.scoreRows, 'instruction');
    assert.equal(r.prune.k0, 0);
    assert.deepEqual(r.use.applied, { k0: 0, gamma: 0 });
    // no `explicit`: every option given is the caller's
    const all = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 49 }, x0: 3.3, k0: 0.5, gamma: 0.1, scoreRows: 'last' }, calibration, { layers: 6, share: 49 / 147, reason: '' });
    assert.deepEqual([all.prune.x0, all.prune.k0, all.prune.gamma, all.prune.scoreRows], [3.3, 0.5, 0.1, 'last']);
    assert.equal(all.use.source, 'explicit');
    assert.ok(!('explicit' in all.prune), 'the addon never sees the explicit list');
  });

  it('refuses a calibration of other weights with a coded warning, and falls back to the reference', async () => {
    write(v2('0'.repeat(64)));
    const { log, lines } = recorder();
    const r = await loadCalibration(dir, log);
    assert.equal(r.calibration, null);
    assert.equal(r.reason, 'weights mismatch');
    const w = lines.find((l) => l.level === 'warn');
    assert.equal(w?.fields.code, ErrorCodes.CALIBRATION);
    assert.equal(w?.fields.reason, 'weights mismatch');
    const p = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 49 }, explicit: [] }, r.calibration, { layers: 6, share: 1 / 3, reason: r.reason });
    assert.equal(p.use.source, 'reference');
    assert.equal(p.use.reason, 'weights mismatch');
    assert.equal(p.prune.x0, depthScaledX0(6));
  });

  it('without a file: a structured log line, the reference with x0 scaled to the depth, and a field saying so', async () => {
    const { log, lines } = recorder();
    const r = await loadCalibration(dir, log);
    assert.equal(r.calibration, null);
    assert.equal(r.reason, 'missing');
    assert.deepEqual(lines.map((l) => [l.level, l.fields.source, l.fields.reason]), [['info', 'reference', 'missing']]);
    const p = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 49 }, x0: 14.9, k0: 0.4, gamma: 0.2, scoreRows: 'instruction', explicit: [] }, null, { layers: 6, share: 1 / 3, reason: r.reason });
    assert.deepEqual(p.use, { source: 'reference', path: null, budgetShare: 1 / 3, storedShare: null, applied: { x0: 2.8, k0: 0.4, gamma: 0.2, scoreRows: 'instruction' }, reason: 'missing' });
    assert.equal(p.prune.x0, 2.8);
  });

  it('still reads a version-1 file (AutoPrune only)', async () => {
    write({ format: 'autoprune-ros-calibration', version: 1, model: { weightsSha256: SHA }, budgets: [{ share: 0.33, tokens: 49, engine: { x0: 2.8, k0: 1.7, gamma: 0.3 } }, { share: 0.11, tokens: 16, engine: { x0: 2.8, k0: 2.1, gamma: 0.35 } }] });
    const { calibration } = await loadCalibration(dir);
    assert.equal(calibration?.version, 1);
    const r = resolvePrune({ policy: 'autoprune', budget: { kind: 'tokens', value: 15 }, x0: 14.9, k0: 0.4, gamma: 0.2, explicit: [] }, calibration, { layers: 6, share: 15 / 147, reason: '' });
    assert.deepEqual([r.prune.x0, r.prune.k0, r.prune.gamma, r.use.source, r.use.storedShare], [2.8, 2.1, 0.35, 'file', 0.11]);
    // a policy version 1 did not calibrate: the reference
    const f = resolvePrune({ policy: 'fastv', budget: { kind: 'tokens', value: 49 }, explicit: [] }, calibration as LoadedCalibration, { layers: 6, share: 1 / 3, reason: '' });
    assert.equal(f.use.source, 'reference');
    assert.equal(f.use.reason, 'not calibrated for this policy');
  });

  it('refuses an unreadable file with a coded warning', async () => {
    writeFileSync(path.join(dir, 'calibration.json'), '{"format": "something else"}');
    const { log, lines } = recorder();
    const r = await loadCalibration(dir, log);
    assert.equal(r.calibration, null);
    assert.equal(r.reason, 'unreadable');
    assert.equal(lines[0]?.fields.code, ErrorCodes.CALIBRATION);
  });
});

describe('which prune options are explicit', () => {
  it('a parameter in the file or a CLI flag is explicit; what the file leaves out is not', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'calib-params-'));
    try {
      const file = path.join(dir, 'p.yaml');
      writeFileSync(file, 'autoprune_ros:\n  ros__parameters:\n    model_path: m\n    camera_names: [front]\n    camera_topics: [/front]\n    pruning_policy: autoprune\n    budget_kind: tokens\n    budget_value: 49.0\n    autoprune_k0: 0.7\n');
      const c = loadParamsFile(file);
      assert.deepEqual(c.explicitPruneOptions, ['k0']);
      assert.deepEqual(c.node.prune?.explicit, ['k0']);
      assert.equal(c.engine.calibration, true);
      overridePruneOptions(c, { x0: 2 });
      assert.deepEqual(c.explicitPruneOptions, ['k0', 'x0']);
      assert.deepEqual(c.node.prune?.explicit, ['k0', 'x0']);
      assert.equal(loadParamsFile(file, { use_calibration: false }).engine.calibration, false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a live node a calibrated parameter still at its default counts as unset', () => {
    const v = valuesFromRos([
      { name: 'autoprune_x0', value: 14.9 },
      { name: 'autoprune_k0', value: 0.7 },
      { name: 'fastv_layer', value: 2n },
      { name: 'prune_parity', value: false },
      { name: 'pdrop_layers', value: [] },
    ]);
    assert.deepEqual(v, { autoprune_k0: 0.7, prune_parity: false });
    // an integer array arrives as bigints
    assert.deepEqual(valuesFromRos([{ name: 'pdrop_layers', value: [1n, 3n] }]), { pdrop_layers: [1, 3] });
  });
});

describe("calibrate's search", () => {
  const all = () => true;

  it('gives every policy candidates, AutoPrune alternating adaptive and flat', () => {
    const a = searchCandidates('autoprune', 6, { k0: 1.5, gamma: 0.4 });
    assert.deepEqual(a.slice(0, 4), [
      { x0: 2.8, k0: 1.5, gamma: 0.4, scoreRows: 'instruction' },
      { x0: 2.8, k0: 0, gamma: 0, scoreRows: 'instruction' },
      { x0: 1.5, k0: 1.5, gamma: 0.4, scoreRows: 'instruction' },
      { x0: 1.5, k0: 0, gamma: 0, scoreRows: 'instruction' },
    ]);
    assert.ok(a.some((c) => c.scoreRows === 'tail'));
    assert.deepEqual(searchCandidates('fastv', 6, { k0: 0, gamma: 0 }).slice(0, 5).map((c) => c.fastvLayer), [2, 1, 3, 4, 5]);
    for (const p of ['fastv', 'sparsevlm-fixed'] as const) assert.ok(searchCandidates(p, 6, { k0: 0, gamma: 0 }).length >= 6, p);
    // PDrop: the default stages, then earlier, later and the fallback's sets at the depth, without and with re-indexing
    const sets6 = [[], [0, 1, 2], [1, 3, 4], [0, 1, 3]];
    assert.deepEqual(searchCandidates('pdrop', 6, { k0: 0, gamma: 0 }), [...sets6.map((pdropLayers) => ({ pdropLayers, reindexPositions: false })), ...sets6.map((pdropLayers) => ({ pdropLayers, reindexPositions: true }))]);
    assert.deepEqual(searchCandidates('pdrop', 32, { k0: 0, gamma: 0 }).slice(0, 4).map((c) => c.pdropLayers), [[], [3, 7, 11], [11, 19, 27], [1, 11, 21]]);
    // 3 layers: every set is the default's (stages in 0..1): only the default, off and on
    assert.deepEqual(searchCandidates('pdrop', 3, { k0: 0, gamma: 0 }), [{ pdropLayers: [], reindexPositions: false }, { pdropLayers: [], reindexPositions: true }]);
  });

  it("scales PDrop's stage sets as the engine scales its default, within 0..L-2", () => {
    assert.deepEqual(scaleLayers([7, 15, 23], 32), [7, 15, 23]);
    assert.deepEqual(scaleLayers([7, 15, 23], 6), [1, 2, 4]);
    assert.deepEqual(scaleLayers([1, 11, 21], 6), [0, 1, 3]);
    assert.deepEqual(scaleLayers([7, 15, 23], 3), [0, 1]);
    assert.deepEqual(scaleLayers([11, 19, 27], 2), [0]);
  });

  it('scores the first N feasible candidates, picks the best by L2@3s and keeps every candidate', () => {
    const cands = searchCandidates('fastv', 6, { k0: 0, gamma: 0 });
    // K 4 cannot meet the budget: skipped and not counted against the search budget
    const plan = planSearch('fastv', 16, cands, 4, (s: SearchSetting) => s.options.fastvLayer !== 4);
    assert.deepEqual(plan.run.map((s) => s.options.fastvLayer), [2, 1, 3, 5]);
    assert.deepEqual(plan.tried.map((c) => [c.options.fastvLayer, c.skipped ?? null]), [[2, null], [1, null], [3, null], [4, 'cannot meet the budget'], [5, null]]);
    // a stubbed scorer: K 3 is best
    const l2 = [1.2, 1.4, 0.9, 1.0];
    const r = finishSearch(plan, l2.map((v) => ({ l2At3sM: v, skill: 2 - v })));
    assert.deepEqual(r.chosen, { fastvLayer: 3, reindexPositions: false });
    assert.equal(r.skill, 2 - 0.9);
    assert.equal(r.candidates.length, 5);
    assert.deepEqual(r.candidates.map((c) => c.l2At3sM), [1.2, 1.4, 0.9, null, 1.0]);
    assert.equal(r.note, undefined);
  });

  it('says when a policy exposes fewer settings than the search budget, and picks the first of equals', () => {
    const plan = planSearch('pdrop', 16, searchCandidates('pdrop', 3, { k0: 0, gamma: 0 }), 6, all);
    const r = finishSearch(plan, [{ l2At3sM: 1, skill: 0.5 }, { l2At3sM: 1, skill: 0.5 }]);
    assert.deepEqual(r.chosen, { pdropLayers: [], reindexPositions: false });
    assert.match(r.note ?? '', /^2 of 6 settings/);
    // 6 layers: 8 candidates cut to the search budget, a set that cannot meet the budget skipped
    const p6 = planSearch('pdrop', 16, searchCandidates('pdrop', 6, { k0: 0, gamma: 0 }), 6, (s: SearchSetting) => JSON.stringify(s.options.pdropLayers) !== '[1,3,4]');
    assert.deepEqual(p6.run.map((s) => [s.options.pdropLayers, s.options.reindexPositions]), [[[], false], [[0, 1, 2], false], [[0, 1, 3], false], [[], true], [[0, 1, 2], true], [[0, 1, 3], true]]);
    assert.equal(p6.tried.filter((c) => c.skipped).length, 2);
    assert.equal(pickBest([{ options: {}, skill: null, l2At3sM: null }]), undefined);
  });
});
