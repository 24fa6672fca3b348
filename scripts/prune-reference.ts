// Runs the engine and the independent float64 reference of the pruning
// (tools/reference/prune_ref.py) on the same inputs across a grid of policies, budgets and
// options, and compares them: kept tokens per layer, MI_0, MI_1, k, waypoints, greedy tokens.
// docs/autoprune.md, "Checking the engine", says what is compared and why.
//   npx tsx scripts/prune-reference.ts [--grid quick|full] [--json]
// Needs the built addon, the test models (npm run test:models) and /usr/bin/python3 with numpy.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

import { loadAddon } from '../src/engine/addon.js';
import type { HeadKind, NativeEngine, NativePruneOptions, NativeResult } from '../src/engine/addon-types.js';
import { buildPrompt, type PromptConfig } from '../src/model/prompt.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { renderView, type CameraName } from '../src/sample/render.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PY = '/usr/bin/python3';
const REF = path.join(root, 'tools', 'reference', 'prune_ref.py');

/** Tolerances: MI and k relative, waypoints absolute in metres. */
export const TOL = { mi: 1e-4, k: 1e-4, waypoints_m: 1e-3 };

interface RefView { width: number; height: number; encoding: 'rgb8'; data_b64: string }
export interface RefCase {
  id: string;
  model: string;
  input_ids: number[];
  views: RefView[];
  head: HeadKind;
  max_new_tokens: number | null;
  prune: NativePruneOptions;
}
export interface CaseResult {
  refused?: string;
  kept?: number[];
  merged?: number[];
  keptPerView?: number[][];
  /** Original visual index (view * N_p + patch) of every visual row after each layer, -1 merged; reference only. */
  keptIndex?: number[][];
  mi0?: number;
  mi1?: number;
  k?: number;
  /** Prefill GFLOP of the kept counts, as docs/autoprune.md's Budget counts them. */
  flops?: number;
  waypoints?: number[];
  tokens?: number[];
}

