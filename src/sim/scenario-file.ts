/**
 * Hand-made scenarios: a JSON file holding a Scenario (src/sample/scenario.ts), as every drive's
 * report.json carries one under scenario.spec. The file is checked against a JSON schema (ajv)
 * and for consistency before anything runs; every fault is a VLA_E_SCENARIO naming the file and
 * the field.
 */

import { Ajv, type ErrorObject } from 'ajv';

import { complexityOf, SCENARIO_KINDS, simulateScenario, type Scenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFileSync } from '../util/fsafe.js';

const num = { type: 'number' };
const pos = { type: 'number', exclusiveMinimum: 0 };
const knots = { type: 'array', minItems: 1, items: { type: 'array', minItems: 2, maxItems: 2, items: { type: 'number' } } };
const dir = { enum: [1, -1] };

/** The scenario file's contract. Optional fields get the defaults shown. */
export const SCENARIO_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['seed', 'kind', 'instruction', 'durationS', 'ego', 'road', 'intersectionSM', 'leftLaneOncoming', 'laneChange', 'turn', 'stop', 'traffic'],
  properties: {
    seed: { type: 'integer', minimum: 0, maximum: 2147483647 },
    kind: { enum: [...SCENARIO_KINDS] },
    instruction: { type: 'string', minLength: 1, maxLength: 4096 },
    laterInstructions: { type: 'array', default: [], items: { type: 'object', additionalProperties: false, required: ['tS', 'text'], properties: { tS: { type: 'number', minimum: 0 }, text: { type: 'string', minLength: 1 } } } },
    durationS: { type: 'number', exclusiveMinimum: 0, maximum: 290 },
    ego: {
      type: 'object',
      additionalProperties: false,
      required: ['initialSpeedMps', 'cruiseSpeedMps'],
      properties: { initialSpeedMps: { type: 'number', minimum: 0, exclusiveMaximum: 60 }, cruiseSpeedMps: { type: 'number', minimum: 0, exclusiveMaximum: 60 }, speedProfile: knots },
    },
    road: {
      type: 'object',
      additionalProperties: false,
      required: ['rampM', 'bends'],
      properties: {
        rampM: { type: 'number', minimum: 0 },
        bends: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['startM', 'endM', 'curvature'], properties: { startM: num, endM: num, curvature: { type: 'number', minimum: -0.2, maximum: 0.2 } } } },
      },
    },
    intersectionSM: { type: ['number', 'null'] },
    leftLaneOncoming: { type: 'boolean' },
    laneChange: { oneOf: [{ type: 'null' }, { type: 'object', additionalProperties: false, required: ['startS', 'durationS', 'direction'], properties: { startS: { type: 'number', minimum: 0 }, durationS: pos, direction: dir } }] },
    turn: {
      oneOf: [
        { type: 'null' },
        { type: 'object', additionalProperties: false, required: ['direction', 'radiusM', 'speedMps', 'arcStartSM', 'exitSpeedMps'], properties: { direction: dir, radiusM: { type: 'number', minimum: 3 }, speedMps: pos, arcStartSM: num, exitSpeedMps: pos } },
      ],
    },
    stop: {
      oneOf: [
        { type: 'null' },
        { type: 'object', additionalProperties: false, required: ['reason', 'targetSM'], properties: { reason: { enum: ['vehicle', 'stop_line'] }, targetSM: num, vehicle: { type: 'integer', minimum: 0 } } },
      ],
    },
    traffic: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['kind', 'lane', 'sM', 'direction', 'speedMps', 'color', 'lengthM', 'widthM', 'heightM'],
        properties: {
          kind: { enum: ['car', 'parked', 'barrier'] },
          lane: { type: 'number', minimum: -2, maximum: 2 },
          sM: num,
          direction: dir,
          speedMps: { type: 'number', minimum: 0, exclusiveMaximum: 60 },
          speedProfile: knots,
          color: { type: 'array', minItems: 3, maxItems: 3, items: { type: 'integer', minimum: 0, maximum: 255 } },
          lengthM: { type: 'number', exclusiveMinimum: 0, maximum: 30 },
          widthM: { type: 'number', exclusiveMinimum: 0, maximum: 4 },
          heightM: { type: 'number', exclusiveMinimum: 0, maximum: 6 },
        },
      },
    },
    light: { type: 'number', minimum: 0, maximum: 3, default: 1 },
    lightWave: { type: 'number', minimum: 0, maximum: 1, default: 0 },
    trees: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
    textureSeed: { type: 'integer', minimum: 0, maximum: 2147483647 },
    complexity: { enum: ['low', 'medium', 'high'] },
    complexityScore: { type: 'number' },
  },
} as const;

