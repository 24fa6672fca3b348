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
  fastv: 'one drop after layer K-1 by the last prompt token\'s attention',
  pdrop: 'staged drops at a quarter, half and three quarters of the depth',
  'sparsevlm-fixed': "SparseVLM's fixed schedules (after layers 2, 6, 15) scaled to the budget, with recycling",
  'cls-prior': 'top-T visual tokens by CLS attention before the decoder (FasterVLM-style)',
  random: 'T random visual tokens before the decoder (seeded), a control',
});

export function isPrunePolicy(name: string): name is PrunePolicyName {
  return (PRUNE_POLICIES as readonly string[]).includes(name);
}

/** The policies that prune (every one but none): each needs a budget. */
export const PRUNING_POLICIES = PRUNE_POLICIES.filter((p): p is Exclude<PrunePolicyName, 'none'> => p !== 'none');
