/**
 * `npm run fuzz -- [--seconds 600] [--seed N] [--target mcap,db3,...] [--case-seed N]
 * [--timeout-ms 10000] [--memory-mib 1024]`: the fuzz harness for as long as asked. Prints a
 * JSON summary; exits 1 when it found something (each finding prints the command that
 * reproduces it, and its inputs are kept in build/fuzz-findings/).
 */
import { parseArgs } from 'node:util';

import { runFuzz } from './harness.js';
import { TARGETS, type Target } from './targets.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    target: { type: 'string' },
    'case-seed': { type: 'string' },
    'timeout-ms': { type: 'string', default: '10000' },
    'memory-mib': { type: 'string', default: '1024' },
  },
});
const targets = values.target ? (values.target.split(',') as Target[]) : [...TARGETS];
for (const t of targets) if (!TARGETS.includes(t)) throw new Error(`unknown target '${t}' (${TARGETS.join(', ')})`);
const seed = Number(values.seed);
process.stderr.write(`fuzz: seed ${seed}, ${values.seconds} s, targets ${targets.join(', ')}\n`);
const s = await runFuzz({
  seconds: Number(values.seconds),
  seed,
  targets,
  ...(values['case-seed'] !== undefined ? { caseSeed: Number(values['case-seed']) } : {}),
  timeoutMs: Number(values['timeout-ms']),
  memoryMiB: Number(values['memory-mib']),
  log: (l) => process.stderr.write(`${l}\n`),
});
process.stdout.write(`${JSON.stringify({ seed, ...s }, null, 1)}\n`);
process.exitCode = s.findings.length ? 1 : 0;
