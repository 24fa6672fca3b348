/**
 * A deterministic synthetic drive recorded as a rosbag2 MCAP bag: the ego follows a road with
 * straights and curves at a varying speed behind other traffic; three cameras (front, front-left,
 * front-right) see it through the procedural renderer as JPEG CompressedImage at `cameraHz`, an
 * instruction is latched at the start and changes once, and nav_msgs/Odometry at `odomHz` gives
 * the ground-truth ego path the replay scores the planner against. Same options, same bytes.
 */
import path from 'node:path';

import sharp from 'sharp';

import { MessageCodec } from '../ros/codec.js';
import { QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA } from '../ros/port.js';
import { BagWriter } from '../replay/bag/writer.js';
import type { BagInfo } from '../replay/bag/reader.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { renderView, type CameraName, type Vehicle } from './render.js';

export interface SampleDriveOptions {
  durationS?: number;
  cameraHz?: number;
  odomHz?: number;
  width?: number;
  height?: number;
  cameras?: CameraName[];
  /** Varies textures, traffic colours and timing jitter. */
  seed?: number;
  jpegQuality?: number;
  /** Bag time of the first message, ns (default 2026-01-01T00:00:00Z). */
  startNs?: bigint;
}

/** Topics of the sample drive; configs/sample-drive.yaml subscribes to these. */
export const SAMPLE_TOPICS = {
  camera: (c: string) => `/sensing/camera/${c}/image/compressed`,
  instruction: '/planning/instruction',
  odometry: '/localization/odometry',
};

const NS = 1_000_000_000n;

/** Road curvature (1/m, left positive) as a function of arc length: straights, a left bend, an S. */
export function roadCurvature(sM: number): number {
  const segs: Array<[number, number, number]> = [
    // [start m, end m, curvature]
    [40, 110, 0.012],
    [150, 200, -0.015],
    [200, 240, 0.01],
  ];
  for (const [a, b, k] of segs) {
    const ramp = 10;
    if (sM >= a - ramp && sM <= b + ramp) {
      const w = Math.min(1, (sM - (a - ramp)) / ramp, (b + ramp - sM) / ramp);
      return k * Math.max(0, w);
    }
  }
  return 0;
}

/** Ego speed (m/s) over time: pulls away, cruises, slows behind the lead car, speeds up again. */
export function egoSpeed(tS: number): number {
  if (tS < 4) return 6 + 1.0 * tS;
  if (tS < 9) return 10;
  if (tS < 13) return 10 - 0.9 * (tS - 9);
  return 6.4 + 0.6 * Math.min(6, tS - 13);
}

interface EgoState {
  tS: number;
  sM: number;
  x: number;
  y: number;
  yaw: number;
  v: number;
  kappa: number;
}

/** Integrates the ego on the road (1 ms steps) and samples it at the given times. */
export function simulateEgo(timesS: number[]): EgoState[] {
  const out: EgoState[] = [];
  const sorted = [...timesS].sort((a, b) => a - b);
  let t = 0, s = 0, x = 0, y = 0, yaw = 0;
  const dt = 0.001;
  for (const want of sorted) {
    while (t + dt <= want + 1e-12) {
      const v = egoSpeed(t + dt / 2);
      const k = roadCurvature(s + (v * dt) / 2);
      const yawMid = yaw + (v * k * dt) / 2;
      x += v * dt * Math.cos(yawMid);
      y += v * dt * Math.sin(yawMid);
      yaw += v * k * dt;
      s += v * dt;
      t += dt;
    }
    out.push({ tS: want, sM: s, x, y, yaw, v: egoSpeed(want), kappa: roadCurvature(s) });
  }
  return out;
}