/** /usr/bin/python3 with numpy, or why not. */
export function pythonProblem(): string | undefined {
  const r = spawnSync(PY, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (r.error) return `${PY} not found`;
  if (r.status !== 0) return `numpy not installed for ${PY} (${(r.stderr || '').trim().split('\n').pop()})`;
  return undefined;
}

const b64 = (d: Uint8Array) => Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64');

interface ModelConfig {
  vision_config: { image_size: number; patch_size: number };
  text_config: { hidden_size: number; intermediate_size: number; num_hidden_layers: number };
  vla: PromptConfig & { cameras: string[]; action_head: HeadKind; num_waypoints: number };
}
const readConfig = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as ModelConfig;

/** Rendered driving views, S pixels wide and letterboxed (16:9), so the pad mask acts. */
function renderedViews(cfg: ModelConfig, seed: number): RefView[] {
  const S = cfg.vision_config.image_size;
  const h = Math.round((S * 9) / 16);
  return cfg.vla.cameras.map((camera, i) => {
    const cam = (['front', 'front_left', 'front_right'].includes(camera) ? camera : 'front') as CameraName;
    const v = renderView({ camera: cam, width: S, height: h, seed: seed + i, curvature: 0.01 * (i - 1) });
    const rows = Buffer.alloc(S * h * 3);
    for (let y = 0; y < h; y++) Buffer.from(v.data.buffer, v.data.byteOffset + y * v.step, S * 3).copy(rows, y * S * 3);
    return { width: S, height: h, encoding: 'rgb8', data_b64: rows.toString('base64') };
  });
}

/** The bundled sample JPEGs, scaled to S pixels wide (the reference takes frames S on their long side). */
async function sampleViews(S: number): Promise<RefView[]> {
  const out: RefView[] = [];
  for (const cam of ['front', 'front_left', 'front_right']) {
    const { data, info } = await sharp(path.join(root, 'assets', 'sample', `${cam}.jpg`)).resize({ width: S }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    out.push({ width: info.width, height: info.height, encoding: 'rgb8', data_b64: b64(data) });
  }
  return out;
}

export interface Input {
  name: string; model: string; dir: string; head: HeadKind; ids: number[]; views: RefView[]; nVisual: number; maxNewTokens: number | null;
  /** The unpruned prefill's GFLOP (docs/autoprune.md, "Budget"). */
  gflops: number;
}

/** The frames of the check: generated on the tiny models, real ones on the bundled drive model. */
export async function buildInputs(grid: 'quick' | 'full'): Promise<Input[]> {
  const testModels = path.join(root, 'build', 'test-models');
  const drive = path.join(root, 'assets', 'models', 'drive');
  const inputs: Input[] = [];
  const prompt = async (dir: string, instruction: string, nViews: number) => {
    const tok = await loadTokenizer(dir);
    return Array.from(tok.encode(buildPrompt(readConfig(dir).vla, instruction, nViews), { addBos: true }));
  };
  const add = (name: string, model: string, dir: string, ids: number[], views: RefView[], maxNewTokens: number | null = null) => {
    const cfg = readConfig(dir);
    const g = Math.floor(cfg.vision_config.image_size / cfg.vision_config.patch_size);
    const nVisual = views.length * g * g;
    const t = cfg.text_config, d = t.hidden_size, m = t.intermediate_size;
    const n = ids.length - views.length + nVisual + (cfg.vla.action_head === 'waypoints' ? cfg.vla.num_waypoints : 0);
    const gflops = (t.num_hidden_layers * (4 * n * d * d + 2 * n * n * d + 3 * n * d * m)) / 1e9;
    inputs.push({ name, model, dir, head: cfg.vla.action_head, ids, views, nVisual, maxNewTokens, gflops });
  };
  for (const model of ['tiny', 'tiny-text', 'tiny-6cam']) {
    const dir = path.join(testModels, model);
    const views = renderedViews(readConfig(dir), 3);
    add(`${model}/rendered`, model, dir, await prompt(dir, 'turn left at the next intersection', views.length), views, model === 'tiny-text' ? 4 : null);
  }
  const instruction = readFileSync(path.join(root, 'assets', 'sample', 'instruction.txt'), 'utf8').trim();
  const sv = await sampleViews(readConfig(drive).vision_config.image_size);
  add('drive/sample', 'drive', drive, await prompt(drive, instruction, sv.length), sv);
  // Frames of the test drives with their prompts, as the drive golden holds them (square: no padding).
  const golden = JSON.parse(readFileSync(path.join(root, 'test', 'fixtures', 'golden', 'drive-golden.json'), 'utf8')) as { cases: Array<{ name: string; input_ids: number[]; views: RefView[] }> };
  for (const c of golden.cases.slice(0, grid === 'full' ? golden.cases.length : 1)) add(`drive/${c.name}`, 'drive', drive, c.input_ids, c.views);
  return inputs;
}

/** Policies x budgets 33/22/11 % x option sets; the full grid adds more option sets. */
export function buildCases(inputs: Input[], grid: 'quick' | 'full'): RefCase[] {
  const sets: Array<Partial<NativePruneOptions>> = [
    {}, { recycle: true }, { scoreRows: 'tail' }, { scoreRows: 'last' }, { parity: true }, { reindexPositions: true },
  ];
  if (grid === 'full') sets.push({ recycle: true, scoreRows: 'tail' }, { recycle: true, reindexPositions: true }, { parity: true, scoreRows: 'instruction' }, { padMask: false });
  const extra: Record<string, Array<Partial<NativePruneOptions>>> = {
    // a slope k > 0 (the bundled configs' x0; k0, gamma of a calibration's order), the parity constants
    autoprune: [{ x0: 2.8, k0: 1.6, gamma: 0.2 }, { x0: 2.8, k0: 1.6, gamma: 0.2, recycle: true }, { x0: 14.9, k0: 0.4, gamma: 0.2, parity: true }],
    fastv: [{ fastvLayer: 1 }],
    // explicit stage layers: one stage, two, and three that the tiny models (3 layers: stages in
    // 0..1) refuse and the drive model (6 layers) runs
    pdrop: [{ pdropLayers: [1] }, { pdropLayers: [0, 1] }, { pdropLayers: [0, 2, 4] }],
  };
  const policies = ['autoprune', 'fastv', 'pdrop', 'sparsevlm-fixed', 'cls-prior'] as const;
  const cases: RefCase[] = [];
  for (const inp of inputs) {
    for (const policy of policies) {
      for (const frac of [0.33, 0.22, 0.11]) {
        const value = Math.round(frac * inp.nVisual * 100) / 100;
        for (const s of [...sets, ...(extra[policy] ?? [])]) {
          const prune: NativePruneOptions = { policy, budget: { kind: 'tokens', value }, ...s };
          cases.push({ id: `${inp.name} ${policy} tokens:${value} ${JSON.stringify(s)}`, model: inp.model, input_ids: inp.ids, views: inp.views, head: inp.head, max_new_tokens: inp.maxNewTokens, prune });
        }
      }
      // FLOPs caps at 85, 75, 60 and 50 % of the unpruned prefill (at 85 % the calibrated slope's
      // curve passes 1 on the bundled model)
      for (const frac of [0.85, 0.75, 0.6, 0.5]) {
        const value = Number((frac * inp.gflops).toPrecision(6));
        for (const s of [{}, { recycle: true }, ...(policy === 'autoprune' ? [extra.autoprune![0]!] : []), ...(policy === 'pdrop' ? [extra.pdrop![1]!] : [])]) {
          const prune: NativePruneOptions = { policy, budget: { kind: 'flops', value }, ...s };
          cases.push({ id: `${inp.name} ${policy} flops:${value} ${JSON.stringify(s)}`, model: inp.model, input_ids: inp.ids, views: inp.views, head: inp.head, max_new_tokens: inp.maxNewTokens, prune });
        }
      }
    }
  }
  return cases;
}

export async function runEngine(inputs: Input[], cases: RefCase[]): Promise<Map<string, CaseResult>> {
  const addon = loadAddon();
  const engines = new Map<string, NativeEngine>();
  const out = new Map<string, CaseResult>();
  try {
    for (const inp of inputs) if (!engines.has(inp.model)) engines.set(inp.model, await addon.load(inp.dir, { backend: 'cpu', threads: 1 }));
    for (const c of cases) {
      let r: NativeResult;
      try {
        r = await engines.get(c.model)!.infer({
          inputIds: Int32Array.from(c.input_ids),
          views: c.views.map((v) => ({ data: new Uint8Array(Buffer.from(v.data_b64, 'base64')), width: v.width, height: v.height, step: v.width * 3, encoding: 'rgb8' as const })),
          head: c.head,
          ...(c.max_new_tokens != null ? { maxNewTokens: c.max_new_tokens } : {}),
          returnKeptIndex: true,
          prune: c.prune,
        });
      } catch (err) {
        out.set(c.id, { refused: `${(err as { code?: string }).code ?? ''} ${(err as Error).message}` });
        continue;
      }
      const p = r.prune;
      out.set(c.id, {
        kept: p.kept, merged: p.merged, keptPerView: p.keptPerView, ...(p.keptIndex ? { keptIndex: p.keptIndex } : {}),
        mi0: p.mi0, mi1: p.mi1, k: p.k, flops: p.flops, waypoints: Array.from(r.waypoints), tokens: Array.from(r.tokens),
      });
    }
  } finally {
    for (const e of engines.values()) e.dispose();
  }
  return out;
}

export function runReference(inputs: Input[], cases: RefCase[]): Map<string, CaseResult> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'prune-ref-'));
  try {
    const models = Object.fromEntries(inputs.map((i) => [i.model, i.dir]));
    writeFileSync(path.join(tmp, 'cases.json'), JSON.stringify({ models, cases }));
    const r = spawnSync(PY, [REF, 'run', '--cases', path.join(tmp, 'cases.json'), '--out', path.join(tmp, 'out.json')], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) throw new Error(`prune_ref.py failed (${r.status ?? r.signal}): ${r.stderr}`);
    const res = JSON.parse(readFileSync(path.join(tmp, 'out.json'), 'utf8')) as { results: Array<CaseResult & { id: string }> };
    return new Map(res.results.map((x) => [x.id, x]));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const rel = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b)));
