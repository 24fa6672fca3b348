// The prune options besides policy and budget (recycle, reindexPositions, scoreRows, parity,
// x0/k0/gamma, fastvLayer, pdropLayers) reach the engine on every path: the Engine API, infer, replay,
// evaluate and the node's parameters. The engine echoes what its prefill ran with
// (prune.options, parity resolved), so each path is checked against the engine itself.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { main } from '../../src/cli/main.js';
import type { NativeAddon, NativePruneStats } from '../../src/engine/addon-types.js';
import { depthScaledX0 } from '../../src/engine/calibration.js';
import { Engine, parseBudget } from '../../src/engine/engine.js';
import { PRUNE_OPTION_DEFAULTS } from '../../src/engine/policies.js';
import type { EvaluationReport } from '../../src/replay/evaluate.js';
import type { ReplayReport } from '../../src/replay/report-types.js';
import { makeSampleDrive } from '../../src/sample/drive.js';
import { addonPath, requireBuilt, root, syntheticFrame, testModels } from './helpers.js';

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

type Options = NonNullable<NativePruneStats['options']>;
const defaults: Options = { ...PRUNE_OPTION_DEFAULTS };
/** Flags that change every option from its default, and what the engine must then report. */
const FLAGS = ['--recycle', '--reindex-positions', '--score-rows', 'tail', '--x0', '1.5', '--k0', '2', '--gamma', '0.25', '--fastv-layer', '3', '--pdrop-layers', '0,1'];
const FLAGGED: Options = { ...defaults, recycle: true, reindexPositions: true, scoreRows: 'tail', x0: 1.5, k0: 2, gamma: 0.25, fastvLayer: 3, pdropLayers: [0, 1] };
const PARITY: Options = { ...defaults, parity: true, recycle: true, reindexPositions: true, scoreRows: 'tail' };
/**
 * What a request without x0 runs with on a model without calibration.json: the reference's
 * values, x0 (14.9 of 32 layers) scaled to the tiny model's depth (docs/autoprune.md, "Calibration").
 */
const REFERENCE_X0 = depthScaledX0(3);
const REFERENCE: Options = { ...defaults, x0: REFERENCE_X0 };