function hash(a: number, b: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul(b | 0, 0x165667b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** Other traffic by arc length: a lead car in the ego lane and cars in the neighbouring lanes. */
function traffic(tS: number, egoS: number, seed: number): Vehicle[] {
  const lead = 30 + 8.5 * tS - (tS > 8 ? 1.4 * (tS - 8) * Math.min(tS - 8, 5) : 0);
  const left = 5 + 12 * tS;
  const oncoming = 260 - 11 * tS;
  const out: Vehicle[] = [];
  const pal: Array<[number, number, number]> = [[185, 30, 35], [35, 70, 170], [220, 220, 225], [40, 40, 45], [200, 150, 30]];
  const col = (i: number) => pal[Math.floor(hash(seed, i) * pal.length)] as [number, number, number];
  for (const [sv, lane, i] of [[lead, 0, 1], [left, 1, 2], [oncoming, 1, 3]] as Array<[number, number, number]>) {
    const d = sv - egoS;
    if (d > -8 && d < 90) out.push({ distance: d, lane, color: col(i) });
  }
  return out;
}

function quat(yaw: number) {
  return { x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) };
}

function stamp(ns: bigint) {
  return { sec: Number(ns / NS), nanosec: Number(ns % NS) };
}

/** Writes the drive as a rosbag2 MCAP bag directory `outDir`; returns its info. */
export async function makeSampleDrive(outDir: string, opts: SampleDriveOptions = {}): Promise<BagInfo> {
  const durationS = opts.durationS ?? 12;
  const cameraHz = opts.cameraHz ?? 10;
  const odomHz = opts.odomHz ?? 50;
  const width = opts.width ?? 320;
  const height = opts.height ?? 180;
  const cameras = opts.cameras ?? ['front', 'front_left', 'front_right'];
  const seed = opts.seed ?? 1;
  const quality = opts.jpegQuality ?? 85;
  const t0 = opts.startNs ?? 1_767_225_600n * NS;
  if (!(durationS > 0 && durationS <= 600) || !(cameraHz > 0 && cameraHz <= 100) || !(odomHz > 0 && odomHz <= 1000)) {
    throw new VlaError(ErrorCodes.ARGS, `sample drive: duration 0-600 s, camera rate 0-100 Hz, odometry rate 0-1000 Hz (got ${durationS}, ${cameraHz}, ${odomHz})`);
  }
  const codec = new MessageCodec();
  const writer = await BagWriter.create(outDir);
  try {
    const IMG = 'sensor_msgs/msg/CompressedImage';
    for (const c of cameras) await writer.addTopic(SAMPLE_TOPICS.camera(c), IMG, codec.definitionText(IMG), QOS_SENSOR_DATA);
    await writer.addTopic(SAMPLE_TOPICS.instruction, 'std_msgs/msg/String', codec.definitionText('std_msgs/msg/String'), QOS_LATCHED);
    await writer.addTopic(SAMPLE_TOPICS.odometry, 'nav_msgs/msg/Odometry', codec.definitionText('nav_msgs/msg/Odometry'), QOS_DEFAULT);

    // Every message with its log time, written in log-time order (as a recorder would).
    type Pending = { logNs: bigint; order: number; topic: string; make: () => Promise<Uint8Array> };
    const pending: Pending[] = [];
    let order = 0;
    const instr = (atS: number, text: string) =>
      pending.push({ logNs: t0 + BigInt(Math.round(atS * 1e9)), order: order++, topic: SAMPLE_TOPICS.instruction, make: async () => codec.encode('std_msgs/msg/String', { data: text }) });
    instr(0, 'follow the road and keep a safe distance to the car ahead');
    instr(durationS * 0.55, 'keep the lane and slow down for the car ahead');

    const nOdom = Math.floor(durationS * odomHz) + 1;
    const odomTimes = Array.from({ length: nOdom }, (_, i) => i / odomHz);
    const odom = simulateEgo(odomTimes);
    for (const e of odom) {
      const st = t0 + BigInt(Math.round(e.tS * 1e9));
      pending.push({
        logNs: st + 2_000_000n,
        order: order++,
        topic: SAMPLE_TOPICS.odometry,
        make: async () =>
          codec.encode('nav_msgs/msg/Odometry', {
            header: { stamp: stamp(st), frame_id: 'odom' },
            child_frame_id: 'base_link',
            pose: { pose: { position: { x: e.x, y: e.y, z: 0 }, orientation: quat(e.yaw) }, covariance: new Float64Array(36) },
            twist: { twist: { linear: { x: e.v, y: 0, z: 0 }, angular: { x: 0, y: 0, z: e.v * e.kappa } }, covariance: new Float64Array(36) },
          }),
      });
    }

    const nFrames = Math.floor(durationS * cameraHz);
    const frameTimes = Array.from({ length: nFrames }, (_, i) => (i + 0.5) / cameraHz);
    const egoAtFrames = simulateEgo(frameTimes);
    egoAtFrames.forEach((e, fi) => {
      cameras.forEach((camera, ci) => {
        // Cameras are not triggered together: a few ms of skew, and 8-20 ms of transport delay.
        const skewNs = BigInt(Math.round((hash(seed * 31 + fi, ci) - 0.5) * 6e6));
        const st = t0 + BigInt(Math.round(e.tS * 1e9)) + skewNs;
        const delayNs = 8_000_000n + BigInt(Math.round(hash(fi, ci + 17 * seed) * 12e6));
        pending.push({
          logNs: st + delayNs,
          order: order++,
          topic: SAMPLE_TOPICS.camera(camera),
          make: async () => {
            // The renderer draws the road ahead with one curvature: use the mean over the next 40 m.
            let k = 0;
            for (let d = 0; d < 40; d += 4) k += roadCurvature(e.sM + d) / 10;
            const view = renderView({
              camera,
              width,
              height,
              curvature: k,
              vehicles: traffic(e.tS, e.sM, seed),
              intersection: 300 - e.sM > 0 && 300 - e.sM < 80 ? 300 - e.sM : undefined,
              light: 0.9 + 0.1 * Math.cos(e.tS / 3),
              seed: seed * 100_003 + fi,
            });
            const jpeg = await sharp(Buffer.from(view.data.buffer, view.data.byteOffset, view.data.byteLength), { raw: { width: view.width, height: view.height, channels: 3 } })
              .jpeg({ quality, mozjpeg: false })
              .toBuffer();
            return codec.encode(IMG, { header: { stamp: stamp(st), frame_id: `camera_${camera}` }, format: 'jpeg', data: new Uint8Array(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength) });
          },
        });
      });
    });
    pending.sort((a, b) => (a.logNs < b.logNs ? -1 : a.logNs > b.logNs ? 1 : a.order - b.order));
    for (const p of pending) await writer.write(p.topic, p.logNs, await p.make());
  } catch (err) {
    await writer.close().catch(() => undefined);
    throw err;
  }
  return writer.close();
}

export const SAMPLE_DRIVE_DIR_NAME = 'sample-drive';
export function defaultSampleDriveDir(root: string): string {
  return path.join(root, 'build', SAMPLE_DRIVE_DIR_NAME);
}
