/**
 * The node's parameters: configs/autoprune_ros.schema.json is the contract, YAML files hold
 * values in the ROS 2 parameter-file layout, and this module declares each parameter's ROS type
 * (for declareParameter on a live node), validates values (at start and on change) and maps
 * them to the node and engine options.
 */
import { readFileSync } from 'node:fs';

import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';

import type { NativePruneOptions, PrunePolicyName } from '../engine/addon-types.js';
import type { BackendName } from '../engine/engine.js';
import { QOS_SENSOR_DATA } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { PARAMS_SCHEMA } from '../util/paths.js';
import type { ImageType } from '../msgs/convert.js';
import type { NodeParams } from './node.js';

export type RosParamType = 'string' | 'integer' | 'double' | 'bool' | 'string_array';

/** Every parameter and its ROS type; a test checks this against the schema and the README. */
export const PARAMETER_TYPES: Readonly<Record<string, RosParamType>> = Object.freeze({
  model_path: 'string',
  backend: 'string',
  threads: 'integer',
  cuda_device: 'integer',
  weight_dtype: 'string',
  max_activation_mib: 'integer',
  camera_names: 'string_array',
  camera_topics: 'string_array',
  camera_types: 'string_array',
  camera_reliability: 'string',
  camera_qos_depth: 'integer',
  instruction_topic: 'string',
  odometry_topic: 'string',
  default_instruction: 'string',
  output_frame: 'string',
  publish_autoware_trajectory: 'bool',
  slop_ms: 'double',
  max_age_ms: 'double',
  missing_camera: 'string',
  tick_ms: 'double',
  future_tolerance_ms: 'double',
  latency_warn_ms: 'double',
  max_instruction_chars: 'integer',
  pruning_policy: 'string',
  budget_kind: 'string',
  budget_value: 'double',
  autoprune_x0: 'double',
  autoprune_k0: 'double',
  autoprune_gamma: 'double',
});

export const SCHEMA_PATH = PARAMS_SCHEMA;

export interface RawParams {
  model_path: string;
  backend: BackendName;
  threads: number;
  cuda_device: number;
  weight_dtype: 'auto' | 'f16' | 'bf16';
  max_activation_mib: number;
  camera_names: string[];
  camera_topics: string[];
  camera_types: Array<'image' | 'compressed'>;
  camera_reliability: 'best_effort' | 'reliable';
  camera_qos_depth: number;
  instruction_topic: string;
  odometry_topic: string;
  default_instruction: string;
  output_frame: string;
  publish_autoware_trajectory: boolean;
  slop_ms: number;
  max_age_ms: number;
  missing_camera: 'wait' | 'partial';
  tick_ms: number;
  future_tolerance_ms: number;
  latency_warn_ms: number;
  max_instruction_chars: number;
  pruning_policy: PrunePolicyName;
  budget_kind: 'none' | 'tokens' | 'flops' | 'latency';
  budget_value: number;
  autoprune_x0: number;
  autoprune_k0: number;
  autoprune_gamma: number;
}

export interface NodeConfig {
  raw: RawParams;
  engine: EngineConfig;
  node: Omit<NodeParams, 'modelName'>;
}

/** What Engine.load needs from the parameters. */
export interface EngineConfig {
  modelPath: string;
  backend: BackendName;
  threads: number;
  device: number;
  weightDtype: 'auto' | 'f16' | 'bf16';
  maxActivationMiB: number;
}

/** The Engine.load options of a configuration. */
export function engineLoadOptions(e: EngineConfig): { backend: BackendName; threads: number; device: number; weightDtype: 'auto' | 'f16' | 'bf16'; maxActivationMiB: number } {
  return { backend: e.backend, threads: e.threads, device: e.device, weightDtype: e.weightDtype, maxActivationMiB: e.maxActivationMiB };
}

let validator: ReturnType<Ajv['compile']> | undefined;

