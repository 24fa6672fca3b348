/**
 * The CARLA leaderboard side (src/carla/): road options to instructions, GNSS to the route's
 * frame, progress along a route, and the control node over the in-memory port: one
 * CarlaEgoVehicleControl per speedometer tick stamped with its time, from the plan through the
 * project's tracking controller (src/control/tracker.ts), a brake without a fresh plan. Then the
 * node itself over the rclnodejs stand-in with configs/carla_control.yaml.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import path from 'node:path';

import { CARLA_LINCOLN_MKZ, CARLA_TYPES, CarlaControlLogic, type CarlaControlParams } from '../../src/carla/control.js';
import { carlaControlParams } from '../../src/carla/params.js';
import { gnssToRouteFrame, instructionFor, ROAD_OPTION, RouteTracker } from '../../src/carla/route.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import { runCarlaControl } from '../../src/ros/carla-control-main.js';
import { INSTRUCTIONS } from '../../src/sample/scenario.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { root } from '../addon/helpers.js';
import { createStandin, type StandinLifecycleNode } from './rclnodejs-standin.js';

const codec = new MessageCodec();
const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as never;

/** CARLA's location-to-GNSS projection (leaderboard route_manipulation), the other way round. */
function toGnss(x: number, yNorth: number, ref: { latDeg: number; lonDeg: number }): { lat: number; lon: number } {
  const R = 6378137.0;
  const scale = Math.cos((ref.latDeg * Math.PI) / 180);
  let mx = (scale * ref.lonDeg * Math.PI * R) / 180;
  let my = scale * R * Math.log(Math.tan(((90 + ref.latDeg) * Math.PI) / 360));
  mx += x;
  my += yNorth; // CARLA's y points south: my -= carla_y, and the route frame's y is -carla_y
  return { lon: (mx * 180) / (Math.PI * R * scale), lat: (360 * Math.atan(Math.exp(my / (R * scale)))) / Math.PI - 90 };
}

const stamp = (ns: bigint) => ({ sec: Number(ns / 1_000_000_000n), nanosec: Number(ns % 1_000_000_000n) });
const quatYaw = (yaw: number) => ({ x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) });

/** 100 m east, a left turn around (100, 0), then 60 m north. */
function route(): Array<{ x: number; y: number; option: number }> {
  const pts = [];
  for (let x = 0; x <= 90; x += 10) pts.push({ x, y: 0, option: ROAD_OPTION.LANEFOLLOW });
  for (let a = 0; a <= 90; a += 30) pts.push({ x: 90 + 10 * Math.sin((a * Math.PI) / 180), y: 10 - 10 * Math.cos((a * Math.PI) / 180), option: ROAD_OPTION.LEFT });
  for (let y = 20; y <= 70; y += 10) pts.push({ x: 100, y, option: ROAD_OPTION.LANEFOLLOW });
  return pts;
}

