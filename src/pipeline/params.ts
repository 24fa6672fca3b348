/**
 * The node's parameters: configs/autoprune_ros.schema.json is the contract, YAML files hold
 * values in the ROS 2 parameter-file layout. Nothing here restates the schema: each parameter's
 * ROS type (for declareParameter on a live node) is read from it at load, the TypeScript type
 * is generated from it (params.generated.ts), and it validates values (at start and on change)
 * before they are mapped to the node and engine options.
 */
import { readFileSync } from 'node:fs';

import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';

import type { NativePruneOptions } from '../engine/addon-types.js';
import { TUNED_OPTIONS, type PruneOptionKey, type PruneRequest } from '../engine/calibration.js';
import type { BackendName } from '../engine/engine.js';
import { PRUNE_POLICIES, SCORE_ROWS, type PrunePolicyName, type ScoreRowsName } from '../engine/policies.js';
import type { ImageType } from '../msgs/convert.js';
import { QOS_SENSOR_DATA } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFileSync } from '../util/fsafe.js';
import { PARAMS_SCHEMA } from '../util/paths.js';
import type { NodeParams } from './node.js';
import type { AutopruneRosNodeParameters } from './params.generated.js';

export const SCHEMA_PATH = PARAMS_SCHEMA;

/** A parameter file is a few KB. */
const MAX_PARAMS_FILE_BYTES = 4 << 20;

/** Every parameter, as validation leaves them (defaults filled in). */
export type RawParams = Required<AutopruneRosNodeParameters>;

// The generated type and the code's own unions must agree (a schema enum edited alone fails the build).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const typesAgree: [Same<RawParams['pruning_policy'], PrunePolicyName>, Same<RawParams['backend'], BackendName>, Same<RawParams['prune_score_rows'], ScoreRowsName>] = [true, true, true];
void typesAgree;

export type RosParamType = 'string' | 'integer' | 'double' | 'bool' | 'string_array' | 'integer_array';

interface SchemaProperty {
  type: string;
  items?: { type: string };
  enum?: unknown[];
  default?: unknown;
}

interface ParamsSchema {
  required: string[];
  properties: Record<string, SchemaProperty>;
}

function readSchema(): ParamsSchema {
  try {
    return JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as ParamsSchema;
  } catch (err) {
    throw new VlaError(ErrorCodes.CONFIG, `${SCHEMA_PATH}: ${(err as Error).message}`, { file: SCHEMA_PATH }, { cause: err });
  }
}

const SCHEMA = readSchema();

/** The ROS 2 parameter type that carries a schema type. */
function rosTypeOf(name: string, p: SchemaProperty): RosParamType {
  if (p.type === 'string' || p.type === 'integer') return p.type;
  if (p.type === 'number') return 'double';
  if (p.type === 'boolean') return 'bool';
  if (p.type === 'array' && p.items?.type === 'string') return 'string_array';
  if (p.type === 'array' && p.items?.type === 'integer') return 'integer_array';
  throw new VlaError(ErrorCodes.CONFIG, `${SCHEMA_PATH}: parameter '${name}' is ${p.type}${p.items ? ` of ${p.items.type}` : ''}, which no ROS 2 parameter type carries here`);
}

/** Every parameter and its ROS type, from the schema. */
export const PARAMETER_TYPES: Readonly<Record<string, RosParamType>> = Object.freeze(Object.fromEntries(Object.entries(SCHEMA.properties).map(([name, p]) => [name, rosTypeOf(name, p)])));

export type RosParamValue = string | bigint | number | boolean | string[] | bigint[];

/**
 * Each parameter with its ROS type and the value to declare it with: the schema's default, or
 * an empty value for a required one (valuesFromRos drops those, so validation names them).
 */
export function parameterDeclarations(): Array<{ name: string; type: RosParamType; value: RosParamValue }> {
  return Object.entries(PARAMETER_TYPES).map(([name, type]) => {
    const d = SCHEMA.properties[name]?.default;
    const value = type === 'integer' ? BigInt(Number(d ?? 0)) : type === 'double' ? Number(d ?? 0) : type === 'bool' ? Boolean(d ?? false) : type === 'string_array' ? ((d as string[] | undefined) ?? []) : type === 'integer_array' ? ((d as number[] | undefined) ?? []).map((x) => BigInt(x)) : String(d ?? '');
    return { name, type, value };
  });
}

