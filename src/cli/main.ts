/**
 * autoprune-ros command line (bin/autoprune-ros.js runs it from dist/cli/main.js). Subcommands
 * print one JSON object on stdout with --json; a failure exits non-zero with "CODE: message" on
 * stderr. Each subcommand lives in its own file of this folder.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Command, CommanderError, Option } from 'commander';

import { PRUNE_POLICIES, PRUNE_POLICY_DESCRIPTIONS } from '../engine/policies.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { configureLogging, LOG_FORMATS, restoreLogging, type LogFormat } from '../util/logger.js';
import { packageRoot } from '../util/paths.js';
import { registerBag } from './bag.js';
import { STDIO, type Io, type SetExit } from './common.js';
import { registerDriveCommands } from './drive.js';
import { registerCalibrate } from './calibrate.js';
import { registerEvaluate } from './evaluate.js';
import { registerDemo, registerInfer } from './infer.js';
import { registerMakeDataset, registerMakeSampleDrive, registerMakeTestDrives, registerMakeTinyModel } from './make.js';
import { registerQuickstart } from './quickstart.js';
import { registerReplay } from './replay.js';
import { registerSchedule } from './schedule.js';
import { registerTrace } from './trace.js';

export type { Io } from './common.js';

const VERSION = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

interface GlobalOptions {
  verbose?: boolean;
  quiet?: boolean;
  logFormat?: LogFormat;
}

export function buildProgram(io: Io, setExit: SetExit = () => undefined): Command {
  const program = new Command()
    .name('autoprune-ros')
    .description('Run a LLaVA-style driving VLA with AutoPrune visual-token pruning; evaluate it by replaying rosbag2 recordings (default: the quick start, a held-out drive replayed with the bundled model)')
    .version(VERSION, '-V, --version', 'print the version')
    .option('-v, --verbose', 'log debug lines too')
    .option('-q, --quiet', 'log warnings and errors only')
    .addOption(new Option('--log-format <format>', 'log lines on stderr: pretty (default on a terminal) or json (default otherwise)').choices(LOG_FORMATS))
    .addHelpText('after', '\nEnvironment: LOG_LEVEL=fatal|error|warn|info|debug|trace|silent sets the log level (--verbose and --quiet override it); LOG_FORMAT=pretty|json the log format.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()), outputError: () => undefined })
    .hook('preAction', () => {
      const g = program.opts<GlobalOptions>();
      if (g.verbose && g.quiet) throw new VlaError(ErrorCodes.ARGS, '--verbose and --quiet exclude each other');
      configureLogging({ ...(g.logFormat ? { format: g.logFormat } : {}), ...(g.verbose ? { level: 'debug' } : g.quiet ? { level: 'warn' } : {}) });
    });
  // In the order --help lists them.
  registerDemo(program, io);
  registerMakeTinyModel(program, io);
  registerInfer(program, io);
  registerSchedule(program, io);
  registerReplay(program, io, setExit);
  registerBag(program, io);
  registerMakeSampleDrive(program, io);
  registerMakeTestDrives(program, io);
  registerMakeDataset(program, io);
  registerTrace(program, io, setExit);
  registerQuickstart(program, io, setExit);
  registerEvaluate(program, io, setExit);
  registerCalibrate(program, io, setExit, VERSION);
  registerDriveCommands(program, io, setExit);
  program.addHelpText('after', ['', 'Pruning policies (--policy, --sweep policy=...):', ...PRUNE_POLICIES.map((p) => `  ${p.padEnd(16)} ${PRUNE_POLICY_DESCRIPTIONS[p]}`)].join('\n'));
  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Io = STDIO): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  // --verbose, --quiet and --log-format hold for this run only (tests run many in one process).
  const logging = configureLogging({});
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    // The one place a failure is printed: "CODE: message", nothing else (no log line repeats it).
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0; // --help, --version
      io.err(`${ErrorCodes.ARGS}: ${err.message.replace(/^error: /, '')}`);
      return 2;
    }
    const e = VlaError.from(err);
    io.err(`${e.code}: ${e.message}`);
    return e.code === ErrorCodes.ARGS ? 2 : 1;
  } finally {
    restoreLogging(logging);
  }
}
