/**
 * The ROS 2 lifecycle node, `autoprune_ros_node` (`ros2 run autoprune_ros autoprune_ros_node
 * --ros-args --params-file ...`, or the package's launch files). Parameters are declared with
 * their ROS types (configs/autoprune_ros.schema.json is the contract) and validated; the engine
 * is loaded and warmed before the node spins, because rclnodejs runs transition callbacks
 * synchronously and a configure that loads a model would otherwise block; configure checks the
 * parameters against it, activate starts the node logic, deactivate stops it, cleanup keeps the
 * engine (a later configure is immediate), shutdown stops everything and disposes the engine. A
 * parameter change is applied between frames, and one of an engine parameter loads the new
 * engine first (NodeRunner, in pipeline/). With `autostart` (default) the node configures and
 * activates itself; without it, it waits unconfigured for a lifecycle manager (nav2's
 * lifecycle_manager, Autoware's) to call its lifecycle services.
 *
 * rclnodejs is imported only here and in rclnodejs-port.ts, at run time. runNode takes the
 * module as a parameter (tests pass a stand-in typed against rclnodejs' declarations); the
 * executable passes the real one.
 */
import { pathToFileURL } from 'node:url';

import type * as Rcl from 'rclnodejs';

import { MessageCodec } from '../msgs/codec.js';
import { configFromParams, parameterDeclarations, PARAMETER_TYPES, rosValue, valuesFromRos, type RosParamType } from '../pipeline/params.js';
import { NodeRunner } from '../pipeline/runner.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { RclPort, type RclPortApi, type RclPortNode } from './rclnodejs-port.js';

/** The node's default name (launch files and `-r __node:=` rename it). */
export const NODE_NAME = 'autoprune_ros';

/** Parameters the node reads once, at start: changing them later is refused (read-only). */
const READ_ONLY = new Set(['autostart']);

/** The lifecycle node surface the node uses: rclnodejs' own declarations, so a drift fails to compile. */
export type RclLifecycleNode = RclPortNode &
  Pick<
    Rcl.lifecycle.LifecycleNode,
    | 'declareParameter'
    | 'getParameters'
    | 'setParameters'
    | 'addOnSetParametersCallback'
    | 'registerOnConfigure'
    | 'registerOnActivate'
    | 'registerOnDeactivate'
    | 'registerOnCleanup'
    | 'registerOnShutdown'
    | 'registerOnError'
    | 'configure'
    | 'activate'
    | 'shutdown'
    | 'spin'
    | 'destroy'
    | 'currentState'
  >;

/**
 * The id and label of a lifecycle state. rclnodejs 2.2.0's lib/lifecycle.js State has `id` and
 * `label` properties, while types/lifecycle.d.ts declares only `asMessage()`, which the
 * JavaScript lacks: read what runs, with its declared shape (SerializedState).
 */
export function stateOf(s: Rcl.lifecycle.State): Rcl.lifecycle.SerializedState {
  const { id, label } = s as unknown as Rcl.lifecycle.SerializedState;
  return { id, label };
}

/** The rclnodejs module surface the node uses (the real module is assignable to it). */
export interface RclApi extends RclPortApi {
  init: typeof Rcl.init;
  shutdown: typeof Rcl.shutdown;
  removeSignalHandlers: typeof Rcl.removeSignalHandlers;
  Parameter: new (name: string, type: Rcl.ParameterType, value?: unknown) => Rcl.Parameter;
  ParameterDescriptor: new (name: string, type: Rcl.ParameterType, description?: string, readOnly?: boolean) => Rcl.ParameterDescriptor;
  lifecycle: {
    LifecycleNode: new (nodeName: string, namespace?: string, context?: Rcl.Context, options?: Rcl.NodeOptions, enableCommunicationInterface?: boolean) => RclLifecycleNode;
  };
}

// rclnodejs' const enums, as literals their declared types check (TS2475 forbids aliasing the enums).
const PARAMETER_TYPE: { [K in RosParamType]: Rcl.ParameterType } = {
  bool: 1 satisfies Rcl.ParameterType.PARAMETER_BOOL,
  integer: 2 satisfies Rcl.ParameterType.PARAMETER_INTEGER,
  double: 3 satisfies Rcl.ParameterType.PARAMETER_DOUBLE,
  string: 4 satisfies Rcl.ParameterType.PARAMETER_STRING,
  string_array: 9 satisfies Rcl.ParameterType.PARAMETER_STRING_ARRAY,
  integer_array: 7 satisfies Rcl.ParameterType.PARAMETER_INTEGER_ARRAY,
};
const SUCCESS: Rcl.lifecycle.CallbackReturnCode.SUCCESS = 97;
const FAILURE: Rcl.lifecycle.CallbackReturnCode.FAILURE = 98;
/** lifecycle_msgs/msg/State ids of the primary states. */
export const LIFECYCLE_STATE = { unconfigured: 1, inactive: 2, active: 3, finalized: 4 } as const;

