/**
 * autoprune-ros command line (bin/autoprune-ros.js runs it from dist/cli/main.js). Subcommands
 * print one JSON object on stdout with --json; a failure exits non-zero with "CODE: message" on
 * stderr. Each subcommand lives in its own file of this folder.
 */
import { Command, CommanderError } from 'commander';

import { PRUNE_POLICIES, PRUNE_POLICY_DESCRIPTIONS } from '../engine/policies.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { registerBag } from './bag.js';
import { STDIO, type Io, type SetExit } from './common.js';
import { registerDriveCommands } from './drive.js';
import { registerEvaluate } from './evaluate.js';
import { registerDemo, registerInfer } from './infer.js';
import { registerMakeDataset, registerMakeSampleDrive, registerMakeTestDrives, registerMakeTinyModel } from './make.js';
import { registerQuickstart } from './quickstart.js';
import { registerReplay } from './replay.js';
import { registerSchedule } from './schedule.js';
import { registerTrace } from './trace.js';

export type { Io } from './common.js';

export function buildProgram(io: Io, setExit: SetExit = () => undefined): Command {
  const program = new Command()
    .name('autoprune-ros')
    .description('Run a LLaVA-style driving VLA with AutoPrune visual-token pruning; evaluate it by replaying rosbag2 recordings (default: replay the generated sample drive with the tiny model)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()), outputError: () => undefined });
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
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;  // --help, --version
      io.err(`${ErrorCodes.ARGS}: ${err.message.replace(/^error: /, '')}`);
      return 2;
    }
    const e = VlaError.from(err);
    io.err(`${e.code}: ${e.message}`);
    return e.code === ErrorCodes.ARGS ? 2 : 1;
  }
}
