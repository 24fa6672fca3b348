/**
 * The Foxglove layouts (foxglove/*.json, written by scripts/make-foxglove-layouts.js): every
 * topic and message field they show exists: in the message definitions (msg/ and the standard
 * ones), in a replay's output bag (made here from a short sample drive with the bundled model),
 * and, for the cameras, in the node's inputs (live) or the sample drive bag (replay).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { openBag } from '../../src/bag/reader.js';
import { main } from '../../src/cli/main.js';
import { OUTPUT_TYPES } from '../../src/msgs/convert.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { loadParamsFile } from '../../src/pipeline/params.js';
import { resolveTopic } from '../../src/replay/port.js';
import { CAMERAS, CAMERA_TOPICS, LAYOUT_FILES, layout } from '../../scripts/make-foxglove-layouts.js';
import { requireBuilt, root } from '../addon/helpers.js';

type Layout = ReturnType<typeof layout>;
const codec = new MessageCodec();

/** Topics and message paths a layout references: [topic, field path ('' for the whole message)]. */
function references(l: Layout): Array<[string, string]> {
  const refs: Array<[string, string]> = [];
  const split = (p: string): [string, string] => {
    const m = /^(\/[^.[]+)(.*)$/.exec(p);
    assert.ok(m, `message path ${p}`);
    return [m[1] as string, (m[2] as string).replace(/^\./, '')];
  };
  for (const [id, c] of Object.entries(l.configById) as Array<[string, Record<string, any>]>) {
    if (id.startsWith('Image!')) refs.push([c.imageMode.imageTopic, '']);
    else if (id.startsWith('3D!')) for (const t of Object.keys(c.topics)) refs.push([t, '']);
    else if (id.startsWith('Plot!')) for (const s of c.paths) refs.push(split(s.value));
    else if (id.startsWith('RawMessages!')) refs.push(split(c.topicPath));
    else if (id.startsWith('DiagnosticSummary!')) refs.push([c.topicToRender, '']);
    else assert.fail(`unchecked panel ${id}`);
  }
  return refs;
}

/** A Foxglove message path (fields, [i], [-i]) evaluated on a decoded message. */
function evaluate(msg: unknown, field: string): unknown {
  let v: any = msg;
  for (const part of field.match(/[^.[\]]+|\[-?\d+\]/g) ?? []) {
    if (part.startsWith('[')) {
      const i = Number(part.slice(1, -1));
      v = v?.[i < 0 ? v.length + i : i];
    } else v = v?.[part];
  }
  return v;
}

function files(dir: string, ext: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p, ext) : p.endsWith(ext) ? [p] : [];
  });
}

describe('Foxglove layouts (ros)', function () {
  this.timeout(180_000);
  let tmp: string;
  before(() => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-foxglove-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the committed layouts are the script\'s (npm run gen:foxglove) and differ only in the camera topics', () => {
    for (const [kind, file] of Object.entries(LAYOUT_FILES)) assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), layout(kind as 'live' | 'replay'), `${file} is stale: npm run gen:foxglove`);
    const strip = (l: Layout) => JSON.stringify({ ...l, configById: Object.fromEntries(Object.entries(l.configById).filter(([id]) => !id.startsWith('Image!'))) });
    assert.equal(strip(layout('live')), strip(layout('replay')));
  });

  it('every output topic and field exists in the message definitions and in a replay output bag, with values; the cameras are the node\'s inputs (live) and the drive\'s topics (replay)', async () => {
    const out = (s: string) => void s;
    const drive = path.join(tmp, 'drive');
    assert.equal(await main(['node', 'autoprune-ros', 'make-sample-drive', '--out', drive, '--duration', '1', '--camera-hz', '5'], { out, err: out }), 0);
    const replayDir = path.join(tmp, 'replay');
    const cfg = path.join(root, 'configs', 'sample-drive.yaml');
    assert.equal(await main(['node', 'autoprune-ros', 'replay', drive, '--config', cfg, '--model', path.join(root, 'assets', 'models', 'drive'), '--out', replayDir, '--backend', 'cpu', '--no-progress'], { out, err: out }), 0);
    const outBag = files(replayDir, '.mcap')[0];
    assert.ok(outBag, 'the replay wrote an output bag');
    const r = await openBag(path.dirname(outBag));
    const types = new Map<string, string>();
    const first = new Map<string, unknown>();
    try {
      for (const t of r.info.topics) types.set(t.name, t.type);
      for await (const m of r.messages({})) if (!first.has(m.topic)) first.set(m.topic, codec.decode(types.get(m.topic) as string, m.data));
    } finally {
      await r.close();
    }
    const live = layout('live');
    const outputs = references(live).filter(([t]) => !CAMERAS.some((c) => t === CAMERA_TOPICS.live(c)));
    assert.ok(outputs.length >= 10);
    for (const [topic, field] of outputs) {
      const type = types.get(topic);
      assert.ok(type, `${topic} is in the replay output bag (${[...types.keys()].join(', ')})`);
      assert.ok((Object.values(OUTPUT_TYPES) as string[]).includes(type), `${topic}: ${type} is one of the node's output types`);
      if (field) {
        const v = evaluate(first.get(topic), field);
        assert.ok(typeof v === 'number' || typeof v === 'string', `${topic}.${field} has a value in the bag (${String(v)})`);
        // and the field is in the definition text (msg/msg or the standard ones)
        const top = field.split(/[.[]/)[0] as string;
        assert.match(codec.definitionText(type).split('\n=====')[0] as string, new RegExp(`^\\S+(\\[\\])? ${top}\\b`, 'm'), `${type} defines ${top}`);
      }
    }
    // cameras: live = the default config's inputs for the node named autoprune_ros; replay = the drive's topics
    const def = loadParamsFile(path.join(root, 'configs', 'default.yaml'));
    assert.deepEqual(CAMERAS.map((c) => CAMERA_TOPICS.live(c)).sort(), def.node.cameras.map((c) => resolveTopic(c.topic, 'autoprune_ros')).sort());
    const d = await openBag(drive);
    try {
      const inDrive = new Map(d.info.topics.map((t) => [t.name, t.type]));
      for (const c of CAMERAS) assert.equal(inDrive.get(CAMERA_TOPICS.replay(c)), 'sensor_msgs/msg/CompressedImage', c);
    } finally {
      await d.close();
    }
  });
});