/** Signals that stop the node (ros2 launch sends SIGINT, then SIGTERM). */
export type SignalSource = Pick<NodeJS.EventEmitter, 'on' | 'off'>;

export interface RunNodeOptions {
  /** Command line with `--ros-args ...` (default: process.argv). */
  argv?: string[];
  /** The rclnodejs module (default: imported at run time, which needs a sourced ROS 2). */
  rcl?: RclApi;
  /** Where SIGINT / SIGTERM arrive (default: process). */
  signals?: SignalSource;
  log?: Logger;
}

/** A running node: its lifecycle node and runner, and a promise that settles once all is closed. */
export interface RunningNode {
  readonly node: RclLifecycleNode;
  readonly runner: NodeRunner;
  /** Resolves when the node has shut down (engine disposed, node destroyed, rclnodejs shut down). */
  readonly closed: Promise<void>;
  /** Shuts the node down as SIGINT does. */
  stop(reason: string): Promise<void>;
}

/** The real rclnodejs, refused early without a sourced ROS 2 (its import would start a native build). */
export async function loadRclnodejs(): Promise<typeof Rcl> {
  if (!process.env.ROS_DISTRO) {
    throw new VlaError(ErrorCodes.ADDON_MISSING, 'ROS 2 is not sourced (ROS_DISTRO is unset): source /opt/ros/<distro>/setup.bash and the workspace install/setup.bash, then npm run build');
  }
  try {
    const m = await import('rclnodejs');
    return m.default ?? m;
  } catch (err) {
    throw new VlaError(ErrorCodes.ADDON_MISSING, `rclnodejs cannot load (is ROS 2 sourced, and was npm run build run after sourcing it?): ${(err as Error).message}`);
  }
}

/** Declares every schema parameter; a value of the wrong ROS type (20 for a double) is a coded error naming it. */
function declareParameters(rcl: RclApi, node: RclLifecycleNode): void {
  // Declared with the schema's defaults (required ones empty, so validation names them when
  // missing); values from --params-file or -p override them as rclnodejs declares each one.
  for (const { name, type, value } of parameterDeclarations()) {
    const t = PARAMETER_TYPE[type];
    try {
      node.declareParameter(new rcl.Parameter(name, t, value), new rcl.ParameterDescriptor(name, t, '', READ_ONLY.has(name)));
    } catch (err) {
      const hint = type === 'double' ? ' (a double: write 20.0, not 20)' : type === 'integer' ? ' (an integer: write 5, not 5.0)' : '';
      throw new VlaError(ErrorCodes.PARAMS, `parameter '${name}' must be of ROS type ${type}${hint}: ${(err as Error).message}`, { parameter: name }, { cause: err });
    }
  }
}

/**
 * Starts the node: declares and validates the parameters, loads and warms the engine, maps the
 * lifecycle onto a NodeRunner, and spins. Rejects with a coded error when the parameters or
 * the model are wrong (nothing is left open then).
 */
export async function runNode(opts: RunNodeOptions = {}): Promise<RunningNode> {
  const log = opts.log ?? componentLogger('ros');
  const rcl = opts.rcl ?? (await loadRclnodejs());
  const signals = opts.signals ?? process;
  // We shut down ourselves (lifecycle shutdown, engine disposal), then rclnodejs.
  rcl.removeSignalHandlers();
  await rcl.init(undefined, opts.argv ?? process.argv);
  let node: RclLifecycleNode | undefined;
  let runner: NodeRunner | undefined;
  let port: RclPort | undefined;
  try {
    node = new rcl.lifecycle.LifecycleNode(NODE_NAME);
    declareParameters(rcl, node);
    const n = node;
    const current = (): Record<string, unknown> => valuesFromRos(n.getParameters());
    const config = configFromParams(current(), 'node parameters');
    port = new RclPort(rcl, n);
    runner = await NodeRunner.start({ port, config, codec: new MessageCodec(), log });
  } catch (err) {
    await runner?.shutdown();
    port?.close();
    node?.destroy();
    rcl.shutdown();
    throw VlaError.from(err);
  }
  return lifecycle(rcl, node, runner, port, signals, log);
}

