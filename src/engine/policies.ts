/**
 * The visual-token pruning policies: THE one list. The TypeScript types, every CLI's choices,
 * replay and evaluate sweeps and the node's parameter validation derive from it; a test keeps it
 * equal to the parameter schema's enum, the README's policy table and the addon's own list.
 */
export const PRUNE_POLICIES = ['none', 'autoprune', 'fastv', 'pdrop', 'sparsevlm-fixed', 'cls-prior', 'random'] as const;

export type PrunePolicyName = (typeof PRUNE_POLICIES)[number];

/** One line each, for help texts (the README's table says more). */
export const PRUNE_POLICY_DESCRIPTIONS: Readonly<Record<PrunePolicyName, string>> = Object.freeze({
  none: 'no pruning',
  autoprune: 'complexity-adaptive retention curve: MI of text-to-visual attention sets its slope, scaled to the budget',
  fastv: "one drop after layer K-1 by the attention of the sequence's last row (the last action query)",
  pdrop: 'staged drops at a quarter, half and three quarters of the depth, or after the layers --pdrop-layers gives',
  'sparsevlm-fixed': "SparseVLM's fixed schedules (after layers 2, 6, 15) scaled to the budget, with recycling",
  'cls-prior': 'top-T visual tokens by CLS attention before the decoder (FasterVLM-style)',
  random: 'T random visual tokens before the decoder (seeded), a control',
});

export function isPrunePolicy(name: string): name is PrunePolicyName {
  return (PRUNE_POLICIES as readonly string[]).includes(name);
}

/** The policies that prune (every one but none): each needs a budget. */
export const PRUNING_POLICIES = PRUNE_POLICIES.filter((p): p is Exclude<PrunePolicyName, 'none'> => p !== 'none');

/**
 * The query rows whose attention scores the visual tokens (and gives AutoPrune's MI), for
 * autoprune and sparsevlm-fixed (docs/autoprune.md, "Notation"): the instruction rows (the rows
 * after the last image minus the action queries), the tail (every row after the last image, the
 * reference's rule) or the last prompt row. FastV always scores with the sequence's last row (the
 * last action query), PDrop with the last prompt row.
 */
export const SCORE_ROWS = ['instruction', 'tail', 'last'] as const;

export type ScoreRowsName = (typeof SCORE_ROWS)[number];

/** The most stage layers pdropLayers may name (the engine's kPDropMaxStages). */
export const PDROP_MAX_STAGES = 8;

/**
 * The engine's defaults for the options every path (node parameters, CLI, calibration) can set;
 * a test keeps them equal to the addon's `pruneDefaults`. Positions kept and no recycling: what
 * the model learned survives pruning (docs/autoprune.md, "Positions and recycling"). `parity`
 * gives the reference's behaviour instead (re-indexed positions but for FastV, recycling, tail
 * rows, the reference's DPC-kNN tie rule) whatever the three others say.
 */
export const PRUNE_OPTION_DEFAULTS = Object.freeze({
  x0: 14.9,
  k0: 0.4,
  gamma: 0.2,
  recycle: false,
  reindexPositions: false,
  scoreRows: 'instruction' as ScoreRowsName,
  parity: false,
  fastvLayer: 2,
  /** Empty: PDrop's default stages (L/4, L/2, 3L/4, earlier ones when the budget needs them). */
  pdropLayers: Object.freeze([]) as readonly number[],
});
