/**
 * The CARLA leaderboard agent (carla/autoprune_agent.py), loaded without CARLA
 * (test/ros/carla_agent.py): its sensors pass the leaderboard's checks (types, counts, the 3 m
 * radius), its cameras are the bundled model's training cameras, and its ROS entry point is a
 * launch file of this package whose nodes listen on the topics the sensors become.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { parse as parseYaml } from 'yaml';

import { root } from '../addon/helpers.js';
import { readLaunch } from './launch.test.js';

interface Sensor {
  type: string;
  id: string;
  x?: number;
  y?: number;
  z?: number;
  yaw?: number;
  pitch?: number;
  width?: number;
  height?: number;
  fov?: number;
}
interface Agent {
  entry_point: string;
  ros_version: number;
  track: string;
  sensors: Sensor[];
  ros_entrypoint: { package: string; launch_file: string; parameters: Record<string, string> };
  intrinsics: number[];
}

function loadAgent(env: Record<string, string> = {}): Agent {
  const p = spawnSync('python3', [path.join(root, 'test', 'ros', 'carla_agent.py'), path.join(root, 'carla', 'autoprune_agent.py')], { encoding: 'utf8', env: { ...process.env, ...env } });
  assert.equal(p.status, 0, p.stderr);
  return JSON.parse(p.stdout) as Agent;
}

// leaderboard/autoagents/agent_wrapper.py (master): SENSORS_LIMITS and MAX_ALLOWED_RADIUS_SENSOR
const SENSORS_LIMITS: Record<string, number> = { 'sensor.camera.rgb': 8, 'sensor.lidar.ray_cast': 2, 'sensor.other.radar': 4, 'sensor.other.gnss': 1, 'sensor.other.imu': 1, 'sensor.opendrive_map': 1, 'sensor.speedometer': 1 };
const MAX_ALLOWED_RADIUS_SENSOR = 3.0;

describe('CARLA leaderboard agent (ros)', function () {
  this.timeout(60_000);
  it('declares sensors the leaderboard accepts on the SENSORS track, as a ROS 2 agent', () => {
    const a = loadAgent();
    assert.equal(a.entry_point, 'AutopruneAgent');
    assert.equal(a.ros_version, 2);
    assert.equal(a.track, 'SENSORS');
    const ids = a.sensors.map((s) => s.id);
    assert.equal(new Set(ids).size, ids.length, 'sensor ids are unique');
    const count: Record<string, number> = {};
    for (const s of a.sensors) {
      assert.ok(s.type in SENSORS_LIMITS && s.type !== 'sensor.opendrive_map', `${s.type} is allowed on SENSORS`);
      count[s.type] = (count[s.type] ?? 0) + 1;
      if (s.x !== undefined) assert.ok(Math.hypot(s.x, s.y ?? 0, s.z ?? 0) <= MAX_ALLOWED_RADIUS_SENSOR, `${s.id} within ${MAX_ALLOWED_RADIUS_SENSOR} m`);
    }
    for (const [t, n] of Object.entries(count)) assert.ok(n <= (SENSORS_LIMITS[t] as number), t);
    assert.deepEqual(Object.keys(count).sort(), ['sensor.camera.rgb', 'sensor.other.gnss', 'sensor.other.imu', 'sensor.speedometer']);
  });

  it('its cameras are the bundled model\'s: names, 70 deg, 320 x 180, yaws (CARLA right-positive), horizon row; intrinsics', () => {
    const a = loadAgent();
    const model = JSON.parse(readFileSync(path.join(root, 'assets', 'models', 'drive', 'config.json'), 'utf8')) as { vla: { cameras: string[] } };
    const cams = a.sensors.filter((s) => s.type === 'sensor.camera.rgb');
    assert.deepEqual(cams.map((c) => c.id).sort(), [...model.vla.cameras].sort());
    const yaw = Object.fromEntries(cams.map((c) => [c.id, c.yaw]));
    assert.deepEqual(yaw, { front: 0, front_left: -55, front_right: 55 });
    for (const c of cams) assert.deepEqual([c.fov, c.width, c.height, c.z], [70, 320, 180, 1.6]);
    const [fx, , cx, cy] = a.intrinsics as [number, number, number, number];
    assert.ok(Math.abs(fx - 160 / Math.tan((35 * Math.PI) / 180)) < 1e-9 && cx === 160 && cy === 90);
    // pitched down so the horizon falls on row 0.42 * 180, as the training renderer puts it
    const pitch = cams[0]!.pitch as number;
    assert.ok(Math.abs(90 + fx * Math.tan((pitch * Math.PI) / 180) - 0.42 * 180) < 1e-6, `pitch ${pitch}`);
  });

  it('its ROS entry point is this package\'s leaderboard launch file, whose nodes read the sensors\' topics', () => {
    const a = loadAgent({ AUTOPRUNE_MODEL: '/models/vla' });
    assert.equal(a.ros_entrypoint.package, 'autoprune_ros');
    const l = readLaunch(path.join('launch', a.ros_entrypoint.launch_file), a.ros_entrypoint.parameters);
    for (const k of Object.keys(a.ros_entrypoint.parameters)) assert.ok(k in l.args, `the agent passes ${k}:=, which the launch file declares`);
    const vla = l.nodes.find((n) => n.executable === 'autoprune_ros_node')!;
    assert.ok(vla.ros_args.includes('model_path:=/models/vla'), 'AUTOPRUNE_MODEL reaches the node');
    const cams = a.sensors.filter((s) => s.type === 'sensor.camera.rgb').map((s) => `/carla/hero/${s.id}/image`);
    assert.deepEqual(vla.remaps.map(([, to]) => to).sort(), cams.sort());
    // carla_control_node's inputs are the other sensors: /carla/hero/<id>
    const ctl = l.nodes.find((n) => n.executable === 'carla_control_node')!;
    const file = ctl.ros_args[ctl.ros_args.indexOf('--params-file') + 1] as string;
    const p = (parseYaml(readFileSync(file, 'utf8')) as Record<string, { ros__parameters: Record<string, string> }>)['/**']!.ros__parameters;
    const id = (type: string) => a.sensors.find((s) => s.type === type)!.id;
    assert.equal(p.speedometer_topic, `/carla/hero/${id('sensor.speedometer')}`);
    assert.equal(p.imu_topic, `/carla/hero/${id('sensor.other.imu')}`);
    assert.equal(p.gnss_topic, `/carla/hero/${id('sensor.other.gnss')}`);
    assert.equal(p.control_topic, '/carla/hero/vehicle_control_cmd');
    assert.equal(p.status_topic, '/carla/hero/status');
    assert.equal(p.route_topic, '/carla/hero/global_plan');
  });
});
