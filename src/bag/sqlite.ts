/**
 * sqlite3 storage (`.db3`, the Humble default), read with sql.js: SQLite compiled to
 * WebAssembly, so nothing native to build, and read-only use is all replay needs. sql.js works on
 * a copy of the file in memory. Timestamps are read as text: 19-digit nanoseconds exceed 2^53.
 */
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';

import initSqlJs, { type Database, type SqlJsStatic } from 'sql.js';

import { ErrorCodes, VlaError } from '../util/errors.js';

const SQLITE_MAGIC = 'SQLite format 3\0';
/** sql.js holds the whole database in WebAssembly memory (at most 4 GiB, and a copy is made). */
export const MAX_DB3_BYTES = 1.5 * 2 ** 30;

let sql: Promise<SqlJsStatic> | undefined;
function sqlJs(): Promise<SqlJsStatic> {
  const require = createRequire(import.meta.url);
  sql ??= initSqlJs({ locateFile: (f: string) => require.resolve(`sql.js/dist/${f}`) });
  return sql;
}

export interface DbTopic {
  id: number;
  name: string;
  type: string;
  serializationFormat: string;
  offeredQosProfiles: string;
  typeDescriptionHash: string;
}

export interface DbMessage {
  topic: string;
  type: string;
  timestampNs: bigint;
  data: Uint8Array;
  row: number;
}

/**
 * The size the header says the database has (page count × page size), when the header's page
 * count is valid (its version-valid-for number matches the change counter); else undefined.
 */
function expectedSize(bytes: Uint8Array): number | undefined {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const raw = dv.getUint16(16);
  const pageSize = raw === 1 ? 65536 : raw;
  const pages = dv.getUint32(28);
  if (!pages || dv.getUint32(92) !== dv.getUint32(24)) return undefined;
  return pages * pageSize;
}

/** An SQLite error: a cut-off copy when the file is shorter than its header says, else a damaged database. */
function sqliteFault(file: string, size: number, expected: number | undefined, err: unknown, row: number | undefined): VlaError {
  const msg = (err as Error).message ?? String(err);
  const where = row === undefined ? 'opening it' : `reading messages after row id ${row}`;
  if (expected !== undefined && size < expected) {
    return new VlaError(ErrorCodes.BAG_TRUNCATED, `${file}: ends at byte ${size} but its header says ${expected} bytes: truncated (SQLite, ${where}: ${msg})`, { file, offset: size, row: row ?? 0 }, { cause: err });
  }
  return new VlaError(ErrorCodes.BAG, `${file}: damaged SQLite database (${where}, row id ${row ?? 0}, byte offset unknown): ${msg}`, { file, offset: 0, row: row ?? 0 }, { cause: err });
}

export class Db3File {
  private constructor(
    readonly file: string,
    private readonly db: Database,
    readonly topics: DbTopic[],
    readonly definitions: Map<string, string>,
    private readonly size: number,
    private readonly expected: number | undefined,
  ) {}

