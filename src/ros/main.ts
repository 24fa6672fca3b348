/**
 * The ROS 2 lifecycle node: `node dist/ros/main.js --ros-args --params-file configs/x.yaml`
 * (what launch/autoprune_ros.launch.py runs). Parameters are declared with their ROS types
 * (configs/autoprune_ros.schema.json is the contract) and validated; configure loads and warms
 * the model, activate starts the node logic, deactivate stops it. Needs a sourced ROS 2 and
 * `npm run build`; rclnodejs is imported only here and in rclnodejs-port.ts, at run time.
 */
import { pathToFileURL } from 'node:url';

import { Engine } from '../engine/engine.js';
import { VlaNodeLogic } from '../pipeline/node.js';
import { configFromParams, engineLoadOptions, parameterDeclarations, valuesFromRos, type NodeConfig } from '../pipeline/params.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger } from '../util/logger.js';
import { MessageCodec } from '../msgs/codec.js';
import { RclPort } from './rclnodejs-port.js';

const log = componentLogger('ros');

export async function runNode(argv: string[] = process.argv): Promise<void> {
  if (!process.env.ROS_DISTRO) {
    // Importing rclnodejs without ROS 2 starts a native build at import time: refuse early.
    throw new VlaError(ErrorCodes.ADDON_MISSING, 'ROS 2 is not sourced (ROS_DISTRO is unset): source /opt/ros/<distro>/setup.bash, then npm run build');
  }
  let rcl: typeof import('rclnodejs');
  try {
    rcl = (await import('rclnodejs')).default ?? (await import('rclnodejs'));
  } catch (err) {
    throw new VlaError(ErrorCodes.ADDON_MISSING, `rclnodejs cannot load (is ROS 2 sourced, and was npm run build run after sourcing it?): ${(err as Error).message}`);
  }
  await rcl.init(undefined, argv);
  const node = new rcl.lifecycle.LifecycleNode('autoprune_ros');
  const typeOf = {
    string: rcl.ParameterType.PARAMETER_STRING,
    integer: rcl.ParameterType.PARAMETER_INTEGER,
    double: rcl.ParameterType.PARAMETER_DOUBLE,
    bool: rcl.ParameterType.PARAMETER_BOOL,
    string_array: rcl.ParameterType.PARAMETER_STRING_ARRAY,
  };
  // Declared with the schema's defaults (required ones empty, so validation names them when
  // missing); values from --params-file or -p override them as rclnodejs declares each one.
  for (const { name, type, value } of parameterDeclarations()) {
    node.declareParameter(new rcl.Parameter(name, typeOf[type], value as never), new rcl.ParameterDescriptor(name, typeOf[type], '', false));
  }
  const current = (): Record<string, unknown> => valuesFromRos(node.getParameters());

  let config: NodeConfig = configFromParams(current(), 'node parameters');
  const engine = await Engine.load(config.engine.modelPath, engineLoadOptions(config.engine));
  // Warm-up: one inference on grey frames so the first real frame does not pay for first use.
  const grey = { data: new Uint8Array(64 * 64 * 3).fill(128), width: 64, height: 64, encoding: 'rgb8' as const };
  const warm = await engine.infer({ views: engine.cameras.map(() => grey), instruction: config.node.defaultInstruction });
  log.info({ warmupMs: Math.round(warm.timings.totalMs) }, 'model warmed up');
  const port = new RclPort(rcl, node);
  const codec = new MessageCodec();
  let logic: VlaNodeLogic | undefined;
  const SUCCESS = rcl.lifecycle.CallbackReturnCode.SUCCESS;
  const FAILURE = rcl.lifecycle.CallbackReturnCode.FAILURE;

  node.addOnSetParametersCallback((params) => {
    const next = { ...current() };
    for (const p of params) next[p.name] = typeof p.value === 'bigint' ? Number(p.value) : p.value;
    try {
      config = configFromParams(next, 'parameter change');
      // Applied between frames: the running logic finishes its frame, a new one takes over.
      if (logic) {
        const old = logic;
        logic = undefined;
        void old.stop().then(() => {
          logic = new VlaNodeLogic(port, engine, { ...config.node, modelName: config.engine.modelPath }, codec);
          logic.start();
        });
      }
      return { successful: true, reason: '' };
    } catch (err) {
      const e = VlaError.from(err, ErrorCodes.PARAMS);
      log.warn({ code: e.code }, e.message);
      return { successful: false, reason: `${e.code}: ${e.message}` };
    }
  });
  node.registerOnConfigure(() => {
    log.info({ model: config.engine.modelPath, backend: engine.info.backend }, 'configured');
    return SUCCESS;
  });
  node.registerOnActivate(() => {
    try {
      logic = new VlaNodeLogic(port, engine, { ...config.node, modelName: config.engine.modelPath }, codec);
      logic.start();
      return SUCCESS;
    } catch (err) {
      const e = VlaError.from(err);
      log.error({ code: e.code }, e.message);
      return FAILURE;
    }
  });
  node.registerOnDeactivate(() => {
    void logic?.stop();
    logic = undefined;
    return SUCCESS;
  });
  node.registerOnShutdown(() => {
    void logic?.stop().then(() => engine.dispose());
    return SUCCESS;
  });
  node.configure();
  node.activate();
  node.spin();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runNode().catch((err: unknown) => {
    const e = VlaError.from(err);
    process.stderr.write(`${e.code}: ${e.message}\n`);
    process.exitCode = 1;
  });
}
