/**
 * A stand-in for the part of rclnodejs 2.2.0 that src/ros/ uses, for machines without ROS 2.
 * It is typed against rclnodejs' own declarations (RclApi and the Publisher, Subscription,
 * Timer, Parameter, ParameterDescriptor and QoS types), so a change of those declarations fails
 * to compile here (test/ros/types.test.ts type-checks this file), and it behaves as
 * rclnodejs' lib/*.js and rcl do where the node depends on it:
 *
 * - `--ros-args`: `-p name:=value`, `--params-file file`, `-r from:=to` (with `__node`, `__ns`),
 *   `--log-level`; values typed as rcl_yaml_param_parser types them (20 is an integer, 20.0 a
 *   double, a quoted scalar a string); overrides apply from `/**` and from the node's bare name
 *   only (lib/node.js _getNativeParameterOverrides), not from a `/ns/name` key;
 * - parameters: an override replaces the declared value, a type that differs from the
 *   descriptor's is refused at declare (ParameterDescriptor.validateParameter), read-only ones
 *   cannot be set, on-set callbacks can veto (lib/node.js _setParametersAtomically);
 * - the lifecycle state machine of lifecycle_msgs (primary and transition states, callbacks run
 *   synchronously, FAILURE back to the start state, ERROR through errorprocessing, an invalid
 *   transition throws), with State objects carrying `id` and `label` as lib/lifecycle.js does;
 * - names: `~/x` and relative topics expanded against the node's namespace and name, remap
 *   rules matched on the expanded names, as rcl does;
 * - raw subscriptions get Buffers, publish takes a Buffer; timers run on a virtual clock.
 */
import { readFileSync } from 'node:fs';

import type * as Rcl from 'rclnodejs';
import { isMap, isScalar, isSeq, parseDocument, Scalar, type Node as YamlNode } from 'yaml';

import type { RclApi, RclLifecycleNode } from '../../src/ros/main.js';

type ParamType = Rcl.ParameterType;
const P = { NOT_SET: 0, BOOL: 1, INTEGER: 2, DOUBLE: 3, STRING: 4, BOOL_ARRAY: 6, INTEGER_ARRAY: 7, DOUBLE_ARRAY: 8, STRING_ARRAY: 9 } as const;

// ---------------------------------------------------------------------------------------------
// rcl: arguments, parameter-file typing, name expansion

interface Override {
  name: string;
  type: ParamType;
  value: unknown;
}

const INT = /^[-+]?(0|[1-9][0-9]*)$/;
const FLOAT = /^[-+]?((\d+\.\d*|\.\d+)([eE][-+]?\d+)?|\d+[eE][-+]?\d+)$/;

/** A plain YAML scalar typed as rcl_yaml_param_parser types it. */
function scalarOf(text: string, quoted: boolean): { type: ParamType; value: unknown } {
  if (quoted) return { type: P.STRING as ParamType, value: text };
  if (/^(true|True|TRUE|false|False|FALSE)$/.test(text)) return { type: P.BOOL as ParamType, value: /^t/i.test(text) };
  if (INT.test(text)) return { type: P.INTEGER as ParamType, value: BigInt(text) };
  if (FLOAT.test(text)) return { type: P.DOUBLE as ParamType, value: Number(text) };
  return { type: P.STRING as ParamType, value: text };
}

function typedValue(node: YamlNode | null, where: string): { type: ParamType; value: unknown } {
  if (isScalar(node)) {
    const s = node as Scalar;
    const quoted = s.type === Scalar.QUOTE_DOUBLE || s.type === Scalar.QUOTE_SINGLE;
    return scalarOf(String(s.source ?? s.value), quoted);
  }
  if (isSeq(node)) {
    const items = node.items.map((i) => typedValue(i as YamlNode, where));
    // rcl cannot give an empty sequence a type
    if (items.length === 0) throw new Error(`${where}: empty sequence: rcl cannot type it`);
    const t = items[0]?.type as number;
    if (items.some((i) => i.type !== t)) throw new Error(`${where}: sequence items of mixed types`);
    const arrayType = { [P.BOOL]: P.BOOL_ARRAY, [P.INTEGER]: P.INTEGER_ARRAY, [P.DOUBLE]: P.DOUBLE_ARRAY, [P.STRING]: P.STRING_ARRAY }[t];
    return { type: arrayType as ParamType, value: items.map((i) => i.value) };
  }
  throw new Error(`${where}: not a parameter value`);
}

