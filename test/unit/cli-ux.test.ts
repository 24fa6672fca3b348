// The CLI for people, without the addon: latency caveats, chart layout, the bundled-config
// match of replay/evaluate, --policy/--budget, unknown commands, plain folders of bags.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Command } from 'commander';

import { pruneOf } from '../../src/cli/common.js';
import { unknownCommand } from '../../src/cli/quickstart.js';
import { chooseBundledConfig, fitConfigs } from '../../src/replay/bundled-configs.js';
import { readDrives } from '../../src/replay/evaluate.js';
import { afterWarmup, latencyCaveats, latencyStats, spreadOf } from '../../src/replay/latency.js';
import { lineChart, placeLabels, scatterChart, textWidth } from '../../src/replay/svg.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';
import { configureLogging, logFormat, logger, logLevelChosen, restoreLogging } from '../../src/util/logger.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const code = (c: string) => (e: unknown) => e instanceof VlaError && e.code === c;

describe('latency figures (medians after warm-up, noise caveats)', () => {
  it('leaves the warm-up frame out, and keeps a single frame', () => {
    assert.deepEqual(afterWarmup([100, 2, 3]), [2, 3]);
    assert.deepEqual(afterWarmup([100]), [100]);
    assert.equal(latencyStats(afterWarmup([500, 10, 11, 12])).maxMs, 12);
  });

  it('a caveat where the interquartile ranges overlap, none where the difference stands out', () => {
    const quiet = (m: number) => Array.from({ length: 40 }, (_, i) => m + (i % 5) * 0.1);
    const noisy = (m: number) => Array.from({ length: 40 }, (_, i) => m + (i % 10) * 2);
    const ref = { label: 'none', spread: spreadOf(quiet(20)) };
    assert.deepEqual(latencyCaveats(ref, [{ label: 'autoprune', spread: spreadOf(quiet(17)) }]), []);
    const c = latencyCaveats({ label: 'none', spread: spreadOf(noisy(20)) }, [{ label: 'autoprune', spread: spreadOf(noisy(17)) }]);
    assert.equal(c.length, 1);
    assert.match(c[0] as string, /^autoprune: median .* within the frame-to-frame noise .* cannot tell their speed apart/);
    // the reference itself and settings with too few frames are not compared
    assert.deepEqual(latencyCaveats(ref, [{ label: 'none', spread: spreadOf(quiet(20)) }, { label: 'x', spread: spreadOf([20, 20]) }]), []);
  });
});

