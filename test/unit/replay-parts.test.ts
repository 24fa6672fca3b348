import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { MessageCodec } from '../../src/msgs/codec.js';
import { cdrHeaderStampNs } from '../../src/msgs/convert.js';
import { ReplayPort, resolveTopic } from '../../src/replay/port.js';
import { everySetPacing } from '../../src/replay/pacing.js';
import { parseSweep } from '../../src/replay/replay.js';
import { EgoPath, constantVelocityPlan, planDistance, plannedAt, planningErrors, scoreFrame, yawFromQuaternion } from '../../src/replay/score.js';
import { diffTraces, readTrace, scoreTrace, TraceWriter, type TraceFrame, type TraceHeader } from '../../src/replay/trace.js';
import { isVlaError, ErrorCodes } from '../../src/util/errors.js';

const S = 1_000_000_000n;

describe('replay: scoring', () => {
  // The ego drives a circle of radius R at speed v: positions are known in closed form.
  const R = 50, v = 10;
  const circle = (tS: number) => {
    const th = (v * tS) / R;
    return { x: R * Math.sin(th), y: R * (1 - Math.cos(th)), yaw: th };
  };
  const samples = Array.from({ length: 501 }, (_, i) => ({ tNs: BigInt(i) * 20_000_000n, ...circle(i * 0.02) }));
  const ego = new EgoPath(samples);

  it('interpolates poses and moves the future into the ego frame', () => {
    const p = ego.poseAt(1_010_000_000n) as { x: number; y: number };
    const c = circle(1.01);
    assert.ok(Math.abs(p.x - c.x) < 1e-3 && Math.abs(p.y - c.y) < 1e-3);
    // From t = 2 s, the true point 1 s later in the ego frame is the chord of the circle.
    const [f] = ego.futureInEgoFrame(2n * S, [1]);
    const th = v / R;
    assert.ok(f);
    assert.ok(Math.abs(f.x - R * Math.sin(th)) < 1e-3, `${f.x}`);
    assert.ok(Math.abs(f.y - R * (1 - Math.cos(th))) < 1e-3, `${f.y}`);
    assert.equal(ego.poseAt(11n * S), undefined, 'beyond the recording');
    assert.deepEqual(ego.futureInEgoFrame(9n * S, [0.5, 1, 2]).map((x) => x !== null), [true, true, false]);
  });

  it('a perfect plan scores zero and a straight one scores the circle\'s deviation', () => {
    const times = [0.5, 1, 1.5, 2, 2.5, 3];
    const gt = ego.futureInEgoFrame(2n * S, times);
    const perfect = times.map((tS, i) => ({ tS, x: (gt[i] as { x: number }).x, y: (gt[i] as { y: number }).y }));
    const gtH = ego.futureInEgoFrame(2n * S, [1, 2, 3]);
    const s0 = scoreFrame(perfect, gt, gtH);
    assert.ok((s0.l2At3sM as number) < 1e-9 && (s0.l2At1sM as number) < 1e-9);
    const straight = constantVelocityPlan(v, times);
    const s1 = scoreFrame(straight, gt, gtH);
    const th = (v * 3) / R;
    const expected = Math.hypot(v * 3 - R * Math.sin(th), R * (1 - Math.cos(th)));
    assert.ok(Math.abs((s1.l2At3sM as number) - expected) < 1e-3, `${s1.l2At3sM} vs ${expected}`);
    const agg = planningErrors([s0, s1]);
    assert.equal(agg.n, 2);
    assert.ok(Math.abs((agg.l2At3sM as number) - expected / 2) < 1e-3);
    assert.ok((agg.fdeM as number) > 0 && (agg.adeM as number) < (agg.fdeM as number));
  });

  it('frames without ground truth are not scored; horizons beyond the plan are null', () => {
    const s = scoreFrame([{ tS: 0.5, x: 1, y: 0 }, { tS: 1, x: 2, y: 0 }], [null, null], [null, null, null]);
    assert.deepEqual(planningErrors([s]), { n: 0, l2At1sM: null, l2At2sM: null, l2At3sM: null, adeM: null, fdeM: null });
    assert.equal(plannedAt([{ tS: 0.5, x: 1, y: 0 }, { tS: 1, x: 2, y: 0 }], 2), null);
    assert.deepEqual(plannedAt([{ tS: 0.5, x: 1, y: 0 }, { tS: 1, x: 2, y: 0 }], 0.25), { x: 0.5, y: 0 });
  });

  it('plan distance, yaw from quaternions', () => {
    assert.deepEqual(planDistance([{ tS: 1, x: 0, y: 0 }, { tS: 2, x: 3, y: 4 }], [{ tS: 1, x: 0, y: 0 }, { tS: 2, x: 0, y: 0 }]), { adeM: 2.5, fdeM: 5 });
    assert.ok(Math.abs(yawFromQuaternion({ x: 0, y: 0, z: Math.sin(0.4), w: Math.cos(0.4) }) - 0.8) < 1e-12);
    const p = new EgoPath([]);
    p.add({ tNs: 2n, x: 2, y: 0, yaw: 0 });
    p.add({ tNs: 1n, x: 1, y: 0, yaw: 0 });
    p.add({ tNs: 3n, x: Number.NaN, y: 0, yaw: 0 });
    assert.equal(p.size, 2);
    assert.equal(p.poseAt(1n)?.x, 1);
  });
});