describe('prune options reach the engine on every path (addon, tiny model)', function () {
  this.timeout(180_000);
  const tiny = path.join(testModels, 'tiny');
  const config = path.join(root, 'configs', 'sample-drive.yaml');
  let tmp: string;
  let drives: string;

  before(async () => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'prune-options-'));
    drives = path.join(tmp, 'drives');
    mkdirSync(drives);
    await makeSampleDrive(path.join(drives, 'a'), { durationS: 2 });
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("the engine's defaults are PRUNE_OPTION_DEFAULTS: positions kept, no recycling, instruction rows, no parity", () => {
    const addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
    const { padMask, ...rest } = addon.pruneDefaults;
    assert.equal(padMask, true);
    assert.deepEqual(rest, defaults);
  });

  it('Engine API: defaults, each option and parity as the prefill reports them; recycling merges, scoring rows change MI', async () => {
    const e = await Engine.load(tiny, { backend: 'cpu' });
    try {
      const frame = (s: number) => ({ data: syntheticFrame(48, 36, s), width: 48, height: 36, encoding: 'rgb8' as const });
      const views = { front: frame(1), front_left: frame(2), front_right: frame(3) };
      const run = async (extra: object) => (await e.infer({ views, instruction: 'keep lane', prune: { policy: 'autoprune', budget: parseBudget('tokens:12'), ...extra } })).prune;
      const def = await run({});
      assert.deepEqual(def.options, REFERENCE);
      assert.equal((await run({ x0: 14.9 })).options?.x0, 14.9, 'an x0 given is the caller\'s');
      assert.ok(def.merged.every((m) => m === 0));
      const flagged = await run({ recycle: true, reindexPositions: true, scoreRows: 'tail', x0: 1.5, k0: 2, gamma: 0.25, fastvLayer: 3, pdropLayers: [0, 1] });
      assert.deepEqual(flagged.options, FLAGGED);
      assert.ok(flagged.merged.some((m) => m > 0));
      assert.notEqual(flagged.mi1, def.mi1);
      assert.ok(Math.abs(flagged.k - Math.max(2 - 0.25 * flagged.mi1, 0)) < 1e-9);
      const parity = await run({ parity: true, recycle: false, scoreRows: 'last' });
      assert.deepEqual(parity.options, { ...PARITY, x0: REFERENCE_X0 });
      const fastv = (await e.infer({ views, instruction: 'keep lane', prune: { policy: 'fastv', budget: parseBudget('tokens:30'), parity: true } })).prune;
      assert.equal(fastv.options?.reindexPositions, false, 'FastV keeps its positions under parity');
      await assert.rejects(run({ scoreRows: 'rows' }), (err: Error & { code?: string }) => err.code === 'VLA_E_INPUT' && /scoreRows/.test(err.message));
    } finally {
      await e.dispose();
    }
  });

  it("PDrop's stage layers: explicit ones move its drops; bad ones are coded errors (Engine API, infer, schedule)", async () => {
    const e = await Engine.load(tiny, { backend: 'cpu' });
    try {
      const frame = (s: number) => ({ data: syntheticFrame(48, 36, s), width: 48, height: 36, encoding: 'rgb8' as const });
      const views = { front: frame(1), front_left: frame(2), front_right: frame(3) };
      // 48 visual tokens, 3 layers: stages may follow layers 0 and 1
      const run = async (pdropLayers?: number[]) => (await e.infer({ views, instruction: 'keep lane', prune: { policy: 'pdrop', budget: parseBudget('tokens:40'), ...(pdropLayers ? { pdropLayers } : {}) } })).prune;
      const def = await run();
      assert.deepEqual(def.options?.pdropLayers, []);
      const one = await run([1]);
      assert.deepEqual(one.options?.pdropLayers, [1]);
      // kept[l]: the visual tokens after layer l; one stage pruning after layer 1
      assert.equal(one.kept[0], 48);
      assert.ok(one.kept[1]! < 48 && one.kept[2] === one.kept[1], JSON.stringify(one.kept));
      const two = await run([0, 1]);
      assert.ok(two.kept[0]! < 48 && two.kept[1]! < two.kept[0]!, JSON.stringify(two.kept));
      assert.notDeepEqual(two.kept, one.kept);
      assert.ok(one.avgTokens <= 40.5 && two.avgTokens <= 40.5);
      const bad = async (pdropLayers: unknown, re: RegExp) =>
        assert.rejects(run(pdropLayers as number[]), (err: Error & { code?: string }) => err.code === 'VLA_E_INPUT' && re.test(err.message), JSON.stringify(pdropLayers));
      await bad([1, 1], /strictly increasing/);
      await bad([1, 0], /strictly increasing/);
      await bad([2], /in 0\.\.1 .*not clamped/);
      await bad([0.5], /pdropLayers\[0\] must be an integer/);
      await bad(['1'], /pdropLayers\[0\] must be an integer/);
      await bad([-1], /pdropLayers\[0\] must be an integer/);
      await bad([0, 1, 2, 3, 4, 5, 6, 7, 8], /at most 8/);
      await bad('0,1', /pdropLayers must be an array/);
      // checked whatever the budget: one that keeps every token too
      await assert.rejects(e.infer({ views, instruction: 'keep lane', prune: { policy: 'pdrop', budget: parseBudget('tokens:48'), pdropLayers: [5] } }), (err: Error & { code?: string }) => err.code === 'VLA_E_INPUT');
    } finally {
      await e.dispose();
    }
    const base = ['infer', '--model', tiny, '--image', `front=${path.join(root, 'assets', 'sample', 'front.jpg')}`, '--instruction', 'keep lane', '--json', '--warmup', '0', '--policy', 'pdrop', '--budget', 'tokens:12'];
    const ok = await cli(...base, '--pdrop-layers', '0, 1');
    assert.equal(ok.code, 0, ok.err);
    const p = JSON.parse(ok.out).prune;
    assert.deepEqual(p.options.pdropLayers, [0, 1]);
    assert.ok(p.kept[0] < 16, JSON.stringify(p.kept));
    for (const v of ['', ' ', '1,1', '2,1', '1,x', '1.5', '0,,1', '=-1', '0,1,2,3,4,5,6,7,8']) {
      const r = await cli(...base, v.startsWith('=') ? `--pdrop-layers${v}` : '--pdrop-layers', ...(v.startsWith('=') ? [] : [v]));
      assert.equal(r.code, 2, `'${v}': ${r.err}`);
      assert.match(r.err, /^VLA_E_ARGS: --pdrop-layers must be/, v);
    }
    const deep = await cli(...base, '--pdrop-layers', '1,2');
    assert.equal(deep.code, 1, deep.err);
    assert.match(deep.err, /^VLA_E_INPUT: .*pdrop_layers \[1,2\] for a 3-layer model/);
    const s = await cli('schedule', '--policy', 'pdrop', '--budget', 'tokens:128', '--pdrop-layers', '3,10');
    assert.equal(s.code, 0, s.err);
    const kept = JSON.parse(s.out).kept as number[];
    assert.deepEqual(kept.flatMap((k, l) => (k < (kept[l - 1] ?? 576) ? [l] : [])), [3, 10]);
    const s32 = await cli('schedule', '--policy', 'pdrop', '--budget', 'tokens:128', '--pdrop-layers', '3,31');
    assert.equal(s32.code, 1);
    assert.match(s32.err, /^VLA_E_INPUT: pdrop_layers \[3,31\] for a 32-layer model: each stage layer must be in 0\.\.30/);
  });

  it('infer: the flags reach the engine; --parity; options without a policy are refused', async () => {
    const base = ['infer', '--model', tiny, '--image', `front=${path.join(root, 'assets', 'sample', 'front.jpg')}`, '--instruction', 'keep lane', '--json', '--warmup', '0', '--budget', 'tokens:6'];
    const d = await cli(...base);
    assert.equal(d.code, 0, d.err);
    assert.deepEqual(JSON.parse(d.out).prune.options, REFERENCE);
    const f = await cli(...base, ...FLAGS);
    assert.equal(f.code, 0, f.err);
    assert.deepEqual(JSON.parse(f.out).prune.options, FLAGGED);
    const p = await cli(...base, '--parity');
    assert.equal(p.code, 0, p.err);
    assert.deepEqual(JSON.parse(p.out).prune.options, { ...PARITY, x0: REFERENCE_X0 });
    const bad = await cli('infer', '--model', tiny, '--image', 'front=x.jpg', '--instruction', 'x', '--recycle');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /pruning options \(recycle\) need a pruning policy/);
    const rows = await cli(...base, '--score-rows', 'all');
    assert.equal(rows.code, 2);
  });

  it("replay: the config's options, and flags over them, in the report as the engine ran them", async () => {
    const out1 = path.join(tmp, 'replay-config');
    const r1 = await cli('replay', path.join(drives, 'a'), '--config', config, '--model', tiny, '--out', out1, '--budget', 'tokens:12', '--no-progress', '--no-bag', '--no-trace');
    assert.equal(r1.code, 0, r1.err);
    const rep1 = JSON.parse(readFileSync(path.join(out1, 'report.json'), 'utf8')) as ReplayReport;
    // sample-drive.yaml leaves the tuned options unset and the tiny model has no calibration: the reference's
    assert.deepEqual(rep1.settings[0]?.pruneOptions, REFERENCE);
    assert.deepEqual(rep1.settings[0]?.calibration, { source: 'reference', path: null, budgetShare: 12 / 48, storedShare: null, applied: { x0: REFERENCE_X0, k0: 0.4, gamma: 0.2, scoreRows: 'instruction' }, reason: 'missing' });
    const out2 = path.join(tmp, 'replay-flags');
    const r2 = await cli('replay', path.join(drives, 'a'), '--config', config, '--model', tiny, '--out', out2, '--sweep', 'policy=none,autoprune', 'budget=12', ...FLAGS, '--no-progress', '--no-bag', '--no-trace');
    assert.equal(r2.code, 0, r2.err);
    const rep2 = JSON.parse(readFileSync(path.join(out2, 'report.json'), 'utf8')) as ReplayReport;
    assert.equal(rep2.settings[0]?.pruneOptions, null);
    assert.deepEqual(rep2.settings[1]?.pruneOptions, FLAGGED);
  });

  it('evaluate: flags reach every pruned row and the report records them', async () => {
    const out = path.join(tmp, 'evaluate');
    const r = await cli('evaluate', drives, '--config', config, '--model', tiny, '--out', out, '--sweep', 'policy=none,autoprune', 'budget=12', '--parity', '--json');
    assert.equal(r.code, 0, r.err);
    const rep = JSON.parse(r.out) as EvaluationReport;
    assert.deepEqual(rep.rows.find((x) => x.policy === 'autoprune')?.pruneOptions, { ...PARITY, x0: REFERENCE_X0 });
    assert.equal(rep.pruneOptions?.parity, true);
    assert.match(rep.command, / --parity$/);
  });

  it('schedule: --model takes the depth and visual-token count; a budget of every token keeps every token', async () => {
    const m = await cli('schedule', '--budget', 'tokens:49', '--model', path.join(root, 'assets', 'models', 'drive'));
    assert.equal(m.code, 0, m.err);
    const j = JSON.parse(m.out);
    assert.equal(j.visualTokens, 147);
    assert.equal(j.layers, 6);
    assert.ok(Math.abs(j.avgTokens - 49) <= 0.5, String(j.avgTokens));
    const all = JSON.parse((await cli('schedule', '--budget', 'tokens:576', '--visual-tokens', '576')).out);
    assert.equal(all.avgTokens, 576);
    assert.equal(all.prunes, false);
    const full = JSON.parse((await cli('schedule', '--budget', 'tokens:147', '--model', path.join(root, 'assets', 'models', 'drive'))).out);
    assert.equal(full.avgTokens, 147);
  });
});
