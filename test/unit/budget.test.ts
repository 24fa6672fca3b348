import assert from 'node:assert/strict';

import { DeadlineController } from '../../src/pipeline/budget.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

function simulate(ctrl: DeadlineController, frames: number, cost: (t: number, k: number) => number): number[] {
  const lat: number[] = [];
  for (let k = 0; k < frames; k++) {
    const t = ctrl.budgetTokens;
    const l = cost(t, k);
    lat.push(l);
    ctrl.observe(t, l);
  }
  return lat;
}

const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(0.95 * xs.length) - 1] as number;

describe('DeadlineController', () => {
  let seed = 3;
  const noise = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff - 0.5) * 4; // +-2 ms

  it('keeps the p95 latency under the deadline with a linear cost and noise, using most of the budget', () => {
    const ctrl = new DeadlineController({ deadlineMs: 50, minTokens: 8, maxTokens: 576 });
    const lat = simulate(ctrl, 400, (t) => 12 + 0.1 * t + noise());
    const settled = lat.slice(100);
    assert.ok(p95(settled) <= 50, `p95 ${p95(settled)}`);
    assert.ok(ctrl.budgetTokens > 250, `budget ${ctrl.budgetTokens}`); // (0.85 * 50 - 12) / 0.1 = 305 minus noise
  });

  it('backs off within a few frames when the machine slows down, and recovers', () => {
    const ctrl = new DeadlineController({ deadlineMs: 50, minTokens: 8, maxTokens: 576 });
    const lat = simulate(ctrl, 600, (t, k) => (k >= 200 && k < 400 ? 20 + 0.2 * t : 12 + 0.1 * t) + noise());
    assert.ok(p95(lat.slice(220, 400)) <= 50, `slow phase p95 ${p95(lat.slice(220, 400))}`);
    assert.ok(lat.slice(200, 400).filter((l) => l > 50).length <= 12, 'few misses while adapting');
    assert.ok(p95(lat.slice(450)) <= 50);
    assert.ok(ctrl.budgetTokens > 250, 'recovers the budget');
  });

  it('stays at the minimum when even that misses, and refuses bad options', () => {
    const ctrl = new DeadlineController({ deadlineMs: 5, minTokens: 8, maxTokens: 576 });
    simulate(ctrl, 50, () => 30);
    assert.equal(ctrl.budgetTokens, 8);
    assert.throws(() => new DeadlineController({ deadlineMs: 0, minTokens: 1, maxTokens: 2 }), (e) => e instanceof VlaError && e.code === ErrorCodes.PARAMS);
    assert.throws(() => new DeadlineController({ deadlineMs: 5, minTokens: 10, maxTokens: 2 }), (e) => e instanceof VlaError && e.code === ErrorCodes.PARAMS);
  });
});
