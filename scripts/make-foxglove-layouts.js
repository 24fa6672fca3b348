#!/usr/bin/env node
// Writes the Foxglove layouts in foxglove/ (npm run gen:foxglove): the three cameras, the planned
// path in the ego frame (3D panel in base_link), latency and kept-token plots from the metrics,
// the trajectory's instruction and the diagnostics. Two files differ only in the camera topics:
// autoprune_ros.json for a live node (its inputs under the default node name) and
// autoprune_ros-replay.json for a replay (open the input bag, e.g. the sample drive, together
// with the replay's output bag). test/ros/foxglove.test.ts checks every topic and field against
// the message definitions and a replay output bag, and these files against this script.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const LAYOUT_FILES = { live: path.join(root, 'foxglove', 'autoprune_ros.json'), replay: path.join(root, 'foxglove', 'autoprune_ros-replay.json') };
export const CAMERAS = ['front_left', 'front', 'front_right'];
const NODE = '/autoprune_ros';
export const CAMERA_TOPICS = {
  live: (c) => `${NODE}/input/${c}/image`,
  replay: (c) => `/sensing/camera/${c}/image/compressed`,
};
const M = `${NODE}/output/metrics`;

export function layout(kind) {
  const series = (value, label) => ({ value, enabled: true, timestampMethod: 'headerStamp', label });
  const configById = {
    ...Object.fromEntries(CAMERAS.map((c) => [`Image!${c}`, { imageMode: { imageTopic: CAMERA_TOPICS[kind](c) }, cameraState: {}, topics: {} }])),
    '3D!plan': {
      followTf: 'base_link',
      followMode: 'follow-pose',
      scene: {},
      cameraState: { distance: 40, perspective: true, phi: 45, thetaOffset: 90, targetOffset: [10, 0, 0] },
      topics: { [`${NODE}/output/path`]: { visible: true, lineWidth: 0.3, gradient: ['#00e676ff', '#00e67655'] } },
      layers: { grid: { layerId: 'foxglove.Grid', visible: true, frameLocked: true, size: 40, divisions: 20, position: [15, 0, 0] } },
    },
    'Plot!latency': {
      title: 'latency (ms)',
      paths: [series(`${M}.sensor_to_publish_ms`, 'sensor to publish'), series(`${M}.total_ms`, 'engine total'), series(`${M}.vision_ms`, 'vision'), series(`${M}.prefill_ms`, 'prefill')],
      showLegend: true,
      xAxisVal: 'timestamp',
    },
    'Plot!tokens': {
      title: 'visual tokens',
      paths: [series(`${M}.visual_tokens_in`, 'in'), series(`${M}.visual_tokens_kept[0]`, 'kept after layer 0'), series(`${M}.visual_tokens_kept[-1]`, 'kept after the last layer')],
      showLegend: true,
      xAxisVal: 'timestamp',
    },
    'Plot!compute': {
      title: 'prefill GFLOP',
      paths: [series(`${M}.prefill_gflop`, 'spent'), series(`${M}.prefill_gflop_unpruned`, 'unpruned')],
      showLegend: true,
      xAxisVal: 'timestamp',
    },
    'RawMessages!instruction': { topicPath: `${NODE}/output/trajectory.instruction`, diffEnabled: false, expansion: 'all' },
    'DiagnosticSummary!diag': { topicToRender: '/diagnostics', pinnedIds: [], hardwareIdFilter: '', sortByLevel: true },
  };
  const row = (first, second, splitPercentage) => ({ direction: 'row', first, second, splitPercentage });
  const column = (first, second, splitPercentage) => ({ direction: 'column', first, second, splitPercentage });
  return {
    configById,
    globalVariables: {},
    userNodes: {},
    playbackConfig: { speed: 1 },
    layout: column(
      row('Image!front_left', row('Image!front', 'Image!front_right', 50), 33),
      row('3D!plan', column(row('Plot!latency', 'Plot!tokens', 50), row('Plot!compute', column('RawMessages!instruction', 'DiagnosticSummary!diag', 35), 50), 50), 40),
      40,
    ),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const [kind, file] of Object.entries(LAYOUT_FILES)) {
    writeFileSync(file, `${JSON.stringify(layout(kind), null, 2)}\n`);
    process.stdout.write(`wrote ${path.relative(root, file)}\n`);
  }
}
