import assert from 'node:assert/strict';

import { TrackingController, type PlanPoint } from '../../src/control/tracker.js';
import { SYNTHETIC_CAR, checkVehicleParams, type VehicleParams } from '../../src/control/vehicle.js';
import { stepBicycle, type BicycleState } from '../../src/sim/bicycle.js';
import { ErrorCodes, isVlaError } from '../../src/util/errors.js';

const TIMES = [0.5, 1, 1.5, 2, 2.5, 3];
const straight = (v: number, y = 0): PlanPoint[] => TIMES.map((tS) => ({ tS, x: v * tS, y }));
/** Points on a circle of radius r (left positive) driven at speed v from the origin heading +x. */
const arc = (v: number, r: number): PlanPoint[] => TIMES.map((tS) => ({ tS, x: r * Math.sin((v * tS) / r), y: r * (1 - Math.cos((v * tS) / r)) }));
const origin = { x: 0, y: 0, yaw: 0 };

describe('tracking controller (src/control)', () => {
  const ctl = new TrackingController(SYNTHETIC_CAR);

  it('on a straight plan at its own speed: no steering, pedals near rest', () => {
    const c = ctl.control({ plan: straight(10), elapsedS: 0, pose: origin, speedMps: 10 });
    assert.ok(Math.abs(c.steerRad) < 1e-9, `steer ${c.steerRad}`);
    assert.ok(Math.abs(c.accelMps2) < 0.05, `accel ${c.accelMps2}`);
    assert.equal(c.throttle > 0 && c.brake > 0, false);
    assert.ok(Math.abs(c.targetSpeedMps - 10) < 1e-6);
  });

  it('speeds up for a faster plan and brakes for a slower one', () => {
    assert.ok(ctl.control({ plan: straight(12), elapsedS: 0, pose: origin, speedMps: 8 }).throttle > 0.5);
    const slow = ctl.control({ plan: straight(4), elapsedS: 0, pose: origin, speedMps: 8 });
    assert.ok(slow.brake > 0 && slow.throttle === 0);
  });

  it('steers towards the plan: left of the ego is a left turn (positive), right a right one', () => {
    assert.ok(ctl.control({ plan: straight(8, 1.5), elapsedS: 0, pose: origin, speedMps: 8 }).steerRad > 0.02);
    assert.ok(ctl.control({ plan: straight(8, -1.5), elapsedS: 0, pose: origin, speedMps: 8 }).steerRad < -0.02);
  });

  it('on a circular plan asks for about the circle\'s road-wheel angle', () => {
    // within 15%: the look-ahead point lies on the chords between waypoints 3 m apart, inside the circle
    for (const r of [-20, 12, 30]) {
      const c = ctl.control({ plan: arc(6, r), elapsedS: 0, pose: origin, speedMps: 6 });
      const want = Math.atan(SYNTHETIC_CAR.wheelbaseM / r);
      assert.ok(Math.abs(c.steerRad - want) < 0.15 * Math.abs(want), `r ${r}: ${c.steerRad} vs ${want}`);
    }
  });

  it('a plan that comes to rest: brakes hard enough to stop where it ends, then holds', () => {
    // rest 10 m ahead; the plan's own speed profile is already slow, the ego is not
    const plan: PlanPoint[] = [{ tS: 0.5, x: 4, y: 0 }, { tS: 1, x: 7, y: 0 }, { tS: 1.5, x: 9, y: 0 }, { tS: 2, x: 10, y: 0 }, { tS: 2.5, x: 10, y: 0 }, { tS: 3, x: 10, y: 0 }];
    const c = ctl.control({ plan, elapsedS: 0, pose: origin, speedMps: 8 });
    assert.ok(c.stopping);
    assert.ok(c.accelMps2 <= -(8 * 8) / (2 * 10), `accel ${c.accelMps2}`);
    const hold = ctl.control({ plan, elapsedS: 2.5, pose: { x: 9.9, y: 0, yaw: 0 }, speedMps: 0 });
    assert.ok(hold.brake > 0 && hold.throttle === 0 && hold.stopping);
  });

  it('follows a stale plan in the frame it was made in (the ego has moved on since its stamp)', () => {
    // the plan was made 0.5 s ago 5 m behind: the reference now is 5 m ahead of the stamp, where the ego is
    const c = ctl.control({ plan: straight(10), elapsedS: 0.5, pose: { x: 5, y: 0, yaw: 0 }, speedMps: 10 });
    assert.ok(Math.abs(c.accelMps2) < 0.05 && Math.abs(c.steerRad) < 1e-9);
    // the ego lags 2 m behind the reference: it speeds up
    assert.ok(ctl.control({ plan: straight(10), elapsedS: 0.5, pose: { x: 3, y: 0, yaw: 0 }, speedMps: 10 }).throttle > 0);
  });

  it('closed loop with the bicycle model: tracks a circle re-planned every 0.1 s to within 0.3 m', () => {
    const r = 25, v = 8;
    let s: BicycleState = { x: 0, y: -0.5, yaw: 0, v, steerRad: 0, accelMps2: 0, yawRate: 0 };
    let worst = 0;
    for (let i = 0; i < 600; i++) {
      const tS = i * 0.01;
      if (i % 10 === 0) worst = i > 300 ? Math.max(worst, Math.abs(Math.hypot(s.x, s.y - r) - r)) : worst;
      // the plan: the circle x = r sin(phi), y = r (1 - cos phi), from the ego's angle on it, in the ego frame
      const phi0 = Math.atan2(s.x, r - s.y);
      const plan = TIMES.map((t) => {
        const phi = phi0 + (v * t) / r;
        const wx = r * Math.sin(phi), wy = r * (1 - Math.cos(phi));
        const dx = wx - s.x, dy = wy - s.y;
        return { tS: t, x: dx * Math.cos(s.yaw) + dy * Math.sin(s.yaw), y: -dx * Math.sin(s.yaw) + dy * Math.cos(s.yaw) };
      });
      s = stepBicycle(s, ctl.control({ plan, elapsedS: 0, pose: origin, speedMps: s.v }), SYNTHETIC_CAR, 0.01);
      void tS;
    }
    assert.ok(worst < 0.3, `radial error ${worst} m`);
    assert.ok(Math.abs(s.v - v) < 0.3, `speed ${s.v}`);
  });

  it('stopCommand brakes straight at the asked deceleration, within the vehicle\'s limits', () => {
    const c = ctl.stopCommand(0.1, 4);
    assert.equal(c.throttle, 0);
    assert.ok(Math.abs(c.brake - 4 / SYNTHETIC_CAR.maxDecelMps2) < 1e-12);
    assert.equal(ctl.stopCommand(0, 100).brake, 1);
  });

  it('bad plans and bad parameters are coded errors', () => {
    const bad = (fn: () => unknown, code: string) => assert.throws(fn, (e: unknown) => isVlaError(e) && e.code === code);
    bad(() => ctl.control({ plan: [], elapsedS: 0, pose: origin, speedMps: 1 }), ErrorCodes.INPUT);
    bad(() => ctl.control({ plan: [{ tS: 0.5, x: Number.NaN, y: 0 }], elapsedS: 0, pose: origin, speedMps: 1 }), ErrorCodes.INPUT);
    bad(() => ctl.control({ plan: [{ tS: 1, x: 1, y: 0 }, { tS: 0.5, x: 2, y: 0 }], elapsedS: 0, pose: origin, speedMps: 1 }), ErrorCodes.INPUT);
    bad(() => ctl.control({ plan: straight(5), elapsedS: Number.NaN, pose: origin, speedMps: 1 }), ErrorCodes.INPUT);
    bad(() => checkVehicleParams({ ...SYNTHETIC_CAR, wheelbaseM: 0 }), ErrorCodes.SIM_CONFIG);
    bad(() => checkVehicleParams({ ...SYNTHETIC_CAR, maxSteerRad: 2 }), ErrorCodes.SIM_CONFIG);
    bad(() => checkVehicleParams({ ...SYNTHETIC_CAR, bodyRearM: -1 } as VehicleParams), ErrorCodes.SIM_CONFIG);
    bad(() => new TrackingController(SYNTHETIC_CAR, { lookaheadMinM: 0 }), ErrorCodes.SIM_CONFIG);
  });
});

