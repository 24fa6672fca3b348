/**
 * The CARLA control node's parameters: configs/carla_control.schema.json is the contract (types,
 * defaults, ranges); this declares nothing of its own beyond the mapping to CarlaControlParams.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Ajv, type ErrorObject } from 'ajv';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { CONFIG_DIR } from '../util/paths.js';
import { CARLA_LINCOLN_MKZ, type CarlaControlParams } from './control.js';

export const CARLA_CONTROL_SCHEMA = path.join(CONFIG_DIR, 'carla_control.schema.json');

interface Prop {
  type: 'string' | 'number';
  default: string | number;
}
const SCHEMA = JSON.parse(readFileSync(CARLA_CONTROL_SCHEMA, 'utf8')) as { properties: Record<string, Prop> };

/** Each parameter with its ROS type and default (declare them all; overrides replace the defaults). */
export function carlaControlDeclarations(): Array<{ name: string; type: 'string' | 'double'; value: string | number }> {
  return Object.entries(SCHEMA.properties).map(([name, p]) => ({ name, type: p.type === 'number' ? 'double' : 'string', value: p.default }));
}

let validate: ReturnType<Ajv['compile']> | undefined;

/** Validates a full set and maps it; VLA_E_PARAMS naming the parameter. */
export function carlaControlParams(values: Record<string, unknown>, where = 'carla_control parameters'): CarlaControlParams {
  validate ??= new Ajv({ useDefaults: true, allErrors: true, strict: true }).compile(SCHEMA);
  const v = structuredClone(values);
  if (!validate(v)) {
    const msg = (validate.errors ?? []).map((e: ErrorObject) => `${e.instancePath.slice(1) || (e.params as { additionalProperty?: string }).additionalProperty || ''} ${e.message ?? ''}`.trim()).join('; ');
    throw new VlaError(ErrorCodes.PARAMS, `${where}: ${msg}`);
  }
  const p = v as Record<string, never>;
  return {
    speedometerTopic: p.speedometer_topic,
    imuTopic: p.imu_topic,
    gnssTopic: p.gnss_topic,
    routeTopic: p.route_topic,
    trajectoryTopic: p.trajectory_topic,
    controlTopic: p.control_topic,
    instructionTopic: p.instruction_topic,
    statusTopic: p.status_topic,
    previewM: p.preview_m,
    maxPlanAgeS: p.max_plan_age_s,
    stopDecelMps2: p.stop_decel_mps2,
    geoReference: { latDeg: p.geo_reference_lat_deg, lonDeg: p.geo_reference_lon_deg },
    vehicle: { ...CARLA_LINCOLN_MKZ, wheelbaseM: p.wheelbase_m, maxSteerRad: ((p.max_steer_deg as number) * Math.PI) / 180, maxAccelMps2: p.max_accel_mps2, maxDecelMps2: p.max_decel_mps2 },
  };
}
