/**
 * The real src/ros/main.ts and rclnodejs-port.ts, driven through a stand-in of rclnodejs
 * (test/ros/rclnodejs-standin.ts, typed against rclnodejs' declarations) with the real engine on
 * the tiny test models: the command line and parameter file as a launch file passes them,
 * lifecycle transitions by the node itself and by a lifecycle manager, parameter changes
 * between frames (a model_path change runs the new engine), raw subscriptions and publishing on
 * remapped names, and SIGINT with nothing left open.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { Engine } from '../../src/engine/engine.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { OUTPUT_TYPES } from '../../src/msgs/convert.js';
import { LIFECYCLE_STATE, runNode, stateOf, type RunningNode } from '../../src/ros/main.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { requireBuilt, syntheticFrame, testModels } from '../addon/helpers.js';
import { createStandin, type Standin, type StandinLifecycleNode } from './rclnodejs-standin.js';

const codec = new MessageCodec();
const CAMS = ['front', 'front_left', 'front_right'];
const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as never;

/** A parameter file as configs/ writes them: under `/**`, doubles with a decimal point. */
function paramsFile(dir: string, model: string, extra = ''): string {
  const f = path.join(dir, `params-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    f,
    `/**:
  ros__parameters:
    model_path: ${model}
    backend: cpu
    threads: 1
    camera_names: [front, front_left, front_right]
    camera_topics: [~/input/front/image, ~/input/front_left/image, ~/input/front_right/image]
    slop_ms: 10.0
    max_age_ms: 200.0
    future_tolerance_ms: 50.0
${extra}`,
  );
  return f;
}

function imageCdr(stampNs: bigint, seed: number): Uint8Array {
  return codec.encode('sensor_msgs/msg/Image', { header: { stamp: { sec: Number(stampNs / 1_000_000_000n), nanosec: Number(stampNs % 1_000_000_000n) }, frame_id: 'cam' }, height: 36, width: 48, encoding: 'rgb8', is_bigendian: 0, step: 144, data: syntheticFrame(48, 36, seed) });
}

/** One camera set on the node's (resolved) camera topics, then time for the node's tick. */
function injectSet(s: Standin, topics: string[], seed: number): void {
  const now = nowOf(s);
  for (const [i, topic] of topics.entries()) assert.equal(s.inject(topic, 'sensor_msgs/msg/Image', imageCdr(now, seed + i)), 1, `one subscriber on ${topic}`);
  s.advance(10);
}

function nowOf(s: Standin): bigint {
  return (s.nodes[0] as StandinLifecycleNode).now().nanoseconds;
}

function trajectories(s: Standin, topic: string): Array<{ model: string }> {
  return s.published.filter((m) => m.topic === topic).map((m) => codec.decode(OUTPUT_TYPES.trajectory, m.cdr));
}

describe('ROS 2 node (src/ros/main.ts) over an rclnodejs stand-in, real engine (ros)', function () {
  this.timeout(120_000);
  let tmp: string;
  const tiny = () => path.join(testModels, 'tiny');
  const f16 = () => path.join(testModels, 'tiny-f16');
  before(() => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-rosnode-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('starts as a launch file starts it (name, namespace, remaps, params file), runs, reloads on model_path, survives deactivate/activate, and SIGINT leaves nothing open', async () => {
    const s = createStandin();
    const signals = new EventEmitter();
    const argv = ['node', 'main.js', '--ros-args', '-r', '__node:=vla', '-r', '__ns:=/car', '--params-file', paramsFile(tmp, tiny()), '-r', '~/input/front/image:=/cams/front', '-r', '~/output/trajectory:=/planning/vla_trajectory'];
    const running: RunningNode = await runNode({ rcl: s.rcl, argv, signals, log: silent });
    const node = s.nodes[0] as StandinLifecycleNode;
    assert.ok(s.signalHandlersRemoved(), 'rclnodejs SIGINT handler removed: the node shuts down itself');
    assert.equal(node.fullName, '/car/vla');
    assert.ok(node.spinning);
    assert.deepEqual(node.history, [['configure', 'inactive'], ['activate', 'active']], 'autostart configures and activates');
    const camTopics = ['/cams/front', '/car/vla/input/front_left/image', '/car/vla/input/front_right/image'];
    assert.deepEqual(node.subscribedTopics(), [...camTopics, '/car/vla/input/instruction'].sort());

    injectSet(s, camTopics, 1);
    await running.runner.node?.busy;
    assert.deepEqual(trajectories(s, '/planning/vla_trajectory').map((t) => t.model), [tiny()]);
    assert.ok(s.published.some((m) => m.topic === '/car/vla/output/path' && m.type === 'nav_msgs/msg/Path'));
    assert.ok(s.published.some((m) => m.topic === '/car/vla/output/metrics' && m.type === 'autoprune_ros_msgs/msg/Metrics'));

    // parameter changes as `ros2 param set` makes them: a model_path change loads, swaps, disposes
    const first = running.runner.engine as Engine;
    const [r1] = node.setParameters([new s.rcl.Parameter('model_path', 4 as never, f16())]);
    assert.equal(r1.successful, true, r1.reason);
    await running.runner.settled();
    assert.notEqual(running.runner.engine, first);
    assert.ok(first.disposed, 'the old engine is disposed');
    injectSet(s, camTopics, 2);
    await running.runner.node?.busy;
    assert.deepEqual(trajectories(s, '/planning/vla_trajectory').map((t) => t.model), [tiny(), f16()]);
    // refused: a read-only parameter, a camera the model lacks, a value of the wrong ROS type
    assert.match(node.setParameters([new s.rcl.Parameter('autostart', 1 as never, false)])[0].reason, /readonly/);
    const bad = node.setParameters([new s.rcl.Parameter('camera_names', 9 as never, ['front', 'front_left', 'rear'])])[0];
    assert.equal(bad.successful, false);
    assert.match(bad.reason, new RegExp(ErrorCodes.INPUT));
    assert.equal(node.setParameters([new s.rcl.Parameter('slop_ms', 2 as never, 20n)])[0].successful, false, 'an integer for a double is refused');
    assert.equal(node.setParameters([new s.rcl.Parameter('slop_ms', 3 as never, 15)])[0].successful, true);
    assert.equal(node.setParameters([new s.rcl.Parameter('use_sim_time', 1 as never, true)])[0].successful, true, 'rclnodejs\' own parameters are not ours to refuse');
    await running.runner.settled();
    assert.equal(running.runner.config.node.slopMs, 15);

    // a lifecycle manager deactivates and activates: subscriptions and timers go and come back, publishers are not duplicated
    const openActive = node.stats();
    assert.equal(node.changeStateService('deactivate'), true);
    await running.runner.settled();
    assert.deepEqual({ ...node.stats(), publishers: 0 }, { subscriptions: 0, publishers: 0, timers: 0 });
    assert.equal(node.changeStateService('activate'), true);
    assert.deepEqual(node.stats(), openActive);
    assert.equal(node.changeStateService('configure'), false, 'configure is no transition from active');

    signals.emit('SIGINT', 'SIGINT');
    await running.closed;
    assert.equal(stateOf(node.currentState).id, LIFECYCLE_STATE.finalized);
    assert.deepEqual(s.open(), { subscriptions: 0, publishers: 0, timers: 0 }, 'nothing left open');
    assert.ok(node.destroyed && !s.initialized(), 'node destroyed, rclnodejs shut down');
    assert.ok((running.runner.engine as Engine).disposed, 'engine disposed');
    assert.equal(signals.listenerCount('SIGINT') + signals.listenerCount('SIGTERM'), 0);
  });

  it('autostart:=false waits unconfigured; a lifecycle manager configures, activates and shuts it down', async () => {
    const s = createStandin();
    const signals = new EventEmitter();
    const running = await runNode({ rcl: s.rcl, argv: ['node', 'main.js', '--ros-args', '--params-file', paramsFile(tmp, tiny()), '-p', 'autostart:=false'], signals, log: silent });
    const node = s.nodes[0] as StandinLifecycleNode;
    assert.equal(stateOf(node.currentState).label, 'unconfigured');
    assert.deepEqual(node.stats(), { subscriptions: 0, publishers: 0, timers: 0 }, 'nothing subscribed before activate');
    assert.equal(node.changeStateService('activate'), false, 'activate needs configure first');
    assert.equal(node.changeStateService('configure'), true);
    assert.equal(node.changeStateService('activate'), true);
    assert.equal(node.subscribedTopics().length, 4);
    injectSet(s, CAMS.map((c) => `/autoprune_ros/input/${c}/image`), 3);
    await running.runner.node?.busy;
    assert.equal(trajectories(s, '/autoprune_ros/output/trajectory').length, 1);
    assert.equal(node.changeStateService('deactivate'), true);
    assert.equal(node.changeStateService('cleanup'), true);
    assert.equal(node.changeStateService('configure'), true, 'configure after cleanup is immediate (the engine stayed loaded)');
    assert.equal(node.changeStateService('shutdown'), true);
    await running.closed;
    assert.equal(stateOf(node.currentState).label, 'finalized');
    assert.deepEqual(s.open(), { subscriptions: 0, publishers: 0, timers: 0 });
    assert.ok((running.runner.engine as Engine).disposed);
  });

  it('bad start-up input is a coded error, with nothing left open: a double written as an integer, a missing model, a key rclnodejs does not read', async () => {
    const cases: Array<[string[], RegExp, string]> = [
      [['--params-file', paramsFile(tmp, tiny(), '    latency_warn_ms: 150\n')], /parameter 'latency_warn_ms' must be of ROS type double \(a double: write 20\.0, not 20\)/, ErrorCodes.PARAMS],
      [['--params-file', paramsFile(tmp, path.join(tmp, 'no-such-model'))], /no-such-model/, ErrorCodes.IO],
      // launch_ros writes dict parameters under the node's full name; rclnodejs reads only '/**' and the bare name
      [['-p', '/autoprune_ros:model_path:=/m'], /missing parameter 'model_path'/, ErrorCodes.PARAMS],
    ];
    for (const [args, re, code] of cases) {
      const s = createStandin();
      await assert.rejects(runNode({ rcl: s.rcl, argv: ['node', 'main.js', '--ros-args', ...args], signals: new EventEmitter(), log: silent }), (e: unknown) => {
        assert.ok(e instanceof VlaError, String(e));
        assert.equal(e.code, code, e.message);
        assert.match(e.message, re);
        return true;
      });
      assert.deepEqual(s.open(), { subscriptions: 0, publishers: 0, timers: 0 });
      assert.ok(!s.initialized() && (s.nodes[0]?.destroyed ?? true));
    }
  });
});
