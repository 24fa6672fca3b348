/**
 * Approximate-time matching of camera frames into sets, with bounded memory: each camera keeps
 * its last few frames (a ring), the newest complete set within the slop wins, and frames older
 * than the max age are dropped and counted. Pure logic on stamps; the clock is passed in, so
 * the same code runs live, in tests and in bag replay.
 */
import { ErrorCodes, VlaError } from '../util/errors.js';

export type MissingCameraPolicy = 'wait' | 'partial';

export interface FrameSyncOptions {
  /** Camera names in the model's order. */
  cameras: string[];
  /** Largest stamp spread within a set, ms. */
  slopMs: number;
  /** Frames older than this (against the clock) are dropped, ms. */
  maxAgeMs: number;
  /** `wait`: only complete sets; `partial`: after `partialAfterMs` without a complete set, the views present. */
  missingCamera: MissingCameraPolicy;
  /** `partial`: how long the newest frame waits for the others, ms (default slopMs). */
  partialAfterMs?: number;
  /** Frames kept per camera (default 4). */
  depth?: number;
}

export interface StampedFrame<T> {
  camera: string;
  /** Sensor stamp (header.stamp), ns. */
  stampNs: bigint;
  data: T;
}

export interface FrameSet<T> {
  /** In the model's camera order; absent cameras are left out (partial sets). */
  frames: StampedFrame<T>[];
  /** Newest stamp in the set: outputs are stamped with it. */
  stampNs: bigint;
  /** Oldest stamp in the set. */
  oldestNs: bigint;
  missing: string[];
}

export interface FrameSyncStats {
  received: number;
  /** Dropped for age (older than maxAgeMs when they could have been used). */
  droppedStale: number;
  /** Pushed out of a camera's ring, or left behind when a newer set was taken. */
  droppedSuperseded: number;
  /** Rejected: unknown camera, or a stamp older than the camera's last used one. */
  rejected: number;
  setsComplete: number;
  setsPartial: number;
}


export class FrameSync<T> {
  private readonly rings = new Map<string, StampedFrame<T>[]>();
  private readonly lastUsed = new Map<string, bigint>();
  private readonly depth: number;
  private readonly slopNs: bigint;
  private readonly maxAgeNs: bigint;
  private readonly partialNs: bigint;
  /** A frame arrived since the last take() that found nothing: only then can a set have formed. */
  private changed = true;
  readonly stats: FrameSyncStats = { received: 0, droppedStale: 0, droppedSuperseded: 0, rejected: 0, setsComplete: 0, setsPartial: 0 };

  constructor(private readonly opts: FrameSyncOptions) {
    if (opts.cameras.length === 0 || new Set(opts.cameras).size !== opts.cameras.length) {
      throw new VlaError(ErrorCodes.INPUT, 'cameras must be a non-empty list of distinct names');
    }
    for (const [k, v] of [['slopMs', opts.slopMs], ['maxAgeMs', opts.maxAgeMs]] as const) {
      if (!(Number.isFinite(v) && v >= 0)) throw new VlaError(ErrorCodes.INPUT, `${k} must be a non-negative number`);
    }
    this.depth = opts.depth ?? 4;
    if (!Number.isInteger(this.depth) || this.depth < 1 || this.depth > 64) throw new VlaError(ErrorCodes.INPUT, 'depth must be an integer in 1..64');
    this.slopNs = BigInt(Math.round(opts.slopMs * 1e6));
    this.maxAgeNs = BigInt(Math.round(opts.maxAgeMs * 1e6));
    this.partialNs = BigInt(Math.round((opts.partialAfterMs ?? opts.slopMs) * 1e6));
    for (const c of opts.cameras) this.rings.set(c, []);
  }

  /** Adds a frame; returns false (and counts it) when it is not usable. */
  push(frame: StampedFrame<T>): boolean {
    this.stats.received++;
    const ring = this.rings.get(frame.camera);
    const last = this.lastUsed.get(frame.camera);
    if (!ring || (last !== undefined && frame.stampNs <= last)) {
      this.stats.rejected++;
      return false;
    }
    // keep the ring sorted by stamp (out-of-order arrivals happen with several publishers)
    let i = ring.length;
    while (i > 0 && (ring[i - 1] as StampedFrame<T>).stampNs > frame.stampNs) i--;
    ring.splice(i, 0, frame);
    this.changed = true;
    if (ring.length > this.depth) {
      ring.shift();
      this.stats.droppedSuperseded++;
    }
    return true;
  }

