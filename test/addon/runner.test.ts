import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadAddon } from '../../src/engine/addon.js';
import type { Engine } from '../../src/engine/engine.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { OUTPUT_TYPES } from '../../src/msgs/convert.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import { configFromParams } from '../../src/pipeline/params.js';
import { NodeRunner } from '../../src/pipeline/runner.js';
import { ErrorCodes } from '../../src/util/errors.js';
import { requireBuilt, syntheticFrame, testModels } from './helpers.js';

const codec = new MessageCodec();
const CAMS = ['front', 'front_left', 'front_right'];

function injectSet(port: InMemoryPort, seed: number): void {
  const t = port.now();
  for (const [i, c] of CAMS.entries()) {
    port.inject(`/cam/${c}`, 'sensor_msgs/msg/Image', codec.encode('sensor_msgs/msg/Image', { header: { stamp: { sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) }, frame_id: c }, height: 36, width: 48, encoding: 'rgb8', is_bigendian: 0, step: 144, data: syntheticFrame(48, 36, seed + i) }));
  }
  port.advance(10);
}

function trajectories(port: InMemoryPort): Array<{ model: string; waypoints: unknown[] }> {
  return port.published.filter((m) => m.type === OUTPUT_TYPES.trajectory).map((m) => codec.decode(OUTPUT_TYPES.trajectory, m.cdr));
}

describe('node runner with real engines: a model_path change runs the new model (addon)', function () {
  this.timeout(120_000);
  let tmp: string;
  before(() => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-runner-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('loads and warms the new engine, publishes from it, disposes the old; a model that fails to load is undone', async () => {
    const tiny = path.join(testModels, 'tiny');
    const f16 = path.join(testModels, 'tiny-f16');
    const base = { model_path: tiny, backend: 'cpu', threads: 1, camera_names: CAMS, camera_topics: CAMS.map((c) => `/cam/${c}`), slop_ms: 10, max_age_ms: 200, future_tolerance_ms: 50 };
    const port = new InMemoryPort(1_000_000_000n);
    const runner = await NodeRunner.start({ port, config: configFromParams(base), codec });
    try {
      runner.activate();
      const first = runner.engine as Engine;
      injectSet(port, 1);
      await runner.node?.busy;
      assert.deepEqual(trajectories(port).map((t) => t.model), [tiny]);

      assert.deepEqual(runner.propose({ ...base, model_path: f16 }), { successful: true, reason: '' });
      await runner.settled();
      const second = runner.engine as Engine;
      assert.notEqual(second, first);
      assert.equal(second.info.dir, f16);
      assert.ok(first.disposed, 'the old engine is disposed');
      injectSet(port, 2);
      await runner.node?.busy;
      assert.deepEqual(trajectories(port).map((t) => t.model), [tiny, f16]);
      assert.equal(runner.node?.counters.failed, 0);

      // Refused at once: no model there, or a backend this build cannot run.
      const missing = runner.propose({ ...base, model_path: path.join(tmp, 'nothing') });
      assert.equal(missing.successful, false);
      assert.match(missing.reason, /^VLA_E_IO: .*nothing\/config\.json: cannot open/);
      if (loadAddon().cudaUnavailable) {
        const cuda = runner.propose({ ...base, model_path: f16, backend: 'cuda' });
        assert.equal(cuda.successful, false);
        assert.match(cuda.reason, /^VLA_E_BACKEND: backend 'cuda': /);
      }

      // Accepted, then found broken while loading: the f16 engine runs on, and the change is handed back.
      const broken = path.join(tmp, 'broken');
      mkdirSync(broken);
      writeFileSync(path.join(broken, 'config.json'), '{"model_type": "llava", "text_config": ');
      const undone = new Promise<{ code: string; kept: string; names: string[] }>((r) => (runner.onReloadFailed = (e, kept, names) => r({ code: e.code, kept: kept.engine.modelPath, names })));
      assert.equal(runner.propose({ ...base, model_path: broken }).successful, true);
      const u = await undone;
      assert.equal(u.kept, f16);
      assert.deepEqual(u.names, ['model_path']);
      assert.equal(u.code, ErrorCodes.CONFIG);
      assert.match(runner.lastReloadError?.message ?? '', /broken\/config\.json: not valid JSON/);
      assert.equal(runner.engine, second);
      assert.ok(!second.disposed);
      injectSet(port, 3);
      await runner.node?.busy;
      assert.deepEqual(trajectories(port).map((t) => t.model), [tiny, f16, f16]);
    } finally {
      await runner.shutdown();
    }
    assert.ok((runner.engine as Engine).disposed);
  });
});
