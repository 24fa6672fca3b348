import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PARAMETER_TYPES, SCHEMA_PATH, configFromParams, loadParamsFile, overridePruneOptions, parameterDeclarations, valuesFromRos } from '../../src/pipeline/params.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { GENERATED_FILE, generateParamsTypes } from '../../scripts/gen-params-types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as { properties: Record<string, { type: string; items?: { type: string } }>; required: string[] };

function params(e: unknown, re: RegExp): boolean {
  assert.ok(e instanceof VlaError, String(e));
  assert.equal(e.code, ErrorCodes.PARAMS);
  assert.match(e.message, re);
  return true;
}

describe('node parameters', () => {
  it('schema, declared ROS types and README table name the same parameters with matching types', () => {
    const fromSchema = Object.keys(schema.properties);
    assert.deepEqual(Object.keys(PARAMETER_TYPES), fromSchema);
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const table = [...readme.matchAll(/^\| `([a-z0-9_]+)` \| (string|integer|number|boolean|string\[\]|integer\[\]) \|/gm)].map((m) => [m[1] as string, m[2] as string] as const);
    assert.deepEqual(table.map(([n]) => n).sort(), [...fromSchema].sort());
    const rosOfReadme = { string: 'string', integer: 'integer', number: 'double', boolean: 'bool', 'string[]': 'string_array', 'integer[]': 'integer_array' } as Record<string, string>;
    for (const [name, t] of table) assert.equal(PARAMETER_TYPES[name], rosOfReadme[t], name);
  });

  it('the generated TypeScript type is the schema\'s (npm run gen:params after a schema change)', async () => {
    assert.equal(readFileSync(GENERATED_FILE, 'utf8'), await generateParamsTypes(), `${path.relative(root, GENERATED_FILE)} is stale: run npm run gen:params`);
  });

  it('declarations for a live node: schema defaults, empty values for the required; values read back drop the empty ones', () => {
    const d = new Map(parameterDeclarations().map((p) => [p.name, p]));
    assert.deepEqual(d.get('model_path'), { name: 'model_path', type: 'string', value: '' });
    assert.deepEqual(d.get('camera_names'), { name: 'camera_names', type: 'string_array', value: [] });
    assert.deepEqual(d.get('threads'), { name: 'threads', type: 'integer', value: 0n });
    assert.deepEqual(d.get('slop_ms'), { name: 'slop_ms', type: 'double', value: 20 });
    assert.deepEqual(d.get('publish_autoware_trajectory'), { name: 'publish_autoware_trajectory', type: 'bool', value: false });
    assert.deepEqual(d.get('camera_types'), { name: 'camera_types', type: 'string_array', value: [] });
    assert.deepEqual(d.get('pdrop_layers'), { name: 'pdrop_layers', type: 'integer_array', value: [] });
    const back = valuesFromRos([...d.values(), { name: 'not_ours', value: 1 }]);
    assert.ok(!('model_path' in back) && !('camera_names' in back) && !('odometry_topic' in back) && !('not_ours' in back));
    assert.deepEqual(back.camera_types, []);
    assert.equal(back.threads, 0);
    assert.throws(() => configFromParams(back), (e) => params(e, /missing parameter 'model_path'/));
    const c = configFromParams({ ...back, ...valuesFromRos([{ name: 'model_path', value: '/m' }, { name: 'camera_names', value: ['front'] }, { name: 'camera_topics', value: ['/f'] }, { name: 'max_activation_mib', value: 64n }]) });
    assert.deepEqual([c.engine.modelPath, c.engine.maxActivationMiB, c.node.slopMs], ['/m', 64, 20]);
  });

  it('every bundled config validates', () => {
    // carla_control.yaml belongs to another node (carla_control.schema.json; test/ros/configs.test.ts)
    const files = readdirSync(path.join(root, 'configs')).filter((f) => f.endsWith('.yaml') && f !== 'carla_control.yaml');
    assert.ok(files.length >= 4);
    for (const f of files) {
      const c = loadParamsFile(path.join(root, 'configs', f));
      assert.equal(c.node.cameras.length, c.raw.camera_names.length, f);
    }
    const carla = loadParamsFile(path.join(root, 'configs', 'carla.yaml'));
    assert.equal(carla.node.cameras[0]!.topic, '~/input/front/image', 'remapped by launch/carla.launch.py');
    assert.equal(carla.node.cameras[0]!.qos?.reliability, 'reliable');
    const nus = loadParamsFile(path.join(root, 'configs', 'nuscenes.yaml'));
    assert.equal(nus.node.cameras[2]!.type, 'sensor_msgs/msg/CompressedImage');
    // Every option besides policy and budget reaches node.prune; the shipped configs leave the tuned
    // ones unset (the model's calibration or the reference's fill them): only prune_parity is explicit.
    assert.deepEqual(loadParamsFile(path.join(root, 'configs', 'default.yaml')).node.prune, {
      policy: 'autoprune',
      budget: { kind: 'tokens', value: 64 },
      explicit: ['parity'],
      x0: 14.9,
      k0: 0.4,
      gamma: 0.2,
      recycle: false,
      reindexPositions: false,
      scoreRows: 'instruction',
      parity: false,
      fastvLayer: 2,
      pdropLayers: [],
    });
    const set = loadParamsFile(path.join(root, 'configs', 'default.yaml'), { prune_recycle: true, prune_reindex_positions: true, prune_score_rows: 'last', prune_parity: true, fastv_layer: 4, pdrop_layers: [1, 3], autoprune_k0: 1 });
    assert.deepEqual(set.node.prune, { policy: 'autoprune', budget: { kind: 'tokens', value: 64 }, explicit: ['k0', 'recycle', 'reindexPositions', 'scoreRows', 'parity', 'fastvLayer', 'pdropLayers'], x0: 14.9, k0: 1, gamma: 0.2, recycle: true, reindexPositions: true, scoreRows: 'last', parity: true, fastvLayer: 4, pdropLayers: [1, 3] });
    assert.deepEqual(set.pruneOptions, { x0: 14.9, k0: 1, gamma: 0.2, recycle: true, reindexPositions: true, scoreRows: 'last', parity: true, fastvLayer: 4, pdropLayers: [1, 3] });
    assert.throws(() => loadParamsFile(path.join(root, 'configs', 'default.yaml'), { prune_score_rows: 'all' }), (e: Error & { code?: string }) => e.code === 'VLA_E_PARAMS' && /prune_score_rows/.test(e.message));
    assert.throws(() => loadParamsFile(path.join(root, 'configs', 'default.yaml'), { fastv_layer: 0 }), (e: Error & { code?: string }) => e.code === 'VLA_E_PARAMS' && /fastv_layer/.test(e.message));
    // pdrop_layers: integers >= 0, at most 8, strictly increasing (the depth is the engine's to check)
    for (const bad of [[3, 3], [4, 1], [-1], [1.5], ['1'], '1,2', [0, 1, 2, 3, 4, 5, 6, 7, 8]]) {
      assert.throws(() => loadParamsFile(path.join(root, 'configs', 'default.yaml'), { pdrop_layers: bad }), (e: Error & { code?: string }) => e.code === 'VLA_E_PARAMS' && /pdrop_layers/.test(e.message), JSON.stringify(bad));
    }
    // Without a policy the options still load (replay and evaluate sweeps start from them); flags override them.
    const off = loadParamsFile(path.join(root, 'configs', 'default.yaml'), { pruning_policy: 'none', budget_kind: 'none', prune_recycle: true });
    assert.equal(off.node.prune, undefined);
    assert.equal(off.pruneOptions.recycle, true);
    overridePruneOptions(off, { recycle: false, scoreRows: 'tail', parity: undefined });
    assert.deepEqual(off.pruneOptions, { ...set.pruneOptions, x0: 14.9, k0: 0.4, recycle: false, reindexPositions: false, scoreRows: 'tail', parity: false, fastvLayer: 2, pdropLayers: [] });
    overridePruneOptions(set, { recycle: false });
    assert.equal(set.node.prune?.recycle, false);
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
    assert.throws(() => configFromParams({ ...base, pruning_policy: 'fastv2', budget_kind: 'tokens', budget_value: 8 }), (e) => params(e, /parameter 'pruning_policy' must be equal to one of the allowed values/));
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