const maxAbs = (a: number[], b: number[]) => (a.length !== b.length ? Infinity : a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0));
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export interface Summary {
  runs: number;
  agree: number;
  bothRefused: number;
  indicesCompared: number;
  max: { mi0: number; mi1: number; k: number; waypoints_m: number };
  disagreements: Array<{ id: string; why: string[] }>;
}

/** The comparison of one case: what differs beyond the tolerances (empty: they agree). */
export function compareCase(e: CaseResult, r: CaseResult, max: Summary['max']): { why: string[]; indices: boolean } {
  const why: string[] = [];
  if (e.refused || r.refused) {
    if (!(e.refused && r.refused)) why.push(`refused: engine ${e.refused ?? 'no'}, reference ${r.refused ?? 'no'}`);
    return { why, indices: false };
  }
  if (!same(e.kept, r.kept)) why.push(`kept ${JSON.stringify(e.kept)} vs ${JSON.stringify(r.kept)}`);
  if (!same(e.merged, r.merged)) why.push(`merged ${JSON.stringify(e.merged)} vs ${JSON.stringify(r.merged)}`);
  if (!same(e.keptPerView, r.keptPerView)) why.push(`keptPerView ${JSON.stringify(e.keptPerView)} vs ${JSON.stringify(r.keptPerView)}`);
  const indices = !!e.keptIndex;
  if (e.keptIndex && !same(e.keptIndex, r.keptIndex)) {
    const l = e.keptIndex.findIndex((v, i) => !same(v, r.keptIndex?.[i]));
    why.push(`kept indices differ from layer ${l}: ${JSON.stringify(e.keptIndex[l])} vs ${JSON.stringify(r.keptIndex?.[l])}`);
  }
  for (const key of ['mi0', 'mi1', 'k'] as const) {
    const d = rel(e[key]!, r[key]!);
    max[key] = Math.max(max[key], d);
    if (!(d <= TOL[key === 'k' ? 'k' : 'mi'])) why.push(`${key} ${e[key]} vs ${r[key]} (relative ${d.toExponential(2)})`);
  }
  if (!(rel(e.flops!, r.flops!) <= 1e-9)) why.push(`flops ${e.flops} vs ${r.flops}`);
  const w = maxAbs(e.waypoints ?? [], r.waypoints ?? []);
  max.waypoints_m = Math.max(max.waypoints_m, w);
  if (!(w <= TOL.waypoints_m)) why.push(`waypoints differ by ${w} m`);
  if (!same(e.tokens, r.tokens)) why.push(`tokens ${JSON.stringify(e.tokens)} vs ${JSON.stringify(r.tokens)}`);
  return { why, indices };
}

