import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { ADDON_FILE } from '../util/paths.js';
import type { NativeAddon } from './addon-types.js';

let cached: NativeAddon | undefined;

/** Loads build/Release/vla_addon.node (VLA_ADDON overrides the path). */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const file = process.env.VLA_ADDON ?? ADDON_FILE;
  if (!existsSync(file)) {
    throw new VlaError(ErrorCodes.ADDON_MISSING, `native addon not found at ${file}: run \`npm run build\` first`, { file });
  }
  const require = createRequire(import.meta.url);
  try {
    cached = require(file) as NativeAddon;
  } catch (err) {
    throw new VlaError(ErrorCodes.ADDON_MISSING, `native addon at ${file} failed to load: ${(err as Error).message}`, { file }, { cause: err });
  }
  return cached;
}
