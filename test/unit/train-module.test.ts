// The PyTorch training module (tools/train/vla_model.py) against the independent functional
// reference (tools/reference/vla_ref.py), batching, and preprocessing; skipped without PyTorch.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PY = '/usr/bin/python3';

describe('training module self-test (PyTorch)', function () {
  this.timeout(120_000);
  it('matches the functional reference, batches like single samples, letterboxes like the engine', function () {
    const probe = existsSync(PY) ? spawnSync(PY, ['-c', 'import torch, PIL'], { encoding: 'utf8' }) : undefined;
    if (!probe || probe.status !== 0) {
      process.stdout.write(`      skipped: PyTorch/Pillow not installed for ${PY} (scripts/install-train-deps.sh installs them)\n`);
      this.skip();
    }
    const r = spawnSync(PY, [path.join(root, 'tools', 'train', 'selftest.py')], { encoding: 'utf8', timeout: 110_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number | boolean>;
    assert.ok((out.vs_reference_max_abs as number) < 1e-5, JSON.stringify(out));
    assert.ok((out.batch_vs_alone_max_abs as number) < 1e-5, JSON.stringify(out));
    assert.equal(out.pad_rows_mean_colour, true);
  });
});

describe('training pipeline end to end (PyTorch)', function () {
  this.timeout(240_000);
  it('make-dataset -> train.py -> a model directory the engine loads and runs', async function () {
    const probe = existsSync(PY) ? spawnSync(PY, ['-c', 'import torch, PIL'], { encoding: 'utf8' }) : undefined;
    if (!probe || probe.status !== 0) {
      process.stdout.write(`      skipped: PyTorch/Pillow not installed for ${PY} (scripts/install-train-deps.sh installs them)\n`);
      this.skip();
    }
    const { mkdtempSync, rmSync, readFileSync, writeFileSync } = await import('node:fs');
    const os = await import('node:os');
    const { makeDataset } = await import('../../src/sample/dataset.js');
    const { Engine } = await import('../../src/engine/engine.js');
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'train-'));
    try {
      const ds = path.join(tmp, 'ds');
      await makeDataset(ds, { train: 3, val: 1, test: 1, framesPerEpisode: 2 });
      const out = path.join(tmp, 'model');
      const r = spawnSync(PY, [path.join(root, 'tools', 'train', 'train.py'), '--dataset', ds, '--out', out, '--steps', '3', '--batch', '4', '--log-every', '1', '--eval-every', '0', '--threads', '1'], { encoding: 'utf8', timeout: 200_000 });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const log = JSON.parse(readFileSync(path.join(out, 'training.json'), 'utf8')) as { loss_curve: Array<{ step: number; loss: number }>; final: { test: { model: { n: number } } } };
      assert.equal(log.loss_curve.length, 3);
      assert.ok(log.loss_curve.every((c) => Number.isFinite(c.loss)));
      assert.equal(log.final.test.model.n, 2, 'the test split is scored');
      // the same seed reproduces the curve
      const again = spawnSync(PY, [path.join(root, 'tools', 'train', 'train.py'), '--dataset', ds, '--out', path.join(tmp, 'model2'), '--steps', '3', '--batch', '4', '--log-every', '1', '--eval-every', '0', '--threads', '1', '--compare-curve', path.join(out, 'training.json'), '--curve-tolerance', '1e-4'], { encoding: 'utf8', timeout: 200_000 });
      assert.equal(again.status, 0, `${again.stdout}\n${again.stderr}`);
      const engine = await Engine.load(out, { backend: 'cpu', threads: 1 });
      try {
        const { renderView } = await import('../../src/sample/render.js');
        const views = Object.fromEntries(engine.cameras.map((c) => {
          const v = renderView({ camera: c as 'front', width: 160, height: 90 });
          return [c, { kind: 'raw' as const, width: v.width, height: v.height, step: v.step, encoding: 'rgb8' as const, data: v.data }];
        }));
        const res = await engine.infer({ views, instruction: 'keep the lane (ego speed 8.0 m/s)' });
        assert.equal(res.waypoints.length, 6);
        assert.ok(res.waypoints.every((w) => Number.isFinite(w.x) && Number.isFinite(w.y)));
      } finally {
        await engine.dispose();
      }
      // --arch deep: 12 decoder layers, 64 tokens per view, 2 vision layers; the engine runs it too
      const deep = path.join(tmp, 'deep');
      const rd = spawnSync(PY, [path.join(root, 'tools', 'train', 'train.py'), '--arch', 'deep', '--dataset', ds, '--out', deep, '--steps', '1', '--batch', '2', '--eval-every', '0', '--threads', '1'], { encoding: 'utf8', timeout: 200_000 });
      assert.equal(rd.status, 0, `${rd.stdout}\n${rd.stderr}`);
      const dcfg = JSON.parse(readFileSync(path.join(deep, 'config.json'), 'utf8')) as { text_config: { num_hidden_layers: number }; vision_config: { num_hidden_layers: number; image_size: number; patch_size: number } };
      assert.deepEqual([dcfg.text_config.num_hidden_layers, dcfg.vision_config.num_hidden_layers, (dcfg.vision_config.image_size / dcfg.vision_config.patch_size) ** 2], [12, 2, 64]);
      assert.equal((JSON.parse(readFileSync(path.join(deep, 'training.json'), 'utf8')) as { arch: string }).arch, 'deep');
      const deepEngine = await Engine.load(deep, { backend: 'cpu', threads: 1 });
      try {
        assert.deepEqual([deepEngine.info.tokensPerView, deepEngine.info.textLayers, deepEngine.info.visionLayers], [64, 12, 2]);
      } finally {
        await deepEngine.dispose();
      }
      // damaged frames are refused naming the sample and camera (a fresh cache, so frames.bin is read again)
      const train1 = (cache: string) => spawnSync(PY, [path.join(root, 'tools', 'train', 'train.py'), '--dataset', ds, '--out', path.join(tmp, 'bad'), '--steps', '1', '--cache', path.join(tmp, cache)], { encoding: 'utf8' });
      const frames = path.join(ds, 'frames.bin');
      const good = readFileSync(frames);
      writeFileSync(frames, Buffer.concat([Buffer.alloc(16, 0x55), good.subarray(16)])); // first JPEG's header overwritten
      let bad = train1('cache-garbled');
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /sample 0 camera front at offset 0: not a decodable image/);
      writeFileSync(frames, good.subarray(0, good.length - 1000)); // truncated
      bad = train1('cache-truncated');
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /lie outside the file .*truncated dataset/);
      // a dataset directory without index.json is refused with a clear message
      rmSync(path.join(ds, 'index.json'));
      bad = spawnSync(PY, [path.join(root, 'tools', 'train', 'train.py'), '--dataset', ds, '--out', path.join(tmp, 'm3'), '--steps', '1'], { encoding: 'utf8' });
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr + bad.stdout, /index\.json/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
