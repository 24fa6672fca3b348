/**
 * The node and its messages against hostile input (issue 16, classes 6-10), with a fake engine:
 * published text survives non-ASCII, a plan that is not finite is never published, an inference
 * that overruns its deadline is reported and the node goes on, input every frame would refuse is
 * refused once at receipt, and parameters the engine cannot take are refused by the schema.
 */
import { strict as assert } from 'node:assert';

import { MessageWriter } from '@foxglove/rosmsg2-serialization';
import { parse } from '@foxglove/rosmsg';

import type { InferInput, InferOutput, Waypoint } from '../../src/engine/engine.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { autowareTrajectoryMsg, decodeImage, diagnosticsMsg, metricsMsg, OUTPUT_TYPES, pathMsg, trajectoryMsg } from '../../src/msgs/convert.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import { checkDistinctTopics, VlaNodeLogic, type EngineLike } from '../../src/pipeline/node.js';
import { configFromParams } from '../../src/pipeline/params.js';
import { ErrorCodes, isVlaError, VlaError } from '../../src/util/errors.js';
import { nodeParams } from '../node-params.js';

const codec = new MessageCodec();
const CAMS = ['front', 'left'];
const TEXTS = ['交差点で左折', 'Überhol nicht — bleib rechts', 'straße 🚗 ok', 'ascii only', '', 'a\u0000b', '\ud83d lone surrogate'];

function output(waypoints: Waypoint[], over: Partial<InferOutput> = {}): InferOutput {
  return {
    head: 'waypoints',
    waypoints,
    tokenIds: [],
    stopped: true,
    cameras: CAMS,
    timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 1 },
    tokens: { prompt: 1, visual: 2, text: 1, generated: 0 },
    prune: { policy: 'none', nVisual: 2, kept: [2], merged: [0], keptPerView: [[1, 1]], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 2, avgTokens: 2, flops: 1, flopsUnpruned: 1, budgetMet: true },
    memory: { peakActivationBytes: 0, prefillHostReads: 0 },
    ...over,
  };
}

class FakeEngine implements EngineLike {
  readonly cameras = CAMS;
  plan: Waypoint[] = [1, 2, 3].map((i) => ({ tS: i * 0.5, x: i, y: 0 }));
  hang = false;
  instructions: string[] = [];
  async infer(input: InferInput): Promise<InferOutput> {
    this.instructions.push(input.instruction);
    if (this.hang) await new Promise((r) => setTimeout(r, 400));
    return output(this.plan);
  }
  checkInstruction(text: string): void {
    if (text.includes('<image>')) throw new VlaError(ErrorCodes.INPUT, 'instruction contains the image token <image>');
  }
}

function frame(t: bigint, encoding = 'rgb8'): Uint8Array {
  return codec.encode('sensor_msgs/msg/Image', { header: { stamp: { sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) }, frame_id: 'c' }, height: 2, width: 2, encoding, is_bigendian: 0, step: 6, data: new Uint8Array(12) });
}

async function set(node: VlaNodeLogic, port: InMemoryPort, encoding = 'rgb8'): Promise<void> {
  const t = port.now();
  for (const c of CAMS) port.inject(`/cam/${c}`, 'sensor_msgs/msg/Image', frame(t, encoding));
  port.advance(20);
  await node.busy;
}

const published = (port: InMemoryPort, type: string) => port.published.filter((m) => m.type === type).map((m) => codec.decode<Record<string, unknown>>(type, m.cdr));

