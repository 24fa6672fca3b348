#!/usr/bin/env node
// CPU benchmark: the tiny model and a generated mid-size (~270M parameter) model, 1 and 6 views,
// and (--prune) every pruning policy at T = 64/128/192 on the mid model with 6 views.
// Prints one JSON object: { tiny: {...}, mid: {...} } as bench-cpu reports them.
//   node scripts/bench-cpu.js [--threads N] [--iters N] [--skip-mid] [--prune]
// --peer: the engine against the PyTorch reference forward instead (scripts/bench-cpu-peer.js).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
// bench-cpu is not part of `npm run build`: built here, on demand (incremental once built); the
// build's output goes to stderr, stdout carries only the JSON.
const built = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.js'), '--target', 'bench-cpu'], { cwd: root, stdio: ['ignore', 2, 2] });
const bin = ['build/bench-cpu', 'build/Release/bench-cpu'].map((p) => path.join(root, p)).find((p) => existsSync(p));
if (built.status !== 0 || !bin) {
  process.stderr.write('VLA_E_ADDON_MISSING: bench-cpu could not be built (see above): run `npm run build` first\n');
  process.exit(1);
}
const { makeModel } = await import(path.join(root, 'dist', 'model', 'tiny.js'));
if (args.includes('--peer')) {
  const { benchPeer } = await import('./bench-cpu-peer.js');
  try {
    process.stdout.write(JSON.stringify(await benchPeer({ root, bin, args, opt, makeModel }), null, 2) + '\n');
    process.exit(0);
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}
const models = { tiny: { preset: 'tiny', views: '1,3' }, mid: { preset: 'mid', views: '1,6' } };
const out = {};
for (const [name, m] of Object.entries(models)) {
  if (name === 'mid' && args.includes('--skip-mid')) continue;
  const dir = path.join(root, 'build', 'models', `bench-${name}`);
  if (!existsSync(path.join(dir, 'config.json'))) await makeModel(dir, { preset: m.preset });
  const extra = name === 'mid' && args.includes('--prune') ? ['--prune'] : [];
  const r = spawnSync(bin, ['--model', dir, '--views', m.views, '--iters', opt('--iters', name === 'mid' ? '2' : '20'), '--threads', opt('--threads', '0'), '--gemm', ...extra], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(r.status ?? 1);
  }
  out[name] = JSON.parse(r.stdout);
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
