/**
 * The ego's recorded path, against which a replay scores the plans: from an odometry topic (the
 * one asked for, the node's own, or the bag's first) or else from /tf (the transforms of the
 * ego frame). Read on a replay's first pass and kept for the settings after it.
 */
import type { BagInfo, BagMessage } from '../bag/reader.js';
import type { MessageCodec } from '../msgs/codec.js';
import { stampNs, type OdometryMsg, type TfMsg } from '../msgs/convert.js';
import { VlaError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { EgoPath, yawFromQuaternion } from './score.js';

export const ODOM = 'nav_msgs/msg/Odometry';
export const TF = 'tf2_msgs/msg/TFMessage';

export interface GroundTruthChoice {
  /** The topic the path is read from (resolved), or null when the bag has none usable. */
  topic: string | null;
  kind: 'odometry' | 'tf' | null;
  /** With tf: the ego frame whose transforms give the path. */
  childFrame: string;
  /** "odometry /topic" or "tf /tf (base_link)" for the report; null without ground truth. */
  label: string | null;
}

/**
 * The ground-truth topic: the one asked for, else the node's odometry topic when the bag has it
 * as odometry, else the bag's first odometry topic, else /tf. Topics are given resolved.
 */
export function chooseGroundTruth(info: BagInfo, asked: string | undefined, nodeOdometry: string | undefined, childFrame = 'base_link', log?: Logger): GroundTruthChoice {
  const typeOf = (t: string) => info.topics.find((x) => x.name === t)?.type;
  let topic: string | null =
    asked ?? (nodeOdometry && typeOf(nodeOdometry) === ODOM ? nodeOdometry : (info.topics.find((t) => t.type === ODOM)?.name ?? info.topics.find((t) => t.type === TF && t.name === '/tf')?.name ?? null));
  const type = topic ? typeOf(topic) : undefined;
  if (topic && type !== ODOM && type !== TF) {
    log?.warn({ topic, type: type ?? 'absent' }, 'no odometry or tf for ground truth in the bag: planning errors are not computed');
    topic = null;
  }
  const kind = topic === null ? null : type === TF ? 'tf' : 'odometry';
  return { topic, kind, childFrame, label: topic ? (kind === 'tf' ? `tf ${topic} (${childFrame})` : `odometry ${topic}`) : null };
}

/** Adds poses to an ego path from odometry or tf messages. */
export class GroundTruthCollector {
  constructor(
    readonly path: EgoPath,
    readonly choice: GroundTruthChoice,
    private readonly codec: MessageCodec,
    private readonly log: Logger,
  ) {}

  addPose(o: OdometryMsg): void {
    this.path.add({ tNs: stampNs(o.header), x: o.pose.pose.position.x, y: o.pose.pose.position.y, yaw: yawFromQuaternion(o.pose.pose.orientation) });
  }

  addTf(msg: TfMsg): void {
    for (const t of msg.transforms) {
      if (t.child_frame_id.replace(/^\//, '') !== this.choice.childFrame) continue;
      this.path.add({ tNs: stampNs(t.header), x: t.transform.translation.x, y: t.transform.translation.y, yaw: yawFromQuaternion(t.transform.rotation) });
    }
  }

  /** A bag message of the ground-truth topic; one that does not decode is skipped with a warning. */
  take(m: BagMessage): void {
    try {
      if (this.choice.kind === 'tf') this.addTf(this.codec.decode<TfMsg>(TF, m.data));
      else this.addPose(this.codec.decode<OdometryMsg>(ODOM, m.data));
    } catch (err) {
      this.log.warn({ code: VlaError.from(err).code, offset: m.offset }, 'message skipped for ground truth');
    }
  }
}