describe('replay: port, sweep, CDR stamps', () => {
  it('resolves ~ and relative names like ROS 2 and applies remaps', () => {
    assert.equal(resolveTopic('~/input/front', 'autoprune_ros'), '/autoprune_ros/input/front');
    assert.equal(resolveTopic('camera', 'n'), '/camera');
    assert.equal(resolveTopic('~/x', 'n', new Map([['/n/x', '/bag/x']])), '/bag/x');
  });

  it('fires timers in order while the clock moves to a message, and waits after each', async () => {
    const port = new ReplayPort(0n);
    const fired: string[] = [];
    port.timer(10, () => fired.push(`a${port.now()}`));
    port.timer(25, () => fired.push(`b${port.now()}`));
    let waits = 0;
    await port.advanceTo(30_000_000n, () => {
      waits++;
      return undefined;
    });
    assert.deepEqual(fired, ['a10000000', 'a20000000', 'b25000000', 'a30000000']);
    assert.equal(waits, 4);
    assert.equal(port.now(), 30_000_000n);
    await port.advanceTo(10n); // never backwards
    assert.equal(port.now(), 30_000_000n);
  });

  it('advance: no promise while no timer is due, advanceTo\'s firings when one is', async () => {
    const port = new ReplayPort(0n);
    const fired: bigint[] = [];
    port.timer(10, () => fired.push(port.now()));
    assert.equal(port.advance(9_000_000n), undefined);
    assert.equal(port.now(), 9_000_000n);
    assert.equal(port.advance(5n), undefined); // never backwards
    assert.equal(port.now(), 9_000_000n);
    const p = port.advance(21_000_000n);
    assert.ok(p instanceof Promise);
    await p;
    assert.deepEqual(fired, [10_000_000n, 20_000_000n]);
    assert.equal(port.now(), 21_000_000n);
    // Before its first message the clock is not set: always the full path.
    const fresh = new ReplayPort(undefined);
    fresh.timer(10, () => undefined);
    const q = fresh.advance(1_000n);
    assert.ok(q instanceof Promise);
    await q;
    assert.equal(fresh.now(), 1_000n);
  });

  it('every-set pacing: idle work runs once the inference is under way; its error comes out of the next advance', async () => {
    const port = new ReplayPort(0n);
    port.timer(10, () => undefined);
    let release: () => void = () => undefined;
    const inference = new Promise<void>((r) => (release = r));
    const order: string[] = [];
    let fail = false;
    const pacing = everySetPacing(port, () => inference, () => {
      order.push('idle');
      if (fail) throw new Error('trace file failed');
    });
    const p = pacing.advanceTo(15_000_000n) as Promise<void>;
    order.push('timer returned');
    await new Promise<void>((r) => setImmediate(r));
    release();
    await p;
    assert.deepEqual(order, ['timer returned', 'idle']);
    fail = true;
    const q = pacing.advanceTo(25_000_000n) as Promise<void>;
    await new Promise<void>((r) => setImmediate(r));
    await q;
    assert.throws(() => pacing.advanceTo(26_000_000n), /trace file failed/);
    assert.equal(pacing.advanceTo(27_000_000n), undefined); // thrown once
  });

  it('delivers only to subscribers of the same type and reports what the node advertised', () => {
    const port = new ReplayPort(0n);
    const got: string[] = [];
    port.subscribe('~/in', 'std_msgs/msg/String', { reliability: 'reliable', durability: 'volatile', depth: 1 }, () => got.push('string'));
    assert.equal(port.deliver('/autoprune_ros/in', 'std_msgs/msg/String', new Uint8Array(8)), 1);
    assert.equal(port.deliver('/autoprune_ros/in', 'std_msgs/msg/Int32', new Uint8Array(8)), 0);
    const pub = port.advertise('~/out', 'std_msgs/msg/String', { reliability: 'reliable', durability: 'volatile', depth: 1 });
    const seen: string[] = [];
    port.onPublish = (m) => seen.push(m.topic);
    pub(new Uint8Array(4));
    assert.deepEqual(seen, ['/autoprune_ros/out']);
    assert.deepEqual([...port.subscriptions().keys()], ['/autoprune_ros/in']);
  });

  it('parses sweeps: none once, budgets as tokens unless kind:value', () => {
    assert.deepEqual(parseSweep(['policy=none,autoprune', 'budget=64,flops:1.5']), [
      { policy: 'none' },
      { policy: 'autoprune', budget: { kind: 'tokens', value: 64 } },
      { policy: 'autoprune', budget: { kind: 'flops', value: 1.5 } },
    ]);
    for (const bad of [['policy=magic', 'budget=1'], ['policy=fastv'], ['budget=4'], ['policy=fastv', 'budget=-1'], ['colour=red']]) {
      assert.throws(() => parseSweep(bad), (e: unknown) => isVlaError(e, ErrorCodes.ARGS), bad.join(' '));
    }
  });

  it('reads header stamps straight from CDR', () => {
    const codec = new MessageCodec();
    const cdr = codec.encode('sensor_msgs/msg/CompressedImage', { header: { stamp: { sec: 1_767_225_600, nanosec: 123_456_789 }, frame_id: 'cam' }, format: 'jpeg', data: new Uint8Array(3) });
    assert.equal(cdrHeaderStampNs(cdr), 1_767_225_600_123_456_789n);
    assert.equal(cdrHeaderStampNs(new Uint8Array(5)), undefined);
  });
});

