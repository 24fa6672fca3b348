/** `bag info`: a recording's topics, types, counts and time range, like `ros2 bag info`. */
import type { Command } from 'commander';

import { bagInfoJson, formatBagInfo, openBag } from '../bag/reader.js';
import type { Io } from './common.js';

export function registerBag(program: Command, io: Io): void {
  program
    .command('bag')
    .description('rosbag2 tools')
    .command('info <bag>')
    .description('topics, types, counts and time range of a bag directory or a .mcap/.db3 file, like `ros2 bag info`')
    .option('--json', 'print one JSON object')
    .action(async (bag: string, o: { json?: boolean }) => {
      const r = await openBag(bag);
      try {
        io.out(o.json ? JSON.stringify(bagInfoJson(r.info)) : formatBagInfo(r.info));
      } finally {
        await r.close();
      }
    });
}
