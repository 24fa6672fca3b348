/**
 * rosbag2 bags without ROS 2: a bag directory (metadata.yaml plus split files) or a single
 * `.mcap` / `.db3` file. Messages come split by split in storage order; a fault stops the
 * stream with a coded error only after every message before it has been yielded.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { resolveInside } from '../util/fsafe.js';
import { DEFAULT_BAG_LIMITS, type BagLimits } from './limits.js';
import { readMetadata, type BagMetadata, type MetadataTopic } from './metadata.js';
import { readMcap, readMcapSummary, summarizeMcap, type McapScan } from './mcap.js';
import { Db3File } from './sqlite.js';

/** A topic as metadata.yaml describes it. */
export type BagTopic = MetadataTopic;

export interface BagMessage {
  topic: string;
  type: string;
  logTimeNs: bigint;
  publishTimeNs: bigint;
  data: Uint8Array;
  file: string;
  /** Byte offset of the record (MCAP; a chunk's for chunked messages) or row id (.db3). */
  offset: number;
}

export interface BagInfo {
  path: string;
  storage: 'mcap' | 'sqlite3';
  /** Absolute paths, in split order. */
  files: string[];
  topics: BagTopic[];
  startNs: bigint;
  durationNs: bigint;
  messageCount: number;
  compression: string;
  version: number | null;
  rosDistro: string | null;
  /** True when the info comes from metadata.yaml, false when from scanning the file. */
  fromMetadata: boolean;
}

export interface BagReader {
  readonly info: BagInfo;
  /** type ("pkg/msg/Type") -> full ros2msg definition text found in the bag. */
  definitions(): Promise<Map<string, string>>;
  messages(opts?: { topics?: Iterable<string> }): AsyncGenerator<BagMessage>;
  close(): Promise<void>;
}

function storageOf(file: string): 'mcap' | 'sqlite3' | undefined {
  if (file.endsWith('.mcap')) return 'mcap';
  if (file.endsWith('.db3')) return 'sqlite3';
  return undefined;
}

/** Split index of `<name>_<n>.<ext>` for ordering. */
function splitIndex(f: string): number {
  const m = /_(\d+)\.(mcap|db3)$/.exec(f);
  return m ? Number(m[1]) : 0;
}

class Reader implements BagReader {
  private defs: Map<string, string> | undefined;

  constructor(
    readonly info: BagInfo,
    private readonly types: Map<string, string>,
    private readonly limits: BagLimits,
  ) {}

  async definitions(): Promise<Map<string, string>> {
    if (this.defs) return this.defs;
    const out = new Map<string, string>();
    for (const file of this.info.files) {
      if (!existsSync(file)) continue;
      if (this.info.storage === 'sqlite3') {
        const db = await Db3File.open(file, this.limits);
        for (const [t, text] of db.definitions) out.set(t, text);
        db.close();
      } else {
        // The summary section has every schema; without one (a cut-off file), schemas precede
        // their channels' messages: read until every topic's type is known.
        const summary = await readMcapSummary(file, this.limits);
        if (summary) {
          for (const sc of summary.schemas.values()) if (sc.encoding === 'ros2msg' && sc.text.trim() && !out.has(sc.name)) out.set(sc.name, sc.text);
          continue;
        }
        const scan: McapScan = { schemas: new Map(), channels: new Map(), metadata: new Map() };
        const want = new Set(this.info.topics.map((t) => t.name));
        const known = () => [...want].every((t) => [...scan.channels.values()].some((c) => c.topic === t));
        try {
          for await (const m of readMcap(file, scan, undefined, this.limits)) {
            void m;
            if (known()) break;
          }
        } catch {
          // a damaged file still gave the schemas before the damage; messages() reports the fault
        }
        for (const s of scan.schemas.values()) if (s.encoding === 'ros2msg' && s.text.trim() && !out.has(s.name)) out.set(s.name, s.text);
      }
    }
    this.defs = out;
    return out;
  }

