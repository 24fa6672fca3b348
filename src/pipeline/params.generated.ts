/*
 * Generated from configs/autoprune_ros.schema.json by scripts/gen-params-types.js
 * (json-schema-to-typescript): do not edit; run `npm run gen:params` after changing the schema.
 */

/**
 * The contract of the node's ROS 2 parameters. configs/*.yaml hold values (ROS 2 parameter-file layout); src/pipeline/params.ts derives the parameters' ROS types from this schema and their TypeScript type from src/pipeline/params.generated.ts (generated from it); tests keep this schema, that file and the README's table in step.
 */
export interface AutopruneRosNodeParameters {
  /**
   * Model directory (config.json, safetensors, tokenizer.json).
   */
  model_path: string;
  /**
   * Compute backend; auto falls back to cpu.
   */
  backend?: 'cpu' | 'cuda' | 'auto';
  /**
   * CPU threads (0 = all cores).
   */
  threads?: number;
  /**
   * GPU ordinal of the cuda backend.
   */
  cuda_device?: number;
  /**
   * cuda: weight matrices on the GPU; auto keeps a half-precision file's dtype, F32 files become F16. cpu: auto gives half-precision weights an F32 copy on first use when OpenBLAS is present (up to twice the memory, faster products); f16/bf16 keep the file's weights mmapped in place.
   */
  weight_dtype?: 'auto' | 'f16' | 'bf16';
  /**
   * Activation memory the backend may hold at once, MiB (0 = no limit); a frame over it fails with VLA_E_OOM.
   */
  max_activation_mib?: number;
  /**
   * Model camera of each camera topic.
   *
   * @minItems 1
   */
  camera_names: string[];
  /**
   * Camera topics, one per camera name (each camera its own topic).
   *
   * @minItems 1
   */
  camera_topics: string[];
  /**
   * image (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage) per topic; empty = all image.
   */
  camera_types?: ('image' | 'compressed')[];
  /**
   * Camera subscription reliability (sensor-data QoS by default).
   */
  camera_reliability?: 'best_effort' | 'reliable';
  /**
   * Camera subscription history depth.
   */
  camera_qos_depth?: number;
  /**
   * std_msgs/String instruction (reliable, transient local).
   */
  instruction_topic?: string;
  /**
   * Optional nav_msgs/Odometry; its speed is added to the prompt. Empty: none.
   */
  odometry_topic?: string;
  /**
   * Instruction used until one arrives.
   */
  default_instruction?: string;
  /**
   * frame_id of the published path and trajectory.
   */
  output_frame?: string;
  /**
   * Also publish autoware_planning_msgs/Trajectory on ~/output/autoware_trajectory.
   */
  publish_autoware_trajectory?: boolean;
  /**
   * Largest stamp spread within a camera set.
   */
  slop_ms?: number;
  /**
   * Frames older than this are dropped and counted.
   */
  max_age_ms?: number;
  /**
   * wait for every camera, or infer with the views present.
   */
  missing_camera?: 'wait' | 'partial';
  /**
   * How often the node looks for a complete set.
   */
  tick_ms?: number;
  /**
   * Stamps further ahead of the clock are rejected.
   */
  future_tolerance_ms?: number;
  /**
   * Sensor-to-publish latency above which diagnostics warn.
   */
  latency_warn_ms?: number;
  /**
   * An inference not done after this long (wall time, ms) is reported failed (VLA_E_TIMEOUT) and the node goes on; 0 = no deadline.
   */
  inference_timeout_ms?: number;
  /**
   * Longer instructions are rejected.
   */
  max_instruction_chars?: number;
  /**
   * Visual-token pruning policy.
   */
  pruning_policy?: 'none' | 'autoprune' | 'fastv' | 'pdrop' | 'sparsevlm-fixed' | 'cls-prior' | 'random';
  /**
   * tokens: average visual tokens per layer; flops: prefill GFLOP cap; latency: a p95 sensor-to-publish deadline in ms, met by setting the token budget between frames.
   */
  budget_kind?: 'none' | 'tokens' | 'flops' | 'latency';
  /**
   * The budget's value (T, GFLOP or deadline ms).
   */
  budget_value?: number;
  /**
   * AutoPrune logistic centre. Unset: the model's calibration, else the reference's 14.9 of 32 layers scaled to the depth.
   */
  autoprune_x0?: number;
  /**
   * AutoPrune base slope. Unset: the model's calibration, else the reference's 0.4.
   */
  autoprune_k0?: number;
  /**
   * AutoPrune MI sensitivity. Unset: the model's calibration, else the reference's 0.2.
   */
  autoprune_gamma?: number;
  /**
   * Merge the best of the pruned visual tokens into a few recycled tokens (DPC-kNN; autoprune and sparsevlm-fixed). Off by default: on small decoders it costs accuracy.
   */
  prune_recycle?: boolean;
  /**
   * Re-index RoPE positions 0..n-1 after each compaction. Off by default: the survivors keep the positions the model was trained with.
   */
  prune_reindex_positions?: boolean;
  /**
   * Rows whose attention scores the visual tokens (autoprune, sparsevlm-fixed): instruction = the rows after the images minus the action queries; tail = every row after the images; last = the last prompt row.
   */
  prune_score_rows?: 'instruction' | 'tail' | 'last';
  /**
   * The reference implementation's behaviour: re-indexed positions (not for fastv), recycling, tail rows and its DPC-kNN tie rule; overrides prune_recycle, prune_reindex_positions and prune_score_rows.
   */
  prune_parity?: boolean;
  /**
   * FastV's K: it prunes once, after layer K-1 (clamped to the model's depth).
   */
  fastv_layer?: number;
  /**
   * PDrop's stage layers, 0-based: each stage prunes after its layer; 1 to 8, strictly increasing, each at most the model's depth minus 2 (checked at inference, not clamped). Empty: the default stages (after layers L/4, L/2, 3L/4 of L, earlier ones when the budget needs them).
   *
   * @maxItems 8
   */
  pdrop_layers?: number[];
  /**
   * Take the prune options the parameters leave unset (autoprune_x0/_k0/_gamma, prune_score_rows, prune_recycle, prune_reindex_positions, fastv_layer, pdrop_layers) from the model's calibration.json, at the calibrated budget nearest to this one; false: the reference's values (parity runs). A parameter set in the file, or on the live node to a value other than its default, always wins.
   */
  use_calibration?: boolean;
  /**
   * Configure and activate at start (plain use). false: the node waits unconfigured for a lifecycle manager (nav2 lifecycle_manager, Autoware) to drive its transitions. Read at start only.
   */
  autostart?: boolean;
}
