import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const testModels = path.join(root, 'build', 'test-models');
export const addonPath = path.join(root, 'build', 'Release', 'vla_addon.node');

/** The addon suites need `npm run build` and `npm run test:models`; say so loudly instead of skipping. */
export function requireBuilt(): void {
  if (!existsSync(addonPath)) throw new Error(`addon missing at ${addonPath}: run \`npm run build\``);
  if (!existsSync(path.join(testModels, 'tiny', 'config.json'))) throw new Error(`test models missing in ${testModels}: run \`npm run test:models\``);
}

export const builtCli = path.join(root, 'dist', 'cli', 'main.js');

/** Tests of the command line as users run it (bin/autoprune-ros.js) need the built TypeScript too. */
export function requireBuiltCli(): void {
  if (!existsSync(builtCli)) throw new Error(`${builtCli} missing: run \`npm run build\``);
}

/** A deterministic rgb8 frame with a horizon and a road-like trapezoid. */
export function syntheticFrame(width: number, height: number, seed: number): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const sky = y < height / 2;
      const road = !sky && Math.abs(x - width / 2) < (y - height / 2) * 1.2;
      const base = sky ? [120, 170, 230] : road ? [70, 70, 75] : [60, 120, 50];
      for (let c = 0; c < 3; c++) data[i + c] = Math.max(0, Math.min(255, (base[c] as number) + Math.floor(rnd() * 20) - 10));
    }
  }
  return data;
}
