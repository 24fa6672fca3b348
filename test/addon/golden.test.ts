// Checks the native engine against golden outputs of the independent PyTorch reference
// (tools/reference/vla_ref.py, fp32): max abs error <= 1e-4, greedy tokens exactly equal.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { loadAddon } from '../../src/engine/addon.js';
import type { HeadKind, NativeEngine, NativeResult } from '../../src/engine/addon-types.js';
import { requireBuilt, root, testModels } from './helpers.js';

const TOL = 1e-4;
const goldenFile = path.join(root, 'test', 'fixtures', 'golden', 'tiny-golden.json');
const REGEN = '/usr/bin/python3 tools/reference/vla_ref.py golden --model build/test-models/tiny --out test/fixtures/golden/tiny-golden.json';

interface GoldenView { width: number; height: number; encoding: 'rgb8'; data_b64: string }
interface GoldenCase {
  name: string;
  model: string;
  head: HeadKind;
  input_ids: number[];
  views: GoldenView[];
  max_new_tokens: number | null;
  waypoints: number[] | null;
  hidden: number[] | null;
  logits: number[] | null;
  tokens: number[];
}
interface Golden {
  generator: { command: string; models: Record<string, { model_dir_name: string; safetensors_sha256: string }> };
  cases: GoldenCase[];
}

const missing = `golden outputs missing at ${goldenFile}: generate them with \`${REGEN}\``;
const readGolden = (): Golden => (existsSync(goldenFile) ? (JSON.parse(readFileSync(goldenFile, 'utf8')) as Golden) : { generator: { command: REGEN, models: {} }, cases: [] });

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Max abs difference; a length mismatch or a NaN is an infinite error. */
function maxAbsErr(got: ArrayLike<number> | undefined, want: number[]): number {
  if (!got || got.length !== want.length) return Infinity;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!);
    if (!(e <= m)) m = Number.isNaN(e) ? Infinity : e;
  }
  return m;
}

describe('golden outputs of the PyTorch reference (addon, cpu)', function () {
  const golden = readGolden();
  if (!golden.cases.length) it('has golden outputs', () => assert.fail(missing));
  const engines = new Map<string, NativeEngine>();
  const report: string[] = [];
  const stale = new Map<string, string>();

  before(async () => {
    requireBuilt();
    for (const [name, m] of Object.entries(golden.generator.models)) {
      const file = path.join(testModels, m.model_dir_name, 'model.safetensors');
      const have = sha256(file);
      if (have !== m.safetensors_sha256) {
        stale.set(name, `${file} (sha256 ${have}) is not the model the goldens were generated from (${m.safetensors_sha256}): ` +
          `the tiny model generator changed; after \`npm run build && npm run test:models\`, regenerate the goldens with \`${REGEN}\``);
      }
    }
  });

  after(() => {
    for (const e of engines.values()) e.dispose();
    if (report.length) process.stdout.write(`\n  golden max abs errors (tolerance ${TOL}):\n${report.map((l) => `    ${l}\n`).join('')}\n`);
  });

  async function engineFor(model: string): Promise<NativeEngine> {
    let e = engines.get(model);
    if (!e) {
      e = await loadAddon().load(path.join(testModels, golden.generator.models[model]!.model_dir_name), { backend: 'cpu' });
      engines.set(model, e);
    }
    return e;
  }

  for (const model of Object.keys(golden.generator.models)) {
    it(`${model}: the test model is the one the goldens were generated from`, () => {
      assert.ok(!stale.has(model), stale.get(model));
    });
  }

  for (const c of golden.cases) {
    it(`${c.name}: ${c.head} head, ${c.views.length} view(s)`, async () => {
      assert.ok(!stale.has(c.model), stale.get(c.model));
      const engine = await engineFor(c.model);
      const r: NativeResult = await engine.infer({
        inputIds: Int32Array.from(c.input_ids),
        views: c.views.map((v) => ({ data: new Uint8Array(Buffer.from(v.data_b64, 'base64')), width: v.width, height: v.height, step: v.width * 3, encoding: v.encoding })),
        head: c.head,
        ...(c.max_new_tokens != null ? { maxNewTokens: c.max_new_tokens } : {}),
        returnLogits: true,
        returnHidden: true,
      });
      assert.equal(r.head, c.head);
      const errs: Record<string, number> = {};
      if (c.waypoints) errs.waypoints = maxAbsErr(r.waypoints, c.waypoints);
      if (c.hidden) errs.hidden = maxAbsErr(r.hidden, c.hidden);
      if (c.logits) errs.logits = maxAbsErr(r.logits, c.logits);
      report.push(`${c.name}: ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
      for (const [k, v] of Object.entries(errs)) assert.ok(v <= TOL, `${c.name}: ${k} max abs error ${v} > ${TOL}`);
      if (c.head === 'text') assert.deepEqual(Array.from(r.tokens), c.tokens, `${c.name}: greedy tokens`);
    });
  }
});
