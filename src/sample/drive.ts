/**
 * Synthetic drives recorded as rosbag2 MCAP bags: any scenario (src/sample/scenario.ts), or the
 * fixed sample drive the quick start replays (the ego follows a road with straights and curves
 * at a varying speed behind other traffic). Three cameras (front, front-left, front-right) see it
 * through the procedural renderer as JPEG CompressedImage at `cameraHz`, the instruction is
 * latched at the start (the sample drive changes it once), and nav_msgs/Odometry at `odomHz`
 * gives the ground-truth ego path the replay scores the planner against. Same options, same bytes.
 */

import sharp from 'sharp';

import { MessageCodec } from '../msgs/codec.js';
import { QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA } from '../msgs/port.js';
import { BagWriter } from '../bag/writer.js';
import type { BagInfo } from '../bag/reader.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { renderView, type CameraName, type RenderedView } from './render.js';
import {
  curvatureAt,
  egoAt,
  interpKnots,
  renderOptionsAt,
  SAMPLE_DRIVE_ROAD,
  SAMPLE_DRIVE_SPEED,
  sampleDriveScenario,
  simulateScenario,
  type Scenario,
  type ScenarioSim,
} from './scenario.js';

export interface ScenarioDriveOptions {
  cameraHz?: number;
  odomHz?: number;
  width?: number;
  height?: number;
  cameras?: CameraName[];
  jpegQuality?: number;
  /** Bag time of the first message, ns (default 2026-01-01T00:00:00Z). */
  startNs?: bigint;
  /** Camera skew and transport delay jitter (default: the scenario's seed). */
  jitterSeed?: number;
  /** Odometry this long past the last frame, so the replay can score the last frames' 3 s plans, s (default 0). */
  odomTailS?: number;
}

export interface SampleDriveOptions extends Omit<ScenarioDriveOptions, 'jitterSeed'> {
  durationS?: number;
  /** Varies textures, traffic colours and timing jitter. */
  seed?: number;
}

/** Topics of the sample drive; configs/sample-drive.yaml subscribes to these. */
export const SAMPLE_TOPICS = {
  camera: (c: string) => `/sensing/camera/${c}/image/compressed`,
  instruction: '/planning/instruction',
  odometry: '/localization/odometry',
};

/** Test drives carry odometry this far past their last frame, so every frame's 3 s plan is scored, s. */
export const TEST_DRIVE_ODOM_TAIL_S = 3;

/** JPEG settings of every synthetic camera frame (bags and datasets alike). */
export const JPEG_QUALITY = 85;

const NS = 1_000_000_000n;

/** Road curvature of the sample drive (1/m, left positive) by arc length: straights, a left bend, an S. */
export function roadCurvature(sM: number): number {
  return curvatureAt(SAMPLE_DRIVE_ROAD, sM);
}

/** Ego speed of the sample drive (m/s) over time: pulls away, cruises, slows behind the lead car, speeds up again. */
export function egoSpeed(tS: number): number {
  return interpKnots(SAMPLE_DRIVE_SPEED, tS);
}

export interface EgoPose {
  tS: number;
  sM: number;
  x: number;
  y: number;
  yaw: number;
  v: number;
  /** Yaw rate over speed, 1/m. */
  kappa: number;
  yawRate: number;
}

/** The ego of a scenario (default: the sample drive) at the given times, in the odometry frame. */
export function simulateEgo(timesS: number[], scenario: Scenario | ScenarioSim = sampleDriveScenario()): EgoPose[] {
  const sim = 'n' in scenario ? scenario : simulateScenario(scenario);
  return timesS.map((t) => {
    const e = egoAt(sim, t);
    return { tS: t, sM: e.s, x: e.x, y: e.y, yaw: e.yaw, v: e.v, kappa: e.v > 1e-6 ? e.yawRate / e.v : 0, yawRate: e.yawRate };
  });
}

