import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';

import { main } from '../../src/cli/main.js';
import { Engine, parseBudget } from '../../src/engine/engine.js';
import { loadAddon } from '../../src/engine/addon.js';
import { PRUNE_POLICIES, PRUNING_POLICIES } from '../../src/engine/policies.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import type { NativeAddon } from '../../src/engine/addon-types.js';
import { addonPath, requireBuilt, syntheticFrame, testModels } from './helpers.js';

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('pruning through the TypeScript API and the CLI (addon)', () => {
  before(requireBuilt);

  it('schedule prints the spec worked schedule for T = 64, MI = 0 and relative FLOPs in the band', async () => {
    // under --parity: the reference plans room for recycled tokens
    const r = await cli('schedule', '--layers', '32', '--visual-tokens', '576', '--budget', 'tokens:64', '--mi', '0', '--hidden', '4096', '--ffn', '11008', '--prefix-tokens', '35', '--text-tokens', '40', '--parity');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.deepEqual(j.kept, [160, 126, 125, 125, 125, 124, 123, 122, 119, 117, 113, 107, 100, 90, 79, 67, 55, 43, 33, 25, 18, 13, 9, 7, 5, 4, 3, 3, 2, 2, 2, 2]);
    assert.ok(Math.abs(j.k - 0.4) < 1e-12);
    assert.ok(Math.abs(j.avgTokens - 64) < 1e-9);
    assert.ok(j.relFlops > 0.21 && j.relFlops < 0.26, String(j.relFlops));
    const f = await cli('schedule', '--budget', `flops:${(j.flops / 1e9).toFixed(3)}`, '--mi', '1');
    assert.equal(f.code, 0, f.err);
    const jf = JSON.parse(f.out);
    assert.ok(jf.flops <= j.flops + 1e-3 * 1e9);
    assert.ok(jf.budgetMet);
    const bad = await cli('schedule', '--budget', 'watts:3');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^VLA_E_ARGS: budget must be/);
  });

  it('the addon exports the native registry of policies: the TypeScript list, in order', () => {
    const addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
    assert.deepEqual(addon.policies.map((p) => p.name), [...PRUNE_POLICIES]);
    for (const p of addon.policies) assert.ok(p.description.length > 10, p.name);
  });

  it('schedule plans every policy as the engine does: a budget that allows every token keeps them all', () => {
    const addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
    const all = addon.schedule({ budgetTokens: 576, visualTokens: 576 });
    assert.equal(all.prunes, false);
    assert.equal(all.avgTokens, 576);
    assert.equal(all.relFlops, 1);
    assert.deepEqual(all.kept, Array(32).fill(576));
    const fastv = addon.schedule({ policy: 'fastv', budgetTokens: 64 });
    assert.equal(fastv.policy, 'fastv');
    assert.equal(fastv.parameter, Math.floor((32 * 64 - 576) / 31)); // layer 0 keeps all, then K
    assert.deepEqual(fastv.kept.slice(0, 2), [576, fastv.parameter]);
    for (const policy of PRUNE_POLICIES) {
      const s = addon.schedule({ policy, budgetTokens: 128 });
      assert.equal(s.prunes, policy !== 'none', policy);
      // 'none' keeps every token: over a budget it does not try to meet, as the engine reports it
      assert.equal(s.budgetMet, policy !== 'none', policy);
      if (policy !== 'none') assert.ok(s.avgTokens <= 128.5, `${policy} ${s.avgTokens}`);
    }
    assert.throws(() => addon.schedule({ policy: 'bogus' as never }), (e: Error & { code?: string }) => e.code === 'VLA_E_INPUT');
    assert.throws(() => addon.schedule({ policy: 'fastv', budgetFlops: 0.001 }), (e: Error & { code?: string }) => e.code === 'VLA_E_INPUT' && /cannot be met by policy fastv/.test(e.message));
  });

  it('infer with a policy reports the statistics and stays within the budget', async () => {
    const e = await Engine.load(path.join(testModels, 'tiny'), { backend: 'cpu' });
    try {
      const frame = (s: number) => ({ data: syntheticFrame(48, 36, s), width: 48, height: 36, encoding: 'rgb8' as const });
      const views = { front: frame(1), front_left: frame(2), front_right: frame(3) };
      const none = await e.infer({ views, instruction: 'keep lane' });
      assert.equal(none.prune.policy, 'none');
      assert.deepEqual(none.prune.kept, Array(e.info.textLayers).fill(48));
      for (const policy of PRUNING_POLICIES) {
        const r = await e.infer({ views, instruction: 'keep lane', prune: { policy, budget: parseBudget('tokens:16') } });
        assert.equal(r.prune.policy, policy);
        assert.ok(r.prune.budgetMet, policy);
        assert.ok(r.prune.avgTokens <= 16.5, `${policy} ${r.prune.avgTokens}`);
        assert.ok(r.prune.flops < r.prune.flopsUnpruned);
        assert.equal(r.prune.keptPerView[0]!.length, 3);
        assert.equal(r.waypoints.length, 6);
        // selection stays on the backend: AutoPrune's MI_1 is the only extra read of the prefill
        assert.equal(r.memory.prefillHostReads, none.memory.prefillHostReads + (policy === 'autoprune' ? 1 : 0), policy);
        assert.ok(r.memory.peakActivationBytes > 0 && r.memory.peakActivationBytes <= none.memory.peakActivationBytes * 2, policy);
      }
      await assert.rejects(e.infer({ views, instruction: 'x', prune: { policy: 'fastv' } }), (err: VlaError) => err.code === ErrorCodes.INPUT);
      await assert.rejects(e.infer({ views, instruction: 'x', prune: { policy: 'bogus' as never, budget: { kind: 'tokens', value: 3 } } }), (err: VlaError) => err.code === ErrorCodes.INPUT);
    } finally {
      await e.dispose();
    }
  });

  it('returnKeptIndex reports the visual rows after each layer, consistent with the counts; nothing without it', async () => {
    const engine = await loadAddon().load(path.join(testModels, 'tiny'), { backend: 'cpu' });
    try {
      const info = engine.info();
      const V = 3, K = info.tokensPerView;
      const ids = Int32Array.from([1, 5, 6, ...Array.from({ length: V }, () => [info.imageTokenId, 13]).flat(), 7, 8, 9]);
      const views = [1, 2, 3].map((s) => ({ data: syntheticFrame(28, 16, s), width: 28, height: 16, step: 28 * 3, encoding: 'rgb8' as const }));
      for (const prune of [{ policy: 'autoprune' as const, recycle: true }, { policy: 'cls-prior' as const }, { policy: 'pdrop' as const }]) {
        const req = { inputIds: ids, views, prune: { ...prune, budget: { kind: 'tokens' as const, value: 12 } } };
        const plain = await engine.infer(req);
        assert.equal(plain.prune.keptIndex, undefined);
        const r = await engine.infer({ ...req, returnKeptIndex: true });
        assert.deepEqual(Array.from(r.waypoints), Array.from(plain.waypoints), prune.policy);
        const ki = r.prune.keptIndex!;
        assert.equal(ki.length, info.textLayers);
        let prev = new Set(Array.from({ length: V * K }, (_, i) => i));
        ki.forEach((rows, l) => {
          const orig = rows.filter((i) => i >= 0);
          assert.equal(rows.length, r.prune.kept[l], `${prune.policy} layer ${l}`);
          assert.equal(rows.length - orig.length, r.prune.merged[l], `${prune.policy} layer ${l}: merged rows are -1`);
          assert.deepEqual([...orig].sort((a, b) => a - b), orig, 'in sequence order');
          for (const i of orig) assert.ok(prev.has(i), `${prune.policy} layer ${l}: ${i} was pruned before`);
          assert.deepEqual(Array.from({ length: V }, (_, v) => orig.filter((i) => Math.floor(i / K) === v).length), r.prune.keptPerView[l]);
          prev = new Set(orig);
        });
        assert.ok(r.prune.kept.at(-1)! < V * K, prune.policy);
      }
    } finally {
      engine.dispose();
    }
  });

  it('the CLI takes --policy and --budget', async () => {
    const sample = path.join(testModels, '..', '..', 'assets', 'sample', 'front.jpg');
    const r = await cli('infer', '--model', path.join(testModels, 'tiny'), '--image', `front=${sample}`, '--instruction', 'x', '--policy', 'autoprune', '--budget', 'tokens:6', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.prune.policy, 'autoprune');
    assert.equal(j.prune.kept[0], 15); // N1 = floor(2.5 T)
    assert.ok(j.prune.budgetMet);
    const bad = await cli('infer', '--model', path.join(testModels, 'tiny'), '--image', 'front=x.jpg', '--instruction', 'x', '--policy', 'fastv');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /needs --budget/);
  });
});
