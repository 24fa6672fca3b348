/** `bag info`: a recording's topics, types, counts and time range, like `ros2 bag info`. */
import type { Command } from 'commander';

import { bagLimits } from '../bag/limits.js';
import { bagInfoJson, formatBagInfo, openBag } from '../bag/reader.js';
import { maxChunkOption, maxDb3Option, maxMessageOption, type Io } from './common.js';

export function registerBag(program: Command, io: Io): void {
  program
    .command('bag')
    .description('rosbag2 tools')
    .command('info <bag>')
    .description('topics, types, counts and time range of a bag directory or a .mcap/.db3 file, like `ros2 bag info`')
    .option('--json', 'print one JSON object')
    .addOption(maxChunkOption())
    .addOption(maxMessageOption())
    .addOption(maxDb3Option())
    .action(async (bag: string, o: { json?: boolean; maxChunkMib?: number; maxMessageMib?: number; maxDb3Mib?: number }) => {
      const r = await openBag(bag, { limits: bagLimits({ maxChunkMiB: o.maxChunkMib, maxMessageMiB: o.maxMessageMib, maxDb3MiB: o.maxDb3Mib }) });
      try {
        io.out(o.json ? JSON.stringify(bagInfoJson(r.info)) : formatBagInfo(r.info));
      } finally {
        await r.close();
      }
    });
}