function validate(values: Record<string, unknown>, where: string): RawParams {
  if (!validator) {
    const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: true });
    validator = ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
  }
  const copy = structuredClone(values);
  if (!validator(copy)) {
    const msg = (validator.errors ?? []).map((e: ErrorObject) => describe(e)).join('; ');
    throw new VlaError(ErrorCodes.PARAMS, `${where}: ${msg}`, { errors: validator.errors });
  }
  const p = copy as unknown as RawParams;
  if (p.camera_topics.length !== p.camera_names.length) {
    throw new VlaError(ErrorCodes.PARAMS, `${where}: camera_topics has ${p.camera_topics.length} entries for ${p.camera_names.length} camera_names`);
  }
  if (p.camera_types.length !== 0 && p.camera_types.length !== p.camera_names.length) {
    throw new VlaError(ErrorCodes.PARAMS, `${where}: camera_types has ${p.camera_types.length} entries for ${p.camera_names.length} camera_names`);
  }
  if ((p.pruning_policy === 'none') !== (p.budget_kind === 'none')) {
    throw new VlaError(ErrorCodes.PARAMS, `${where}: pruning_policy ${p.pruning_policy} with budget_kind ${p.budget_kind}: a policy needs a budget and a budget a policy`);
  }
  if (p.budget_kind !== 'none' && !(p.budget_value > 0)) throw new VlaError(ErrorCodes.PARAMS, `${where}: budget_value must be positive for budget_kind ${p.budget_kind}`);
  return p;
}

function describe(e: ErrorObject): string {
  const name = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || (e.params as { missingProperty?: string; additionalProperty?: string }).missingProperty || '';
  if (e.keyword === 'additionalProperties') return `unknown parameter '${(e.params as { additionalProperty: string }).additionalProperty}'`;
  if (e.keyword === 'required') return `missing parameter '${name}'`;
  return `parameter '${name}' ${e.message ?? 'is invalid'}`;
}

/** Validates a full parameter set (at start, or after a change) and maps it to options. */
export function configFromParams(values: Record<string, unknown>, where = 'parameters'): NodeConfig {
  const raw = validate(values, where);
  const latency = raw.budget_kind === 'latency';
  const prune: NativePruneOptions | undefined =
    raw.pruning_policy === 'none'
      ? undefined
      : {
          policy: raw.pruning_policy,
          // deadline mode: the controller sets a tokens budget per frame
          ...(latency ? {} : { budget: { kind: raw.budget_kind as 'tokens' | 'flops', value: raw.budget_value } }),
          x0: raw.autoprune_x0,
          k0: raw.autoprune_k0,
          gamma: raw.autoprune_gamma,
        };
  const qos = { ...QOS_SENSOR_DATA, reliability: raw.camera_reliability, depth: raw.camera_qos_depth };
  return {
    raw,
    engine: { modelPath: raw.model_path, backend: raw.backend, threads: raw.threads, device: raw.cuda_device, weightDtype: raw.weight_dtype, maxActivationMiB: raw.max_activation_mib },
    node: {
      cameras: raw.camera_names.map((camera, i) => ({
        camera,
        topic: raw.camera_topics[i] as string,
        type: (raw.camera_types[i] === 'compressed' ? 'sensor_msgs/msg/CompressedImage' : 'sensor_msgs/msg/Image') as ImageType,
        qos,
      })),
      instructionTopic: raw.instruction_topic,
      ...(raw.odometry_topic ? { odometryTopic: raw.odometry_topic } : {}),
      publishAutowareTrajectory: raw.publish_autoware_trajectory,
      defaultInstruction: raw.default_instruction,
      outputFrame: raw.output_frame,
      slopMs: raw.slop_ms,
      maxAgeMs: raw.max_age_ms,
      missingCamera: raw.missing_camera,
      tickMs: raw.tick_ms,
      futureToleranceMs: raw.future_tolerance_ms,
      latencyWarnMs: raw.latency_warn_ms,
      maxInstructionChars: raw.max_instruction_chars,
      prune,
      ...(latency ? { deadlineMs: raw.budget_value } : {}),
    },
  };
}

/**
 * Reads a ROS 2 parameter file: `<node>: ros__parameters: {...}` (or `/**:`). Overrides (for
 * example from the command line) are applied on top before validation.
 */
export function loadParamsFile(file: string, overrides: Record<string, unknown> = {}, nodeName = 'autoprune_ros'): NodeConfig {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new VlaError(ErrorCodes.PARAMS, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const root = (doc ?? {}) as Record<string, { ros__parameters?: Record<string, unknown> }>;
  const section = root[nodeName] ?? root[`/${nodeName}`] ?? root['/**'];
  if (!section || typeof section !== 'object' || typeof section.ros__parameters !== 'object' || section.ros__parameters === null) {
    throw new VlaError(ErrorCodes.PARAMS, `${file}: no '${nodeName}: ros__parameters:' section`, { file });
  }
  return configFromParams({ ...section.ros__parameters, ...overrides }, file);
}
