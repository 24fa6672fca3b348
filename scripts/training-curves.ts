// Charts the training curves that tools/train/train.py records in a model's training.json: the
// training loss (smooth-L1, mean over each logging interval) and the validation L2@3s, against
// the step, for one or more models side by side.
//   npx tsx scripts/training-curves.ts assets/models/drive-deep assets/models/drive --out docs/training-curves.svg
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { lineChart, type LineSeries } from '../src/replay/svg.js';
import { ErrorCodes, VlaError } from '../src/util/errors.js';

/** The part of training.json this chart reads. */
export interface TrainingLog {
  arch?: string;
  loss_curve: Array<{ step: number; loss: number }>;
  val_curve: Array<{ step: number; l2_3s_m: number }>;
  final?: { val?: { constant_velocity?: { l2_3s_m: number } } | null };
}

/** Reads and checks DIR/training.json (or a training.json path); a clear coded error otherwise. */
export function readTrainingLog(p: string): TrainingLog {
  const file = p.endsWith('.json') ? p : path.join(p, 'training.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${file}: not a readable training log (${(err as Error).message})`, { file });
  }
  const log = raw as Partial<TrainingLog>;
  const okCurve = (c: unknown, key: string) => Array.isArray(c) && c.every((e) => e && Number.isFinite((e as Record<string, number>).step) && Number.isFinite((e as Record<string, number>)[key]));
  if (!okCurve(log.loss_curve, 'loss') || !okCurve(log.val_curve, 'l2_3s_m') || !log.loss_curve!.length) {
    throw new VlaError(ErrorCodes.IO, `${file}: no loss_curve / val_curve of numbers (written by tools/train/train.py)`, { file });
  }
  return log as TrainingLog;
}

/** Two SVG charts: the training loss, and validation L2@3s with constant velocity's for scale. */
export function trainingCurvesSvg(models: Array<{ name: string; log: TrainingLog }>): { loss: string; val: string } {
  const loss: LineSeries[] = models.map((m) => ({ name: m.name, points: m.log.loss_curve.map((c) => [c.step, c.loss] as [number, number]) }));
  const val: LineSeries[] = models.map((m) => ({ name: m.name, points: m.log.val_curve.map((c) => [c.step, c.l2_3s_m] as [number, number]) }));
  const cv = models.map((m) => m.log.final?.val?.constant_velocity?.l2_3s_m).find((v) => Number.isFinite(v));
  return {
    loss: lineChart({ title: 'Training loss (smooth L1 on the waypoints)', xLabel: 'step', yLabel: 'loss', series: loss, xInteger: true }),
    val: lineChart({
      title: 'Validation L2 at 3 s', xLabel: 'step', yLabel: 'L2@3s [m]', series: val, xInteger: true,
      ...(cv !== undefined ? { references: [{ y: cv, label: `constant velocity ${cv.toFixed(2)} m` }] } : {}),
    }),
  };
}

function main(argv: string[]): number {
  const outIdx = argv.indexOf('--out');
  const out = outIdx >= 0 ? argv[outIdx + 1] : undefined;
  const dirs = argv.filter((_, i) => i !== outIdx && i !== outIdx + 1);
  if (!out || !dirs.length) {
    process.stderr.write('usage: npx tsx scripts/training-curves.ts MODEL_DIR... --out FILE.svg (writes FILE.svg and FILE-val.svg)\n');
    return 2;
  }
  const svg = trainingCurvesSvg(dirs.map((d) => ({ name: path.basename(path.resolve(d)), log: readTrainingLog(d) })));
  const valOut = out.replace(/\.svg$/, '') + '-val.svg';
  writeFileSync(out, svg.loss);
  writeFileSync(valOut, svg.val);
  process.stdout.write(`wrote ${out} and ${valOut}\n`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    const e = VlaError.from(err);
    process.stderr.write(`${e.code}: ${e.message}\n`);
    process.exitCode = 1;
  }
}