export function compareAll(cases: RefCase[], eng: Map<string, CaseResult>, ref: Map<string, CaseResult>): Summary {
  const s: Summary = { runs: cases.length, agree: 0, bothRefused: 0, indicesCompared: 0, max: { mi0: 0, mi1: 0, k: 0, waypoints_m: 0 }, disagreements: [] };
  for (const c of cases) {
    const e = eng.get(c.id)!, r = ref.get(c.id)!;
    const { why, indices } = compareCase(e, r, s.max);
    if (indices) s.indicesCompared++;
    if (why.length) s.disagreements.push({ id: c.id, why });
    else {
      s.agree++;
      if (e.refused) s.bothRefused++;
    }
  }
  return s;
}

export async function check(grid: 'quick' | 'full'): Promise<Summary> {
  const inputs = await buildInputs(grid);
  const cases = buildCases(inputs, grid);
  const eng = await runEngine(inputs, cases);
  const ref = runReference(inputs, cases);
  return compareAll(cases, eng, ref);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const grid = args.includes('--grid') && args[args.indexOf('--grid') + 1] === 'full' ? 'full' : 'quick';
  const why = pythonProblem();
  if (why) {
    process.stderr.write(`${why}\n`);
    process.exit(2);
  }
  const t0 = Date.now();
  const s = await check(grid);
  if (args.includes('--json')) process.stdout.write(`${JSON.stringify(s)}\n`);
  else {
    process.stdout.write(`${s.agree} of ${s.runs} runs agree (${s.bothRefused} refused by both; kept indices compared in ${s.indicesCompared}); ` +
      `max relative MI_0 ${s.max.mi0.toExponential(2)}, MI_1 ${s.max.mi1.toExponential(2)}, k ${s.max.k.toExponential(2)}; max waypoint difference ${s.max.waypoints_m.toExponential(2)} m; ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    for (const d of s.disagreements) process.stdout.write(`  ${d.id}: ${d.why.join('; ')}\n`);
  }
  process.exit(s.disagreements.length ? 1 : 0);
}
