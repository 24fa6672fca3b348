// The CLI as people meet it, on the real engine: --version, mistyped commands, --budget alone,
// --speed, timed repeats, replay's early failures and bundled config, rate mode, log lines.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { main } from '../../src/cli/main.js';
import type { ReplayReport } from '../../src/replay/report-types.js';
import { makeSampleDrive } from '../../src/sample/drive.js';
import { requireBuilt, requireBuiltCli, root, testModels } from './helpers.js';

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'autoprune-ros', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const sample = (cam: string) => path.join(root, 'assets', 'sample', `${cam}.jpg`);
const readReport = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as ReplayReport;

describe('the CLI for people (addon, tiny model)', function () {
  this.timeout(120_000);
  const tiny = path.join(testModels, 'tiny');
  let tmp: string;
  let drive: string;

  before(async () => {
    requireBuilt();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'cli-ux-'));
    drive = path.join(tmp, 'drive');
    await makeSampleDrive(drive, { durationS: 5 });
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--version prints the package version', async () => {
    const r = await cli('--version');
    assert.equal(r.code, 0);
    assert.equal(r.out, (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version);
  });

  it('a mistyped command says so (not "too many arguments for quickstart"), and nothing runs', async () => {
    for (const [typo, hint] of [['runn', /unknown command 'runn'; the commands: /], ['replya', /unknown command 'replya' \(did you mean 'replay'\?\)/]] as const) {
      const r = await cli(typo, '--out', path.join(tmp, 'typo'));
      assert.equal(r.code, 2);
      assert.match(r.err, new RegExp(`^VLA_E_ARGS: ${hint.source}`));
      assert.equal(r.err.split('\n').length, 1, 'one line');
    }
    assert.equal(existsSync(path.join(tmp, 'typo')), false);
    assert.match((await cli('-v', '-q', 'demo')).err, /^VLA_E_ARGS: --verbose and --quiet exclude each other/);
  });

  it('infer: --budget alone prunes with AutoPrune; --policy none --budget is refused', async () => {
    const args = ['infer', '--model', tiny, '--image', `front=${sample('front')}`, '--instruction', 'keep lane', '--json', '--warmup', '0'];
    let r = await cli(...args, '--budget', 'tokens:8');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { prune: { policy: string; budget: { kind: string; value: number } } };
    assert.equal(j.prune.policy, 'autoprune');
    assert.deepEqual(j.prune.budget, { kind: 'tokens', value: 8 });
    r = await cli(...args, '--policy', 'none', '--budget', 'tokens:8');
    assert.equal(r.code, 2);
    assert.match(r.err, /^VLA_E_ARGS: --policy none prunes nothing and takes no --budget/);
  });

  it('infer --speed puts the ego speed into the prompt as the node does; the plan changes with it', async () => {
    const args = ['infer', '--model', tiny, '--image', `front=${sample('front')}`, '--instruction', 'keep lane', '--json', '--warmup', '0'];
    const slow = JSON.parse((await cli(...args, '--speed', '2')).out) as { instruction: string; waypoints: Array<{ x: number }>; tokens: { text: number } };
    const fast = JSON.parse((await cli(...args, '--speed', '12.5')).out) as typeof slow;
    const none = JSON.parse((await cli(...args)).out) as typeof slow;
    assert.equal(slow.instruction, 'keep lane (ego speed 2.0 m/s)');
    assert.equal(fast.instruction, 'keep lane (ego speed 12.5 m/s)');
    assert.equal(none.instruction, 'keep lane');
    assert.ok(fast.tokens.text > none.tokens.text);
    assert.notDeepEqual(slow.waypoints, fast.waypoints);
    assert.match((await cli(...args, '--speed', 'fast')).err, /^VLA_E_ARGS: --speed must be a number/);
  });

  it('infer --repeat N --warmup W: per-stage median and p90 over N timed runs', async () => {
    const base = ['infer', '--model', tiny, '--image', `front=${sample('front')}`, '--instruction', 'keep lane'];
    let r = await cli(...base, '--json', '--repeat', '5', '--warmup', '2');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { timings: { totalMs: number }; timingStats: { runs: number; warmup: number; stages: Record<string, { medianMs: number; p90Ms: number; minMs: number; maxMs: number }> } };
    assert.equal(j.timingStats.runs, 5);
    assert.equal(j.timingStats.warmup, 2);
    const t = j.timingStats.stages.totalMs as { medianMs: number; p90Ms: number; minMs: number; maxMs: number };
    assert.ok(t.minMs <= t.medianMs && t.medianMs <= t.p90Ms && t.p90Ms <= t.maxMs);
    assert.equal(j.timings.totalMs, t.medianMs);
    r = await cli(...base, '--repeat', '3');
    assert.match(r.out, /timings \[ms\] over 3 runs after 1 warm-up run:\n {2}stage +median +p90 +min +max\n {2}decode /);
    r = await cli(...base, '--repeat', '0');
    assert.equal(r.code, 2);
  });

  it('replay of a missing path fails before the model loads and writes nothing', async () => {
    const out = path.join(tmp, 'missing-out');
    // a model that does not exist either: the bag is checked first, so the error names the bag
    const r = await cli('replay', path.join(tmp, 'no-such-bag'), '--model', path.join(tmp, 'no-such-model'), '--out', out);
    assert.equal(r.code, 1);
    assert.match(r.err, /^VLA_E_IO: .*no-such-bag: no such bag/);
    assert.equal(r.err.split('\n').length, 1);
    assert.equal(existsSync(out), false);
  });

  it('replay without --config takes the bundled config whose camera topics are in the bag', async () => {
    const out = path.join(tmp, 'auto-config');
    const r = await cli('replay', drive, '--model', tiny, '--out', out, '--policy', 'none', '--no-progress', '--no-bag', '--no-trace');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /^config: .*configs\/sample-drive\.yaml \(its camera topics are the bag's/);
    assert.equal(readReport(out).config, path.join(root, 'configs', 'sample-drive.yaml'));
    assert.equal(readReport(out).settings[0]?.frames.published, 50);
  });

  it('replay without --config of a bag no bundled config fits: one coded error naming the missing topics, nothing written', async () => {
    const out = path.join(tmp, 'talker-out');
    const r = await cli('replay', path.join(root, 'test', 'fixtures', 'rosbag2', 'talker-mcap'), '--model', tiny, '--out', out);
    assert.equal(r.code, 1);
    assert.match(r.err, /^VLA_E_INPUT: .*talker-mcap: no --config given/);
    assert.match(r.err, /configs\/sample-drive\.yaml: missing \/sensing\/camera\/front\/image\/compressed/);
    assert.equal(existsSync(out), false);
  });

  it('--rate: no "overhead beyond inference" figure (the wall clock is the bag\'s); frames dropped are printed', async () => {
    const out = path.join(tmp, 'rate');
    const r = await cli('replay', drive, '--model', tiny, '--out', out, '--policy', 'none', '--rate', '4', '--no-progress', '--no-bag', '--no-trace');
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.out, /overhead/);
    assert.match(r.out, /rate ×4, wall [\d.]+ s \(rate mode: the wall clock follows the bag\)/);
    assert.match(r.out, /setting +frames +dropped +L2@1s/);
    const rep = readReport(out);
    assert.equal(rep.overheadFraction, null);
    assert.doesNotMatch(readFileSync(path.join(out, 'report.md'), 'utf8'), /overhead/);
    const s = rep.settings[0] as ReplayReport['settings'][number];
    assert.equal(s.latencyWarmupFrames, 1);
    assert.equal(s.latency.total.n, s.series.length - 1, 'the warm-up frame is left out of the latency figures');
  });

  it('--baseline: the constant-velocity planner is a row of the summary, a part of the report and a line in its charts', async () => {
    const out = path.join(tmp, 'baseline');
    const r = await cli('replay', drive, '--model', tiny, '--out', out, '--sweep', 'policy=none,autoprune', 'budget=8', '--baseline', '--no-progress', '--no-bag', '--no-trace');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\nconstant velocity +50 +– +[\d.]+ /);
    const rep = readReport(out);
    assert.equal(rep.constantVelocity?.frames.published, 50);
    for (const chart of ['l2-over-time.svg', 'trajectory-3s.svg', 'sweep-accuracy-flops.svg']) assert.match(readFileSync(path.join(out, chart), 'utf8'), /constant velocity/, chart);
  });

  it('replay --sweep with a budget share out of (0%, 100%]: VLA_E_ARGS before the model loads, nothing written', async () => {
    for (const share of ['0%', '150%']) {
      const out = path.join(tmp, `bad-share-${share.replace('%', '')}`);
      const r = await cli('replay', drive, '--model', tiny, '--out', out, '--sweep', 'policy=autoprune', `budget=${share}`, '--no-progress', '--no-bag', '--no-trace');
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, /VLA_E_ARGS: --sweep: budget share/);
      assert.equal(existsSync(out), false, 'nothing written');
    }
  });

  describe('log lines and errors on stderr (built CLI)', () => {
    const bin = path.join(root, 'bin', 'autoprune-ros.js');
    before(function () {
      requireBuiltCli();
    });
    const run = (args: string[], env: Record<string, string> = {}) => {
      const { LOG_LEVEL: _l, LOG_FORMAT: _f, ...rest } = process.env;
      return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...rest, ...env }, timeout: 60_000 });
    };

    it('a bag error mid-replay is printed once, as the CLI error; pretty log lines are one readable line each', () => {
      const bad = path.join(tmp, 'truncated');
      cpSync(drive, bad, { recursive: true });
      const mcap = readdirSync(bad).find((f) => f.endsWith('.mcap')) as string;
      const f = path.join(bad, mcap);
      writeFileSync(f, readFileSync(f).subarray(0, Math.floor(statSync(f).size * 0.6)));
      const p = run(['--log-format', 'pretty', 'replay', bad, '--model', tiny, '--out', path.join(tmp, 'truncated-out'), '--policy', 'none', '--no-bag', '--no-trace']);
      assert.equal(p.status, 1, p.stderr);
      assert.equal(p.stderr.split('VLA_E_BAG_TRUNCATED').length - 1, 1, p.stderr);
      assert.match(p.stderr, /^VLA_E_BAG_TRUNCATED: /m);
      assert.match(p.stderr, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: engine: model loaded \{/m);
      assert.doesNotMatch(p.stderr, /^\{"level"/m);
    });

    it('--log-format json (the default off a terminal) writes one JSON object per log line; --quiet keeps info lines out', () => {
      const args = ['demo', '--json', '--warmup', '0'];
      let p = run(args);
      assert.equal(p.status, 0, p.stderr);
      const lines = p.stderr.trim().split('\n');
      assert.ok(lines.length >= 1);
      for (const l of lines) assert.equal(typeof (JSON.parse(l) as { msg: string }).msg, 'string');
      p = run(['--quiet', ...args]);
      assert.equal(p.status, 0, p.stderr);
      assert.doesNotMatch(p.stderr, /"level":30/);
      p = run(['--verbose', ...args]);
      assert.match(p.stderr, /"level":20/);
      p = run(args, { LOG_LEVEL: 'warn' });
      assert.doesNotMatch(p.stderr, /"level":30/);
    });
  });
});
