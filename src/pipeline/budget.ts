/**
 * Deadline mode: a controller that sets the token budget T between frames so that the p95
 * sensor-to-publish latency stays under a deadline. It fits latency = a + b T over a window of
 * recent frames and aims the fit at a margin below the deadline; a p95 over the deadline
 * backs off multiplicatively at once, so a sudden slowdown (thermal throttling, a busy GPU) is
 * answered within a frame or two.
 */
import { ErrorCodes, VlaError } from '../util/errors.js';

export interface DeadlineOptions {
  deadlineMs: number;
  minTokens: number;
  maxTokens: number;
  /** Frames in the fit and the p95 (default 30). */
  window?: number;
  /** Aim the fit at this fraction of the deadline (default 0.85). */
  margin?: number;
}

export class DeadlineController {
  private readonly samples: Array<{ tokens: number; latencyMs: number }> = [];
  private tokens: number;
  private readonly window: number;
  private readonly margin: number;

  constructor(private readonly o: DeadlineOptions) {
    if (!(o.deadlineMs > 0)) throw new VlaError(ErrorCodes.PARAMS, 'deadline must be a positive number of ms');
    if (!(o.minTokens >= 1 && o.maxTokens >= o.minTokens)) throw new VlaError(ErrorCodes.PARAMS, 'token range must satisfy 1 <= min <= max');
    this.window = o.window ?? 30;
    this.margin = o.margin ?? 0.85;
    this.tokens = o.maxTokens;
  }

  /** The token budget for the next frame. */
  get budgetTokens(): number {
    return this.tokens;
  }

  /** p95 latency over the window, ms (0 before any sample). */
  get p95Ms(): number {
    if (!this.samples.length) return 0;
    const s = this.samples.map((x) => x.latencyMs).sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)] as number;
  }

  /** Records a finished frame: the budget it ran with and its latency. */
  observe(tokens: number, latencyMs: number): void {
    this.samples.push({ tokens, latencyMs });
    if (this.samples.length > this.window) this.samples.shift();
    const { deadlineMs, minTokens, maxTokens } = this.o;
    let next = this.tokens;
    if (latencyMs > deadlineMs || this.p95Ms > deadlineMs) {
      next = this.tokens * 0.7;
      // forget the slow samples' optimism: keep only the newest few after a back-off
      this.samples.splice(0, Math.max(0, this.samples.length - 5));
    } else {
      const fit = this.fit();
      if (fit && fit.b > 0) next = (this.margin * deadlineMs - fit.a) / fit.b;
      else next = this.tokens * 1.1; // no slope yet: probe upwards gently
      next = Math.min(next, this.tokens * 1.25); // increase slowly, decrease fast
    }
    this.tokens = Math.max(minTokens, Math.min(maxTokens, next));
  }

  /** Least squares latency = a + b * tokens, with the noise absorbed by the upper quantile. */
  private fit(): { a: number; b: number } | undefined {
    const n = this.samples.length;
    if (n < 5) return undefined;
    let sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const { tokens: x, latencyMs: y } of this.samples) {
      sx += x; sy += y; sxx += x * x; sxy += x * y;
    }
    const den = n * sxx - sx * sx;
    if (Math.abs(den) < 1e-9) return undefined;
    const b = (n * sxy - sx * sy) / den;
    let a = (sy - b * sx) / n;
    // shift the line up to the residuals' 95th percentile so the aim covers the noise
    const res = this.samples.map((s) => s.latencyMs - (a + b * s.tokens)).sort((p, q) => p - q);
    a += res[Math.min(n - 1, Math.ceil(0.95 * n) - 1)] as number;
    return { a, b };
  }
}
