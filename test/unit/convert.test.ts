import assert from 'node:assert/strict';

import type { InferOutput, Waypoint } from '../../src/engine/engine.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import {
  autowareTrajectoryMsg,
  cdrHeaderStampNs,
  decodeImage,
  decodeInstruction,
  decodeOdometry,
  diagnosticsMsg,
  egoSpeedMps,
  metricsMsg,
  OUTPUT_TYPES,
  pathMsg,
  stampNs,
  toStamp,
  trajectoryMsg,
} from '../../src/msgs/convert.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const codec = new MessageCodec();
const S = 1_000_000_000n;
const header = (ns: bigint) => ({ stamp: toStamp(ns), frame_id: 'cam' });

function coded(code: string, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof VlaError, String(e));
    assert.equal(e.code, code);
    if (re) assert.match(e.message, re);
    return true;
  };
}

/** An inference output with every field the messages read, and values that tell them apart. */
function output(over: Partial<InferOutput['prune']> = {}): InferOutput {
  return {
    head: 'waypoints',
    waypoints: [{ tS: 0.5, x: 2, y: 0 }],
    tokenIds: [],
    stopped: false,
    cameras: ['front', 'left'],
    timings: { decodeMs: 1, tokenizeMs: 2, preprocessMs: 3, visionMs: 4, prefillMs: 5, headMs: 6, engineMs: 7, totalMs: 8 },
    tokens: { prompt: 10, visual: 8, text: 2, generated: 0 },
    prune: { policy: 'autoprune', nVisual: 8, kept: [6, 4], merged: [0, 1], keptPerView: [[3, 3], [2, 2]], mi0: 0.5, mi1: 0.25, k: 0.3, scale: 1, targetTokens: 5, avgTokens: 5, flops: 3e9, flopsUnpruned: 4e9, budget: { kind: 'tokens', value: 5 }, budgetMet: true, ...over },
    memory: { peakActivationBytes: 0, prefillHostReads: 0 },
  };
}

