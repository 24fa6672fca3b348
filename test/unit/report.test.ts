import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { latencyStats, percentile, renderCharts, renderMarkdown, summaryText, writeReport } from '../../src/replay/report.js';
import type { LatencyStage, ReplayReport, SettingResult } from '../../src/replay/report-types.js';
import { histogram, lineChart, niceTicks, scatterChart } from '../../src/replay/svg.js';

/** Well-formedness without a dependency: every tag closes in order, attributes are quoted. */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  const body = svg.replace(/<\?xml[^>]*\?>/, '');
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m as unknown as [string, string, string, string, string];
    if (self) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes ${stack[stack.length - 1]}`);
    else stack.push(name);
  }
  assert.deepEqual(stack, []);
  // Nothing that looks like a tag was skipped by the pattern above (e.g. an unquoted attribute).
  const tags = body.match(/<[^>]*>/g) ?? [];
  const matched = body.match(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g) ?? [];
  assert.equal(matched.length, tags.length);
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
}

const stages: LatencyStage[] = ['decode', 'tokenize', 'preprocess', 'vision', 'prefill', 'head', 'engine', 'total', 'sensorToPublish'];

function setting(label: string, policy: string, frames: number, scale: number): SettingResult {
  const series = Array.from({ length: frames }, (_, i) => ({
    tS: i * 0.1,
    totalMs: 10 * scale + (i % 7),
    sensorToPublishMs: 30 + i,
    keptMean: 48 * scale,
    mi: 0.5 + (i % 5) * 0.1,
    relFlops: scale,
    l2FinalM: i < frames - 5 ? 1 + i * 0.01 : 0.5,
    l2At3sM: i < frames - 30 ? 1 + i * 0.01 : null,
  }));
  const lat = latencyStats(series.map((s) => s.totalMs));
  return {
    label,
    policy,
    budget: policy === 'none' ? null : 'tokens:24',
    frames: { framesIn: frames * 3, setsInferred: frames, published: frames, droppedStale: 0, droppedSuperseded: 1, failed: 0, badInput: 0 },
    planning: { n: frames, l2At1sM: 0.2 * scale, l2At2sM: 0.5, l2At3sM: frames ? 1.1 : null, adeM: 0.6, fdeM: 1.2 },
    agreementWithNone: { n: frames, adeM: policy === 'none' ? 0 : 0.1, fdeM: 0.2 },
    latency: Object.fromEntries(stages.map((s) => [s, lat])) as Record<LatencyStage, ReturnType<typeof latencyStats>>,
    tokens: {
      visualIn: 48,
      keptMean: 48 * scale,
      keptPerLayerMean: [48, 48 * scale, 40 * scale],
      byComplexity: policy === 'autoprune' ? [{ label: 'low', miMin: 0.5, miMax: 0.6, n: 10, keptPerLayerMean: [48, 20, 10] }, { label: 'high', miMin: 0.8, miMax: 0.9, n: 10, keptPerLayerMean: [48, 30, 20] }] : [],
    },
    compute: { prefillGflopMean: 0.02 * scale, prefillGflopUnprunedMean: 0.02, relFlopsMean: scale, budgetMetFraction: 1 },
    inferenceMs: 100,
    wallMs: 120,
    series,
  };
}

function report(over: Partial<ReplayReport> = {}): ReplayReport {
  return {
    kind: 'autoprune-ros.replay-report',
    version: 1,
    createdAt: '2026-11-23T00:00:00.000Z',
    bag: { path: '/bags/drive', storage: 'mcap', files: ['/bags/drive/drive_0.mcap'], startNs: '1767225600000000000', durationS: 12, messageCount: 1000, topics: [{ name: '/cam', type: 'sensor_msgs/msg/CompressedImage', count: 120 }] },
    model: { path: '/m/tiny', name: 'tiny', cameras: ['front'], params: 235000, backend: 'cpu' },
    config: 'configs/sample-drive.yaml',
    mode: { kind: 'every-set', rate: null },
    messagesRead: 1000,
    wallS: 3.2,
    overheadFraction: 0.031,
    interrupted: false,
    error: null,
    groundTruth: 'odometry /odom',
    settings: [setting('none', 'none', 50, 1), setting('autoprune tokens:24 <&>', 'autoprune', 50, 0.5), setting('fastv tokens:24', 'fastv', 0, 0.5)],
    outputs: { bag: null, trace: null, markdown: '', svgs: [] },
    ...over,
  };
}

describe('replay report', () => {
  it('percentiles are nearest-rank; empty input gives nulls', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.deepEqual(latencyStats(v), { n: 100, meanMs: 50.5, p50Ms: 50, p95Ms: 95, p99Ms: 99, maxMs: 100 });
    assert.deepEqual(latencyStats([]), { n: 0, meanMs: null, p50Ms: null, p95Ms: null, p99Ms: null, maxMs: null });
    assert.equal(percentile([3], 99), 3);
    assert.deepEqual(latencyStats([Number.NaN, 2]).n, 1);
  });

  it('charts are well-formed SVG with one mark per series, escaped labels, no NaN; deterministic', () => {
    const r = report();
    const charts = renderCharts(r);
    assert.deepEqual(charts.map((c) => c.name), ['latency-histogram.svg', 'retention-curve.svg', 'l2-over-time.svg', 'sweep-accuracy-flops.svg']);
    for (const c of charts) assertWellFormed(c.svg);
    const byName = Object.fromEntries(charts.map((c) => [c.name, c.svg]));
    assert.match(byName['latency-histogram.svg'] as string, /autoprune tokens:24 &lt;&amp;&gt;/);
    // Histogram: the empty setting draws nothing; retention: 3 settings + 2 complexity buckets.
    assert.equal(((byName['latency-histogram.svg'] as string).match(/<polyline/g) ?? []).length, 2);
    assert.equal(((byName['retention-curve.svg'] as string).match(/<polyline/g) ?? []).length, 5);
    // L2 over time: the null tail breaks the line, not draws to zero.
    assert.equal(((byName['l2-over-time.svg'] as string).match(/<polyline/g) ?? []).length, 2);
    assert.equal(((byName['sweep-accuracy-flops.svg'] as string).match(/<circle/g) ?? []).length, 2, 'the setting without frames has no point');
    assert.deepEqual(renderCharts(report()), charts);
  });

  it('empty charts say so and stay well-formed', () => {
    for (const svg of [lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [] }), histogram({ title: 't', xLabel: 'x', series: [{ name: 'a', values: [] }] }), scatterChart({ title: 't', xLabel: 'x', yLabel: 'y', points: [{ x: 1, y: null, label: 'a', group: 'g' }] })]) {
      assertWellFormed(svg);
      assert.match(svg, /no data/);
    }
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(5, 5).length > 1, true);
  });

  it('markdown has the settings table, stage tables, charts, and the partial-report warning', () => {
    const md = renderMarkdown(report(), ['latency-histogram.svg']);
    assert.match(md, /\| none \| 50 \| 50 \| 1 \| 0 \| 0\.200 \|/);
    assert.match(md, /### fastv tokens:24/);
    assert.match(md, /!\[Inference latency per frame\]\(latency-histogram\.svg\)/);
    assert.doesNotMatch(md, /Partial report/);
    const partial = renderMarkdown(report({ error: { code: 'VLA_E_BAG_TRUNCATED', message: 'cut', file: '/b/x.mcap', offset: 4096 } }), []);
    assert.match(partial, /Partial report[\s\S]*VLA_E_BAG_TRUNCATED: cut \(file \/b\/x\.mcap, offset 4096\)[\s\S]*Evaluated the 50 frames/);
    assert.match(summaryText(report({ interrupted: true })), /PARTIAL: interrupted/);
  });

  it('writeReport writes json, markdown and charts; report.json reads back equal', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'report-'));
    try {
      const r = report();
      const files = await writeReport(dir, r);
      assert.equal(files.svgs.length, 4);
      const back = JSON.parse(readFileSync(files.json, 'utf8')) as ReplayReport;
      assert.deepEqual(back, JSON.parse(JSON.stringify(r)));
      assert.equal(back.outputs.markdown, files.markdown);
      assert.match(readFileSync(files.markdown, 'utf8'), /# Replay report: drive/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