/** A value as the parameter's ROS type carries it (integers as bigint). */
export function rosValue(name: string, value: unknown): RosParamValue {
  const t = PARAMETER_TYPES[name];
  return t === 'integer' ? BigInt(value as number) : t === 'integer_array' ? (value as number[]).map((x) => BigInt(x)) : (value as RosParamValue);
}

/**
 * A live node's parameter values as configFromParams takes them: integers as numbers, and
 * parameters left empty dropped (an empty string, or an empty list where one is required), so
 * that the schema's defaults and "missing parameter" apply.
 */
export function valuesFromRos(params: Iterable<{ name: string; value: unknown }>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of params) {
    if (!(p.name in PARAMETER_TYPES)) continue;
    const v = typeof p.value === 'bigint' ? Number(p.value) : Array.isArray(p.value) ? p.value.map((x: unknown) => (typeof x === 'bigint' ? Number(x) : x)) : p.value;
    if (v === '' || (Array.isArray(v) && v.length === 0 && SCHEMA.required.includes(p.name))) continue;
    // A live node declares every parameter with its default, so a calibrated option still at its
    // default cannot be told from one left unset: it is treated as unset (calibration may set it).
    if (CALIBRATED_PARAMS.has(p.name) && JSON.stringify(v) === JSON.stringify(SCHEMA.properties[p.name]?.default)) continue;
    out[p.name] = v;
  }
  return out;
}

/** The node parameter of each prune option. */
export const PRUNE_OPTION_PARAMS: Readonly<Record<PruneOptionKey, keyof RawParams>> = Object.freeze({
  x0: 'autoprune_x0',
  k0: 'autoprune_k0',
  gamma: 'autoprune_gamma',
  recycle: 'prune_recycle',
  reindexPositions: 'prune_reindex_positions',
  scoreRows: 'prune_score_rows',
  parity: 'prune_parity',
  fastvLayer: 'fastv_layer',
  pdropLayers: 'pdrop_layers',
});

/** The parameters calibration can set (those of some policy's tuned options). */
const CALIBRATED_PARAMS: ReadonlySet<string> = new Set(Object.values(TUNED_OPTIONS).flatMap((keys) => keys.map((k) => PRUNE_OPTION_PARAMS[k])));

export interface NodeConfig {
  raw: RawParams;
  engine: EngineConfig;
  node: Omit<NodeParams, 'modelName'>;
  /**
   * The prune options of the parameters whatever the policy (node.prune carries them when the
   * policy prunes): replay and evaluate sweeps start from them, CLI flags override them.
   */
  pruneOptions: PruneOptionSet;
  /**
   * The prune options the user set (a parameter present in the file, a CLI flag): they win over
   * the model's calibration, which sets the others (docs/autoprune.md, "Calibration").
   */
  explicitPruneOptions: PruneOptionKey[];
}

/** The prune options besides policy and budget that every path can set (PRUNE_OPTION_DEFAULTS). */
export type PruneOptionSet = Required<Pick<NativePruneOptions, 'x0' | 'k0' | 'gamma' | 'recycle' | 'reindexPositions' | 'scoreRows' | 'parity' | 'fastvLayer' | 'pdropLayers'>>;

/** Sets prune options in a loaded config (CLI flags): in its option set and in node.prune. */
export function overridePruneOptions(config: NodeConfig, o: Partial<NativePruneOptions>): void {
  const set = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<PruneOptionSet>;
  config.pruneOptions = { ...config.pruneOptions, ...set };
  config.explicitPruneOptions = [...new Set([...config.explicitPruneOptions, ...(Object.keys(set) as PruneOptionKey[])])];
  if (config.node.prune) config.node.prune = { ...config.node.prune, ...set, explicit: config.explicitPruneOptions };
}

/** What Engine.load needs from the parameters. */
export interface EngineConfig {
  modelPath: string;
  backend: BackendName;
  threads: number;
  device: number;
  weightDtype: RawParams['weight_dtype'];
  maxActivationMiB: number;
  /** Take unset prune options from the model's calibration.json (use_calibration). */
  calibration: boolean;
}

