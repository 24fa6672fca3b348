// scripts/training-curves.ts: the training.json curves charted, and bad logs refused with a code.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { readTrainingLog, trainingCurvesSvg } from '../../scripts/training-curves.js';
import { ErrorCodes } from '../../src/util/errors.js';

describe('training curves chart', () => {
  let tmp: string;
  before(() => { tmp = mkdtempSync(path.join(os.tmpdir(), 'curves-')); });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('draws one line per model for the loss and the validation L2, with constant velocity for scale', () => {
    const log = (f: number) => ({
      loss_curve: [50, 100, 150].map((step) => ({ step, loss: f / step })),
      val_curve: [{ step: 100, l2_3s_m: 2 * f }, { step: 150, l2_3s_m: f }],
      final: { val: { constant_velocity: { l2_3s_m: 3.5 } } },
    });
    const svg = trainingCurvesSvg([{ name: 'deep', log: log(1) }, { name: 'small', log: log(2) }]);
    assert.equal((svg.loss.match(/<polyline/g) ?? []).length, 2);
    assert.equal((svg.val.match(/<polyline/g) ?? []).length, 2);
    assert.match(svg.loss, /<title>deep<\/title>/);
    assert.match(svg.val, /constant velocity 3\.50 m/);
  });

  it('refuses a missing, unparsable or curve-less training.json with VLA_E_IO', () => {
    assert.throws(() => readTrainingLog(path.join(tmp, 'nowhere')), (e: { code?: string }) => e.code === ErrorCodes.IO);
    const bad = path.join(tmp, 'bad.json');
    writeFileSync(bad, '{"loss_curve": [');
    assert.throws(() => readTrainingLog(bad), (e: { code?: string; message: string }) => e.code === ErrorCodes.IO && /not a readable training log/.test(e.message));
    writeFileSync(bad, JSON.stringify({ loss_curve: [{ step: 1, loss: 'x' }], val_curve: [] }));
    assert.throws(() => readTrainingLog(bad), (e: { code?: string; message: string }) => e.code === ErrorCodes.IO && /loss_curve/.test(e.message));
  });
});
