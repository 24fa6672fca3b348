/**
 * ReplayPort: the RosPort the node logic sees during bag replay. Its clock is the bag's time:
 * the replay moves it to each message's log time (firing the node's timers on the way, in
 * order) and then delivers the message, exactly as a live subscription would. Topic names are
 * resolved like ROS 2 does for a node named `nodeName` in the root namespace (`~/x` becomes
 * `/<node>/x`, `x` becomes `/x`), then remapped.
 */
import type { CdrCallback, QosProfile, RosPort } from '../msgs/port.js';

export interface PublishedRecord {
  /** Resolved topic name. */
  topic: string;
  type: string;
  qos: QosProfile;
  cdr: Uint8Array;
  atNs: bigint;
}

interface Timer {
  periodNs: bigint;
  nextNs: bigint;
  cb: () => void;
  seq: number;
}

export function resolveTopic(name: string, nodeName: string, remaps: ReadonlyMap<string, string> = new Map()): string {
  let full = name;
  if (name === '~') full = `/${nodeName}`;
  else if (name.startsWith('~/')) full = `/${nodeName}/${name.slice(2)}`;
  else if (!name.startsWith('/')) full = `/${name}`;
  return remaps.get(full) ?? remaps.get(name) ?? full;
}

/**
 * The most times one timer fires in one advanceTo. Between two messages nothing new reaches the
 * node, so firing a timer more often changes nothing; past this many firings the timer skips to
 * its last period before the target (as rcl's timers do after a clock jump) and fires once there.
 * This bounds the work of a gap in the bag (a far-future timestamp) or of a tiny tick_ms.
 */
export const MAX_FIRINGS_PER_ADVANCE = 1000;
/** Firings between yields to the event loop (so that signals, Ctrl-C, are handled). */
const FIRINGS_PER_YIELD = 4096;

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

export class ReplayPort implements RosPort {
  private clockNs: bigint;
  /** Whether the clock has been set (the constructor's start, or the first advanceTo). */
  private started: boolean;
  private firings = 0;
  private readonly subs = new Map<string, Array<{ type: string; cb: CdrCallback }>>();
  private readonly timers = new Set<Timer>();
  private timerSeq = 0;
  /** What the node advertised: resolved topic -> type and QoS (for the output bag). */
  readonly advertised = new Map<string, { type: string; qos: QosProfile }>();
  onPublish: ((m: PublishedRecord) => void) | undefined;

  /**
   * `startNs` undefined: the clock starts just before the first time it is advanced to (the
   * first message's log time), whatever metadata.yaml says the bag's start is; timers created
   * before then count their first period from there.
   */
  constructor(
    startNs: bigint | undefined,
    private readonly nodeName = 'autoprune_ros',
    private readonly remaps: ReadonlyMap<string, string> = new Map(),
  ) {
    this.clockNs = startNs ?? 0n;
    this.started = startNs !== undefined;
  }

  now(): bigint {
    return this.clockNs;
  }

  resolve(name: string): string {
    return resolveTopic(name, this.nodeName, this.remaps);
  }

  /** Resolved topics the node subscribed to, with the type each expects. */
  subscriptions(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [topic, list] of this.subs) if (list.length) out.set(topic, list.map((s) => s.type));
    return out;
  }

  subscribe(topic: string, type: string, _qos: QosProfile, cb: CdrCallback): () => void {
    const t = this.resolve(topic);
    const list = this.subs.get(t) ?? [];
    const sub = { type, cb };
    list.push(sub);
    this.subs.set(t, list);
    return () => {
      const l = this.subs.get(t);
      if (l && l.includes(sub)) l.splice(l.indexOf(sub), 1);
    };
  }

  advertise(topic: string, type: string, qos: QosProfile): (cdr: Uint8Array) => void {
    const t = this.resolve(topic);
    this.advertised.set(t, { type, qos });
    return (cdr) => this.onPublish?.({ topic: t, type, qos, cdr, atNs: this.clockNs });
  }

  timer(periodMs: number, cb: () => void): () => void {
    const periodNs = BigInt(Math.max(1, Math.round(periodMs * 1e6)));
    const t: Timer = { periodNs, nextNs: this.clockNs + periodNs, cb, seq: this.timerSeq++ };
    this.timers.add(t);
    return () => this.timers.delete(t);
  }

  /** The next timer due at or before endNs (earliest, then in creation order), if any. */
  private nextDue(endNs: bigint): Timer | undefined {
    let next: Timer | undefined;
    for (const t of this.timers) {
      if (t.nextNs > endNs) continue;
      if (!next || t.nextNs < next.nextNs || (t.nextNs === next.nextNs && t.seq < next.seq)) next = t;
    }
    return next;
  }

  /**
   * Moves the clock to endNs (never backwards), firing due timers in order. `afterTimer` runs
   * after each timer: in every-set mode it waits for an inference the timer started, so the
   * bag's clock stands still while the model runs and no set is dropped for being busy.
   */
  async advanceTo(endNs: bigint, afterTimer?: () => Promise<void> | undefined): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.clockNs = endNs - 1n;
      for (const t of this.timers) t.nextNs = this.clockNs + t.periodNs;
    }
    if (endNs <= this.clockNs) return;
    let fired: Map<Timer, number> | undefined; // made on the first firing: most messages fire none
    for (;;) {
      const t = this.nextDue(endNs);
      if (!t) break;
      fired ??= new Map();
      const n = (fired.get(t) ?? 0) + 1;
      fired.set(t, n);
      if (n === MAX_FIRINGS_PER_ADVANCE + 1) {
        // Skip to the timer's last period at or before endNs, and fire it there once.
        t.nextNs += ((endNs - t.nextNs) / t.periodNs) * t.periodNs;
        if (this.nextDue(endNs) !== t) continue;
      }
      this.clockNs = t.nextNs;
      t.nextNs += t.periodNs;
      t.cb();
      const wait = afterTimer?.();
      if (wait) await wait;
      else if (++this.firings % FIRINGS_PER_YIELD === 0) await yieldToLoop();
    }
    this.clockNs = endNs;
  }

  /**
   * advanceTo without a promise where no timer is due by endNs (most messages between two ticks):
   * the clock just moves, and undefined is returned; otherwise advanceTo's promise.
   */
  advance(endNs: bigint, afterTimer?: () => Promise<void> | undefined): Promise<void> | undefined {
    if (this.started && (endNs <= this.clockNs || !this.nextDue(endNs))) {
      if (endNs > this.clockNs) this.clockNs = endNs;
      return undefined;
    }
    return this.advanceTo(endNs, afterTimer);
  }

  /** Delivers a message (by its resolved topic) to subscribers expecting its type; returns how many took it. */
  deliver(topic: string, type: string, cdr: Uint8Array): number {
    let n = 0;
    for (const s of [...(this.subs.get(topic) ?? [])]) {
      if (s.type !== type) continue;
      s.cb(cdr, this.clockNs);
      n++;
    }
    return n;
  }
}