describe('message conversion (msgs/convert)', () => {
  it('stamps: ns <-> builtin_interfaces/Time, and header.stamp read straight from CDR bytes', () => {
    const ns = 1_700_000_000n * S + 123_456_789n;
    assert.deepEqual(toStamp(ns), { sec: 1_700_000_000, nanosec: 123_456_789 });
    assert.equal(stampNs({ stamp: toStamp(ns), frame_id: '' }), ns);
    const cdr = codec.encode('std_msgs/msg/Header', header(ns));
    assert.equal(cdrHeaderStampNs(cdr), ns);
    assert.equal(cdrHeaderStampNs(cdr.subarray(0, 11)), undefined);
  });

  describe('decoding into engine inputs', () => {
    it('sensor_msgs/Image: the raw frame and its stamp', () => {
      const data = Uint8Array.from({ length: 2 * 8 }, (_, i) => i);
      const cdr = codec.encode('sensor_msgs/msg/Image', { header: header(5n * S + 7n), height: 2, width: 2, encoding: 'bgr8', is_bigendian: 0, step: 8, data });
      const { image, stampNs: t } = decodeImage(codec, 'sensor_msgs/msg/Image', cdr, 'front');
      assert.equal(t, 5n * S + 7n);
      assert.deepEqual({ ...image, data: [...image.data] }, { data: [...data], width: 2, height: 2, step: 8, encoding: 'bgr8' });
    });

    it('sensor_msgs/CompressedImage: the bytes and their format, decoded later by the engine', () => {
      const cdr = codec.encode('sensor_msgs/msg/CompressedImage', { header: header(3n * S), format: 'jpeg', data: Uint8Array.of(0xff, 0xd8, 0xff) });
      const { image, stampNs: t } = decodeImage(codec, 'sensor_msgs/msg/CompressedImage', cdr, 'front');
      assert.equal(t, 3n * S);
      assert.equal(image.kind, 'compressed');
      assert.deepEqual([...image.data], [0xff, 0xd8, 0xff]);
    });

    it('a raw image the engine cannot take is VLA_E_IMAGE naming the camera; bytes that are no message are VLA_E_CDR', () => {
      const img = (o: object) => codec.encode('sensor_msgs/msg/Image', { header: header(S), height: 2, width: 2, encoding: 'rgb8', is_bigendian: 0, step: 6, data: new Uint8Array(12), ...o });
      assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/Image', img({ encoding: 'yuv422' }), 'left'), coded(ErrorCodes.IMAGE, /camera 'left': encoding 'yuv422' is not supported/));
      assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/Image', img({ step: 5 }), 'left'), coded(ErrorCodes.IMAGE, /2x2 rgb8 with step 5 does not fit 12 bytes/));
      assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/Image', img({ data: new Uint8Array(11) }), 'left'), coded(ErrorCodes.IMAGE, /does not fit 11 bytes/));
      assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/Image', img({ width: 0, step: 0, data: new Uint8Array(0) }), 'left'), coded(ErrorCodes.IMAGE));
      const good = img({});
      assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/Image', good.subarray(0, good.length - 5), 'left'), coded(ErrorCodes.CDR));
      assert.throws(() => decodeImage(codec, 'sensor_msgs/msg/CompressedImage', good.subarray(0, 9), 'left'), coded(ErrorCodes.CDR));
    });

    it('std_msgs/String instruction, as sent', () => {
      assert.equal(decodeInstruction(codec, codec.encode('std_msgs/msg/String', { data: '  turn left ' })), '  turn left ');
      assert.throws(() => decodeInstruction(codec, new Uint8Array(3)), coded(ErrorCodes.CDR));
    });

    it('nav_msgs/Odometry: the planar speed; a non-finite one is VLA_E_INPUT', () => {
      const odom = (vx: number, vy: number) =>
        codec.encode('nav_msgs/msg/Odometry', {
          header: header(S),
          child_frame_id: 'base_link',
          pose: { pose: { position: { x: 1, y: 2, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } }, covariance: new Float64Array(36) },
          twist: { twist: { linear: { x: vx, y: vy, z: 0 }, angular: { x: 0, y: 0, z: 0 } }, covariance: new Float64Array(36) },
        });
      const m = decodeOdometry(codec, odom(3, 4));
      assert.equal(m.pose.pose.position.y, 2);
      assert.equal(egoSpeedMps(m), 5);
      assert.throws(() => egoSpeedMps(decodeOdometry(codec, odom(Number.NaN, 0))), coded(ErrorCodes.INPUT, /not finite/));
    });
  });

  describe('building the published messages', () => {
    const t0 = 10n * S;
    const wps: Waypoint[] = [
      { tS: 0.5, x: 1, y: 0 },
      { tS: 1.0, x: 1, y: 1 },
      { tS: 1.5, x: 2, y: 1, yaw: -0.5 },
    ];

    it('nav_msgs/Path: poses at the set stamp plus each waypoint time; heading from the model, else from the previous point', () => {
      const m = pathMsg(t0, 'base_link', wps);
      assert.deepEqual(m.header, { stamp: { sec: 10, nanosec: 0 }, frame_id: 'base_link' });
      assert.deepEqual(m.poses.map((p) => p.header.stamp), [{ sec: 10, nanosec: 500_000_000 }, { sec: 11, nanosec: 0 }, { sec: 11, nanosec: 500_000_000 }]);
      const yaw = (q: { z: number; w: number }) => 2 * Math.atan2(q.z, q.w);
      const yaws = m.poses.map((p) => yaw(p.pose.orientation));
      assert.ok(Math.abs(yaws[0]! - 0) < 1e-12 && Math.abs(yaws[1]! - Math.PI / 2) < 1e-12 && Math.abs(yaws[2]! + 0.5) < 1e-12, String(yaws));
      const back = codec.decode<typeof m>(OUTPUT_TYPES.path, codec.encode(OUTPUT_TYPES.path, m));
      assert.equal(back.poses.length, 3);
      assert.equal(back.poses[2]!.pose.position.x, 2);
    });

    it('autoprune_ros_msgs/Trajectory: times from start, has_yaw only where the model gave one', () => {
      const m = trajectoryMsg(t0, 'base_link', wps, 'turn left', 'tiny');
      const back = codec.decode<typeof m>(OUTPUT_TYPES.trajectory, codec.encode(OUTPUT_TYPES.trajectory, m));
      assert.deepEqual(back.waypoints.map((w) => [w.time_from_start.sec, w.time_from_start.nanosec, w.has_yaw, w.yaw_rad]), [[0, 500_000_000, false, 0], [1, 0, false, 0], [1, 500_000_000, true, -0.5]]);
      assert.equal(back.instruction, 'turn left');
      assert.equal(back.model, 'tiny');
    });

    it('autoware_planning_msgs/Trajectory: speed from consecutive waypoints (from the origin at t = 0 first)', () => {
      const m = autowareTrajectoryMsg(t0, 'base_link', [{ tS: 0.5, x: 5, y: 0 }, { tS: 1.0, x: 10, y: 0 }, { tS: 1.0, x: 10, y: 0 }]);
      assert.deepEqual(m.points.map((p) => p.longitudinal_velocity_mps), [10, 10, 0]);
      const back = codec.decode<typeof m>(OUTPUT_TYPES.autoware, codec.encode(OUTPUT_TYPES.autoware, m));
      assert.equal(back.points[1]!.pose.position.x, 10);
      assert.deepEqual(back.points[0]!.time_from_start, { sec: 0, nanosec: 500_000_000 });
    });

    it('autoprune_ros_msgs/Metrics: stages, pruning per layer and view, the budget (latency in deadline mode), counters', () => {
      const r = output();
      const m = metricsMsg(t0, 'base_link', r, { sensorToPublishMs: 12.5, budgetMet: true, framesDropped: 3, framesFailed: 1 });
      const back = codec.decode<typeof m>(OUTPUT_TYPES.metrics, codec.encode(OUTPUT_TYPES.metrics, m));
      assert.deepEqual([back.decode_ms, back.prefill_ms, back.total_ms, back.sensor_to_publish_ms], [1, 5, 8, 12.5]);
      assert.deepEqual([...back.visual_tokens_kept], [6, 4]);
      assert.deepEqual([...back.visual_tokens_kept_per_view], [3, 3, 2, 2]);
      assert.deepEqual(back.views, ['front', 'left']);
      assert.deepEqual([back.budget_kind, back.budget_value, back.budget_met, back.prefill_gflop, back.prefill_gflop_unpruned], ['tokens', 5, true, 3, 4]);
      assert.deepEqual([back.frames_dropped, back.frames_failed], [3n, 1n]);
      const d = metricsMsg(t0, 'base_link', r, { sensorToPublishMs: 80, deadlineMs: 50, budgetMet: false, framesDropped: 0, framesFailed: 0 });
      assert.deepEqual([d.budget_kind, d.budget_value, d.budget_met], ['latency', 50, false]);
      const none = metricsMsg(t0, 'base_link', output({ policy: 'none', budget: undefined }), { sensorToPublishMs: 1, budgetMet: true, framesDropped: 0, framesFailed: 0 });
      assert.deepEqual([none.budget_kind, none.budget_value], ['none', 0]);
    });

    it('diagnostic_msgs/DiagnosticArray: OK without reasons, WARN with them joined; values as strings', () => {
      const ok = diagnosticsMsg(t0, { name: 'n', hardwareId: 'tiny', reasons: [], values: [['frames_in', 4], ['last_error', '']] });
      assert.deepEqual(ok.status[0], { level: 0, name: 'n', message: 'OK', hardware_id: 'tiny', values: [{ key: 'frames_in', value: '4' }, { key: 'last_error', value: '' }] });
      const warn = diagnosticsMsg(t0, { name: 'n', hardwareId: 'tiny', reasons: ['a', 'b'], values: [] });
      const back = codec.decode<typeof warn>(OUTPUT_TYPES.diagnostics, codec.encode(OUTPUT_TYPES.diagnostics, warn));
      assert.equal(back.status[0]!.level, 1);
      assert.equal(back.status[0]!.message, 'a; b');
      assert.deepEqual(back.header.stamp, { sec: 10, nanosec: 0 });
    });
  });
});
