import assert from 'node:assert/strict';
import path from 'node:path';

import sharp from 'sharp';

import { Engine, type InferInput, type InferOutput } from '../../src/native/engine.js';
import { VlaNodeLogic, type NodeParams, type EngineLike } from '../../src/pipeline/node.js';
import { MessageCodec } from '../../src/ros/codec.js';
import { InMemoryPort } from '../../src/ros/port.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { requireBuilt, syntheticFrame, testModels } from './helpers.js';

const codec = new MessageCodec();
const CAMS = ['front', 'front_left', 'front_right'];
const W = 48;
const H = 36;

function params(over: Partial<NodeParams> = {}): NodeParams {
  return {
    cameras: CAMS.map((camera) => ({ camera, topic: `/cam/${camera}/image`, type: 'sensor_msgs/msg/Image' as const })),
    instructionTopic: '~/input/instruction',
    defaultInstruction: 'follow the road',
    outputFrame: 'base_link',
    slopMs: 10,
    maxAgeMs: 200,
    missingCamera: 'wait',
    tickMs: 5,
    futureToleranceMs: 50,
    latencyWarnMs: 1000,
    maxInstructionChars: 512,
    modelName: 'tiny',
    ...over,
  };
}

function imageCdr(stampNs: bigint, seed: number, over: Record<string, unknown> = {}): Uint8Array {
  return codec.encode('sensor_msgs/msg/Image', {
    header: { stamp: { sec: Number(stampNs / 1_000_000_000n), nanosec: Number(stampNs % 1_000_000_000n) }, frame_id: 'cam' },
    height: H,
    width: W,
    encoding: 'rgb8',
    is_bigendian: 0,
    step: W * 3,
    data: syntheticFrame(W, H, seed),
    ...over,
  });
}

function decoded<T>(port: InMemoryPort, topic: string, type: string): T[] {
  return port.published.filter((m) => m.topic === topic).map((m) => codec.decode<T>(type, m.cdr));
}

const stampOf = (h: { stamp: { sec: number; nanosec: number } }) => BigInt(h.stamp.sec) * 1_000_000_000n + BigInt(h.stamp.nanosec);

