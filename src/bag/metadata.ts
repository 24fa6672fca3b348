/**
 * rosbag2's metadata.yaml (`rosbag2_bagfile_information`). Nanosecond times are 19-digit
 * integers, beyond 2^53: they are parsed as bigint. Written in the layout of rosbag2's own
 * writer (version 9, Jazzy).
 */
import { readFile } from 'node:fs/promises';

import { parseDocument, stringify } from 'yaml';

import type { QosProfile } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';

export interface MetadataTopic {
  name: string;
  type: string;
  serializationFormat: string;
  offeredQosProfiles: string;
  typeDescriptionHash: string;
  messageCount: number;
}

export interface BagMetadata {
  version: number;
  storageIdentifier: string;
  durationNs: bigint;
  startNs: bigint;
  messageCount: number;
  topics: MetadataTopic[];
  compressionFormat: string;
  compressionMode: string;
  relativeFilePaths: string[];
  files: Array<{ path: string; startNs: bigint; durationNs: bigint; messageCount: number }>;
  rosDistro: string | null;
}

type Obj = Record<string, unknown>;

const big = (v: unknown, where: string, file: string): bigint => {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  throw new VlaError(ErrorCodes.BAG, `${file}: ${where} is not an integer`, { file, offset: 0 });
};
const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** Parses metadata.yaml text; anything that is not rosbag2 metadata is VLA_E_BAG naming the file. */
export function parseMetadata(text: string, file: string): BagMetadata {
  let doc: unknown;
  try {
    const d = parseDocument(text, { intAsBigInt: true });
    if (d.errors.length) throw d.errors[0];
    doc = d.toJS();
  } catch (err) {
    // YAML errors carry the character offset of the fault.
    const pos = (err as { pos?: unknown }).pos;
    const offset = Array.isArray(pos) && typeof pos[0] === 'number' ? pos[0] : 0;
    throw new VlaError(ErrorCodes.BAG, `${file}: not valid YAML at character ${offset} (${(err as Error).message})`, { file, offset }, { cause: err });
  }
  const info = (doc as Obj | null)?.rosbag2_bagfile_information as Obj | undefined;
  if (!info || typeof info !== 'object') throw new VlaError(ErrorCodes.BAG, `${file}: no 'rosbag2_bagfile_information' section: not rosbag2 metadata`, { file, offset: 0 });
  const storage = str(info.storage_identifier);
  if (!storage) throw new VlaError(ErrorCodes.BAG, `${file}: storage_identifier missing`, { file, offset: 0 });
  const topicsRaw = Array.isArray(info.topics_with_message_count) ? (info.topics_with_message_count as Obj[]) : [];
  const topics = topicsRaw.map((t, i) => {
    const m = (t?.topic_metadata ?? {}) as Obj;
    if (!str(m.name) || !str(m.type)) throw new VlaError(ErrorCodes.BAG, `${file}: topic ${i} lacks a name or type`, { file, offset: 0 });
    return {
      name: str(m.name),
      type: str(m.type),
      serializationFormat: str(m.serialization_format) || 'cdr',
      offeredQosProfiles: str(m.offered_qos_profiles),
      typeDescriptionHash: str(m.type_description_hash),
      messageCount: num(t.message_count),
    };
  });
  const rel = Array.isArray(info.relative_file_paths) ? (info.relative_file_paths as unknown[]).map(str).filter(Boolean) : [];
  const files = Array.isArray(info.files)
    ? (info.files as Obj[]).map((f) => ({
        path: str(f.path),
        startNs: big(((f.starting_time ?? {}) as Obj).nanoseconds_since_epoch ?? 0, 'files[].starting_time', file),
        durationNs: big(((f.duration ?? {}) as Obj).nanoseconds ?? 0, 'files[].duration', file),
        messageCount: num(f.message_count),
      }))
    : [];
  return {
    version: num(info.version),
    storageIdentifier: storage,
    durationNs: big(((info.duration ?? {}) as Obj).nanoseconds ?? 0, 'duration.nanoseconds', file),
    startNs: big(((info.starting_time ?? {}) as Obj).nanoseconds_since_epoch ?? 0, 'starting_time.nanoseconds_since_epoch', file),
    messageCount: num(info.message_count),
    topics,
    compressionFormat: str(info.compression_format),
    compressionMode: str(info.compression_mode),
    relativeFilePaths: rel.length ? rel : files.map((f) => f.path).filter(Boolean),
    files,
    rosDistro: str(info.ros_distro) || null,
  };
}

export async function readMetadata(file: string): Promise<BagMetadata> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${file}: ${(err as Error).message}`, { file, offset: 0 }, { cause: err });
  }
  return parseMetadata(text, file);
}

/**
 * rosbag2's offered_qos_profiles YAML for one publisher, as Jazzy (metadata version 9) writes it:
 * policies by name (version 9 decodes reliability/durability/liveliness as names, so rmw's
 * numbers would read back as "unknown"), and durations "infinite" as rmw reports a default
 * publisher's. A fixed shape, so written directly: the YAML library costs milliseconds per call.
 */
export function qosProfilesYaml(q: QosProfile): string {
  const infinite = ['    sec: 9223372036', '    nsec: 854775807'];
  const lines = [
    '- history: keep_last',
    `  depth: ${Math.trunc(q.depth)}`,
    `  reliability: ${q.reliability === 'reliable' ? 'reliable' : 'best_effort'}`,
    `  durability: ${q.durability === 'transient_local' ? 'transient_local' : 'volatile'}`,
    '  deadline:',
    ...infinite,
    '  lifespan:',
    ...infinite,
    '  liveliness: automatic',
    '  liveliness_lease_duration:',
    ...infinite,
    '  avoid_ros_namespace_conventions: false',
  ];
  return lines.join('\n');
}

/** metadata.yaml as rosbag2 (Jazzy, version 9) writes it. */
export function metadataYaml(m: BagMetadata): string {
  const doc = {
    rosbag2_bagfile_information: {
      version: 9,
      storage_identifier: m.storageIdentifier,
      duration: { nanoseconds: m.durationNs },
      starting_time: { nanoseconds_since_epoch: m.startNs },
      message_count: m.messageCount,
      topics_with_message_count: m.topics.map((t) => ({
        topic_metadata: {
          name: t.name,
          type: t.type,
          serialization_format: t.serializationFormat,
          offered_qos_profiles: t.offeredQosProfiles,
          type_description_hash: t.typeDescriptionHash,
        },
        message_count: t.messageCount,
      })),
      compression_format: m.compressionFormat,
      compression_mode: m.compressionMode,
      relative_file_paths: m.relativeFilePaths,
      files: m.files.map((f) => ({ path: f.path, starting_time: { nanoseconds_since_epoch: f.startNs }, duration: { nanoseconds: f.durationNs }, message_count: f.messageCount })),
      custom_data: {},
      ros_distro: m.rosDistro ?? 'jazzy',
    },
  };
  return stringify(doc, { lineWidth: 0 });
}
