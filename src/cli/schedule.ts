/** `schedule`: AutoPrune's per-layer schedule and prefill FLOPs for a budget, without a model. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { loadAddon } from '../engine/addon.js';
import { parseBudget } from '../engine/engine.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { finiteNumber as num, nonNegativeInt as int, type Io } from './common.js';

export function registerSchedule(program: Command, io: Io): void {
  program
    .command('schedule')
    .description("AutoPrune's per-layer schedule and prefill FLOPs for a budget, without a model (one JSON object)")
    .option('--layers <n>', 'decoder layers', int('--layers'), 32)
    .option('--visual-tokens <n>', 'visual tokens entering the decoder (all views)', int('--visual-tokens'), 576)
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
    .action(async (o: { layers: number; visualTokens: number; budget: string; mi: number; x0?: number; k0?: number; gamma?: number; model?: string; hidden?: number; ffn?: number; prefixTokens: number; textTokens: number }) => {
      const b = parseBudget(o.budget);
      let hidden = o.hidden ?? 4096;
      let ffn = o.ffn ?? 11008;
      let layers = o.layers;
      if (o.model) {
        const file = o.model.endsWith('.json') ? o.model : path.join(o.model, 'config.json');
        let cfg: { text_config?: { hidden_size?: number; intermediate_size?: number; num_hidden_layers?: number } };
        try {
          cfg = JSON.parse(await readFile(file, 'utf8'));
        } catch (err) {
          throw new VlaError(ErrorCodes.CONFIG, `${file}: ${(err as Error).message}`);
        }
        hidden = o.hidden ?? cfg.text_config?.hidden_size ?? 4096;
        ffn = o.ffn ?? cfg.text_config?.intermediate_size ?? 11008;
        layers = cfg.text_config?.num_hidden_layers ?? layers;
      }
      const s = loadAddon().schedule({
        layers,
        visualTokens: o.visualTokens,
        ...(b.kind === 'tokens' ? { budgetTokens: b.value } : { budgetFlops: b.value }),
        mi: o.mi,
        x0: o.x0,
        k0: o.k0,
        gamma: o.gamma,
        hidden,
        ffn,
        prefixTokens: o.prefixTokens,
        textTokens: o.textTokens,
      });
      io.out(JSON.stringify({ layers, visualTokens: o.visualTokens, budget: b, mi: o.mi, hidden, ffn, ...s }));
    });
}