  static async open(file: string): Promise<Db3File> {
    let bytes: Uint8Array;
    try {
      // sql.js works on an in-memory copy: refuse what would not fit rather than run out of memory.
      const size = (await stat(file)).size;
      if (size > MAX_DB3_BYTES) {
        throw new VlaError(ErrorCodes.BAG, `${file}: ${(size / 2 ** 30).toFixed(1)} GiB is too large to read as .db3 here (limit ${MAX_DB3_BYTES / 2 ** 30} GiB); convert it to MCAP with \`ros2 bag convert\` or split it`, { file, offset: 0 });
      }
      bytes = await readFile(file);
    } catch (err) {
      if (err instanceof VlaError) throw err;
      const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? ErrorCodes.BAG_MISSING_FILE : ErrorCodes.IO;
      throw new VlaError(code, `${file}: ${(err as Error).message}`, { file, offset: 0 }, { cause: err });
    }
    if (bytes.byteLength < 100 || new TextDecoder('latin1').decode(bytes.subarray(0, 16)) !== SQLITE_MAGIC) {
      throw new VlaError(ErrorCodes.BAG_MAGIC, `${file}: no SQLite header at byte 0 (not an SQLite database)`, { file, offset: 0 });
    }
    const expected = expectedSize(bytes);
    const S = await sqlJs();
    let db: Database | undefined;
    try {
      db = new S.Database(bytes);
      const tables = new Set((db.exec("SELECT name FROM sqlite_master WHERE type='table'")[0]?.values ?? []).map((r) => String(r[0])));
      if (!tables.has('topics') || !tables.has('messages')) throw new VlaError(ErrorCodes.BAG, `${file}: an SQLite database without rosbag2's topics/messages tables (byte 0)`, { file, offset: 0 });
      const cols = new Set((db.exec('PRAGMA table_info(topics)')[0]?.values ?? []).map((r) => String(r[1])));
      const hashCol = cols.has('type_description_hash') ? 'type_description_hash' : "''";
      const qosCol = cols.has('offered_qos_profiles') ? 'offered_qos_profiles' : "''";
      const topics = (db.exec(`SELECT id, name, type, serialization_format, ${qosCol}, ${hashCol} FROM topics ORDER BY id`)[0]?.values ?? []).map((r) => ({
        id: Number(r[0]),
        name: String(r[1]),
        type: String(r[2]),
        serializationFormat: String(r[3] ?? 'cdr'),
        offeredQosProfiles: String(r[4] ?? ''),
        typeDescriptionHash: String(r[5] ?? ''),
      }));
      const definitions = new Map<string, string>();
      if (tables.has('message_definitions')) {
        for (const r of db.exec('SELECT topic_type, encoding, encoded_message_definition FROM message_definitions')[0]?.values ?? []) {
          if (String(r[1]) === 'ros2msg' && String(r[2] ?? '').trim()) definitions.set(String(r[0]), String(r[2]));
        }
      }
      return new Db3File(file, db, topics, definitions, bytes.byteLength, expected);
    } catch (err) {
      db?.close();
      if (err instanceof VlaError) throw err;
      throw sqliteFault(file, bytes.byteLength, expected, err, undefined);
    }
  }

  /** Counts and time range per topic, by SQL. */
  stats(): { counts: Map<string, number>; startNs: bigint; endNs: bigint; messages: number } {
    try {
      return this.countRows();
    } catch (err) {
      throw sqliteFault(this.file, this.size, this.expected, err, undefined);
    }
  }

  private countRows(): { counts: Map<string, number>; startNs: bigint; endNs: bigint; messages: number } {
    const byId = new Map(this.topics.map((t) => [t.id, t.name]));
    const counts = new Map<string, number>();
    let messages = 0;
    for (const r of this.db.exec('SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id')[0]?.values ?? []) {
      const n = Number(r[1]);
      counts.set(byId.get(Number(r[0])) ?? `#${r[0]}`, n);
      messages += n;
    }
    const range = this.db.exec('SELECT CAST(MIN(timestamp) AS TEXT), CAST(MAX(timestamp) AS TEXT) FROM messages')[0]?.values[0] ?? [];
    return { counts, startNs: BigInt((range[0] as string | null) ?? '0'), endNs: BigInt((range[1] as string | null) ?? '0'), messages };
  }

  /** Messages in timestamp order, stepping a prepared statement (rows are not materialised). */
  *messages(topics?: ReadonlySet<string>): Generator<DbMessage> {
    const byId = new Map(this.topics.map((t) => [t.id, t]));
    const stmt = this.db.prepare('SELECT id, topic_id, CAST(timestamp AS TEXT), data FROM messages ORDER BY timestamp, id');
    let row = 0;
    try {
      for (;;) {
        let more: boolean;
        try {
          more = stmt.step();
        } catch (err) {
          throw sqliteFault(this.file, this.size, this.expected, err, row);
        }
        if (!more) break;
        const r = stmt.get();
        row = Number(r[0]);
        const t = byId.get(Number(r[1]));
        if (!t) throw new VlaError(ErrorCodes.BAG, `${this.file}: message ${row} refers to unknown topic id ${r[1]}`, { file: this.file, offset: 0, row });
        if (topics && !topics.has(t.name)) continue;
        const data = r[3] instanceof Uint8Array ? r[3] : new Uint8Array(0);
        yield { topic: t.name, type: t.type, timestampNs: BigInt(String(r[2])), data, row };
      }
      // SQLite read every row it could reach, but pages are missing: say so rather than pass a cut-off copy as whole.
      if (this.expected !== undefined && this.size < this.expected) {
        throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${this.file}: ends at byte ${this.size} but its header says ${this.expected} bytes: truncated (every readable row was read, last row id ${row})`, { file: this.file, offset: this.size, row });
      }
    } finally {
      stmt.free();
    }
  }

  close(): void {
    this.db.close();
  }
}