let validator: ReturnType<Ajv['compile']> | undefined;

function describe(e: ErrorObject): string {
  const at = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(top level)';
  if (e.keyword === 'additionalProperties') return `${at}: unknown field '${(e.params as { additionalProperty: string }).additionalProperty}'`;
  if (e.keyword === 'required') return `${at}: missing field '${(e.params as { missingProperty: string }).missingProperty}'`;
  return `${at} ${e.message ?? 'is invalid'}`;
}

/** Checks a parsed scenario (schema, then consistency, then a simulation of its expert); returns it with defaults filled in. */
export function checkScenario(value: unknown, where: string): Scenario {
  validator ??= new Ajv({ useDefaults: true, allErrors: true, strict: false }).compile(SCENARIO_SCHEMA);
  const copy = structuredClone(value) as Record<string, unknown>;
  if (!validator(copy)) {
    const msg = (validator.errors ?? []).filter((e) => e.keyword !== 'oneOf').map(describe).slice(0, 6).join('; ');
    throw new VlaError(ErrorCodes.SCENARIO, `${where}: ${msg}`, { file: where });
  }
  const sc = copy as unknown as Scenario;
  sc.textureSeed ??= sc.seed;
  const bad = (what: string) => new VlaError(ErrorCodes.SCENARIO, `${where}: ${what}`, { file: where });
  for (const [i, b] of sc.road.bends.entries()) if (!(b.endM > b.startM)) throw bad(`road.bends.${i}: endM must be after startM`);
  if (sc.stop?.reason === 'vehicle') {
    const j = sc.stop.vehicle;
    if (j === undefined || !sc.traffic[j]) throw bad(`stop.vehicle must name a traffic object (0..${sc.traffic.length - 1}), got ${String(j)}`);
    if ((sc.traffic[j] as { speedMps: number }).speedMps !== 0) throw bad(`stop.vehicle ${j} must stand still (speedMps 0)`);
  }
  if (sc.stop?.reason === 'stop_line' && sc.intersectionSM === null) throw bad('a stop at the line needs an intersection (intersectionSM)');
  if (sc.turn && sc.intersectionSM === null) throw bad('a turn needs an intersection (intersectionSM)');
  if ((sc.kind === 'turn_left' || sc.kind === 'turn_right') && !sc.turn) throw bad(`kind ${sc.kind} needs a turn`);
  if ((sc.kind === 'change_left' || sc.kind === 'change_right') && !sc.laneChange) throw bad(`kind ${sc.kind} needs a laneChange`);
  if ((sc.kind === 'stop_behind' || sc.kind === 'stop_at_intersection') && !sc.stop) throw bad(`kind ${sc.kind} needs a stop`);
  let sim;
  try {
    sim = simulateScenario(sc);
  } catch (err) {
    throw new VlaError(ErrorCodes.SCENARIO, `${where}: ${(err as Error).message}`, { file: where }, { cause: err });
  }
  if (sc.complexity === undefined || sc.complexityScore === undefined) {
    const c = complexityOf(sim);
    sc.complexity ??= c.complexity;
    sc.complexityScore ??= c.score;
  }
  return sc;
}

/** Reads and checks a scenario file. */
export function loadScenarioFile(file: string): Scenario {
  let text: string;
  try {
    text = readRegularFileSync(file, 16 << 20).toString('utf8'); // a regular file only (a FIFO would block)
  } catch (err) {
    if (err instanceof VlaError) throw err;
    throw new VlaError(ErrorCodes.IO, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new VlaError(ErrorCodes.SCENARIO, `${file}: not JSON: ${(err as Error).message}`, { file }, { cause: err });
  }
  // a drive's report.json holds its scenario under scenario.spec
  const spec = (value as { kind?: unknown; scenario?: { spec?: unknown } })?.kind === 'autoprune-ros.drive-report' ? (value as { scenario: { spec: unknown } }).scenario.spec : value;
  return checkScenario(spec, file);
}
