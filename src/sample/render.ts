import { ErrorCodes, VlaError } from '../util/errors.js';

/**
 * A deterministic procedural renderer of driving camera views: sky, a tree line, grass, a
 * three-lane road that curves with `curvature`, an optional crossing road and box-shaped vehicles.
 * Ego frame: x forward, y left (m); the ego car drives in the middle lane.
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
  /** Distance of the vehicle's rear (m, along x; negative = behind). */
  distance: number;
  /** Lane: 0 ego lane, +1 left, -1 right. */
  lane: number;
  color?: Rgb;
  /** m; defaults 4.5, 1.8, 1.5. */
  length?: number;
  width?: number;
  height?: number;
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
  /** Trees along the road (default true). */
  trees?: boolean;
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

function drawVehicle(img: Float32Array, w: number, h: number, cam: Camera, v: Vehicle, k: number): void {
  const L = v.length ?? 4.5, W = v.width ?? 1.8, H = v.height ?? 1.5;
  const color = v.color ?? [200, 40, 40];
  const x0 = v.distance, x1 = v.distance + L;
  const yc = roadCenter(x0, k) + v.lane * LANE;
  const yl = yc + W / 2, yr = yc - W / 2;
  const face = (c: Array<[number, number, number]>, col: Rgb, shade: number) => {
    const q = quad(cam, c);
    if (q) fillConvex(img, w, h, q, col, shade);
  };
  // faces the camera (at the origin) can see, far ones first
  if (yr > 0) face([[x0, yr, 0], [x1, yr, 0], [x1, yr, H], [x0, yr, H]], color, 0.8);
  if (yl < 0) face([[x0, yl, 0], [x1, yl, 0], [x1, yl, H], [x0, yl, H]], color, 0.8);
  if (x0 > 0) {
    face([[x0, yl, 0], [x0, yr, 0], [x0, yr, H], [x0, yl, H]], color, 0.65);
    face([[x0, yl - 0.15, 0.62 * H], [x0, yr + 0.15, 0.62 * H], [x0, yr + 0.15, 0.92 * H], [x0, yl - 0.15, 0.92 * H]], [40, 50, 60], 1);
    face([[x0, yl - 0.05, 0.45 * H], [x0, yl - 0.35, 0.45 * H], [x0, yl - 0.35, 0.55 * H], [x0, yl - 0.05, 0.55 * H]], [230, 30, 20], 1);
    face([[x0, yr + 0.35, 0.45 * H], [x0, yr + 0.05, 0.45 * H], [x0, yr + 0.05, 0.55 * H], [x0, yr + 0.35, 0.55 * H]], [230, 30, 20], 1);
  }
  if (x1 < 0) {
    face([[x1, yl, 0], [x1, yr, 0], [x1, yr, H], [x1, yl, H]], color, 0.7);
    face([[x1, yl - 0.15, 0.6 * H], [x1, yr + 0.15, 0.6 * H], [x1, yr + 0.15, 0.9 * H], [x1, yl - 0.15, 0.9 * H]], [40, 50, 60], 1);
    face([[x1, yl - 0.05, 0.4 * H], [x1, yl - 0.35, 0.4 * H], [x1, yl - 0.35, 0.5 * H], [x1, yl - 0.05, 0.5 * H]], [250, 240, 190], 1);
    face([[x1, yr + 0.35, 0.4 * H], [x1, yr + 0.05, 0.4 * H], [x1, yr + 0.05, 0.5 * H], [x1, yr + 0.35, 0.5 * H]], [250, 240, 190], 1);
  }
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

  const jitter = (hash3(1, 2, seed) - 0.5) * 20;
  const skyTop: Rgb = [70 + jitter, 125 + jitter, 205];
  const skyLow: Rgb = [180, 205 + jitter / 2, 235];
  const haze = HAZE;
  const img = new Float32Array(width * height * 3);

  // tree-line height per column (it follows the azimuth, so views of other cameras differ)
  const treeLine = new Float32Array(width);
  for (let u = 0; u < width; u++) {
    const az = yaw - Math.atan((u + 0.5 - cam.cx) / cam.f);
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
        const X = t * (cam.cos + xc * cam.sin);
        const Y = t * (cam.sin - xc * cam.cos);
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
          const dashed = ((X % 9) + 9) % 9 < 3;
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
    const q = quad(cam, [[veh.distance - 0.2, yc + W / 2 + 0.2, 0], [veh.distance - 0.2, yc - W / 2 - 0.2, 0], [veh.distance + L + 0.2, yc - W / 2 - 0.2, 0], [veh.distance + L + 0.2, yc + W / 2 + 0.2, 0]]);
    if (q) fillConvex(img, width, height, q, [30, 30, 34], 1); // shadow, under everything
    const dist = Math.hypot(veh.distance + L / 2, yc);
    items.push({ dist, draw: () => drawVehicle(img, width, height, cam, { ...veh, color: fogged(veh.color ?? [200, 40, 40], dist) }, k) });
  }
  if (opts.trees !== false) {
    for (let i = -8; i <= 10; i++) {
      for (const side of [-1, 1]) {
        const X = i * 14 + hash3(i, side, seed + 3) * 8;
        if (inter !== undefined && Math.abs(X - inter) < ROAD_HALF + 3) continue;
        const Y = roadCenter(X, k) + side * (ROAD_HALF + 3 + hash3(i, side, seed + 4) * 5);
        const size = 0.8 + hash3(i, side, seed + 5) * 0.6;
        const dist = Math.hypot(X, Y);
        items.push({ dist, draw: () => drawTree(img, width, height, cam, X, Y, size, dist, hash3(i, side, seed + 6)) });
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
