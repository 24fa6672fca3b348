/**
 * Hostile weights, frames, instructions, parameters and command lines against the real engine
 * (issue 16, classes 1, 2, 6-8, 10). Whatever could kill the process (SIGBUS from a weights file
 * rewritten under a loaded model, a frame's buffer detached mid-inference) runs in a child
 * process, so a regression fails this test instead of the test run.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import sharp from 'sharp';

import { main } from '../../src/cli/main.js';
import { Engine } from '../../src/engine/engine.js';
import { InMemoryPort } from '../../src/msgs/port.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { VlaNodeLogic } from '../../src/pipeline/node.js';
import { configFromParams } from '../../src/pipeline/params.js';
import { ENGINE_LOADER } from '../../src/pipeline/runner.js';
import { makeSampleDrive } from '../../src/sample/drive.js';
import { ErrorCodes, VlaError, type ErrorCode } from '../../src/util/errors.js';
import { nodeParams } from '../node-params.js';
import { requireBuilt, root, syntheticFrame, testModels } from './helpers.js';

const tiny = path.join(testModels, 'tiny');
const codec = new MessageCodec();

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof VlaError, `expected a VlaError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  });
}

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Runs a TypeScript snippet in a child node (tsx), bounded in time; a crash is a signal here, not a dead test run. */
function child(tmp: string, name: string, code: string, nodeArgs: string[] = [], timeoutMs = 60_000): { status: number | null; signal: string | null; out: string } {
  const file = path.join(tmp, `${name}.mts`); // an ES module: top-level await
  writeFileSync(file, code);
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', 'tsx', file], { cwd: root, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, LOG_LEVEL: 'error' } });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}` };
}

/** A copy of the tiny model with config.json / tokenizer.json edited. */
function modelCopy(tmp: string, name: string, edit: { config?: (c: Record<string, any>) => void; tokenizer?: (t: Record<string, any>) => void; weights?: (b: Buffer, tensors: Record<string, { data_offsets: [number, number] }>, dataStart: number) => void } = {}): string {
  const dir = path.join(tmp, name);
  cpSync(tiny, dir, { recursive: true });
  if (edit.config) {
    const c = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    edit.config(c);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
  }
  if (edit.tokenizer) {
    const t = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    edit.tokenizer(t);
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(t));
  }
  if (edit.weights) {
    const f = path.join(dir, 'model.safetensors');
    const b = readFileSync(f);
    const n = Number(b.readBigUInt64LE(0));
    edit.weights(b, JSON.parse(b.subarray(8, 8 + n).toString('utf8')), 8 + n);
    writeFileSync(f, b);
  }
  return dir;
}

const grey = (w = 64, h = 48) => ({ data: syntheticFrame(w, h, 3), width: w, height: h, encoding: 'rgb8' as const });
const views = () => ({ front: grey(), front_left: grey(), front_right: grey() });

