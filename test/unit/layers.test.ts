import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/**
 * The layers of src/, bottom to top. A module may import its own layer and the tiers below it;
 * never a tier above, nor another layer of its own tier (pipeline and bag know nothing of each
 * other; ros and cli are the two tops, and index.ts, the public API, stands beside them).
 */
const TIERS: ReadonlyArray<readonly string[]> = [
  ['util', 'types'], //   errors, logger, paths; ambient type declarations
  ['model', 'control'], // prompt, tokenizer, generated models; the ROS-free tracking controller
  ['engine'], //          the addon's contract, Engine, images, the pruning policies
  ['msgs'], //            CDR codec, RosPort, message conversion
  ['pipeline', 'bag'], // the node logic and its runner; rosbag2 reading and writing
  ['sample'], //          synthetic scenarios, rendering, drive bags, datasets
  ['replay', 'carla'], // bag replay, scoring, traces, reports, evaluation; CARLA route and control
  ['sim'], //             the closed-loop simulator around the node logic
  ['ros', 'cli', 'index'], // the rclnodejs node, the command line, the public API
];

const tierOf = new Map(TIERS.flatMap((layers, i) => layers.map((l) => [l, i] as const)));

/** A file's layer: its folder under src/, or 'index' for src/index.ts. */
function layerOf(rel: string): string {
  const parts = rel.split(/[\\/]/);
  return parts.length === 1 ? path.basename(rel, '.ts') : (parts[0] as string);
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module a file imports or re-exports, statically or dynamically (TypeScript's own scanner). */
function importsOf(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** Why importing `spec` from src/`rel` breaks the layering, or undefined when it does not. */
function violation(rel: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined; // packages
  const target = path.relative(src, path.resolve(src, path.dirname(rel), spec));
  if (target.startsWith('..')) return `${rel} imports ${spec}, outside src/`;
  const from = layerOf(rel);
  const to = layerOf(target);
  const a = tierOf.get(from);
  const b = tierOf.get(to);
  if (a === undefined) return `${rel}: layer '${from}' is not in the layer table`;
  if (b === undefined) return `${rel} imports ${spec}: layer '${to}' is not in the layer table`;
  if (from === to) return undefined;
  if (b > a) return `${rel} imports ${target}: ${from} may not import ${to}, a layer above it`;
  if (b === a) return `${rel} imports ${target}: ${from} and ${to} are beside each other and may not import one another`;
  return undefined;
}

describe('layering', () => {
  it('the rule catches upward, sideways and outside imports (checked on made-up ones)', () => {
    assert.match(violation('msgs/convert.ts', '../pipeline/node.js') ?? '', /msgs may not import pipeline/);
    assert.match(violation('engine/engine.ts', '../msgs/codec.js') ?? '', /engine may not import msgs/);
    assert.match(violation('pipeline/node.ts', '../replay/replay.js') ?? '', /pipeline may not import replay/);
    assert.match(violation('sample/drive.ts', '../replay/port.js') ?? '', /sample may not import replay/);
    assert.match(violation('cli/main.ts', '../ros/main.js') ?? '', /cli and ros are beside each other/);
    assert.match(violation('ros/main.ts', '../cli/common.js') ?? '', /ros and cli are beside each other/);
    assert.match(violation('index.ts', './cli/main.js') ?? '', /index and cli are beside each other/);
    assert.match(violation('pipeline/node.ts', '../bag/reader.js') ?? '', /pipeline and bag are beside each other/);
    assert.match(violation('util/paths.ts', '../../scripts/x.js') ?? '', /outside src/);
    assert.match(violation('newlayer/x.ts', '../util/errors.js') ?? '', /'newlayer' is not in the layer table/);
    assert.equal(violation('replay/replay.ts', '../bag/reader.js'), undefined);
    assert.equal(violation('cli/replay.ts', './common.js'), undefined);
    assert.equal(violation('index.ts', './engine/engine.js'), undefined);
  });

  it('every import in src/ runs down the layers (or stays in its own)', () => {
    const all = files(src);
    assert.ok(all.length > 40, `only ${all.length} files found under ${src}`);
    const layers = new Set(all.map((f) => layerOf(path.relative(src, f))));
    for (const l of layers) assert.ok(tierOf.has(l), `src/${l} is not in the layer table: place it`);
    const bad: string[] = [];
    let edges = 0;
    for (const f of all) {
      const rel = path.relative(src, f);
      for (const spec of importsOf(f)) {
        edges++;
        const v = violation(rel, spec);
        if (v) bad.push(v);
      }
    }
    assert.ok(edges > 200, `only ${edges} imports parsed`);
    assert.deepEqual(bad, []);
  });

  it('nothing imports src/ros (the rclnodejs entry point and adapter are the top)', () => {
    for (const f of files(src).filter((p) => !p.includes(`${path.sep}ros${path.sep}`))) {
      const rel = path.relative(src, f);
      for (const spec of importsOf(f)) assert.ok(!(spec.startsWith('.') && path.relative(src, path.resolve(path.dirname(f), spec)).startsWith(`ros${path.sep}`)), `${rel} imports ${spec}`);
    }
  });

  it('only src/ros/ mentions rclnodejs, and only as a type import or a run-time dynamic import', () => {
    for (const f of files(src)) {
      const text = readFileSync(f, 'utf8');
      const rel = path.relative(src, f);
      if (!/['"]rclnodejs['"]/.test(text)) continue;
      assert.ok(rel.startsWith(`ros${path.sep}`), `${rel} imports rclnodejs`);
      for (const line of text.split('\n').filter((l) => /^import .*['"]rclnodejs['"]/.test(l))) assert.match(line, /^import type /, `${rel}: ${line}`);
    }
  });
});

describe('ROS 2 entry point without ROS 2', () => {
  it('refuses with a coded error before touching rclnodejs', async () => {
    const { runNode } = await import('../../src/ros/main.js');
    const saved = process.env.ROS_DISTRO;
    delete process.env.ROS_DISTRO;
    try {
      await assert.rejects(runNode(['node', 'main.js']), (e: Error & { code?: string }) => e.code === 'VLA_E_ADDON_MISSING' && /ROS 2 is not sourced/.test(e.message));
    } finally {
      if (saved !== undefined) process.env.ROS_DISTRO = saved;
    }
  });
});
