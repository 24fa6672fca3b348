/**
 * The drive as an animated WebP: each frame is the front camera as the node saw it, with the plan
 * the controller was following projected into it, beside a top-down view around the ego (heading
 * up) with the road, the traffic, the route and the plan. sharp writes the animation (libwebp);
 * the overlays are SVG that sharp rasterises.
 */
import sharp from 'sharp';

import type { RenderedView } from '../sample/render.js';
import type { ExpertRoute } from './expert.js';
import { boxCorners, toFrame, type Box } from './geometry.js';
import { roadShapes, type XY } from './svg.js';
import type { SimWorld } from './world.js';

export interface AnimationFrame {
  tS: number;
  camera: RenderedView;
  ego: { x: number; y: number; yaw: number; v: number };
  objects: Box[];
  /** The plan being followed, world frame (empty before the first). */
  plan: XY[];
  safeStop: boolean;
}

/** The renderer's camera: 70 degree field of view, 1.6 m above base_link, horizon at 0.42 of the height. */
function projectFront(width: number, height: number, x: number, y: number): [number, number] | null {
  if (x < 0.8) return null;
  const fpx = width / 2 / Math.tan((35 * Math.PI) / 180);
  return [width / 2 + (fpx * -y) / x, height * 0.42 + (fpx * 1.6) / x];
}

const f = (v: number) => v.toFixed(1);

function frameSvg(fr: AnimationFrame, world: SimWorld, route: ExpertRoute, w: number, h: number): string {
  const panel = h; // the top-down panel is square
  const k = panel / 50; // px per metre: 50 m from top to bottom
  const ox = w + panel / 2, oy = panel * 0.72;
  const toPx = (p: XY) => {
    const q = toFrame(fr.ego, p.x, p.y);
    return `${f(ox - q.y * k)},${f(oy - q.x * k)}`;
  };
  const poly = (pts: XY[]) => pts.map(toPx).join(' ');
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${w + panel}" height="${h}">`];
  // the plan in the camera
  const cam = fr.plan
    .map((p) => toFrame(fr.ego, p.x, p.y))
    .map((q) => projectFront(w, h, q.x, q.y))
    .filter((p): p is [number, number] => p !== null);
  if (cam.length >= 2) parts.push(`<polyline points="${cam.map(([u, v]) => `${f(u)},${f(v)}`).join(' ')}" fill="none" stroke="#00ff88" stroke-width="3" stroke-opacity="0.85"/>`);
  for (const [u, v] of cam) parts.push(`<circle cx="${f(u)}" cy="${f(v)}" r="2.5" fill="#00ff88"/>`);
  // the top-down panel
  parts.push(`<clipPath id="p"><rect x="${w}" y="0" width="${panel}" height="${h}"/></clipPath><g clip-path="url(#p)"><rect x="${w}" y="0" width="${panel}" height="${h}" fill="#6f8f5a"/>`);
  const sNow = world.roadPose(fr.ego.x, fr.ego.y, fr.ego.yaw, route.path.project(fr.ego.x, fr.ego.y).d).s;
  const road = roadShapes(world, sNow - 40, sNow + 60);
  for (const a of road.asphalt) parts.push(`<polygon points="${poly(a)}" fill="#7d8084"/>`);
  if (road.oncoming) parts.push(`<polygon points="${poly(road.oncoming)}" fill="#8b7f77"/>`);
  for (const d of road.dashes) parts.push(`<polyline points="${poly(d)}" fill="none" stroke="#eee" stroke-width="1" stroke-dasharray="4 4"/>`);
  if (road.stopLine) parts.push(`<polyline points="${poly(road.stopLine)}" fill="none" stroke="#fff" stroke-width="3"/>`);
  const rp: XY[] = [];
  const d0 = route.path.project(fr.ego.x, fr.ego.y).d;
  for (let d = Math.max(0, d0 - 10); d <= Math.min(route.routeEndD, d0 + 50); d += 2) rp.push(route.path.at(d));
  if (rp.length >= 2) parts.push(`<polyline points="${poly(rp)}" fill="none" stroke="#ffffff" stroke-width="1.5" stroke-dasharray="5 4" stroke-opacity="0.8"/>`);
  for (const b of fr.objects) parts.push(`<polygon points="${poly(boxCorners(b).map(([x, y]) => ({ x, y })))}" fill="#e0a020" stroke="#222"/>`);
  if (fr.plan.length) parts.push(`<polyline points="${poly([{ x: fr.ego.x, y: fr.ego.y }, ...fr.plan])}" fill="none" stroke="#00ff88" stroke-width="2.5"/>`);
  const egoBox: Box = { cx: fr.ego.x - 1.25 * Math.cos(fr.ego.yaw), cy: fr.ego.y - 1.25 * Math.sin(fr.ego.yaw), yaw: fr.ego.yaw, halfL: 2.25, halfW: 0.9 };
  parts.push(`<polygon points="${poly(boxCorners(egoBox).map(([x, y]) => ({ x, y })))}" fill="#0072B2" stroke="#fff"/>`);
  parts.push('</g>');
  const label = `${fr.tS.toFixed(1)} s  ${fr.ego.v.toFixed(1)} m/s${fr.safeStop ? '  SAFE STOP' : ''}`;
  parts.push(`<text x="6" y="14" font-family="sans-serif" font-size="12" fill="#fff" stroke="#000" stroke-width="0.6">${label}</text>`);
  parts.push('</svg>');
  return parts.join('');
}

/** Writes the frames as an animated WebP (looping). */
export async function renderAnimation(file: string, frames: AnimationFrame[], o: { world: SimWorld; route: ExpertRoute; frameDelayMs: number }): Promise<void> {
  const first = frames[0];
  if (!first) return;
  const w = first.camera.width, h = first.camera.height;
  const fw = w + h;
  const all = Buffer.alloc(fw * h * 3 * frames.length);
  for (const [i, fr] of frames.entries()) {
    // the camera on the left of a frame-sized canvas, the overlay on top
    const base = Buffer.alloc(fw * h * 3, 0);
    const cam = fr.camera.data;
    for (let y = 0; y < h; y++) base.set(cam.subarray(y * fr.camera.step, y * fr.camera.step + w * 3), y * fw * 3);
    const rgb = await sharp(base, { raw: { width: fw, height: h, channels: 3 } })
      .composite([{ input: Buffer.from(frameSvg(fr, o.world, o.route, w, h)), top: 0, left: 0 }])
      .removeAlpha()
      .raw()
      .toBuffer();
    rgb.copy(all, i * fw * h * 3);
  }
  await sharp(all, { raw: { width: fw, height: h * frames.length, channels: 3, pageHeight: h } })
    .webp({ quality: 70, loop: 0, delay: frames.map(() => o.frameDelayMs), effort: 2 })
    .toFile(file);
}