describe('node logic over the in-memory port (addon, tiny model)', function () {
  let engine: Engine;
  before(async () => {
    requireBuilt();
    engine = await Engine.load(path.join(testModels, 'tiny'), { backend: 'cpu' });
  });
  after(async () => engine?.dispose());

  it('3 cameras at 30 Hz for 20 simulated seconds: every output decodes, is stamped with its set and in order', async () => {
    const port = new InMemoryPort(1_000_000_000n);
    port.inject('~/input/instruction', 'std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: 'turn left at the next intersection' }), true);
    const node = new VlaNodeLogic(port, engine, params(), codec);
    node.start(); // the latched instruction reaches the late joiner
    assert.equal(node.currentInstruction, 'turn left at the next intersection');
    const sent: bigint[] = [];
    for (let k = 0; k < 600; k++) {
      const t = port.now();
      for (const [i, c] of CAMS.entries()) port.inject(`/cam/${c}/image`, 'sensor_msgs/msg/Image', imageCdr(t + BigInt(i) * 1_000_000n, k * 3 + i));
      sent.push(t + 2_000_000n);
      port.advance(1000 / 30);
      await node.busy;
    }
    await node.stop();
    const paths = decoded<{ header: { stamp: { sec: number; nanosec: number }; frame_id: string }; poses: unknown[] }>(port, '~/output/path', 'nav_msgs/msg/Path');
    const trajs = decoded<{ header: { stamp: { sec: number; nanosec: number } }; instruction: string; waypoints: unknown[] }>(port, '~/output/trajectory', 'autoprune_ros_msgs/msg/Trajectory');
    const metrics = decoded<{ header: { stamp: { sec: number; nanosec: number } }; visual_tokens_in: number; total_ms: number }>(port, '~/output/metrics', 'autoprune_ros_msgs/msg/Metrics');
    assert.equal(paths.length, 600);
    assert.equal(trajs.length, 600);
    assert.equal(metrics.length, 600);
    for (let i = 0; i < 600; i++) {
      assert.equal(stampOf(paths[i]!.header), sent[i], `path ${i} stamped with its set's newest camera stamp`);
      assert.equal(stampOf(trajs[i]!.header), sent[i]);
      assert.equal(stampOf(metrics[i]!.header), sent[i]);
    }
    assert.equal(paths[0]!.header.frame_id, 'base_link');
    assert.equal(paths[0]!.poses.length, 6);
    assert.equal(trajs[0]!.instruction, 'turn left at the next intersection');
    assert.equal(metrics[0]!.visual_tokens_in, 48);
    assert.equal(node.counters.badInput, 0);
    assert.equal(node.counters.failed, 0);
    const diags = decoded<{ status: Array<{ level: number; message: string }> }>(port, '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray');
    assert.ok(diags.length >= 19);
  });

  it('a slow engine never builds a queue: the newest set wins and the rest are counted as dropped', async () => {
    const port = new InMemoryPort(1_000_000_000n);
    const node = new VlaNodeLogic(port, engine, params(), codec);
    node.start();
    let maxPending = 0;
    for (let k = 0; k < 300; k++) {
      const t = port.now();
      for (const [i, c] of CAMS.entries()) port.inject(`/cam/${c}/image`, 'sensor_msgs/msg/Image', imageCdr(t + BigInt(i) * 1_000_000n, k + i));
      port.advance(1000 / 30);
      if (k % 5 === 4) await node.busy; // the engine finishes one set per 5 frame periods
      maxPending = Math.max(maxPending, node.busy ? 1 : 0);
    }
    await node.stop();
    assert.ok(maxPending <= 1);
    assert.ok(node.counters.setsInferred >= 55 && node.counters.setsInferred <= 61, String(node.counters.setsInferred));
    assert.ok(node.counters.droppedStale + node.counters.droppedSuperseded > 600);
  });

  it('bad input is logged, counted, reported in diagnostics, and the node keeps running', async () => {
    const port = new InMemoryPort(5_000_000_000n);
    const node = new VlaNodeLogic(port, engine, params({ missingCamera: 'partial' }), codec);
    node.start();
    const t = port.now();
    const inject = (c: string, cdr: Uint8Array) => port.inject(`/cam/${c}/image`, 'sensor_msgs/msg/Image', cdr);
    inject('front', imageCdr(t, 1, { encoding: 'yuv422' }));
    inject('front', imageCdr(t, 1, { step: 10 }));
    inject('front', imageCdr(t, 1).subarray(0, 100)); // truncated CDR
    inject('front', imageCdr(t + 5_000_000_000n, 1)); // from the future
    const instr = (s: string) => port.inject('~/input/instruction', 'std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: s }));
    instr('   ');
    instr('x'.repeat(10_000));
    assert.equal(node.counters.badInput, 6);
    assert.equal(node.currentInstruction, 'follow the road');
    // good frames still flow, with one camera silent (partial policy)
    inject('front', imageCdr(t, 1));
    inject('front_left', imageCdr(t + 1_000_000n, 2));
    inject('front_left', imageCdr(t - 1_000_000_000n, 1)); // older than maxAgeMs: dropped as stale, not used
    port.advance(50);
    await node.busy;
    assert.equal(node.counters.setsInferred, 1);
    port.advance(1000);
    const diag = decoded<{ status: Array<{ level: number; message: string }> }>(port, '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray').at(-1)!;
    assert.equal(diag.status[0]!.level, 1);
    assert.match(diag.status[0]!.message, /bad input 6/);
    assert.match(diag.status[0]!.message, /camera 'front_right' silent/);
    await node.stop();
  });

  it('a corrupt JPEG on a CompressedImage topic and an engine error are counted failures, not crashes', async () => {
    const port = new InMemoryPort(5_000_000_000n);
    const cams = [{ camera: 'front', topic: '/cam/front/compressed', type: 'sensor_msgs/msg/CompressedImage' as const }];
    const node = new VlaNodeLogic(port, engine, params({ cameras: cams }), codec);
    node.start();
    const good = await sharp(Buffer.from(syntheticFrame(W, H, 3)), { raw: { width: W, height: H, channels: 3 } }).jpeg().toBuffer();
    const msg = (data: Uint8Array, t: bigint) => codec.encode('sensor_msgs/msg/CompressedImage', { header: { stamp: { sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) }, frame_id: 'cam' }, format: 'jpeg', data });
    port.inject('/cam/front/compressed', 'sensor_msgs/msg/CompressedImage', msg(good.subarray(0, good.length / 3), port.now()));
    port.advance(10);
    await node.busy;
    assert.equal(node.counters.failed, 1);
    assert.equal(node.counters.lastErrorCode, ErrorCodes.IMAGE_DECODE);
    port.inject('/cam/front/compressed', 'sensor_msgs/msg/CompressedImage', msg(good, port.now()));
    port.advance(10);
    await node.busy;
    assert.equal(node.counters.setsInferred, 1);
    await node.stop();

    const failing: EngineLike = {
      cameras: ['front'],
      infer: async (_: InferInput): Promise<InferOutput> => {
        throw new VlaError(ErrorCodes.OOM, 'simulated engine failure');
      },
    };
    const p2 = new InMemoryPort(5_000_000_000n);
    const n2 = new VlaNodeLogic(p2, failing, params({ cameras: cams }), codec);
    n2.start();
    for (let k = 0; k < 5; k++) {
      p2.inject('/cam/front/compressed', 'sensor_msgs/msg/CompressedImage', msg(good, p2.now()));
      p2.advance(10);
      await n2.busy;
    }
    assert.equal(n2.counters.failed, 5);
    assert.equal(n2.counters.lastErrorCode, ErrorCodes.OOM);
    await n2.stop();
  });
});
