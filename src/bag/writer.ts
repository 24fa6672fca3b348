/**
 * Writes rosbag2-MCAP bags as rosbag2's own MCAP writer lays them out, so `ros2 bag info` and
 * `ros2 bag play` take them: header profile `ros2`; one `ros2msg` schema per type holding the
 * full definition; `cdr` channels with `offered_qos_profiles` and `topic_type_hash` metadata;
 * chunks with CRCs, message indexes and statistics; a `rosbag2` metadata record carrying
 * `serialized_metadata`; and metadata.yaml beside the file. Optional zstd or lz4 chunks.
 */
import { mkdir, open, readdir, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { McapWriter } from '@mcap/core';
import { FileHandleWritable } from '@mcap/nodejs';

import type { QosProfile } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { metadataYaml, qosProfilesYaml, type BagMetadata, type MetadataTopic } from './metadata.js';
import type { BagInfo } from './reader.js';

export interface BagWriterOptions {
  compression?: 'none' | 'zstd' | 'lz4';
  /** Default 768 KiB, rosbag2's MCAP default. */
  chunkSizeBytes?: number;
  rosDistro?: string;
  /** Start a new split file once the current one reaches this size (rosbag2's max_bagfile_size). */
  maxFileBytes?: number;
}

interface TopicState {
  meta: MetadataTopic;
  type: string;
  definition: string;
  qos: string;
}

interface Split {
  rel: string;
  fh: FileHandle;
  writable: FileHandleWritable;
  writer: McapWriter;
  channels: Map<string, number>;
  schemas: Map<string, number>;
  startNs: bigint;
  endNs: bigint;
  count: number;
}

async function compressor(kind: 'none' | 'zstd' | 'lz4'): Promise<((d: Uint8Array) => { compression: string; compressedData: Uint8Array }) | undefined> {
  if (kind === 'zstd') {
    const zstd = await import('@foxglove/wasm-zstd');
    await zstd.isLoaded;
    return (d) => ({ compression: 'zstd', compressedData: zstd.compress(d, 3) });
  }
  if (kind === 'lz4') {
    const lz4 = await import('lz4js');
    return (d) => ({ compression: 'lz4', compressedData: lz4.compress(d) });
  }
  return undefined;
}

export class BagWriter {
  private readonly topics = new Map<string, TopicState>();
  private readonly splits: Array<Omit<Split, 'fh' | 'writable' | 'writer' | 'channels' | 'schemas'>> = [];
  private cur: Split | undefined;
  private closed: Promise<BagInfo> | undefined;
  private readonly name: string;

  private constructor(
    readonly dir: string,
    private readonly opts: Required<Pick<BagWriterOptions, 'compression' | 'chunkSizeBytes' | 'rosDistro'>> & { maxFileBytes: number | undefined },
    private readonly compress: ((d: Uint8Array) => { compression: string; compressedData: Uint8Array }) | undefined,
  ) {
    this.name = path.basename(dir);
  }

  /** Creates `dir` (which must not exist or must be empty) and the first split `<name>_0.mcap`. */
  static async create(dir: string, opts: BagWriterOptions = {}): Promise<BagWriter> {
    const abs = path.resolve(dir);
    try {
      await mkdir(abs, { recursive: true });
      if ((await readdir(abs)).length) throw new VlaError(ErrorCodes.IO, `${abs}: output bag directory is not empty`, { file: abs });
    } catch (err) {
      if (err instanceof VlaError) throw err;
      throw new VlaError(ErrorCodes.IO, `${abs}: ${(err as Error).message}`, { file: abs }, { cause: err });
    }
    const compression = opts.compression ?? 'none';
    const w = new BagWriter(abs, { compression, chunkSizeBytes: opts.chunkSizeBytes ?? 768 * 1024, rosDistro: opts.rosDistro ?? 'jazzy', maxFileBytes: opts.maxFileBytes }, await compressor(compression));
    await w.openSplit();
    return w;
  }

  private async openSplit(): Promise<void> {
    const rel = `${this.name}_${this.splits.length + (this.cur ? 1 : 0)}.mcap`;
    const file = path.join(this.dir, rel);
    const fh = await open(file, 'w');
    const writable = new FileHandleWritable(fh);
    const writer = new McapWriter({ writable, chunkSize: this.opts.chunkSizeBytes, ...(this.compress ? { compressChunk: this.compress } : {}) });
    await writer.start({ profile: 'ros2', library: 'autoprune-ros (rosbag2 MCAP layout)' });
    this.cur = { rel, fh, writable, writer, channels: new Map(), schemas: new Map(), startNs: -1n, endNs: 0n, count: 0 };
    for (const t of this.topics.values()) await this.register(t);
  }

  private async register(t: TopicState): Promise<void> {
    const s = this.cur as Split;
    let schemaId = s.schemas.get(t.type);
    if (schemaId === undefined) {
      schemaId = await s.writer.registerSchema({ name: t.type, encoding: 'ros2msg', data: new TextEncoder().encode(t.definition) });
      s.schemas.set(t.type, schemaId);
    }
    const id = await s.writer.registerChannel({ schemaId, topic: t.meta.name, messageEncoding: 'cdr', metadata: new Map([['offered_qos_profiles', t.qos], ['topic_type_hash', '']]) });
    s.channels.set(t.meta.name, id);
  }

  async addTopic(name: string, type: string, definitionText: string, qos: QosProfile): Promise<void> {
    if (this.closed) throw new VlaError(ErrorCodes.IO, `${this.dir}: bag already closed`);
    if (this.topics.has(name)) return;
    const q = qosProfilesYaml(qos);
    const t: TopicState = { meta: { name, type, serializationFormat: 'cdr', offeredQosProfiles: q, typeDescriptionHash: '', messageCount: 0 }, type, definition: definitionText, qos: q };
    this.topics.set(name, t);
    await this.register(t);
  }

  async write(topic: string, logTimeNs: bigint, data: Uint8Array, publishTimeNs?: bigint): Promise<void> {
    if (this.closed) throw new VlaError(ErrorCodes.IO, `${this.dir}: bag already closed`);
    const t = this.topics.get(topic);
    if (!t) throw new VlaError(ErrorCodes.INPUT, `${this.dir}: topic ${topic} was not added`);
    if (this.opts.maxFileBytes !== undefined && this.cur && this.cur.count > 0 && Number(this.cur.writable.position()) >= this.opts.maxFileBytes) await this.rotate();
    const s = this.cur as Split;
    await s.writer.addMessage({ channelId: s.channels.get(topic) as number, sequence: t.meta.messageCount, logTime: logTimeNs, publishTime: publishTimeNs ?? logTimeNs, data });
    t.meta.messageCount++;
    s.count++;
    if (s.startNs < 0n || logTimeNs < s.startNs) s.startNs = logTimeNs;
    if (logTimeNs > s.endNs) s.endNs = logTimeNs;
  }

  private async finishSplit(meta?: string): Promise<void> {
    const s = this.cur as Split;
    if (meta !== undefined) await s.writer.addMetadata({ name: 'rosbag2', metadata: new Map([['serialized_metadata', meta]]) });
    await s.writer.end();
    await s.fh.close();
    this.splits.push({ rel: s.rel, startNs: s.startNs, endNs: s.endNs, count: s.count });
    this.cur = undefined;
  }

  private async rotate(): Promise<void> {
    await this.finishSplit(metadataYaml(this.metadata()));
    await this.openSplit();
  }

  private metadata(): BagMetadata {
    const all = [...this.splits, ...(this.cur ? [{ rel: this.cur.rel, startNs: this.cur.startNs, endNs: this.cur.endNs, count: this.cur.count }] : [])];
    const withMsgs = all.filter((f) => f.count > 0);
    const start = withMsgs.length ? withMsgs.reduce((a, f) => (f.startNs < a ? f.startNs : a), withMsgs[0]?.startNs as bigint) : 0n;
    const end = withMsgs.reduce((a, f) => (f.endNs > a ? f.endNs : a), 0n);
    return {
      version: 9,
      storageIdentifier: 'mcap',
      durationNs: end > start ? end - start : 0n,
      startNs: start,
      messageCount: all.reduce((a, f) => a + f.count, 0),
      topics: [...this.topics.values()].map((t) => ({ ...t.meta })),
      compressionFormat: '',
      compressionMode: '',
      relativeFilePaths: all.map((f) => f.rel),
      files: all.map((f) => ({ path: f.rel, startNs: f.count ? f.startNs : 0n, durationNs: f.count && f.endNs > f.startNs ? f.endNs - f.startNs : 0n, messageCount: f.count })),
      rosDistro: this.opts.rosDistro,
    };
  }

  /** Ends the MCAP file and writes metadata.yaml; returns the bag's info. Safe to call twice. */
  close(): Promise<BagInfo> {
    this.closed ??= (async () => {
      // The same text goes into the last split's rosbag2 record and into metadata.yaml.
      const m = this.metadata();
      const yaml = metadataYaml(m);
      await this.finishSplit(yaml);
      await writeFile(path.join(this.dir, 'metadata.yaml'), yaml);
      return {
        path: this.dir,
        storage: 'mcap' as const,
        files: m.relativeFilePaths.map((f) => path.join(this.dir, f)),
        topics: m.topics.map((t) => ({ ...t })),
        startNs: m.startNs,
        durationNs: m.durationNs,
        messageCount: m.messageCount,
        compression: this.opts.compression === 'none' ? '' : this.opts.compression,
        version: 9,
        rosDistro: this.opts.rosDistro,
        fromMetadata: true,
      };
    })();
    return this.closed;
  }
}
