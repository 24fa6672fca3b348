import assert from 'node:assert/strict';

import type { InferInput, InferOutput } from '../../src/engine/engine.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { OUTPUT_TYPES } from '../../src/msgs/convert.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import type { NodeConfig } from '../../src/pipeline/params.js';
import { changedParameters, engineChanged, NodeRunner, type EngineLoader, type RunnerEngine } from '../../src/pipeline/runner.js';
import { configFromParams } from '../../src/pipeline/params.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const codec = new MessageCodec();
const CAMS = ['front', 'left'];

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => ((resolve = a), (reject = b)));
  return { promise, resolve, reject };
}

/** An engine named after its model directory; each inference can be held open by the test. */
class FakeEngine implements RunnerEngine {
  disposed = false;
  inferred = 0;
  hold: ReturnType<typeof deferred> | undefined;
  constructor(
    readonly model: string,
    readonly cameras: string[] = CAMS,
  ) {}
  async infer(input: InferInput): Promise<InferOutput> {
    if (this.disposed) throw new VlaError(ErrorCodes.DISPOSED, `${this.model} was disposed`);
    this.inferred++;
    if (this.hold) await this.hold.promise;
    return {
      head: 'waypoints',
      waypoints: [{ tS: 0.5, x: 1, y: 0 }],
      tokenIds: [],
      stopped: false,
      cameras: Object.keys(input.views),
      timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 1, headMs: 0, engineMs: 1, totalMs: 1 },
      tokens: { prompt: 10, visual: 8, text: 2, generated: 0 },
      prune: { policy: 'none', nVisual: 8, kept: [8], merged: [0], keptPerView: [[4, 4]], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 8, avgTokens: 8, flops: 1, flopsUnpruned: 1, budgetMet: true },
      memory: { peakActivationBytes: 0, prefillHostReads: 0 },
    };
  }
  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

/** Loads FakeEngines; a model named 'broken*' fails to load, 'missing*' fails the precheck, 'gate*' waits for the test. */
class FakeLoader implements EngineLoader {
  loaded: FakeEngine[] = [];
  gate = deferred();
  cameras: Record<string, string[]> = {};
  async load(c: NodeConfig): Promise<FakeEngine> {
    const m = c.engine.modelPath;
    if (m.startsWith('gate')) await this.gate.promise;
    if (m.startsWith('broken')) throw new VlaError(ErrorCodes.CONFIG, `${m}/config.json: not a model`);
    const e = new FakeEngine(m, this.cameras[m] ?? CAMS);
    this.loaded.push(e);
    return e;
  }
  precheck(c: NodeConfig): void {
    if (c.engine.modelPath.startsWith('missing')) throw new VlaError(ErrorCodes.IO, `${c.engine.modelPath}/config.json: cannot open (is this a model directory?)`);
  }
}

const BASE = { model_path: 'a', camera_names: CAMS, camera_topics: CAMS.map((c) => `/cam/${c}`), tick_ms: 5, slop_ms: 10, max_age_ms: 200, future_tolerance_ms: 50 };

function frame(t: bigint): Uint8Array {
  return codec.encode('sensor_msgs/msg/Image', { header: { stamp: { sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) }, frame_id: 'c' }, height: 2, width: 2, encoding: 'rgb8', is_bigendian: 0, step: 6, data: new Uint8Array(12) });
}

/** Injects one frame set and lets the node take it; returns once the tick has fired. */
function injectSet(port: InMemoryPort): void {
  const t = port.now();
  for (const c of CAMS) port.inject(`/cam/${c}`, 'sensor_msgs/msg/Image', frame(t));
  port.advance(10);
}

/** The model field of every trajectory published so far. */
function trajectoryModels(port: InMemoryPort): string[] {
  return port.published.filter((m) => m.type === OUTPUT_TYPES.trajectory).map((m) => codec.decode<{ model: string }>(OUTPUT_TYPES.trajectory, m.cdr).model);
}

async function setup(over: Record<string, unknown> = {}) {
  const port = new InMemoryPort(1_000_000_000n);
  const loader = new FakeLoader();
  const runner = await NodeRunner.start({ port, config: configFromParams({ ...BASE, ...over }), loader, codec });
  runner.activate();
  return { port, loader, runner };
}

