#!/usr/bin/env node
// Replay benchmark: how much of a replay's wall time is not inference (bag reading, CDR,
// synchronisation, scoring, output bag, trace). Generates the sample drive (or takes --bag),
// replays it in every-set mode --runs times per model, and prints one JSON object with each run's
// wall, inference and overhead (fraction of the wall time, and ms per camera set), and the
// medians (target: a fraction under 0.05).
//   node scripts/bench-replay.js [--runs 3] [--models tiny,bundled,mid] [--bag DIR] [--duration 12]
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const dist = (p) => path.join(root, 'dist', p);
if (!existsSync(dist('cli/main.js'))) {
  process.stderr.write('VLA_E_ADDON_MISSING: dist/ not built: run `npm run build`\n');
  process.exit(1);
}
const { makeModel } = await import(dist('model/tiny.js'));
const { makeSampleDrive } = await import(dist('sample/drive.js'));
const { replayBag } = await import(dist('replay/replay.js'));
const { loadParamsFile } = await import(dist('pipeline/params.js'));
const { Engine } = await import(dist('engine/engine.js'));

const runs = Number(opt('--runs', '3'));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-replay-'));
let bag = opt('--bag');
if (!bag) {
  bag = path.join(tmp, 'drive');
  await makeSampleDrive(bag, { durationS: Number(opt('--duration', '12')) });
}
const config = path.join(root, 'configs', 'sample-drive.yaml');
// The load average says how busy the machine was (the figures are wall times).
const out = { bag, runs: {}, machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '', loadAvg1m: os.loadavg()[0] } };
try {
  for (const preset of opt('--models', 'tiny').split(',')) {
    // `bundled`: the trained model the quick start uses (assets/models/drive); the others are made.
    const dir = preset === 'bundled' ? path.join(root, 'assets', 'models', 'drive') : path.join(root, 'build', 'models', preset === 'tiny' ? 'tiny' : `bench-${preset}-3cam`);
    if (!existsSync(path.join(dir, 'config.json'))) await makeModel(dir, { preset, cameras: ['front', 'front_left', 'front_right'] });
    const cfg = loadParamsFile(config, { model_path: dir });
    const engine = await Engine.load(dir, { backend: cfg.engine.backend, threads: cfg.engine.threads });
    const rows = [];
    for (let i = 0; i < runs; i++) {
      const { report } = await replayBag({ bag, config: cfg, configPath: config, engine, outDir: path.join(tmp, `${preset}-${i}`) });
      const s = report.settings[0];
      rows.push({
        wallS: report.wallS,
        inferenceS: s.inferenceMs / 1000,
        overheadFraction: report.overheadFraction,
        // What the fraction hides: the time outside inference per set (target: under 0.3 ms).
        overheadPerSetMs: (report.wallS * 1000 - s.inferenceMs) / s.frames.setsInferred,
        sets: s.frames.setsInferred,
        setsPerS: s.frames.setsInferred / report.wallS,
        inferenceP50Ms: s.latency.total.p50Ms,
      });
    }
    await engine.dispose();
    const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    out.runs[preset] = { rows, medianOverheadFraction: median(rows.map((r) => r.overheadFraction)), medianOverheadPerSetMs: median(rows.map((r) => r.overheadPerSetMs)) };
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
