import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PARAMETER_TYPES, SCHEMA_PATH, configFromParams, loadParamsFile } from '../../src/pipeline/params.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as { properties: Record<string, { type: string; items?: { type: string } }>; required: string[] };

function params(e: unknown, re: RegExp): boolean {
  assert.ok(e instanceof VlaError, String(e));
  assert.equal(e.code, ErrorCodes.PARAMS);
  assert.match(e.message, re);
  return true;
}

describe('node parameters', () => {
  it('schema, code and README table name the same parameters with matching types', () => {
    const fromSchema = Object.keys(schema.properties).sort();
    assert.deepEqual(Object.keys(PARAMETER_TYPES).sort(), fromSchema);
    const rosType = (p: { type: string; items?: { type: string } }) =>
      p.type === 'array' ? `${p.items?.type}_array` : p.type === 'number' ? 'double' : p.type === 'boolean' ? 'bool' : p.type;
    for (const [name, p] of Object.entries(schema.properties)) assert.equal(PARAMETER_TYPES[name], rosType(p), name);
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const table = [...readme.matchAll(/^\| `([a-z0-9_]+)` \| (string|integer|number|boolean|string\[\]) \|/gm)].map((m) => m[1]).sort();
    assert.deepEqual(table, fromSchema);
  });

  it('every bundled config validates', () => {
    const files = readdirSync(path.join(root, 'configs')).filter((f) => f.endsWith('.yaml'));
    assert.ok(files.length >= 4);
    for (const f of files) {
      const c = loadParamsFile(path.join(root, 'configs', f));
      assert.equal(c.node.cameras.length, c.raw.camera_names.length, f);
    }
    const carla = loadParamsFile(path.join(root, 'configs', 'carla.yaml'));
    assert.equal(carla.node.cameras[0]!.topic, '/carla/ego_vehicle/rgb_front/image');
    assert.equal(carla.node.cameras[0]!.qos?.reliability, 'reliable');
    const nus = loadParamsFile(path.join(root, 'configs', 'nuscenes.yaml'));
    assert.equal(nus.node.cameras[5]!.type, 'sensor_msgs/msg/CompressedImage');
    assert.deepEqual(loadParamsFile(path.join(root, 'configs', 'default.yaml')).node.prune, { policy: 'autoprune', budget: { kind: 'tokens', value: 49 }, x0: 2.8, k0: 0.4, gamma: 0.2 });
  });

  it('applies defaults and rejects bad values with the parameter named', () => {
    const base = { model_path: '/m', camera_names: ['front'], camera_topics: ['/f'] };
    const c = configFromParams(base);
    assert.equal(c.node.slopMs, 20);
    assert.equal(c.engine.backend, 'auto');
    assert.equal(c.node.prune, undefined);
    assert.throws(() => configFromParams({ ...base, slop_ms: -1 }), (e) => params(e, /slop_ms/));
    assert.throws(() => configFromParams({ ...base, backend: 'tpu' }), (e) => params(e, /backend/));
    assert.throws(() => configFromParams({ ...base, threads: 1.5 }), (e) => params(e, /threads/));
    assert.deepEqual([c.engine.device, c.engine.weightDtype, c.engine.maxActivationMiB], [0, 'auto', 0]);
    const g = configFromParams({ ...base, backend: 'cuda', cuda_device: 1, weight_dtype: 'bf16', max_activation_mib: 2048 });
    assert.deepEqual([g.engine.device, g.engine.weightDtype, g.engine.maxActivationMiB], [1, 'bf16', 2048]);
    assert.throws(() => configFromParams({ ...base, weight_dtype: 'f8' }), (e) => params(e, /weight_dtype/));
    assert.throws(() => configFromParams({ ...base, max_activation_mib: -1 }), (e) => params(e, /max_activation_mib/));
    assert.throws(() => configFromParams({ ...base, camera_fps: 30 }), (e) => params(e, /unknown parameter 'camera_fps'/));
    assert.throws(() => configFromParams({ camera_names: ['front'], camera_topics: ['/f'] }), (e) => params(e, /missing parameter 'model_path'/));
    assert.throws(() => configFromParams({ ...base, camera_topics: ['/f', '/g'] }), (e) => params(e, /camera_topics has 2 entries/));
    assert.throws(() => configFromParams({ ...base, pruning_policy: 'fastv' }), (e) => params(e, /needs a budget/));
    assert.throws(() => configFromParams({ ...base, pruning_policy: 'fastv', budget_kind: 'tokens' }), (e) => params(e, /budget_value must be positive/));
  });

  it('reports unreadable and malformed files', () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-params-'));
    try {
      assert.throws(() => loadParamsFile(path.join(tmp, 'missing.yaml')), (e) => params(e, /missing\.yaml/));
      writeFileSync(path.join(tmp, 'bad.yaml'), 'autoprune_ros: [unclosed');
      assert.throws(() => loadParamsFile(path.join(tmp, 'bad.yaml')), (e) => params(e, /bad\.yaml/));
      writeFileSync(path.join(tmp, 'other.yaml'), 'some_node:\n  ros__parameters:\n    x: 1\n');
      assert.throws(() => loadParamsFile(path.join(tmp, 'other.yaml')), (e) => params(e, /no 'autoprune_ros: ros__parameters:' section/));
      writeFileSync(path.join(tmp, 'wild.yaml'), '/**:\n  ros__parameters:\n    model_path: /m\n    camera_names: [a]\n    camera_topics: [/a]\n');
      assert.equal(loadParamsFile(path.join(tmp, 'wild.yaml')).engine.modelPath, '/m');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