describe('charts: legends whole, labels apart, reference lines', () => {
  it('a long legend entry is written whole and the chart is wide enough for it', () => {
    const long = 'sparsevlm-fixed tokens:49 x (forward) and then some';
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: long, points: [[0, 1], [1, 2]] }, { name: 'b', points: [[0, 2], [1, 1]], dashed: true }] });
    assert.ok(svg.includes(`>${long}</text>`), 'not truncated');
    const width = Number(/width="(\d+)"/.exec(svg)?.[1]);
    const tag = svg.split('\n').find((l) => l.endsWith(`>${long}</text>`)) as string;
    const x = Number(/<text x="([\d.]+)"/.exec(tag)?.[1]);
    assert.ok(x + textWidth(long) <= width, `legend text ends at ${x + textWidth(long)}, chart is ${width} wide`);
    assert.match(svg, /stroke-dasharray/);
  });

  it('a legend taller than the plot makes the chart taller', () => {
    const series = Array.from({ length: 30 }, (_, i) => ({ name: `s${i}`, points: [[0, i], [1, i]] as Array<[number, number]> }));
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series });
    const height = Number(/height="(\d+)"/.exec(svg)?.[1]);
    const lastY = Math.max(...[...svg.matchAll(/<text x="[\d.]+" y="([\d.]+)">s\d+<\/text>/g)].map((m) => Number(m[1])));
    assert.ok(lastY < height - 20, `last legend entry at ${lastY}, chart ${height} high`);
  });

  it('point labels never overlap one another, a point or the reference label', () => {
    // a tight cluster, as the evaluation's policies at one budget are
    const pts = Array.from({ length: 12 }, (_, i) => ({ px: 200 + (i % 4) * 9, py: 150 + Math.floor(i / 4) * 8, text: `T=${i}` }));
    const plot = { x0: 70, y0: 40, x1: 570, y1: 345 };
    const avoid = [{ x0: 150, y0: 120, x1: 260, y1: 132 }];
    const at = placeLabels(pts, plot, avoid);
    const boxes = at.flatMap((a, i) => {
      if (!a) return [];
      const w = textWidth((pts[i] as { text: string }).text, 10);
      const x0 = a.anchor === 'start' ? a.x : a.anchor === 'end' ? a.x - w : a.x - w / 2;
      return [{ x0, x1: x0 + w, y0: a.y + 3 - 12, y1: a.y + 3 }];
    });
    assert.ok(boxes.length >= 8, `${boxes.length} of 12 labels placed`);
    const hit = (a: { x0: number; x1: number; y0: number; y1: number }, b: typeof a) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
    for (const [i, a] of boxes.entries()) {
      for (const b of boxes.slice(i + 1)) assert.ok(!hit(a, b), `${JSON.stringify(a)} overlaps ${JSON.stringify(b)}`);
      assert.ok(!hit(a, avoid[0] as typeof a));
      for (const p of pts) assert.ok(!hit(a, { x0: p.px - 4.5, x1: p.px + 4.5, y0: p.py - 4.5, y1: p.py + 4.5 }));
    }
  });

  it('a scatter draws its reference as a labelled dashed line and joins each group in x order', () => {
    const svg = scatterChart({ title: 't', xLabel: 'x', yLabel: 'y', points: [{ x: 50, y: 2, label: 'a T=49', group: 'a' }, { x: 30, y: 3, label: 'a T=16', group: 'a' }, { x: 100, y: 1, label: 'none', group: 'none' }], connect: true, references: [{ y: 3.5, label: 'constant velocity' }] });
    assert.match(svg, /stroke-dasharray="6 4"><title>constant velocity<\/title>/);
    assert.match(svg, />constant velocity<\/text>/);
    assert.equal((svg.match(/<polyline/g) ?? []).length, 1, 'one line for the group with two points');
  });
});

