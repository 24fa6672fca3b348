/**
 * Size limits on what a bag may make the reader allocate. A few kilobytes can declare a
 * gigabyte (a zstd chunk's uncompressed size, an MCAP record length, a .db3 blob header), so the
 * reader checks each declared size against these before allocating, and refuses with
 * VLA_E_BAG_LIMIT naming the file, the offset and the option that raises the limit.
 */
export interface BagLimits {
  /** An MCAP chunk's decompressed size (and any record's length), bytes. */
  maxChunkBytes: number;
  /** One message's data, bytes (a 4K rgb8 frame is 25 MB). */
  maxMessageBytes: number;
  /** A .db3 file: sql.js holds the whole database in memory. */
  maxDb3Bytes: number;
}

export const DEFAULT_BAG_LIMITS: Readonly<BagLimits> = Object.freeze({
  maxChunkBytes: 128 << 20,
  maxMessageBytes: 128 << 20,
  maxDb3Bytes: 1 << 30,
});

/** The limits with overrides (MiB, as the command line gives them) applied. */
export function bagLimits(o: { maxChunkMiB?: number; maxMessageMiB?: number; maxDb3MiB?: number } = {}): BagLimits {
  const mib = (v: number | undefined, d: number) => (v === undefined ? d : Math.round(v * 2 ** 20));
  return {
    maxChunkBytes: mib(o.maxChunkMiB, DEFAULT_BAG_LIMITS.maxChunkBytes),
    maxMessageBytes: mib(o.maxMessageMiB, DEFAULT_BAG_LIMITS.maxMessageBytes),
    maxDb3Bytes: mib(o.maxDb3MiB, DEFAULT_BAG_LIMITS.maxDb3Bytes),
  };
}

/** The command-line option that raises a limit, for error messages. */
export const LIMIT_OPTION: Record<keyof BagLimits, string> = {
  maxChunkBytes: '--max-chunk-mib',
  maxMessageBytes: '--max-message-mib',
  maxDb3Bytes: '--max-db3-mib',
};