describe('hostile input to the engine (addon, tiny model; issue 16)', function () {
  this.timeout(120_000);
  let tmp: string;
  let engine: Engine;
  before(async () => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hostile-addon-'));
    engine = await Engine.load(tiny, { backend: 'cpu', threads: 2 });
  });
  after(async () => {
    await engine?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  describe('nothing crashes the process (class 2)', () => {
    it('model.safetensors rewritten in place under a loaded model (what cp does): no SIGBUS, the same plan', () => {
      const dir = modelCopy(tmp, 'cp-over');
      const r = child(tmp, 'cp-over', `
        import { openSync, writeSync, closeSync, readFileSync } from 'node:fs';
        import { Engine } from ${JSON.stringify(path.join(root, 'src/engine/engine.ts'))};
        const dir = ${JSON.stringify(dir)};
        const f = dir + '/model.safetensors';
        const bytes = readFileSync(f);
        const e = await Engine.load(dir, { backend: 'cpu', threads: 1 });
        const views = { front: { data: new Uint8Array(64 * 48 * 3).fill(90), width: 64, height: 48, encoding: 'rgb8' } };
        const a = await e.infer({ views, instruction: 'keep lane' });
        // cp: open with O_TRUNC (the file is empty now), then write the new bytes in pieces
        const fd = openSync(f, 'w');
        const b = await e.infer({ views, instruction: 'keep lane' });
        writeSync(fd, Buffer.alloc(bytes.length >> 1, 0x7f));
        const c = await e.infer({ views, instruction: 'keep lane' });
        closeSync(fd);
        const same = (x, y) => JSON.stringify(x.waypoints) === JSON.stringify(y.waypoints);
        console.log(same(a, b) && same(a, c) ? 'SAME' : 'DIFFERENT');
        await e.dispose();
      `);
      assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.out}`);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /SAME/);
    });

    it("a raw frame's buffer detached while the addon runs on it: the result of the frame as it was given", () => {
      const r = child(tmp, 'detach', `
        import { loadAddon } from ${JSON.stringify(path.join(root, 'src/engine/addon.ts'))};
        import { Engine } from ${JSON.stringify(path.join(root, 'src/engine/engine.ts'))};
        const dir = ${JSON.stringify(tiny)};
        const e = await Engine.load(dir, { backend: 'cpu', threads: 1 });
        const native = await loadAddon().load(dir, { backend: 'cpu', threads: 1 });
        const W = 1920, H = 1080;
        const frame = () => { const u = new Uint8Array(new ArrayBuffer(W * H * 3)); for (let i = 0; i < u.length; i++) u[i] = (i * 7) & 255; return u; };
        const ids = e.tokenizer.encode('You are a driving assistant. USER: <image>\\nkeep lane ASSISTANT:', { addBos: true });
        const req = (u) => ({ inputIds: ids, views: [{ data: u, width: W, height: H, step: W * 3, encoding: 'rgb8' }] });
        const ref = await native.infer(req(frame()));
        const outs = [];
        for (let k = 0; k < 5; k++) {
          const u = frame();
          const p = native.infer(req(u));
          // transfer the buffer away (detaching it here), drop it, collect, and reuse the memory
          structuredClone(u.buffer, { transfer: [u.buffer] });
          globalThis.gc();
          const junk = []; for (let j = 0; j < 8; j++) junk.push(new Uint8Array(W * H * 3).fill(255));
          outs.push(await p);
        }
        const same = outs.every((o) => JSON.stringify(Array.from(o.waypoints)) === JSON.stringify(Array.from(ref.waypoints)));
        // detached before the call: a coded error, not a crash
        const u = frame();
        structuredClone(u.buffer, { transfer: [u.buffer] });
        let code = '';
        try { await e.infer({ views: { front: { data: u, width: W, height: H, encoding: 'rgb8' } }, instruction: 'keep lane' }); } catch (err) { code = err.code; }
        console.log(same ? 'SAME' : 'DIFFERENT', code);
        native.dispose();
        await e.dispose();
      `, ['--expose-gc']);
      assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.out}`);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /SAME VLA_E_IMAGE/);
    });
  });

  describe('frames: only what a camera sends, bounded (class 6, class 10)', () => {
    it('SVG, GIF, TIFF, WebP, PDF and unknown bytes are VLA_E_IMAGE_DECODE at once, never rendered', async () => {
      const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><filter id="f"><feTurbulence baseFrequency="0.9" numOctaves="50"/></filter><rect width="100%" height="100%" filter="url(#f)"/></svg>');
      const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#888' } }).gif().toBuffer();
      const tiff = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#888' } }).tiff().toBuffer();
      const webp = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#888' } }).webp().toBuffer();
      for (const [name, data] of [['svg', svg], ['svg with BOM and spaces', Buffer.concat([Buffer.from('\ufeff  '), svg])], ['gif', gif], ['tiff', tiff], ['webp', webp], ['pdf', Buffer.from('%PDF-1.4\n%...')], ['zeros', Buffer.alloc(100)]] as const) {
        const t0 = performance.now();
        await rejectsWith(engine.infer({ views: { front: { kind: 'compressed', data } }, instruction: 'keep lane' }), ErrorCodes.IMAGE_DECODE, /camera 'front': not JPEG or PNG/);
        assert.ok(performance.now() - t0 < 1000, `${name}: ${performance.now() - t0} ms`);
      }
    });

    it('a PNG over the pixel bound is refused from its header; a CMYK JPEG decodes', async () => {
      const bomb = await sharp({ create: { width: 9000, height: 9000, channels: 3, background: '#000' } }).png({ compressionLevel: 9 }).toBuffer();
      const t0 = performance.now();
      await rejectsWith(engine.infer({ views: { front: { kind: 'compressed', data: bomb } }, instruction: 'keep lane' }), ErrorCodes.IMAGE_DECODE, /pixel/i);
      assert.ok(performance.now() - t0 < 2000);
      const rgb = syntheticFrame(64, 48, 5);
      const cmyk = await sharp(rgb, { raw: { width: 64, height: 48, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
      assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
      const viaCmyk = await engine.infer({ views: { front: { kind: 'compressed', data: cmyk } }, instruction: 'keep lane' });
      const viaRgb = await engine.infer({ views: { front: { data: rgb, width: 64, height: 48, encoding: 'rgb8' } }, instruction: 'keep lane' });
      assert.equal(viaCmyk.waypoints.length, viaRgb.waypoints.length);
      assert.ok(viaCmyk.waypoints.every((w) => Number.isFinite(w.x) && Number.isFinite(w.y)));
    });
  });

  describe('weights and configs found wrong at load, not at each inference (class 7, class 10)', () => {
    it('a NaN or Inf weight: VLA_E_WEIGHTS_FORMAT naming the tensor; an absurd image_std: VLA_E_CONFIG', async () => {
      for (const [name, value] of [['nan', NaN], ['inf', -Infinity]] as const) {
        const dir = modelCopy(tmp, `w-${name}`, { weights: (b, h, at) => b.writeFloatLE(value, at + h['vla.action_head.fc1.weight']!.data_offsets[0] + 4 * 17) });
        await rejectsWith(Engine.load(dir, { backend: 'cpu' }), ErrorCodes.WEIGHTS_FORMAT, /'vla\.action_head\.fc1\.weight' holds a NaN or Inf at element 17/);
      }
      for (const std of [1e-30, 0, 1e300, -1]) {
        const dir = modelCopy(tmp, `std-${std}`, { config: (c) => (c.vla.image_std = [std, 0.26, 0.27]) });
        await rejectsWith(Engine.load(dir, { backend: 'cpu' }), ErrorCodes.CONFIG, /image_std/);
      }
    });

    it('weights that overflow to Inf in the forward pass: VLA_E_OUTPUT, never a NaN plan', async () => {
      const dir = modelCopy(tmp, 'w-huge', {
        weights: (b, h, at) => {
          const [s, e] = h['vla.action_head.fc2.weight']!.data_offsets;
          for (let o = at + s; o < at + e; o += 4) b.writeFloatLE(3e38, o);
        },
      });
      const e = await Engine.load(dir, { backend: 'cpu' });
      try {
        await rejectsWith(e.infer({ views: views(), instruction: 'keep lane' }), ErrorCodes.OUTPUT, /not finite/);
      } finally {
        await e.dispose();
      }
    });

    it('a tokenizer with ids beyond vocab_size, or an eos_token_id outside it: VLA_E_CONFIG at load', async () => {
      const over = modelCopy(tmp, 'vocab-over', { tokenizer: (t) => t.added_tokens.push({ id: 700, content: '<extra>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }) });
      await rejectsWith(Engine.load(over, { backend: 'cpu' }), ErrorCodes.CONFIG, /token id\(s\) from \d+ up, outside config\.json's vocab_size 512/);
      const eos = modelCopy(tmp, 'eos-over', { config: (c) => (c.text_config.eos_token_id = 600) });
      await rejectsWith(Engine.load(eos, { backend: 'cpu' }), ErrorCodes.CONFIG, /eos_token_id 600 is outside the vocabulary/);
    });

    it('config.json or tokenizer.json a FIFO or a directory: a coded error at once', async () => {
      const dir = modelCopy(tmp, 'fifo-config');
      rmSync(path.join(dir, 'tokenizer.json'));
      assert.equal(spawnSync('mkfifo', [path.join(dir, 'tokenizer.json')]).status, 0);
      await rejectsWith(Engine.load(dir, { backend: 'cpu' }), ErrorCodes.TOKENIZER, /tokenizer\.json: is a FIFO/);
      rmSync(path.join(dir, 'config.json'));
      assert.equal(spawnSync('mkfifo', [path.join(dir, 'config.json')]).status, 0);
      await rejectsWith(Engine.load(dir, { backend: 'cpu' }), ErrorCodes.IO, /config\.json: not a regular file/);
    });
  });

  describe('what every frame would refuse is refused once (class 8)', () => {
    it('an instruction with the image token, or too long for the positions: refused at receipt by the node', async () => {
      assert.throws(() => engine.checkInstruction('turn <image> left'), (e) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
      assert.throws(() => engine.checkInstruction('left '.repeat(800)), (e) => e instanceof VlaError && /over the model's 512 positions/.test(e.message));
      engine.checkInstruction('turn left at the crossing');
      const port = new InMemoryPort(1_000_000_000n);
      const node = new VlaNodeLogic(port, engine, nodeParams(['front'], '', { defaultInstruction: 'keep lane' }), codec);
      node.start();
      for (const text of ['go <image> now', 'left '.repeat(800)]) port.inject('~/input/instruction', 'std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: text }), true);
      await node.stop();
      assert.equal(node.currentInstruction, 'keep lane');
      assert.equal(node.counters.badInput, 2);
    });

    it('an unreachable FLOPs budget, an activation limit below the need, a bad default instruction: the engine loader refuses at configure', async () => {
      const base = { model_path: tiny, backend: 'cpu', camera_names: ['front', 'front_left'], camera_topics: ['/a', '/b'] };
      await rejectsWith(ENGINE_LOADER.load(configFromParams({ ...base, pruning_policy: 'autoprune', budget_kind: 'flops', budget_value: 1e-6 })), ErrorCodes.INPUT, /flops/);
      // the bundled drive model's three views need more than 1 MiB of activations
      const drive = { ...base, model_path: path.join(root, 'assets', 'models', 'drive'), camera_names: ['front', 'front_left', 'front_right'], camera_topics: ['/a', '/b', '/c'] };
      await rejectsWith(ENGINE_LOADER.load(configFromParams({ ...drive, max_activation_mib: 1 })), ErrorCodes.OOM, /activation memory limit/);
      await rejectsWith(ENGINE_LOADER.load(configFromParams({ ...base, default_instruction: 'go <image>' })), ErrorCodes.INPUT, /image token/);
      const ok = await ENGINE_LOADER.load(configFromParams({ ...base, pruning_policy: 'autoprune', budget_kind: 'tokens', budget_value: 8 }));
      await ok.dispose();
    });
  });

  describe('the command line (class 1, class 7, class 10)', () => {
    let drive: string;
    before(async () => {
      drive = path.join(tmp, 'E', 'bag');
      await makeSampleDrive(drive, { durationS: 2, width: 64, height: 48 });
    });
    const CONFIG = path.join(root, 'configs', 'sample-drive.yaml');
    const hash = (dir: string): string => {
      const h = createHash('sha256');
      for (const f of readdirSync(dir).sort()) {
        const p = path.join(dir, f);
        h.update(f).update(statSync(p).isDirectory() ? hash(p) : readFileSync(p));
      }
      return h.digest('hex');
    };

    it('replay E/bag --out E: refused (exit 2) before the model loads, the input untouched', async () => {
      const before = hash(path.join(tmp, 'E'));
      for (const out of [path.join(tmp, 'E'), drive]) {
        const r = await cli('replay', drive, '--config', CONFIG, '--model', tiny, '--out', out, '--backend', 'cpu', '--no-progress');
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, /VLA_E_ARGS: output directory .* replay never writes over its input/);
      }
      assert.equal(hash(path.join(tmp, 'E')), before);
    });

    it('a run that evaluates nothing exits 1 with VLA_E_NO_FRAMES; an unreachable budget is refused before it runs', async () => {
      const yaml = path.join(tmp, 'elsewhere.yaml');
      writeFileSync(yaml, readFileSync(CONFIG, 'utf8').replace(/\/sensing\/camera\//g, '/nowhere/').replace('missing_camera: wait', 'missing_camera: partial'));
      const r = await cli('replay', drive, '--config', yaml, '--model', tiny, '--out', path.join(tmp, 'nothing'), '--backend', 'cpu', '--no-progress', '--policy', 'none');
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, /VLA_E_NO_FRAMES: nothing was evaluated/);
      const b = await cli('replay', drive, '--config', CONFIG, '--model', tiny, '--out', path.join(tmp, 'unreachable'), '--backend', 'cpu', '--no-progress', '--policy', 'autoprune', '--budget', 'flops:0.000001');
      assert.equal(b.code, 1, b.err);
      assert.match(b.err, /VLA_E_INPUT: setting 'autoprune flops:0.000001': the model refuses this setting/);
    });

    it('infer and bag info name the file that is a directory, a FIFO or a device', async () => {
      const fifo = path.join(tmp, 'frame.jpg');
      spawnSync('mkfifo', [fifo]);
      for (const [file, re] of [[tmp, /is a directory/], [fifo, /is a FIFO/], ['/dev/zero', /is a character device/]] as const) {
        const r = await cli('infer', '--model', tiny, '--image', `front=${file}`, '--instruction', 'go', '--backend', 'cpu');
        assert.equal(r.code, 1);
        assert.match(r.err, new RegExp(`VLA_E_IO: ${file.replace(/[/.]/g, '\\$&')}: ${re.source}`));
      }
      const bag = path.join(tmp, 'fifo-bag');
      mkdirSync(bag);
      spawnSync('mkfifo', [path.join(bag, 'x_0.mcap')]);
      const r = await cli('bag', 'info', bag);
      assert.equal(r.code, 1);
      assert.match(r.err, /VLA_E_IO: .*x_0\.mcap: is a FIFO/);
    });

    it('Ctrl-C stops a replay: exit 130 with a partial report', async () => {
      const out = path.join(tmp, 'sigint');
      const p = spawn(process.execPath, [path.join(root, 'bin', 'autoprune-ros.js'), 'replay', drive, '--config', CONFIG, '--model', tiny, '--out', out, '--backend', 'cpu', '--no-progress', '--rate', '0.5'], { cwd: root, env: { ...process.env, LOG_LEVEL: 'error' } });
      let err = '';
      p.stderr.on('data', (d) => (err += String(d)));
      await new Promise((r) => setTimeout(r, 2500));
      const t0 = performance.now();
      p.kill('SIGINT');
      const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
      assert.equal(code, 130, err);
      assert.ok(performance.now() - t0 < 5000);
      assert.ok(JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')).interrupted);
    });
  });
});
