import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

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

  it('renders the default pose exactly as before the pose options existed (golden hash)', () => {
    // Scenes over every camera with vehicles (ahead, beside, behind, between lanes), bends, crossings and trees on and off.
    const scenes: RenderOptions[] = [];
    for (const camera of Object.keys(CAMERA_YAW_DEG) as CameraName[]) {
      scenes.push({ camera, width: 160, height: 90, curvature: 0.004, intersection: 30, vehicles: [{ distance: 15, lane: 0, color: [200, 40, 40] }, { distance: 8, lane: 1 }, { distance: -10, lane: 0 }, { distance: 3, lane: -1 }, { distance: -4, lane: 1, length: 6 }], seed: 3 });
      scenes.push({ camera, curvature: -0.015, seed: 77, light: 0.8, trees: false, intersection: 6, vehicles: [{ distance: 40, lane: 0.5, height: 2.2 }] });
      scenes.push({ camera, width: 64, height: 48, curvature: 0.02, seed: 123456789, intersection: -3 });
    }
    const h = createHash('sha256');
    for (const sc of scenes) h.update(renderView(sc).data);
    assert.equal(h.digest('hex'), 'f112b3f386ab7aa0ea07c4cbf85ed974210e259526238d86b5e263610963da3f');
    assert.deepEqual(renderView({ ...scene, egoLateralM: 0, egoHeadingRad: 0, trees: true }).data, renderView(scene).data);
  });

  /** Columns of lane-marking pixels (near white) in row v. */
  const markings = (data: Uint8Array, width: number, v: number): number[] => {
    const cols: number[] = [];
    for (let u = 0; u < width; u++) {
      const o = (v * width + u) * 3;
      if ((data[o] as number) > 190 && (data[o + 1] as number) > 190 && (data[o + 2] as number) > 180) cols.push(u);
    }
    return cols;
  };

  it('egoLateralM: from +3.5 m the road looks as from the left lane', () => {
    const road: RenderOptions = { width: 320, height: 180, trees: false, seed: 5 };
    // row 100 sees the ground about 15 m ahead, where the lane dashes have a gap: only the edge lines are white
    const mid = markings(renderView(road).data, 320, 100);
    const left = markings(renderView({ ...road, egoLateralM: 3.5 }).data, 320, 100);
    const f = 160 / Math.tan((35 * Math.PI) / 180);
    const x = 1.6 / ((100.5 - 180 * 0.42) / f);
    const col = (y: number) => 160 - (f * y) / x;
    const near = (cols: number[], want: number) => cols.some((u) => Math.abs(u - want) < 4);
    assert.ok(near(mid, col(5.25)) && near(mid, col(-5.25)), `edge lines at ${col(5.25).toFixed(0)}, ${col(-5.25).toFixed(0)}: ${mid}`);
    assert.ok(near(left, col(5.25 - 3.5)), `the left edge line is 1.75 m to the left: ${left}`);
    assert.ok(!near(left, col(5.25)) && !near(left, col(-5.25)), 'the edge lines moved');
    // a car in the middle lane is now to the right, and its left side shows (the culling follows the ego)
    const car: RenderOptions = { ...road, vehicles: [{ distance: 8, lane: 0, color: [200, 40, 40] }] };
    const sidePixels = (d: Uint8Array) => {
      let n = 0;
      for (let i = 0; i < d.length; i += 3) if (Math.abs((d[i] as number) - 200 * 0.8 * 0.95) < 12 && (d[i + 1] as number) < 60) n++;
      return n;
    };
    assert.equal(sidePixels(renderView(car).data), 0, 'straight behind it: no side face');
    assert.ok(sidePixels(renderView({ ...car, egoLateralM: 3.5 }).data) > 50, 'from the left lane: its left side');
  });

  it('egoHeadingRad turns the scene as a camera yaw does', () => {
    for (const psi of [0.3, -0.5]) {
      const turned = renderView({ ...scene, egoHeadingRad: psi }).data;
      const yawed = renderView({ ...scene, yawDeg: (psi * 180) / Math.PI }).data;
      let same = 0;
      for (let i = 0; i < turned.length; i++) if (Math.abs((turned[i] as number) - (yawed[i] as number)) <= 1) same++;
      assert.ok(same / turned.length > 0.99, `${psi}: ${((100 * same) / turned.length).toFixed(2)}% equal`);
      assert.ok(diff(turned, renderView(scene).data) > 3, 'and differs from the straight view');
    }
  });

  it('turned by 90 degrees inside the intersection, the crossing road is the road ahead', () => {
    for (const [l, psi] of [[10, Math.PI / 2], [-20, -Math.PI / 2], [0, Math.PI / 2]] as const) {
      const v = renderView({ width: 160, height: 90, intersection: 0, egoLateralM: l, egoHeadingRad: psi, trees: false, seed: 2 });
      for (const row of [45, 60, 89]) {
        const o = (row * 160 + 80) * 3;
        const [r, g, b] = [v.data[o] as number, v.data[o + 1] as number, v.data[o + 2] as number];
        assert.ok(Math.abs(r - g) < 20 && Math.abs(g - b) < 25, `asphalt ahead at row ${row} (l ${l}): ${r}, ${g}, ${b}`);
      }
      // without the crossing, grass ahead
      const grass = renderView({ width: 160, height: 90, egoLateralM: l, egoHeadingRad: psi, trees: false, seed: 2 });
      const o = (60 * 160 + 80) * 3;
      assert.ok((grass.data[o + 1] as number) > (grass.data[o] as number) + 25, 'grass');
    }
  });

  it('draws oncoming cars, barriers, fractional lanes and tree densities', () => {
    const one = (v: RenderOptions['vehicles']) => renderView({ ...scene, intersection: undefined, vehicles: v }).data;
    const car = one([{ distance: 12, lane: 1 }]);
    assert.ok(diff(car, one([{ distance: 12, lane: 1, oncoming: true }])) > 0, 'headlights instead of tail lights');
    assert.ok(diff(car, one([{ distance: 12, lane: 1, kind: 'barrier' }])) > 0);
    assert.ok(diff(car, one([{ distance: 12, lane: 1.45 }])) > 0.2);
    const trees = (t: boolean | number) => renderView({ ...scene, trees: t }).data;
    assert.deepEqual(trees(0), trees(false));
    assert.deepEqual(trees(1), trees(true));
    assert.ok(diff(trees(0.5), trees(true)) > 0.1 && diff(trees(0.5), trees(false)) > 0.1);
    // anchored to the road: dashes and trees move past as the ego's arc length grows
    const at = (roadS: number) => renderView({ ...scene, vehicles: [], roadS, layoutSeed: 9 }).data;
    assert.ok(diff(at(100), at(103)) > 0.2);
    assert.deepEqual(at(100), at(100));
    assert.throws(() => renderView({ egoLateralM: Number.NaN }), (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
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
