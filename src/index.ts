export { Engine, parseBudget, parseWaypoints } from './engine/engine.js';
export type { EngineOptions, InferInput, InferOutput, ModelInfo, StageTimingsMs, Waypoint, BackendName } from './engine/engine.js';
export type { ImageInput, RawImage, CompressedImage } from './engine/image.js';
export { ErrorCodes, VlaError, isVlaError } from './util/errors.js';
export type { ErrorCode } from './util/errors.js';
export { makeModel } from './model/tiny.js';
export type { BudgetSpec, NativePruneOptions as PruneOptions, NativePruneStats as PruneStats } from './engine/addon-types.js';
export { PRUNE_POLICIES, PRUNE_POLICY_DESCRIPTIONS } from './engine/policies.js';
export type { PrunePolicyName } from './engine/policies.js';