describe('replay without --config: the bundled config whose camera topics are in the bag', () => {
  const sampleTopics = ['front', 'front_left', 'front_right'].map((c) => ({ name: `/sensing/camera/${c}/image/compressed`, type: 'sensor_msgs/msg/CompressedImage' }));

  it('the sample drive gets configs/sample-drive.yaml', () => {
    assert.equal(chooseBundledConfig('drive', [...sampleTopics, { name: '/localization/odometry', type: 'nav_msgs/msg/Odometry' }]), path.join(root, 'configs', 'sample-drive.yaml'));
  });

  it('remaps count: default.yaml fits a bag whose cameras are remapped onto its topics', () => {
    const remaps = new Map(['front', 'front_left', 'front_right'].map((c) => [`/autoprune_ros/input/${c}/image`, `/cam/${c}`]));
    const fits = fitConfigs(['/cam/front', '/cam/front_left', '/cam/front_right'], remaps);
    assert.deepEqual(fits.find((f) => f.file.endsWith('default.yaml'))?.missing, []);
  });

  it('a bag no bundled config fits: VLA_E_INPUT naming each config\'s missing topics and the bag\'s image topics', () => {
    assert.throws(
      () => chooseBundledConfig('talker', [{ name: '/topic', type: 'std_msgs/msg/String' }, { name: '/cam', type: 'sensor_msgs/msg/Image' }]),
      (e: unknown) => {
        assert.ok(e instanceof VlaError && e.code === ErrorCodes.INPUT);
        assert.match(e.message, /no --config given/);
        assert.match(e.message, /its image topics: \/cam\)/);
        assert.match(e.message, /configs\/default\.yaml: missing \/autoprune_ros\/input\/front\/image, /);
        assert.match(e.message, /configs\/sample-drive\.yaml: missing \/sensing\/camera\/front\/image\/compressed/);
        assert.match(e.message, /--remap FROM:=TO/);
        return true;
      },
    );
  });

  it('a bag that fits a config whose model is not here: the error says to give --model', () => {
    // A user's config (a camera rig and model of their own) beside the bundled ones.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-configs-'));
    try {
      const yaml = readFileSync(path.join(root, 'configs', 'default.yaml'), 'utf8')
        .replace(/model_path: \S+/, 'model_path: assets/models/not-here')
        .replace(/camera_topics: \[[^\]]*\]/, 'camera_topics: [/carla/ego_vehicle/rgb_front/image, /carla/ego_vehicle/rgb_left/image, /carla/ego_vehicle/rgb_right/image]');
      writeFileSync(path.join(dir, 'carla-own.yaml'), yaml);
      const carla = ['rgb_front', 'rgb_left', 'rgb_right'].map((s) => ({ name: `/carla/ego_vehicle/${s}/image`, type: 'sensor_msgs/msg/Image' }));
      assert.throws(
        () => chooseBundledConfig('carla-drive', carla, new Map(), [path.join(dir, 'carla-own.yaml'), path.join(root, 'configs', 'default.yaml')]),
        (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT && /carla-own\.yaml: every camera topic matches, but its model assets\/models\/not-here is not here: --config \S*carla-own\.yaml --model <your model>/.test(e.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('--policy and --budget', () => {
  it('a budget alone implies AutoPrune; none with a budget, and a policy without one, are argument errors', () => {
    assert.equal(pruneOf({}), undefined);
    assert.equal(pruneOf({ policy: 'none' }), undefined);
    assert.deepEqual(pruneOf({ budget: 'tokens:8' }), { policy: 'autoprune', budget: { kind: 'tokens', value: 8 } });
    assert.deepEqual(pruneOf({ policy: 'fastv', budget: 'flops:1.5' }), { policy: 'fastv', budget: { kind: 'flops', value: 1.5 } });
    assert.throws(() => pruneOf({ policy: 'none', budget: 'tokens:8' }), code(ErrorCodes.ARGS));
    assert.throws(() => pruneOf({ policy: 'fastv' }), code(ErrorCodes.ARGS));
  });
});

describe('unknown commands', () => {
  const program = new Command();
  for (const c of ['demo', 'infer', 'replay', 'evaluate', 'trace', 'make-test-drives']) program.command(c);

  it('names the command, suggests a near one, lists them all', () => {
    const e = unknownCommand('replya', program);
    assert.equal(e.code, ErrorCodes.ARGS);
    assert.match(e.message, /^unknown command 'replya' \(did you mean 'replay'\?\); the commands: demo, infer, replay/);
    assert.doesNotMatch(unknownCommand('runn', program).message, /did you mean/);
    assert.match(unknownCommand('make-test', program).message, /did you mean 'make-test-drives'/);
  });
});

describe('logging settings', () => {
  it('configureLogging sets format and level for children too, and restoreLogging puts them back', () => {
    const child = logger.child({ component: 'x' });
    const before = configureLogging({ format: 'json', level: 'debug' });
    try {
      assert.equal(logFormat(), 'json');
      assert.equal(child.isLevelEnabled('debug'), true);
      assert.equal(logLevelChosen(), true);
    } finally {
      restoreLogging(before);
    }
    assert.equal(logger.level, before.level);
    assert.equal(logLevelChosen(), before.chosen);
  });
});

describe('evaluate: a plain folder of bags', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'eval-folder-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('every bag directory and .mcap/.db3 file in it is a drive, in name order; other files are left alone', async () => {
    const fx = path.join(root, 'test', 'fixtures', 'rosbag2');
    cpSync(path.join(fx, 'talker-mcap'), path.join(tmp, 'b-dir'), { recursive: true });
    cpSync(path.join(fx, 'talker-mcap', 'talker.mcap'), path.join(tmp, 'a.mcap'));
    mkdirSync(path.join(tmp, 'notes'));
    writeFileSync(path.join(tmp, 'README.txt'), 'x');
    const drives = await readDrives(tmp);
    assert.deepEqual(drives.map((d) => path.basename(d.dir)), ['a.mcap', 'b-dir']);
    assert.equal(drives[0]?.kind, undefined);
    // a bag directory given itself is one drive
    assert.deepEqual((await readDrives(path.join(tmp, 'b-dir'))).map((d) => path.basename(d.dir)), ['b-dir']);
    // a folder with neither drives.json nor bags
    await assert.rejects(readDrives(path.join(tmp, 'notes')), code(ErrorCodes.INPUT));
  });
});
