import { ErrorCodes, VlaError } from '../util/errors.js';

/**
 * A deterministic procedural renderer of driving camera views: sky, a tree line, grass, a
 * three-lane road that curves with `curvature`, an optional crossing road and box-shaped vehicles.
 *
 * Two frames: the road frame has its origin on the middle lane's centre at the ego's arc length,
 * x along the road tangent there, y left (m); the road centre is y = k x^2 / 2 ahead. The ego
 * frame (x forward, y left) is the road frame moved by `egoLateralM` and turned by
 * `egoHeadingRad`; the cameras sit at its origin. The scene (road, crossing, vehicles, trees) is
 * defined in the road frame, so the same scene can be seen from a ego off the lane centre, in a
 * lane change or in a turn. With both at 0 the two frames coincide.
 */

export type CameraName = 'front' | 'front_left' | 'front_right' | 'back' | 'back_left' | 'back_right';

/** Camera yaw (deg, left positive) by name. */
export const CAMERA_YAW_DEG: Readonly<Record<CameraName, number>> = Object.freeze({
  front: 0,
  front_left: 55,
  front_right: -55,
  back: 180,
  back_left: 125,
  back_right: -125,
});

export type Rgb = [number, number, number];

export interface Vehicle {
  /** Distance of the vehicle's rear (m, along the road frame's x; negative = behind). */
  distance: number;
  /** Lane: 0 middle lane, +1 left, -1 right; fractional values sit between lanes (e.g. on a lane edge). */
  lane: number;
  color?: Rgb;
  /** m; defaults 4.5, 1.8, 1.5. */
  length?: number;
  width?: number;
  height?: number;
  /** Drives against the road frame's x (oncoming): the headlights face the ego. */
  oncoming?: boolean;
  /** 'car' (default: windows, lights) or 'barrier' (a plain box with a reflective stripe). */
  kind?: 'car' | 'barrier';
}

export interface RenderOptions {
  camera?: CameraName;
  /** Overrides the camera's yaw (deg, left positive). */
  yawDeg?: number;
  width?: number;
  height?: number;
  /** Road curvature (1/m, positive bends left); 0 = straight. */
  curvature?: number;
  vehicles?: Vehicle[];
  /** Brightness factor (1 = daylight). */
  light?: number;
  /** Texture noise and colour jitter. */
  seed?: number;
  /** Distance (m) to a crossing road, if any. */
  intersection?: number;
  /** Horizontal field of view (deg, default 70). */
  fovDeg?: number;
  /** Trees along the road: true (default) or false, or a density 0..1 (share of the tree slots used). */
  trees?: boolean | number;
  /** Ego offset from the middle lane's centre (m, left positive; default 0). */
  egoLateralM?: number;
  /** Ego heading relative to the road tangent at the ego (rad, left positive; default 0). */
  egoHeadingRad?: number;
  /**
   * The ego's arc length along the road (m). When given, lane dashes and trees are anchored to
   * the road so they move past from frame to frame, and tree placement follows `layoutSeed`
   * instead of the per-frame texture seed; when absent, the legacy layout (fixed to the ego).
   */
  roadS?: number;
  /** Seed of the tree layout with `roadS` (default: `seed`). */
  layoutSeed?: number;
}

export interface RenderedView {
  width: number;
  height: number;
  /** Bytes per row (3 * width). */
  step: number;
  encoding: 'rgb8';
  data: Uint8Array;
}

const CAM_HEIGHT = 1.6;
const LANE = 3.5;
const ROAD_HALF = 1.5 * LANE;
const HORIZON = 0.42; // principal point row as a fraction of the height: the horizon sits a little above the middle
const MAX_DIM = 8192;

