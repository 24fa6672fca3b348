/**
 * Hostile and careless bags (issue 16, classes 3-5, 7, 10): every input here is real bad bytes on
 * disk, made by the test. Each gives a coded error, or a correct result, quickly: nothing hangs,
 * nothing is read outside the bag, no small file makes the reader allocate gigabytes.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import initSqlJs from 'sql.js';

import { bagLimits } from '../../src/bag/limits.js';
import { openBag, type BagMessage } from '../../src/bag/reader.js';
import { collect } from './bag-collect.js';
import { BagWriter } from '../../src/bag/writer.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { QOS_LATCHED } from '../../src/msgs/port.js';
import { readDrives } from '../../src/replay/evaluate.js';
import { modelArithFromDir } from '../../src/sim/latency.js';
import { loadScenarioFile } from '../../src/sim/scenario-file.js';
import { mergeShards } from '../../src/sim/sweep.js';
import { ErrorCodes, isVlaError, type ErrorCode } from '../../src/util/errors.js';
import { readRegularFile } from '../../src/util/fsafe.js';

const codec = new MessageCodec();
const STR = 'std_msgs/msg/String';

const coded = (code: ErrorCode, re?: RegExp) => (e: unknown) => {
  assert.ok(isVlaError(e, code), `expected ${code}, got ${String((e as { code?: string }).code)}: ${(e as Error).message}`);
  if (re) assert.match((e as Error).message, re);
  return true;
};

/** A small bag: /s (std_msgs/String) with n messages of `size` bytes each, 10 ms apart. */
async function writeBag(dir: string, n: number, o: { compression?: 'none' | 'zstd' | 'lz4'; size?: number; chunkSizeBytes?: number } = {}): Promise<void> {
  const w = await BagWriter.create(dir, { compression: o.compression ?? 'none', ...(o.chunkSizeBytes ? { chunkSizeBytes: o.chunkSizeBytes } : {}) });
  await w.addTopic('/s', STR, codec.definitionText(STR), QOS_LATCHED);
  for (let i = 0; i < n; i++) await w.write('/s', 1_700_000_000_000_000_000n + BigInt(i) * 10_000_000n, codec.encode(STR, { data: `${i}`.padEnd(o.size ?? 16, '.') }));
  await w.close();
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

/** Offsets of the records with this opcode in an MCAP file. */
function records(bytes: Buffer, op: number): number[] {
  const out: number[] = [];
  for (let pos = 8; pos + 9 <= bytes.length - 8; pos += 9 + Number(bytes.readBigUInt64LE(pos + 1))) if (bytes[pos] === op) out.push(pos);
  return out;
}

describe('hostile bags (issue 16)', function () {
  this.timeout(30_000);
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hostile-bags-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  describe('only regular files (class 3: FIFO, class 4: devices, class 10: EISDIR)', () => {
    it('a FIFO, a directory or a device in place of a split file or metadata.yaml: a coded error naming it, at once', async () => {
      const dir = path.join(tmp, 'fifo');
      await writeBag(dir, 3);
      const split = path.join(dir, 'fifo_0.mcap');
      rmSync(split);
      assert.equal(spawnSync('mkfifo', [split]).status, 0, 'mkfifo');
      const t0 = performance.now();
      coded(ErrorCodes.IO, /fifo_0\.mcap: is a FIFO/)((await collect(dir)).err);
      assert.ok(performance.now() - t0 < 2000);
      // and as the only file of a bag without metadata.yaml, and given directly
      rmSync(path.join(dir, 'metadata.yaml'));
      await assert.rejects(openBag(dir), coded(ErrorCodes.IO, /FIFO/));
      await assert.rejects(openBag(split), coded(ErrorCodes.IO, /FIFO/));
      // metadata.yaml itself a FIFO
      const d2 = path.join(tmp, 'fifo-meta');
      await writeBag(d2, 3);
      rmSync(path.join(d2, 'metadata.yaml'));
      assert.equal(spawnSync('mkfifo', [path.join(d2, 'metadata.yaml')]).status, 0);
      await assert.rejects(openBag(d2), coded(ErrorCodes.IO, /metadata\.yaml: is a FIFO/));
      // a directory where the split file should be: named, not a bare EISDIR
      const d3 = path.join(tmp, 'dir-split');
      await writeBag(d3, 3);
      rmSync(path.join(d3, 'dir-split_0.mcap'));
      mkdirSync(path.join(d3, 'dir-split_0.mcap'));
      coded(ErrorCodes.IO, /dir-split_0\.mcap: is a directory/)((await collect(d3)).err);
      // a character device (the reader never opens it)
      await assert.rejects(readRegularFile('/dev/zero', 1 << 20), coded(ErrorCodes.IO, /\/dev\/zero: is a character device/));
    });

    it('the other files the command line reads (scenario, model config for latency, drives.json, shard reports): a FIFO is coded at once', async () => {
      const dir = path.join(tmp, 'fifo-others');
      mkdirSync(dir, { recursive: true });
      const fifo = (name: string) => {
        const p = path.join(dir, name);
        assert.equal(spawnSync('mkfifo', [p]).status, 0, 'mkfifo');
        return p;
      };
      const t0 = performance.now();
      assert.throws(() => loadScenarioFile(fifo('scenario.json')), coded(ErrorCodes.IO, /scenario\.json: is a FIFO/));
      fifo('config.json');
      assert.throws(() => modelArithFromDir(dir), coded(ErrorCodes.CONFIG, /config\.json: is a FIFO/));
      fifo('drives.json');
      await assert.rejects(readDrives(dir), coded(ErrorCodes.IO, /drives\.json: is a FIFO/));
      await assert.rejects(mergeShards([fifo('shard.json')]), coded(ErrorCodes.SHARD, /shard\.json: is a FIFO/));
      assert.ok(performance.now() - t0 < 2000);
    });
  });

  describe('reads stay inside the bag (class 5)', () => {
    it('relative_file_paths with ../, an absolute path, or a link leading out: refused before anything is opened', async () => {
      const canary = path.join(tmp, 'canary.mcap');
      await writeBag(path.join(tmp, 'canary-src'), 2);
      cpSync(path.join(tmp, 'canary-src', 'canary-src_0.mcap'), canary);
      const dir = path.join(tmp, 'escape');
      await writeBag(dir, 2);
      const meta = readFileSync(path.join(dir, 'metadata.yaml'), 'utf8');
      for (const name of ['../canary.mcap', canary, 'sub/../../canary.mcap', '..', '.']) {
        writeFileSync(path.join(dir, 'metadata.yaml'), meta.replace(/- escape_0\.mcap/, `- ${JSON.stringify(name)}`));
        await assert.rejects(openBag(dir), coded(ErrorCodes.BAG, /outside the bag directory|absolute path/), name);
      }
      // a symbolic link inside the bag that leads out of it
      symlinkSync(canary, path.join(dir, 'link.mcap'));
      writeFileSync(path.join(dir, 'metadata.yaml'), meta.replace(/- escape_0\.mcap/, '- link.mcap'));
      await assert.rejects(openBag(dir), coded(ErrorCodes.BAG, /leads to .*canary\.mcap.*outside the bag directory/));
      // the same link in a bag without metadata.yaml
      rmSync(path.join(dir, 'metadata.yaml'));
      rmSync(path.join(dir, 'escape_0.mcap'));
      await assert.rejects(openBag(dir), coded(ErrorCodes.BAG, /outside the bag directory/));
      // metadata.yaml itself a link out of the bag
      const d2 = path.join(tmp, 'meta-link');
      await writeBag(d2, 2);
      cpSync(path.join(d2, 'metadata.yaml'), path.join(tmp, 'outside.yaml'));
      rmSync(path.join(d2, 'metadata.yaml'));
      symlinkSync(path.join(tmp, 'outside.yaml'), path.join(d2, 'metadata.yaml'));
      await assert.rejects(openBag(d2), coded(ErrorCodes.BAG, /outside the bag directory/));
      // a link inside the bag to a file inside it is fine
      const d3 = path.join(tmp, 'inner-link');
      await writeBag(d3, 2);
      symlinkSync('inner-link_0.mcap', path.join(d3, 'alias.mcap'));
      writeFileSync(path.join(d3, 'metadata.yaml'), readFileSync(path.join(d3, 'metadata.yaml'), 'utf8').replace(/- inner-link_0\.mcap/, '- alias.mcap'));
      assert.equal((await collect(d3)).got.length, 2);
    });
  });

  describe('bounded memory from small files (class 4)', () => {
    for (const compression of ['zstd', 'lz4'] as const) {
      it(`a ${compression} chunk declaring 1 GiB decompressed: VLA_E_BAG_LIMIT before any allocation, earlier chunks read`, async () => {
        const dir = path.join(tmp, `bomb-${compression}`);
        await writeBag(dir, 60, { compression, chunkSizeBytes: 512, size: 100 });
        const f = path.join(dir, `bomb-${compression}_0.mcap`);
        const bytes = readFileSync(f);
        const chunks = records(bytes, 0x06);
        assert.ok(chunks.length >= 3);
        const at = chunks[2] as number;
        bytes.writeBigUInt64LE(1n << 30n, at + 9 + 16); // uncompressed_size
        writeFileSync(f, bytes);
        const before = process.memoryUsage().arrayBuffers;
        const { got, err } = await collect(dir);
        coded(ErrorCodes.BAG_LIMIT, new RegExp(`chunk declaring 1073741824 decompressed bytes at byte ${at}.*--max-chunk-mib`))(err);
        assert.ok(got.length > 0 && got.every((m) => m.offset < at));
        assert.ok(process.memoryUsage().arrayBuffers - before < 256 << 20);
      });
    }

    it('a record claiming more than the limit, a message over the limit, and the limit as an option', async () => {
      const dir = path.join(tmp, 'big-msg');
      await writeBag(dir, 5, { size: 4096 });
      // fine with the default limits, refused below the message size
      assert.equal((await collect(dir)).got.length, 5);
      const small = bagLimits({ maxMessageMiB: 1 / 1024, maxChunkMiB: 1 });
      coded(ErrorCodes.BAG_LIMIT, /--max-message-mib/)((await collect(dir, small)).err);
      coded(ErrorCodes.BAG_LIMIT, /--max-chunk-mib/)((await collect(dir, bagLimits({ maxChunkMiB: 1 / 1024 }))).err);
    });

    it('a forged summary offset does not make the reader load the file; a bag without metadata still opens', async () => {
      const dir = path.join(tmp, 'summary');
      await writeBag(dir, 20);
      rmSync(path.join(dir, 'metadata.yaml'));
      const f = path.join(dir, 'summary_0.mcap');
      const bytes = readFileSync(f);
      const footer = bytes.length - 8 - 29;
      assert.equal(bytes[footer], 0x02);
      bytes.writeBigUInt64LE(1n, footer + 9); // summary_start: the whole file
      writeFileSync(f, bytes);
      // the limit is above the chunk (1.9 KB), below the forged summary (the whole file)
      assert.ok(bytes.length > 2500);
      const r = await openBag(dir, { limits: bagLimits({ maxChunkMiB: 2048 / 2 ** 20 }) });
      assert.equal(r.info.messageCount, 20);
    });

    it('a header record claiming 4 GiB to 2^64 bytes: a coded error, never a read of that size (fs.read aborted the process past 2 GiB; found by the fuzz harness)', async () => {
      const src = path.join(tmp, 'hdr-src');
      await writeBag(src, 5);
      for (const len of [1n << 31n, 1n << 32n, 1n << 40n, (1n << 53n) - 1n, 1n << 63n, (1n << 64n) - 1n]) {
        const dir = path.join(tmp, `hdr-${len}`);
        cpSync(src, dir, { recursive: true });
        for (const f of readdirSync(dir)) if (f.endsWith('.yaml')) rmSync(path.join(dir, f)); // the reader then reads the summary
        const f = path.join(dir, readdirSync(dir).find((n) => n.endsWith('.mcap')) as string);
        const bytes = readFileSync(f);
        assert.equal(bytes[8], 0x01); // the header record, after the magic
        bytes.writeBigUInt64LE(len, 9);
        writeFileSync(f, bytes);
        const outcome = await (async () => {
          const r = await openBag(dir);
          await r.definitions();
          for await (const m of r.messages()) void m;
          return 'read';
        })().catch((e: unknown) => e);
        assert.ok(outcome === 'read' || (isVlaError(outcome) && outcome.code !== ErrorCodes.INTERNAL), `${len}: ${String(outcome)}`);
      }
    });

    it('.db3: a generated blob column, a blob over the limit, text timestamps: coded errors naming the row', async () => {
      const SQL = await initSqlJs();
      const make = (name: string, dataCol: string, rows: Array<[number, string | number, Uint8Array | null]>, tsType = 'INTEGER') => {
        const db = new SQL.Database();
        db.run('CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL)');
        db.run(`CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp ${tsType} NOT NULL, ${dataCol})`);
        db.run("INSERT INTO topics VALUES (1, '/s', 'std_msgs/msg/String', 'cdr', '')");
        for (const r of rows) db.run(dataCol.includes('GENERATED') ? 'INSERT INTO messages(topic_id, timestamp) VALUES (?, ?)' : 'INSERT INTO messages(topic_id, timestamp, data) VALUES (?, ?, ?)', dataCol.includes('GENERATED') ? [r[0], r[1]] : r);
        const f = path.join(tmp, `${name}.db3`);
        writeFileSync(f, db.export());
        db.close();
        return f;
      };
      const msg = codec.encode(STR, { data: 'hello' });
      // A column computed on read: 1 GB from a 12 KB file (zeroblob), refused by the schema check.
      const gen = make('generated', 'data BLOB GENERATED ALWAYS AS (zeroblob(1000000000)) VIRTUAL', [[1, 1, null]]);
      await assert.rejects(openBag(gen), coded(ErrorCodes.BAG, /generated/));
      const big = make('bigblob', 'data BLOB NOT NULL', [[1, 1, msg], [1, 2, new Uint8Array(64 << 10)]]);
      const r = await collect(big, bagLimits({ maxMessageMiB: 1 / 32 }));
      assert.equal(r.got.length, 1);
      coded(ErrorCodes.BAG_LIMIT, /row 2 holds 65536 bytes.*--max-message-mib/)(r.err);
      const text = make('textts', 'data BLOB NOT NULL', [[1, 1, msg], [1, 'yesterday', msg]], 'TEXT');
      const t = await collect(text);
      assert.equal(t.got.length, 1, String(t.err));
      coded(ErrorCodes.BAG, /row 2: timestamp is text "yesterday", not an integer/)(t.err);
    });

    it('.db3 cut anywhere: the rows before the cut are read (storage order, no sort first), then a coded error', async () => {
      const SQL = await initSqlJs();
      const db = new SQL.Database();
      db.run('CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL)');
      db.run('CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, data BLOB NOT NULL)');
      db.run('CREATE INDEX timestamp_idx ON messages (timestamp ASC)');
      db.run("INSERT INTO topics VALUES (1, '/s', 'std_msgs/msg/String', 'cdr', '')");
      const n = 400;
      // timestamps out of storage order in places, as a recorder of several topics writes them
      for (let i = 0; i < n; i++) db.run('INSERT INTO messages(topic_id, timestamp, data) VALUES (1, ?, ?)', [1_000_000 + i * 10 - (i % 7 === 3 ? 15 : 0), codec.encode(STR, { data: `${i}`.padEnd(300, '.') })]);
      const full = Buffer.from(db.export());
      db.close();
      const dir = path.join(tmp, 'cut-db3');
      mkdirSync(dir);
      const f = path.join(dir, 'cut_0.db3');
      for (const frac of [0.3, 0.6, 0.9, 0.99]) {
        writeFileSync(f, full.subarray(0, Math.floor(full.length * frac)));
        const { got, err } = await collect(f);
        assert.ok(isVlaError(err) && (err.code === ErrorCodes.BAG_TRUNCATED || err.code === ErrorCodes.BAG), `${frac}: ${String(err)}`);
        // what came before the fault: a prefix of the rows, in storage order
        assert.ok(got.length >= Math.floor(n * frac * 0.8), `${frac}: ${got.length} of ${n}`);
        got.forEach((m, i) => assert.equal(codec.decode<{ data: string }>(STR, m.data).data.replace(/\.+$/, ''), `${i}`));
      }
    });
  });

  describe('malformed metadata.yaml (class 7, class 10)', () => {
    it('cut short at every line: a coded error or the whole bag, never an empty success', async () => {
      const dir = path.join(tmp, 'cut-meta');
      await writeBag(dir, 7);
      const full = readFileSync(path.join(dir, 'metadata.yaml'), 'utf8');
      const lines = full.split('\n');
      for (let i = 0; i < lines.length; i++) {
        writeFileSync(path.join(dir, 'metadata.yaml'), lines.slice(0, i).join('\n'));
        const r = await openBag(dir).then(async (b) => { await b.close(); return collect(b.info.path); }, (err: unknown) => ({ got: [] as BagMessage[], err }));
        if (r.err !== undefined) assert.ok(isVlaError(r.err) && r.err.code !== ErrorCodes.INTERNAL, `line ${i}: ${String(r.err)}`);
        else assert.equal(r.got.length, 7, `cut at line ${i} read ${r.got.length} messages without an error`);
      }
    });

    it('nulls, lists and numbers where mappings and strings belong: VLA_E_BAG naming the key, never a TypeError', async () => {
      const dir = path.join(tmp, 'odd-meta');
      await writeBag(dir, 2);
      const m = readFileSync(path.join(dir, 'metadata.yaml'), 'utf8');
      const cases: Array<[string, RegExp]> = [
        [m.replace(/  topics_with_message_count:\n/, '  topics_with_message_count:\n    - null\n'), /topics_with_message_count\[0\] is not a mapping/],
        [m.replace(/relative_file_paths:\n    - odd-meta_0\.mcap/, 'relative_file_paths:\n    - null'), /relative_file_paths\[0\] is missing/],
        [m.replace(/relative_file_paths:\n    - odd-meta_0\.mcap/, 'relative_file_paths: 7'), /relative_file_paths is not a list/],
        [m.replace(/message_count: 2\n/, 'message_count: -3\n'), /message_count is not a non-negative integer/],
        [m.replace(/nanoseconds_since_epoch: \d+/, 'nanoseconds_since_epoch: 1.5e400'), /starting_time\.nanoseconds_since_epoch is not an integer/],
        [m.replace(/  files:\n/, '  files:\n    - 12\n'), /files\[0\] is not a mapping/],
      ];
      for (const [text, re] of cases) {
        writeFileSync(path.join(dir, 'metadata.yaml'), text);
        await assert.rejects(openBag(dir), coded(ErrorCodes.BAG, re), re.source);
      }
    });

    it('the input is never modified by reading it', async () => {
      const dir = path.join(tmp, 'ro');
      await writeBag(dir, 5, { compression: 'zstd' });
      const before = readdirSync(dir).map((f) => sha(path.join(dir, f)));
      await collect(dir);
      assert.deepEqual(readdirSync(dir).map((f) => sha(path.join(dir, f))), before);
    });
  });
});
