/**
 * The live RosPort over rclnodejs: raw CDR subscriptions (isRaw) and Buffer publishing, so the
 * node logic and the codec see exactly the bytes DDS carries. This is the only module, with
 * main.ts, that touches rclnodejs; it is loaded at run time on a machine with ROS 2 sourced.
 */
import type * as Rcl from 'rclnodejs';

import type { CdrCallback, QosProfile, RosPort } from '../msgs/port.js';

type RclModule = typeof Rcl;
type QosArgs = ConstructorParameters<RclModule['QoS']>;

export function toRclQos(rcl: RclModule, q: QosProfile): Rcl.QoS {
  const keepLast = 1 as QosArgs[0];
  const reliability = (q.reliability === 'reliable' ? 1 : 2) as QosArgs[2];
  const durability = (q.durability === 'transient_local' ? 1 : 2) as QosArgs[3];
  return new rcl.QoS(keepLast, q.depth, reliability, durability);
}

export class RclPort implements RosPort {
  constructor(
    private readonly rcl: RclModule,
    private readonly node: Rcl.Node,
  ) {}

  now(): bigint {
    return this.node.now().nanoseconds;
  }

  subscribe(topic: string, type: string, qos: QosProfile, cb: CdrCallback): () => void {
    const sub = this.node.createSubscription(type as never, topic, { qos: toRclQos(this.rcl, qos), isRaw: true }, ((buf: Buffer) => {
      cb(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), this.now());
    }) as never);
    return () => this.node.destroySubscription(sub);
  }

  advertise(topic: string, type: string, qos: QosProfile): (cdr: Uint8Array) => void {
    const pub = this.node.createPublisher(type as never, topic, { qos: toRclQos(this.rcl, qos) });
    return (cdr) => pub.publish(Buffer.from(cdr.buffer, cdr.byteOffset, cdr.byteLength));
  }

  resolve(name: string): string {
    return this.node.resolveTopicName(name);
  }

  timer(periodMs: number, cb: () => void): () => void {
    const t = this.node.createTimer(BigInt(Math.max(1, Math.round(periodMs * 1e6))), () => cb());
    return () => this.node.destroyTimer(t);
  }
}
