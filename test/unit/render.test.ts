import assert from 'node:assert/strict';

import { CAMERA_YAW_DEG, renderView, type CameraName, type RenderOptions } from '../../src/sample/render.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const scene: RenderOptions = {
  width: 160,
  height: 90,
  curvature: 0.004,
  intersection: 30,
  vehicles: [
    { distance: 15, lane: 0, color: [200, 40, 40] },
    { distance: 8, lane: 1, color: [40, 80, 190] },
    { distance: -10, lane: 0, color: [60, 60, 60] },
  ],
  light: 1,
  seed: 3,
};

/** Mean absolute difference per byte. */
function diff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return s / a.length;
}

function meanRgb(data: Uint8Array, width: number, y0: number, y1: number): [number, number, number] {
  const m = [0, 0, 0];
  for (let y = y0; y < y1; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) m[c] += data[(y * width + x) * 3 + c] as number;
  const n = (y1 - y0) * width;
  return [m[0]! / n, m[1]! / n, m[2]! / n];
}

describe('procedural camera renderer', () => {
  it('is deterministic', () => {
    const a = renderView({ ...scene, camera: 'front' });
    const b = renderView({ ...scene, camera: 'front' });
    assert.deepEqual(a.data, b.data);
    assert.ok(diff(a.data, renderView({ ...scene, camera: 'front', seed: 4 }).data) > 0, 'the seed changes the texture');
  });

  it('returns rgb8 buffers of the requested size', () => {
    for (const [w, h] of [[320, 180], [17, 9], [1, 1], [28, 28]] as const) {
      const v = renderView({ ...scene, width: w, height: h });
      assert.equal(v.width, w);
      assert.equal(v.height, h);
      assert.equal(v.step, 3 * w);
      assert.equal(v.encoding, 'rgb8');
      assert.ok(v.data instanceof Uint8Array);
      assert.equal(v.data.length, w * h * 3);
    }
    const d = renderView().data;
    assert.equal(d.length, 320 * 180 * 3, 'default 320x180');
  });

  it('looks like a road scene: blue sky on top, darker ground below', () => {
    const v = renderView({ ...scene, camera: 'front', vehicles: [] });
    const [r, g, b] = meanRgb(v.data, v.width, 0, 10);
    assert.ok(b > r + 30 && b > g, `sky is blue (${r}, ${g}, ${b})`);
    const ground = meanRgb(v.data, v.width, v.height - 10, v.height);
    assert.ok(ground[0] + ground[1] + ground[2] < r + g + b, 'the ground is darker than the sky');
    // the road straight ahead is grey: channels close to each other
    const o = ((v.height - 3) * v.width + v.width / 2) * 3;
    assert.ok(Math.abs((v.data[o] as number) - (v.data[o + 2] as number)) < 25);
  });

  it('gives each camera its own view', () => {
    const cams = Object.keys(CAMERA_YAW_DEG) as CameraName[];
    const views = cams.map((camera) => renderView({ ...scene, camera }).data);
    for (let i = 0; i < views.length; i++) {
      for (let j = i + 1; j < views.length; j++) {
        assert.ok(diff(views[i] as Uint8Array, views[j] as Uint8Array) > 3, `${cams[i]} vs ${cams[j]}`);
      }
    }
    assert.deepEqual(renderView({ ...scene, camera: 'front_left' }).data, renderView({ ...scene, yawDeg: 55 }).data);
  });

  it('responds to curvature, vehicles and light', () => {
    const base = renderView({ ...scene, camera: 'front' });
    assert.ok(diff(base.data, renderView({ ...scene, camera: 'front', curvature: -0.02 }).data) > 1);
    assert.ok(diff(base.data, renderView({ ...scene, camera: 'front', vehicles: [] }).data) > 1);
    const dark = renderView({ ...scene, camera: 'front', light: 0.4 });
    const sum = (d: Uint8Array) => d.reduce((a, b) => a + b, 0);
    assert.ok(sum(dark.data) < 0.5 * sum(base.data));
    // a vehicle behind shows in the back camera only
    const back = renderView({ ...scene, camera: 'back' });
    assert.ok(diff(back.data, renderView({ ...scene, camera: 'back', vehicles: scene.vehicles?.filter((v) => v.distance > 0) }).data) > 1);
    assert.deepEqual(base.data, renderView({ ...scene, camera: 'front', vehicles: scene.vehicles?.filter((v) => v.distance > 0) }).data);
  });

  it('rejects unknown cameras and bad sizes with VLA_E_INPUT', () => {
    const input = (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT;
    assert.throws(() => renderView({ camera: 'rear' as CameraName }), input);
    assert.throws(() => renderView({ width: 0 }), input);
    assert.throws(() => renderView({ height: 10.5 }), input);
    assert.throws(() => renderView({ width: 100000 }), input);
  });

  it('renders a 320x180 view quickly', () => {
    renderView({ ...scene, width: 320, height: 180 }); // warm-up (JIT)
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) renderView({ ...scene, width: 320, height: 180, seed: i });
    const ms = (performance.now() - t0) / 5;
    assert.ok(ms < 100, `${ms.toFixed(1)} ms per view`); // a few ms when warm; generous for loaded CI machines
  });
});
