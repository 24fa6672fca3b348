import assert from 'node:assert/strict';

import { renderView } from '../../src/sample/render.js';
import {
  CROSSING_HALF_WIDTH_M,
  egoAt,
  egoCollisions,
  futureWaypoints,
  renderOptionsAt,
  retaskScenario,
  ROAD_HALF_WIDTH_M,
  sampleDriveScenario,
  sampleScenario,
  SCENARIO_KINDS,
  INSTRUCTIONS,
  simulateScenario,
  trafficAt,
  type Scenario,
  type ScenarioKind,
} from '../../src/sample/scenario.js';
import { simulateEgo } from '../../src/sample/drive.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const SEEDS = Array.from({ length: 60 }, (_, i) => 1000 + i);
const scenarios = new Map<number, Scenario>();
const scenarioOf = (seed: number) => {
  let sc = scenarios.get(seed);
  if (!sc) scenarios.set(seed, (sc = sampleScenario(seed)));
  return sc;
};

describe('synthetic scenarios', () => {
  it('are deterministic: same seed, same scenario, path and pixels', () => {
    for (const seed of [1000, 1003, 900_001]) {
      const a = sampleScenario(seed), b = sampleScenario(seed);
      assert.deepEqual(a, b);
      const sa = simulateScenario(a), sb = simulateScenario(b);
      assert.deepEqual(sa.x, sb.x);
      assert.deepEqual(sa.yaw, sb.yaw);
      const t = a.durationS / 2;
      assert.deepEqual(renderView(renderOptionsAt(a, sa, t, 'front', 96, 54)).data, renderView(renderOptionsAt(b, sb, t, 'front', 96, 54)).data);
    }
    assert.notDeepEqual(sampleScenario(1000), sampleScenario(1001));
  });

  it('cover every kind in 60 seeds, with their phrasings and the stated ranges', () => {
    const kinds = new Set<ScenarioKind>();
    const complexity = new Set<string>();
    for (const seed of SEEDS) {
      const sc = scenarioOf(seed);
      kinds.add(sc.kind);
      complexity.add(sc.complexity);
      assert.ok(INSTRUCTIONS[sc.kind].includes(sc.instruction), sc.instruction);
      assert.ok(sc.durationS >= 8 && sc.durationS <= 14, `${seed}: duration ${sc.durationS}`);
      assert.ok(sc.ego.initialSpeedMps >= 3 && sc.ego.initialSpeedMps <= 13, `${seed}: v0 ${sc.ego.initialSpeedMps}`);
      assert.ok(sc.traffic.length <= 6, `${seed}: ${sc.traffic.length} objects`);
      assert.ok(sc.light >= 0.6 && sc.light <= 1.15);
      if (sc.kind === 'turn_left' || sc.kind === 'turn_right' || sc.kind === 'stop_at_intersection') {
        assert.ok(sc.intersectionSM !== null && sc.intersectionSM >= 20 && sc.intersectionSM <= 70, `${seed}: intersection ${sc.intersectionSM}`);
      }
      if (sc.kind === 'turn_left') assert.ok(sc.turn && sc.turn.radiusM >= 9 && sc.turn.radiusM <= 11);
      if (sc.kind === 'turn_right') assert.ok(sc.turn && sc.turn.radiusM >= 5.5 && sc.turn.radiusM <= 6.5);
    }
    assert.deepEqual([...kinds].sort(), [...SCENARIO_KINDS].sort());
    assert.deepEqual([...complexity].sort(), ['high', 'low', 'medium']);
    // roughly equal shares
    const counts = new Map<ScenarioKind, number>();
    for (let seed = 2000; seed < 2700; seed++) {
      const k = sampleScenario(seed).kind;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    for (const k of SCENARIO_KINDS) assert.ok((counts.get(k) ?? 0) > 60 && (counts.get(k) ?? 0) < 150, `${k}: ${counts.get(k)}`);
  });

  it('the instruction alone changes the future path in the same world', () => {
    let checked = 0;
    for (const seed of [1000, 1017, 1037, 1100, 1200]) {
      const turn = sampleScenario(seed, { kind: 'turn_left' });
      const simTurn = simulateScenario(turn);
      const tA = simTurn.events.arcStartS as number;
      assert.ok(tA > 0, `${seed}: the turn starts`);
      const t0 = Math.max(0, tA - 1.5);
      const keep = retaskScenario(turn, 'keep_lane');
      const change = retaskScenario(turn, 'change_left', { laneChangeStartS: t0 });
      assert.deepEqual(keep.road, turn.road);
      assert.equal(keep.intersectionSM, turn.intersectionSM);
      const w = (sc: Scenario) => futureWaypoints(simulateScenario(sc), t0);
      const [wk, wc, wt] = [w(keep), w(change), w(turn)];
      const last = (p: Array<[number, number]>) => p[p.length - 1] as [number, number];
      assert.ok(Math.abs(last(wk)[1]) < 0.5, `${seed}: keep lane goes straight ${last(wk)}`);
      assert.ok(last(wc)[1] > 1.5, `${seed}: the lane change goes left ${last(wc)}`);
      assert.ok(last(wt)[1] > 2, `${seed}: the turn goes left ${last(wt)}`);
      const dist = (a: [number, number], b: [number, number]) => Math.hypot(a[0] - b[0], a[1] - b[1]);
      assert.ok(dist(last(wk), last(wc)) > 1.5 && dist(last(wk), last(wt)) > 2 && dist(last(wc), last(wt)) > 1, `${seed}: ${last(wk)} ${last(wc)} ${last(wt)}`);
      checked++;
    }
    assert.equal(checked, 5);
    assert.throws(() => retaskScenario({ ...sampleScenario(1000, { kind: 'keep_lane' }), intersectionSM: null }, 'turn_right'), (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
  });

  it('stop_behind ends standing 1.5-5 m behind the stopped car, braking at most 4 m/s^2', () => {
    let n = 0;
    for (let seed = 1000; n < 8 && seed < 1200; seed++) {
      const sc = sampleScenario(seed);
      if (sc.kind !== 'stop_behind') continue;
      n++;
      const sim = simulateScenario(sc);
      const end = egoAt(sim, sc.durationS);
      const gap = trafficAt(sim, sc.stop?.vehicle as number, sc.durationS) - end.s;
      assert.ok(end.v < 0.05, `${seed}: still at ${end.v} m/s`);
      assert.ok(gap >= 1.5 && gap <= 5, `${seed}: gap ${gap}`);
      const lead = sc.traffic[sc.stop?.vehicle as number];
      assert.ok(lead && lead.lane === 0 && lead.sM >= 12 && lead.sM <= 50);
    }
    assert.equal(n, 8);
    for (const seed of SEEDS) {
      const sim = simulateScenario(scenarioOf(seed));
      for (let i = 1; i < sim.n; i++) assert.ok(((sim.v[i - 1] as number) - (sim.v[i] as number)) / sim.dtS <= 4 + 1e-6, `${seed}: braking at ${i}`);
    }
  });

  it('keeps the ego on the road (the crossing road only when turning) and clear of all traffic', () => {
    for (const seed of SEEDS) {
      const sc = scenarioOf(seed);
      const sim = simulateScenario(sc);
      assert.deepEqual(egoCollisions(sim), [], `${seed}: collides`);
      for (let t = 0; t <= sc.durationS + 3; t += 0.1) {
        const e = egoAt(sim, t);
        const turning = sc.turn !== null && e.s >= sc.turn.arcStartSM - 1e-6;
        if (!turning) assert.ok(Math.abs(e.l) <= ROAD_HALF_WIDTH_M - 0.9, `${seed} t ${t.toFixed(1)}: lateral ${e.l}`);
        else assert.ok(Math.abs(e.l) <= ROAD_HALF_WIDTH_M || Math.abs(e.s - (sc.intersectionSM as number)) <= CROSSING_HALF_WIDTH_M, `${seed} t ${t.toFixed(1)}: off the roads at s ${e.s}, l ${e.l}`);
      }
      if (sc.turn) {
        const end = egoAt(sim, sc.durationS);
        assert.ok(Math.abs(Math.abs(end.psi) - Math.PI / 2) < 1e-6 && Math.sign(end.l) === sc.turn.direction, `${seed}: on the crossing road at the end`);
      }
      if (sc.laneChange) assert.ok(Math.abs(egoAt(sim, sc.durationS + 3).l - 3.5 * sc.laneChange.direction) < 0.05, `${seed}: in the new lane`);
    }
  });

  it('futureWaypoints at constant speed on a straight road are (v dt i, 0)', () => {
    const base = sampleScenario(1001, { kind: 'keep_lane' });
    const sc: Scenario = { ...base, traffic: [], road: { rampM: 15, bends: [] }, intersectionSM: null, ego: { initialSpeedMps: 10, cruiseSpeedMps: 10 } };
    const sim = simulateScenario(sc);
    for (const t of [0, 2.37]) {
      const w = futureWaypoints(sim, t);
      assert.equal(w.length, 6);
      w.forEach(([x, y], i) => {
        assert.ok(Math.abs(x - 10 * 0.5 * (i + 1)) < 1e-6, `${x}`);
        assert.ok(Math.abs(y) < 1e-9, `${y}`);
      });
    }
    assert.equal(futureWaypoints(sim, 0, 3, 1).length, 3);
    const e = egoAt(sim, 5);
    assert.ok(Math.abs(e.x - 50) < 1e-6 && Math.abs(e.y) < 1e-9 && e.v === 10 && e.yawRate === 0);
  });

  it('render options follow the ego: lane offset, heading, the crossing road ahead after a turn', () => {
    const sc = sampleScenario(1000, { kind: 'turn_left' });
    const sim = simulateScenario(sc);
    const start = renderOptionsAt(sc, sim, 0, 'front', 64, 36);
    assert.equal(start.egoLateralM, 0);
    assert.equal(start.egoHeadingRad, 0);
    assert.ok(Math.abs((start.intersection as number) - (sc.intersectionSM as number)) < 1e-9);
    const after = renderOptionsAt(sc, sim, sc.durationS, 'front', 64, 36);
    assert.ok(Math.abs((after.egoHeadingRad as number) - Math.PI / 2) < 1e-6);
    assert.ok((after.egoLateralM as number) > 8 && Math.abs(after.intersection as number) < 1);
    const change = sampleScenario(1003, { kind: 'change_left' });
    const cs = simulateScenario(change);
    assert.ok(Math.abs((renderOptionsAt(change, cs, change.durationS, 'front', 64, 36).egoLateralM as number) - 3.5) < 0.05);
  });

  it('the sample drive is a scenario: the original road and speed, two instructions', () => {
    const sc = sampleDriveScenario();
    assert.equal(sc.laterInstructions.length, 1);
    const e = simulateEgo([0, 4, 8], sc);
    assert.ok(Math.abs((e[1] as { sM: number }).sM - 32) < 1e-6, 'pulls away from 6 to 10 m/s in 4 s');
    assert.ok(Math.abs((e[2] as { yaw: number }).yaw - 0.444) < 0.002, 'then the left bend');
    assert.deepEqual(simulateEgo([3.3]), simulateEgo([3.3], sc));
  });

  it('rejects bad seeds and kinds with VLA_E_ARGS', () => {
    const args = (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.ARGS;
    assert.throws(() => sampleScenario(-1), args);
    assert.throws(() => sampleScenario(1.5), args);
    assert.throws(() => sampleScenario(2 ** 31), args);
    assert.throws(() => sampleScenario(5, { kind: 'fly' as ScenarioKind }), args);
    assert.throws(() => simulateScenario({ ...sampleScenario(5), durationS: -1 }), (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
  });
});
