/**
 * Where a replay writes, checked before anything runs. Nothing is ever deleted that this tool
 * did not write: the output directory must not be, hold or lie inside the input bag (real
 * paths, links followed), and outputs of an earlier replay there are replaced only when asked
 * (overwrite) and only in a directory replay itself marked, by their known names.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { isInside, realpathOrSelf } from '../util/fsafe.js';
import { CHART_TITLES } from './report.js';

/** Written into every output directory replay creates: what --overwrite may clear. */
export const REPLAY_MARKER = '.autoprune-replay';

/** What a replay writes into its output directory (charts, report, bag, trace, sweep settings, baseline). */
export const REPLAY_OUTPUTS: readonly string[] = ['bag', 'trace.pb', 'report.json', 'report.md', 'settings', 'constant-velocity', ...Object.keys(CHART_TITLES)];

/** The real path of p, for a path that may not exist yet: its deepest existing ancestor's real path plus the rest. */
function realOrPlanned(p: string): string {
  const abs = path.resolve(p);
  let head = abs;
  const rest: string[] = [];
  while (!existsSync(head)) {
    const up = path.dirname(head);
    if (up === head) break;
    rest.unshift(path.basename(head));
    head = up;
  }
  return path.join(realpathOrSelf(head), ...rest);
}

/** Refuses (VLA_E_ARGS) an output directory that is, holds or lies inside the bag. */
export function checkOutputApart(bag: string, outDir: string): void {
  const input = realOrPlanned(bag);
  const out = realOrPlanned(outDir);
  const why = out === input ? 'is the bag itself' : isInside(out, input) ? 'holds the bag' : isInside(input, out) ? 'lies inside the bag' : undefined;
  if (why) throw new VlaError(ErrorCodes.ARGS, `output directory ${outDir} ${why} (${input}): replay never writes over its input; choose a directory apart from it`, { outDir, bag: input });
}

/**
 * Readies outDir for a replay of `bag`: refuses an output directory that overlaps the bag, and one
 * that already holds replay outputs unless `overwrite` (which then removes those outputs, by
 * name, from a directory replay marked); then creates it and marks it.
 */
export async function prepareReplayOutput(bag: string, outDir: string, opts: { overwrite?: boolean } = {}): Promise<void> {
  checkOutputApart(bag, outDir);
  const present = existsSync(outDir) ? readdirSync(outDir) : [];
  const previous = REPLAY_OUTPUTS.filter((n) => present.includes(n));
  if (previous.length) {
    if (!opts.overwrite) {
      throw new VlaError(ErrorCodes.ARGS, `${outDir} already holds replay outputs (${previous.join(', ')}): choose another --out, or pass --overwrite to replace them`, { outDir });
    }
    if (!present.includes(REPLAY_MARKER)) {
      throw new VlaError(ErrorCodes.ARGS, `${outDir} holds ${previous.join(', ')} but was not written by replay (no ${REPLAY_MARKER}): not overwriting; choose another --out`, { outDir });
    }
    for (const n of previous) await rm(path.join(outDir, n), { recursive: true, force: true });
  }
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, REPLAY_MARKER), 'written by autoprune-ros replay; --overwrite may replace the replay outputs in this directory\n');
}
