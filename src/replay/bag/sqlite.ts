/**
 * sqlite3 storage (`.db3`, the Humble default), read with sql.js: SQLite compiled to
 * WebAssembly, so nothing native to build, and read-only use is all replay needs. sql.js works on
 * a copy of the file in memory. Timestamps are read as text: 19-digit nanoseconds exceed 2^53.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

import initSqlJs, { type Database, type SqlJsStatic } from 'sql.js';

import { ErrorCodes, VlaError } from '../../util/errors.js';

const SQLITE_MAGIC = 'SQLite format 3\0';

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

export class Db3File {
  private constructor(
    readonly file: string,
    private readonly db: Database,
    readonly topics: DbTopic[],
    readonly definitions: Map<string, string>,
  ) {}

  static async open(file: string): Promise<Db3File> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? ErrorCodes.BAG_MISSING_FILE : ErrorCodes.IO;
      throw new VlaError(code, `${file}: ${(err as Error).message}`, { file, offset: 0 }, { cause: err });
    }
    if (bytes.byteLength < 100 || new TextDecoder('latin1').decode(bytes.subarray(0, 16)) !== SQLITE_MAGIC) {
      throw new VlaError(ErrorCodes.BAG_MAGIC, `${file}: not an SQLite database (no SQLite header)`, { file, offset: 0 });
    }
    // The header says how long the database should be: shorter means a cut-off copy.
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const pageSize = dv.getUint16(16) === 1 ? 65536 : dv.getUint16(16);
    const pages = dv.getUint32(28);
    const expected = pageSize * pages;
    const S = await sqlJs();
    let db: Database | undefined;
    try {
      if (pages > 0 && bytes.byteLength < expected) {
        throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${file}: ${bytes.byteLength} bytes, but its header says ${pages} pages of ${pageSize} (${expected} bytes): truncated`, { file, offset: bytes.byteLength });
      }
      db = new S.Database(bytes);
      const tables = new Set((db.exec("SELECT name FROM sqlite_master WHERE type='table'")[0]?.values ?? []).map((r) => String(r[0])));
      if (!tables.has('topics') || !tables.has('messages')) throw new VlaError(ErrorCodes.BAG, `${file}: an SQLite database without rosbag2's topics/messages tables`, { file, offset: 0 });
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
      return new Db3File(file, db, topics, definitions);
    } catch (err) {
      db?.close();
      if (err instanceof VlaError) throw err;
      throw new VlaError(ErrorCodes.BAG, `${file}: ${(err as Error).message}`, { file, offset: 0 }, { cause: err });
    }
  }

  /** Counts and time range per topic, by SQL. */
  stats(): { counts: Map<string, number>; startNs: bigint; endNs: bigint; messages: number } {
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
          throw new VlaError(ErrorCodes.BAG, `${this.file}: cannot read message row after id ${row}: ${(err as Error).message}`, { file: this.file, offset: 0, row }, { cause: err });
        }
        if (!more) return;
        const r = stmt.get();
        row = Number(r[0]);
        const t = byId.get(Number(r[1]));
        if (!t) throw new VlaError(ErrorCodes.BAG, `${this.file}: message ${row} refers to unknown topic id ${r[1]}`, { file: this.file, offset: 0, row });
        if (topics && !topics.has(t.name)) continue;
        const data = r[3] instanceof Uint8Array ? r[3] : new Uint8Array(0);
        yield { topic: t.name, type: t.type, timestampNs: BigInt(String(r[2])), data, row };
      }
    } finally {
      stmt.free();
    }
  }

  close(): void {
    this.db.close();
  }
}
