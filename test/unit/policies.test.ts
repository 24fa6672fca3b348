import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { isPrunePolicy, PRUNE_POLICIES, PRUNE_POLICY_DESCRIPTIONS, PRUNING_POLICIES } from '../../src/engine/policies.js';
import { main } from '../../src/cli/main.js';
import { parseSweep } from '../../src/replay/replay.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('pruning policies: one list', () => {
  it('the parameter schema enumerates exactly PRUNE_POLICIES, in order', () => {
    const schema = JSON.parse(readFileSync(path.join(root, 'configs', 'autoprune_ros.schema.json'), 'utf8')) as { properties: { pruning_policy: { enum: string[] } } };
    assert.deepEqual(schema.properties.pruning_policy.enum, [...PRUNE_POLICIES]);
  });

  it("the README's policy table has one row per policy, in order", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const start = readme.indexOf('| policy | what it does');
    assert.ok(start >= 0, 'README has no policy table');
    const rows = readme.slice(start).split('\n').slice(2);
    const names = rows.slice(0, rows.findIndex((l) => !l.startsWith('|'))).map((l) => /^\| `([a-z0-9-]+)` \|/.exec(l)?.[1]);
    assert.deepEqual(names, [...PRUNE_POLICIES]);
  });

  it('every policy has a one-line description; the pruning ones exclude none; sweeps take exactly these names', () => {
    for (const p of PRUNE_POLICIES) assert.ok(PRUNE_POLICY_DESCRIPTIONS[p] && !PRUNE_POLICY_DESCRIPTIONS[p].includes('\n'), p);
    assert.deepEqual(Object.keys(PRUNE_POLICY_DESCRIPTIONS), [...PRUNE_POLICIES]);
    assert.deepEqual(PRUNING_POLICIES, PRUNE_POLICIES.slice(1));
    assert.ok(isPrunePolicy('autoprune') && !isPrunePolicy('AutoPrune') && !isPrunePolicy(''));
    assert.deepEqual(parseSweep([`policy=${PRUNE_POLICIES.join(',')}`, 'budget=8']).map((s) => s.policy), [...PRUNE_POLICIES]);
    assert.throws(() => parseSweep(['policy=bogus', 'budget=8']), (e: Error & { code?: string }) => e.code === 'VLA_E_ARGS' && e.message.includes(PRUNE_POLICIES.join(', ')));
  });

  it('the CLI offers exactly these choices and lists them with their descriptions in --help', async () => {
    const out: string[] = [];
    const err: string[] = [];
    assert.equal(await main(['node', 'autoprune-ros', '--help'], { out: (s) => out.push(s), err: (s) => err.push(s) }), 0);
    for (const p of PRUNE_POLICIES) assert.ok(out.join('\n').includes(`  ${p.padEnd(16)} ${PRUNE_POLICY_DESCRIPTIONS[p]}`), p);
    assert.equal(await main(['node', 'autoprune-ros', 'demo', '--policy', 'bogus'], { out: (s) => out.push(s), err: (s) => err.push(s) }), 2);
    assert.match(err.join('\n'), new RegExp(`Allowed choices are ${PRUNE_POLICIES.join(', ')}\\.`));
  });
});
