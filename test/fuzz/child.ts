/**
 * The fuzz harness's child process: runs cases the parent sends over IPC and answers with the
 * outcome (ok, a coded error, or anything else, which is a finding). Before the project's code
 * loads, every way it opens a file by path (fs and fs/promises) is wrapped, so that opening the
 * canary (a file outside every case's directory) is seen, with the real path it resolved to.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';

import type { InferInput, InferOutput } from '../../src/engine/engine.js';
import type { Entry, SelfTestMode } from './targets.js';

const canary = process.env.FUZZ_CANARY ? fs.realpathSync(process.env.FUZZ_CANARY) : undefined;
const opened: string[] = [];

function watch(p: unknown): void {
  if (!canary || (typeof p !== 'string' && !(p instanceof URL) && !Buffer.isBuffer(p))) return;
  const s = p instanceof URL ? p.pathname : String(p);
  let real: string;
  try {
    real = fs.realpathSync(path.resolve(s));
  } catch {
    return;
  }
  if (real === canary) opened.push(s);
}

type AnyFn = (...a: unknown[]) => unknown;
function wrap(obj: Record<string, unknown>, names: string[]): void {
  for (const n of names) {
    const f = obj[n] as AnyFn | undefined;
    if (typeof f !== 'function') continue;
    obj[n] = function (this: unknown, ...a: unknown[]) {
      watch(a[0]);
      return f.apply(this, a);
    };
  }
}
wrap(fs as unknown as Record<string, unknown>, ['open', 'openSync', 'readFile', 'readFileSync', 'createReadStream', 'openAsBlob']);
wrap(fsp as unknown as Record<string, unknown>, ['open', 'readFile']);
wrap(fs.promises as unknown as Record<string, unknown>, ['open', 'readFile']);
syncBuiltinESMExports();

// The project's modules, loaded after the hooks, on the first case that needs them.
const load = () =>
  Promise.all([
    import('../../src/bag/reader.js'),
    import('../../src/engine/engine.js'),
    import('../../src/engine/image.js'),
    import('../../src/msgs/codec.js'),
    import('../../src/msgs/convert.js'),
    import('../../src/msgs/port.js'),
    import('../../src/pipeline/node.js'),
    import('../../src/pipeline/params.js'),
    import('../../src/replay/replay.js'),
    import('../../src/util/errors.js'),
    import('../../src/util/paths.js'),
  ]);
let mods: Awaited<ReturnType<typeof load>> | undefined;
const LEAKS = /Cannot read propert|Cannot convert .* to a BigInt|is not a function|is not iterable|Maximum call stack|Invalid array length|out of bounds/;

function fakeEngine(cameras: string[]) {
  return {
    cameras,
    info: { backend: 'fake', nParams: 0, numWaypoints: 2, waypointDtS: 0.5 },
    infer: async (input: InferInput): Promise<InferOutput> => ({
      head: 'waypoints',
      waypoints: [{ tS: 0.5, x: 1, y: 0 }, { tS: 1, x: 2, y: 0 }],
      tokenIds: [],
      stopped: true,
      cameras: Object.keys(input.views),
      timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 0.01 },
      tokens: { prompt: 1, visual: 1, text: 1, generated: 0 },
      prune: { policy: 'none', nVisual: 1, kept: [1], merged: [0], keptPerView: [], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 1, avgTokens: 1, flops: 1, flopsUnpruned: 1, budgetMet: true },
      memory: { peakActivationBytes: 0, prefillHostReads: 0 },
    }),
  };
}

const codecs: Array<InstanceType<typeof import('../../src/msgs/codec.js').MessageCodec>> = [];
const engines = new Map<string, Promise<import('../../src/engine/engine.js').Engine>>();
const sharedEngine = (Engine: typeof import('../../src/engine/engine.js').Engine, dir: string) => {
  let e = engines.get(dir);
  if (!e) engines.set(dir, (e = Engine.load(dir, { backend: 'cpu', threads: 1 })));
  return e;
};

const grey = { data: new Uint8Array(32 * 24 * 3).fill(100), width: 32, height: 24, encoding: 'rgb8' as const };

/** The harness's own checks: each must be seen as a finding. */
async function selfTest(mode: SelfTestMode, canaryFile: string): Promise<string> {
  const hold: Uint8Array[] = [];
  switch (mode) {
    case 'hang':
      for (;;);
    case 'alloc':
      for (;;) {
        hold.push(new Uint8Array(128 << 20).fill(1));
        await new Promise((r) => setImmediate(r));
      }
    case 'canary':
      return String(fs.readFileSync(canaryFile).byteLength);
    case 'uncoded':
      return (undefined as unknown as { x: string }).x;
    case 'crash':
      process.kill(process.pid, 'SIGSEGV');
      return '';
  }
}

