import assert from 'node:assert/strict';

import { FrameSync } from '../../src/pipeline/sync.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const CAMS = ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'];
const ms = (x: number) => BigInt(Math.round(x * 1e6));

describe('FrameSync', () => {
  it('pairs 6 cameras at 30 Hz with jitter for simulated minutes with bounded memory', () => {
    const sync = new FrameSync<number>({ cameras: CAMS, slopMs: 10, maxAgeMs: 200, missingCamera: 'wait' });
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    let sets = 0;
    let maxHeld = 0;
    for (let k = 0; k < 30 * 60 * 3; k++) {
      const t = k * (1000 / 30);
      // cameras arrive in a shuffled order with +-3 ms stamp jitter
      const order = [...CAMS].sort(() => rnd() - 0.5);
      for (const c of order) sync.push({ camera: c, stampNs: ms(t + (rnd() - 0.5) * 6), data: k });
      maxHeld = Math.max(maxHeld, sync.held);
      // the engine is busy two frames out of three: take only every third round
      if (k % 3 === 0) {
        const set = sync.take(ms(t + 5));
        assert.ok(set, `round ${k}`);
        assert.equal(set.frames.length, 6);
        assert.deepEqual(set.frames.map((f) => f.camera), CAMS);
        assert.ok(set.stampNs - set.oldestNs <= ms(10));
        assert.ok(set.frames.every((f) => f.data === k), 'the newest round wins');
        sets++;
      }
    }
    assert.equal(sets, 1800);
    assert.ok(maxHeld <= CAMS.length * 4, `held ${maxHeld}`);
    assert.equal(sync.stats.setsComplete, 1800);
    assert.equal(sync.stats.droppedSuperseded + 6 * 1800, sync.stats.received - sync.held);
  });

  it('never combines frames further apart than the slop', () => {
    const sync = new FrameSync<string>({ cameras: ['a', 'b'], slopMs: 5, maxAgeMs: 1000, missingCamera: 'wait' });
    sync.push({ camera: 'a', stampNs: ms(100), data: 'a100' });
    sync.push({ camera: 'b', stampNs: ms(120), data: 'b120' });
    assert.equal(sync.take(ms(121)), undefined);
    sync.push({ camera: 'a', stampNs: ms(118), data: 'a118' });
    const set = sync.take(ms(121));
    assert.deepEqual(set?.frames.map((f) => f.data), ['a118', 'b120']);
    assert.equal(set?.stampNs, ms(120));
  });

  it('drops and counts stale frames; rejects unknown cameras and frames older than the last used', () => {
    const sync = new FrameSync<number>({ cameras: ['a', 'b'], slopMs: 5, maxAgeMs: 50, missingCamera: 'wait' });
    sync.push({ camera: 'a', stampNs: ms(0), data: 0 });
    sync.push({ camera: 'b', stampNs: ms(1), data: 0 });
    assert.equal(sync.take(ms(100)), undefined); // both older than 50 ms
    assert.equal(sync.stats.droppedStale, 2);
    assert.equal(sync.push({ camera: 'rear', stampNs: ms(100), data: 1 }), false);
    sync.push({ camera: 'a', stampNs: ms(100), data: 1 });
    sync.push({ camera: 'b', stampNs: ms(101), data: 1 });
    assert.ok(sync.take(ms(101)));
    assert.equal(sync.push({ camera: 'a', stampNs: ms(90), data: 2 }), false); // from the past
    assert.equal(sync.stats.rejected, 2);
  });

  it('a silent camera: wait blocks, partial infers with the views present after the grace period', () => {
    const wait = new FrameSync<number>({ cameras: ['a', 'b', 'c'], slopMs: 5, maxAgeMs: 500, missingCamera: 'wait' });
    const partial = new FrameSync<number>({ cameras: ['a', 'b', 'c'], slopMs: 5, maxAgeMs: 500, missingCamera: 'partial', partialAfterMs: 30 });
    for (const s of [wait, partial]) {
      s.push({ camera: 'a', stampNs: ms(100), data: 1 });
      s.push({ camera: 'c', stampNs: ms(102), data: 1 });
    }
    assert.equal(partial.take(ms(110)), undefined); // still within the grace period
    assert.equal(wait.take(ms(200)), undefined);
    const set = partial.take(ms(140));
    assert.deepEqual(set?.frames.map((f) => f.camera), ['a', 'c']);
    assert.deepEqual(set?.missing, ['b']);
    assert.equal(partial.stats.setsPartial, 1);
  });

  it('refuses bad options with coded errors', () => {
    const bad = (o: object) => assert.throws(() => new FrameSync({ cameras: ['a'], slopMs: 5, maxAgeMs: 10, missingCamera: 'wait', ...o }), (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
    bad({ cameras: [] });
    bad({ cameras: ['a', 'a'] });
    bad({ slopMs: -1 });
    bad({ maxAgeMs: Number.NaN });
    bad({ depth: 0 });
  });
});
