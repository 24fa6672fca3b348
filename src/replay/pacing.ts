/**
 * The replay's two clocks. Every-set (the default) stops the bag's clock while the model runs,
 * so every synchronised set is inferred and results do not depend on the machine's speed; the
 * wait is used for the work queued behind it (scoring, tracing, the output bag). Rate plays the
 * bag against the wall clock (x rate), so a slow model drops sets as it would on the car.
 */
import type { Logger } from '../util/logger.js';
import type { ReplayPort } from './port.js';

export interface Pacing {
  readonly mode: 'every-set' | 'rate';
  /** Brings the port's clock to a message's log time, firing the node's timers on the way (undefined: done already). */
  advanceTo(logTimeNs: bigint): Promise<void> | undefined;
}

/**
 * Every-set: at each timer that started an inference, run idle() and wait for the inference.
 * idle() runs from setImmediate: the engine hands the set to its threads a few microtasks after
 * the timer, and work done before that would delay the inference instead of overlapping it.
 */
export function everySetPacing(port: ReplayPort, busy: () => Promise<void> | undefined, idle: () => void): Pacing {
  let idleQueued = false;
  // An error of idle() (the trace's file failing) is thrown from the next advanceTo, into the
  // replay's loop as before, not left uncaught in the setImmediate callback.
  let idleError: { err: unknown } | undefined;
  const runIdle = () => {
    idleQueued = false;
    try {
      idle();
    } catch (err) {
      idleError ??= { err };
    }
  };
  const waitBusy = () => {
    const b = busy();
    if (b && !idleQueued) {
      idleQueued = true;
      setImmediate(runIdle);
    }
    return b;
  };
  return {
    mode: 'every-set',
    advanceTo: (logTimeNs) => {
      if (idleError) {
        const { err } = idleError;
        idleError = undefined;
        throw err;
      }
      return port.advance(logTimeNs, waitBusy);
    },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A silence in the bag longer than this (bag time) is skipped in rate mode rather than waited out. */
export const MAX_GAP_NS = 5_000_000_000n;

/**
 * Rate: bag time = the first message's log time + wall time since start x rate. Before a message
 * is due, the clock follows the wall clock in steps of at most one tick of the node. A gap of
 * more than MAX_GAP_NS (a far-future timestamp, a paused recording) is skipped: the wall clock's
 * origin moves so that the message is due one tick later. An abort ends the wait at once.
 */
export function ratePacing(port: ReplayPort, rate: number, tickMs: number, opts: { signal?: AbortSignal; log?: Logger } = {}): Pacing {
  let wallStart = performance.now();
  let bagFirst: bigint | undefined;
  const tickNs = BigInt(Math.max(1, Math.round(tickMs * 1e6)));
  return {
    mode: 'rate',
    async advanceTo(logTimeNs) {
      bagFirst ??= logTimeNs;
      const first = bagFirst;
      const mapped = () => first + BigInt(Math.round((performance.now() - wallStart) * 1e6 * rate));
      const gapNs = logTimeNs - mapped();
      if (gapNs > MAX_GAP_NS) {
        opts.log?.warn({ gapS: Number(gapNs) / 1e9 }, 'gap in the bag skipped');
        wallStart -= Number(gapNs - tickNs) / 1e6 / rate;
      }
      for (let now = mapped(); now < logTimeNs; now = mapped()) {
        if (opts.signal?.aborted) return;
        await sleep(Math.max(0, Math.min(Number(logTimeNs - now) / 1e6 / rate, tickMs)));
        await port.advanceTo(mapped() < logTimeNs ? mapped() : logTimeNs);
      }
      await port.advanceTo(logTimeNs);
    },
  };
}