function hash3(a: number, b: number, seed: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul(b | 0, 0x165667b1) ^ Math.imul(seed | 0, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

const roadCenter = (x: number, k: number): number => (x > 0 ? 0.5 * k * x * x : 0);

interface Camera {
  cx: number;
  cy: number;
  f: number;
  cos: number;
  sin: number;
}

/** The ego pose in the road frame: road-frame points go through `toEgo` before projection. */
interface Pose {
  l: number;
  cos: number;
  sin: number;
  /** False when the ego frame is the road frame (then no arithmetic is done, so bytes match exactly). */
  moved: boolean;
}

type P3 = [number, number, number];

/** Road-frame point to the ego frame (rotation by -psi about the ego at (0, l)). */
function toEgo(pose: Pose, x: number, y: number, z: number): P3 {
  if (!pose.moved) return [x, y, z];
  const dy = y - pose.l;
  return [x * pose.cos + dy * pose.sin, -x * pose.sin + dy * pose.cos, z];
}

/** World point (x fwd, y left, z up) to pixel coordinates; undefined behind the near plane. */
function project(cam: Camera, x: number, y: number, z: number): [number, number] | undefined {
  const zc = x * cam.cos + y * cam.sin;
  if (zc < 0.3) return undefined;
  const xc = x * cam.sin - y * cam.cos;
  const yc = CAM_HEIGHT - z;
  return [cam.cx + (cam.f * xc) / zc, cam.cy + (cam.f * yc) / zc];
}

/** Scanline fill of a convex polygon; `shade` scales the colour. */
function fillConvex(img: Float32Array, w: number, h: number, pts: Array<[number, number]>, color: Rgb, shade: number): void {
  let minY = Infinity, maxY = -Infinity;
  for (const [, py] of pts) {
    minY = Math.min(minY, py);
    maxY = Math.max(maxY, py);
  }
  const y0 = Math.max(0, Math.ceil(minY - 0.5));
  const y1 = Math.min(h - 1, Math.floor(maxY - 0.5));
  const r = color[0] * shade, g = color[1] * shade, b = color[2] * shade;
  for (let y = y0; y <= y1; y++) {
    const sy = y + 0.5;
    let xl = Infinity, xr = -Infinity;
    for (let i = 0; i < pts.length; i++) {
      const [ax, ay] = pts[i] as [number, number];
      const [bx, by] = pts[(i + 1) % pts.length] as [number, number];
      if ((ay <= sy && by > sy) || (by <= sy && ay > sy)) {
        const x = ax + ((sy - ay) / (by - ay)) * (bx - ax);
        xl = Math.min(xl, x);
        xr = Math.max(xr, x);
      }
    }
    const x0 = Math.max(0, Math.ceil(xl - 0.5));
    const x1 = Math.min(w - 1, Math.floor(xr - 0.5));
    for (let x = x0; x <= x1; x++) {
      const o = (y * w + x) * 3;
      img[o] = r;
      img[o + 1] = g;
      img[o + 2] = b;
    }
  }
}

function quad(cam: Camera, corners: Array<[number, number, number]>): Array<[number, number]> | undefined {
  const out: Array<[number, number]> = [];
  for (const [x, y, z] of corners) {
    const p = project(cam, x, y, z);
    if (!p) return undefined;
    out.push(p);
  }
  return out;
}

/**
 * Draws a box vehicle defined in the road frame. A face is drawn when the camera (the ego-frame
 * origin) is on its outer side: the test uses the face's point and outward normal after the move
 * into the ego frame, so a lane offset or a turned ego sees the right faces.
 */
function drawVehicle(img: Float32Array, w: number, h: number, cam: Camera, pose: Pose, v: Vehicle, k: number): void {
  const L = v.length ?? 4.5, W = v.width ?? 1.8, H = v.height ?? 1.5;
  const color = v.color ?? [200, 40, 40];
  const x0 = v.distance, x1 = v.distance + L;
  const yc = roadCenter(x0, k) + v.lane * LANE;
  const yl = yc + W / 2, yr = yc - W / 2;
  const face = (c: P3[], col: Rgb, shade: number) => {
    const q = quad(cam, c.map(([x, y, z]) => toEgo(pose, x, y, z)));
    if (q) fillConvex(img, w, h, q, col, shade);
  };
  /** Outer side test in the ego frame: (camera - point) . normal > 0, the camera at the origin. */
  const faces = (px: number, py: number, nx: number, ny: number): boolean => {
    const [ex, ey] = toEgo(pose, px, py, 0);
    const [ox, oy] = toEgo(pose, 0, pose.l, 0); // the normal's origin, to turn the normal only
    const [tx, ty] = toEgo(pose, nx, pose.l + ny, 0);
    return -ex * (tx - ox) - ey * (ty - oy) > 0;
  };
  const car = (v.kind ?? 'car') === 'car';
  // the end facing -x is the rear of a car driving along +x, the front of an oncoming one
  const near: 'rear' | 'front' = v.oncoming ? 'front' : 'rear';
  const far: 'rear' | 'front' = v.oncoming ? 'rear' : 'front';
  const end = (x: number, style: 'rear' | 'front', shade: number) => {
    face([[x, yl, 0], [x, yr, 0], [x, yr, H], [x, yl, H]], color, shade);
    if (!car) {
      face([[x, yl, 0.45 * H], [x, yr, 0.45 * H], [x, yr, 0.62 * H], [x, yl, 0.62 * H]], [240, 240, 235], 1);
      return;
    }
    if (style === 'rear') {
      face([[x, yl - 0.15, 0.62 * H], [x, yr + 0.15, 0.62 * H], [x, yr + 0.15, 0.92 * H], [x, yl - 0.15, 0.92 * H]], [40, 50, 60], 1);
      face([[x, yl - 0.05, 0.45 * H], [x, yl - 0.35, 0.45 * H], [x, yl - 0.35, 0.55 * H], [x, yl - 0.05, 0.55 * H]], [230, 30, 20], 1);
      face([[x, yr + 0.35, 0.45 * H], [x, yr + 0.05, 0.45 * H], [x, yr + 0.05, 0.55 * H], [x, yr + 0.35, 0.55 * H]], [230, 30, 20], 1);
    } else {
      face([[x, yl - 0.15, 0.6 * H], [x, yr + 0.15, 0.6 * H], [x, yr + 0.15, 0.9 * H], [x, yl - 0.15, 0.9 * H]], [40, 50, 60], 1);
      face([[x, yl - 0.05, 0.4 * H], [x, yl - 0.35, 0.4 * H], [x, yl - 0.35, 0.5 * H], [x, yl - 0.05, 0.5 * H]], [250, 240, 190], 1);
      face([[x, yr + 0.35, 0.4 * H], [x, yr + 0.05, 0.4 * H], [x, yr + 0.05, 0.5 * H], [x, yr + 0.35, 0.5 * H]], [250, 240, 190], 1);
    }
  };
  // faces the camera can see (at most one of each pair), sides first, then the ends, the roof last
  if (faces(x0, yr, 0, -1)) face([[x0, yr, 0], [x1, yr, 0], [x1, yr, H], [x0, yr, H]], color, 0.8);
  if (faces(x0, yl, 0, 1)) face([[x0, yl, 0], [x1, yl, 0], [x1, yl, H], [x0, yl, H]], color, 0.8);
  if (faces(x0, yc, -1, 0)) end(x0, near, near === 'rear' ? 0.65 : 0.7);
  if (faces(x1, yc, 1, 0)) end(x1, far, far === 'rear' ? 0.65 : 0.7);
  if (CAM_HEIGHT > H) face([[x0, yl, H], [x0, yr, H], [x1, yr, H], [x1, yl, H]], color, 1.1);
}

const HAZE: Rgb = [185, 200, 215];

/** Blends a colour toward the haze with distance (aerial perspective). */
function fogged(c: Rgb, dist: number): Rgb {
  const f = 1 - Math.exp(-dist / 160);
  return [c[0] + (HAZE[0] - c[0]) * f, c[1] + (HAZE[1] - c[1]) * f, c[2] + (HAZE[2] - c[2]) * f];
}

function drawTree(img: Float32Array, w: number, h: number, cam: Camera, x: number, y: number, size: number, dist: number, tint: number): void {
  const trunk = quad(cam, [[x, y - 0.15 * size, 0], [x, y + 0.15 * size, 0], [x, y + 0.15 * size, 1.6 * size], [x, y - 0.15 * size, 1.6 * size]]);
  if (trunk) fillConvex(img, w, h, trunk, fogged([90, 65, 40], dist), 1);
  // the crown faces the camera: its base spans across the line of sight
  const len = Math.hypot(x, y) || 1;
  const px = (-y / len) * 1.5 * size, py = (x / len) * 1.5 * size;
  const crown = quad(cam, [[x - px, y - py, 1.2 * size], [x + px, y + py, 1.2 * size], [x, y, 6 * size]]);
  if (crown) fillConvex(img, w, h, crown, fogged([40 + tint * 25, 90 + tint * 40, 40], dist), 1);
}

/** Renders one camera view as rgb8 (deterministic: same options, same bytes). */
export function renderView(opts: RenderOptions = {}): RenderedView {
  const width = opts.width ?? 320;
  const height = opts.height ?? 180;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > MAX_DIM || height > MAX_DIM) {
    throw new VlaError(ErrorCodes.INPUT, `render: size must be 1..${MAX_DIM} pixels, got ${width}x${height}`);
  }
  const camera = opts.camera ?? 'front';
  if (opts.yawDeg === undefined && !(camera in CAMERA_YAW_DEG)) {
    throw new VlaError(ErrorCodes.INPUT, `render: unknown camera '${camera}' (${Object.keys(CAMERA_YAW_DEG).join(', ')})`);
  }
  const yaw = ((opts.yawDeg ?? CAMERA_YAW_DEG[camera]) * Math.PI) / 180;
  const k = opts.curvature ?? 0;
  const light = opts.light ?? 1;
  const seed = (opts.seed ?? 0) | 0;
  const fov = ((opts.fovDeg ?? 70) * Math.PI) / 180;
  const cam: Camera = { cx: width / 2, cy: height * HORIZON, f: width / 2 / Math.tan(fov / 2), cos: Math.cos(yaw), sin: Math.sin(yaw) };
  const inter = opts.intersection;
  const egoL = opts.egoLateralM ?? 0;
  const psi = opts.egoHeadingRad ?? 0;
  if (!Number.isFinite(egoL) || !Number.isFinite(psi) || !Number.isFinite(k)) {
    throw new VlaError(ErrorCodes.INPUT, `render: curvature, egoLateralM and egoHeadingRad must be finite (got ${k}, ${egoL}, ${psi})`);
  }
  const pose: Pose = { l: egoL, cos: Math.cos(psi), sin: Math.sin(psi), moved: egoL !== 0 || psi !== 0 };
  const roadS = opts.roadS;
  if (roadS !== undefined && !Number.isFinite(roadS)) throw new VlaError(ErrorCodes.INPUT, `render: roadS must be finite, got ${roadS}`);
  // dashes anchored to the road: the phase is the ego's arc length (kept small for float precision)
  const dashPhase = roadS === undefined ? 0 : ((roadS % 9) + 9) % 9;

  const jitter = (hash3(1, 2, seed) - 0.5) * 20;
  const skyTop: Rgb = [70 + jitter, 125 + jitter, 205];
  const skyLow: Rgb = [180, 205 + jitter / 2, 235];
  const haze = HAZE;
  const img = new Float32Array(width * height * 3);

  // tree-line height per column (it follows the azimuth, so views of other cameras differ)
  const treeLine = new Float32Array(width);
  for (let u = 0; u < width; u++) {
    // azimuth relative to the road direction: a turned ego sees the backdrop turn with it
    const az = (pose.moved ? yaw + psi : yaw) - Math.atan((u + 0.5 - cam.cx) / cam.f);
    treeLine[u] = 0.012 + 0.01 * (Math.sin(az * 7 + seed) * 0.5 + 0.5) + 0.006 * Math.sin(az * 23 + 1.3 * seed) + 0.004 * hash3(Math.floor(az * 300), 7, seed);
  }
  for (let v = 0; v < height; v++) {
    const yc = (v + 0.5 - cam.cy) / cam.f;
    const st = Math.min(1, Math.max(0, -yc / 0.6));
    const sr = skyLow[0] + (skyTop[0] - skyLow[0]) * st;
    const sg = skyLow[1] + (skyTop[1] - skyLow[1]) * st;
    const sb = skyLow[2] + (skyTop[2] - skyLow[2]) * st;
    for (let u = 0; u < width; u++) {
      const xc = (u + 0.5 - cam.cx) / cam.f;
      const o = (v * width + u) * 3;
      let r: number, g: number, b: number;
      if (yc <= 0.004) {
        if (-yc < (treeLine[u] as number)) {
          const n = hash3(u, v, seed) * 16;
          r = 38 + n;
          g = 68 + n;
          b = 40 + n;
        } else {
          r = sr;
          g = sg;
          b = sb;
        }
      } else {
        const t = CAM_HEIGHT / Math.max(yc, 0.004);
        // the ray hits the ground at (ex, ey) in the ego frame; classify it in the road frame
        const ex = t * (cam.cos + xc * cam.sin);
        const ey = t * (cam.sin - xc * cam.cos);
        const X = pose.moved ? ex * pose.cos - ey * pose.sin : ex;
        const Y = pose.moved ? ex * pose.sin + ey * pose.cos + pose.l : ey;
        const dist = t * Math.sqrt(1 + xc * xc);
        const d = Y - roadCenter(X, k);
        const crossing = inter !== undefined && Math.abs(X - inter) < ROAD_HALF + 0.5;
        if (Math.abs(d) < ROAD_HALF + 0.3 || crossing) {
          // asphalt: fine grain per pixel plus faint patches in world space
          const n = (hash3(u, v, seed) - 0.5) * 10 + (hash3(Math.floor(X * 0.7), Math.floor(Y * 0.7), seed + 2) - 0.5) * 8;
          r = 88 + n;
          g = 88 + n;
          b = 94 + n;
          const ad = Math.abs(d);
          const dashed = roadS === undefined ? ((X % 9) + 9) % 9 < 3 : ((((X + dashPhase) % 9) + 9) % 9) < 3;
          const stop = inter !== undefined && X > inter - ROAD_HALF - 1.4 && X < inter - ROAD_HALF - 0.9 && d < 0 && d > -ROAD_HALF;
          if (stop || (!crossing && ((Math.abs(ad - LANE / 2) < 0.08 && dashed) || Math.abs(ad - ROAD_HALF) < 0.12))) {
            r = 225;
            g = 225;
            b = 215;
          }
        } else {
          const n = hash3(u, v, seed) - 0.5;
          const m = hash3(Math.floor(X * 0.5), Math.floor(Y * 0.5), seed + 1) - 0.5;
          r = 72 + n * 16 + m * 18;
          g = 118 + n * 20 + m * 10;
          b = 52 + n * 10;
        }
        const fog = 1 - Math.exp(-dist / 160);
        r += (haze[0] - r) * fog;
        g += (haze[1] - g) * fog;
        b += (haze[2] - b) * fog;
      }
      img[o] = r;
      img[o + 1] = g;
      img[o + 2] = b;
    }
  }

  // objects, painted far to near
  const items: Array<{ dist: number; draw: () => void }> = [];
  for (const veh of opts.vehicles ?? []) {
    const L = veh.length ?? 4.5, W = veh.width ?? 1.8;
    const yc = roadCenter(veh.distance, k) + veh.lane * LANE;
    const corners: P3[] = [[veh.distance - 0.2, yc + W / 2 + 0.2, 0], [veh.distance - 0.2, yc - W / 2 - 0.2, 0], [veh.distance + L + 0.2, yc - W / 2 - 0.2, 0], [veh.distance + L + 0.2, yc + W / 2 + 0.2, 0]];
    const q = quad(cam, corners.map(([x, y, z]) => toEgo(pose, x, y, z)));
    if (q) fillConvex(img, width, height, q, [30, 30, 34], 1); // shadow, under everything
    const [mx, my] = toEgo(pose, veh.distance + L / 2, yc, 0);
    const dist = Math.hypot(mx, my);
    items.push({ dist, draw: () => drawVehicle(img, width, height, cam, pose, { ...veh, color: fogged(veh.color ?? [200, 40, 40], dist) }, k) });
  }
  const trees = opts.trees ?? true;
  const density = trees === true ? 1 : trees === false ? 0 : trees;
  if (!(density >= 0)) throw new VlaError(ErrorCodes.INPUT, `render: trees must be a boolean or a density >= 0, got ${trees}`);
  if (density > 0) {
    // Legacy: 19 slots a side fixed to the ego, laid out by the texture seed. With roadS: the
    // slots are fixed to the road (index by arc length), laid out by the layout seed.
    const ls = roadS === undefined ? seed : (opts.layoutSeed ?? seed) | 0;
    const base = roadS === undefined ? 0 : Math.floor(roadS / 14);
    const shift = roadS === undefined ? 0 : roadS;
    for (let j = -8; j <= 10; j++) {
      const i = base + j;
      for (const side of [-1, 1]) {
        if (density < 1 && hash3(i, side, ls + 7) >= density) continue;
        const X = i * 14 + hash3(i, side, ls + 3) * 8 - shift;
        if (inter !== undefined && Math.abs(X - inter) < ROAD_HALF + 3) continue;
        const Y = roadCenter(X, k) + side * (ROAD_HALF + 3 + hash3(i, side, ls + 4) * 5);
        const size = 0.8 + hash3(i, side, ls + 5) * 0.6;
        const [tx, ty] = toEgo(pose, X, Y, 0);
        const dist = Math.hypot(tx, ty);
        items.push({ dist, draw: () => drawTree(img, width, height, cam, tx, ty, size, dist, hash3(i, side, ls + 6)) });
      }
    }
  }
  items.sort((p, q) => q.dist - p.dist);
  for (const it of items) it.draw();

  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < img.length; i++) {
    const x = (img[i] as number) * light;
    data[i] = x <= 0 ? 0 : x >= 255 ? 255 : Math.round(x);
  }
  return { width, height, step: width * 3, encoding: 'rgb8', data };
}
