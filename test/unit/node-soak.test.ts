import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';

import type { InferInput, InferOutput } from '../../src/engine/engine.js';
import { VlaNodeLogic, type EngineLike, type NodeParams } from '../../src/pipeline/node.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import { nodeParams } from '../node-params.js';

const codec = new MessageCodec();
const CAMS = ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'];

/** An engine whose cost is latency = 5 + 0.1 T ms (T: the token budget it is given). */
class FakeEngine implements EngineLike {
  readonly cameras = CAMS;
  budgets: number[] = [];
  instructions: string[] = [];
  async infer(input: InferInput): Promise<InferOutput> {
    this.instructions.push(input.instruction);
    const T = input.prune?.budget?.value ?? 576 * 6;
    this.budgets.push(T);
    const totalMs = 5 + 0.1 * Math.min(T, 576 * 6);
    return {
      head: 'waypoints',
      waypoints: [1, 2, 3, 4, 5, 6].map((i) => ({ tS: i * 0.5, x: i, y: 0 })),
      tokenIds: [],
      stopped: false,
      cameras: Object.keys(input.views),
      timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 1, visionMs: 1, prefillMs: totalMs - 3, headMs: 1, engineMs: totalMs, totalMs },
      tokens: { prompt: 100, visual: 96, text: 4, generated: 0 },
      prune: { policy: input.prune?.policy ?? 'none', nVisual: 576 * 6, kept: [T], merged: [0], keptPerView: [[T]], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: T, avgTokens: T, flops: 1, flopsUnpruned: 2, budgetMet: true },
    };
  }
}

function params(over: Partial<NodeParams> = {}): NodeParams {
  return nodeParams(CAMS, '', { defaultInstruction: 'keep lane', ...over });
}

// One small frame, re-stamped per set (the payload does not matter to the node's memory).
function frameCdr(t: bigint): Uint8Array {
  return codec.encode('sensor_msgs/msg/Image', {
    header: { stamp: { sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) }, frame_id: 'c' },
    height: 2, width: 2, encoding: 'rgb8', is_bigendian: 0, step: 6, data: new Uint8Array(12),
  });
}

async function drive(node: VlaNodeLogic, port: InMemoryPort, sets: number, onSet?: (k: number) => void): Promise<void> {
  for (let k = 0; k < sets; k++) {
    const t = port.now();
    for (const c of CAMS) port.inject(`/cam/${c}`, 'sensor_msgs/msg/Image', frameCdr(t));
    port.advance(1000 / 30);
    await node.busy;
    onSet?.(k);
  }
}

describe('node logic soak and deadline mode (fake engine)', () => {
  it('6 cameras, 10,000 frame sets: every set published, held frames bounded, memory flat', async function () {
    this.timeout(120_000);
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const port = new InMemoryPort(1_000_000_000n);
    port.keepPublished = 64; // the test's own record of outputs stays small
    const node = new VlaNodeLogic(port, new FakeEngine(), params(), codec);
    node.start();
    let heapAt2k = 0;
    let maxHeld = 0;
    await drive(node, port, 10_000, (k) => {
      maxHeld = Math.max(maxHeld, node.heldFrames);
      if (k === 1999) {
        gc();
        heapAt2k = process.memoryUsage().heapUsed;
      }
    });
    gc();
    const growthMb = (process.memoryUsage().heapUsed - heapAt2k) / 2 ** 20;
    await node.stop();
    assert.equal(node.counters.setsInferred, 10_000);
    assert.equal(node.counters.published, 10_000);
    assert.equal(node.counters.badInput, 0);
    assert.ok(maxHeld <= CAMS.length * 4, `held ${maxHeld}`);
    assert.ok(growthMb < 8, `heap grew ${growthMb.toFixed(2)} MB from set 2,000 to 10,000`);
  });

  it('deadline mode keeps the p95 latency under the deadline and reports it in the metrics', async () => {
    const port = new InMemoryPort(1_000_000_000n);
    const engine = new FakeEngine();
    const node = new VlaNodeLogic(port, engine, params({ deadlineMs: 40, prune: { policy: 'autoprune' } }), codec);
    node.start();
    await drive(node, port, 300);
    await node.stop();
    const settled = engine.budgets.slice(100).map((T) => 5 + 0.1 * Math.min(T, 3456));
    const p95 = [...settled].sort((a, b) => a - b)[Math.ceil(0.95 * settled.length) - 1] as number;
    assert.ok(p95 <= 40, `p95 ${p95}`);
    assert.ok((node.deadlineBudgetTokens ?? 0) > 250, `budget ${node.deadlineBudgetTokens}`);
    const m = codec.decode<{ budget_kind: string; budget_value: number; budget_met: boolean }>('autoprune_ros_msgs/msg/Metrics', port.published.filter((x) => x.topic === '~/output/metrics').at(-1)!.cdr);
    assert.equal(m.budget_kind, 'latency');
    assert.equal(m.budget_value, 40);
    assert.equal(m.budget_met, true);
  });
});

describe('node logic outputs and odometry (fake engine)', () => {
  it('puts the fresh ego speed into the prompt and publishes the Autoware trajectory when asked', async () => {
    const port = new InMemoryPort(1_000_000_000n);
    const engine = new FakeEngine();
    const node = new VlaNodeLogic(port, engine, params({ odometryTopic: '/odom', publishAutowareTrajectory: true }), codec);
    node.start();
    const odom = (vx: number) =>
      codec.encode('nav_msgs/msg/Odometry', {
        header: { stamp: { sec: 1, nanosec: 0 }, frame_id: 'odom' },
        child_frame_id: 'base_link',
        pose: { pose: { position: { x: 0, y: 0, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } }, covariance: new Float64Array(36) },
        twist: { twist: { linear: { x: vx, y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0 } }, covariance: new Float64Array(36) },
      });
    port.inject('/odom', 'nav_msgs/msg/Odometry', odom(5.24));
    await drive(node, port, 1);
    assert.equal(engine.instructions[0], 'keep lane (ego speed 5.2 m/s)');
    port.advance(500); // odometry now older than max_age_ms: left out
    await drive(node, port, 1);
    assert.equal(engine.instructions[1], 'keep lane');
    const traj = codec.decode<{ points: Array<{ longitudinal_velocity_mps: number; pose: { position: { x: number } } }> }>(
      'autoware_planning_msgs/msg/Trajectory',
      port.published.filter((m) => m.topic === '~/output/autoware_trajectory').at(-1)!.cdr,
    );
    assert.equal(traj.points.length, 6);
    assert.equal(traj.points[1]!.pose.position.x, 2);
    assert.ok(Math.abs(traj.points[1]!.longitudinal_velocity_mps - 2) < 1e-6); // 1 m in 0.5 s
    port.inject('/odom', 'nav_msgs/msg/Odometry', odom(Number.NaN));
    assert.equal(node.counters.badInput, 1);
    await node.stop();
  });
});
