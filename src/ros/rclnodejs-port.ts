/**
 * The live RosPort over rclnodejs: raw CDR subscriptions (isRaw) and Buffer publishing, so the
 * node logic and the codec see exactly the bytes DDS carries. This is the only module, with
 * main.ts, that touches rclnodejs; it is loaded at run time on a machine with ROS 2 sourced.
 * The node surface it needs is rclnodejs' own declarations (Pick), so a drift fails to compile
 * and a test can drive it with a stand-in.
 */
import type * as Rcl from 'rclnodejs';

import type { CdrCallback, QosProfile, RosPort } from '../msgs/port.js';

/** The node surface the port uses. */
export type RclPortNode = Pick<Rcl.Node, 'createSubscription' | 'createPublisher' | 'createTimer' | 'destroySubscription' | 'destroyPublisher' | 'destroyTimer' | 'resolveTopicName'> & {
  now(): Pick<Rcl.Time, 'nanoseconds'>;
};

/** The module surface the port uses. */
export interface RclPortApi {
  QoS: new (...args: ConstructorParameters<typeof Rcl.QoS>) => Rcl.QoS;
}

type QosArgs = ConstructorParameters<typeof Rcl.QoS>;
// rclnodejs' QoS enums (rmw values), as literals their declared types check.
const KEEP_LAST: QosArgs[0] = 1 satisfies Rcl.QoS.HistoryPolicy.RMW_QOS_POLICY_HISTORY_KEEP_LAST;
const RELIABLE: QosArgs[2] = 1 satisfies Rcl.QoS.ReliabilityPolicy.RMW_QOS_POLICY_RELIABILITY_RELIABLE;
const BEST_EFFORT: QosArgs[2] = 2 satisfies Rcl.QoS.ReliabilityPolicy.RMW_QOS_POLICY_RELIABILITY_BEST_EFFORT;
const TRANSIENT_LOCAL: QosArgs[3] = 1 satisfies Rcl.QoS.DurabilityPolicy.RMW_QOS_POLICY_DURABILITY_TRANSIENT_LOCAL;
const VOLATILE: QosArgs[3] = 2 satisfies Rcl.QoS.DurabilityPolicy.RMW_QOS_POLICY_DURABILITY_VOLATILE;

export function toRclQos(rcl: RclPortApi, q: QosProfile): Rcl.QoS {
  return new rcl.QoS(KEEP_LAST, q.depth, q.reliability === 'reliable' ? RELIABLE : BEST_EFFORT, q.durability === 'transient_local' ? TRANSIENT_LOCAL : VOLATILE);
}

export class RclPort implements RosPort {
  /**
   * One publisher per topic for the node's life: the node logic advertises again on every
   * activate, and a second rclnodejs publisher would be a second writer in the graph.
   */
  private readonly publishers = new Map<string, { type: string; pub: Rcl.Publisher<never> }>();
  private readonly subscriptions = new Set<Rcl.Subscription>();
  private readonly timers = new Set<Rcl.Timer>();

  constructor(
    private readonly rcl: RclPortApi,
    private readonly node: RclPortNode,
  ) {}

  now(): bigint {
    return this.node.now().nanoseconds;
  }

  subscribe(topic: string, type: string, qos: QosProfile, cb: CdrCallback): () => void {
    const onRaw: Rcl.SubscriptionWithRawMessageCallback = (buf) => cb(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), this.now());
    const sub = this.node.createSubscription(type as never, topic, { qos: toRclQos(this.rcl, qos), isRaw: true }, onRaw);
    this.subscriptions.add(sub);
    return () => {
      if (this.subscriptions.delete(sub)) this.node.destroySubscription(sub);
    };
  }

  advertise(topic: string, type: string, qos: QosProfile): (cdr: Uint8Array) => void {
    let entry = this.publishers.get(topic);
    if (entry && entry.type !== type) {
      this.node.destroyPublisher(entry.pub);
      entry = undefined;
    }
    if (!entry) {
      entry = { type, pub: this.node.createPublisher(type as never, topic, { qos: toRclQos(this.rcl, qos) }) };
      this.publishers.set(topic, entry);
    }
    const pub = entry.pub;
    return (cdr) => pub.publish(Buffer.from(cdr.buffer, cdr.byteOffset, cdr.byteLength));
  }

  resolve(name: string): string {
    return this.node.resolveTopicName(name);
  }

  timer(periodMs: number, cb: () => void): () => void {
    const t = this.node.createTimer(BigInt(Math.max(1, Math.round(periodMs * 1e6))), () => cb());
    this.timers.add(t);
    return () => {
      if (this.timers.delete(t)) this.node.destroyTimer(t);
    };
  }

  /** Destroys every subscription, timer and publisher the port made (before the node is destroyed). */
  close(): void {
    for (const s of this.subscriptions) this.node.destroySubscription(s);
    for (const t of this.timers) this.node.destroyTimer(t);
    for (const { pub } of this.publishers.values()) this.node.destroyPublisher(pub);
    this.subscriptions.clear();
    this.timers.clear();
    this.publishers.clear();
  }
}
