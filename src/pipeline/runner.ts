/**
 * The node's life around VlaNodeLogic, without ROS: it owns the engine and the running logic,
 * starts and stops the logic (activate, deactivate) and applies parameter changes between
 * frames. A change of an engine parameter (model_path, backend, threads, cuda_device,
 * weight_dtype, max_activation_mib) loads and warms a new engine while the old one keeps
 * serving, then swaps them once the running frame is done and disposes the old one; when the
 * new one does not load, the old one runs on and the change is undone (onReloadFailed).
 * ros/main.ts maps the lifecycle and parameter callbacks of a live node onto this class.
 */
import { Engine } from '../engine/engine.js';
import { MessageCodec } from '../msgs/codec.js';
import type { RosPort } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { checkCameras, DEADLINE_TOKENS, VlaNodeLogic, type EngineLike } from './node.js';
import { configFromParams, engineLoadOptions, type EngineConfig, type NodeConfig, type RawParams } from './params.js';

/** What the runner needs of an engine: what the node needs, and disposal. */
export interface RunnerEngine extends EngineLike {
  dispose(): Promise<void>;
  /** The real Engine's; logged when known. */
  readonly info?: { backend: string };
}

export interface EngineLoader {
  /** Loads and warms an engine for the configuration; rejects with a coded error. */
  load(config: NodeConfig): Promise<RunnerEngine>;
  /** Synchronous checks that can refuse a change at once (optional; load checks everything). */
  precheck?(config: NodeConfig): void;
  /** Tries a configuration's inference settings on a loaded engine; rejects with the engine's coded error (optional). */
  check?(engine: RunnerEngine, config: NodeConfig): Promise<void>;
}

export type ChangeResult = { successful: true; reason: '' } | { successful: false; reason: string };

/** The engine's share of the parameters; any difference loads a new engine. */
export function engineChanged(a: EngineConfig, b: EngineConfig): boolean {
  return a.modelPath !== b.modelPath || a.backend !== b.backend || a.threads !== b.threads || a.device !== b.device || a.weightDtype !== b.weightDtype || a.maxActivationMiB !== b.maxActivationMiB || a.calibration !== b.calibration;
}

