/**
 * Every parameter file in configs/ starts the node it is for, as a launch file passes it
 * (`--params-file`, under `/**`), through the rclnodejs stand-in with the real engine: values of
 * the ROS type the schema says (a double written 20 would be refused by rclnodejs), and a model
 * that ships (the default assets/models/drive-deep) with the cameras the file names.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { parse as parseYaml } from 'yaml';

import { runNode, stateOf } from '../../src/ros/main.js';
import { requireBuilt, root } from '../addon/helpers.js';
import { createStandin, type StandinLifecycleNode } from './rclnodejs-standin.js';

const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as never;
const configs = readdirSync(path.join(root, 'configs')).filter((f) => f.endsWith('.yaml'));

describe('parameter files start their node (ros)', function () {
  this.timeout(120_000);
  before(() => requireBuilt());

  it('every file keys its parameters under /** (node name and namespace free)', () => {
    for (const f of configs) assert.deepEqual(Object.keys(parseYaml(readFileSync(path.join(root, 'configs', f), 'utf8')) as object), ['/**'], f);
  });

  for (const f of configs.filter((c) => c !== 'carla_control.yaml')) {
    it(`${f}: the node comes up active on the bundled model`, async function () {
      const raw = (parseYaml(readFileSync(path.join(root, 'configs', f), 'utf8')) as Record<string, { ros__parameters: Record<string, unknown> }>)['/**']!.ros__parameters;
      assert.equal(raw.model_path, 'assets/models/drive-deep', `${f} names the model that ships`);
      const s = createStandin();
      const signals = new EventEmitter();
      // this machine has no GPU: the jetson file's cuda backend is checked by its own test
      const argv = ['node', 'main.js', '--ros-args', '--params-file', path.join(root, 'configs', f), '-p', 'backend:=cpu', '-p', 'threads:=1'];
      const running = await runNode({ rcl: s.rcl, argv, signals, log: silent });
      try {
        assert.equal(stateOf((s.nodes[0] as StandinLifecycleNode).currentState).label, 'active');
        assert.deepEqual(running.runner.engine.cameras, ['front', 'front_left', 'front_right']);
      } finally {
        signals.emit('SIGINT', 'SIGINT');
        await running.closed;
      }
    });
  }

});
