import { pino, type DestinationStream, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

/**
 * The project's root logger. Components take `logger.child({ component: 'x' })`; children follow
 * the root's level unless given their own.
 *
 * Logs go to stderr so CLI JSON on stdout stays clean. Two formats: `pretty`, one readable line
 * per entry (pino-pretty: time, level, component, message, the other fields as JSON), the default
 * when stderr is a terminal; and `json`, pino's newline-delimited JSON, the default otherwise
 * (pipes, files, ros2 launch) and what log collectors read. LOG_FORMAT=pretty|json overrides the
 * default, `configureLogging` (the CLI's --log-format, --verbose, --quiet) overrides both.
 * LOG_LEVEL sets the level (default info; silent under mocha unless LOG_LEVEL is set).
 */
export type LogFormat = 'pretty' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['pretty', 'json'];
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const underMocha = process.env.MOCHA_WORKER_ID !== undefined || process.argv.some((a) => a.includes('mocha'));
const envLevel = process.env.LOG_LEVEL;
const envFormat = process.env.LOG_FORMAT;

let format: LogFormat = envFormat === 'json' || envFormat === 'pretty' ? envFormat : process.stderr.isTTY ? 'pretty' : 'json';
/** True once the level was chosen by the user (LOG_LEVEL, --verbose, --quiet), not defaulted. */
let levelChosen = envLevel !== undefined;

// Synchronous writes: a CLI that exits right after an error still shows its last lines.
const dest = pino.destination({ fd: 2, sync: true });
let prettify: ((line: string) => string) | undefined;
const stream: DestinationStream = {
  write(line: string) {
    if (format === 'json') return dest.write(line);
    prettify ??= prettyFactory({
      colorize: process.stderr.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,app,component',
      singleLine: true,
      messageFormat: '{if component}{component}: {end}{msg}',
    });
    return dest.write(prettify(line));
  },
};

export const logger: Logger = pino({ level: envLevel ?? (underMocha ? 'silent' : 'info'), base: { app: 'autoprune-ros' } }, stream);

export function componentLogger(component: string): Logger {
  return logger.child({ component });
}

export interface LoggingConfig {
  format?: LogFormat;
  level?: LogLevel;
}

/** Sets the format and level of every logger (children follow the root); returns the previous settings. */
export function configureLogging(o: LoggingConfig): Required<LoggingConfig> & { chosen: boolean } {
  const before = { format, level: logger.level as LogLevel, chosen: levelChosen };
  if (o.format) format = o.format;
  if (o.level) {
    logger.level = o.level;
    levelChosen = true;
  }
  return before;
}

/** Puts back what configureLogging returned (a CLI run inside a longer-lived process, as in tests). */
export function restoreLogging(before: Required<LoggingConfig> & { chosen: boolean }): void {
  format = before.format;
  logger.level = before.level;
  levelChosen = before.chosen;
}

export function logFormat(): LogFormat {
  return format;
}

/**
 * Whether the user picked the level. Commands that quieten chatty components by default (a
 * progress bar that info lines would tear) leave them alone when the user asked for a level.
 */
export function logLevelChosen(): boolean {
  return levelChosen;
}

export type { Logger };