/** Parameters whose values differ between two validated sets. */
export function changedParameters(a: RawParams, b: RawParams): Array<keyof RawParams> {
  return (Object.keys(b) as Array<keyof RawParams>).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

/** Grey frames the first inference runs on, so the first camera frame does not pay for first use. */
const WARM_FRAME = { data: new Uint8Array(64 * 64 * 3).fill(128), width: 64, height: 64, encoding: 'rgb8' as const };

/**
 * One inference as the node would run it: the configured cameras (grey frames), the default
 * instruction and the configured pruning. What would fail every frame (a budget the model cannot
 * meet, an activation limit below what it needs, an instruction it cannot take) fails here, once,
 * with its code, when the parameters are applied rather than at each frame.
 */
export async function checkWithEngine(engine: EngineLike, node: Pick<NodeConfig['node'], 'cameras' | 'defaultInstruction' | 'prune' | 'deadlineMs'>): Promise<number> {
  // Deadline mode: the policy runs with the token budget the controller starts at.
  const prune = node.prune && !node.prune.budget && node.deadlineMs !== undefined ? { ...node.prune, budget: { kind: 'tokens' as const, value: DEADLINE_TOKENS.maxTokens } } : node.prune;
  // One view, then all: the engine keeps buffers sized for the longest sequence so far and grows
  // them on a longer one while the rest is held, the peak an activation limit must allow.
  let ms = 0;
  for (const cams of [node.cameras.slice(0, 1), node.cameras]) {
    const views = Object.fromEntries(cams.map((c) => [c.camera, WARM_FRAME]));
    const r = await engine.infer({ views, instruction: node.defaultInstruction, ...(prune ? { prune } : {}) });
    ms = r.timings.totalMs;
    if (node.cameras.length === 1) break;
  }
  return ms;
}

/** The real engine: Engine.load with the configuration's options, then one warm-up inference (checkWithEngine). */
export const ENGINE_LOADER: EngineLoader = {
  async load(config) {
    const log = componentLogger('engine');
    const engine = await Engine.load(config.engine.modelPath, engineLoadOptions(config.engine));
    try {
      checkCameras(config.node.cameras, engine.cameras);
      const warmMs = await checkWithEngine(engine, config.node);
      log.info({ model: config.engine.modelPath, warmupMs: Math.round(warmMs) }, 'model warmed up');
      return engine;
    } catch (err) {
      await engine.dispose();
      throw VlaError.from(err);
    }
  },
  precheck(config) {
    Engine.precheck(config.engine.modelPath, { backend: config.engine.backend });
  },
  async check(engine, config) {
    await checkWithEngine(engine, config.node);
  },
};

export interface NodeRunnerOptions {
  port: RosPort;
  config: NodeConfig;
  loader?: EngineLoader;
  codec?: MessageCodec;
  log?: Logger;
}

export class NodeRunner {
  private logic: VlaNodeLogic | undefined;
  private isActive = false;
  private pending: Promise<void> | undefined;
  /** The last reload that failed, for diagnostics and tests. */
  lastReloadError: VlaError | undefined;
  /**
   * Called after a change was accepted but its engine did not load, or refused its settings: the old engine and
   * parameters run on, and the caller sets its parameters `names` back to `kept.raw`.
   */
  onReloadFailed: ((err: VlaError, kept: NodeConfig, names: Array<keyof RawParams>) => void) | undefined;

  private constructor(
    private readonly port: RosPort,
    private current: NodeConfig,
    private eng: RunnerEngine,
    private readonly loader: EngineLoader,
    private readonly codec: MessageCodec,
    private readonly log: Logger,
  ) {}

  /** Loads (and warms) the configuration's engine. */
  static async start(o: NodeRunnerOptions): Promise<NodeRunner> {
    const loader = o.loader ?? ENGINE_LOADER;
    const engine = await loader.load(o.config);
    return new NodeRunner(o.port, o.config, engine, loader, o.codec ?? new MessageCodec(), o.log ?? componentLogger('runner'));
  }

  /** The configuration applied now (a change is applied once its engine runs). */
  get config(): NodeConfig {
    return this.current;
  }

  get engine(): RunnerEngine {
    return this.eng;
  }

  get active(): boolean {
    return this.isActive;
  }

  /** The running node logic (undefined while inactive). */
  get node(): VlaNodeLogic | undefined {
    return this.logic;
  }

  /** Resolves when the change being applied, if any, is done. */
  async settled(): Promise<void> {
    while (this.pending) await this.pending;
  }

  /** Starts the node logic on the current engine; throws a coded error when it cannot. */
  activate(): void {
    this.isActive = true;
    if (!this.logic) this.startLogic();
  }

  /** Stops the node logic; resolves when its running frame is done. */
  async deactivate(): Promise<void> {
    this.isActive = false;
    await this.stopLogic();
  }

  /**
   * A new full parameter set (a live node's parameter callback). Answers at once: a set that
   * does not validate, names a camera the model lacks, or points at an engine that cannot load
   * (precheck) is refused with a coded reason, as is any change while an engine is loading
   * (VLA_E_BUSY). An accepted change is applied between frames.
   */
  propose(values: Record<string, unknown>, where = 'parameter change'): ChangeResult {
    let next: NodeConfig;
    try {
      if (this.pending) throw new VlaError(ErrorCodes.BUSY, `${where}: a new engine is loading after the last change; set the parameters again once it runs`);
      next = configFromParams(values, where);
      const names = changedParameters(this.current.raw, next.raw);
      if (names.length === 0) return { successful: true, reason: '' };
      if (engineChanged(this.current.engine, next.engine)) {
        this.loader.precheck?.(next);
        this.pending = this.track(this.reload(next, names));
      } else {
        checkCameras(next.node.cameras, this.eng.cameras);
        this.pending = this.track(this.restart(next, names));
      }
      return { successful: true, reason: '' };
    } catch (err) {
      const e = VlaError.from(err, ErrorCodes.PARAMS);
      this.log.warn({ code: e.code }, e.message);
      return { successful: false, reason: `${e.code}: ${e.message}` };
    }
  }

  /** Stops the logic, then disposes the engine (after the change being applied, if any). */
  async shutdown(): Promise<void> {
    this.isActive = false;
    await this.settled();
    await this.stopLogic();
    await this.eng.dispose();
  }

  private track(p: Promise<void>): Promise<void> {
    const t = p.finally(() => {
      if (this.pending === t) this.pending = undefined;
    });
    return t;
  }

  /**
   * Same engine, new parameters: the running frame finishes, a new logic takes over. A change of
   * what each inference gets (pruning, budget, default instruction) is tried once first; when
   * the engine refuses it, the change is undone like an engine that did not load.
   */
  private async restart(next: NodeConfig, names: Array<keyof RawParams>): Promise<void> {
    const inference: Array<keyof RawParams> = ['pruning_policy', 'budget_kind', 'budget_value', 'autoprune_x0', 'autoprune_k0', 'autoprune_gamma', 'default_instruction', 'camera_names'];
    if (this.loader.check && names.some((n) => inference.includes(n))) {
      try {
        await this.loader.check(this.eng, next);
      } catch (err) {
        return this.reloadFailed(VlaError.from(err), names);
      }
    }
    await this.stopLogic();
    this.current = next;
    if (this.isActive) this.restartLogic();
  }

  /** Loads and warms the new engine beside the old, swaps them between frames, disposes the old. */
  private async reload(next: NodeConfig, names: Array<keyof RawParams>): Promise<void> {
    const t0 = performance.now();
    let fresh: RunnerEngine;
    try {
      fresh = await this.loader.load(next);
    } catch (err) {
      return this.reloadFailed(VlaError.from(err), names);
    }
    try {
      checkCameras(next.node.cameras, fresh.cameras);
    } catch (err) {
      await fresh.dispose();
      return this.reloadFailed(VlaError.from(err), names);
    }
    const old = this.eng;
    await this.stopLogic();
    this.eng = fresh;
    this.current = next;
    if (this.isActive) this.restartLogic();
    this.log.info({ model: next.engine.modelPath, backend: next.engine.backend, reloadMs: Math.round(performance.now() - t0) }, 'engine reloaded');
    await old.dispose();
  }

  private reloadFailed(e: VlaError, names: Array<keyof RawParams>): void {
    this.lastReloadError = e;
    this.log.error({ code: e.code, parameters: names }, `parameter change undone: the engine did not take it (${e.message}); the previous configuration runs on`);
    // After this change's promise is done, so that the caller's undo is not refused as busy.
    const kept = this.current;
    queueMicrotask(() =>
      void this.settled().then(() => {
        try {
          this.onReloadFailed?.(e, kept, names);
        } catch (err) {
          const u = VlaError.from(err);
          this.log.error({ code: u.code }, `undoing the parameter change failed: ${u.message}`);
        }
      }),
    );
  }

  /** startLogic between frames, where nobody waits to catch: a failure is logged and the node left inactive. */
  private restartLogic(): void {
    try {
      this.startLogic();
    } catch (err) {
      const e = VlaError.from(err);
      this.isActive = false;
      this.log.error({ code: e.code }, `node logic did not start after the parameter change: ${e.message}`);
    }
  }

  private startLogic(): void {
    const c = this.current;
    this.logic = new VlaNodeLogic(this.port, this.eng, { ...c.node, modelName: c.engine.modelPath }, this.codec);
    this.logic.start();
  }

  private async stopLogic(): Promise<void> {
    const l = this.logic;
    this.logic = undefined;
    await l?.stop();
  }
}
