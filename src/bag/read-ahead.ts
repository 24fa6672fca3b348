import type { BagMessage } from './reader.js';

/**
 * Pulls from an async iterator into a bounded queue (by count and bytes) on its own, so parsing
 * happens while the consumer waits on something else (while it has messages queued, only then). An error is delivered after the messages
 * queued before it, as the iterator produced them.
 */
export class ReadAhead {
  private readonly queue: BagMessage[] = [];
  private bytes = 0;
  private error: unknown;
  private done = false;
  private stopped = false;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;
  private readonly pump: Promise<void>;

  constructor(
    private readonly it: AsyncGenerator<BagMessage>,
    private readonly maxCount: number,
    private readonly maxBytes: number,
    /** Called on each message as it is queued (replay decodes it there, ahead of need). */
    private readonly prepare?: (m: BagMessage) => void,
  ) {
    this.pump = this.run();
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        while (!this.stopped && (this.queue.length >= this.maxCount || this.bytes >= this.maxBytes)) await new Promise<void>((r) => (this.wakeProducer = r));
        if (this.stopped) return;
        // While the consumer has messages to take, parse only when the event loop is otherwise
        // idle (a macrotask turn): in a replay that is while the model runs, not between sets.
        if (this.queue.length) await new Promise<void>((r) => setImmediate(r));
        if (this.stopped) return;
        const r = await this.it.next();
        if (r.done) break;
        this.prepare?.(r.value);
        this.queue.push(r.value);
        this.bytes += r.value.data.byteLength;
        this.wakeConsumer?.();
      }
    } catch (err) {
      this.error = err;
    } finally {
      this.done = true;
      this.wakeConsumer?.();
    }
  }

  /** The next message if one is queued, without waiting (no promise to settle per message). */
  poll(): BagMessage | undefined {
    const m = this.queue.shift();
    if (m) {
      this.bytes -= m.data.byteLength;
      this.wakeProducer?.();
    }
    return m;
  }

  /** The next message; undefined at the end; throws the reader's error once the queue is drained. */
  async next(): Promise<BagMessage | undefined> {
    for (;;) {
      const m = this.poll();
      if (m) return m;
      if (this.done) {
        if (this.error !== undefined) {
          const e = this.error;
          this.error = undefined;
          throw e;
        }
        return undefined;
      }
      await new Promise<void>((r) => (this.wakeConsumer = r));
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.wakeProducer?.();
    await this.pump;
    await this.it.return(undefined).catch(() => undefined);
  }
}
