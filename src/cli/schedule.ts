/**
 * `schedule`: a policy's per-layer schedule and prefill FLOPs for a budget, without running a
 * model: the engine's own planning (vla::prune_schedule). With --model DIR the depth, widths and
 * visual-token count are the model's.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { loadAddon } from '../engine/addon.js';
import { parseBudget } from '../engine/engine.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { finiteNumber as num, integerAtLeast, layerList, nonNegativeInt as int, policyOption, type Io } from './common.js';
import { PDROP_MAX_STAGES, type PrunePolicyName } from '../engine/policies.js';

interface ModelConfigJson {
  text_config?: { hidden_size?: number; intermediate_size?: number; num_hidden_layers?: number };
  vision_config?: { image_size?: number; patch_size?: number };
  vision_feature_select_strategy?: string;
  vla?: { cameras?: string[] };
}

/** Visual tokens a model's decoder sees per frame: patches per view (and the class token with 'full') times its cameras. */
export function modelVisualTokens(cfg: ModelConfigJson): number | undefined {
  const v = cfg.vision_config;
  if (!v?.image_size || !v.patch_size) return undefined;
  const side = Math.floor(v.image_size / v.patch_size);
  return (side * side + (cfg.vision_feature_select_strategy === 'full' ? 1 : 0)) * (cfg.vla?.cameras?.length || 1);
}

export function registerSchedule(program: Command, io: Io): void {
  program
    .command('schedule')
    .description("a policy's per-layer schedule and prefill FLOPs for a budget as the engine plans it, without running a model (one JSON object)")
    .addOption(policyOption('pruning policy (default autoprune)', 'autoprune'))
    .option('--layers <n>', 'decoder layers (default 32, or the model\'s)', int('--layers'))
    .option('--visual-tokens <n>', 'visual tokens entering the decoder, all views (default 576, or the model\'s)', int('--visual-tokens'))
    .requiredOption('--budget <spec>', 'tokens:<T> or flops:<GFLOP>')
    .option('--mi <bits>', 'complexity signal MI_1', num('--mi'), 0)
    .option('--x0 <x>', 'logistic centre', num('--x0'))
    .option('--k0 <k>', 'base slope', num('--k0'))
    .option('--gamma <g>', 'MI sensitivity', num('--gamma'))
    .option('--model <config>', 'take hidden and FFN sizes from a config.json (or model directory)')
    .option('--hidden <d>', 'hidden size', int('--hidden'))
    .option('--ffn <m>', 'FFN size', int('--ffn'))
    .option('--prefix-tokens <n>', 'tokens before the image', int('--prefix-tokens'), 35)
    .option('--text-tokens <n>', 'tokens after the image', int('--text-tokens'), 40)
    .option('--recycle', 'plan for DPC-kNN recycling (merged tokens take room)')
    .option('--parity', "the reference's behaviour (recycling)")
    .option('--fastv-layer <K>', "FastV's K", integerAtLeast('--fastv-layer', 1))
    .option('--pdrop-layers <a,b,c>', "PDrop's stage layers, 0-based", layerList('--pdrop-layers', PDROP_MAX_STAGES))
    .action(async (o: { policy: PrunePolicyName; layers?: number; visualTokens?: number; budget: string; mi: number; x0?: number; k0?: number; gamma?: number; model?: string; hidden?: number; ffn?: number; prefixTokens: number; textTokens: number; recycle?: boolean; parity?: boolean; fastvLayer?: number; pdropLayers?: number[] }) => {
      const b = parseBudget(o.budget);
      let hidden = o.hidden ?? 4096;
      let ffn = o.ffn ?? 11008;
      let layers = o.layers ?? 32;
      let visualTokens = o.visualTokens ?? 576;
      if (o.model) {
        const file = o.model.endsWith('.json') ? o.model : path.join(o.model, 'config.json');
        let cfg: ModelConfigJson;
        try {
          cfg = JSON.parse(await readFile(file, 'utf8'));
        } catch (err) {
          throw new VlaError(ErrorCodes.CONFIG, `${file}: ${(err as Error).message}`);
        }
        hidden = o.hidden ?? cfg.text_config?.hidden_size ?? 4096;
        ffn = o.ffn ?? cfg.text_config?.intermediate_size ?? 11008;
        layers = o.layers ?? cfg.text_config?.num_hidden_layers ?? layers;
        visualTokens = o.visualTokens ?? modelVisualTokens(cfg) ?? visualTokens;
      }
      const s = loadAddon().schedule({
        policy: o.policy,
        layers,
        visualTokens,
        ...(b.kind === 'tokens' ? { budgetTokens: b.value } : { budgetFlops: b.value }),
        mi: o.mi,
        x0: o.x0,
        k0: o.k0,
        gamma: o.gamma,
        hidden,
        ffn,
        prefixTokens: o.prefixTokens,
        textTokens: o.textTokens,
        ...(o.recycle !== undefined ? { recycle: o.recycle } : {}),
        ...(o.parity !== undefined ? { parity: o.parity } : {}),
        ...(o.fastvLayer !== undefined ? { fastvLayer: o.fastvLayer } : {}),
        ...(o.pdropLayers !== undefined ? { pdropLayers: o.pdropLayers } : {}),
      });
      io.out(JSON.stringify({ layers, visualTokens, budget: b, mi: o.mi, hidden, ffn, ...s }));
    });
}