/** The Engine.load options of a configuration. */
export function engineLoadOptions(e: EngineConfig): { backend: BackendName; threads: number; device: number; weightDtype: RawParams['weight_dtype']; maxActivationMiB: number; calibration: boolean } {
  return { backend: e.backend, threads: e.threads, device: e.device, weightDtype: e.weightDtype, maxActivationMiB: e.maxActivationMiB, calibration: e.calibration };
}

let validator: ReturnType<Ajv['compile']> | undefined;

function validate(values: Record<string, unknown>, where: string): RawParams {
  if (!validator) {
    const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: true });
    // The policies come from the one list (a test keeps the schema file's enum equal to it).
    const schema = structuredClone(SCHEMA) as ParamsSchema;
    (schema.properties.pruning_policy as SchemaProperty).enum = [...PRUNE_POLICIES];
    validator = ajv.compile(schema);
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
  // Their range against the model's depth is the engine's to check (VLA_E_INPUT at inference).
  if (p.pdrop_layers.some((l, i) => i > 0 && l <= (p.pdrop_layers[i - 1] as number))) {
    throw new VlaError(ErrorCodes.PARAMS, `${where}: pdrop_layers [${p.pdrop_layers.join(', ')}] must be strictly increasing`);
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
  const pruneOptions: PruneOptionSet = {
    x0: raw.autoprune_x0,
    k0: raw.autoprune_k0,
    gamma: raw.autoprune_gamma,
    recycle: raw.prune_recycle,
    reindexPositions: raw.prune_reindex_positions,
    scoreRows: raw.prune_score_rows,
    parity: raw.prune_parity,
    fastvLayer: raw.fastv_layer,
    pdropLayers: raw.pdrop_layers,
  };
  const explicitPruneOptions = (Object.keys(PRUNE_OPTION_PARAMS) as PruneOptionKey[]).filter((k) => values[PRUNE_OPTION_PARAMS[k]] !== undefined);
  const prune: PruneRequest | undefined =
    raw.pruning_policy === 'none'
      ? undefined
      : {
          policy: raw.pruning_policy,
          // deadline mode: the controller sets a tokens budget per frame
          ...(latency ? {} : { budget: { kind: raw.budget_kind as 'tokens' | 'flops', value: raw.budget_value } }),
          ...pruneOptions,
          explicit: explicitPruneOptions,
        };
  const qos = { ...QOS_SENSOR_DATA, reliability: raw.camera_reliability, depth: raw.camera_qos_depth };
  return {
    raw,
    engine: { modelPath: raw.model_path, backend: raw.backend, threads: raw.threads, device: raw.cuda_device, weightDtype: raw.weight_dtype, maxActivationMiB: raw.max_activation_mib, calibration: raw.use_calibration },
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
      inferenceTimeoutMs: raw.inference_timeout_ms,
      prune,
      ...(latency ? { deadlineMs: raw.budget_value } : {}),
    },
    pruneOptions,
    explicitPruneOptions,
  };
}

/**
 * Reads a ROS 2 parameter file: `<node>: ros__parameters: {...}` (or `/**:`). Overrides (for
 * example from the command line) are applied on top before validation.
 */
export function loadParamsFile(file: string, overrides: Record<string, unknown> = {}, nodeName = 'autoprune_ros'): NodeConfig {
  let doc: unknown;
  try {
    // Only a regular file, bounded: a FIFO or a device in its place must not hang the node.
    doc = parseYaml(readRegularFileSync(file, MAX_PARAMS_FILE_BYTES, { missing: ErrorCodes.PARAMS, other: ErrorCodes.PARAMS }).toString('utf8'));
  } catch (err) {
    if (err instanceof VlaError) throw err;
    throw new VlaError(ErrorCodes.PARAMS, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const root = (doc ?? {}) as Record<string, { ros__parameters?: Record<string, unknown> }>;
  const section = root[nodeName] ?? root[`/${nodeName}`] ?? root['/**'];
  if (!section || typeof section !== 'object' || typeof section.ros__parameters !== 'object' || section.ros__parameters === null) {
    throw new VlaError(ErrorCodes.PARAMS, `${file}: no '${nodeName}: ros__parameters:' section`, { file });
  }
  return configFromParams({ ...section.ros__parameters, ...overrides }, file);
}
