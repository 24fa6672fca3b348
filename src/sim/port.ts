/**
 * SimPort: the RosPort the node logic sees in the closed loop. An in-memory port on a virtual
 * clock like the replay's, but driven by the simulator's event loop: the loop asks when the
 * node's next timer is due, moves the clock there and fires it, so timers, sensor deliveries,
 * plan completions and physics steps interleave in one exact order. Topic names resolve as
 * ROS 2 resolves them for a node named `nodeName` (`~/x` is `/<node>/x`).
 */
import type { CdrCallback, QosProfile, RosPort } from '../msgs/port.js';
import { resolveTopic, type PublishedRecord } from '../replay/port.js';

interface Timer {
  periodNs: bigint;
  nextNs: bigint;
  cb: () => void;
  seq: number;
}

export class SimPort implements RosPort {
  private clockNs: bigint;
  private readonly subs = new Map<string, Array<{ type: string; cb: CdrCallback }>>();
  private readonly latched = new Map<string, { type: string; cdr: Uint8Array }>();
  private readonly timers = new Set<Timer>();
  private timerSeq = 0;
  onPublish: ((m: PublishedRecord) => void) | undefined;

  constructor(
    startNs: bigint,
    private readonly nodeName = 'autoprune_ros',
  ) {
    this.clockNs = startNs;
  }

  now(): bigint {
    return this.clockNs;
  }

  resolve(name: string): string {
    return resolveTopic(name, this.nodeName);
  }

  subscribe(topic: string, type: string, qos: QosProfile, cb: CdrCallback): () => void {
    const t = this.resolve(topic);
    const list = this.subs.get(t) ?? [];
    const sub = { type, cb };
    list.push(sub);
    this.subs.set(t, list);
    const last = this.latched.get(t);
    if (qos.durability === 'transient_local' && last && last.type === type) cb(last.cdr, this.clockNs);
    return () => {
      const l = this.subs.get(t);
      if (l && l.includes(sub)) l.splice(l.indexOf(sub), 1);
    };
  }

  advertise(topic: string, type: string, qos: QosProfile): (cdr: Uint8Array) => void {
    const t = this.resolve(topic);
    return (cdr) => this.onPublish?.({ topic: t, type, qos, cdr, atNs: this.clockNs });
  }

  timer(periodMs: number, cb: () => void): () => void {
    const periodNs = BigInt(Math.max(1, Math.round(periodMs * 1e6)));
    const t: Timer = { periodNs, nextNs: this.clockNs + periodNs, cb, seq: this.timerSeq++ };
    this.timers.add(t);
    return () => this.timers.delete(t);
  }

  /** When the next timer is due (undefined without timers). */
  nextTimerNs(): bigint | undefined {
    let best: bigint | undefined;
    for (const t of this.timers) if (best === undefined || t.nextNs < best) best = t.nextNs;
    return best;
  }

  /** Moves the clock forward (never back). */
  setClock(ns: bigint): void {
    if (ns > this.clockNs) this.clockNs = ns;
  }

  /** Fires every timer due at the clock, earliest and oldest first. */
  fireDueTimers(): void {
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.timers) {
        if (t.nextNs > this.clockNs) continue;
        if (!next || t.nextNs < next.nextNs || (t.nextNs === next.nextNs && t.seq < next.seq)) next = t;
      }
      if (!next) return;
      next.nextNs += next.periodNs;
      next.cb();
    }
  }

  /** Delivers bytes to the topic's subscribers (latched for late transient-local subscribers when asked). */
  deliver(topic: string, type: string, cdr: Uint8Array, latch = false): void {
    if (latch) this.latched.set(topic, { type, cdr });
    for (const s of [...(this.subs.get(topic) ?? [])]) if (s.type === type) s.cb(cdr, this.clockNs);
  }
}
