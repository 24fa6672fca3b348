/**
 * Replay against hostile or careless bags and output directories (issue 16, classes 1 and 3),
 * with a fake engine (no addon): nothing already recorded is lost, time advances in bounded work
 * whatever the bag's timestamps or the tick, and an abort always ends the run.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { openBag } from '../../src/bag/reader.js';
import { BagWriter } from '../../src/bag/writer.js';
import type { InferInput, InferOutput } from '../../src/engine/engine.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { QOS_DEFAULT } from '../../src/msgs/port.js';
import { loadParamsFile, type NodeConfig } from '../../src/pipeline/params.js';
import { checkOutputApart, prepareReplayOutput, REPLAY_MARKER } from '../../src/replay/outdir.js';
import { MAX_FIRINGS_PER_ADVANCE, ReplayPort } from '../../src/replay/port.js';
import { replayBag, type ReplayEngine } from '../../src/replay/replay.js';
import { makeSampleDrive } from '../../src/sample/drive.js';
import { ErrorCodes, isVlaError } from '../../src/util/errors.js';
import { SAMPLE_CONFIG } from '../../src/util/paths.js';

const codec = new MessageCodec();

function fakeEngine(): ReplayEngine & { calls: number } {
  const e = {
    calls: 0,
    cameras: ['front', 'front_left', 'front_right'],
    info: { backend: 'fake', nParams: 0, numWaypoints: 6, waypointDtS: 0.5 },
    infer: async (input: InferInput): Promise<InferOutput> => {
      e.calls++;
      return {
        head: 'waypoints',
        waypoints: [0.5, 1, 1.5, 2, 2.5, 3].map((tS) => ({ tS, x: 5 * tS, y: 0 })),
        tokenIds: [],
        stopped: true,
        cameras: Object.keys(input.views),
        timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 0.01 },
        tokens: { prompt: 1, visual: 48, text: 1, generated: 0 },
        memory: { peakActivationBytes: 0, prefillHostReads: 0 },
        prune: { policy: 'none', nVisual: 48, kept: [48], merged: [0], keptPerView: [], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 48, avgTokens: 48, flops: 1, flopsUnpruned: 1, budgetMet: true },
      };
    },
  };
  return e;
}

function hashDir(dir: string): string {
  const h = createHash('sha256');
  for (const f of readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    h.update(f);
    h.update(statSync(p).isDirectory() ? hashDir(p) : readFileSync(p));
  }
  return h.digest('hex');
}

/** Runs with a wall-clock bound: a hang fails the test instead of stalling the suite. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(t);
  }
}

describe('hostile replays (issue 16)', function () {
  this.timeout(60_000);
  let tmp: string;
  let drive: string;
  let config: NodeConfig;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hostile-replay-'));
    drive = path.join(tmp, 'E', 'bag');
    await makeSampleDrive(drive, { durationS: 1.5, width: 64, height: 48 });
    config = loadParamsFile(SAMPLE_CONFIG);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const run = (bag: string, out: string, o: Partial<Parameters<typeof replayBag>[0]> = {}) =>
    replayBag({ bag, config, configPath: SAMPLE_CONFIG, engine: fakeEngine(), outDir: out, writeTrace: false, ...o });

  describe('nothing recorded is lost (class 1)', () => {
    it('an output directory that is, holds or lies inside the bag is refused before anything is written', async () => {
      const before = hashDir(path.join(tmp, 'E'));
      for (const out of [path.join(tmp, 'E'), drive, path.join(drive, 'out'), path.join(tmp, 'E', '.', 'bag', '..')]) {
        assert.throws(() => checkOutputApart(drive, out), (e) => isVlaError(e, ErrorCodes.ARGS) && /replay never writes over its input/.test((e as Error).message), out);
        await assert.rejects(run(drive, out), (e) => isVlaError(e, ErrorCodes.ARGS), out);
        await assert.rejects(prepareReplayOutput(drive, out, { overwrite: true }), (e) => isVlaError(e, ErrorCodes.ARGS), out);
      }
      // the same through a symbolic link to the bag's parent, and for a single-file bag
      const link = path.join(tmp, 'E-link');
      cpSync(path.join(tmp, 'E'), path.join(tmp, 'E-copy'), { recursive: true });
      (await import('node:fs')).symlinkSync(path.join(tmp, 'E'), link);
      assert.throws(() => checkOutputApart(path.join(link, 'bag'), path.join(tmp, 'E')), (e) => isVlaError(e, ErrorCodes.ARGS));
      assert.throws(() => checkOutputApart(path.join(drive, 'bag_0.mcap'), drive), (e) => isVlaError(e, ErrorCodes.ARGS));
      assert.equal(hashDir(path.join(tmp, 'E')), before, 'the input is untouched');
    });

    it('earlier outputs are replaced only with overwrite, only by name, only where replay wrote them', async () => {
      const out = path.join(tmp, 'out-a');
      await prepareReplayOutput(drive, out);
      await run(drive, out);
      assert.ok(existsSync(path.join(out, 'bag', 'metadata.yaml')) && existsSync(path.join(out, REPLAY_MARKER)));
      writeFileSync(path.join(out, 'my-notes.txt'), 'mine');
      await assert.rejects(prepareReplayOutput(drive, out), (e) => isVlaError(e, ErrorCodes.ARGS) && /already holds replay outputs \(bag\).*--overwrite/.test((e as Error).message));
      assert.ok(existsSync(path.join(out, 'bag', 'metadata.yaml')), 'a refused run deletes nothing');
      await prepareReplayOutput(drive, out, { overwrite: true });
      assert.ok(!existsSync(path.join(out, 'bag')) && readFileSync(path.join(out, 'my-notes.txt'), 'utf8') === 'mine');
      // a directory replay did not write: never cleared, even with overwrite
      const foreign = path.join(tmp, 'foreign');
      mkdirSync(path.join(foreign, 'bag'), { recursive: true });
      writeFileSync(path.join(foreign, 'bag', 'precious.db3'), 'x');
      await assert.rejects(prepareReplayOutput(drive, foreign, { overwrite: true }), (e) => isVlaError(e, ErrorCodes.ARGS) && /not written by replay/.test((e as Error).message));
      assert.ok(existsSync(path.join(foreign, 'bag', 'precious.db3')));
      // the bag writer never writes into a non-empty bag directory either
      await assert.rejects(run(drive, foreign), (e) => isVlaError(e, ErrorCodes.IO) && /not empty/.test((e as Error).message));
      assert.ok(existsSync(path.join(foreign, 'bag', 'precious.db3')));
    });
  });

  describe('time advances in bounded work (class 3)', () => {
    const variant = (name: string, edit: (meta: string) => string) => {
      const dir = path.join(tmp, name);
      cpSync(drive, dir, { recursive: true });
      writeFileSync(path.join(dir, 'metadata.yaml'), edit(readFileSync(path.join(dir, 'metadata.yaml'), 'utf8')));
      return dir;
    };

    it("metadata.yaml's starting time 0, negative or missing: the clock starts at the first message, every set is inferred", async () => {
      const ref = await run(drive, path.join(tmp, 'start-ref'), { writeBag: false });
      const sets = ref.report.settings[0]?.frames.setsInferred ?? 0;
      assert.ok(sets > 5);
      const edits: Array<[string, (m: string) => string]> = [
        ['zero', (m) => m.replace(/nanoseconds_since_epoch: \d+/g, 'nanoseconds_since_epoch: 0')],
        ['negative', (m) => m.replace(/nanoseconds_since_epoch: \d+/g, 'nanoseconds_since_epoch: -9000000000000000000')],
        ['missing', (m) => m.replace(/ {2}starting_time:\n {4}nanoseconds_since_epoch: \d+\n/, '')],
        ['future', (m) => m.replace(/nanoseconds_since_epoch: \d+/g, 'nanoseconds_since_epoch: 9000000000000000000')],
      ];
      for (const [name, edit] of edits) {
        const t0 = performance.now();
        const r = await within(20_000, run(variant(`start-${name}`, edit), path.join(tmp, `start-${name}-out`), { writeBag: false }), name);
        assert.equal(r.report.settings[0]?.frames.setsInferred, sets, name);
        assert.ok(performance.now() - t0 < 15_000, `${name}: ${performance.now() - t0} ms`);
      }
    });

    it('a message stamped a century ahead, and a tick of a nanosecond: bounded work, same sets inferred', async () => {
      const far = path.join(tmp, 'far');
      const src = await openBag(drive);
      const w = await BagWriter.create(far);
      for (const t of src.info.topics) await w.addTopic(t.name, t.type, codec.definitionText(t.type), QOS_DEFAULT);
      let last = 0n;
      for await (const m of src.messages()) {
        await w.write(m.topic, m.logTimeNs, m.data);
        last = m.logTimeNs;
      }
      const odom = src.info.topics.find((t) => t.type === 'nav_msgs/msg/Odometry')?.name as string;
      await w.write(odom, last + 100n * 365n * 86_400n * 1_000_000_000n, codec.encode('nav_msgs/msg/Odometry', {}));
      await w.close();
      const ref = await run(drive, path.join(tmp, 'far-ref'), { writeBag: false });
      const t0 = performance.now();
      const r = await within(20_000, run(far, path.join(tmp, 'far-out'), { writeBag: false }), 'far-future message');
      assert.equal(r.report.settings[0]?.frames.setsInferred, ref.report.settings[0]?.frames.setsInferred);
      assert.ok(performance.now() - t0 < 15_000);
      // a tick the schema refuses (1 ns), given straight to the library
      const tiny = { ...config, node: { ...config.node, tickMs: 1e-6 } };
      const r2 = await within(30_000, run(drive, path.join(tmp, 'tiny-tick'), { writeBag: false, config: tiny }), 'tiny tick');
      assert.ok((r2.report.settings[0]?.frames.setsInferred ?? 0) >= (ref.report.settings[0]?.frames.setsInferred ?? 0) - 1);
      // rate mode: the century is skipped, not waited out
      const r3 = await within(20_000, run(far, path.join(tmp, 'far-rate'), { writeBag: false, rate: 20 }), 'far-future message at --rate 20');
      assert.ok((r3.report.settings[0]?.frames.setsInferred ?? 0) > 0);
    });

    it('an abort ends a run at once, even one that has nothing to wait on', async () => {
      const abort = new AbortController();
      const tiny = { ...config, node: { ...config.node, tickMs: 1e-6 } };
      const t0 = performance.now();
      setTimeout(() => abort.abort(), 100);
      const r = await within(10_000, run(drive, path.join(tmp, 'abort'), { writeBag: false, config: tiny, signal: abort.signal }), 'abort');
      assert.ok(r.report.interrupted || performance.now() - t0 < 2_000);
      assert.ok(performance.now() - t0 < 5_000, `${performance.now() - t0} ms`);
    });

    it('the port fires a timer at most MAX_FIRINGS_PER_ADVANCE + 1 times per advance, keeping its phase', async () => {
      const port = new ReplayPort(undefined);
      let n = 0;
      port.timer(1e-6, () => n++);
      await port.advanceTo(1_000n);
      assert.equal(n, 1, 'the first advance starts the clock a nanosecond before');
      n = 0;
      await port.advanceTo(1_000n + 10_000_000n);
      assert.equal(n, MAX_FIRINGS_PER_ADVANCE + 1);
      n = 0;
      await port.advanceTo(1_000n + 10_000_000n + 5n);
      assert.equal(n, 5, 'the phase is kept after a skip');
    });
  });
});
