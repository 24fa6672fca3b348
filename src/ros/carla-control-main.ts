/**
 * `carla_control_node` (`ros2 run autoprune_ros carla_control_node`): the CARLA leaderboard's side
 * of the agent (src/carla/control.ts) as a ROS 2 node. Run with use_sim_time (the leaderboard's
 * clock); parameters from configs/carla_control.schema.json. Like main.ts it takes the rclnodejs
 * module as a parameter.
 */
import { pathToFileURL } from 'node:url';

import type * as Rcl from 'rclnodejs';

import { CarlaControlLogic } from '../carla/control.js';
import { carlaControlDeclarations, carlaControlParams } from '../carla/params.js';
import { MessageCodec } from '../msgs/codec.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { loadRclnodejs, type RclApi, type SignalSource } from './main.js';
import { RclPort, type RclPortNode } from './rclnodejs-port.js';

export const CARLA_CONTROL_NODE_NAME = 'carla_control';

export type RclPlainNode = RclPortNode & Pick<Rcl.Node, 'declareParameter' | 'getParameters' | 'spin' | 'destroy'>;

/** The module surface this node uses (the real rclnodejs is assignable to it). */
export type CarlaRclApi = Pick<RclApi, 'init' | 'shutdown' | 'removeSignalHandlers' | 'Parameter' | 'ParameterDescriptor' | 'QoS'> & {
  Node: new (nodeName: string, namespace?: string) => RclPlainNode;
};

const STRING: Rcl.ParameterType.PARAMETER_STRING = 4;
const DOUBLE: Rcl.ParameterType.PARAMETER_DOUBLE = 3;

export interface RunningCarlaControl {
  readonly logic: CarlaControlLogic;
  readonly closed: Promise<void>;
  stop(reason: string): Promise<void>;
}

export async function runCarlaControl(opts: { argv?: string[]; rcl?: CarlaRclApi; signals?: SignalSource; log?: Logger } = {}): Promise<RunningCarlaControl> {
  const log = opts.log ?? componentLogger('carla');
  const rcl: CarlaRclApi = opts.rcl ?? (await loadRclnodejs());
  const signals = opts.signals ?? process;
  rcl.removeSignalHandlers();
  await rcl.init(undefined, opts.argv ?? process.argv);
  let node: RclPlainNode | undefined;
  let port: RclPort | undefined;
  let logic: CarlaControlLogic;
  try {
    node = new rcl.Node(CARLA_CONTROL_NODE_NAME);
    for (const d of carlaControlDeclarations()) {
      const t = d.type === 'double' ? DOUBLE : STRING;
      try {
        node.declareParameter(new rcl.Parameter(d.name, t, d.value), new rcl.ParameterDescriptor(d.name, t, '', true));
      } catch (err) {
        throw new VlaError(ErrorCodes.PARAMS, `parameter '${d.name}' must be of ROS type ${d.type}${d.type === 'double' ? ' (write 40.0, not 40)' : ''}: ${(err as Error).message}`, { parameter: d.name }, { cause: err });
      }
    }
    const values = Object.fromEntries(node.getParameters().filter((p) => carlaControlDeclarations().some((d) => d.name === p.name)).map((p) => [p.name, p.value]));
    port = new RclPort(rcl, node);
    logic = new CarlaControlLogic(port, carlaControlParams(values), new MessageCodec(), log);
    logic.start();
  } catch (err) {
    port?.close();
    node?.destroy();
    rcl.shutdown();
    throw VlaError.from(err);
  }
  const n = node;
  const p = port;
  let closing: Promise<void> | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const stop = (reason: string): Promise<void> => {
    closing ??= (async () => {
      signals.off('SIGINT', stop);
      signals.off('SIGTERM', stop);
      log.info({ reason }, 'shutting down');
      logic.stop();
      p.close();
      n.destroy();
      rcl.shutdown();
      resolveClosed();
    })();
    return closing;
  };
  signals.on('SIGINT', stop);
  signals.on('SIGTERM', stop);
  n.spin();
  return { logic, closed, stop };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runCarlaControl()
    .then((c) => c.closed)
    .catch((err: unknown) => {
      const e = VlaError.from(err);
      process.stderr.write(`${e.code}: ${e.message}\n`);
      process.exitCode = 1;
    });
}