  async *messages(opts: { topics?: Iterable<string> } = {}): AsyncGenerator<BagMessage> {
    const topics = opts.topics ? new Set(opts.topics) : undefined;
    for (const file of this.info.files) {
      if (!existsSync(file)) throw new VlaError(ErrorCodes.BAG_MISSING_FILE, `${file}: split file listed in metadata.yaml is missing (nothing to read from byte 0)`, { file, offset: 0 });
      try {
        if (this.info.storage === 'sqlite3') {
          const db = await Db3File.open(file, this.limits);
          try {
            for (const m of db.messages(topics)) yield { topic: m.topic, type: m.type, logTimeNs: m.timestampNs, publishTimeNs: m.timestampNs, data: m.data, file, offset: m.row };
          } finally {
            db.close();
          }
        } else {
          const scan: McapScan = { schemas: new Map(), channels: new Map(), metadata: new Map() };
          for await (const m of readMcap(file, scan, topics, this.limits)) {
            yield { topic: m.topic, type: this.types.get(m.topic) ?? m.schemaName, logTimeNs: m.logTimeNs, publishTimeNs: m.publishTimeNs, data: m.data, file, offset: m.offset };
          }
        }
      } catch (err) {
        // Whatever a malformed file makes go wrong is a bag error naming it, never a bare TypeError.
        if (err instanceof VlaError) throw err;
        throw new VlaError(ErrorCodes.BAG, `${file}: cannot read: ${(err as Error).message}`, { file, offset: 0 }, { cause: err });
      }
    }
  }

  async close(): Promise<void> {
    // files are opened per pass and closed by it
  }
}

async function infoFromMetadata(dir: string, m: BagMetadata): Promise<BagInfo> {
  const meta = path.join(dir, 'metadata.yaml');
  const storage = m.storageIdentifier === 'mcap' ? 'mcap' : m.storageIdentifier === 'sqlite3' ? 'sqlite3' : undefined;
  if (!storage) throw new VlaError(ErrorCodes.BAG, `${meta}: storage '${m.storageIdentifier}' is not supported (mcap, sqlite3)`, { file: meta, offset: 0 });
  if (m.compressionMode && m.compressionMode.toUpperCase() === 'FILE') {
    throw new VlaError(ErrorCodes.BAG, `${dir}: file-compressed bags (compression_mode FILE, ${m.compressionFormat}) are not supported; decompress with \`ros2 bag convert\``, { file: dir, offset: 0 });
  }
  if (!m.relativeFilePaths.length) {
    throw new VlaError(ErrorCodes.BAG, `${meta}: lists no storage files (relative_file_paths is missing or empty): cut short, or not rosbag2 metadata`, { file: meta, offset: 0 });
  }
  // The files metadata.yaml names are read only where they resolve inside the bag's directory:
  // no absolute paths, no ../, no symbolic link out of it.
  const files: string[] = [];
  for (const f of m.relativeFilePaths) files.push(await resolveInside(dir, f, ErrorCodes.BAG, `${meta}: relative_file_paths`));
  return {
    path: dir,
    storage,
    files,
    topics: m.topics.map((t) => ({ ...t })),
    startNs: m.startNs,
    durationNs: m.durationNs,
    messageCount: m.messageCount,
    compression: m.compressionFormat,
    version: m.version,
    rosDistro: m.rosDistro,
    fromMetadata: true,
  };
}

async function infoFromFiles(p: string, files: string[], storage: 'mcap' | 'sqlite3', limits: BagLimits): Promise<BagInfo> {
  const counts = new Map<string, number>();
  const types = new Map<string, BagTopic>();
  let start = -1n, end = 0n, messages = 0;
  const compression = '';
  const add = (s: { counts: Map<string, number>; startNs: bigint; endNs: bigint; messages: number }) => {
    for (const [k, v] of s.counts) counts.set(k, (counts.get(k) ?? 0) + v);
    if (s.messages) {
      if (start < 0n || s.startNs < start) start = s.startNs;
      if (s.endNs > end) end = s.endNs;
    }
    messages += s.messages;
  };
  for (const file of files) {
    if (storage === 'sqlite3') {
      const db = await Db3File.open(file, limits);
      try {
        for (const t of db.topics) types.set(t.name, { ...t, messageCount: 0 });
        add(db.stats());
      } finally {
        db.close();
      }
    } else {
      const s = await summarizeMcap(file, limits);
      for (const ch of s.scan.channels.values()) {
        if (!types.has(ch.topic)) {
          types.set(ch.topic, { name: ch.topic, type: ch.schemaName, serializationFormat: ch.messageEncoding, offeredQosProfiles: ch.metadata.get('offered_qos_profiles') ?? '', typeDescriptionHash: ch.metadata.get('topic_type_hash') ?? '', messageCount: 0 });
        }
      }
      add(s);
    }
  }
  const topics = [...types.values()].map((t) => ({ ...t, messageCount: counts.get(t.name) ?? 0 }));
  const s0 = start < 0n ? 0n : start;
  return { path: p, storage, files, topics, startNs: s0, durationNs: end > s0 ? end - s0 : 0n, messageCount: messages, compression, version: null, rosDistro: null, fromMetadata: false };
}

