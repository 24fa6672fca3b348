/**
 * The launch files, read without ROS 2 (test/ros/launch_files.py: ast for Python, ElementTree
 * for XML), checked against the parameter schemas and run: each autoprune_ros_node they start is
 * started here with the command line launch_ros would give it (name, namespace, ROS arguments,
 * remappings), through the rclnodejs stand-in and the real engine, and must come up active,
 * subscribed to the topics the launch file means. The Python and XML launch files agree.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { PARAMETER_TYPES } from '../../src/pipeline/params.js';
import { runNode, stateOf } from '../../src/ros/main.js';
import { requireBuilt, root } from '../addon/helpers.js';
import { createStandin, type StandinLifecycleNode } from './rclnodejs-standin.js';

export interface LaunchNode {
  action: string;
  package: string;
  executable: string;
  name: string;
  namespace: string;
  ros_args: string[];
  remaps: Array<[string, string]>;
  env: Record<string, string>;
  params?: unknown[];
}
export interface LaunchFile {
  file: string;
  args: Record<string, string | null>;
  unused_args: string[];
  nodes: LaunchNode[];
}

/** What launch_files.py reads from a launch file (the share directory is the checkout). */
export function readLaunch(file: string, overrides: Record<string, string> = {}): LaunchFile {
  const p = spawnSync('python3', [path.join(root, 'test', 'ros', 'launch_files.py'), root, file, ...Object.entries(overrides).map(([k, v]) => `${k}:=${v}`)], { encoding: 'utf8' });
  if (!p.stdout) throw new Error(`launch_files.py ${file}: ${p.stderr || p.error?.message}`);
  const r = JSON.parse(p.stdout) as LaunchFile & { error?: string };
  if (r.error) throw new Error(r.error);
  return r;
}

/** The command line launch_ros gives a node (ros_arguments, then name, namespace and remaps). */
export function commandLine(n: LaunchNode): string[] {
  return ['node', n.executable, '--ros-args', ...n.ros_args, '--ros-args', '-r', `__node:=${n.name}`, '-r', `__ns:=${n.namespace.startsWith('/') ? n.namespace : `/${n.namespace}`}`, ...n.remaps.flatMap(([a, b]) => ['-r', `${a}:=${b}`])];
}

const carlaSchema = JSON.parse(readFileSync(path.join(root, 'configs', 'carla_control.schema.json'), 'utf8')) as { properties: Record<string, unknown> };
/** Parameters every ROS 2 node has. */
const ROS_STANDARD = new Set(['use_sim_time']);
const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as never;

const launchFiles = readdirSync(path.join(root, 'launch')).filter((f) => /\.launch\.(py|xml)$/.test(f));

