import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { loadAddon } from '../../src/engine/addon.js';
import { Engine } from '../../src/engine/engine.js';
import { renderView } from '../../src/sample/render.js';
import { ErrorCodes, isVlaError } from '../../src/util/errors.js';
import { requireBuilt, root, testModels } from './helpers.js';

const CAMS = ['front', 'front_left', 'front_right'] as const;

describe('JPEG decoded in the addon (libjpeg-turbo) against sharp', function () {
  let native: Engine;
  let viaSharp: Engine;
  before(async function () {
    requireBuilt();
    if (!loadAddon().features.jpeg) {
      console.log('      skipped: this addon was built without libjpeg (install libjpeg-dev and rebuild)');
      this.skip();
    }
    native = await Engine.load(path.join(testModels, 'tiny'), { backend: 'cpu', jpegDecoder: 'native' });
    viaSharp = await Engine.load(path.join(testModels, 'tiny'), { backend: 'cpu', jpegDecoder: 'sharp' });
  });
  after(async () => {
    await native?.dispose();
    await viaSharp?.dispose();
  });

  async function jpeg(seed: number, quality = 85, opts: { chroma?: '4:4:4' | '4:2:0'; grey?: boolean } = {}): Promise<Uint8Array> {
    const v = renderView({ camera: 'front', width: 320, height: 180, curvature: 0.01 * (seed % 3), seed, vehicles: [{ distance: 12 + seed, lane: 0 }] });
    let img = sharp(Buffer.from(v.data), { raw: { width: v.width, height: v.height, channels: 3 } });
    if (opts.grey) img = img.greyscale();
    return new Uint8Array(await img.jpeg({ quality, chromaSubsampling: opts.chroma ?? '4:2:0' }).toBuffer());
  }

  it('the same plans from either decoder (sample frames, rendered views, 4:2:0, 4:4:4, greyscale)', async () => {
    const frames: Array<Record<string, Uint8Array>> = [Object.fromEntries(CAMS.map((c) => [c, new Uint8Array(readFileSync(path.join(root, 'assets', 'sample', `${c}.jpg`)))]))];
    for (const [i, o] of [{}, { chroma: '4:4:4' as const }, { grey: true }].entries()) frames.push(Object.fromEntries(await Promise.all(CAMS.map(async (c, k) => [c, await jpeg(10 * i + k, 80, o)]))));
    let maxDiff = 0;
    for (const f of frames) {
      const views = Object.fromEntries(Object.entries(f).map(([c, data]) => [c, { kind: 'compressed' as const, data }]));
      const a = await native.infer({ views, instruction: 'keep lane', returnHidden: true });
      const b = await viaSharp.infer({ views, instruction: 'keep lane', returnHidden: true });
      a.waypoints.forEach((w, i) => (maxDiff = Math.max(maxDiff, Math.abs(w.x - (b.waypoints[i]?.x ?? NaN)), Math.abs(w.y - (b.waypoints[i]?.y ?? NaN)))));
      assert.ok(a.timings.decodeMs > 0);
    }
    // Both are libjpeg-turbo with the default (ISLOW) IDCT and fancy upsampling.
    assert.ok(maxDiff < 1e-4, `max waypoint difference ${maxDiff}`);
    console.log(`      max waypoint difference native vs sharp: ${maxDiff}`);
  });

  it('corrupt, truncated and non-JPEG bytes are VLA_E_IMAGE_DECODE naming the camera; the engine goes on', async () => {
    const good = await jpeg(3);
    const bad: Array<[string, Uint8Array]> = [
      ['truncated', good.subarray(0, Math.floor(good.byteLength / 2))],
      ['garbled', Uint8Array.from(good).map((b, i) => (i > 600 && i < 900 ? b ^ 0x5a : b))],
      ['header only', good.subarray(0, 20)],
    ];
    for (const [what, data] of bad) {
      await assert.rejects(
        native.infer({ views: { front_left: { kind: 'compressed', data } }, instruction: 'go' }),
        (e: unknown) => isVlaError(e, ErrorCodes.IMAGE_DECODE) && /camera 'front_left'/.test((e as Error).message),
        what,
      );
    }
    const r = await native.infer({ views: { front: { kind: 'compressed', data: good } }, instruction: 'go' });
    assert.equal(r.waypoints.length, 6);
  });

  it('PNG still decodes (with sharp) on an engine that decodes JPEG natively', async () => {
    const v = renderView({ camera: 'front', width: 64, height: 48, seed: 2 });
    const png = new Uint8Array(await sharp(Buffer.from(v.data), { raw: { width: 64, height: 48, channels: 3 } }).png().toBuffer());
    const a = await native.infer({ views: { front: { kind: 'compressed', data: png } }, instruction: 'go' });
    const b = await viaSharp.infer({ views: { front: { kind: 'compressed', data: png } }, instruction: 'go' });
    assert.deepEqual(a.waypoints, b.waypoints);
  });
});
