import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { main } from '../../src/cli/main.js';
import { requireBuilt, root, testModels } from './helpers.js';

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const sample = (cam: string) => path.join(root, 'assets', 'sample', `${cam}.jpg`);

describe('CLI', () => {
  before(requireBuilt);
  const tiny = path.join(testModels, 'tiny');

  it('infer --json prints one JSON object with waypoints, timings and token counts', async () => {
    const r = await cli('infer', '--model', tiny, '--image', `front=${sample('front')}`, '--image', `front_right=${sample('front_right')}`, '--instruction', 'keep lane', '--json', '--backend', 'cpu');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.head, 'waypoints');
    assert.deepEqual(j.cameras, ['front', 'front_right']);
    assert.equal(j.waypoints.length, 6);
    assert.ok(j.timings.totalMs > 0);
    assert.equal(j.tokens.visual, 2 * 16);
  });

  it('infer with the text head prints text', async () => {
    const r = await cli('infer', '--model', path.join(testModels, 'tiny-text'), '--image', `front=${sample('front')}`, '--instruction', 'turn right', '--max-new-tokens', '3', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.head, 'text');
    assert.equal(typeof j.text, 'string');
    assert.ok(j.tokenIds.length <= 3);
  });

  it('prints a human-readable trajectory without --json', async () => {
    const r = await cli('infer', '--model', tiny, '--image', `front=${sample('front')}`, '--instruction', 'keep lane');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /trajectory \(ego frame/);
    assert.match(r.out, /timings \[ms\]/);
  });

  it('fails with codes on stderr and a non-zero exit', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-cli-'));
    try {
      const corrupt = path.join(tmp, 'corrupt.jpg');
      writeFileSync(corrupt, Buffer.from('\xff\xd8\xff\xe0 this is not really a jpeg'));
      let r = await cli('infer', '--model', tiny, '--image', `front=${corrupt}`, '--instruction', 'x');
      assert.equal(r.code, 1);
      assert.match(r.err, /^VLA_E_IMAGE_DECODE: camera 'front'/);
      r = await cli('infer', '--model', tiny, '--image', `front=${path.join(tmp, 'missing.jpg')}`, '--instruction', 'x');
      assert.equal(r.code, 1);
      assert.match(r.err, /^VLA_E_IO: /);
      r = await cli('infer', '--model', tiny, '--image', `rear=${sample('front')}`, '--instruction', 'x');
      assert.match(r.err, /^VLA_E_INPUT: unknown camera 'rear'/);
      r = await cli('infer', '--model', tiny, '--image', 'front', '--instruction', 'x');
      assert.equal(r.code, 2);
      assert.match(r.err, /^VLA_E_ARGS: --image takes NAME=FILE/);
      r = await cli('infer', '--model', tiny, '--instruction', 'x');
      assert.equal(r.code, 2);
      assert.match(r.err, /^VLA_E_ARGS: .*--image/);
      r = await cli('infer', '--model', path.join(tmp, 'nomodel'), '--image', `front=${sample('front')}`, '--instruction', 'x');
      assert.equal(r.code, 1);
      assert.match(r.err, /^VLA_E_IO: /);
      r = await cli('infer', '--model', tiny, '--image', `front=${sample('front')}`, '--instruction', 'x', '--threads', '-3');
      assert.equal(r.code, 2);
      r = await cli('bogus-command');
      assert.equal(r.code, 2);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('make-tiny-model writes a loadable model', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-cli-'));
    try {
      const dir = path.join(tmp, 'm');
      let r = await cli('make-tiny-model', '--out', dir, '--seed', '7', '--json');
      assert.equal(r.code, 0, r.err);
      r = await cli('infer', '--model', dir, '--image', `front=${sample('front')}`, '--instruction', 'x', '--json');
      assert.equal(r.code, 0, r.err);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
