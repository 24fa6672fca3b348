/**
 * Vehicle parameters shared by the tracking controller (src/control/tracker.ts) and the
 * closed-loop simulator's kinematic bicycle model (src/sim/bicycle.ts). ROS-free.
 *
 * Frames: base_link is the frame the planner's waypoints are given in (x forward, y left). The
 * bicycle's reference point is the rear axle, whose velocity points along the heading;
 * `baseLinkAheadOfRearAxleM` places base_link on the centre line ahead of it (0: base_link is
 * the rear axle, as in the synthetic world, whose expert paths are rear-axle paths of base_link).
 */
import { ErrorCodes, VlaError } from '../util/errors.js';

export interface VehicleParams {
  /** Rear axle to front axle, m. */
  wheelbaseM: number;
  /** base_link this far ahead of the rear axle on the centre line, m (may be 0). */
  baseLinkAheadOfRearAxleM: number;
  /** Largest road-wheel angle either way, rad. */
  maxSteerRad: number;
  /** Road-wheel angle rate limit, rad/s. */
  maxSteerRateRadps: number;
  /** Full throttle gives this acceleration, m/s^2. */
  maxAccelMps2: number;
  /** Full brake gives this deceleration (positive), m/s^2. */
  maxDecelMps2: number;
  /** First-order lag from commanded to actual acceleration (powertrain, brakes), s; 0: none. */
  accelTimeConstantS: number;
  /** Body around base_link: front bumper ahead of it, rear bumper behind it, width, m. */
  bodyFrontM: number;
  bodyRearM: number;
  bodyWidthM: number;
}

/**
 * A mid-size car in the synthetic world: the body of src/sample/scenario.ts (1.0 m ahead of
 * base_link, 3.5 m behind, 1.8 m wide), base_link on the rear axle.
 */
export const SYNTHETIC_CAR: Readonly<VehicleParams> = Object.freeze({
  wheelbaseM: 2.7,
  baseLinkAheadOfRearAxleM: 0,
  maxSteerRad: 0.6,
  maxSteerRateRadps: 1.2,
  maxAccelMps2: 3.0,
  maxDecelMps2: 8.0,
  accelTimeConstantS: 0.2,
  bodyFrontM: 1.0,
  bodyRearM: 3.5,
  bodyWidthM: 1.8,
});

const POSITIVE: Array<keyof VehicleParams> = ['wheelbaseM', 'maxSteerRad', 'maxSteerRateRadps', 'maxAccelMps2', 'maxDecelMps2', 'bodyWidthM'];
const NON_NEGATIVE: Array<keyof VehicleParams> = ['baseLinkAheadOfRearAxleM', 'accelTimeConstantS', 'bodyFrontM', 'bodyRearM'];

/** Checks every field (finite, in range); throws VLA_E_SIM_CONFIG naming the field. */
export function checkVehicleParams(p: VehicleParams, where = 'vehicle'): VehicleParams {
  if (!p || typeof p !== 'object') throw new VlaError(ErrorCodes.SIM_CONFIG, `${where}: vehicle parameters must be an object`);
  for (const k of POSITIVE) {
    const v = p[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new VlaError(ErrorCodes.SIM_CONFIG, `${where}: ${k} must be a positive number, got ${String(v)}`, { field: k });
  }
  for (const k of NON_NEGATIVE) {
    const v = p[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new VlaError(ErrorCodes.SIM_CONFIG, `${where}: ${k} must be a non-negative number, got ${String(v)}`, { field: k });
  }
  if (p.maxSteerRad >= Math.PI / 2) throw new VlaError(ErrorCodes.SIM_CONFIG, `${where}: maxSteerRad must be below pi/2, got ${p.maxSteerRad}`, { field: 'maxSteerRad' });
  return p;
}