describe('launch files (ros)', function () {
  this.timeout(120_000);
  before(() => requireBuilt());

  it('every launch file parses, declares what it uses and uses what it declares; every node is an executable this package installs', () => {
    assert.ok(launchFiles.length >= 5, launchFiles.join(', '));
    const scripts = readdirSync(path.join(root, 'ros', 'scripts'));
    for (const f of launchFiles) {
      const l = readLaunch(path.join('launch', f));
      assert.deepEqual(l.unused_args, [], `${f}: declared, never used`);
      assert.ok(l.nodes.length >= 1, f);
      for (const n of l.nodes) {
        assert.equal(n.package, 'autoprune_ros', f);
        assert.ok(scripts.includes(n.executable), `${f}: ${n.executable} is not in ros/scripts`);
        assert.deepEqual(n.params ?? [], [], `${f}: <param> entries are written under the node's full name, which rclnodejs does not read`);
        // every -p names a parameter of the node's schema (or a standard ROS one) and every file exists
        const schema = n.executable === 'carla_control_node' ? Object.keys(carlaSchema.properties) : Object.keys(PARAMETER_TYPES);
        for (let i = 0; i < n.ros_args.length; i++) {
          const a = n.ros_args[i] as string;
          const v = n.ros_args[i + 1] as string;
          if (a === '-p') assert.ok(schema.includes(v.split(':=')[0] as string) || ROS_STANDARD.has(v.split(':=')[0] as string), `${f}: -p ${v}: not a parameter of ${n.executable}`);
          if (a === '--params-file') assert.ok(existsSync(v), `${f}: --params-file ${v} does not exist`);
          if (a === '-p' || a === '--params-file') i++;
          else assert.fail(`${f}: unexpected ROS argument ${a}`);
        }
      }
    }
  });

  it('the bad cases are caught: an argument used but not declared, an unparsable file', () => {
    assert.throws(() => readLaunch(path.join('test', 'ros', 'fixtures', 'undeclared.launch.py')), /LaunchConfiguration\('front_topic'\) has no DeclareLaunchArgument/);
    assert.throws(() => readLaunch(path.join('test', 'ros', 'fixtures', 'broken.launch.xml')), /mismatched tag|not well-formed/);
  });

  it('the XML launch file starts the node exactly as the Python one', () => {
    const py = readLaunch(path.join('launch', 'autoprune_ros.launch.py'));
    const xml = readLaunch(path.join('launch', 'autoprune_ros.launch.xml'));
    assert.deepEqual(xml.args, py.args);
    const strip = (n: LaunchNode) => ({ package: n.package, executable: n.executable, name: n.name, namespace: n.namespace, ros_args: n.ros_args, remaps: n.remaps, env: n.env });
    assert.deepEqual(xml.nodes.map(strip), py.nodes.map(strip));
    const over = { namespace: '/car', node_name: 'vla', front_topic: '/cam/f', autostart: 'false' };
    assert.deepEqual(readLaunch(path.join('launch', 'autoprune_ros.launch.xml'), over).nodes.map(strip), readLaunch(path.join('launch', 'autoprune_ros.launch.py'), over).nodes.map(strip));
  });

  // The node each launch file starts, started here: the topics it must end up on.
  const expected: Record<string, { overrides?: Record<string, string>; fullName: string; subscribed: string[]; outputs?: Record<string, string> }> = {
    'autoprune_ros.launch.py': {
      overrides: { namespace: 'car', node_name: 'vla', front_topic: '/camera/front/image_raw', instruction_topic: '/vla/instruction' },
      fullName: '/car/vla',
      subscribed: ['/camera/front/image_raw', '/car/vla/input/front_left/image', '/car/vla/input/front_right/image', '/vla/instruction'],
    },
    'carla.launch.py': {
      fullName: '/autoprune_ros',
      subscribed: ['/carla/ego_vehicle/instruction', '/carla/ego_vehicle/rgb_front/image', '/carla/ego_vehicle/rgb_left/image', '/carla/ego_vehicle/rgb_right/image'],
      outputs: { path: '/carla/ego_vehicle/waypoints' },
    },
    'carla_leaderboard.launch.py': {
      fullName: '/autoprune_ros',
      subscribed: ['/autoprune_ros/input/instruction', '/carla/hero/front/image', '/carla/hero/front_left/image', '/carla/hero/front_right/image'],
    },
    'autoware.launch.py': {
      fullName: '/planning/autoprune_ros',
      subscribed: ['/localization/kinematic_state', '/planning/autoprune_ros/input/instruction', '/sensing/camera/front/image_rect_color', '/sensing/camera/front_left/image_rect_color', '/sensing/camera/front_right/image_rect_color'],
      outputs: { autoware_trajectory: '/planning/scenario_planning/trajectory' },
    },
  };
  for (const [file, want] of Object.entries(expected)) {
    it(`${file}: the node comes up active on the intended topics (stand-in, real engine)`, async () => {
      const l = readLaunch(path.join('launch', file), want.overrides);
      const n = l.nodes.find((x) => x.executable === 'autoprune_ros_node') as LaunchNode;
      const s = createStandin();
      const signals = new EventEmitter();
      const running = await runNode({ rcl: s.rcl, argv: commandLine(n), signals, log: silent });
      try {
        const node = s.nodes[0] as StandinLifecycleNode;
        assert.equal(node.fullName, want.fullName);
        assert.equal(stateOf(node.currentState).label, 'active');
        assert.deepEqual(node.subscribedTopics(), [...want.subscribed].sort());
        for (const [out, topic] of Object.entries(want.outputs ?? {})) assert.equal(node.resolve(`~/output/${out}`), topic);
        assert.equal(running.runner.config.engine.modelPath, l.args.model_path, 'the launch file\'s model_path wins over the file\'s');
        if (file.startsWith('carla')) assert.equal(running.runner.config.raw.camera_reliability, 'reliable', 'the bridge publishes reliable');
      } finally {
        signals.emit('SIGINT', 'SIGINT');
        await running.closed;
      }
      assert.deepEqual(s.open(), { subscriptions: 0, publishers: 0, timers: 0 });
    });
  }
});
