import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import sharp from 'sharp';

import { Engine } from '../../src/engine/engine.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { requireBuilt, syntheticFrame, testModels } from './helpers.js';

const tiny = path.join(testModels, 'tiny');
const tinyText = path.join(testModels, 'tiny-text');

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof VlaError, `expected a VlaError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  });
}

function raw(seed: number, width = 64, height = 48) {
  return { data: syntheticFrame(width, height, seed), width, height, encoding: 'rgb8' as const };
}

describe('Engine (addon, tiny model)', function () {
  let engine: Engine;
  before(async () => {
    requireBuilt();
    engine = await Engine.load(tiny, { backend: 'cpu', threads: 2 });
  });
  after(async () => engine?.dispose());

  it('reports the model and its cameras', () => {
    assert.deepEqual(engine.cameras, ['front', 'front_left', 'front_right']);
    assert.equal(engine.info.backend, 'cpu');
    assert.equal(engine.info.head, 'waypoints');
    assert.ok(engine.info.nParams > 0);
    // which GEMM the CPU runs: the BLAS found at run time, or the engine's own kernel; the environment decides
    const blasOff = process.env.VLA_BLAS === 'off';
    const hasOpenblas = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu'].some((d) => existsSync(path.join(d, 'libopenblas.so.0')));
    if (blasOff || !hasOpenblas) assert.equal(engine.info.cpuGemm, 'builtin');
    else assert.match(engine.info.cpuGemm, /^openblas \d+\.\d+/);
  });

  it('runs the waypoint head on raw frames with timings and token counts', async () => {
    const r = await engine.infer({ views: { front: raw(1), front_left: raw(2), front_right: raw(3) }, instruction: 'turn left at the next intersection' });
    assert.equal(r.head, 'waypoints');
    assert.equal(r.waypoints.length, engine.info.numWaypoints);
    r.waypoints.forEach((w, i) => {
      assert.ok(Number.isFinite(w.x) && Number.isFinite(w.y));
      assert.ok(Math.abs(w.tS - (i + 1) * engine.info.waypointDtS) < 1e-9);
    });
    assert.equal(r.tokens.visual, 3 * engine.info.tokensPerView);
    assert.equal(r.tokens.prompt, r.tokens.visual + r.tokens.text + engine.info.numWaypoints);
    for (const k of ['preprocessMs', 'visionMs', 'prefillMs', 'headMs', 'engineMs', 'totalMs'] as const) assert.ok(r.timings[k] >= 0, k);
    assert.ok(r.timings.totalMs >= r.timings.engineMs);
  });

  it('gives the same answer for every pixel encoding of the same image', async () => {
    const w = 32, h = 24;
    const rgb = syntheticFrame(w, h, 9);
    const bgr = new Uint8Array(rgb.length), rgba = new Uint8Array(w * h * 4), bgra = new Uint8Array(w * h * 4);
    const padded = new Uint8Array((w * 3 + 8) * h); // step with row padding
    for (let p = 0; p < w * h; p++) {
      const [r, g, b] = [rgb[p * 3]!, rgb[p * 3 + 1]!, rgb[p * 3 + 2]!];
      bgr.set([b, g, r], p * 3);
      rgba.set([r, g, b, 255], p * 4);
      bgra.set([b, g, r, 255], p * 4);
    }
    for (let y = 0; y < h; y++) padded.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), y * (w * 3 + 8));
    const run = (img: Parameters<Engine['infer']>[0]['views'][number]) => engine.infer({ views: [img], instruction: 'keep lane' }).then((r) => r.waypoints);
    const ref = await run({ data: rgb, width: w, height: h, encoding: 'rgb8' });
    assert.deepEqual(await run({ data: bgr, width: w, height: h, encoding: 'bgr8' }), ref);
    assert.deepEqual(await run({ data: rgba, width: w, height: h, encoding: 'rgba8' }), ref);
    assert.deepEqual(await run({ data: bgra, width: w, height: h, encoding: 'bgra8' }), ref);
    assert.deepEqual(await run({ data: padded, width: w, height: h, step: w * 3 + 8, encoding: 'rgb8' }), ref);
    // PNG is lossless: decoding it gives the same pixels, so the same waypoints
    const png = await sharp(Buffer.from(rgb), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
    assert.deepEqual(await run({ kind: 'compressed', data: png }), ref);
  });

  it('queues concurrent calls and answers each one as if it ran alone', async () => {
    const inputs = [1, 2, 3, 4].map((s) => ({ views: [raw(s)], instruction: `go straight ${s}` }));
    const alone: number[][] = [];
    for (const i of inputs) alone.push((await engine.infer(i)).waypoints.map((w) => w.x));
    const together = await Promise.all(inputs.map((i) => engine.infer(i)));
    assert.deepEqual(together.map((r) => r.waypoints.map((w) => w.x)), alone);
  });

  it('does not block the event loop while inferring', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const p = Promise.all([1, 2, 3].map((s) => engine.infer({ views: [raw(s, 640, 480), raw(s + 1, 640, 480), raw(s + 2, 640, 480)], instruction: 'slow down' })));
    await p;
    clearInterval(timer);
    assert.ok(ticks > 0, 'timers fired while native work ran');
  });

  it('rejects bad input with coded errors and keeps working', async () => {
    await rejectsWith(engine.infer({ views: { rear: raw(1) }, instruction: 'x' }), ErrorCodes.INPUT, /unknown camera 'rear'/);
    await rejectsWith(engine.infer({ views: {}, instruction: 'x' }), ErrorCodes.INPUT);
    await rejectsWith(engine.infer({ views: [raw(1), raw(2), raw(3), raw(4)], instruction: 'x' }), ErrorCodes.INPUT);
    await rejectsWith(engine.infer({ views: [raw(1)], instruction: 'x'.repeat(5000) }), ErrorCodes.INPUT, /limit/);
    await rejectsWith(engine.infer({ views: [raw(1)], instruction: 'go <image> left' }), ErrorCodes.INPUT, /image token/);
    await rejectsWith(engine.infer({ views: [{ ...raw(1), step: 10 }], instruction: 'x' }), ErrorCodes.IMAGE, /camera 'front'.*step/);
    await rejectsWith(engine.infer({ views: [{ ...raw(1), data: new Uint8Array(100) }], instruction: 'x' }), ErrorCodes.IMAGE, /needs/);
    await rejectsWith(engine.infer({ views: [{ ...raw(1), encoding: 'yuv422' as never }], instruction: 'x' }), ErrorCodes.IMAGE);
    const jpeg = await sharp(Buffer.from(syntheticFrame(32, 32, 1)), { raw: { width: 32, height: 32, channels: 3 } }).jpeg().toBuffer();
    await rejectsWith(engine.infer({ views: [{ kind: 'compressed', data: jpeg.subarray(0, jpeg.length / 2) }], instruction: 'x' }), ErrorCodes.IMAGE_DECODE, /camera 'front'/);
    await rejectsWith(engine.infer({ views: [{ kind: 'compressed', data: new Uint8Array([1, 2, 3, 4]) }], instruction: 'x' }), ErrorCodes.IMAGE_DECODE);
    await rejectsWith(engine.infer({ views: [{ kind: 'compressed', data: new Uint8Array(0) }], instruction: 'x' }), ErrorCodes.IMAGE_DECODE);
    const ok = await engine.infer({ views: [raw(1)], instruction: 'x' });
    assert.equal(ok.waypoints.length, engine.info.numWaypoints);
  });

  it('accepts an empty instruction (the prompt still has its template)', async () => {
    const r = await engine.infer({ views: [raw(1)], instruction: '' });
    assert.equal(r.waypoints.length, engine.info.numWaypoints);
  });
});

describe('Engine text head (addon, tiny-text model)', () => {
  before(requireBuilt);

  it('decodes greedily, reports generated tokens and text, and stops at max tokens', async () => {
    const e = await Engine.load(tinyText, { backend: 'cpu' });
    try {
      const r = await e.infer({ views: [raw(5)], instruction: 'turn right', maxNewTokens: 6 });
      assert.equal(r.head, 'text');
      assert.equal(typeof r.text, 'string');
      assert.ok(r.tokenIds.length <= 6);
      assert.equal(r.tokens.generated, r.tokenIds.length);
      assert.ok(r.stopped || r.tokenIds.length === 6);
      const again = await e.infer({ views: [raw(5)], instruction: 'turn right', maxNewTokens: 6 });
      assert.deepEqual(again.tokenIds, r.tokenIds);
      const wp = await e.infer({ views: [raw(5)], instruction: 'turn right', head: 'waypoints' });
      assert.equal(wp.waypoints.length, e.info.numWaypoints);
    } finally {
      await e.dispose();
    }
  });
});

describe('Engine lifecycle and loading errors (addon)', () => {
  before(requireBuilt);

  it('dispose lets accepted calls finish, then frees the engine and rejects later calls', async () => {
    const e = await Engine.load(tiny, { backend: 'cpu' });
    const accepted = [1, 2].map((s) => e.infer({ views: [raw(s)], instruction: 'keep lane' }));
    const closing = e.dispose();
    assert.ok(e.disposed);
    for (const r of await Promise.all(accepted)) assert.equal(r.waypoints.length, e.info.numWaypoints);
    await closing;
    await rejectsWith(e.infer({ views: [raw(1)], instruction: 'x' }), ErrorCodes.DISPOSED);
    assert.equal(e.dispose(), closing); // twice is fine
  });

  it('rejects beyond the queue limit with VLA_E_BUSY', async () => {
    const e = await Engine.load(tiny, { backend: 'cpu', maxQueue: 1 });
    try {
      const calls = [1, 2, 3, 4].map((s) => e.infer({ views: [raw(s)], instruction: 'x' }));
      const settled = await Promise.allSettled(calls);
      const busy = settled.filter((s) => s.status === 'rejected' && (s.reason as VlaError).code === ErrorCodes.BUSY);
      const ok = settled.filter((s) => s.status === 'fulfilled');
      assert.ok(busy.length >= 1, 'some calls were rejected');
      assert.ok(ok.length >= 2, 'the running and the queued call completed');
    } finally {
      await e.dispose();
    }
  });

  it('falls back from auto to cpu and refuses cuda, saying why, where it cannot run', async () => {
    const { loadAddon } = await import('../../src/engine/addon.js');
    const addon = loadAddon();
    const e = await Engine.load(tiny, { backend: 'auto' });
    assert.equal(e.info.backend, addon.cudaUnavailable === '' ? 'cuda' : 'cpu');
    await e.dispose();
    if (addon.cudaUnavailable !== '') {
      const escaped = addon.cudaUnavailable.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      await rejectsWith(Engine.load(tiny, { backend: 'cuda' }), ErrorCodes.BACKEND, new RegExp(escaped));
    }
    await rejectsWith(Engine.load(tiny, { backend: 'cpu', weightDtype: 'f8' as 'f16' }), ErrorCodes.INPUT);
  });

  it('reports broken model directories with the right code', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-engine-'));
    try {
      await rejectsWith(Engine.load(path.join(tmp, 'nothing')), ErrorCodes.IO);
      const copy = (name: string) => {
        const d = path.join(tmp, name);
        cpSync(tiny, d, { recursive: true });
        return d;
      };
      let d = copy('trunc');
      const st = readFileSync(path.join(d, 'model.safetensors'));
      writeFileSync(path.join(d, 'model.safetensors'), st.subarray(0, st.length - 64));
      await rejectsWith(Engine.load(d), ErrorCodes.WEIGHTS_TRUNCATED, /model\.safetensors/);
      d = copy('header');
      const bad = Buffer.from(st);
      bad.writeBigUInt64LE(BigInt(st.length * 2), 0);
      writeFileSync(path.join(d, 'model.safetensors'), bad);
      await rejectsWith(Engine.load(d), ErrorCodes.WEIGHTS_FORMAT);
      d = copy('tok');
      writeFileSync(path.join(d, 'tokenizer.json'), '{not json');
      await rejectsWith(Engine.load(d), ErrorCodes.TOKENIZER, /tokenizer\.json/);
      d = copy('notok');
      rmSync(path.join(d, 'tokenizer.json'));
      await rejectsWith(Engine.load(d), ErrorCodes.TOKENIZER);
      d = copy('cfg');
      writeFileSync(path.join(d, 'config.json'), '[1, 2]');
      await rejectsWith(Engine.load(d), ErrorCodes.CONFIG);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