  /** Frames currently held (bounded by cameras x depth). */
  get held(): number {
    let n = 0;
    for (const r of this.rings.values()) n += r.length;
    return n;
  }

  /**
   * The newest usable set at `nowNs`, or undefined. Taking a set consumes it and every older
   * frame of its cameras.
   */
  take(nowNs: bigint): FrameSet<T> | undefined {
    this.dropStale(nowNs);
    // Waiting for every camera, no new frame means no new set (the node ticks far more often than frames arrive).
    if (!this.changed && this.opts.missingCamera === 'wait') return undefined;
    const cams = this.opts.cameras;
    // Newest anchor first: each camera's frame nearest the anchor must be within the slop.
    const anchors = [...this.rings.values()].flat().map((f) => f.stampNs).sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    for (const anchor of anchors) {
      const picked: StampedFrame<T>[] = [];
      for (const c of cams) {
        const f = nearest(this.rings.get(c) as StampedFrame<T>[], anchor);
        if (f && abs(f.stampNs - anchor) <= this.slopNs) picked.push(f);
      }
      if (picked.length === cams.length && spread(picked) <= this.slopNs) {
        this.stats.setsComplete++;
        return this.consume(picked, []);
      }
    }
    if (this.opts.missingCamera === 'partial' && anchors.length) {
      const newest = anchors[0] as bigint;
      if (nowNs - newest >= this.partialNs) {
        const picked: StampedFrame<T>[] = [];
        for (const c of cams) {
          const f = nearest(this.rings.get(c) as StampedFrame<T>[], newest);
          if (f && abs(f.stampNs - newest) <= this.slopNs) picked.push(f);
        }
        const missing = cams.filter((c) => !picked.some((f) => f.camera === c));
        this.stats.setsPartial++;
        return this.consume(picked, missing);
      }
    }
    this.changed = false;
    return undefined;
  }

  private consume(picked: StampedFrame<T>[], missing: string[]): FrameSet<T> {
    let newest = (picked[0] as StampedFrame<T>).stampNs;
    let oldest = newest;
    for (const f of picked) {
      if (f.stampNs > newest) newest = f.stampNs;
      if (f.stampNs < oldest) oldest = f.stampNs;
      const ring = this.rings.get(f.camera) as StampedFrame<T>[];
      const idx = ring.indexOf(f);
      this.stats.droppedSuperseded += idx; // older frames of this camera are now useless
      ring.splice(0, idx + 1);
      this.lastUsed.set(f.camera, f.stampNs);
    }
    // cameras left out of a partial set: drop what is older than the set
    for (const c of missing) {
      const ring = this.rings.get(c) as StampedFrame<T>[];
      while (ring.length && (ring[0] as StampedFrame<T>).stampNs < oldest) {
        ring.shift();
        this.stats.droppedSuperseded++;
      }
    }
    const order = new Map(this.opts.cameras.map((c, i) => [c, i]));
    picked.sort((a, b) => (order.get(a.camera) as number) - (order.get(b.camera) as number));
    return { frames: picked, stampNs: newest, oldestNs: oldest, missing };
  }

  private dropStale(nowNs: bigint): void {
    for (const ring of this.rings.values()) {
      while (ring.length && nowNs - (ring[0] as StampedFrame<T>).stampNs > this.maxAgeNs) {
        ring.shift();
        this.stats.droppedStale++;
      }
    }
  }
}

function abs(x: bigint): bigint {
  return x < 0n ? -x : x;
}

function spread<T>(fs: StampedFrame<T>[]): bigint {
  let lo = (fs[0] as StampedFrame<T>).stampNs;
  let hi = lo;
  for (const f of fs) {
    if (f.stampNs < lo) lo = f.stampNs;
    if (f.stampNs > hi) hi = f.stampNs;
  }
  return hi - lo;
}

function nearest<T>(ring: StampedFrame<T>[], t: bigint): StampedFrame<T> | undefined {
  let best: StampedFrame<T> | undefined;
  for (const f of ring) if (!best || abs(f.stampNs - t) < abs(best.stampNs - t) || (abs(f.stampNs - t) === abs(best.stampNs - t) && f.stampNs > best.stampNs)) best = f;
  return best;
}

