/**
 * rosbag2's metadata.yaml (`rosbag2_bagfile_information`). Nanosecond times are 19-digit
 * integers, beyond 2^53: they are parsed as bigint. Written in the layout of rosbag2's own
 * writer (version 9, Jazzy).
 */
import { parseDocument, stringify } from 'yaml';

import type { QosProfile } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';

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

/** metadata.yaml of a bag with thousands of topics is a few MB; more is not metadata. */
export const MAX_METADATA_BYTES = 16 << 20;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads the document's fields with their types checked: anything that is not what rosbag2
 * writes is VLA_E_BAG naming the file and the key (never a TypeError from a null somewhere).
 */
class Fields {
  constructor(private readonly file: string) {}

  fail(where: string, what: string): never {
    throw new VlaError(ErrorCodes.BAG, `${this.file}: ${where} ${what}`, { file: this.file, offset: 0 });
  }

  obj(v: unknown, where: string): Obj {
    if (!isObj(v)) this.fail(where, 'is not a mapping');
    return v;
  }

  /** A nanosecond count: an integer (beyond 2^53, so bigint); absent means 0 (unknown). */
  ns(v: unknown, where: string): bigint {
    if (v === undefined || v === null) return 0n;
    if (typeof v === 'bigint') return v;
    if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
    if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) return BigInt(v);
    return this.fail(where, 'is not an integer');
  }

  /** A count: a non-negative safe integer; absent means 0. */
  count(v: unknown, where: string): number {
    if (v === undefined || v === null) return 0;
    const n = typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : NaN) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) this.fail(where, 'is not a non-negative integer');
    return n as number;
  }

  str(v: unknown, where: string, required = false): string {
    if (v === undefined || v === null) {
      if (required) this.fail(where, 'is missing');
      return '';
    }
    if (typeof v !== 'string') this.fail(where, 'is not a string');
    if (required && !v) this.fail(where, 'is empty');
    return v as string;
  }

  list(v: unknown, where: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(where, 'is not a list');
    return v as unknown[];
  }

  /** `{ key: ns }`, e.g. starting_time.nanoseconds_since_epoch. */
  nsIn(v: unknown, key: string, where: string): bigint {
    if (v === undefined || v === null) return 0n;
    return this.ns(this.obj(v, where)[key], `${where}.${key}`);
  }
}

/**
 * Parses metadata.yaml text; anything that is not rosbag2 metadata is VLA_E_BAG naming the file.
 * A file cut short (no relative_file_paths) is an error, not an empty bag.
 */
export function parseMetadata(text: string, file: string): BagMetadata {
  let doc: unknown = yamlSubset(text);
  if (doc === undefined) try {
    const d = parseDocument(text, { intAsBigInt: true });
    if (d.errors.length) throw d.errors[0];
    doc = d.toJS({ maxAliasCount: 100 });
  } catch (err) {
    if (err instanceof VlaError) throw err;
    // YAML errors carry the character offset of the fault.
    const pos = (err as { pos?: unknown }).pos;
    const offset = Array.isArray(pos) && typeof pos[0] === 'number' ? pos[0] : 0;
    throw new VlaError(ErrorCodes.BAG, `${file}: not valid YAML at character ${offset} (${(err as Error).message})`, { file, offset }, { cause: err });
  }
  const f = new Fields(file);
  const info = isObj(doc) ? doc.rosbag2_bagfile_information : undefined;
  if (!isObj(info)) throw new VlaError(ErrorCodes.BAG, `${file}: no 'rosbag2_bagfile_information' section: not rosbag2 metadata`, { file, offset: 0 });
  const storage = f.str(info.storage_identifier, 'storage_identifier', true);
  const topics = f.list(info.topics_with_message_count, 'topics_with_message_count').map((raw, i) => {
    const where = `topics_with_message_count[${i}]`;
    const t = f.obj(raw, where);
    const m = f.obj(t.topic_metadata, `${where}.topic_metadata`);
    return {
      name: f.str(m.name, `${where}.topic_metadata.name`, true),
      type: f.str(m.type, `${where}.topic_metadata.type`, true),
      serializationFormat: f.str(m.serialization_format, `${where}.topic_metadata.serialization_format`) || 'cdr',
      offeredQosProfiles: typeof m.offered_qos_profiles === 'string' ? m.offered_qos_profiles : '',
      typeDescriptionHash: typeof m.type_description_hash === 'string' ? m.type_description_hash : '',
      messageCount: f.count(t.message_count, `${where}.message_count`),
    };
  });
  const rel = f.list(info.relative_file_paths, 'relative_file_paths').map((p, i) => f.str(p, `relative_file_paths[${i}]`, true));
  const files = f.list(info.files, 'files').map((raw, i) => {
    const where = `files[${i}]`;
    const o = f.obj(raw, where);
    return {
      path: f.str(o.path, `${where}.path`, true),
      startNs: f.nsIn(o.starting_time, 'nanoseconds_since_epoch', `${where}.starting_time`),
      durationNs: f.nsIn(o.duration, 'nanoseconds', `${where}.duration`),
      messageCount: f.count(o.message_count, `${where}.message_count`),
    };
  });
  // rosbag2 always lists its files: a document without them was cut short (the bag reader says so).
  const relativeFilePaths = rel.length ? rel : files.map((x) => x.path);
  return {
    version: f.count(info.version, 'version'),
    storageIdentifier: storage,
    durationNs: f.nsIn(info.duration, 'nanoseconds', 'duration'),
    startNs: f.nsIn(info.starting_time, 'nanoseconds_since_epoch', 'starting_time'),
    messageCount: f.count(info.message_count, 'message_count'),
    topics,
    compressionFormat: f.str(info.compression_format, 'compression_format'),
    compressionMode: f.str(info.compression_mode, 'compression_mode'),
    relativeFilePaths,
    files,
    rosDistro: (typeof info.ros_distro === 'string' && info.ros_distro) || null,
  };
}

