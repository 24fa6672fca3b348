#!/usr/bin/env node
// Generates the models the native and addon tests load, into build/test-models/ (deterministic;
// skipped when already present for the same generator options).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { makeModel } = await import(path.join(root, 'dist', 'model', 'tiny.js'));
const out = path.join(root, 'build', 'test-models');
// A change of the generator regenerates the models.
const generator = createHash('sha256').update(readFileSync(path.join(root, 'dist', 'model', 'tiny.js'))).digest('hex');
const models = {
  tiny: { preset: 'tiny', seed: 1 },
  'tiny-text': { preset: 'tiny', seed: 1, head: 'text' },
  'tiny-f16': { preset: 'tiny', seed: 1, dtype: 'F16' },
  'tiny-bf16': { preset: 'tiny', seed: 1, dtype: 'BF16' },
  // six cameras, as a car's surround rig: multi-view pruning tests
  'tiny-6cam': { preset: 'tiny', seed: 2, cameras: ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'] },
  'tiny-6cam-text': { preset: 'tiny', seed: 2, head: 'text', cameras: ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'] },
};
for (const [name, opts] of Object.entries(models)) {
  const dir = path.join(out, name);
  const stamp = path.join(dir, '.options.json');
  const want = JSON.stringify({ opts, generator });
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) continue;
  await makeModel(dir, opts);
  writeFileSync(stamp, want);
}
process.stdout.write(`test models ready in ${out}\n`);
