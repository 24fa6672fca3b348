import assert from 'node:assert/strict';
import path from 'node:path';

import sharp from 'sharp';

import { Engine, type InferInput, type InferOutput } from '../../src/engine/engine.js';
import { VlaNodeLogic, type NodeParams, type EngineLike } from '../../src/pipeline/node.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import { nodeParams } from '../node-params.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { requireBuilt, syntheticFrame, testModels } from './helpers.js';

const codec = new MessageCodec();
const CAMS = ['front', 'front_left', 'front_right'];
const W = 48;
const H = 36;

function params(over: Partial<NodeParams> = {}): NodeParams {
  return nodeParams(CAMS, '/image', { ...over });
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

  it('6 cameras at 30 Hz for 3 simulated minutes (tiny-6cam): every output decodes, is stamped with its set, in order; memory flat', async function () {
    this.timeout(600_000);
    const cams6 = ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'];
    const e6 = await Engine.load(path.join(testModels, 'tiny-6cam'), { backend: 'cpu' });
    const v8 = await import('node:v8');
    const vm = await import('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    try {
      const port = new InMemoryPort(1_000_000_000n);
      port.keepPublished = 16; // outputs are checked as they are published, not kept
      port.inject('~/input/instruction', 'std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: 'turn left at the next intersection' }), true);
      const node = new VlaNodeLogic(port, e6, params({ cameras: cams6.map((camera) => ({ camera, topic: `/cam/${camera}/image`, type: 'sensor_msgs/msg/Image' as const })) }), codec);
      node.start(); // the latched instruction reaches the late joiner
      assert.equal(node.currentInstruction, 'turn left at the next intersection');
      const frames = cams6.map((_, i) => syntheticFrame(W, H, i)); // pixels reused: the test measures the node, not the generator
      const enc = (t: bigint, i: number) =>
        codec.encode('sensor_msgs/msg/Image', { header: { stamp: { sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) }, frame_id: 'cam' }, height: H, width: W, encoding: 'rgb8', is_bigendian: 0, step: W * 3, data: frames[i] });
      // Every output decodes and carries the stamp of the set it came from, in order.
      const expected: bigint[] = [];
      const seen = { path: 0, trajectory: 0, metrics: 0, diagWarn: 0 };
      port.onPublish = (m) => {
        if (m.topic === '/diagnostics') {
          const d = codec.decode<{ status: Array<{ level: number }> }>(m.type, m.cdr);
          if (d.status[0]!.level !== 0) seen.diagWarn++;
          return;
        }
        const key = m.topic === '~/output/path' ? 'path' : m.topic === '~/output/trajectory' ? 'trajectory' : 'metrics';
        const msg = codec.decode<{ header: { stamp: { sec: number; nanosec: number }; frame_id: string }; instruction?: string; visual_tokens_in?: number; poses?: unknown[] }>(m.type, m.cdr);
        assert.equal(stampOf(msg.header), expected[seen[key]], `${key} ${seen[key]}`);
        assert.equal(msg.header.frame_id, 'base_link');
        if (key === 'trajectory') assert.equal(msg.instruction, 'turn left at the next intersection');
        if (key === 'metrics') assert.equal(msg.visual_tokens_in, 6 * 16);
        if (key === 'path') assert.equal(msg.poses!.length, 6);
        seen[key]++;
      };
      const N = 30 * 180;
      let heapEarly = 0;
      for (let k = 0; k < N; k++) {
        const t = port.now();
        for (const [i, c] of cams6.entries()) port.inject(`/cam/${c}/image`, 'sensor_msgs/msg/Image', enc(t + BigInt(i) * 1_000_000n, i));
        expected.push(t + 5_000_000n);
        port.advance(1000 / 30);
        await node.busy;
        assert.ok(node.heldFrames <= cams6.length * 4);
        if (k === 999) {
          gc();
          heapEarly = process.memoryUsage().heapUsed;
        }
      }
      await node.stop();
      gc();
      // the expected-stamp list (8 bytes a set) is the test's own growth
      const growthMb = (process.memoryUsage().heapUsed - heapEarly) / 2 ** 20;
      assert.deepEqual(seen, { path: N, trajectory: N, metrics: N, diagWarn: 0 });
      assert.equal(node.counters.badInput, 0);
      assert.equal(node.counters.failed, 0);
      assert.ok(growthMb < 4, `heap grew ${growthMb.toFixed(2)} MB over ${N - 1000} sets`);
    } finally {
      await e6.dispose();
    }
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
    const before = node.counters.badInput;
    inject('front', imageCdr(t - 1_000_000n, 1)); // older than the frame already used: rejected
    assert.equal(node.counters.badInput, before + 1);
    assert.match(node.counters.lastError, /not newer than the last frame used/);
    port.advance(1000);
    const diag = decoded<{ status: Array<{ level: number; message: string }> }>(port, '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray').at(-1)!;
    assert.equal(diag.status[0]!.level, 1);
    assert.match(diag.status[0]!.message, /bad input 7/);
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
