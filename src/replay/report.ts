/**
 * Placeholder report renderer (JSON, a short Markdown file and console summary) until the full
 * one with SVG charts lands.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { LatencyStats, ReplayReport } from './report-types.js';

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

export function latencyStats(valuesMs: number[]): LatencyStats {
  const v = valuesMs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { n: 0, meanMs: null, p50Ms: null, p95Ms: null, p99Ms: null, maxMs: null };
  return { n: v.length, meanMs: v.reduce((a, b) => a + b, 0) / v.length, p50Ms: percentile(v, 50), p95Ms: percentile(v, 95), p99Ms: percentile(v, 99), maxMs: v[v.length - 1] as number };
}

const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined ? '–' : v.toFixed(d));

export function summaryText(r: ReplayReport): string {
  const lines = [`bag ${r.bag.path}: ${r.bag.durationS.toFixed(1)} s, ${r.messagesRead} messages read; ${r.mode.kind}; wall ${r.wallS.toFixed(1)} s, overhead ${(100 * r.overheadFraction).toFixed(1)}%`];
  for (const s of r.settings) {
    lines.push(`${s.label}: ${s.frames.published} frames, L2@3s ${f(s.planning.l2At3sM)} m, ADE ${f(s.planning.adeM)} m, FDE ${f(s.planning.fdeM)} m, kept ${s.tokens.keptMean.toFixed(1)}/${s.tokens.visualIn}, FLOPs ${(100 * s.compute.relFlopsMean).toFixed(1)}%, p95 ${f(s.latency.total.p95Ms, 2)} ms`);
  }
  if (r.error) lines.push(`partial: ${r.error.code}: ${r.error.message}`);
  if (r.interrupted) lines.push('partial: interrupted');
  return lines.join('\n');
}

export function renderMarkdown(r: ReplayReport): string {
  return `# Replay report\n\n\`\`\`\n${summaryText(r)}\n\`\`\`\n`;
}

async function atomicWrite(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

export async function writeReport(dir: string, report: ReplayReport): Promise<{ json: string; markdown: string; svgs: string[] }> {
  await mkdir(dir, { recursive: true });
  const markdown = path.resolve(dir, 'report.md');
  report.outputs.markdown = markdown;
  report.outputs.svgs = [];
  await atomicWrite(markdown, renderMarkdown(report));
  const json = path.resolve(dir, 'report.json');
  await atomicWrite(json, JSON.stringify(report, null, 2));
  return { json, markdown, svgs: [] };
}
