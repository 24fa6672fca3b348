/**
 * The fuzz harness: seeded hostile cases (targets.ts) run in a child process (child.ts) under a
 * wall-clock timeout and a memory limit (its resident set, sampled every 20 ms), so that a hang
 * or an allocation bomb is a finding, not a stuck or dead machine. Each case must end with a
 * correct result or a coded error, within the bounds, leave its input files unchanged, and never
 * open the canary (a file outside every case directory the generators point at).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { caseSeed, Rng } from './mutate.js';
import { absoluteEntry, ADDON_TARGETS, keepCase, makeCanary, makeCase, makeCorpus, SELF_TESTS, TARGETS, type Corpus, type FuzzCase, type Target } from './targets.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

export interface FuzzOptions {
  /** Wall-clock budget for the cases (the corpus and the child's start come on top). */
  seconds: number;
  seed: number;
  targets?: readonly Target[];
  /** One case of one target only (reproduces a finding). */
  caseSeed?: number;
  /** Per case. */
  timeoutMs?: number;
  /** Resident set of the child, MiB. */
  memoryMiB?: number;
  /** Instead of the targets, the harness's own checks (SELF_TESTS): each must be a finding. */
  selfTest?: boolean;
  /** Where failing cases are kept (default build/fuzz-findings). */
  findingsDir?: string;
  log?: (line: string) => void;
}

export interface Finding {
  target: Target;
  seed: number;
  kind: 'uncoded' | 'timeout' | 'memory' | 'crash' | 'modified input' | 'canary opened';
  detail: string;
  note: string;
  kept: string;
}

export interface FuzzSummary {
  cases: number;
  byTarget: Record<string, { cases: number; ok: number; coded: number; codes: Record<string, number>; maxMs: number; maxRssMiB: number }>;
  findings: Finding[];
  skipped: string[];
  seconds: number;
}

