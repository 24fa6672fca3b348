/**
 * `colcon build` of ros/ (the ament package) where colcon and ament_cmake are installed (Debian
 * has them: colcon python3-colcon-ros ament-cmake; no ROS 2 needed for this package): the
 * install space has the launchers, the ament index entry and a self-contained node (production
 * node_modules only), and the installed node runs: its launcher answers without ROS 2 with a coded
 * error, and its installed main.js comes up active over the rclnodejs stand-in with an installed
 * parameter file. Skipped, with the reason printed, where colcon or ament_cmake is missing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import type { runNode as RunNode, stateOf as StateOf } from '../../src/ros/main.js';
import { requireBuilt, root } from '../addon/helpers.js';
import { createStandin, type StandinLifecycleNode } from './rclnodejs-standin.js';

const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as never;
// Debian's ament_cmake runs its Python helpers with the first python3 on PATH, which must see
// Debian's ament_package.
const env = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` };

function missing(): string | undefined {
  if (spawnSync('colcon', ['--help'], { env }).status !== 0) return 'colcon is not installed (Debian: apt-get install colcon python3-colcon-ros ament-cmake)';
  if (!existsSync('/usr/share/ament_cmake/cmake/ament_cmakeConfig.cmake') && !process.env.AMENT_PREFIX_PATH) return 'ament_cmake is not installed (Debian: apt-get install ament-cmake)';
  return undefined;
}

describe('colcon build of the ament package (ros)', function () {
  this.timeout(300_000);
  let tmp: string;
  let install: string;
  before(function () {
    const why = missing();
    if (why) {
      process.stdout.write(`      skipped: ${why}\n`);
      this.skip();
    }
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-colcon-'));
    install = path.join(tmp, 'install');
    const r = spawnSync('colcon', ['--log-base', path.join(tmp, 'log'), 'build', '--base-paths', 'ros', '--build-base', path.join(tmp, 'build'), '--install-base', install, '--merge-install', '--cmake-args', '-DBUILD_TESTING=OFF'], { cwd: root, env, encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('installs the launchers, the ament index entry, and a self-contained node tree (production dependencies only)', () => {
    const share = path.join(install, 'share', 'autoprune_ros');
    for (const exe of ['autoprune_ros_node', 'carla_control_node']) assert.ok(statSync(path.join(install, 'lib', 'autoprune_ros', exe)).mode & 0o111, exe);
    assert.ok(existsSync(path.join(install, 'share', 'ament_index', 'resource_index', 'packages', 'autoprune_ros')));
    for (const f of ['package.xml', 'package.json', 'dist/ros/main.js', 'build/Release/vla_addon.node', 'node_modules/rclnodejs/package.json', 'node_modules/@foxglove/rosmsg2-serialization/package.json', 'configs/default.yaml', 'configs/autoprune_ros.schema.json', 'msg/msg/Trajectory.msg', 'msg/ext/carla_msgs/msg/CarlaEgoVehicleControl.msg', 'assets/models/drive-deep/model.safetensors', 'assets/models/drive/model.safetensors', 'launch/autoprune_ros.launch.py', 'launch/autoprune_ros.launch.xml', 'carla/autoprune_agent.py', 'foxglove/autoprune_ros.json']) {
      assert.ok(existsSync(path.join(share, f)), f);
    }
    const mods = readdirSync(path.join(share, 'node_modules'));
    for (const dev of ['typescript', 'mocha', 'cmake-js', 'tsx', 'xmllint-wasm']) assert.ok(!mods.includes(dev), `devDependency ${dev} not installed`);
  });

  it('the installed launcher runs the installed node: without ROS 2 it says so (VLA_E_ADDON_MISSING)', () => {
    const r = spawnSync(path.join(install, 'lib', 'autoprune_ros', 'autoprune_ros_node'), ['--ros-args'], { encoding: 'utf8', env: { ...env, ROS_DISTRO: '' } });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^VLA_E_ADDON_MISSING: ROS 2 is not sourced/);
  });

  it('the installed main.js comes up active (stand-in) with the installed default.yaml and model', async () => {
    const share = path.join(install, 'share', 'autoprune_ros');
    const m = (await import(pathToFileURL(path.join(share, 'dist', 'ros', 'main.js')).href)) as { runNode: typeof RunNode; stateOf: typeof StateOf };
    const s = createStandin();
    const signals = new EventEmitter();
    const running = await m.runNode({ rcl: s.rcl, argv: ['node', 'main.js', '--ros-args', '--params-file', path.join(share, 'configs', 'default.yaml'), '-p', `model_path:=${path.join(share, 'assets', 'models', 'drive-deep')}`, '-p', 'backend:=cpu'], signals, log: silent });
    try {
      assert.equal(m.stateOf((s.nodes[0] as StandinLifecycleNode).currentState).label, 'active');
    } finally {
      signals.emit('SIGINT', 'SIGINT');
      await running.closed;
    }
  });
});