describe('hostile input to the node (issue 16)', () => {
  describe('published text is whole (class 9)', () => {
    const wps: Waypoint[] = [{ tS: 0.5, x: 1, y: 0.1, yaw: 0.2 }];
    for (const text of TEXTS) {
      it(`every message type we write round-trips ${JSON.stringify(text)}`, () => {
        const expect = new TextDecoder().decode(new TextEncoder().encode(text)); // a lone surrogate becomes U+FFFD, as rmw's UTF-8 does
        const msgs: Array<[string, unknown, (m: Record<string, unknown>) => string[]]> = [
          ['std_msgs/msg/String', { data: text }, (m) => [m.data as string]],
          [OUTPUT_TYPES.path, pathMsg(1n, text, wps), (m) => [(m.header as { frame_id: string }).frame_id, ...(m.poses as Array<{ header: { frame_id: string } }>).map((p) => p.header.frame_id)]],
          [OUTPUT_TYPES.trajectory, trajectoryMsg(1n, text, wps, text, text), (m) => [(m.header as { frame_id: string }).frame_id, m.instruction as string, m.model as string]],
          [OUTPUT_TYPES.autoware, autowareTrajectoryMsg(1n, text, wps), (m) => [(m.header as { frame_id: string }).frame_id]],
          [OUTPUT_TYPES.metrics, metricsMsg(1n, text, { ...output(wps), cameras: [text, text] }, { sensorToPublishMs: 1, budgetMet: true, framesDropped: 0, framesFailed: 0 }), (m) => [(m.header as { frame_id: string }).frame_id, ...(m.views as string[])]],
          [OUTPUT_TYPES.diagnostics, diagnosticsMsg(1n, { name: text, hardwareId: text, reasons: [text], values: [[text, text]] }), (m) => {
            const s = (m.status as Array<{ name: string; message: string; hardware_id: string; values: Array<{ key: string; value: string }> }>)[0];
            return s ? [s.name, s.message, s.hardware_id, s.values[0]?.key ?? '', s.values[0]?.value ?? ''] : [];
          }],
        ];
        for (const [type, msg, strings] of msgs) {
          const got = strings(codec.decode(type, codec.encode(type, msg)));
          assert.ok(got.length > 0);
          for (const g of got) assert.equal(g, expect, type);
        }
      });
    }

    it("byte for byte the library writer's output where the text is ASCII (the writer replaced only strings)", () => {
      const wps: Waypoint[] = [{ tS: 0.5, x: 1, y: 0.1 }, { tS: 1, x: 2.5, y: -0.25, yaw: 0.1 }];
      const msgs: Array<[string, unknown]> = [
        ['std_msgs/msg/String', { data: 'keep lane' }],
        [OUTPUT_TYPES.path, pathMsg(123n, 'base_link', wps)],
        [OUTPUT_TYPES.trajectory, trajectoryMsg(123n, 'base_link', wps, 'turn left', 'tiny')],
        [OUTPUT_TYPES.autoware, autowareTrajectoryMsg(123n, 'map', wps)],
        [OUTPUT_TYPES.metrics, metricsMsg(123n, 'base_link', output(wps), { sensorToPublishMs: 12.5, budgetMet: false, framesDropped: 3, framesFailed: 1 })],
        [OUTPUT_TYPES.diagnostics, diagnosticsMsg(5n, { name: 'n', hardwareId: 'h', reasons: ['a', 'b'], values: [['k', 1]] })],
        ['sensor_msgs/msg/Image', { header: { stamp: { sec: 1, nanosec: 2 }, frame_id: 'c' }, height: 1, width: 3, encoding: 'mono8', is_bigendian: 0, step: 3, data: new Uint8Array([1, 2, 3]) }],
        ['nav_msgs/msg/Odometry', { header: { stamp: { sec: 1, nanosec: 2 }, frame_id: 'odom' }, child_frame_id: 'base_link', pose: { pose: { position: { x: 1, y: 2, z: 3 }, orientation: { x: 0, y: 0, z: 0, w: 1 } }, covariance: new Array(36).fill(0.5) }, twist: { twist: { linear: { x: 1, y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0.1 } }, covariance: new Array(36).fill(0) } }],
      ];
      for (const [type, msg] of msgs) {
        const lib = new MessageWriter(parse(codec.definitionText(type), { ros2: true })).writeMessage(msg);
        assert.deepEqual(Buffer.from(codec.encode(type, msg)), Buffer.from(lib), type);
      }
    });

    it('the node publishes a non-ASCII instruction whole in its trajectory', async () => {
      const port = new InMemoryPort(1_000_000_000n);
      const node = new VlaNodeLogic(port, new FakeEngine(), nodeParams(CAMS, ''), codec);
      node.start();
      port.inject('~/input/instruction', 'std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: '交差点で左折' }), true);
      await set(node, port);
      await node.stop();
      const traj = published(port, OUTPUT_TYPES.trajectory);
      assert.ok(traj.length > 0);
      assert.equal(traj.at(-1)?.instruction, '交差点で左折');
    });
  });

  describe('never a non-finite or empty plan (class 7)', () => {
    for (const [name, plan] of [['NaN', [{ tS: 0.5, x: NaN, y: 0 }]], ['Inf', [{ tS: 0.5, x: 1, y: Infinity }]], ['yaw NaN', [{ tS: 0.5, x: 1, y: 0, yaw: NaN }]], ['empty', []]] as Array<[string, Waypoint[]]>) {
      it(`a ${name} plan is a failed frame (VLA_E_OUTPUT), and nothing is published for it`, async () => {
        const port = new InMemoryPort(1_000_000_000n);
        const engine = new FakeEngine();
        engine.plan = plan;
        const node = new VlaNodeLogic(port, engine, nodeParams(CAMS, ''), codec);
        const failures: VlaError[] = [];
        node.onFailure = (_s, e) => failures.push(e);
        node.start();
        await set(node, port);
        await node.stop();
        assert.equal(published(port, OUTPUT_TYPES.path).length, 0);
        assert.equal(published(port, OUTPUT_TYPES.trajectory).length, 0);
        assert.equal(node.counters.failed, 1);
        assert.equal(failures[0]?.code, ErrorCodes.OUTPUT);
      });
    }
  });

  describe('a stalled inference (class 6)', () => {
    it('past inference_timeout_ms the frame is reported failed (VLA_E_TIMEOUT) and the node keeps its timers', async () => {
      const port = new InMemoryPort(1_000_000_000n);
      const engine = new FakeEngine();
      engine.hang = true;
      const node = new VlaNodeLogic(port, engine, nodeParams(CAMS, '', { inferenceTimeoutMs: 50 }), codec);
      const failures: VlaError[] = [];
      node.onFailure = (_s, e) => failures.push(e);
      node.start();
      await set(node, port);
      assert.equal(failures[0]?.code, ErrorCodes.TIMEOUT);
      // the node still answers: diagnostics say why, while the late inference runs on
      port.advance(1000);
      const diag = published(port, OUTPUT_TYPES.diagnostics).at(-1) as { status: Array<{ level: number; message: string }> };
      assert.equal(diag.status[0]?.level, 1);
      assert.match(diag.status[0]?.message ?? '', /overran inference_timeout_ms/);
      await set(node, port);
      assert.equal(engine.instructions.length, 1, 'no second inference is queued behind the stalled one');
      await new Promise((r) => setTimeout(r, 450));
      engine.hang = false;
      await set(node, port);
      assert.equal(published(port, OUTPUT_TYPES.path).length, 1, 'once the engine is free, the next set is inferred and published');
      await node.stop();
    });
  });

  describe('input every frame would refuse is refused once (class 8, class 10)', () => {
    it('an instruction holding the image token is refused at receipt, counted, and the previous one kept', async () => {
      const port = new InMemoryPort(1_000_000_000n);
      const engine = new FakeEngine();
      const node = new VlaNodeLogic(port, engine, nodeParams(CAMS, '', { defaultInstruction: 'keep lane' }), codec);
      node.start();
      port.inject('~/input/instruction', 'std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: 'go <image> left' }), true);
      assert.equal(node.currentInstruction, 'keep lane');
      assert.ok(node.counters.badInput >= 1);
      assert.equal(node.counters.lastErrorCode, ErrorCodes.INPUT);
      await set(node, port);
      await node.stop();
      assert.equal(node.counters.failed, 0);
      assert.deepEqual(engine.instructions, ['keep lane']);
    });

    it("an encoding named 'constructor' or '__proto__' is VLA_E_IMAGE, not Object.prototype's", async () => {
      for (const encoding of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
        assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/Image', frame(1n, encoding), 'front'), (e) => isVlaError(e, ErrorCodes.IMAGE) && /not supported/.test((e as Error).message), encoding);
      }
      const port = new InMemoryPort(1_000_000_000n);
      const node = new VlaNodeLogic(port, new FakeEngine(), nodeParams(CAMS, ''), codec);
      node.start();
      await set(node, port, 'constructor');
      await node.stop();
      assert.equal(node.counters.setsInferred, 0);
      assert.equal(node.counters.badInput, 2);
    });

    it('two cameras on one topic (the same name, or remapped onto one) are refused', () => {
      const cams = [{ camera: 'front', topic: '/cam/a' }, { camera: 'left', topic: '/cam/b' }];
      assert.throws(() => checkDistinctTopics([...cams, { camera: 'right', topic: '/cam/a' }], {}), (e) => isVlaError(e, ErrorCodes.PARAMS) && /'front' and 'right' both read \/cam\/a/.test((e as Error).message));
      assert.throws(() => checkDistinctTopics(cams, { resolve: (t) => (t === '/cam/b' ? '/cam/a' : t) }), (e) => isVlaError(e, ErrorCodes.PARAMS) && /after remapping/.test((e as Error).message));
      assert.throws(() => new VlaNodeLogic(new InMemoryPort(), new FakeEngine(), { ...nodeParams(CAMS, ''), cameras: [{ camera: 'front', topic: '/x', type: 'sensor_msgs/msg/Image' }, { camera: 'left', topic: '/x', type: 'sensor_msgs/msg/Image' }] }, codec), (e) => isVlaError(e, ErrorCodes.PARAMS));
    });

    it('the schema refuses what the engine would refuse at every frame', () => {
      const base = { model_path: '/m', camera_names: ['front', 'left'], camera_topics: ['/a', '/b'] };
      const bad: Array<[Record<string, unknown>, RegExp]> = [
        [{ pruning_policy: 'autoprune', budget_kind: 'tokens', budget_value: 10, autoprune_x0: 1e300 }, /autoprune_x0/],
        [{ pruning_policy: 'autoprune', budget_kind: 'tokens', budget_value: 10, autoprune_k0: 1e300 }, /autoprune_k0/],
        [{ pruning_policy: 'autoprune', budget_kind: 'tokens', budget_value: 10, autoprune_gamma: 1e300 }, /autoprune_gamma/],
        [{ pruning_policy: 'autoprune', budget_kind: 'flops', budget_value: 1e300 }, /budget_value/],
        [{ tick_ms: 1e-9 }, /tick_ms/],
        [{ camera_topics: ['/a', '/a'] }, /camera_topics/],
        [{ default_instruction: 'x'.repeat(5000) }, /default_instruction/],
        [{ inference_timeout_ms: -1 }, /inference_timeout_ms/],
      ];
      for (const [over, re] of bad) assert.throws(() => configFromParams({ ...base, ...over }), (e) => isVlaError(e, ErrorCodes.PARAMS) && re.test((e as Error).message), JSON.stringify(over));
      assert.equal(configFromParams(base).node.inferenceTimeoutMs, 30000);
    });
  });
});
