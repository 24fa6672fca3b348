/**
 * The fuzz harness in the test run (issue 16): first its own checks (a hang, an allocation bomb,
 * a read of the canary, an uncoded error and a crash must each be a finding), then a short seeded
 * run over every target, which must find nothing. FUZZ_SECONDS and FUZZ_SEED change the run;
 * `npm run fuzz -- --seconds 600` is the long one.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';

import { runFuzz, type FuzzSummary } from '../fuzz/harness.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 10);
const SEED = Number(process.env.FUZZ_SEED ?? 16);

describe('fuzz harness (issue 16)', function () {
  this.timeout(120_000);
  const findingsDir = path.join(os.tmpdir(), `fuzz-findings-${process.pid}`);

  it('finds what it is there to find: a hang, an allocation bomb, the canary read, an uncoded error, a crash', async () => {
    const s = await runFuzz({ seconds: 0, seed: 1, selfTest: true, targets: ['cdr'], timeoutMs: 20000, memoryMiB: 250, findingsDir });
    assert.deepEqual(s.findings.map((f) => f.kind), ['timeout', 'memory', 'canary opened', 'uncoded', 'crash']);
  });

  it(`${SECONDS} s of seeded hostile cases over every target (seed ${SEED}): a result or a coded error, in bounds, inputs untouched, the canary never opened`, async () => {
    const s: FuzzSummary = await runFuzz({ seconds: SECONDS, seed: SEED, findingsDir });
    for (const why of s.skipped) console.log(`      skipped: ${why}`);
    const per = Object.entries(s.byTarget).map(([t, b]) => `${t} ${b.cases} (${b.ok} ok, ${b.coded} coded)`).join(', ');
    console.log(`      ${s.cases} cases in ${s.seconds.toFixed(1)} s: ${per}`);
    // (a loaded machine runs fewer; every target still gets its turns)
    assert.equal(Object.keys(s.byTarget).length + s.skipped.length, 7, per);
    assert.ok(Object.values(s.byTarget).every((b) => b.cases >= 2), per);
    assert.deepEqual(s.findings.map((f) => `${f.target} ${f.seed} ${f.kind}: ${f.detail.split('\n')[0]} (${f.note}) -> ${f.kept}`), []);
  });
});