/** Parameters of a params file, by node key ('/**', 'name', '/ns/name', ...), as rcl reads them. */
function readParamsFile(file: string): Map<string, Override[]> {
  const doc = parseDocument(readFileSync(file, 'utf8'));
  if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]?.message}`);
  const out = new Map<string, Override[]>();
  if (!isMap(doc.contents)) throw new Error(`${file}: not a map of node names`);
  for (const pair of doc.contents.items) {
    const key = String((pair.key as Scalar).value);
    const section = pair.value;
    if (!isMap(section)) throw new Error(`${file}: '${key}' is not a map`);
    const params = section.items.find((p) => (p.key as Scalar).value === 'ros__parameters')?.value;
    if (!isMap(params)) throw new Error(`${file}: '${key}' has no ros__parameters`);
    const list: Override[] = [];
    const walk = (m: YamlNode, prefix: string) => {
      if (!isMap(m)) return;
      for (const p of m.items) {
        const name = prefix + String((p.key as Scalar).value);
        if (isMap(p.value)) walk(p.value as YamlNode, `${name}.`);
        else list.push({ name, ...typedValue(p.value as YamlNode, `${file}: ${name}`) });
      }
    };
    walk(params, '');
    out.set(key, [...(out.get(key) ?? []), ...list]);
  }
  return out;
}

interface Args {
  overrides: Map<string, Override[]>;
  remaps: Array<[string, string]>;
  nodeName: string | undefined;
  namespace: string | undefined;
}

/** `--ros-args ... [--ros-args ...] [--]` as rcl_parse_arguments reads the options used here. */
export function parseRosArgs(argv: string[]): Args {
  const a: Args = { overrides: new Map(), remaps: [], nodeName: undefined, namespace: undefined };
  const add = (key: string, o: Override[]) => a.overrides.set(key, [...(a.overrides.get(key) ?? []), ...o]);
  let inRos = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--ros-args') {
      inRos = true;
      continue;
    }
    if (!inRos) continue;
    if (arg === '--') {
      inRos = false;
      continue;
    }
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`rcl: ${arg} needs a value`);
      return v;
    };
    if (arg === '-p' || arg === '--param') {
      const rule = next();
      const m = /^(?:([^:]+):)?([^:=]+):=(.*)$/s.exec(rule);
      if (!m) throw new Error(`rcl: bad parameter rule '${rule}'`);
      const doc = parseDocument(m[3] as string);
      add(m[1] ?? '/**', [{ name: m[2] as string, ...typedValue(doc.contents as YamlNode, `-p ${rule}`) }]);
    } else if (arg === '--params-file') {
      for (const [k, v] of readParamsFile(next())) add(k, v);
    } else if (arg === '-r' || arg === '--remap') {
      const rule = next();
      const m = /^([^:=]+):=(.+)$/.exec(rule);
      if (!m) throw new Error(`rcl: bad remap rule '${rule}'`);
      if (m[1] === '__node' || m[1] === '__name') a.nodeName = m[2];
      else if (m[1] === '__ns') a.namespace = m[2];
      else a.remaps.push([m[1] as string, m[2] as string]);
    } else if (arg === '--log-level') {
      next();
    } else if (arg === '--enable-rosout-logs' || arg === '--disable-rosout-logs' || arg === '--enable-stdout-logs' || arg === '--disable-stdout-logs') {
      continue;
    } else {
      throw new Error(`rcl: unknown ROS argument '${arg}'`);
    }
  }
  return a;
}

/** A topic name expanded as rcl_expand_topic_name does (~, relative, absolute). */
export function expandTopic(topic: string, nodeName: string, ns: string): string {
  const nsPart = ns === '/' ? '' : ns;
  if (topic.startsWith('~')) return `${nsPart}/${nodeName}${topic.slice(1)}`;
  if (topic.startsWith('/')) return topic;
  return `${nsPart}/${topic}`;
}

// ---------------------------------------------------------------------------------------------
// The graph: what the node's publishers sent, and a way to publish to its subscriptions

export interface PublishedRaw {
  topic: string;
  type: string;
  cdr: Uint8Array;
  atNs: bigint;
}

class Graph {
  clockNs = 1_000_000_000n;
  readonly published: PublishedRaw[] = [];
  readonly subs = new Set<StandinSubscription>();
  readonly pubs = new Set<StandinPublisher>();
  readonly timers = new Set<StandinTimer>();
  readonly latched = new Map<string, { type: string; cdr: Buffer }>();
}

// ---------------------------------------------------------------------------------------------
// Parameters

function validValue(value: unknown, type: number): boolean {
  switch (type) {
    case P.BOOL:
      return typeof value === 'boolean';
    case P.INTEGER:
      return typeof value === 'bigint';
    case P.DOUBLE:
      return typeof value === 'number';
    case P.STRING:
      return typeof value === 'string';
    case P.STRING_ARRAY:
      return Array.isArray(value) && value.every((v) => typeof v === 'string');
    case P.INTEGER_ARRAY:
      return Array.isArray(value) && value.every((v) => typeof v === 'bigint');
    case P.DOUBLE_ARRAY:
      return Array.isArray(value) && value.every((v) => typeof v === 'number');
    case P.BOOL_ARRAY:
      return Array.isArray(value) && value.every((v) => typeof v === 'boolean');
    default:
      return false;
  }
}

class StandinParameter implements Rcl.Parameter {
  readonly name: string;
  readonly type: ParamType;
  private v: unknown;
  constructor(name: string, type: ParamType, value?: unknown) {
    this.name = name;
    this.type = type;
    // lib/parameter.js: integers become bigint
    this.v = type === P.INTEGER ? BigInt(value as bigint) : value;
    this.validate();
  }
  get value(): any {
    return this.v;
  }
  set value(nv: any) {
    // lib/parameter.js: an empty array becomes null (and then fails validation)
    this.v = Array.isArray(nv) && nv.length === 0 ? null : nv;
    this.validate();
  }
  validate(): void {
    if (!this.name || typeof this.name !== 'string') throw new TypeError('parameter name must be a non-empty string');
    if (!validValue(this.v, this.type)) throw new TypeError(`parameter '${this.name}': value ${String(this.v)} is not of type ${this.type}`);
  }
  toParameterMessage(): any {
    return { name: this.name, value: this.toParameterValueMessage() };
  }
  toParameterValueMessage(): any {
    return { type: this.type, value: this.v };
  }
}

class StandinDescriptor implements Rcl.ParameterDescriptor {
  additionalConstraints = '';
  rangeConstraint: Rcl.Range = undefined as unknown as Rcl.Range;
  constructor(
    readonly name: string,
    readonly type: ParamType = P.NOT_SET as ParamType,
    readonly description = 'no description',
    readonly readOnly = false,
  ) {
    this.validate();
  }
  hasRange(): boolean {
    return false;
  }
  validate(): void {
    if (!this.name) throw new TypeError('descriptor name must be a non-empty string');
  }
  validateParameter(p: Rcl.Parameter): void {
    p.validate();
    if (this.name !== p.name) throw new Error(`descriptor ${this.name}: name mismatch ${p.name}`);
    if (this.type !== p.type) throw new TypeError(`Invalid type for parameter ${this.name}: expected ${this.type}, got ${p.type}`);
  }
  toMessage(): any {
    return { name: this.name, type: this.type, description: this.description, read_only: this.readOnly };
  }
}

// ---------------------------------------------------------------------------------------------
// Entities

class StandinQoS implements Rcl.QoS {
  history: number;
  depth: number;
  durability: Rcl.QoS.DurabilityPolicy;
  liveliness: Rcl.QoS.LivelinessPolicy;
  avoidRosNameSpaceConventions: boolean;
  private readonly rel: Rcl.QoS.ReliabilityPolicy;
  constructor(history?: Rcl.QoS.HistoryPolicy, depth?: number, reliability?: Rcl.QoS.ReliabilityPolicy, durability?: Rcl.QoS.DurabilityPolicy, liveliness?: Rcl.QoS.LivelinessPolicy, avoid?: boolean) {
    this.history = history ?? 1;
    this.depth = depth ?? 10;
    this.rel = reliability ?? (1 as Rcl.QoS.ReliabilityPolicy);
    this.durability = durability ?? (2 as Rcl.QoS.DurabilityPolicy);
    this.liveliness = liveliness ?? (0 as Rcl.QoS.LivelinessPolicy);
    this.avoidRosNameSpaceConventions = avoid ?? false;
  }
  reliability(): Rcl.QoS.ReliabilityPolicy {
    return this.rel;
  }
}

abstract class StandinEntity implements Rcl.Entity {
  options: object;
  readonly typedArrayEnabled = true;
  destroyed = false;
  constructor(
    readonly typeName: string,
    readonly topic: string,
    readonly qos: Rcl.QoS,
    options: object,
  ) {
    this.options = options;
  }
  get typeClass(): Rcl.TypeClass {
    return this.typeName as unknown as Rcl.TypeClass;
  }
  get loggerName(): string {
    return 'standin';
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
}

class StandinPublisher extends StandinEntity implements Rcl.Publisher<never> {
  willValidateMessage = false;
  constructor(
    private readonly graph: Graph,
    typeName: string,
    topic: string,
    qos: Rcl.QoS,
  ) {
    super(typeName, topic, qos, { qos });
  }
  publish(message: Buffer | never): void {
    if (this.destroyed) throw new Error(`publisher on ${this.topic} is destroyed`);
    if (!Buffer.isBuffer(message)) throw new TypeError('the stand-in carries raw CDR only: publish(Buffer)');
    const cdr = Uint8Array.from(message);
    this.graph.published.push({ topic: this.topic, type: this.typeName, cdr, atNs: this.graph.clockNs });
  }
  setValidation(): void {}
  subscriptionCount(): number {
    return [...this.graph.subs].filter((s) => s.topic === this.topic && !s.destroyed).length;
  }
  waitForAllAcked(): boolean {
    return true;
  }
  assertLiveliness(): void {}
}

class StandinSubscription extends StandinEntity implements Rcl.Subscription {
  constructor(
    typeName: string,
    topic: string,
    qos: Rcl.QoS,
    readonly isRaw: boolean,
    readonly callback: (msg: Buffer) => void,
  ) {
    super(typeName, topic, qos, { qos, isRaw });
  }
  isContentFilterSupported(): boolean {
    return false;
  }
  hasContentFilter(): boolean {
    return false;
  }
  setContentFilter(): boolean {
    return false;
  }
  getContentFilter(): undefined {
    return undefined;
  }
  clearContentFilter(): boolean {
    return false;
  }
  publisherCount(): number {
    return 0;
  }
}

class StandinTimer implements Rcl.Timer {
  canceled = false;
  nextNs: bigint;
  constructor(
    private readonly graph: Graph,
    public periodNs: bigint,
    readonly callback: () => void,
  ) {
    this.nextNs = graph.clockNs + periodNs;
  }
  get period(): bigint {
    return this.periodNs;
  }
  isReady(): boolean {
    return this.graph.clockNs >= this.nextNs;
  }
  isCanceled(): boolean {
    return this.canceled;
  }
  cancel(): void {
    this.canceled = true;
  }
  reset(): void {
    this.nextNs = this.graph.clockNs + this.periodNs;
  }
  timeSinceLastCall(): bigint {
    return this.graph.clockNs - (this.nextNs - this.periodNs);
  }
  timeUntilNextCall(): bigint {
    return this.nextNs - this.graph.clockNs;
  }
  getNextCallTime(): bigint | null {
    return this.canceled ? null : this.nextNs;
  }
  changeTimerPeriod(period: bigint): void {
    this.periodNs = period;
  }
  timerPeriod(): bigint {
    return this.periodNs;
  }
  setOnResetCallback(): void {}
  clearOnResetCallback(): void {}
  callTimerWithInfo(): Rcl.TimerInfo {
    this.callback();
    return { expectedCallTime: this.nextNs, actualCallTime: this.graph.clockNs } as unknown as Rcl.TimerInfo;
  }
}

// ---------------------------------------------------------------------------------------------
// The lifecycle node

/** lifecycle_msgs/msg/State ids and labels. */
const S = {
  unconfigured: [1, 'unconfigured'],
  inactive: [2, 'inactive'],
  active: [3, 'active'],
  finalized: [4, 'finalized'],
  configuring: [10, 'configuring'],
  cleaningup: [11, 'cleaningup'],
  shuttingdown: [12, 'shuttingdown'],
  activating: [13, 'activating'],
  deactivating: [14, 'deactivating'],
  errorprocessing: [15, 'errorprocessing'],
} as const;
type StateName = keyof typeof S;

/** The transitions of the lifecycle state machine: label -> from primary state -> (transition state, goal). */
const TRANSITIONS: Record<string, Partial<Record<StateName, [StateName, StateName]>>> = {
  configure: { unconfigured: ['configuring', 'inactive'] },
  cleanup: { inactive: ['cleaningup', 'unconfigured'] },
  activate: { inactive: ['activating', 'active'] },
  deactivate: { active: ['deactivating', 'inactive'] },
  shutdown: { unconfigured: ['shuttingdown', 'finalized'], inactive: ['shuttingdown', 'finalized'], active: ['shuttingdown', 'finalized'] },
};

/** A State as lib/lifecycle.js makes it: `id` and `label` (its asMessage() is declared, not implemented). */
class StandinState implements Rcl.lifecycle.State {
  constructor(
    readonly id: number,
    readonly label: string,
  ) {}
  asMessage(): Rcl.lifecycle.SerializedState {
    throw new TypeError('State.asMessage is not a function (rclnodejs 2.2.0 declares it in types/lifecycle.d.ts; lib/lifecycle.js has no such method)');
  }
}

export interface StandinNodeStats {
  subscriptions: number;
  publishers: number;
  timers: number;
}

export class StandinLifecycleNode implements RclLifecycleNode {
  readonly fullName: string;
  private state: StateName = 'unconfigured';
  private readonly callbacks = new Map<StateName, Rcl.lifecycle.TransitionCallback>();
  private readonly params = new Map<string, Rcl.Parameter>();
  private readonly descriptors = new Map<string, Rcl.ParameterDescriptor>();
  private readonly onSet: Array<(p: Rcl.Parameter[]) => { successful: boolean; reason: string | null }> = [];
  private readonly overrides = new Map<string, Override>();
  private readonly mine = { subs: new Set<StandinSubscription>(), pubs: new Set<StandinPublisher>(), timers: new Set<StandinTimer>() };
  destroyed = false;
  spinning = false;
  /** Transitions as they happened: [label, result state]. */
  readonly history: Array<[string, string]> = [];

  constructor(
    private readonly graph: Graph,
    private readonly args: Args,
    nodeName: string,
    namespace = '',
  ) {
    this.nodeName = args.nodeName ?? nodeName;
    const ns = args.namespace ?? namespace;
    this.ns = ns === '' ? '/' : ns.startsWith('/') ? ns : `/${ns}`;
    this.fullName = this.ns === '/' ? `/${this.nodeName}` : `${this.ns}/${this.nodeName}`;
    // lib/node.js: '/**' first, then the node's bare name; other keys do not reach rclnodejs
    for (const key of ['/**', this.nodeName]) for (const o of args.overrides.get(key) ?? []) this.overrides.set(o.name, o);
    // lib/time_source.js: every node declares use_sim_time (bool, from the overrides when given)
    this.declareParameter(new StandinParameter('use_sim_time', P.BOOL as ParamType, false));
  }
  readonly nodeName: string;
  readonly ns: string;

  // -- names
  resolve(topic: string): string {
    const expanded = expandTopic(topic, this.nodeName, this.ns);
    for (const [from, to] of this.args.remaps) if (expandTopic(from, this.nodeName, this.ns) === expanded) return expandTopic(to, this.nodeName, this.ns);
    return expanded;
  }
  /** Node.resolveTopicName: the name expanded, then remapped unless onlyExpand. */
  resolveTopicName(topic: string, onlyExpand = false): string {
    return onlyExpand ? expandTopic(topic, this.nodeName, this.ns) : this.resolve(topic);
  }

  // -- lifecycle
  get currentState(): Rcl.lifecycle.State {
    const [id, label] = S[this.state];
    return new StandinState(id, label);
  }
  registerOnConfigure(cb: Rcl.lifecycle.TransitionCallback): void {
    this.callbacks.set('configuring', cb);
  }
  registerOnActivate(cb: Rcl.lifecycle.TransitionCallback): void {
    this.callbacks.set('activating', cb);
  }
  registerOnDeactivate(cb: Rcl.lifecycle.TransitionCallback): void {
    this.callbacks.set('deactivating', cb);
  }
  registerOnCleanup(cb: Rcl.lifecycle.TransitionCallback): void {
    this.callbacks.set('cleaningup', cb);
  }
  registerOnShutdown(cb: Rcl.lifecycle.TransitionCallback): void {
    this.callbacks.set('shuttingdown', cb);
  }
  registerOnError(cb: Rcl.lifecycle.TransitionCallback): void {
    this.callbacks.set('errorprocessing', cb);
  }
  configure(): Rcl.lifecycle.State {
    return this.change('configure');
  }
  activate(): Rcl.lifecycle.State {
    return this.change('activate');
  }
  deactivate(): Rcl.lifecycle.State {
    return this.change('deactivate');
  }
  cleanup(): Rcl.lifecycle.State {
    return this.change('cleanup');
  }
  shutdown(): Rcl.lifecycle.State {
    return this.change('shutdown');
  }
  /** What a lifecycle manager's lifecycle_msgs/srv/ChangeState call does (lib/lifecycle.js _onChangeState). */
  changeStateService(label: string): boolean {
    try {
      const before = this.state;
      this.change(label);
      return this.state !== before && this.state === TRANSITIONS[label]?.[before]?.[1];
    } catch {
      return false;
    }
  }

  private run(state: StateName, prev: StateName): number {
    const cb = this.callbacks.get(state);
    if (!cb) return 97;
    try {
      const r = cb(new StandinState(S[prev][0], S[prev][1])) as unknown;
      if (r !== 97 && r !== 98 && r !== 99) throw new TypeError(`transition callback returned ${String(r)} (a Promise?): rclnodejs needs a CallbackReturnCode, synchronously`);
      return r;
    } catch (err) {
      if (err instanceof TypeError && /CallbackReturnCode/.test(err.message)) throw err;
      return 99;
    }
  }

  private change(label: string): Rcl.lifecycle.State {
    const from = this.state;
    const t = TRANSITIONS[label]?.[from];
    if (!t) throw new Error(`No transition available from state ${label}`);
    const [via, goal] = t;
    this.state = via;
    const r = this.run(via, from);
    if (r === 97) this.state = goal;
    else if (r === 98) this.state = from;
    else {
      this.state = 'errorprocessing';
      this.state = this.run('errorprocessing', from) === 97 ? 'unconfigured' : 'finalized';
    }
    this.history.push([label, this.state]);
    return this.currentState;
  }

  // -- parameters
  declareParameter(parameter: Rcl.Parameter, descriptor?: Rcl.ParameterDescriptor, ignoreOverride = false): Rcl.Parameter {
    if (this.params.has(parameter.name)) throw new Error(`Parameter(${parameter.name}) already declared.`);
    const o = ignoreOverride ? undefined : this.overrides.get(parameter.name);
    const p = o ? new StandinParameter(o.name, o.type, o.value) : parameter;
    const d = descriptor ?? new StandinDescriptor(p.name, p.type);
    d.validate();
    this.descriptors.set(d.name, d);
    const r = this.setAtomically([p], true);
    if (!r.successful) {
      this.descriptors.delete(d.name);
      throw new Error(r.reason ?? 'declare failed');
    }
    return this.params.get(p.name) as Rcl.Parameter;
  }
  getParameters(names?: string[]): Rcl.Parameter[] {
    return names ? names.map((n) => this.params.get(n)).filter((p): p is Rcl.Parameter => !!p) : [...this.params.values()];
  }
  setParameters(parameters: Rcl.Parameter[]): any[] {
    return parameters.map((p) => this.setAtomically([p], false));
  }
  addOnSetParametersCallback(callback: (p: Rcl.Parameter[]) => any): void {
    this.onSet.unshift(callback);
  }
  /** lib/node.js _setParametersAtomically, without the parameter-event publisher. */
  private setAtomically(parameters: Rcl.Parameter[], declaring: boolean): { successful: boolean; reason: string | null } {
    for (const p of parameters) {
      try {
        p.validate();
      } catch {
        return { successful: false, reason: `Invalid ${p.name}` };
      }
      const d = this.descriptors.get(p.name);
      if (!d) return { successful: false, reason: `Parameter ${p.name} has not been declared` };
      if (!declaring && d.readOnly) return { successful: false, reason: `Parameter ${p.name} is readonly` };
      try {
        d.validateParameter(p);
      } catch (err) {
        return { successful: false, reason: (err as Error).message };
      }
    }
    for (const cb of this.onSet) {
      const r = cb(parameters);
      if (!r.successful) return r;
    }
    for (const p of parameters) this.params.set(p.name, p);
    return { successful: true, reason: null };
  }

  // -- entities
  now(): Pick<Rcl.Time, 'nanoseconds'> {
    return { nanoseconds: this.graph.clockNs };
  }
  createPublisher: RclLifecycleNode['createPublisher'] = (typeClass: unknown, topic: string, options?: Rcl.Options) => {
    this.alive();
    const p = new StandinPublisher(this.graph, String(typeClass), this.resolve(topic), (options?.qos as Rcl.QoS) ?? new StandinQoS());
    this.graph.pubs.add(p);
    this.mine.pubs.add(p);
    return p as never;
  };
  createSubscription: RclLifecycleNode['createSubscription'] = (typeClass: unknown, topic: string, a: unknown, b?: unknown) => {
    this.alive();
    const options = (typeof a === 'function' ? {} : a) as Rcl.Options;
    const cb = (typeof a === 'function' ? a : b) as (m: Buffer) => void;
    if (!options.isRaw) throw new TypeError('the stand-in carries raw CDR only: createSubscription(..., { isRaw: true }, ...)');
    const s = new StandinSubscription(String(typeClass), this.resolve(topic), (options.qos as Rcl.QoS) ?? new StandinQoS(), true, cb);
    this.graph.subs.add(s);
    this.mine.subs.add(s);
    // transient-local subscribers get the latched sample, as DDS durability gives it
    const last = this.graph.latched.get(s.topic);
    if (last && last.type === s.typeName && s.qos.durability === 1) cb(last.cdr);
    return s;
  };
  createTimer(period: bigint, callback: Rcl.TimerRequestCallback): Rcl.Timer {
    this.alive();
    const t = new StandinTimer(this.graph, period, () => callback());
    this.graph.timers.add(t);
    this.mine.timers.add(t);
    return t;
  }
  destroySubscription(subscription: Rcl.Subscription): void {
    const s = subscription as StandinSubscription;
    s.destroyed = true;
    this.graph.subs.delete(s);
    this.mine.subs.delete(s);
  }
  destroyPublisher(publisher: Rcl.Publisher<never>): void {
    const p = publisher as unknown as StandinPublisher;
    p.destroyed = true;
    this.graph.pubs.delete(p);
    this.mine.pubs.delete(p);
  }
  destroyTimer(timer: Rcl.Timer): void {
    const t = timer as StandinTimer;
    t.cancel();
    this.graph.timers.delete(t);
    this.mine.timers.delete(t);
  }
  spin(): void {
    this.alive();
    this.spinning = true;
  }
  destroy(): void {
    for (const s of this.mine.subs) this.destroySubscription(s);
    for (const p of this.mine.pubs) this.destroyPublisher(p as unknown as Rcl.Publisher<never>);
    for (const t of this.mine.timers) this.destroyTimer(t);
    this.destroyed = true;
    this.spinning = false;
  }
  /** What the node holds open now. */
  stats(): StandinNodeStats {
    return { subscriptions: this.mine.subs.size, publishers: this.mine.pubs.size, timers: this.mine.timers.size };
  }
  /** Topics of the node's live subscriptions (resolved). */
  subscribedTopics(): string[] {
    return [...this.mine.subs].map((s) => s.topic).sort();
  }
  private alive(): void {
    if (this.destroyed) throw new Error('node is destroyed');
  }
}

// ---------------------------------------------------------------------------------------------
// The module

export interface Standin {
  /** rclnodejs' module surface: what main.ts uses, and a plain Node (the lifecycle node's superset) for carla-control-main.ts. */
  rcl: RclApi & { Node: new (nodeName: string, namespace?: string) => StandinLifecycleNode };
  readonly nodes: StandinLifecycleNode[];
  readonly published: PublishedRaw[];
  initialized(): boolean;
  /** Whether removeSignalHandlers() was called (rclnodejs' own SIGINT handler would shut the context down under us). */
  signalHandlersRemoved(): boolean;
  /** Publishes CDR bytes to the node's subscriptions on `topic` (resolved name); latch keeps it for late transient-local subscribers. */
  inject(topic: string, type: string, cdr: Uint8Array, latch?: boolean): number;
  /** Moves the clock, firing timers in order. */
  advance(ms: number): void;
  /** Live entities across nodes. */
  open(): StandinNodeStats;
}

export function createStandin(): Standin {
  const graph = new Graph();
  const nodes: StandinLifecycleNode[] = [];
  let args: Args | undefined;
  let initialized = false;
  let signalHandlers = true;
  const rcl: Standin['rcl'] = {
    async init(_context?: Rcl.Context, argv?: string[]) {
      if (initialized) throw new Error('The context has already been initialized.');
      args = parseRosArgs(argv ?? []);
      initialized = true;
    },
    shutdown() {
      if (!initialized) throw new Error('The context is not initialized.');
      initialized = false;
    },
    removeSignalHandlers() {
      signalHandlers = false;
    },
    Parameter: StandinParameter,
    ParameterDescriptor: StandinDescriptor,
    QoS: StandinQoS,
    Node: class extends StandinLifecycleNode {
      constructor(name: string, namespace?: string) {
        if (!initialized || !args) throw new Error('rclnodejs.init() has not been called');
        super(graph, args, name, namespace);
        nodes.push(this);
      }
    },
    lifecycle: {
      LifecycleNode: class extends StandinLifecycleNode {
        constructor(name: string, namespace?: string) {
          if (!initialized || !args) throw new Error('rclnodejs.init() has not been called');
          super(graph, args, name, namespace);
          nodes.push(this);
        }
      },
    },
  };
  return {
    rcl,
    nodes,
    published: graph.published,
    initialized: () => initialized,
    signalHandlersRemoved: () => !signalHandlers,
    inject(topic, type, cdr, latch = false) {
      const buf = Buffer.from(cdr);
      if (latch) graph.latched.set(topic, { type, cdr: buf });
      let n = 0;
      for (const s of [...graph.subs]) {
        if (s.topic !== topic || s.destroyed) continue;
        if (s.typeName !== type) throw new Error(`type mismatch on ${topic}: ${type} published, ${s.typeName} subscribed`);
        s.callback(buf);
        n++;
      }
      return n;
    },
    advance(ms) {
      const end = graph.clockNs + BigInt(Math.round(ms * 1e6));
      for (;;) {
        let next: StandinTimer | undefined;
        for (const t of graph.timers) if (!t.canceled && t.nextNs <= end && (!next || t.nextNs < next.nextNs)) next = t;
        if (!next) break;
        graph.clockNs = next.nextNs;
        next.nextNs += next.periodNs;
        next.callback();
      }
      graph.clockNs = end;
    },
    open() {
      return { subscriptions: graph.subs.size, publishers: graph.pubs.size, timers: graph.timers.size };
    },
  };
}