function hash(a: number, b: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul(b | 0, 0x165667b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/**
 * Camera ci's timing for frame fi: cameras are not triggered together (a few ms of skew around
 * the frame time), and each frame takes 8-20 ms of transport to the node. The bags and the
 * closed-loop simulator share it.
 */
export function cameraTiming(jitterSeed: number, fi: number, ci: number): { skewNs: bigint; delayNs: bigint } {
  return {
    skewNs: BigInt(Math.round((hash(jitterSeed * 31 + fi, ci) - 0.5) * 6e6)),
    delayNs: 8_000_000n + BigInt(Math.round(hash(fi, ci + 17 * jitterSeed) * 12e6)),
  };
}

function quat(yaw: number) {
  return { x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) };
}

function stamp(ns: bigint) {
  return { sec: Number(ns / NS), nanosec: Number(ns % NS) };
}

/** JPEG bytes of a rendered view, as every synthetic camera frame is encoded (sharp, quality 85, no mozjpeg). */
export async function encodeJpeg(view: RenderedView, quality = JPEG_QUALITY): Promise<Buffer> {
  return sharp(Buffer.from(view.data.buffer, view.data.byteOffset, view.data.byteLength), { raw: { width: view.width, height: view.height, channels: 3 } })
    .jpeg({ quality, mozjpeg: false })
    .toBuffer();
}

/** Writes a scenario's episode as a rosbag2 MCAP bag directory `outDir`; returns its info. */
export async function makeScenarioDrive(outDir: string, scenario: Scenario, opts: ScenarioDriveOptions = {}): Promise<BagInfo> {
  const durationS = scenario.durationS;
  const cameraHz = opts.cameraHz ?? 10;
  const odomHz = opts.odomHz ?? 50;
  const width = opts.width ?? 320;
  const height = opts.height ?? 180;
  const cameras = opts.cameras ?? ['front', 'front_left', 'front_right'];
  const jitterSeed = opts.jitterSeed ?? scenario.seed;
  const quality = opts.jpegQuality ?? JPEG_QUALITY;
  const odomTailS = opts.odomTailS ?? 0;
  const t0 = opts.startNs ?? 1_767_225_600n * NS;
  if (!(durationS > 0 && durationS <= 600) || !(cameraHz > 0 && cameraHz <= 100) || !(odomHz > 0 && odomHz <= 1000)) {
    throw new VlaError(ErrorCodes.ARGS, `sample drive: duration 0-600 s, camera rate 0-100 Hz, odometry rate 0-1000 Hz (got ${durationS}, ${cameraHz}, ${odomHz})`);
  }
  if (!(odomTailS >= 0 && odomTailS <= 3.5)) throw new VlaError(ErrorCodes.ARGS, `sample drive: the odometry tail must be 0-3.5 s, got ${odomTailS}`);
  const sim = simulateScenario(scenario);
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
    instr(0, scenario.instruction);
    for (const later of scenario.laterInstructions) instr(later.tS, later.text);

    const nOdom = Math.floor((durationS + odomTailS) * odomHz + 1e-9) + 1;
    for (let i = 0; i < nOdom; i++) {
      const e = egoAt(sim, i / odomHz);
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
            twist: { twist: { linear: { x: e.v, y: 0, z: 0 }, angular: { x: 0, y: 0, z: e.yawRate } }, covariance: new Float64Array(36) },
          }),
      });
    }

    const nFrames = Math.floor(durationS * cameraHz + 1e-9);
    for (let fi = 0; fi < nFrames; fi++) {
      const tS = (fi + 0.5) / cameraHz;
      cameras.forEach((camera, ci) => {
        const { skewNs, delayNs } = cameraTiming(jitterSeed, fi, ci);
        const st = t0 + BigInt(Math.round(tS * 1e9)) + skewNs;
        pending.push({
          logNs: st + delayNs,
          order: order++,
          topic: SAMPLE_TOPICS.camera(camera),
          make: async () => {
            const jpeg = await encodeJpeg(renderView(renderOptionsAt(scenario, sim, tS, camera, width, height)), quality);
            return codec.encode(IMG, { header: { stamp: stamp(st), frame_id: `camera_${camera}` }, format: 'jpeg', data: new Uint8Array(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength) });
          },
        });
      });
    }
    pending.sort((a, b) => (a.logNs < b.logNs ? -1 : a.logNs > b.logNs ? 1 : a.order - b.order));
    for (const p of pending) await writer.write(p.topic, p.logNs, await p.make());
  } catch (err) {
    await writer.close().catch(() => undefined);
    throw err;
  }
  return writer.close();
}

/** Writes the fixed sample drive (see sampleDriveScenario) as a bag directory `outDir`; returns its info. */
export async function makeSampleDrive(outDir: string, opts: SampleDriveOptions = {}): Promise<BagInfo> {
  const durationS = opts.durationS ?? 12;
  const seed = opts.seed ?? 1;
  if (!(durationS > 0 && durationS <= 600)) {
    throw new VlaError(ErrorCodes.ARGS, `sample drive: duration 0-600 s, camera rate 0-100 Hz, odometry rate 0-1000 Hz (got ${durationS}, ${opts.cameraHz ?? 10}, ${opts.odomHz ?? 50})`);
  }
  const { cameraHz, odomHz, width, height, cameras, jpegQuality, startNs, odomTailS } = opts;
  return makeScenarioDrive(outDir, sampleDriveScenario({ durationS, seed }), { cameraHz, odomHz, width, height, cameras, jpegQuality, startNs, odomTailS, jitterSeed: seed });
}
