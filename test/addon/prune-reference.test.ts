// The engine's pruning against an independent float64 re-implementation of docs/autoprune.md
// (tools/reference/prune_ref.py), on the tiny test models and the bundled drive model with real
// frames: every policy the reference reproduces x token budgets 33/22/11 % x option sets
// (defaults, recycling, scoring rows, parity, re-indexed positions, a calibrated slope, explicit
// PDrop stage layers, some of which the tiny models refuse), and FLOPs caps. Skipped only without /usr/bin/python3 and numpy. The larger grid: npx tsx scripts/prune-reference.ts --grid full
import assert from 'node:assert/strict';

import { check, pythonProblem, TOL } from '../../scripts/prune-reference.js';
import { requireBuilt } from './helpers.js';

describe('pruning against the independent float64 reference (addon, cpu)', function () {
  this.timeout(300_000);

  it('keeps the same tokens at every layer, with MI_0, MI_1, k and the waypoints within tolerance', async function () {
    requireBuilt();
    const why = pythonProblem();
    if (why) {
      process.stdout.write(`      skipped: ${why} (apt-get install python3-numpy)\n`);
      this.skip();
    }
    const s = await check('quick');
    process.stdout.write(`      ${s.agree} of ${s.runs} runs agree (${s.bothRefused} budgets refused by both); kept indices compared in ${s.indicesCompared}; ` +
      `max relative MI_0 ${s.max.mi0.toExponential(2)}, MI_1 ${s.max.mi1.toExponential(2)}, k ${s.max.k.toExponential(2)} (tolerance ${TOL.mi}); ` +
      `max waypoint difference ${s.max.waypoints_m.toExponential(2)} m (tolerance ${TOL.waypoints_m})\n`);
    assert.deepEqual(s.disagreements.slice(0, 10), [], `${s.disagreements.length} of ${s.runs} runs disagree`);
    // every run that pruned compared its kept indices, and the grid is not mostly refusals
    assert.equal(s.indicesCompared, s.runs - s.bothRefused);
    assert.ok(s.runs >= 400 && s.bothRefused < s.runs / 4, JSON.stringify(s));
  });
});