async function run(e: Entry): Promise<string> {
  if (e.kind === 'selftest') return selfTest(e.mode, e.canary);
  mods ??= await load();
  const [{ openBag, formatBagInfo, bagInfoJson }, { Engine }, { decodeCompressed }, { MessageCodec }, convert, { InMemoryPort }, { VlaNodeLogic }, { loadParamsFile }, { replayBag }, { ErrorCodes }, paths] = mods ?? ([] as unknown as NonNullable<typeof mods>);
  const codec = (codecs[0] ??= new MessageCodec());
  switch (e.kind) {
    case 'bag': {
      const r = await openBag(e.path);
      formatBagInfo(r.info);
      JSON.stringify(bagInfoJson(r.info));
      await r.definitions();
      let n = 0, bytes = 0;
      for await (const m of r.messages()) {
        n++;
        bytes += m.data.byteLength;
      }
      if (e.replay) {
        const config = loadParamsFile(paths.SAMPLE_CONFIG);
        const { report } = await replayBag({ bag: e.path, config, configPath: paths.SAMPLE_CONFIG, engine: fakeEngine(['front', 'front_left', 'front_right']), outDir: e.out, writeTrace: false });
        if (report.error && report.error.code === ErrorCodes.INTERNAL) throw new Error(`replay report: ${report.error.message}`);
        return `${n} messages, ${bytes} bytes; replay ${report.settings[0]?.frames.setsInferred ?? 0} sets${report.error ? `, ${report.error.code}` : ''}`;
      }
      return `${n} messages, ${bytes} bytes`;
    }
    case 'model': {
      const eng = await Engine.load(e.path, { backend: 'cpu', threads: 1 });
      try {
        const out = await eng.infer({ views: { [eng.cameras[0] as string]: grey }, instruction: 'keep lane' });
        if (!out.waypoints.every((w) => Number.isFinite(w.x) && Number.isFinite(w.y))) throw new Error('a non-finite plan came back');
        return `${out.waypoints.length} waypoints`;
      } finally {
        await eng.dispose();
      }
    }
    case 'image': {
      const data = fs.readFileSync(e.file);
      if (e.viaEngine) {
        const eng = await sharedEngine(Engine, e.model);
        const out = await eng.infer({ views: { [eng.cameras[0] as string]: { kind: 'compressed', data } }, instruction: 'keep lane' });
        return `${out.waypoints.length} waypoints`;
      }
      const v = await decodeCompressed(data, "camera 'front'");
      return `${v.width}x${v.height}`;
    }
    case 'cdr': {
      const bytes = fs.readFileSync(e.file);
      const port = new InMemoryPort(1_000_000_000n);
      const node = new VlaNodeLogic(port, fakeEngine(['front']), { cameras: [{ camera: 'front', topic: '/cam', type: 'sensor_msgs/msg/Image' }], instructionTopic: '/instruction', defaultInstruction: 'go', outputFrame: 'base_link', slopMs: 10, maxAgeMs: 1000, missingCamera: 'wait', tickMs: 5, futureToleranceMs: 1e9, latencyWarnMs: 100, maxInstructionChars: 512, modelName: 'fuzz', odometryTopic: '/odom' }, codec);
      node.start();
      for (const [topic, type] of [['/cam', 'sensor_msgs/msg/Image'], ['/instruction', 'std_msgs/msg/String'], ['/odom', 'nav_msgs/msg/Odometry']] as const) port.inject(topic, type, bytes);
      port.advance(20);
      await node.busy;
      await node.stop();
      const msg = codec.decode(e.type, bytes);
      if (e.type === 'sensor_msgs/msg/Image' || e.type === 'sensor_msgs/msg/CompressedImage') convert.decodeImage(codec, e.type, bytes, 'front');
      // what decodes must encode again
      codec.encode(e.type, msg);
      return `decoded ${e.type}; node counted ${node.counters.badInput} bad input`;
    }
    case 'params': {
      const config = loadParamsFile(e.file);
      const port = new InMemoryPort(1_000_000_000n);
      const node = new VlaNodeLogic(port, fakeEngine(config.node.cameras.map((c) => c.camera)), { ...config.node, modelName: 'fuzz' }, codec);
      node.start();
      port.advance(10);
      await node.stop();
      return `${config.node.cameras.length} cameras`;
    }
  }
}

process.on('message', (msg: { id: number; entry: Entry }) => {
  opened.length = 0;
  const t0 = performance.now();
  const reply = (outcome: 'ok' | 'coded' | 'uncoded', detail: string, code = '') =>
    process.send?.({ id: msg.id, outcome, code, detail: detail.slice(0, 2000), ms: performance.now() - t0, canary: [...opened] });
  run(msg.entry).then(
    (detail) => reply('ok', detail),
    async (err: unknown) => {
      const { ErrorCodes, VlaError } = await import('../../src/util/errors.js');
      // A coded error that carries a JavaScript engine's message leaks internals: a finding too.
      if (err instanceof VlaError && err.code !== ErrorCodes.INTERNAL && !LEAKS.test(err.message)) reply('coded', err.message, err.code);
      else reply('uncoded', err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err), err instanceof VlaError ? err.code : '');
    },
  );
});
process.send?.({ ready: true });