describe('node runner: lifecycle and parameter changes between frames (fake engine)', () => {
  it('tells engine parameters from the rest, and lists what changed', () => {
    const a = configFromParams(BASE);
    for (const [k, v] of Object.entries({ model_path: 'b', backend: 'cpu', threads: 2, cuda_device: 1, weight_dtype: 'f16', max_activation_mib: 64 })) {
      const b = configFromParams({ ...BASE, [k]: v });
      assert.ok(engineChanged(a.engine, b.engine), k);
      assert.deepEqual(changedParameters(a.raw, b.raw), [k]);
    }
    const c = configFromParams({ ...BASE, slop_ms: 15, default_instruction: 'go' });
    assert.ok(!engineChanged(a.engine, c.engine));
    assert.deepEqual(changedParameters(a.raw, c.raw).sort(), ['default_instruction', 'slop_ms']);
  });

  it('a new model_path loads the new engine, swaps it in between frames and disposes the old one', async () => {
    const { port, loader, runner } = await setup({ model_path: 'a' });
    const a = loader.loaded[0]!;
    injectSet(port);
    await runner.node?.busy;
    assert.deepEqual(trajectoryModels(port), ['a']);

    // A frame is running on the old engine when the change arrives, and the new engine loads slowly.
    a.hold = deferred();
    injectSet(port);
    assert.equal(a.inferred, 2);
    const res = runner.propose({ ...BASE, model_path: 'gate-b' });
    assert.deepEqual(res, { successful: true, reason: '' });
    assert.equal(runner.config.engine.modelPath, 'a', 'applied only once the new engine runs');
    // busy while loading: a further change is refused with a code, the old engine keeps the node running
    const busy = runner.propose({ ...BASE, model_path: 'c' });
    assert.equal(busy.successful, false);
    assert.match(busy.reason, /^VLA_E_BUSY: /);
    loader.gate.resolve();
    await new Promise((r) => setImmediate(r));
    assert.equal(loader.loaded.length, 2, 'the new engine loaded beside the old');
    assert.equal(a.disposed, false, 'not while its frame runs');
    a.hold.resolve();
    await runner.settled();
    const b = loader.loaded[1]!;
    assert.equal(runner.engine, b);
    assert.equal(a.disposed, true);
    assert.equal(runner.config.engine.modelPath, 'gate-b');
    assert.deepEqual(trajectoryModels(port), ['a', 'a'], 'the running frame was published by the old engine');

    injectSet(port);
    await runner.node?.busy;
    assert.equal(b.inferred, 1);
    assert.deepEqual(trajectoryModels(port), ['a', 'a', 'gate-b']);
    await runner.shutdown();
    assert.equal(b.disposed, true);
  });

  it('an engine that does not load: the old one runs on, and the change is handed back to be undone', async () => {
    const { port, loader, runner } = await setup({ model_path: 'a' });
    const undone: Array<{ code: string; kept: string; names: string[] }> = [];
    runner.onReloadFailed = (e, kept, names) => undone.push({ code: e.code, kept: kept.engine.modelPath, names });
    assert.equal(runner.propose({ ...BASE, model_path: 'broken', slop_ms: 12 }).successful, true);
    await runner.settled();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(undone, [{ code: ErrorCodes.CONFIG, kept: 'a', names: ['model_path', 'slop_ms'] }]);
    assert.equal(runner.lastReloadError?.code, ErrorCodes.CONFIG);
    assert.equal(runner.engine, loader.loaded[0]);
    assert.equal(loader.loaded[0]!.disposed, false);
    assert.equal(runner.config.node.slopMs, 10, 'the whole change is undone, not half of it');
    // The undo (the old values set again) is accepted without a restart, and frames still flow.
    const logic = runner.node;
    assert.deepEqual(runner.propose(BASE), { successful: true, reason: '' });
    assert.equal(runner.node, logic);
    injectSet(port);
    await runner.node?.busy;
    assert.deepEqual(trajectoryModels(port), ['a']);
    await runner.shutdown();
  });

  it('refuses at once, with a coded reason, what cannot work: bad values, a missing model, cameras the model lacks', async () => {
    const { loader, runner } = await setup({ model_path: 'a' });
    const logic = runner.node;
    const bad = runner.propose({ ...BASE, slop_ms: -1 });
    assert.equal(bad.successful, false);
    assert.match(bad.reason, /^VLA_E_PARAMS: .*slop_ms/);
    const missing = runner.propose({ ...BASE, model_path: 'missing' });
    assert.equal(missing.successful, false);
    assert.match(missing.reason, /^VLA_E_IO: missing\/config\.json: cannot open/);
    const cams = runner.propose({ ...BASE, camera_names: ['front', 'rear'], camera_topics: ['/cam/front', '/cam/rear'] });
    assert.equal(cams.successful, false);
    assert.match(cams.reason, /^VLA_E_INPUT: camera 'rear' is not one of the model's/);
    assert.equal(runner.node, logic, 'nothing was restarted');
    assert.equal(loader.loaded.length, 1);
    // A new model without the configured cameras is found out after loading: undone, the new engine disposed.
    loader.cameras['d'] = ['back'];
    const undone: string[] = [];
    runner.onReloadFailed = (e) => undone.push(e.code);
    assert.equal(runner.propose({ ...BASE, model_path: 'd' }).successful, true);
    await runner.settled();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(undone, [ErrorCodes.INPUT]);
    assert.equal(loader.loaded[1]!.disposed, true);
    assert.equal(runner.engine, loader.loaded[0]);
    await runner.shutdown();
  });

  it('other parameters restart the node logic on the same engine; inactive, a change only takes effect on activation', async () => {
    const { port, loader, runner } = await setup({ model_path: 'a' });
    const logic = runner.node;
    assert.equal(runner.propose({ ...BASE, output_frame: 'map' }).successful, true);
    await runner.settled();
    assert.notEqual(runner.node, logic);
    assert.equal(loader.loaded.length, 1);
    await runner.deactivate();
    assert.equal(runner.node, undefined);
    assert.equal(runner.propose({ ...BASE, output_frame: 'odom', model_path: 'b' }).successful, true);
    await runner.settled();
    assert.equal(runner.node, undefined, 'stays inactive');
    assert.equal(loader.loaded[0]!.disposed, true);
    runner.activate();
    injectSet(port);
    await runner.node?.busy;
    const path = port.published.filter((m) => m.type === OUTPUT_TYPES.path).map((m) => codec.decode<{ header: { frame_id: string } }>(OUTPUT_TYPES.path, m.cdr).header.frame_id);
    assert.deepEqual(path, ['odom']);
    assert.deepEqual(trajectoryModels(port), ['b']);
    await runner.shutdown();
    assert.equal(loader.loaded[1]!.disposed, true);
  });
});
