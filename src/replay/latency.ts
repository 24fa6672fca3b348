/**
 * Latency figures that can be trusted: the first inference of a run (page faults, cold caches,
 * lazy allocation) is left out of the statistics, and a comparison between two settings comes
 * with a caveat when their per-frame distributions overlap, that is when the machine's noise is
 * as large as the difference. Settings replay one after another, so a change in the machine's
 * load between them is noise this cannot see; the caveat says so.
 */

import type { LatencyStats } from './report-types.js';

/** Frames at the start of each setting's run left out of its latency figures. */
export const LATENCY_WARMUP_FRAMES = 1;

/** Nearest-rank percentile of an ascending array (p in 0..100): always a value that occurred. */
export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

export function latencyStats(valuesMs: readonly number[]): LatencyStats {
  const v = valuesMs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { n: 0, meanMs: null, p50Ms: null, p95Ms: null, p99Ms: null, maxMs: null };
  return { n: v.length, meanMs: v.reduce((a, b) => a + b, 0) / v.length, p50Ms: percentile(v, 50), p95Ms: percentile(v, 95), p99Ms: percentile(v, 99), maxMs: v[v.length - 1] as number };
}

/** The values after the warm-up frames (all of them when there are no more than that). */
export function afterWarmup(values: readonly number[], warmup = LATENCY_WARMUP_FRAMES): number[] {
  return values.length > warmup ? values.slice(warmup) : [...values];
}

export interface Spread {
  n: number;
  p25Ms: number;
  medianMs: number;
  p75Ms: number;
}

export function spreadOf(values: readonly number[]): Spread | null {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return null;
  return { n: v.length, p25Ms: percentile(v, 25), medianMs: percentile(v, 50), p75Ms: percentile(v, 75) };
}

/** Fewer frames than this and a median says little: no comparison is offered. */
const MIN_FRAMES = 5;

/**
 * Settings whose latency cannot be told apart from the reference's on this run: their
 * interquartile ranges overlap, so the medians differ by less than the frame-to-frame noise.
 * Returns one sentence per such setting (empty when every difference stands out of the noise).
 */
export function latencyCaveats(reference: { label: string; spread: Spread | null }, others: ReadonlyArray<{ label: string; spread: Spread | null }>): string[] {
  const ref = reference.spread;
  if (!ref || ref.n < MIN_FRAMES) return [];
  const out: string[] = [];
  for (const o of others) {
    const s = o.spread;
    if (!s || s.n < MIN_FRAMES || o.label === reference.label) continue;
    const overlap = s.p25Ms <= ref.p75Ms && ref.p25Ms <= s.p75Ms;
    if (!overlap) continue;
    out.push(
      `${o.label}: median ${s.medianMs.toFixed(2)} ms against ${ref.medianMs.toFixed(2)} ms for ${reference.label}, within the frame-to-frame noise ` +
        `(interquartile ranges ${s.p25Ms.toFixed(2)}–${s.p75Ms.toFixed(2)} and ${ref.p25Ms.toFixed(2)}–${ref.p75Ms.toFixed(2)} ms overlap): this run cannot tell their speed apart`,
    );
  }
  return out;
}

/** What a reader of a latency comparison should know about how it was measured. */
export const LATENCY_NOTE = `medians after ${LATENCY_WARMUP_FRAMES} warm-up frame per setting; settings run one after another, so a change in the machine's load between them is not seen as noise: compare on a quiet machine, and rerun to check that the order holds`;
