/**
 * RosPort: the only surface the node logic sees of ROS. It carries raw CDR bytes, so the same
 * logic runs over rclnodejs (live), in memory with a virtual clock (tests) and over a bag
 * (replay). Nothing here imports rclnodejs.
 */
export interface QosProfile {
  reliability: 'reliable' | 'best_effort';
  durability: 'volatile' | 'transient_local';
  depth: number;
}

export const QOS_SENSOR_DATA: QosProfile = { reliability: 'best_effort', durability: 'volatile', depth: 5 };
export const QOS_LATCHED: QosProfile = { reliability: 'reliable', durability: 'transient_local', depth: 1 };
export const QOS_DEFAULT: QosProfile = { reliability: 'reliable', durability: 'volatile', depth: 10 };

export type CdrCallback = (cdr: Uint8Array, receivedNs: bigint) => void;

export interface RosPort {
  /** The node's clock, ns (ROS time; a bag's time in replay; virtual in tests). */
  now(): bigint;
  subscribe(topic: string, type: string, qos: QosProfile, cb: CdrCallback): () => void;
  advertise(topic: string, type: string, qos: QosProfile): (cdr: Uint8Array) => void;
  /** Calls cb every periodMs of the port's clock; returns a cancel function. */
  timer(periodMs: number, cb: () => void): () => void;
  /** The topic a name resolves to after expansion and remapping, where the port knows it (optional). */
  resolve?(name: string): string;
}

interface Sub {
  type: string;
  cb: CdrCallback;
}

export interface PublishedMessage {
  topic: string;
  type: string;
  cdr: Uint8Array;
  atNs: bigint;
}

/**
 * In-memory port with a virtual clock: tests publish with inject(), advance time with
 * advance(), and read what the node published from `published` (or a listener).
 */
export class InMemoryPort implements RosPort {
  private clockNs: bigint;
  private readonly subs = new Map<string, Sub[]>();
  private readonly latched = new Map<string, { type: string; cdr: Uint8Array }>();
  private readonly timers = new Set<{ periodNs: bigint; nextNs: bigint; cb: () => void }>();
  readonly published: PublishedMessage[] = [];
  /** Keep at most this many published messages (oldest dropped) so soak tests stay flat. */
  keepPublished = 100_000;
  onPublish: ((m: PublishedMessage) => void) | undefined;

  constructor(startNs = 0n) {
    this.clockNs = startNs;
  }

  now(): bigint {
    return this.clockNs;
  }

  subscribe(topic: string, type: string, qos: QosProfile, cb: CdrCallback): () => void {
    const list = this.subs.get(topic) ?? [];
    const sub = { type, cb };
    list.push(sub);
    this.subs.set(topic, list);
    const last = this.latched.get(topic);
    if (qos.durability === 'transient_local' && last && last.type === type) cb(last.cdr, this.clockNs);
    return () => {
      const l = this.subs.get(topic);
      if (l) l.splice(l.indexOf(sub), 1);
    };
  }

  advertise(topic: string, type: string): (cdr: Uint8Array) => void {
    return (cdr) => {
      const m = { topic, type, cdr, atNs: this.clockNs };
      this.published.push(m);
      if (this.published.length > this.keepPublished) this.published.splice(0, this.published.length - this.keepPublished);
      this.onPublish?.(m);
    };
  }

  timer(periodMs: number, cb: () => void): () => void {
    const periodNs = BigInt(Math.max(1, Math.round(periodMs * 1e6)));
    const t = { periodNs, nextNs: this.clockNs + periodNs, cb };
    this.timers.add(t);
    return () => this.timers.delete(t);
  }

  /** Delivers bytes to the topic's subscribers, as a publisher would (latched for transient-local). */
  inject(topic: string, type: string, cdr: Uint8Array, latch = false): void {
    if (latch) this.latched.set(topic, { type, cdr });
    for (const s of [...(this.subs.get(topic) ?? [])]) if (s.type === type) s.cb(cdr, this.clockNs);
  }

  /** Moves the clock forward, firing timers in order. */
  advance(ms: number): void {
    const end = this.clockNs + BigInt(Math.round(ms * 1e6));
    for (;;) {
      let next: { periodNs: bigint; nextNs: bigint; cb: () => void } | undefined;
      for (const t of this.timers) if (t.nextNs <= end && (!next || t.nextNs < next.nextNs)) next = t;
      if (!next) break;
      this.clockNs = next.nextNs;
      next.nextNs += next.periodNs;
      next.cb();
    }
    this.clockNs = end;
  }
}
