import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import sharp from 'sharp';

import { main } from '../../src/cli/main.js';
import { buildPrompt, DRIVING_PROMPT, modelInstruction } from '../../src/model/prompt.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { buildTokenizer } from '../../src/model/tokenizer-builder.js';
import { openBag } from '../../src/bag/reader.js';
import { makeDataset, type DatasetIndex } from '../../src/sample/dataset.js';
import { encodeJpeg, SAMPLE_TOPICS } from '../../src/sample/drive.js';
import { renderView } from '../../src/sample/render.js';
import { futureWaypoints, INSTRUCTIONS, recoveryWaypoints, renderOptionsAt, sampleScenario, simulateScenario } from '../../src/sample/scenario.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('training dataset writer', function () {
  this.timeout(120_000);
  let tmp: string;
  let dir: string;
  let index: DatasetIndex;
  const W = 96, H = 54;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'dataset-'));
    dir = path.join(tmp, 'ds');
    await makeDataset(dir, { train: 2, val: 1, test: 1, framesPerEpisode: 2, width: W, height: H });
    index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as DatasetIndex;
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('writes a complete index.json: format, splits with disjoint seeds, samples', () => {
    assert.equal(index.format, 'autoprune-ros-dataset');
    assert.equal(index.version, 1);
    assert.deepEqual(index.cameras, ['front', 'front_left', 'front_right']);
    assert.equal(index.width, W);
    assert.equal(index.height, H);
    assert.equal(index.numWaypoints, 6);
    assert.equal(index.waypointDtS, 0.5);
    assert.deepEqual(index.splits.train.seeds, [1000, 1001]);
    assert.deepEqual(index.splits.val.seeds, [500_000]);
    assert.deepEqual(index.splits.test.seeds, [900_000]);
    assert.equal(index.samples.length, 8);
    assert.equal(index.generator.options.framesPerEpisode, 2);
    assert.deepEqual({ ...index.prompt, image_token: undefined }, { ...DRIVING_PROMPT, image_token: undefined });
    assert.ok(!existsSync(path.join(dir, 'index.json.tmp')));
    for (const s of index.samples) {
      const sc = sampleScenario(s.episodeSeed);
      assert.equal(s.kind, sc.kind);
      assert.equal(s.complexity, sc.complexity);
      assert.equal(s.instruction, sc.instruction);
      assert.ok(INSTRUCTIONS[s.kind].includes(s.instruction));
      assert.ok(s.tS >= 0 && s.tS <= sc.durationS);
      assert.equal(s.waypoints.length, 6);
      for (const w of s.waypoints) assert.ok(w.length === 2 && w.every(Number.isFinite));
      assert.equal(s.frames.length, 3);
    }
  });

  it('holds JPEGs of the requested size in frames.bin, the views the drive bags would show', async () => {
    const bin = readFileSync(path.join(dir, 'frames.bin'));
    let next = 0;
    for (const s of index.samples) {
      for (const [off, len] of s.frames) {
        assert.equal(off, next, 'contiguous, in sample and camera order');
        next = off + len;
        const { info } = await sharp(bin.subarray(off, off + len)).raw().toBuffer({ resolveWithObject: true });
        assert.equal(info.width, W);
        assert.equal(info.height, H);
        assert.equal(info.channels, 3);
      }
    }
    assert.equal(next, bin.length);
    const s = index.samples[3] as DatasetIndex['samples'][number];
    const sc = sampleScenario(s.episodeSeed);
    const jpeg = await encodeJpeg(renderView(renderOptionsAt(sc, simulateScenario(sc), s.tS, 'front_left', W, H)));
    const [off, len] = s.frames[1] as [number, number];
    assert.ok(jpeg.equals(bin.subarray(off, off + len)), 'byte-identical to a fresh render');
  });

  it('gives the prompt ids the engine would build from what the node feeds the model', async () => {
    const built = buildTokenizer({ vocabSize: 512, modelMaxLength: 512 });
    assert.equal(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'), built.tokenizerJson, 'the tiny model\'s tokenizer');
    assert.equal(index.imageTokenId, built.imageTokenId);
    assert.equal(index.bosTokenId, built.bosId);
    const tok = await loadTokenizer(dir);
    for (const s of index.samples) {
      assert.match(s.modelInstruction, /^.+ \(ego speed \d+\.\d m\/s\)$/);
      assert.equal(s.modelInstruction, modelInstruction(s.instruction, s.speedMps));
      assert.equal(s.inputIds[0], index.bosTokenId);
      assert.equal(s.inputIds.filter((id) => id === index.imageTokenId).length, 3, 'one image token per camera');
      assert.deepEqual(s.inputIds, Array.from(tok.encode(buildPrompt(DRIVING_PROMPT, s.modelInstruction, 3), { addBos: true })));
      assert.ok(tok.decode(s.inputIds).includes(s.modelInstruction));
    }
  });

  it('is deterministic: the same options write the same bytes', async () => {
    const again = path.join(tmp, 'again');
    await makeDataset(again, { train: 2, val: 1, test: 1, framesPerEpisode: 2, width: W, height: H });
    for (const f of ['index.json', 'frames.bin', 'tokenizer.json', 'tokenizer_config.json']) assert.ok(readFileSync(path.join(dir, f)).equals(readFileSync(path.join(again, f))), f);
  });

  it('recovery samples: training split only, displaced views, and targets that lead back to the expert path', async () => {
    const rec = path.join(tmp, 'recovery');
    await makeDataset(rec, { train: 2, val: 1, test: 0, framesPerEpisode: 2, width: W, height: H, recovery: { perEpisode: 2 } });
    const idx = JSON.parse(readFileSync(path.join(rec, 'index.json'), 'utf8')) as DatasetIndex;
    const frames = readFileSync(path.join(rec, 'frames.bin'));
    // the expert samples are the ones the plain dataset has, byte for byte
    const plain = index.samples.filter((s) => s.split !== 'test');
    const expert = idx.samples.filter((s) => !s.recovery);
    assert.deepEqual(expert.map((s) => [s.episodeSeed, s.tS, s.waypoints]), plain.map((s) => [s.episodeSeed, s.tS, s.waypoints]));
    const recs = idx.samples.filter((s) => s.recovery);
    assert.equal(recs.length, 4, 'two per training episode');
    assert.ok(recs.every((s) => s.split === 'train'), 'validation stays on the expert path');
    assert.equal(idx.splits.train.samples, 8);
    assert.equal((idx.generator.options.recovery as { perEpisode: number }).perEpisode, 2);
    for (const s of recs) {
      const r = s.recovery as { lateralM: number; headingRad: number };
      assert.ok(Math.abs(r.lateralM) <= 1.2 && Math.abs(r.headingRad) <= 0.1);
      const sim = simulateScenario(sampleScenario(s.episodeSeed));
      const ref = futureWaypoints(sim, s.tS);
      // by 2 s the displacement is gone: the last waypoints are the expert's, seen from the displaced pose
      const want = recoveryWaypoints(sim, s.tS, r.lateralM, r.headingRad).waypoints;
      assert.deepEqual(s.waypoints, want.map(([x, y]) => [Math.round(x * 1e4) / 1e4, Math.round(y * 1e4) / 1e4]));
      const back = recoveryWaypoints(sim, s.tS, 0, 0).waypoints;
      for (let i = 0; i < 6; i++) for (let j = 0; j < 2; j++) assert.ok(Math.abs((back[i] as number[])[j] as number - ((ref[i] as number[])[j] as number)) < 1e-9, 'no displacement: the expert path');
      // the front view is rendered from the displaced pose, not the expert's
      const [off, len] = s.frames[0] as [number, number];
      const got = await sharp(frames.subarray(off, off + len)).raw().toBuffer();
      const onPath = await sharp(await encodeJpeg(renderView(renderOptionsAt(sampleScenario(s.episodeSeed), sim, s.tS, 'front', W, H)), 85)).raw().toBuffer();
      let diff = 0;
      for (let i = 0; i < got.length; i++) diff += Math.abs((got[i] as number) - (onPath[i] as number));
      assert.ok(diff / got.length > 1, `front view differs from the expert's (mean abs ${diff / got.length})`);
    }
    const args = (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.ARGS;
    await assert.rejects(makeDataset(path.join(tmp, 'never2'), { train: 1, val: 0, test: 0, framesPerEpisode: 1, recovery: { perEpisode: 1, maxLateralM: -1 } }), args);
    await assert.rejects(makeDataset(path.join(tmp, 'never2'), { train: 1, val: 0, test: 0, framesPerEpisode: 1, recovery: { perEpisode: 1.5 } }), args);
  });

  it('rejects bad options with VLA_E_ARGS', async () => {
    const args = (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.ARGS;
    const ok = { train: 1, val: 0, test: 0, framesPerEpisode: 1 };
    const out = path.join(tmp, 'never');
    await assert.rejects(makeDataset(out, { ...ok, train: -1 }), args);
    await assert.rejects(makeDataset(out, { ...ok, val: 1.5 }), args);
    await assert.rejects(makeDataset(out, { ...ok, train: 0 }), args);
    await assert.rejects(makeDataset(out, { ...ok, framesPerEpisode: 0 }), args);
    await assert.rejects(makeDataset(out, { ...ok, width: 8 }), args);
    await assert.rejects(makeDataset(out, { ...ok, cameras: ['rear' as 'front'] }), args);
    await assert.rejects(makeDataset(out, { ...ok, cameras: ['front', 'front'] }), args);
    await assert.rejects(makeDataset(out, { ...ok, train: 500_000 }), args);
    assert.ok(!existsSync(out), 'nothing written');
  });

  it('CLI: make-dataset, make-test-drives, make-sample-drive --scenario; bad arguments are VLA_E_ARGS', async () => {
    const ds = path.join(tmp, 'cli-ds');
    const r = await cli('make-dataset', '--out', ds, '--train', '1', '--val', '1', '--test', '0', '--frames-per-episode', '1', '--width', '32', '--height', '32', '--json');
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).samples, 2);
    const idx = JSON.parse(readFileSync(path.join(ds, 'index.json'), 'utf8')) as DatasetIndex;
    assert.deepEqual(idx.generator.command?.slice(0, 2), ['autoprune-ros', 'make-dataset']);

    const drives = path.join(tmp, 'drives');
    const t = await cli('make-test-drives', '--out', drives, '--count', '1', '--json');
    assert.equal(t.code, 0, t.err);
    const list = JSON.parse(readFileSync(path.join(drives, 'drives.json'), 'utf8')) as { drives: Array<{ seed: number; bag: string; kind: string; instruction: string; complexity: string }> };
    const sc = sampleScenario(900_000);
    assert.deepEqual(list.drives.map((d) => [d.seed, d.bag, d.kind, d.instruction, d.complexity]), [[900_000, 'test-900000', sc.kind, sc.instruction, sc.complexity]]);
    const bag = await openBag(path.join(drives, 'test-900000'));
    const count = (topic: string) => bag.info.topics.find((x) => x.name === topic)?.messageCount;
    assert.equal(count(SAMPLE_TOPICS.camera('front')), Math.floor(sc.durationS * 10));
    assert.equal(count(SAMPLE_TOPICS.instruction), 1);
    assert.equal(count(SAMPLE_TOPICS.odometry), Math.floor((sc.durationS + 3) * 50) + 1, 'odometry 3 s past the last frame');
    await bag.close();
    // --split val: validation episodes (for tuning and calibration), named by split
    const val = path.join(tmp, 'val-drives');
    const v = await cli('make-test-drives', '--out', val, '--count', '1', '--split', 'val', '--json');
    assert.equal(v.code, 0, v.err);
    const vlist = JSON.parse(readFileSync(path.join(val, 'drives.json'), 'utf8')) as { split: string; drives: Array<{ seed: number; bag: string }> };
    assert.equal(vlist.split, 'val');
    assert.deepEqual(vlist.drives.map((d) => [d.seed, d.bag]), [[500_000, 'val-500000']]);
    assert.ok(existsSync(path.join(val, 'val-500000')));

    const one = await cli('make-sample-drive', '--out', path.join(tmp, 'one'), '--scenario', '900001', '--width', '32', '--height', '32', '--camera-hz', '2', '--json');
    assert.equal(one.code, 0, one.err);
    assert.equal(JSON.parse(one.out).scenario.seed, 900_001);

    for (const bad of [
      ['make-dataset', '--out', path.join(tmp, 'x'), '--train', 'many'],
      ['make-dataset', '--out', path.join(tmp, 'x'), '--train', '0', '--val', '0', '--test', '0'],
      ['make-dataset', '--out', path.join(tmp, 'x'), '--frames-per-episode', '0'],
      ['make-test-drives', '--out', path.join(tmp, 'y'), '--count', '0'],
      ['make-test-drives', '--out', path.join(tmp, 'y'), '--count', '-2'],
      ['make-test-drives', '--out', path.join(tmp, 'y'), '--split', 'train'],
      ['make-sample-drive', '--out', path.join(tmp, 'z'), '--scenario', 'abc'],
      ['make-sample-drive', '--out', path.join(tmp, 'z'), '--scenario', '5', '--duration', '3'],
    ]) {
      const b = await cli(...bad);
      assert.equal(b.code, 2, `${bad.join(' ')}: ${b.err}`);
      assert.match(b.err, /^VLA_E_ARGS: /);
    }
    assert.ok(!existsSync(path.join(tmp, 'x', 'index.json')));
  });
});