export interface OpenBagOptions {
  /** Size limits on chunks, messages and .db3 files (default DEFAULT_BAG_LIMITS). */
  limits?: BagLimits;
}

/** Opens a bag directory or a single .mcap/.db3 file. */
export async function openBag(p: string, opts: OpenBagOptions = {}): Promise<BagReader> {
  const limits = opts.limits ?? DEFAULT_BAG_LIMITS;
  const given = path.resolve(p);
  let abs: string;
  let st;
  try {
    abs = await realpath(given);
    st = await stat(abs);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message;
    throw new VlaError(ErrorCodes.IO, `${given}: ${why}`, { file: given }, { cause: err });
  }
  let info: BagInfo;
  try {
    if (st.isDirectory()) {
      const meta = path.join(abs, 'metadata.yaml');
      if (existsSync(meta)) {
        await resolveInside(abs, 'metadata.yaml', ErrorCodes.BAG, meta);
        info = await infoFromMetadata(abs, await readMetadata(meta));
      } else {
        const names = readdirSync(abs).filter((f) => storageOf(f)).sort((a, b) => splitIndex(a) - splitIndex(b) || a.localeCompare(b));
        const storage = names[0] ? storageOf(names[0]) : undefined;
        if (!storage) throw new VlaError(ErrorCodes.BAG, `${abs}: no metadata.yaml and no .mcap or .db3 file: not a bag`, { file: abs, offset: 0 });
        const files: string[] = [];
        for (const f of names.filter((n) => storageOf(n) === storage)) files.push(await resolveInside(abs, f, ErrorCodes.BAG, abs));
        info = await infoFromFiles(abs, files, storage, limits);
      }
    } else {
      const storage = storageOf(abs);
      if (!storage) throw new VlaError(ErrorCodes.BAG, `${abs}: not a bag (a directory, or a .mcap or .db3 file)`, { file: abs, offset: 0 });
      info = await infoFromFiles(abs, [abs], storage, limits);
    }
  } catch (err) {
    // Whatever a malformed bag makes go wrong is a bag error naming it, never a bare TypeError.
    if (err instanceof VlaError) throw err;
    throw new VlaError(ErrorCodes.BAG, `${abs}: cannot read the bag: ${(err as Error).message}`, { file: abs, offset: 0 }, { cause: err });
  }
  return new Reader(info, new Map(info.topics.map((t) => [t.name, t.type])), limits);
}

function fmtTime(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms);
  return `${d.toISOString()} (${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')})`;
}

function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** Human text in the layout of `ros2 bag info`. */
export function formatBagInfo(info: BagInfo): string {
  const size = info.files.reduce((a, f) => {
    try {
      return a + statSync(f).size;
    } catch {
      return a;
    }
  }, 0);
  const width = Math.max(0, ...info.topics.map((t) => t.name.length));
  const lines = [
    `Files:             ${info.files.map((f) => path.basename(f)).join('\n                   ')}`,
    `Bag size:          ${fmtBytes(size)}`,
    `Storage id:        ${info.storage}`,
    `ROS Distro:        ${info.rosDistro ?? 'unknown'}`,
    `Duration:          ${(Number(info.durationNs) / 1e9).toFixed(9)}s`,
    `Start:             ${fmtTime(info.startNs)}`,
    `End:               ${fmtTime(info.startNs + info.durationNs)}`,
    `Messages:          ${info.messageCount}`,
    `Topic information: ${info.topics
      .map((t) => `Topic: ${t.name.padEnd(width)} | Type: ${t.type} | Count: ${t.messageCount} | Serialization Format: ${t.serializationFormat}`)
      .join('\n                   ')}`,
  ];
  return lines.join('\n');
}

/** JSON-safe info: ns as strings, seconds as numbers. */
export function bagInfoJson(info: BagInfo): Record<string, unknown> {
  return {
    path: info.path,
    storage: info.storage,
    files: info.files,
    startNs: info.startNs.toString(),
    durationNs: info.durationNs.toString(),
    startS: Number(info.startNs) / 1e9,
    durationS: Number(info.durationNs) / 1e9,
    messageCount: info.messageCount,
    compression: info.compression,
    version: info.version,
    rosDistro: info.rosDistro,
    fromMetadata: info.fromMetadata,
    topics: info.topics,
  };
}