function lifecycle(rcl: RclApi, node: RclLifecycleNode, runner: NodeRunner, port: RclPort, signals: SignalSource, log: Logger): RunningNode {
  const current = (): Record<string, unknown> => valuesFromRos(node.getParameters());
  node.addOnSetParametersCallback((params) => {
    // Only ours: rclnodejs' own (use_sim_time) are not the node's to judge.
    const ours = params.filter((p) => p.name in PARAMETER_TYPES);
    if (ours.length === 0) return { successful: true, reason: '' };
    const next = { ...current() };
    for (const p of ours) next[p.name] = typeof p.value === 'bigint' ? Number(p.value) : p.value;
    return runner.propose(next);
  });
  // A change whose engine did not load is undone, so the parameters say what runs.
  runner.onReloadFailed = (_err, kept, names) => {
    node.setParameters(names.map((n) => new rcl.Parameter(n, PARAMETER_TYPE[PARAMETER_TYPES[n] ?? 'string'], rosValue(n, kept.raw[n]))));
  };

  let closing: Promise<void> | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  // Stops the logic, disposes the engine, then destroys the node and shuts rclnodejs down.
  const teardown = (reason: string): Promise<void> => {
    closing ??= (async () => {
      signals.off('SIGINT', onSignal);
      signals.off('SIGTERM', onSignal);
      log.info({ reason }, 'shutting down');
      try {
        await runner.shutdown();
      } catch (err) {
        const e = VlaError.from(err);
        log.error({ code: e.code }, `engine shutdown failed: ${e.message}`);
      }
      port.close();
      node.destroy();
      rcl.shutdown();
      resolveClosed();
    })();
    return closing;
  };

  node.registerOnConfigure(() => {
    try {
      // The parameters as they are now (set while unconfigured, too) against the engine that runs.
      configFromParams(current(), 'node parameters');
      log.info({ model: runner.config.engine.modelPath, backend: runner.engine.info?.backend }, 'configured');
      return SUCCESS;
    } catch (err) {
      const e = VlaError.from(err);
      log.error({ code: e.code }, `configure failed: ${e.message}`);
      return FAILURE;
    }
  });
  node.registerOnActivate(() => {
    try {
      runner.activate();
      log.info({}, 'active');
      return SUCCESS;
    } catch (err) {
      const e = VlaError.from(err);
      log.error({ code: e.code }, `activate failed: ${e.message}`);
      return FAILURE;
    }
  });
  node.registerOnDeactivate(() => {
    // Subscriptions and timers stop now; the running frame finishes in the background.
    void runner.deactivate();
    log.info({}, 'inactive');
    return SUCCESS;
  });
  // The engine stays loaded while unconfigured, so that configure (synchronous) is immediate.
  node.registerOnCleanup(() => SUCCESS);
  node.registerOnShutdown(() => {
    void teardown('lifecycle shutdown');
    return SUCCESS;
  });
  node.registerOnError(() => {
    void runner.deactivate();
    return SUCCESS;
  });

  const onSignal = (signal: string): void => {
    // Through the lifecycle, so a manager watching the node sees it finalize.
    if (stateOf(node.currentState).id !== LIFECYCLE_STATE.finalized) {
      try {
        node.shutdown();
      } catch (err) {
        log.warn({ signal }, `lifecycle shutdown refused: ${(err as Error).message}`);
      }
    }
    void teardown(signal);
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);

  if (runner.config.raw.autostart) {
    node.configure();
    node.activate();
    if (stateOf(node.currentState).id !== LIFECYCLE_STATE.active) log.error({ state: stateOf(node.currentState).label }, 'autostart: the node did not reach active');
  } else {
    log.info({}, 'autostart is false: unconfigured, waiting for a lifecycle manager');
  }
  node.spin();
  return { node, runner, closed, stop: teardown };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runNode()
    .then((n) => n.closed)
    // Everything is closed; should a native handle still hold the event loop, do not hang launch.
    .then(() => void setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref())
    .catch((err: unknown) => {
      const e = VlaError.from(err);
      process.stderr.write(`${e.code}: ${e.message}\n`);
      process.exitCode = 1;
    });
}