describe('CARLA leaderboard control (ros)', () => {
  it('road options map to the bundled model\'s instructions; an unknown option is VLA_E_INPUT', () => {
    assert.equal(instructionFor(ROAD_OPTION.LEFT), INSTRUCTIONS.turn_left[0]);
    assert.equal(instructionFor(ROAD_OPTION.RIGHT), INSTRUCTIONS.turn_right[0]);
    assert.equal(instructionFor(ROAD_OPTION.CHANGELANELEFT), INSTRUCTIONS.change_left[0]);
    assert.equal(instructionFor(ROAD_OPTION.CHANGELANERIGHT), INSTRUCTIONS.change_right[0]);
    for (const o of [ROAD_OPTION.STRAIGHT, ROAD_OPTION.LANEFOLLOW, ROAD_OPTION.VOID]) assert.equal(instructionFor(o), INSTRUCTIONS.keep_lane[0]);
    assert.throws(() => instructionFor(7), (e) => e instanceof VlaError && e.code === ErrorCodes.INPUT && /road option 7/.test(e.message));
  });

  it('GNSS to the route frame inverts CARLA\'s projection (geo reference 0/0 and elsewhere) to the millimetre', () => {
    for (const ref of [{ latDeg: 0, lonDeg: 0 }, { latDeg: 49.0, lonDeg: 8.0 }]) {
      for (const [x, y] of [[0, 0], [123.4, -56.7], [-2000, 1500]] as const) {
        const g = toGnss(x, y, ref);
        const back = gnssToRouteFrame(g.lat, g.lon, ref);
        assert.ok(Math.abs(back.x - x) < 1e-3 && Math.abs(back.y - y) < 1e-3, `${JSON.stringify(ref)} ${x},${y} -> ${back.x},${back.y}`);
      }
    }
    assert.throws(() => gnssToRouteFrame(Number.NaN, 0, { latDeg: 0, lonDeg: 0 }), /finite/);
  });

  it('progress along a route: follow the road, the turn announced within the preview, done at the end', () => {
    const t = new RouteTracker(route(), 40);
    assert.equal(t.update(0, 0), ROAD_OPTION.LANEFOLLOW);
    assert.equal(t.update(30, 0.5), ROAD_OPTION.LANEFOLLOW, '60 m before the turn');
    assert.equal(t.update(60, -0.3), ROAD_OPTION.LEFT, '30 m before the turn');
    assert.equal(t.update(97, 5), ROAD_OPTION.LEFT, 'in the turn');
    assert.equal(t.update(100, 35), ROAD_OPTION.LANEFOLLOW, 'after it');
    t.update(100, 71);
    assert.ok(t.done);
    assert.throws(() => new RouteTracker([{ x: 0, y: 0, option: 4 }]), /at least two/);
  });

  function params(): CarlaControlParams {
    return carlaControlParams({});
  }

  it('one control per speedometer tick, stamped with it; brake without a plan; the plan followed (left curve: CARLA steer < 0); stale plan: brake', () => {
    const port = new InMemoryPort(0n);
    const p = params();
    const logic = new CarlaControlLogic(port, p, codec, silent);
    // the leaderboard publishes the route before the agent's nodes subscribe (transient local)
    const r = route();
    port.inject(p.routeTopic, CARLA_TYPES.route, codec.encode(CARLA_TYPES.route, { header: { stamp: stamp(0n), frame_id: 'map' }, road_options: Int8Array.from(r.map((q) => q.option)), poses: r.map((q) => ({ position: { x: q.x, y: q.y, z: 0 }, orientation: quatYaw(0) })) }), true);
    logic.start();
    const status = port.published.filter((m) => m.topic === p.statusTopic);
    assert.deepEqual(status.map((m) => codec.decode(CARLA_TYPES.status, m.cdr)), [{ data: true }]);
    const controls = () => port.published.filter((m) => m.topic === p.controlTopic).map((m) => codec.decode(CARLA_TYPES.control, m.cdr) as { header: { stamp: { sec: number; nanosec: number } }; throttle: number; steer: number; brake: number });
    let x = 0;
    let speed = 0;
    const tick = (tNs: bigint) => {
      port.inject(p.imuTopic, CARLA_TYPES.imu, codec.encode(CARLA_TYPES.imu, { header: { stamp: stamp(tNs), frame_id: 'hero/imu' }, orientation: quatYaw(0), orientation_covariance: new Float64Array(9), angular_velocity: { x: 0, y: 0, z: 0 }, angular_velocity_covariance: new Float64Array(9), linear_acceleration: { x: 0, y: 0, z: 0 }, linear_acceleration_covariance: new Float64Array(9) }));
      const g = toGnss(x, 0, p.geoReference);
      port.inject(p.gnssTopic, CARLA_TYPES.gnss, codec.encode(CARLA_TYPES.gnss, { header: { stamp: stamp(tNs), frame_id: 'hero/gnss' }, status: { status: 0, service: 1 }, latitude: g.lat, longitude: g.lon, altitude: 0, position_covariance: new Float64Array(9), position_covariance_type: 0 }));
      port.inject(p.speedometerTopic, CARLA_TYPES.speedometer, codec.encode(CARLA_TYPES.speedometer, { header: { stamp: stamp(tNs), frame_id: 'hero/speed' }, speed }));
    };
    const t0 = 5_000_000_000n;
    tick(t0);
    const [c0] = controls();
    assert.deepEqual(c0?.header.stamp, stamp(t0), 'stamped with the tick');
    assert.ok(c0!.brake > 0 && c0!.throttle === 0, 'no plan yet: brake');
    assert.equal(logic.currentInstruction, INSTRUCTIONS.keep_lane[0]);
    // a plan (camera stamp t0) that curves left at 5 m/s
    const wps = [0.5, 1, 1.5, 2, 2.5, 3].map((tS) => ({ time_from_start: { sec: Math.floor(tS), nanosec: Math.round((tS % 1) * 1e9) }, x_m: 5 * tS, y_m: 0.4 * tS * tS, yaw_rad: 0, has_yaw: false }));
    port.inject(p.trajectoryTopic, CARLA_TYPES.trajectory, codec.encode(CARLA_TYPES.trajectory, { header: { stamp: stamp(t0), frame_id: 'base_link' }, waypoints: wps, instruction: 'follow the road', model: 'm' }));
    for (let i = 1; i <= 10; i++) {
      speed = Math.min(5, speed + 0.2);
      x += speed * 0.05;
      tick(t0 + BigInt(i) * 50_000_000n);
    }
    const cs = controls();
    assert.equal(cs.length, 11, 'one control per tick');
    assert.deepEqual(cs.map((c) => c.header.stamp.nanosec), Array.from({ length: 11 }, (_, i) => (i * 50_000_000) % 1e9));
    const last = cs[cs.length - 1]!;
    assert.ok(last.throttle > 0 && last.brake === 0, `below the plan's speed: throttle (${JSON.stringify(last)})`);
    assert.ok(last.steer < 0, `the plan curves left: CARLA steer (right-positive) < 0, got ${last.steer}`);
    // the plan outlives its horizon: brake
    tick(t0 + 4_000_000_000n);
    const stale = controls().pop()!;
    assert.ok(stale.brake > 0 && stale.throttle === 0, 'stale plan: brake');
    // 30 m before the turn: the instruction changes and is published latched
    x = 62;
    tick(t0 + 4_050_000_000n);
    assert.equal(logic.currentInstruction, INSTRUCTIONS.turn_left[0]);
    const instr = port.published.filter((m) => m.topic === p.instructionTopic).map((m) => (codec.decode(CARLA_TYPES.instruction, m.cdr) as { data: string }).data);
    assert.deepEqual(instr, [INSTRUCTIONS.keep_lane[0], INSTRUCTIONS.turn_left[0]]);
  });

  it('bad input is counted and the node goes on: a route whose lengths disagree, a tick that does not advance, a malformed plan, bytes that are not CDR', () => {
    const port = new InMemoryPort(0n);
    const p = params();
    const logic = new CarlaControlLogic(port, p, codec, silent);
    logic.start();
    port.inject(p.routeTopic, CARLA_TYPES.route, codec.encode(CARLA_TYPES.route, { header: { stamp: stamp(0n), frame_id: 'map' }, road_options: Int8Array.from([4]), poses: [{ position: { x: 0, y: 0, z: 0 }, orientation: quatYaw(0) }, { position: { x: 1, y: 0, z: 0 }, orientation: quatYaw(0) }] }));
    assert.match(logic.counters.lastError, /1 road options for 2 poses/);
    port.inject(p.imuTopic, CARLA_TYPES.imu, codec.encode(CARLA_TYPES.imu, { header: { stamp: stamp(1n), frame_id: '' }, orientation: quatYaw(0), orientation_covariance: new Float64Array(9), angular_velocity: { x: 0, y: 0, z: 0 }, angular_velocity_covariance: new Float64Array(9), linear_acceleration: { x: 0, y: 0, z: 0 }, linear_acceleration_covariance: new Float64Array(9) }));
    const sp = (t: bigint) => codec.encode(CARLA_TYPES.speedometer, { header: { stamp: stamp(t), frame_id: '' }, speed: 1 });
    port.inject(p.speedometerTopic, CARLA_TYPES.speedometer, sp(1_000_000_000n));
    port.inject(p.speedometerTopic, CARLA_TYPES.speedometer, sp(1_000_000_000n));
    assert.match(logic.counters.lastError, /does not advance/);
    port.inject(p.trajectoryTopic, CARLA_TYPES.trajectory, codec.encode(CARLA_TYPES.trajectory, { header: { stamp: stamp(1n), frame_id: '' }, waypoints: [{ time_from_start: { sec: 0, nanosec: 0 }, x_m: 1, y_m: 0, yaw_rad: 0, has_yaw: false }], instruction: '', model: '' }));
    assert.match(logic.counters.lastError, /VLA_E_INPUT: plan: waypoint times must increase/);
    port.inject(p.speedometerTopic, CARLA_TYPES.speedometer, Uint8Array.from([1, 2, 3]));
    assert.match(logic.counters.lastError, /VLA_E_CDR/);
    assert.equal(logic.counters.badInput, 4);
    port.inject(p.speedometerTopic, CARLA_TYPES.speedometer, sp(1_050_000_000n));
    assert.equal(logic.counters.controls, 2, 'still one control per good tick');
    logic.stop();
  });
  it('carla_control.yaml starts carla_control_node (stand-in), publishing the agent-ready status', async () => {
    const s = createStandin();
    const signals = new EventEmitter();
    const c = await runCarlaControl({ rcl: s.rcl, argv: ['node', 'carla', '--ros-args', '--params-file', path.join(root, 'configs', 'carla_control.yaml')], signals, log: silent });
    const node = s.nodes[0] as StandinLifecycleNode;
    assert.equal(node.fullName, '/carla_control');
    assert.deepEqual(node.subscribedTopics(), ['/autoprune_ros/output/trajectory', '/carla/hero/global_plan', '/carla/hero/gnss', '/carla/hero/imu', '/carla/hero/speed']);
    assert.deepEqual(s.published.map((m) => [m.topic, m.type]), [['/carla/hero/status', 'std_msgs/msg/Bool']]);
    signals.emit('SIGTERM', 'SIGTERM');
    await c.closed;
    assert.deepEqual(s.open(), { subscriptions: 0, publishers: 0, timers: 0 });
    // a value of the wrong ROS type is a coded error naming it
    const bad = createStandin();
    await assert.rejects(runCarlaControl({ rcl: bad.rcl, argv: ['node', 'carla', '--ros-args', '-p', 'preview_m:=40'], signals: new EventEmitter(), log: silent }), /VLA_E_PARAMS|preview_m.*double/);
  });
});
