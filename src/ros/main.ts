/**
 * The ROS 2 lifecycle node: `node dist/ros/main.js --ros-args --params-file configs/x.yaml`
 * (what launch/autoprune_ros.launch.py runs). Parameters are declared with their ROS types
 * (configs/autoprune_ros.schema.json is the contract) and validated; configure loads and warms
 * the model, activate starts the node logic, deactivate stops it. A parameter change is applied
 * between frames, and one of an engine parameter loads the new engine first (NodeRunner, in
 * pipeline/). Needs a sourced ROS 2 and `npm run build`; rclnodejs is imported only here and in
 * rclnodejs-port.ts, at run time.
 */
import { pathToFileURL } from 'node:url';

import { MessageCodec } from '../msgs/codec.js';
import { configFromParams, parameterDeclarations, PARAMETER_TYPES, rosValue, valuesFromRos } from '../pipeline/params.js';
import { NodeRunner } from '../pipeline/runner.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger } from '../util/logger.js';
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

  const runner = await NodeRunner.start({ port: new RclPort(rcl, node), config: configFromParams(current(), 'node parameters'), codec: new MessageCodec(), log });
  const SUCCESS = rcl.lifecycle.CallbackReturnCode.SUCCESS;
  const FAILURE = rcl.lifecycle.CallbackReturnCode.FAILURE;

  node.addOnSetParametersCallback((params) => {
    const next = { ...current() };
    for (const p of params) next[p.name] = typeof p.value === 'bigint' ? Number(p.value) : p.value;
    return runner.propose(next);
  });
  // A change whose engine did not load is undone, so the parameters say what runs.
  runner.onReloadFailed = (_err, kept, names) => {
    node.setParameters(names.map((n) => new rcl.Parameter(n, typeOf[PARAMETER_TYPES[n] ?? 'string'], rosValue(n, kept.raw[n]) as never)));
  };
  node.registerOnConfigure(() => {
    log.info({ model: runner.config.engine.modelPath, backend: runner.engine.info?.backend }, 'configured');
    return SUCCESS;
  });
  node.registerOnActivate(() => {
    try {
      runner.activate();
      return SUCCESS;
    } catch (err) {
      const e = VlaError.from(err);
      log.error({ code: e.code }, e.message);
      return FAILURE;
    }
  });
  node.registerOnDeactivate(() => {
    void runner.deactivate();
    return SUCCESS;
  });
  node.registerOnShutdown(() => {
    void runner.shutdown();
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
