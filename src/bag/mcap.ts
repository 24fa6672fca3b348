/**
 * MCAP storage, read as a stream: records are framed here (opcode u8, length u64, body) from a
 * file handle in blocks, so memory stays bounded on large bags and every error names the byte
 * offset of the record at fault; @mcap/core parses each record, decompresses chunks (zstd, lz4)
 * and checks their CRCs.
 */
import type { FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

import { McapIndexedReader, McapStreamReader, type IReadable, type McapTypes } from '@mcap/core';
import { FileHandleReadable } from '@mcap/nodejs';
import { loadDecompressHandlers } from '@mcap/support';
import * as lz4 from 'lz4js';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { openRegular } from '../util/fsafe.js';
import { DEFAULT_BAG_LIMITS, LIMIT_OPTION, type BagLimits } from './limits.js';

export const MCAP_MAGIC = new Uint8Array([0x89, 0x4d, 0x43, 0x41, 0x50, 0x30, 0x0d, 0x0a]);
const OP_FOOTER = 0x02;
const OP_CHUNK = 0x06;
const BLOCK = 4 << 20;

/** A chunk whose compressed bytes do not decompress: damaged data, reported like a CRC mismatch. */
class ChunkDataError extends Error {}

/**
 * @foxglove/wasm-lz4 reuses one decompression context and never resets it after a failure, so
 * one damaged lz4 chunk would make every later lz4 chunk in the process fail. After its first
 * failure, lz4 goes through lz4js (pure JS, slower) instead; the chunk that failed is decoded
 * again by it, so that a wasm context broken by someone else does not fail a good chunk.
 */
let wasmLz4Broken = false;

function lz4js(buffer: Uint8Array, size: number): Uint8Array {
  const out = lz4.decompress(buffer, size);
  if (out.byteLength !== size) throw new Error(`lz4 frame decompressed to ${out.byteLength} bytes, expected ${size}`);
  return out;
}

let handlers: Promise<McapTypes.DecompressHandlers> | undefined;
/** @mcap/support's decompressors (loaded once), wrapped so that their failures are told apart from parse errors. */
function decompressHandlers(): Promise<McapTypes.DecompressHandlers> {
  handlers ??= loadDecompressHandlers().then((loaded) => {
    const out: McapTypes.DecompressHandlers = {};
    for (const [name, fn] of Object.entries(loaded)) {
      out[name] = (buffer, size) => {
        try {
          if (name === 'lz4' && wasmLz4Broken) return lz4js(buffer, Number(size));
          try {
            return fn(buffer, size);
          } catch (err) {
            if (name !== 'lz4') throw err;
            wasmLz4Broken = true;
            return lz4js(buffer, Number(size));
          }
        } catch (err) {
          throw new ChunkDataError(`${name} chunk data does not decompress (${(err as Error).message ?? String(err)})`, { cause: err });
        }
      };
    }
    return out;
  });
  return handlers;
}

export interface McapRawMessage {
  channelId: number;
  topic: string;
  schemaName: string;
  logTimeNs: bigint;
  publishTimeNs: bigint;
  data: Uint8Array;
  /** Offset of the record (a chunk's, for messages inside one). */
  offset: number;
}

export interface McapSchemaInfo {
  name: string;
  encoding: string;
  text: string;
}

export interface McapChannelInfo {
  id: number;
  topic: string;
  schemaName: string;
  messageEncoding: string;
  metadata: Map<string, string>;
}

/** Sequential block reader over a file handle. */
class BlockReader {
  private buf = new Uint8Array(0);
  private start = 0; // file offset of buf[0]
  private pos = 0; // file offset of the next unread byte
  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  get offset(): number {
    return this.pos;
  }

  /** Like take(n), but the bytes stay unread. */
  async peek(n: number): Promise<Uint8Array | undefined> {
    const at = this.pos;
    const out = await this.take(n);
    this.pos = at;
    return out;
  }

  /** Bytes [pos, pos+n), or undefined when the file ends first. The view is valid until the next call. */
  async take(n: number): Promise<Uint8Array | undefined> {
    if (this.pos + n > this.size) return undefined;
    const end = this.start + this.buf.byteLength;
    if (this.pos + n > end) {
      const keep = this.buf.subarray(this.pos - this.start);
      const want = Math.max(n, BLOCK);
      const next = new Uint8Array(Math.min(want, this.size - this.pos));
      next.set(keep, 0);
      let filled = keep.byteLength;
      while (filled < next.byteLength) {
        const { bytesRead } = await this.fh.read(next, filled, next.byteLength - filled, this.pos + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      this.buf = next.subarray(0, filled);
      this.start = this.pos;
      if (filled < n) return undefined;
    }
    const out = this.buf.subarray(this.pos - this.start, this.pos - this.start + n);
    this.pos += n;
    return out;
  }
}

function overLimit(file: string, offset: number, what: string, limit: keyof BagLimits, limits: BagLimits): VlaError {
  return new VlaError(ErrorCodes.BAG_LIMIT, `${file}: ${what} at byte ${offset} is over the limit of ${limits[limit]} bytes (${LIMIT_OPTION[limit]} raises it)`, { file, offset });
}

/** A chunk record's uncompressed_size (its body's bytes 16..24), read without consuming the body. */
async function peekChunkSize(r: BlockReader, bodyLen: number): Promise<bigint | undefined> {
  const head = await r.peek(Math.min(bodyLen, 24));
  if (!head || head.byteLength < 24) return undefined;
  return new DataView(head.buffer, head.byteOffset, 24).getBigUint64(16, true);
}

/**
 * An uncompressed chunk's CRC, checked here with zlib's crc32 (native; @mcap/core's is in JS and
 * took milliseconds per chunk); its field is then zeroed in this copy of the record, which
 * tells the stream reader that there is nothing left to check. Compressed chunks are checked
 * by the stream reader after decompression, as before.
 */
function checkPlainChunkCrc(file: string, at: number, body: Uint8Array): void {
  if (body.byteLength < 40) return;
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const expected = dv.getUint32(24, true);
  if (expected === 0 || dv.getUint32(28, true) !== 0) return;
  const len = dv.getBigUint64(32, true);
  if (len > BigInt(body.byteLength - 40)) return; // malformed: the stream reader says so
  const actual = crc32(body.subarray(40, 40 + Number(len)));
  if (actual !== expected) throw crcOrBag(file, at, new Error(`Incorrect chunk CRC ${actual} (expected ${expected})`));
  dv.setUint32(24, 0, true);
}

function crcOrBag(file: string, offset: number, err: unknown): VlaError {
  const msg = (err as Error).message ?? String(err);
  if (/chunk CRC/i.test(msg) || err instanceof ChunkDataError) return new VlaError(ErrorCodes.BAG_CRC, `${file}: chunk at byte ${offset} fails its CRC (${msg})`, { file, offset }, { cause: err });
  return new VlaError(ErrorCodes.BAG, `${file}: bad MCAP record at byte ${offset}: ${msg}`, { file, offset }, { cause: err });
}

/**
 * The indexed reader reads whatever length a record declares (the header's, the summary's, an
 * index's) in one piece: FileHandleReadable allocates twice that and hands it to fs.read, which
 * aborts the process (a Node assertion, not an exception) past 2 GiB. Every read is checked here
 * first: within the file and at most `maxBytes`.
 */
function boundedReadable(inner: IReadable, fileSize: bigint, maxBytes: bigint): IReadable {
  return {
    size: async () => fileSize,
    read: async (offset: bigint, length: bigint) => {
      if (offset < 0n || length < 0n || offset + length > fileSize) throw new Error(`a read of ${length} bytes at ${offset} passes the end of the ${fileSize}-byte file`);
      if (length > maxBytes) throw new Error(`a read of ${length} bytes at ${offset} is over the ${maxBytes}-byte limit`);
      return inner.read(offset, length);
    },
  };
}

/**
 * Schemas and channels from the summary section at the end of the file (rosbag2 writes one),
 * without reading the data; undefined when the file has no readable summary.
 */
export async function readMcapSummary(file: string, limits: BagLimits = DEFAULT_BAG_LIMITS): Promise<McapSummary | undefined> {
  let fh: FileHandle | undefined;
  try {
    let size: number;
    ({ fh, size } = await openRegular(file));
    // The indexed reader reads the whole summary section at once: where the footer says it
    // starts is checked first, so that a forged offset cannot make it read (allocate) the file.
    if (size < 8 + 9 + 20 + 8) return undefined;
    const tail = new Uint8Array(9 + 20 + 8);
    await fh.read(tail, 0, tail.byteLength, size - tail.byteLength);
    const dv = new DataView(tail.buffer);
    if (tail[0] !== OP_FOOTER) return undefined;
    const summaryStart = dv.getBigUint64(9, true);
    if (summaryStart === 0n || summaryStart > BigInt(size) || BigInt(size) - summaryStart > BigInt(limits.maxChunkBytes)) return undefined;
    const r = await McapIndexedReader.Initialize({ readable: boundedReadable(new FileHandleReadable(fh), BigInt(size), BigInt(limits.maxChunkBytes)) });
    const scan: McapSummary = { schemas: new Map(), channels: new Map(), metadata: new Map() };
    for (const [id, sc] of r.schemasById) scan.schemas.set(id, { name: sc.name, encoding: sc.encoding, text: new TextDecoder().decode(sc.data) });
    for (const [id, ch] of r.channelsById) scan.channels.set(id, { id, topic: ch.topic, schemaName: r.schemasById.get(ch.schemaId)?.name ?? '', messageEncoding: ch.messageEncoding, metadata: ch.metadata });
    const st = r.statistics;
    if (st) {
      const counts = new Map<string, number>();
      for (const [id, n] of st.channelMessageCounts) {
        const topic = scan.channels.get(id)?.topic;
        if (topic !== undefined) counts.set(topic, (counts.get(topic) ?? 0) + Number(n));
      }
      const messages = Number(st.messageCount);
      scan.stats = { counts, startNs: messages ? st.messageStartTime : 0n, endNs: messages ? st.messageEndTime : 0n, messages };
    }
    return scan;
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}

export interface McapScan {
  schemas: Map<number, McapSchemaInfo>;
  channels: Map<number, McapChannelInfo>;
  metadata: Map<string, Map<string, string>>;
}

export interface McapStats {
  counts: Map<string, number>;
  startNs: bigint;
  endNs: bigint;
  messages: number;
}

/** The summary section's schemas and channels, and its Statistics record when there is one. */
export interface McapSummary extends McapScan {
  stats?: McapStats;
}

/**
 * Streams an MCAP file's records. Schemas, channels and metadata are collected into `scan` as
 * they appear; messages (optionally only of some topics) are yielded. Errors are thrown after
 * every earlier message has been yielded.
 */
export async function* readMcap(file: string, scan: McapScan, topics?: ReadonlySet<string>, limits: BagLimits = DEFAULT_BAG_LIMITS): AsyncGenerator<McapRawMessage> {
  // Only a regular file: a FIFO would block, a device would never end.
  const { fh, size } = await openRegular(file, { missing: ErrorCodes.BAG_MISSING_FILE, other: ErrorCodes.IO });
  try {
    const r = new BlockReader(fh, size);
    const magic = await r.take(8);
    if (!magic || !magic.every((b, i) => b === MCAP_MAGIC[i])) {
      throw new VlaError(ErrorCodes.BAG_MAGIC, `${file}: no MCAP magic at byte 0 (not an MCAP file)`, { file, offset: 0 });
    }
    // Decompressors (WebAssembly) are loaded on the first compressed chunk: most bags have none.
    const handlers: McapTypes.DecompressHandlers = {};
    let loaded = false;
    const stream = new McapStreamReader({ noMagicPrefix: true, decompressHandlers: handlers, validateCrcs: true });
    for (;;) {
      const at = r.offset;
      const head = await r.take(9);
      if (!head) throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${file}: ends at byte ${at} before the MCAP footer (truncated)`, { file, offset: at });
      const op = head[0] as number;
      const len = new DataView(head.buffer, head.byteOffset, 9).getBigUint64(1, true);
      if (len > BigInt(size)) throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${file}: record at byte ${at} claims ${len} bytes, past the end of the ${size}-byte file (truncated or corrupt)`, { file, offset: at });
      const bodyLen = Number(len);
      // Sizes are checked before anything is allocated for them (the record, a chunk's output).
      const cap = op === OP_CHUNK ? limits.maxChunkBytes : Math.max(limits.maxChunkBytes, limits.maxMessageBytes);
      if (bodyLen > cap) throw overLimit(file, at, `record of ${bodyLen} bytes`, op === OP_CHUNK ? 'maxChunkBytes' : 'maxMessageBytes', limits);
      if (op === OP_CHUNK && bodyLen >= 24) {
        const declared = await peekChunkSize(r, bodyLen);
        if (declared !== undefined && declared > BigInt(limits.maxChunkBytes)) throw overLimit(file, at, `chunk declaring ${declared} decompressed bytes`, 'maxChunkBytes', limits);
      }
      const body = await r.take(bodyLen);
      if (!body) throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${file}: record at byte ${at} (${bodyLen} bytes) is cut off by the end of the file (truncated)`, { file, offset: at });
      if (op === OP_CHUNK && !loaded && bodyLen >= 32 && new DataView(body.buffer, body.byteOffset + 28, 4).getUint32(0, true) > 0) {
        Object.assign(handlers, await decompressHandlers());
        loaded = true;
      }
      if (op === OP_CHUNK) checkPlainChunkCrc(file, at, body);
      // The stream reader copies what it is given: hand it the views (valid until the next take).
      try {
        stream.append(head);
        stream.append(body);
      } catch (err) {
        throw crcOrBag(file, at, err);
      }
      if (op === OP_FOOTER) {
        const tail = await r.take(8);
        if (!tail) throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${file}: the closing magic after byte ${r.offset} is missing (truncated)`, { file, offset: r.offset });
        stream.append(tail);
      }
      for (;;) {
        let record: McapTypes.TypedMcapRecord | undefined;
        try {
          record = stream.nextRecord();
        } catch (err) {
          throw crcOrBag(file, at, err);
        }
        if (!record) break;
        switch (record.type) {
          case 'Schema':
            scan.schemas.set(record.id, { name: record.name, encoding: record.encoding, text: new TextDecoder().decode(record.data) });
            break;
          case 'Channel':
            scan.channels.set(record.id, { id: record.id, topic: record.topic, schemaName: scan.schemas.get(record.schemaId)?.name ?? '', messageEncoding: record.messageEncoding, metadata: record.metadata });
            break;
          case 'Metadata':
            scan.metadata.set(record.name, record.metadata);
            break;
          case 'Message': {
            const ch = scan.channels.get(record.channelId);
            if (!ch) throw new VlaError(ErrorCodes.BAG, `${file}: message at byte ${at} on unknown channel ${record.channelId}`, { file, offset: at });
            if (topics && !topics.has(ch.topic)) break;
            if (record.data.byteLength > limits.maxMessageBytes) throw overLimit(file, at, `message of ${record.data.byteLength} bytes on ${ch.topic}`, 'maxMessageBytes', limits);
            yield { channelId: record.channelId, topic: ch.topic, schemaName: ch.schemaName, logTimeNs: record.logTime, publishTimeNs: record.publishTime, data: record.data, offset: at };
            break;
          }
          default:
            break;
        }
      }
      if (op === OP_FOOTER) return;
      if (stream.done()) return;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Topics, counts and time range of a file without metadata.yaml: from the summary section's
 * Statistics when there is one (no pass over the data), else from a scan of the whole file.
 */
export async function summarizeMcap(file: string, limits: BagLimits = DEFAULT_BAG_LIMITS): Promise<McapStats & { scan: McapScan; fault?: VlaError }> {
  const summary = await readMcapSummary(file, limits);
  if (summary?.stats) return { scan: summary, ...summary.stats };
  const scan: McapScan = { schemas: new Map(), channels: new Map(), metadata: new Map() };
  const counts = new Map<string, number>();
  let startNs = -1n, endNs = 0n, messages = 0;
  let fault: VlaError | undefined;
  try {
    for await (const m of readMcap(file, scan, undefined, limits)) {
      counts.set(m.topic, (counts.get(m.topic) ?? 0) + 1);
      if (startNs < 0n || m.logTimeNs < startNs) startNs = m.logTimeNs;
      if (m.logTimeNs > endNs) endNs = m.logTimeNs;
      messages++;
    }
  } catch (err) {
    // A damaged file still opens with what precedes the damage; messages() reports the fault.
    if (!(err instanceof VlaError) || err.code === ErrorCodes.BAG_MAGIC || err.code === ErrorCodes.IO || err.code === ErrorCodes.BAG_LIMIT) throw err;
    fault = err;
  }
  return { scan, counts, startNs: startNs < 0n ? 0n : startNs, endNs, messages, ...(fault ? { fault } : {}) };
}
