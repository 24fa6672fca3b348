import { pino, type Logger } from 'pino';

/**
 * The project's root logger. Components take `logger.child({ component: 'x' })`.
 * LOG_LEVEL sets the level (default info; silent under mocha unless LOG_LEVEL is set).
 * Logs go to stderr so CLI JSON on stdout stays clean.
 */
const defaultLevel = process.env.LOG_LEVEL ?? (process.env.MOCHA_WORKER_ID !== undefined || process.argv.some((a) => a.includes('mocha')) ? 'silent' : 'info');

export const logger: Logger = pino({ level: defaultLevel, base: { app: 'autoprune-ros' } }, pino.destination(2));

export function componentLogger(component: string): Logger {
  return logger.child({ component });
}

export type { Logger };
