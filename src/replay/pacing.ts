/**
 * The replay's two clocks. Every-set (the default) stops the bag's clock while the model runs,
 * so every synchronised set is inferred and results do not depend on the machine's speed; the
 * wait is used for the work queued behind it (scoring, tracing, the output bag). Rate plays the
 * bag against the wall clock (x rate), so a slow model drops sets as it would on the car.
 */
import type { ReplayPort } from './port.js';

export interface Pacing {
  readonly mode: 'every-set' | 'rate';
  /** Brings the port's clock to a message's log time, firing the node's timers on the way. */
  advanceTo(logTimeNs: bigint): Promise<void>;
}

/** Every-set: at each timer that started an inference, run idle() and wait for the inference. */
export function everySetPacing(port: ReplayPort, busy: () => Promise<void> | undefined, idle: () => void): Pacing {
  const waitBusy = () => {
    const b = busy();
    if (b) idle();
    return b;
  };
  return { mode: 'every-set', advanceTo: (logTimeNs) => port.advanceTo(logTimeNs, waitBusy) };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Rate: bag time = the first message's log time + wall time since start x rate. Before a message
 * is due, the clock follows the wall clock in steps of at most one tick of the node.
 */
export function ratePacing(port: ReplayPort, rate: number, tickMs: number): Pacing {
  const wallStart = performance.now();
  let bagFirst: bigint | undefined;
  return {
    mode: 'rate',
    async advanceTo(logTimeNs) {
      bagFirst ??= logTimeNs;
      const first = bagFirst;
      const mapped = () => first + BigInt(Math.round((performance.now() - wallStart) * 1e6 * rate));
      for (let now = mapped(); now < logTimeNs; now = mapped()) {
        await sleep(Math.max(0, Math.min(Number(logTimeNs - now) / 1e6 / rate, tickMs)));
        await port.advanceTo(mapped() < logTimeNs ? mapped() : logTimeNs);
      }
      await port.advanceTo(logTimeNs);
    },
  };
}
