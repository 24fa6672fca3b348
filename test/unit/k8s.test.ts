/** The Kubernetes manifests of deploy/k8s stay consistent with each other and with the CLI. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parse } from 'yaml';

import { resolveShareBudgets } from '../../src/cli/evaluate.js';
import { parseSweep } from '../../src/replay/replay.js';
import { parseLatency } from '../../src/sim/latency.js';

const dir = path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..'), 'deploy', 'k8s');
const load = (f: string) => parse(readFileSync(path.join(dir, f), 'utf8')) as Record<string, any>;

describe('deploy/k8s: the sweep as an Indexed Job', () => {
  const job = load('drive-sweep-job.yaml');
  const merge = load('merge-job.yaml');
  const pvc = load('results-pvc.yaml');
  const container = job.spec.template.spec.containers[0];
  const script = String(container.args[0]);

  it('one pod per shard, each taking its shard from the completion index', () => {
    assert.equal(job.kind, 'Job');
    assert.equal(job.spec.completionMode, 'Indexed');
    assert.equal(job.spec.parallelism, job.spec.completions);
    const m = /--shard "\$\{JOB_COMPLETION_INDEX\}\/(\d+)"/.exec(script);
    assert.ok(m, script);
    assert.equal(Number(m[1]), job.spec.completions, 'the shard count must equal spec.completions');
    assert.match(script, /--out "\/results\/shard-\$\{JOB_COMPLETION_INDEX\}"/);
    assert.equal(job.spec.template.spec.restartPolicy, 'Never');
  });

  it('the drive arguments are ones the CLI takes', () => {
    const sweep = /--sweep (.*?) --/.exec(script.replace(/\s+/g, ' '))?.[1]?.split(' ') ?? [];
    assert.ok(sweep.length >= 1);
    assert.ok(parseSweep(resolveShareBudgets(sweep, 147)).length > 1);
    const latency = /--latency (\S+)/.exec(script)?.[1] ?? '';
    assert.doesNotThrow(() => parseLatency(latency));
    assert.match(script, /^exec autoprune-ros drive /);
  });

  it('the merge reads every shard from the same volume', () => {
    assert.match(String(merge.spec.template.spec.containers[0].args[0]), /^exec autoprune-ros merge \/results\/shard-\* --out \/results\/merged$/);
    const claim = (j: Record<string, any>) => j.spec.template.spec.volumes[0].persistentVolumeClaim.claimName;
    assert.equal(claim(job), pvc.metadata.name);
    assert.equal(claim(merge), pvc.metadata.name);
    assert.deepEqual(pvc.spec.accessModes, ['ReadWriteMany']);
  });
});
