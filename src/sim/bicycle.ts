/**
 * The ego's motion: a kinematic bicycle model (no slip; the rear axle's velocity points along
 * the heading), with the steering angle rate-limited and the acceleration following the pedal
 * command through a first-order lag. The car does not reverse. State and pose are base_link's
 * (src/control/vehicle.ts places it relative to the rear axle).
 */
import type { ControlCommand } from '../control/tracker.js';
import type { VehicleParams } from '../control/vehicle.js';

export interface BicycleState {
  /** base_link in the world frame (odom), m and rad. */
  x: number;
  y: number;
  yaw: number;
  /** Rear-axle speed along the heading, m/s (>= 0). */
  v: number;
  /** Road-wheel angle, rad. */
  steerRad: number;
  /** Actual longitudinal acceleration, m/s^2. */
  accelMps2: number;
  /** Yaw rate over the last step, rad/s. */
  yawRate: number;
}

const clamp = (v: number, a: number, b: number) => Math.min(b, Math.max(a, v));

/** The state after dtS under the pedals and steering of `cmd` (midpoint integration). */
export function stepBicycle(s: BicycleState, cmd: Pick<ControlCommand, 'steerRad' | 'throttle' | 'brake'>, p: VehicleParams, dtS: number): BicycleState {
  const maxStep = p.maxSteerRateRadps * dtS;
  const steerTarget = clamp(cmd.steerRad, -p.maxSteerRad, p.maxSteerRad);
  const steer = s.steerRad + clamp(steerTarget - s.steerRad, -maxStep, maxStep);
  const aCmd = clamp(cmd.throttle, 0, 1) * p.maxAccelMps2 - clamp(cmd.brake, 0, 1) * p.maxDecelMps2;
  const lag = p.accelTimeConstantS > 0 ? Math.min(1, dtS / p.accelTimeConstantS) : 1;
  let a = s.accelMps2 + (aCmd - s.accelMps2) * lag;
  let v = s.v + a * dtS;
  if (v < 0) {
    // brakes hold the car at rest; they do not push it backwards
    v = 0;
    a = s.v > 0 ? -s.v / dtS : Math.max(0, a);
  }
  const vMid = (s.v + v) / 2;
  const yawRate = (vMid * Math.tan((s.steerRad + steer) / 2)) / p.wheelbaseM;
  const yaw = s.yaw + yawRate * dtS;
  // move the rear axle along the mean heading, then put base_link back ahead of it
  const d = p.baseLinkAheadOfRearAxleM;
  const rx = s.x - d * Math.cos(s.yaw), ry = s.y - d * Math.sin(s.yaw);
  const mid = (s.yaw + yaw) / 2;
  const nrx = rx + vMid * dtS * Math.cos(mid), nry = ry + vMid * dtS * Math.sin(mid);
  return { x: nrx + d * Math.cos(yaw), y: nry + d * Math.sin(yaw), yaw, v, steerRad: steer, accelMps2: a, yawRate };
}