describe('replay: protobuf traces', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'trace-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const header: TraceHeader = {
    bagPath: '/bags/drive',
    bagStartNs: 1_767_225_600_000_000_001n,
    modelPath: 'm',
    backend: 'cpu',
    configPath: 'c.yaml',
    label: 'autoprune tokens:24',
    policy: 'autoprune',
    budget: 'tokens:24',
    pruneOptionsJson: '{}',
    cameras: ['front', 'front_left'],
    waypointDtS: 0.5,
    createdAt: '2026-11-23T00:00:00Z',
    mode: 'every-set',
    rate: 0,
  };
  const frame = (i: number, dx = 0): TraceFrame => ({
    index: i,
    stampNs: header.bagStartNs + BigInt(i) * 100_000_000n,
    takenNs: header.bagStartNs + BigInt(i) * 100_000_000n + 5_000_000n,
    inputs: [{ camera: 'front', topic: '/f', stampNs: header.bagStartNs + BigInt(i), logTimeNs: header.bagStartNs + 9n }],
    instruction: 'keep lane',
    prompt: 'keep lane (ego speed 5.0 m/s)',
    waypoints: [{ tS: 1, x: 5 + dx, y: 0.1 }, { tS: 2, x: 10, y: 0.2, yaw: 0.01 }, { tS: 3, x: 15, y: 0.3 }],
    groundTruth: [{ x: 5, y: 0 }, { x: 10, y: 0 }, null],
    groundTruthHorizons: [{ x: 5, y: 0 }, { x: 10, y: 0 }, null],
    prune: { policy: 'autoprune', nVisual: 32, kept: [32, 20, 8], merged: [0, 1, 1], keptPerView: [16, 16, 10, 10, 4, 4], views: 2, mi0: 0.5, mi1: 1.2, k: 0.9, scale: 1.1, targetTokens: 24, avgTokens: 20, flops: 1e9, flopsUnpruned: 2e9, budgetMet: true, budget: 'tokens:24' },
    timings: { decodeMs: 1, tokenizeMs: 0.1, preprocessMs: 2, visionMs: 3, prefillMs: 4, headMs: 0.5, engineMs: 9.5, totalMs: 10.6 + i, sensorToPublishMs: 30 },
    errorCode: '',
    errorMessage: '',
  });

  it('round-trips header, frames (64-bit ns exact) and footer, and re-scores from stored ground truth', async () => {
    const file = path.join(dir, 'a.pb');
    const w = TraceWriter.open(file, header);
    for (let i = 0; i < 5; i++) w.frame(frame(i));
    await w.close({ messagesRead: 1234n, interrupted: false, errorCode: '', errorMessage: '', errorFile: '', errorOffset: 0n });
    const t = await readTrace(file);
    assert.deepEqual(t.header, header);
    assert.equal(t.frames.length, 5);
    assert.deepEqual(t.frames[3], frame(3));
    assert.equal(t.footer?.frames, 5);
    assert.equal(t.footer?.messagesRead, 1234n);
    const s = scoreTrace(t).planning;
    assert.equal(s.n, 5);
    assert.ok(Math.abs((s.l2At1sM as number) - 0.1) < 1e-12);
    assert.equal(s.l2At3sM, null);
  });

  it('holds frames until flush() or close() and writes them in order, however many', async () => {
    const file = path.join(dir, 'many.pb');
    const w = TraceWriter.open(file, header);
    for (let i = 0; i < 700; i++) {
      w.frame(frame(i));
      if (i % 97 === 0) w.flush();
    }
    await w.close({ messagesRead: 7n, interrupted: false, errorCode: '', errorMessage: '', errorFile: '', errorOffset: 0n });
    const t = await readTrace(file);
    assert.equal(t.frames.length, 700);
    assert.deepEqual(t.frames.map((f) => f.index), Array.from({ length: 700 }, (_, i) => i));
    assert.deepEqual(t.frames[650], frame(650));
    assert.equal(t.footer?.frames, 700);
  });

  it('diffs two runs: identical plans ignoring timings, then a changed plan', async () => {
    const write = async (name: string, dx: number) => {
      const w = TraceWriter.open(path.join(dir, name), header);
      for (let i = 0; i < 4; i++) w.frame({ ...frame(i, i === 2 ? dx : 0), timings: { ...(frame(i).timings as NonNullable<TraceFrame['timings']>), totalMs: 99 } });
      await w.close({ messagesRead: 1n, interrupted: false, errorCode: '', errorMessage: '', errorFile: '', errorOffset: 0n });
      return readTrace(path.join(dir, name));
    };
    const a = await write('b.pb', 0), b = await write('c.pb', 0), c = await write('d.pb', 0.5);
    assert.equal(diffTraces(a, b).identical, true);
    const d = diffTraces(a, c);
    assert.equal(d.identical, false);
    assert.equal(d.identicalPlans, 3);
    assert.ok(Math.abs(d.maxWaypointDiffM - 0.5) < 1e-12);
  });

  it('rejects truncated and foreign files with VLA_E_TRACE naming the record', async () => {
    const file = path.join(dir, 'e.pb');
    const w = TraceWriter.open(file, header);
    w.frame(frame(0));
    w.frame(frame(1));
    await w.close({ messagesRead: 1n, interrupted: true, errorCode: '', errorMessage: '', errorFile: '', errorOffset: 0n });
    const bytes = readFileSync(file);
    writeFileSync(path.join(dir, 'cut.pb'), bytes.subarray(0, bytes.length - 30));
    await assert.rejects(readTrace(path.join(dir, 'cut.pb')), (e: unknown) => isVlaError(e, ErrorCodes.TRACE) && /record \d+ at byte \d+/.test((e as Error).message));
    writeFileSync(path.join(dir, 'json.pb'), '{"not": "a trace"}');
    await assert.rejects(readTrace(path.join(dir, 'json.pb')), (e: unknown) => isVlaError(e, ErrorCodes.TRACE));
    await assert.rejects(readTrace(path.join(dir, 'absent.pb')), (e: unknown) => isVlaError(e, ErrorCodes.IO));
    const other = await readTrace(file);
    const moved = { ...other, header: { ...other.header, bagStartNs: 5n } };
    assert.throws(() => diffTraces(other, moved), (e: unknown) => isVlaError(e, ErrorCodes.TRACE));
  });
});
