/**
 * The ROS 2 lifecycle node: `node dist/ros/main.js --ros-args --params-file configs/x.yaml`
 * (what launch/autoprune_ros.launch.py runs). Parameters are declared with their ROS types
 * (configs/autoprune_ros.schema.json is the contract) and validated; configure loads and warms
 * the model, activate starts the node logic, deactivate stops it. Needs a sourced ROS 2 and
 * `npm run build`; rclnodejs is imported only here and in rclnodejs-port.ts, at run time.
 */
import { Engine } from '../native/engine.js';
import { VlaNodeLogic } from '../pipeline/node.js';
import { PARAMETER_TYPES, configFromParams, type NodeConfig } from '../pipeline/params.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger } from '../util/logger.js';
import { MessageCodec } from './codec.js';
import { RclPort } from './rclnodejs-port.js';

const log = componentLogger('ros');

export async function runNode(argv: string[] = process.argv): Promise<void> {
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
  const NOT_SET = rcl.ParameterType.PARAMETER_NOT_SET;
  // Declared without defaults so that only values given (params file, --ros-args -p) override
  // the schema's defaults, which the validator applies.
  for (const [name, t] of Object.entries(PARAMETER_TYPES)) {
    node.declareParameter(new rcl.Parameter(name, NOT_SET, undefined as never), new rcl.ParameterDescriptor(name, typeOf[t], '', false));
  }
  const current = (): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const p of node.getParameters()) if (p.type !== NOT_SET && p.name in PARAMETER_TYPES) out[p.name] = typeof p.value === 'bigint' ? Number(p.value) : p.value;
    return out;
  };

  let config: NodeConfig = configFromParams(current(), 'node parameters');
  const engine = await Engine.load(config.engine.modelPath, { backend: config.engine.backend, threads: config.engine.threads });
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