describe('kinematic bicycle model (src/sim/bicycle)', () => {
  const s0: BicycleState = { x: 0, y: 0, yaw: 0, v: 5, steerRad: 0, accelMps2: 0, yawRate: 0 };

  it('does not reverse under the brake, and stands still with zero acceleration', () => {
    let s = s0;
    for (let i = 0; i < 400; i++) s = stepBicycle(s, { steerRad: 0, throttle: 0, brake: 1 }, SYNTHETIC_CAR, 0.01);
    assert.equal(s.v, 0);
    assert.equal(s.accelMps2, 0);
    assert.ok(s.x > 0 && s.x < 5);
  });

  it('limits the steering rate and lags the acceleration', () => {
    const s = stepBicycle(s0, { steerRad: 0.5, throttle: 1, brake: 0 }, SYNTHETIC_CAR, 0.1);
    assert.ok(Math.abs(s.steerRad - SYNTHETIC_CAR.maxSteerRateRadps * 0.1) < 1e-12);
    assert.ok(s.accelMps2 > 0 && s.accelMps2 < SYNTHETIC_CAR.maxAccelMps2);
  });

  it('turns on a circle of radius wheelbase / tan(steer) (base_link on the rear axle)', () => {
    let s: BicycleState = { ...s0, steerRad: 0.2 };
    for (let i = 0; i < 2000; i++) s = stepBicycle(s, { steerRad: 0.2, throttle: 0, brake: 0 }, SYNTHETIC_CAR, 0.005);
    const r = SYNTHETIC_CAR.wheelbaseM / Math.tan(0.2);
    assert.ok(Math.abs(Math.hypot(s.x, s.y - r) - r) < 0.05);
  });
});