interface Reply {
  id: number;
  outcome: 'ok' | 'coded' | 'uncoded';
  code: string;
  detail: string;
  ms: number;
  canary: string[];
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function hashTree(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const f of (existsSync(d) ? readdirSync(d) : []).sort()) {
      const p = path.join(d, f);
      const st = lstatSync(p);
      h.update(f);
      if (st.isSymbolicLink()) h.update(`-> ${readlinkSync(p)}`);
      else if (st.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

class Child {
  private proc: ChildProcess | undefined;
  private waiting: ((r: Reply | { died: string }) => void) | undefined;
  private ready: Promise<void> | undefined;
  peakMiB = 0;

  constructor(private readonly canary: string, private readonly memoryMiB: number) {}

  private start(): Promise<void> {
    const proc = fork(path.join(here, 'child.ts'), [], {
      cwd: root,
      execArgv: ['--import', 'tsx', `--max-old-space-size=${Math.max(256, Math.floor(this.memoryMiB * 0.75))}`],
      env: { ...process.env, FUZZ_CANARY: this.canary, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    proc.stderr?.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
    this.proc = proc;
    this.ready = new Promise<void>((resolve, reject) => {
      proc.once('message', (m) => ((m as { ready?: boolean }).ready ? resolve() : reject(new Error('child did not start'))));
      proc.once('exit', (code, sig) => reject(new Error(`fuzz child exited while starting (${sig ?? code}): ${stderr}`)));
    });
    proc.on('message', (m) => {
      if ((m as Reply).id !== undefined) this.waiting?.(m as Reply);
    });
    proc.on('exit', (code, sig) => {
      if (this.proc === proc) this.proc = undefined;
      this.waiting?.({ died: `${sig ?? `exit ${code}`}: ${stderr.slice(-1500)}` });
    });
    return this.ready;
  }

  kill(): void {
    const p = this.proc;
    this.proc = undefined;
    p?.kill('SIGKILL');
  }

  /** Runs one case; kills the child on a timeout or when its resident set passes the limit. */
  async run(id: number, entry: unknown, timeoutMs: number): Promise<Reply | { died: string } | { timeout: true } | { memory: number }> {
    if (!this.proc) await this.start();
    const proc = this.proc as ChildProcess;
    const pid = proc.pid as number;
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: Reply | { died: string } | { timeout: true } | { memory: number }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(sampler);
        this.waiting = undefined;
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.kill();
        finish({ timeout: true });
      }, timeoutMs);
      const sampler = setInterval(() => {
        const mib = rssMiB(pid);
        this.peakMiB = Math.max(this.peakMiB, mib);
        if (mib > this.memoryMiB) {
          this.kill();
          finish({ memory: mib });
        }
      }, 20);
      this.waiting = (r) => finish(r);
      proc.send({ id, entry });
    });
  }
}

/** Writes a case's files (and links) into dir. */
function materialise(c: FuzzCase, dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of c.files) {
    const p = path.join(dir, f.path);
    mkdirSync(path.dirname(p), { recursive: true });
    if (f.link !== undefined) symlinkSync(f.link, p);
    else writeFileSync(p, f.data as Buffer);
  }
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const log = o.log ?? (() => undefined);
  const t0 = performance.now();
  const work = path.join(os.tmpdir(), `autoprune-fuzz-${process.pid}`);
  const findingsDir = o.findingsDir ?? path.join(root, 'build', 'fuzz-findings');
  const model = path.join(root, 'build', 'test-models', 'tiny');
  const addon = existsSync(path.join(root, 'build', 'Release', 'vla_addon.node')) && existsSync(path.join(model, 'config.json'));
  const skipped: string[] = [];
  let targets = [...(o.targets ?? TARGETS)];
  if (!addon) {
    const gone = targets.filter((t) => ADDON_TARGETS.has(t));
    if (gone.length) skipped.push(`${gone.join(', ')}: the addon or the test models are not built (npm run build; npm run test:models)`);
    targets = targets.filter((t) => !ADDON_TARGETS.has(t));
  }
  // (the self-test needs only the canary)
  const corpus: Pick<Corpus, 'canary'> & Partial<Corpus> = o.selfTest ? { canary: makeCanary(path.join(work, 'corpus')) } : await makeCorpus(path.join(work, 'corpus'), { ...(addon ? { model } : {}), config: path.join(root, 'configs', 'sample-drive.yaml') });
  const canaryHash = hashTree(path.dirname(corpus.canary));
  const timeoutMs = o.timeoutMs ?? 10_000;
  const memoryMiB = o.memoryMiB ?? 1024;
  const child = new Child(corpus.canary, memoryMiB);
  const summary: FuzzSummary = { cases: 0, byTarget: {}, findings: [], skipped, seconds: 0 };
  const deadline = performance.now() + o.seconds * 1000;
  let index = 0;
  try {
    for (;;) {
      const target = targets[index % targets.length] as Target;
      const n = Math.floor(index / targets.length);
      index++;
      if (o.selfTest ? index > SELF_TESTS.length : o.caseSeed === undefined ? performance.now() > deadline : index > targets.length) break;
      const seed = o.caseSeed ?? caseSeed(o.seed, target, n);
      let c: FuzzCase;
      try {
        c = o.selfTest ? { target, seed, files: [], entry: { kind: 'selftest', mode: SELF_TESTS[index - 1] as (typeof SELF_TESTS)[number], canary: corpus.canary }, note: `self-test ${SELF_TESTS[index - 1]}` } : await makeCase(target, seed, new Rng(seed), corpus as Corpus);
      } catch (err) {
        // a generator's own bug: say so, and go on with the next case
        log(`generator ${target} seed ${seed} failed: ${(err as Error).message}`);
        continue;
      }
      const dir = path.join(work, 'cases', target);
      materialise(c, dir);
      const before = hashTree(dir);
      const stats = (summary.byTarget[target] ??= { cases: 0, ok: 0, coded: 0, codes: {}, maxMs: 0, maxRssMiB: 0 });
      const t = performance.now();
      // (the self-test's hang needs no long wait)
      const r = await child.run(index, absoluteEntry(c.entry, dir), c.entry.kind === 'selftest' && c.entry.mode === 'hang' ? Math.min(timeoutMs, 1000) : timeoutMs);
      stats.cases++;
      summary.cases++;
      stats.maxMs = Math.max(stats.maxMs, performance.now() - t);
      stats.maxRssMiB = Math.max(stats.maxRssMiB, Math.round(child.peakMiB));
      const finding = (kind: Finding['kind'], detail: string) => {
        const kept = path.join(findingsDir, `${target}-${seed}`);
        keepCase(dir, kept);
        summary.findings.push({ target, seed, kind, detail, note: c.note, kept });
        log(`FINDING ${target} seed ${seed} (${c.note}): ${kind}: ${detail.split('\n')[0]}\n  reproduce: npm run fuzz -- --target ${target} --case-seed ${seed}   (inputs kept in ${kept})`);
      };
      if ('timeout' in r) finding('timeout', `no answer within ${timeoutMs} ms`);
      else if ('memory' in r) finding('memory', `resident set ${Math.round(r.memory)} MiB over the ${memoryMiB} MiB limit`);
      else if ('died' in r) finding('crash', r.died);
      else {
        if (r.outcome === 'uncoded') finding('uncoded', r.detail);
        else if (r.outcome === 'ok') stats.ok++;
        else {
          stats.coded++;
          stats.codes[r.code] = (stats.codes[r.code] ?? 0) + 1;
        }
        if (r.canary.length) finding('canary opened', [...new Set(r.canary)].join(', '));
      }
      // the case's inputs are untouched (out/ is where a replay writes)
      rmSync(path.join(dir, 'out'), { recursive: true, force: true });
      if (hashTree(dir) !== before) finding('modified input', 'the input files changed');
    }
  } finally {
    child.kill();
    if (hashTree(path.dirname(corpus.canary)) !== canaryHash) summary.findings.push({ target: 'metadata', seed: 0, kind: 'modified input', detail: 'the canary changed', note: '', kept: '' });
    rmSync(work, { recursive: true, force: true });
  }
  summary.seconds = (performance.now() - t0) / 1000;
  return summary;
}