const KEY_LINE = /^( *)([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$/;
const SAFE_INT = /^(?:0|-?[1-9][0-9]*)$/;

/** A one-line value of the subset (see yamlSubset); undefined when it is outside it. */
function subsetScalar(v: string): unknown {
  if (v === '""' || v === "''") return '';
  if (v === '{}') return {};
  if (v === '[]') return [];
  if (SAFE_INT.test(v)) return BigInt(v);
  return /^[A-Za-z_/][A-Za-z0-9_/.-]*$/.test(v) && !RESERVED.test(v) ? v : undefined;
}

class NotSubset extends Error {}

/**
 * The document as the YAML library's parse (intAsBigInt) would give it, for the plain layout
 * metadataYaml writes: block mappings and sequences, `|-` blocks, "" and plain words and
 * integers. Undefined for anything else (quoted or folded strings, comments, flow collections,
 * anchors...), which the library then parses: it took milliseconds on a cold start, a
 * noticeable part of a short replay. bag.test.ts checks that both agree.
 */
export function yamlSubset(text: string): unknown {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let i = 0;
  const indentOf = (l: string) => l.length - l.trimStart().length;
  const fail = (): never => {
    throw new NotSubset();
  };
  const block = (n: number): string => {
    const first = lines[i];
    const bi = first === undefined ? 0 : indentOf(first);
    if (bi <= n) fail();
    const out: string[] = [];
    while (i < lines.length && indentOf(lines[i] as string) > n) {
      const l = lines[i] as string;
      if (indentOf(l) < bi || l.trim() === '' || /\s$/.test(l) || l.includes('\t')) fail();
      out.push(l.slice(bi));
      i++;
    }
    return out.join('\n');
  };
  const value = (n: number): unknown => {
    const l = lines[i];
    if (l === undefined) return fail();
    const ind = indentOf(l);
    if (ind !== n) fail();
    return l.startsWith('- ', n) ? seq(n) : map(n, l);
  };
  const map = (n: number, firstLine: string): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    let line: string | undefined = firstLine;
    for (;;) {
      const m = KEY_LINE.exec(line);
      if (!m || (m[1] as string).length !== n) fail();
      const key = (m as RegExpExecArray)[2] as string;
      const v = (m as RegExpExecArray)[3];
      if (key === '__proto__' || Object.prototype.hasOwnProperty.call(o, key)) fail();
      i++;
      if (v === '|-') o[key] = block(n);
      else if (v !== undefined) {
        const x = subsetScalar(v);
        if (x === undefined) fail();
        o[key] = x;
      } else {
        const next = lines[i];
        if (next !== undefined && indentOf(next) > n) o[key] = value(indentOf(next));
        else if (next !== undefined && indentOf(next) === n && next.startsWith('- ', n)) o[key] = seq(n);
        else o[key] = null;
      }
      line = lines[i];
      if (line === undefined || indentOf(line) < n) return o;
      if (indentOf(line) > n || line.startsWith('- ', n)) {
        if (line.startsWith('- ', n)) return o;
        fail();
      }
    }
  };
  const seq = (n: number): unknown[] => {
    const a: unknown[] = [];
    while (i < lines.length && indentOf(lines[i] as string) === n && (lines[i] as string).startsWith('- ', n)) {
      const rest = (lines[i] as string).slice(n + 2);
      if (KEY_LINE.test(rest)) {
        // "- key: v" opens a mapping whose keys sit two columns in.
        const line = ' '.repeat(n + 2) + rest;
        lines[i] = line;
        a.push(map(n + 2, line));
      } else {
        const x = subsetScalar(rest);
        if (x === undefined) fail();
        a.push(x);
        i++;
      }
    }
    return a;
  };
  try {
    if (!lines.length) return undefined;
    const doc = value(0);
    return i === lines.length && typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? doc : undefined;
  } catch (err) {
    if (err instanceof NotSubset) return undefined;
    throw err;
  }
}

export async function readMetadata(file: string): Promise<BagMetadata> {
  // Only a regular file, bounded: a FIFO or /dev/zero in its place must not hang or fill memory.
  const bytes = await readRegularFile(file, MAX_METADATA_BYTES, { missing: ErrorCodes.BAG, other: ErrorCodes.IO });
  return parseMetadata(bytes.toString('utf8'), file);
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
  return metadataYamlDirect(m) ?? metadataYamlLibrary(m);
}

/** The same document through the YAML library: any string, quoted as YAML needs it. */
export function metadataYamlLibrary(m: BagMetadata): string {
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

/** Words a YAML reader could take for something other than a string: never written plain here. */
const RESERVED = /^(?:true|false|null|yes|no|on|off|y|n)$/i;

/** A string as the YAML library writes it, where that is plain or "" (undefined: let the library decide). */
function plainScalar(s: string): string | undefined {
  if (s === '') return '""';
  return /^[A-Za-z_/][A-Za-z0-9_/.-]*$/.test(s) && !RESERVED.test(s) ? s : undefined;
}

/** A multi-line string as a `|-` block at `indent`, where the library would write it so. */
function blockScalar(s: string, indent: string): string | undefined {
  if (!s.includes('\n')) return plainScalar(s);
  const lines = s.split('\n');
  // Printable ASCII, no blank line, no line ending in a space, no first line starting with one:
  // the cases where the library still writes a plain |- block.
  if (!lines.every((l) => l !== '' && /^[ -~]*[!-~]$/.test(l)) || (lines[0] as string).startsWith(' ')) return undefined;
  return `|-\n${lines.map((l) => indent + l).join('\n')}`;
}

/**
 * metadata.yaml written directly, for the strings the library would write plain: the library
 * took milliseconds per document on a cold start, a noticeable part of a short replay.
 * Undefined when a string needs the library's quoting; bag.test.ts checks both agree.
 */
function metadataYamlDirect(m: BagMetadata): string | undefined {
  const out: string[] = ['rosbag2_bagfile_information:', '  version: 9'];
  const str = (key: string, v: string, indent: string): boolean => {
    const t = plainScalar(v);
    if (t === undefined) return false;
    out.push(`${indent}${key}: ${t}`);
    return true;
  };
  if (!str('storage_identifier', m.storageIdentifier, '  ')) return undefined;
  out.push('  duration:', `    nanoseconds: ${m.durationNs}`, '  starting_time:', `    nanoseconds_since_epoch: ${m.startNs}`, `  message_count: ${m.messageCount}`);
  if (!m.topics.length) out.push('  topics_with_message_count: []');
  else out.push('  topics_with_message_count:');
  for (const t of m.topics) {
    out.push('    - topic_metadata:');
    if (!str('name', t.name, '        ') || !str('type', t.type, '        ') || !str('serialization_format', t.serializationFormat, '        ')) return undefined;
    const qos = blockScalar(t.offeredQosProfiles, '          ');
    if (qos === undefined) return undefined;
    out.push(`        offered_qos_profiles: ${qos}`);
    if (!str('type_description_hash', t.typeDescriptionHash, '        ')) return undefined;
    out.push(`      message_count: ${t.messageCount}`);
  }
  if (!str('compression_format', m.compressionFormat, '  ') || !str('compression_mode', m.compressionMode, '  ')) return undefined;
  if (!m.relativeFilePaths.length) out.push('  relative_file_paths: []');
  else out.push('  relative_file_paths:');
  for (const f of m.relativeFilePaths) {
    const t = plainScalar(f);
    if (t === undefined) return undefined;
    out.push(`    - ${t}`);
  }
  if (!m.files.length) out.push('  files: []');
  else out.push('  files:');
  for (const f of m.files) {
    const t = plainScalar(f.path);
    if (t === undefined) return undefined;
    out.push(`    - path: ${t}`, '      starting_time:', `        nanoseconds_since_epoch: ${f.startNs}`, '      duration:', `        nanoseconds: ${f.durationNs}`, `      message_count: ${f.messageCount}`);
  }
  out.push('  custom_data: {}');
  if (!str('ros_distro', m.rosDistro ?? 'jazzy', '  ')) return undefined;
  return out.join('\n') + '\n';
}
