/**
 * sqlite3 storage (`.db3`, the Humble default), read with sql.js: SQLite compiled to
 * WebAssembly, so nothing native to build, and read-only use is all replay needs. sql.js works on
 * a copy of the file in memory, so the file's size is capped (BagLimits.maxDb3Bytes); rows are
 * stepped one at a time in storage order, each blob's length is checked before it is fetched,
 * and a fault ends the stream after every row before it. Timestamps are read as text: 19-digit
 * nanoseconds exceed 2^53.
 *
 * Why not better-sqlite3 (which reads pages from disk instead of holding the file): it is a
 * native module, and its prebuilt binaries come from GitHub at install time, which the
 * project's installs (ignore-scripts, offline machines, the Jetson) do not reach; building its
 * 9 MB SQLite amalgamation from source would add a node-gyp toolchain and minutes to every
 * install and CI run. Jazzy records MCAP by default, and `ros2 bag convert` turns a .db3 over
 * the cap into one.
 */
import { createRequire } from 'node:module';

import initSqlJs, { type Database, type SqlJsStatic } from 'sql.js';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import { DEFAULT_BAG_LIMITS, LIMIT_OPTION, type BagLimits } from './limits.js';

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
    private readonly limits: BagLimits,
  ) {}

  static async open(file: string, limits: BagLimits = DEFAULT_BAG_LIMITS): Promise<Db3File> {
    // sql.js works on an in-memory copy: refuse what would not fit rather than run out of memory.
    // Only a regular file is read (a FIFO would block, a device never end).
    let bytes: Uint8Array;
    try {
      bytes = await readRegularFile(file, limits.maxDb3Bytes, { missing: ErrorCodes.BAG_MISSING_FILE, other: ErrorCodes.IO });
    } catch (err) {
      if (err instanceof VlaError && /over the \d+-byte limit/.test(err.message)) {
        throw new VlaError(ErrorCodes.BAG_LIMIT, `${file}: too large to read as .db3 here (limit ${limits.maxDb3Bytes} bytes, ${LIMIT_OPTION.maxDb3Bytes} raises it); convert it to MCAP with \`ros2 bag convert\` or split it`, { file, offset: 0 }, { cause: err });
      }
      throw err;
    }
    if (bytes.byteLength < 100 || new TextDecoder('latin1').decode(bytes.subarray(0, 16)) !== SQLITE_MAGIC) {
      throw new VlaError(ErrorCodes.BAG_MAGIC, `${file}: no SQLite header at byte 0 (not an SQLite database)`, { file, offset: 0 });
    }
    const expected = expectedSize(bytes);
    if (expected !== undefined && bytes.byteLength < expected) {
      // SQLite refuses to open a file shorter than its header's page count. In our copy (never
      // the file), the count is marked stale (version-valid-for differs from the change counter),
      // so SQLite sizes the database by its bytes and reads every row up to the cut.
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      dv.setUint32(92, (dv.getUint32(24) + 1) >>> 0);
    }
    const S = await sqlJs();
    let db: Database | undefined;
    try {
      db = new S.Database(bytes);
      const objects = new Map((db.exec("SELECT name, type FROM sqlite_master")[0]?.values ?? []).map((r) => [String(r[0]), String(r[1])]));
      if (objects.get('topics') !== 'table' || objects.get('messages') !== 'table') throw new VlaError(ErrorCodes.BAG, `${file}: an SQLite database without rosbag2's topics/messages tables (byte 0)`, { file, offset: 0 });
      // rosbag2's tables have plain columns: a generated (computed) one could make any value,
      // of any size, out of a small file.
      for (const table of ['topics', 'messages']) {
        for (const r of db.exec(`PRAGMA table_xinfo(${table})`)[0]?.values ?? []) {
          if (Number(r[6]) !== 0) throw new VlaError(ErrorCodes.BAG, `${file}: column ${table}.${String(r[1])} is generated or hidden; not a rosbag2 database`, { file, offset: 0 });
        }
      }
      const cols = new Set((db.exec('PRAGMA table_info(topics)')[0]?.values ?? []).map((r) => String(r[1])));
      const hashCol = cols.has('type_description_hash') ? 'type_description_hash' : "''";
      const qosCol = cols.has('offered_qos_profiles') ? 'offered_qos_profiles' : "''";
      const text = (v: unknown) => (typeof v === 'string' ? v : '');
      const topics = (db.exec(`SELECT id, name, type, serialization_format, ${qosCol}, ${hashCol} FROM topics ORDER BY id`)[0]?.values ?? []).map((r) => {
        if (typeof r[0] !== 'number' || typeof r[1] !== 'string' || typeof r[2] !== 'string' || !r[1] || !r[2]) {
          throw new VlaError(ErrorCodes.BAG, `${file}: a row of the topics table lacks an integer id, a name or a type`, { file, offset: 0 });
        }
        return { id: r[0], name: r[1], type: r[2], serializationFormat: text(r[3]) || 'cdr', offeredQosProfiles: text(r[4]), typeDescriptionHash: text(r[5]) };
      });
      const definitions = new Map<string, string>();
      if (objects.get('message_definitions') === 'table') {
        for (const r of db.exec('SELECT topic_type, encoding, encoded_message_definition FROM message_definitions')[0]?.values ?? []) {
          if (typeof r[0] === 'string' && r[1] === 'ros2msg' && typeof r[2] === 'string' && r[2].trim()) definitions.set(r[0], r[2]);
        }
      }
      return new Db3File(file, db, topics, definitions, bytes.byteLength, expected, limits);
    } catch (err) {
      db?.close();
      if (err instanceof VlaError) throw err;
      throw sqliteFault(file, bytes.byteLength, expected, err, undefined);
    }
  }

  /**
   * Counts and time range per topic, from one pass over the rows (their blobs unread). A damaged
   * or cut-off file gives what precedes the damage, and the fault (messages() reports it too).
   */
  stats(): { counts: Map<string, number>; startNs: bigint; endNs: bigint; messages: number; fault?: VlaError } {
    const byId = new Map(this.topics.map((t) => [t.id, t.name]));
    const counts = new Map<string, number>();
    let startNs = -1n, endNs = 0n, messages = 0;
    let fault: VlaError | undefined;
    try {
      for (const r of this.rows(false)) {
        const name = byId.get(r.topicId) ?? `#${r.topicId}`;
        counts.set(name, (counts.get(name) ?? 0) + 1);
        if (startNs < 0n || r.timestampNs < startNs) startNs = r.timestampNs;
        if (r.timestampNs > endNs) endNs = r.timestampNs;
        messages++;
      }
    } catch (err) {
      if (!(err instanceof VlaError) || err.code === ErrorCodes.BAG_LIMIT) throw err;
      fault = err;
    }
    return { counts, startNs: startNs < 0n ? 0n : startNs, endNs, messages, ...(fault ? { fault } : {}) };
  }

  /**
   * Rows in storage (rowid) order, stepping a prepared statement: nothing is sorted or
   * materialised first, so a fault half-way ends the stream after the rows before it. Blob
   * lengths come from the row header (length() does not load the blob).
   */
  private *rows(checkSize = true): Generator<{ row: number; topicId: number; timestampNs: bigint; bytes: number }> {
    let stmt;
    try {
      stmt = this.db.prepare('SELECT rowid, topic_id, CAST(timestamp AS TEXT), typeof(timestamp), length(data), typeof(data) FROM messages ORDER BY rowid');
    } catch (err) {
      throw sqliteFault(this.file, this.size, this.expected, err, undefined);
    }
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
        if (typeof r[2] !== 'string' || !/^-?\d{1,19}$/.test(r[2]) || (r[3] !== 'integer' && r[3] !== 'text')) {
          throw new VlaError(ErrorCodes.BAG, `${this.file}: message row ${row}: timestamp is ${String(r[3])} ${JSON.stringify(String(r[2]).slice(0, 40))}, not an integer`, { file: this.file, offset: 0, row });
        }
        if (typeof r[1] !== 'number') throw new VlaError(ErrorCodes.BAG, `${this.file}: message row ${row}: topic_id is not an integer`, { file: this.file, offset: 0, row });
        if (r[5] !== 'blob' && r[5] !== 'null') throw new VlaError(ErrorCodes.BAG, `${this.file}: message row ${row}: data is ${String(r[5])}, not a blob`, { file: this.file, offset: 0, row });
        const bytes = typeof r[4] === 'number' ? r[4] : 0;
        if (checkSize && bytes > this.limits.maxMessageBytes) {
          throw new VlaError(ErrorCodes.BAG_LIMIT, `${this.file}: message row ${row} holds ${bytes} bytes, over the limit of ${this.limits.maxMessageBytes} (${LIMIT_OPTION.maxMessageBytes} raises it)`, { file: this.file, offset: 0, row });
        }
        yield { row, topicId: r[1], timestampNs: BigInt(String(r[2])), bytes };
      }
      // SQLite read every row it could reach, but pages are missing: say so rather than pass a cut-off copy as whole.
      if (this.expected !== undefined && this.size < this.expected) {
        throw new VlaError(ErrorCodes.BAG_TRUNCATED, `${this.file}: ends at byte ${this.size} but its header says ${this.expected} bytes: truncated (every readable row was read, last row id ${row})`, { file: this.file, offset: this.size, row });
      }
    } finally {
      stmt.free();
    }
  }

  /** Messages in storage order (as rosbag2 wrote them: arrival order), each blob fetched on its own. */
  *messages(topics?: ReadonlySet<string>): Generator<DbMessage> {
    const byId = new Map(this.topics.map((t) => [t.id, t]));
    const blob = this.db.prepare('SELECT data FROM messages WHERE rowid = ?');
    try {
      for (const r of this.rows()) {
        const t = byId.get(r.topicId);
        if (!t) throw new VlaError(ErrorCodes.BAG, `${this.file}: message ${r.row} refers to unknown topic id ${r.topicId}`, { file: this.file, offset: 0, row: r.row });
        if (topics && !topics.has(t.name)) continue;
        let data: Uint8Array;
        try {
          blob.bind([r.row]);
          data = blob.step() ? ((blob.get()[0] as Uint8Array | null) ?? new Uint8Array(0)) : new Uint8Array(0);
          blob.reset();
        } catch (err) {
          throw sqliteFault(this.file, this.size, this.expected, err, r.row);
        }
        yield { topic: t.name, type: t.type, timestampNs: r.timestampNs, data, row: r.row };
      }
    } finally {
      blob.free();
    }
  }

  close(): void {
    this.db.close();
  }
}
