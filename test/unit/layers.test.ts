import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('layering', () => {
  it('only src/ros/ mentions rclnodejs, and only as a type import or a run-time dynamic import', () => {
    for (const f of files(src)) {
      const text = readFileSync(f, 'utf8');
      const rel = path.relative(src, f);
      if (!/['"]rclnodejs['"]/.test(text)) continue;
      assert.ok(rel.startsWith(`ros${path.sep}`), `${rel} imports rclnodejs`);
      for (const line of text.split('\n').filter((l) => /^import .*['"]rclnodejs['"]/.test(l))) assert.match(line, /^import type /, `${rel}: ${line}`);
    }
  });

  it('the pipeline and the engine wrapper never import src/ros adapters that need ROS', () => {
    for (const f of files(src).filter((p) => !p.includes(`${path.sep}ros${path.sep}`))) {
      assert.doesNotMatch(readFileSync(f, 'utf8'), /from ['"][./]*ros\/(main|rclnodejs-port)\.js['"]/, path.relative(src, f));
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
