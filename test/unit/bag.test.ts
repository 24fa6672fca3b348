import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync, cpSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { McapIndexedReader } from '@mcap/core';
import { loadDecompressHandlers } from '@mcap/support';
import { FileHandleReadable } from '@mcap/nodejs';
import { parse as parseYaml, parseDocument } from 'yaml';

import { MessageCodec } from '../../src/msgs/codec.js';
import { QOS_LATCHED, QOS_SENSOR_DATA, QOS_DEFAULT } from '../../src/msgs/port.js';
import { bagInfoJson, formatBagInfo, openBag, type BagMessage } from '../../src/bag/reader.js';
import { collect } from './bag-collect.js';
import { BagWriter } from '../../src/bag/writer.js';
import { metadataYaml, metadataYamlLibrary, parseMetadata, qosProfilesYaml, yamlSubset, type BagMetadata } from '../../src/bag/metadata.js';
import { ReadAhead } from '../../src/bag/read-ahead.js';
import { ErrorCodes, isVlaError, type ErrorCode } from '../../src/util/errors.js';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'rosbag2');

async function readAll(bag: string, codec = new MessageCodec()): Promise<Array<BagMessage & { msg: Record<string, unknown> }>> {
  const r = await openBag(bag);
  for (const [t, text] of await r.definitions()) {
    try {
      codec.addDefinition(t, text);
    } catch {
      // abridged definitions in test bags: the built-in ones decode them
    }
  }
  const out: Array<BagMessage & { msg: Record<string, unknown> }> = [];
  for await (const m of r.messages()) out.push({ ...m, msg: codec.decode(m.type, m.data) });
  await r.close();
  return out;
}

const coded = (code: ErrorCode, re?: RegExp) => (e: unknown) => isVlaError(e, code) && (!re || re.test((e as Error).message));

describe('rosbag2: the real recordings (test/fixtures/rosbag2, written by ROS 2)', () => {
  for (const name of ['talker-mcap', 'talker-sqlite3', 'cdr_test-mcap', 'cdr_test-sqlite3']) {
    it(`${name}: info matches metadata.yaml`, async () => {
      const meta = parseYaml(readFileSync(path.join(FIX, name, 'metadata.yaml'), 'utf8'), { intAsBigInt: true }).rosbag2_bagfile_information;
      const r = await openBag(path.join(FIX, name));
      assert.equal(r.info.storage, meta.storage_identifier);
      assert.equal(r.info.startNs, meta.starting_time.nanoseconds_since_epoch);
      assert.equal(r.info.durationNs, meta.duration.nanoseconds);
      assert.equal(r.info.messageCount, Number(meta.message_count));
      assert.deepEqual(
        r.info.topics.map((t) => [t.name, t.type, t.messageCount]),
        meta.topics_with_message_count.map((t: { topic_metadata: { name: string; type: string }; message_count: bigint }) => [t.topic_metadata.name, t.topic_metadata.type, Number(t.message_count)]),
      );
      // Counted messages agree with the metadata.
      const { got, err } = await collect(path.join(FIX, name));
      assert.equal(err, undefined);
      for (const t of r.info.topics) assert.equal(got.filter((m) => m.topic === t.name).length, t.messageCount, t.name);
      assert.match(formatBagInfo(r.info), /Topic information: Topic: /);
      assert.equal(typeof bagInfoJson(r.info).startNs, 'string');
    });
  }

  it('talker: std_msgs/String and rcl_interfaces/Log decode field by field, the same from MCAP and .db3', async () => {
    for (const name of ['talker-mcap', 'talker-sqlite3']) {
      const all = await readAll(path.join(FIX, name));
      const strings = all.filter((m) => m.topic === '/topic').map((m) => m.msg.data);
      assert.deepEqual(strings, Array.from({ length: 10 }, (_, i) => `Hello, world! ${i}`), name);
      const logs = all.filter((m) => m.topic === '/rosout').map((m) => m.msg as { level: number; name: string; msg: string; function: string; line: number; stamp: { sec: number } });
      assert.equal(logs.length, 10);
      assert.equal(logs[0]?.level, 20);
      assert.equal(logs[0]?.name, 'minimal_publisher');
      assert.equal(logs[3]?.msg, "Publishing: 'Hello, world! 3'");
      assert.equal(logs[0]?.stamp.sec, 1585866235);
      assert.ok((logs[0]?.line ?? 0) > 0 && typeof logs[0]?.function === 'string');
    }
    const a = await readAll(path.join(FIX, 'talker-mcap'));
    const b = await readAll(path.join(FIX, 'talker-sqlite3'));
    assert.deepEqual(a.map((m) => [m.topic, m.logTimeNs, m.msg]), b.map((m) => [m.topic, m.logTimeNs, m.msg]));
  });

  it('cdr_test: test_msgs/BasicTypes and Arrays decode field by field, the same from MCAP and .db3', async () => {
    const a = await readAll(path.join(FIX, 'cdr_test-mcap'));
    const b = await readAll(path.join(FIX, 'cdr_test-sqlite3'));
    const basic = a.filter((m) => m.topic === '/test_topic').map((m) => m.msg as Record<string, unknown>);
    assert.equal(basic.length, 3);
    for (const m of basic) {
      assert.equal(m.int32_value, 123);
      assert.equal(m.bool_value, false);
      assert.equal(m.float64_value, 0);
      assert.equal(m.uint8_value, 0);
      assert.equal(m.int64_value, 0n);
    }
    const arrays = a.filter((m) => m.topic === '/array_topic').map((m) => m.msg as { bool_values: boolean[]; string_values: string[]; float32_values: Float32Array });
    assert.equal(arrays.length, 4);
    assert.deepEqual(arrays[0]?.bool_values, [true, false, true]);
    assert.equal(arrays[0]?.float32_values.length, 3);
    for (const m of arrays) assert.deepEqual(m.string_values, ['Complex Hello1', 'Complex Hello2', 'Complex Hello3']);
    assert.equal((arrays[0] as unknown as { basic_types_values: unknown[] }).basic_types_values.length, 3);
    assert.deepEqual(a.map((m) => [m.topic, m.logTimeNs, m.msg]), b.map((m) => [m.topic, m.logTimeNs, m.msg]));
    // Timestamps are exact 64-bit nanoseconds (beyond 2^53).
    assert.equal(a[0]?.logTimeNs, 1586406456763032325n);
  });

  it('single files open without metadata.yaml (.mcap scanned, .db3 by SQL)', async () => {
    const m = await openBag(path.join(FIX, 'talker-mcap', 'talker.mcap'));
    assert.equal(m.info.fromMetadata, false);
    assert.equal(m.info.messageCount, 20);
    assert.equal(m.info.topics.find((t) => t.name === '/topic')?.type, 'std_msgs/msg/String');
    const d = await openBag(path.join(FIX, 'cdr_test-sqlite3', 'cdr_test_0.db3'));
    assert.equal(d.info.storage, 'sqlite3');
    assert.equal(d.info.messageCount, 7);
    assert.equal(d.info.startNs, 1586406456763032325n);
  });
});

describe('rosbag2: writing MCAP bags and reading them back', () => {
  let tmp: string;
  const codec = new MessageCodec();
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'bag-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const IMG = 'sensor_msgs/msg/Image';
  const image = (i: number) =>
    codec.encode(IMG, { header: { stamp: { sec: 100, nanosec: i }, frame_id: 'cam' }, height: 4, width: 8, encoding: 'rgb8', is_bigendian: 0, step: 24, data: new Uint8Array(96).map((_, j) => (i * 7 + j) & 255) });

  async function writeBag(dir: string, compression: 'none' | 'zstd' | 'lz4', n = 50, opts: { maxFileBytes?: number; chunkSizeBytes?: number } = {}): Promise<Uint8Array[]> {
    const w = await BagWriter.create(dir, { compression, ...opts });
    await w.addTopic('/cam', IMG, codec.definitionText(IMG), QOS_SENSOR_DATA);
    await w.addTopic('/instruction', 'std_msgs/msg/String', codec.definitionText('std_msgs/msg/String'), QOS_LATCHED);
    await w.addTopic('/odom', 'nav_msgs/msg/Odometry', codec.definitionText('nav_msgs/msg/Odometry'), QOS_DEFAULT);
    const sent: Uint8Array[] = [];
    await w.write('/instruction', 1_000_000_000n, codec.encode('std_msgs/msg/String', { data: 'turn left' }));
    for (let i = 0; i < n; i++) {
      const d = image(i);
      sent.push(d);
      await w.write('/cam', 1_000_000_000n + BigInt(i) * 100_000_000n, d, 1_000_000_000n + BigInt(i) * 100_000_000n - 5n);
    }
    await w.close();
    await w.close(); // idempotent
    return sent;
  }

  for (const compression of ['none', 'zstd', 'lz4'] as const) {
    it(`round trip (${compression} chunks): metadata.yaml, schemas, channels, rosbag2 record, bytes and times`, async () => {
      const dir = path.join(tmp, `rt-${compression}`);
      const sent = await writeBag(dir, compression, 50, { chunkSizeBytes: 2048 });
      const meta = parseYaml(readFileSync(path.join(dir, 'metadata.yaml'), 'utf8'), { intAsBigInt: true }).rosbag2_bagfile_information;
      assert.equal(meta.version, 9n);
      assert.equal(meta.storage_identifier, 'mcap');
      assert.equal(meta.message_count, 51n);
      assert.deepEqual(meta.relative_file_paths, [`rt-${compression}_0.mcap`]);
      assert.equal(meta.starting_time.nanoseconds_since_epoch, 1_000_000_000n);
      assert.equal(meta.duration.nanoseconds, 4_900_000_000n);
      const cam = meta.topics_with_message_count.find((t: { topic_metadata: { name: string } }) => t.topic_metadata.name === '/cam');
      assert.equal(cam.message_count, 50n);
      assert.match(cam.topic_metadata.offered_qos_profiles, /reliability: best_effort\n  durability: volatile/);
      const latched = meta.topics_with_message_count.find((t: { topic_metadata: { name: string } }) => t.topic_metadata.name === '/instruction');
      assert.match(latched.topic_metadata.offered_qos_profiles, /reliability: reliable\n  durability: transient_local/);
      assert.equal(meta.ros_distro, 'jazzy');
      assert.equal(meta.files.length, 1);
      assert.equal(meta.files[0].message_count, 51n);
      assert.equal(meta.topics_with_message_count.find((t: { topic_metadata: { name: string } }) => t.topic_metadata.name === '/odom').topic_metadata.type, 'nav_msgs/msg/Odometry');

      // The indexed reader (needs a valid summary) sees the rosbag2 conventions.
      const fh = await open(path.join(dir, `rt-${compression}_0.mcap`), 'r');
      const reader = await McapIndexedReader.Initialize({ readable: new FileHandleReadable(fh), decompressHandlers: await loadDecompressHandlers() });
      assert.equal(reader.header.profile, 'ros2');
      const schemas = [...reader.schemasById.values()];
      assert.deepEqual(schemas.map((s) => s.encoding), ['ros2msg', 'ros2msg', 'ros2msg']);
      assert.match(new TextDecoder().decode(schemas.find((s) => s.name === IMG)?.data), /MSG: std_msgs\/Header/);
      const ch = [...reader.channelsById.values()].find((c) => c.topic === '/cam');
      assert.equal(ch?.messageEncoding, 'cdr');
      assert.equal(ch?.metadata.get('offered_qos_profiles'), qosProfilesYaml(QOS_SENSOR_DATA));
      assert.equal(ch?.metadata.get('topic_type_hash'), '');
      assert.equal(new TextDecoder().decode(schemas.find((s) => s.name === 'std_msgs/msg/String')?.data), codec.definitionText('std_msgs/msg/String'));
      assert.ok(reader.chunkIndexes.length > 3, 'several chunks');
      if (compression !== 'none') assert.ok(reader.chunkIndexes.every((c) => c.compression === compression));
      assert.equal(reader.statistics?.messageCount, 51n);
      const metas = [];
      for await (const m of reader.readMetadata({ name: 'rosbag2' })) metas.push(m);
      assert.equal(metas[0]?.metadata.get('serialized_metadata'), readFileSync(path.join(dir, 'metadata.yaml'), 'utf8'));
      await fh.close();

      // Our reader: bytes identical, times exact.
      const got = (await collect(dir)).got.filter((m) => m.topic === '/cam');
      assert.equal(got.length, 50);
      got.forEach((m, i) => {
        assert.ok(Buffer.from(m.data).equals(Buffer.from(sent[i] as Uint8Array)));
        assert.equal(m.logTimeNs, 1_000_000_000n + BigInt(i) * 100_000_000n);
        assert.equal(m.publishTimeNs, m.logTimeNs - 5n);
        assert.equal(m.type, IMG);
      });
    });
  }

  it('QoS profiles are the YAML rosbag2 (Jazzy, metadata version 9) writes: policies by name', () => {
    const inf = { sec: 9223372036, nsec: 854775807 };
    assert.deepEqual(parseYaml(qosProfilesYaml(QOS_SENSOR_DATA)), [
      { history: 'keep_last', depth: 5, reliability: 'best_effort', durability: 'volatile', deadline: inf, lifespan: inf, liveliness: 'automatic', liveliness_lease_duration: inf, avoid_ros_namespace_conventions: false },
    ]);
    const latched = parseYaml(qosProfilesYaml(QOS_LATCHED))[0];
    assert.equal(latched.reliability, 'reliable');
    assert.equal(latched.durability, 'transient_local');
    assert.equal(latched.depth, 1);
  });

  it('metadata.yaml written directly is the YAML library\'s text, and read directly is the library\'s parse', async () => {
    const dir = path.join(tmp, 'meta');
    await writeBag(dir, 'none', 5);
    const text = readFileSync(path.join(dir, 'metadata.yaml'), 'utf8');
    const base = parseMetadata(text, 'metadata.yaml');
    const t0 = base.topics[0] as BagMetadata['topics'][number];
    const variants: BagMetadata[] = [
      base,
      { ...base, topics: [], files: [], relativeFilePaths: [] },
      { ...base, rosDistro: null, compressionFormat: 'zstd', compressionMode: 'MESSAGE' },
      { ...base, topics: [{ ...t0, typeDescriptionHash: `RIHS01_${'ab'.repeat(32)}`, offeredQosProfiles: '' }] },
      // Strings the library quotes or folds: metadataYaml hands them to it.
      { ...base, topics: [{ ...t0, name: '/a b' }] },
      { ...base, topics: [{ ...t0, name: 'true' }] },
      { ...base, topics: [{ ...t0, name: '/x: y' }] },
      { ...base, topics: [{ ...t0, offeredQosProfiles: 'a\n b \nc' }] },
      { ...base, topics: [{ ...t0, offeredQosProfiles: 'a\n\nc' }] },
      { ...base, topics: [{ ...t0, offeredQosProfiles: ' a\nb' }] },
      { ...base, relativeFilePaths: ['weird name.mcap'] },
      { ...base, topics: [{ ...t0, type: 'pkg/msg/Ünicode' }] },
    ];
    const library = (t: string) => parseDocument(t, { intAsBigInt: true }).toJS();
    for (const [i, m] of variants.entries()) {
      const direct = metadataYaml(m);
      assert.equal(direct, metadataYamlLibrary(m), `variant ${i}`);
      const sub = yamlSubset(direct);
      if (sub !== undefined) assert.deepEqual(sub, library(direct), `variant ${i}`);
      assert.deepEqual(parseMetadata(direct, 'm.yaml'), parseMetadata(metadataYamlLibrary(m), 'm.yaml'), `variant ${i}`);
    }
    assert.notEqual(yamlSubset(text), undefined, 'our own layout is read directly');
    // What the direct reading does not take goes to the library (or fails there, as before).
    for (const doc of ['a:\n- 1\n- 2\n', 'a:\n  - b: 1\n    c: [x]\n', 'a: 1 # c\n', 'a: "x"\n', 'a: |-\n  x\n\n  z\n', 'a: b\na: c\n', '---\na: 1\n', 'a: 007\nb: 1.5\nc: ~\n', 'a:\n  b: 1\n c: 2\n', 'a: x\n  - y\n']) {
      const sub = yamlSubset(doc);
      if (sub !== undefined) assert.deepEqual(sub, library(doc), doc);
    }
    for (const name of ['talker-mcap', 'cdr_test-mcap']) {
      const real = readFileSync(path.join(FIX, name, 'metadata.yaml'), 'utf8');
      const sub = yamlSubset(real);
      if (sub !== undefined) assert.deepEqual(sub, library(real), name);
    }
  });

  it('read-ahead: poll() takes what is queued without waiting, prepare() sees each message first, in order', async () => {
    const msgs = Array.from({ length: 10 }, (_, i) => ({ topic: '/t', type: 'std_msgs/msg/String', logTimeNs: BigInt(i), publishTimeNs: BigInt(i), data: new Uint8Array(4), file: 'f', offset: i }));
    async function* gen() {
      for (const m of msgs) yield m;
      throw new VlaErrorForTest();
    }
    class VlaErrorForTest extends Error {}
    const prepared: bigint[] = [];
    const ahead = new ReadAhead(gen(), 4, 1 << 20, (m) => prepared.push(m.logTimeNs));
    const got: bigint[] = [];
    const first = await ahead.next();
    got.push((first as BagMessage).logTimeNs);
    let err: unknown;
    for (;;) {
      let m: BagMessage | undefined;
      try {
        m = ahead.poll() ?? (await ahead.next());
      } catch (e) {
        err = e;
        break;
      }
      if (!m) break;
      assert.ok(prepared.includes(m.logTimeNs), 'prepared before it is taken');
      got.push(m.logTimeNs);
    }
    assert.deepEqual(got, msgs.map((m) => m.logTimeNs));
    assert.deepEqual(prepared, got);
    assert.ok(err instanceof VlaErrorForTest, 'the error after every message');
    await ahead.close();
  });

  it('splits files at maxFileBytes and reads them in order', async () => {
    const dir = path.join(tmp, 'split');
    await writeBag(dir, 'none', 60, { maxFileBytes: 4000, chunkSizeBytes: 1024 });
    const files = readdirSync(dir).filter((f) => f.endsWith('.mcap')).sort();
    assert.ok(files.length >= 2, files.join());
    const r = await openBag(dir);
    assert.equal(r.info.files.length, files.length);
    const got = (await collect(dir)).got.filter((m) => m.topic === '/cam');
    assert.deepEqual(got.map((m) => m.logTimeNs), Array.from({ length: 60 }, (_, i) => 1_000_000_000n + BigInt(i) * 100_000_000n));
  });

  describe('bad bags: coded errors after every message before the fault', () => {
    let good: string;
    let file: string;
    let all: BagMessage[];
    before(async () => {
      good = path.join(tmp, 'good');
      await writeBag(good, 'none', 60, { chunkSizeBytes: 2048 });
      file = path.join(good, 'good_0.mcap');
      all = (await collect(good)).got;
    });
    const variant = (name: string, edit: (bytes: Buffer) => Buffer): string => {
      const dir = path.join(tmp, name);
      cpSync(good, dir, { recursive: true });
      const f = path.join(dir, 'good_0.mcap');
      writeFileSync(f, edit(readFileSync(f)));
      return dir;
    };

    it('truncated mid-file, after the header and before the footer: VLA_E_BAG_TRUNCATED with file and offset', async () => {
      const size = readFileSync(file).length;
      for (const cut of [Math.floor(size * 0.5), 40, size - 10]) {
        const dir = variant(`cut-${cut}`, (b) => b.subarray(0, cut));
        const { got, err } = await collect(dir);
        assert.ok(coded(ErrorCodes.BAG_TRUNCATED, /good_0\.mcap/)(err), `${cut}: ${String(err)}`);
        const e = err as { details: { file: string; offset: number } };
        assert.ok(e.details.file.endsWith('good_0.mcap') && e.details.offset >= 8 && e.details.offset <= cut);
        // Exactly the messages of the complete chunks before the cut, in order.
        assert.ok(got.length <= all.length);
        got.forEach((m, i) => assert.ok(Buffer.from(m.data).equals(Buffer.from((all[i] as BagMessage).data))));
        if (cut === size - 10) assert.equal(got.length, all.length, 'only the footer is lost');
        if (cut === Math.floor(size * 0.5)) assert.ok(got.length > 5 && got.length < all.length);
        if (cut === 40) assert.equal(got.length, 0);
      }
    });

    it('wrong magic: VLA_E_BAG_MAGIC at offset 0', async () => {
      const dir = variant('magic', (b) => {
        b.write('GARBAGE!', 0);
        return b;
      });
      const { got, err } = await collect(dir);
      assert.ok(coded(ErrorCodes.BAG_MAGIC)(err), String(err));
      assert.equal(got.length, 0);
    });

    it('a flipped byte inside a chunk: VLA_E_BAG_CRC naming the chunk; earlier chunks read', async () => {
      const bytes = readFileSync(file);
      // The middle chunk's payload: find a chunk record (opcode 0x06) past the middle of the file.
      let at = Math.floor(bytes.length / 2);
      let pos = 8;
      let chunkStart = -1;
      while (pos < bytes.length - 9) {
        const op = bytes[pos] as number;
        const len = Number(bytes.readBigUInt64LE(pos + 1));
        if (op === 0x06 && pos > at) {
          chunkStart = pos;
          break;
        }
        pos += 9 + len;
      }
      assert.ok(chunkStart > 0);
      at = chunkStart + 9 + 60; // inside the records, past the chunk's own header fields
      const dir = variant('crc', (b) => {
        b[at] = (b[at] as number) ^ 0x5a;
        return b;
      });
      const { got, err } = await collect(dir);
      assert.ok(coded(ErrorCodes.BAG_CRC, new RegExp(`chunk at byte ${chunkStart}`))(err), String(err));
      assert.equal((err as { details: { offset: number } }).details.offset, chunkStart);
      assert.ok(got.length > 0 && got.length < all.length);
    });

    it('chunks whose CRC field is 0 (not computed) are read whole; a wrong one is VLA_E_BAG_CRC', async () => {
      const bytes = readFileSync(file);
      const chunks: number[] = [];
      for (let pos = 8; pos < bytes.length - 9; pos += 9 + Number(bytes.readBigUInt64LE(pos + 1))) if (bytes[pos] === 0x06) chunks.push(pos);
      assert.ok(chunks.length > 1);
      const zero = variant('crc-zero', (b) => {
        for (const c of chunks) b.writeUInt32LE(0, c + 9 + 24);
        return b;
      });
      const z = await collect(zero);
      assert.equal(z.err, undefined);
      assert.deepEqual(z.got.map((m) => [m.topic, m.logTimeNs, Buffer.from(m.data).toString('hex')]), all.map((m) => [m.topic, m.logTimeNs, Buffer.from(m.data).toString('hex')]));
      const last = chunks[chunks.length - 1] as number;
      const wrong = variant('crc-wrong', (b) => {
        b.writeUInt32LE((b.readUInt32LE(last + 9 + 24) ^ 1) >>> 0, last + 9 + 24);
        return b;
      });
      const w = await collect(wrong);
      assert.ok(coded(ErrorCodes.BAG_CRC, new RegExp(`chunk at byte ${last}`))(w.err), String(w.err));
      assert.ok(w.got.length > 0 && w.got.length < all.length);
    });

    it('a split listed in metadata.yaml but missing: VLA_E_BAG_MISSING_FILE after split 0', async () => {
      const dir = path.join(tmp, 'split-missing');
      await writeBag(dir, 'none', 60, { maxFileBytes: 4000, chunkSizeBytes: 1024 });
      const files = readdirSync(dir).filter((f) => f.endsWith('.mcap')).sort((a, b) => Number(/_(\d+)/.exec(a)?.[1]) - Number(/_(\d+)/.exec(b)?.[1]));
      const first = (await openBag(dir)).info;
      unlinkSync(path.join(dir, files[1] as string));
      const { got, err } = await collect(dir);
      assert.ok(coded(ErrorCodes.BAG_MISSING_FILE, new RegExp(files[1] as string))(err), String(err));
      assert.ok(got.length > 0);
      assert.ok(got.every((m) => m.file.endsWith(files[0] as string)));
      assert.equal(first.files.length, files.length);
    });

    it('.db3: not SQLite, truncated, not rosbag2; bad metadata.yaml; missing path', async () => {
      const dir = path.join(tmp, 'db');
      cpSync(path.join(FIX, 'talker-sqlite3'), dir, { recursive: true });
      writeFileSync(path.join(dir, 'talker.db3'), 'this is text, not a database');
      assert.ok(coded(ErrorCodes.BAG_MAGIC, /talker\.db3/)((await collect(dir)).err));
      const db = readFileSync(path.join(FIX, 'talker-sqlite3', 'talker.db3'));
      writeFileSync(path.join(dir, 'talker.db3'), db.subarray(0, 9000));
      assert.ok(coded(ErrorCodes.BAG_TRUNCATED, /talker\.db3/)((await collect(dir)).err));
      writeFileSync(path.join(dir, 'metadata.yaml'), 'just: [a, list]\n');
      await assert.rejects(openBag(dir), coded(ErrorCodes.BAG, /rosbag2_bagfile_information/));
      writeFileSync(path.join(dir, 'metadata.yaml'), 'rosbag2_bagfile_information:\n  version: 5\n  storage_identifier: rosbag_v1\n');
      await assert.rejects(openBag(dir), coded(ErrorCodes.BAG, /rosbag_v1/));
      await assert.rejects(openBag(path.join(tmp, 'nothing-here')), coded(ErrorCodes.IO));
      // A .db3 too large for sql.js's in-memory copy is refused, not an out-of-memory crash (sparse file).
      const big = path.join(tmp, 'big.db3');
      const fh = await open(big, 'w');
      await fh.truncate(Math.floor(1.6 * 2 ** 30));
      await fh.close();
      await assert.rejects(openBag(big), coded(ErrorCodes.BAG_LIMIT, /too large.*--max-db3-mib.*ros2 bag convert/));
      unlinkSync(big);
      writeFileSync(path.join(tmp, 'x.txt'), 'x');
      await assert.rejects(openBag(path.join(tmp, 'x.txt')), coded(ErrorCodes.BAG));
    });

    it('a flipped byte inside zstd and lz4 chunk data: VLA_E_BAG_CRC naming the chunk', async () => {
      for (const compression of ['zstd', 'lz4'] as const) {
        const dir = path.join(tmp, `flip-${compression}`);
        await writeBag(dir, compression, 40, { chunkSizeBytes: 2048 });
        const f = path.join(dir, `flip-${compression}_0.mcap`);
        const complete = (await collect(dir)).got;
        const bytes = readFileSync(f);
        const chunks: number[] = [];
        for (let pos = 8; pos < bytes.length - 8; pos += 9 + Number(bytes.readBigUInt64LE(pos + 1))) if (bytes[pos] === 0x06) chunks.push(pos);
        const chunk = chunks[2] as number;
        // Chunk body: start, end, uncompressed size (u64 each), CRC (u32), compression (string), records (u64 length + bytes).
        const nameLen = bytes.readUInt32LE(chunk + 9 + 28);
        const recordsAt = chunk + 9 + 32 + nameLen + 8;
        const recordsLen = Number(bytes.readBigUInt64LE(recordsAt - 8));
        // (Not the frame's last 4 bytes: lz4's end mark, which carries no data.)
        let faults = 0;
        for (const at of [recordsAt + 20, recordsAt + Math.floor(recordsLen / 2), recordsAt + recordsLen - 8]) {
          const b = Buffer.from(bytes);
          b[at] = (b[at] as number) ^ 0x10;
          writeFileSync(f, b);
          const { got, err } = await collect(dir);
          if (err === undefined && compression === 'lz4') {
            // lz4js (the fallback after the wasm decoder fails) may skip a byte the frame does not
            // need; then the chunk CRC proves the content intact: it must be exactly the original.
            assert.equal(got.length, complete.length);
            got.forEach((m, i) => assert.ok(Buffer.from(m.data).equals(Buffer.from((complete[i] as BagMessage).data))));
            continue;
          }
          assert.ok(coded(ErrorCodes.BAG_CRC, new RegExp(`flip-${compression}_0\\.mcap: chunk at byte ${chunk}`))(err), `${compression} @${at} (records ${recordsAt}+${recordsLen}, chunk ${chunk}): ${String(err)} ${got.length}/${complete.length}`);
          faults++;
          assert.equal((err as { details: { offset: number } }).details.offset, chunk);
          // Exactly the messages of the two chunks before it.
          assert.ok(got.length > 0 && got.length < complete.length);
          assert.deepEqual(got.map((m) => m.logTimeNs), complete.slice(0, got.length).map((m) => m.logTimeNs));
          assert.ok(got.every((m) => m.offset < chunk));
          assert.ok(complete[got.length]?.offset === chunk);
        }
        assert.ok(faults >= 2, `${compression}: ${faults} of 3 flips reported`);
        // A damaged chunk leaves the decompressor usable: the intact file still reads in full.
        writeFileSync(f, bytes);
        const again = await collect(dir);
        assert.equal(again.err, undefined, String(again.err));
        assert.equal(again.got.length, complete.length);
      }
    });

    it('cut at a record boundary or inside the closing magic: VLA_E_BAG_TRUNCATED naming the byte', async () => {
      const bytes = readFileSync(file);
      // Record boundaries: walk the file's records (opcode u8, length u64).
      const starts: number[] = [];
      for (let pos = 8; pos < bytes.length - 8; pos += 9 + Number(bytes.readBigUInt64LE(pos + 1))) starts.push(pos);
      const dataEnd = starts.find((p) => bytes[p] === 0x0f) as number;
      for (const [cut, offset] of [[dataEnd, dataEnd], [bytes.length - 8, bytes.length - 8], [bytes.length - 3, bytes.length - 8]] as const) {
        const dir = variant(`edge-${cut}`, (b) => b.subarray(0, cut));
        const { got, err } = await collect(dir);
        assert.ok(coded(ErrorCodes.BAG_TRUNCATED, new RegExp(`good_0\\.mcap.*byte ${offset}`))(err), `${cut}: ${String(err)}`);
        assert.deepEqual((err as { details: unknown }).details, { file: path.join(dir, 'good_0.mcap'), offset });
        assert.equal(got.length, all.length, 'every message precedes DataEnd');
      }
    });

    it('single files without metadata.yaml: the summary gives counts; a damaged one opens and then reports its fault', async () => {
      const r = await openBag(file);
      assert.equal(r.info.fromMetadata, false);
      assert.equal(r.info.messageCount, all.length);
      assert.equal(r.info.topics.find((t) => t.name === '/cam')?.messageCount, 60);
      assert.equal(r.info.startNs, 1_000_000_000n);
      assert.equal(r.info.durationNs, 5_900_000_000n);
      const dir = variant('single-cut', (b) => b.subarray(0, Math.floor(b.length * 0.6)));
      const cut = await openBag(path.join(dir, 'good_0.mcap'));
      assert.ok(cut.info.messageCount > 0 && cut.info.messageCount < all.length);
      const { got, err } = await collect(path.join(dir, 'good_0.mcap'));
      assert.ok(coded(ErrorCodes.BAG_TRUNCATED, /byte \d+/)(err), String(err));
      assert.equal(got.length, cut.info.messageCount);
      // Not MCAP, not SQLite: coded at open.
      writeFileSync(path.join(tmp, 'x.db3'), 'a text file, not a database\n');
      await assert.rejects(openBag(path.join(tmp, 'x.db3')), coded(ErrorCodes.BAG_MAGIC, /x\.db3.*byte 0/));
      writeFileSync(path.join(tmp, 'x.mcap'), 'a text file, not MCAP\n');
      await assert.rejects(openBag(path.join(tmp, 'x.mcap')), coded(ErrorCodes.BAG_MAGIC, /x\.mcap.*byte 0/));
    });

    it('a truncated single .db3: VLA_E_BAG_TRUNCATED with the file size as offset', async () => {
      const db = readFileSync(path.join(FIX, 'cdr_test-sqlite3', 'cdr_test_0.db3'));
      for (const cut of [4096, 20000, db.length - 4096]) {
        const f = path.join(tmp, `cut-${cut}.db3`);
        writeFileSync(f, db.subarray(0, cut));
        let err: unknown;
        try {
          await collect(f).then((x) => {
            err = x.err;
          });
        } catch (e) {
          err = e;
        }
        assert.ok(coded(ErrorCodes.BAG_TRUNCATED, new RegExp(`cut-${cut}\\.db3: ends at byte ${cut}`))(err), `${cut}: ${String(err)}`);
        const d = (err as { details: { file: string; offset: number; row: number } }).details;
        assert.equal(d.file, f);
        assert.equal(d.offset, cut);
        assert.equal(typeof d.row, 'number');
      }
    });

    it('a directory of splits without metadata.yaml: files in split-index order (_2 before _10)', async () => {
      const dir = path.join(tmp, 'many-splits');
      await writeBag(dir, 'none', 60, { maxFileBytes: 1200, chunkSizeBytes: 512 });
      unlinkSync(path.join(dir, 'metadata.yaml'));
      const r = await openBag(dir);
      assert.ok(r.info.files.length > 10, String(r.info.files.length));
      assert.deepEqual(r.info.files.map((f) => Number(/_(\d+)\.mcap$/.exec(f)?.[1])), r.info.files.map((_, i) => i));
      assert.equal(r.info.fromMetadata, false);
      assert.equal(r.info.messageCount, 61);
      const got = (await collect(dir)).got.filter((m) => m.topic === '/cam');
      assert.deepEqual(got.map((m) => m.logTimeNs), Array.from({ length: 60 }, (_, i) => 1_000_000_000n + BigInt(i) * 100_000_000n));
    });

    it('an unknown message type has no definition: VLA_E_MSG_TYPE from the codec', async () => {
      const dir = path.join(tmp, 'acme');
      const w = await BagWriter.create(dir);
      await w.addTopic('/x', 'acme_msgs/msg/Frame', '', QOS_DEFAULT);
      await w.write('/x', 5n, new Uint8Array([0, 1, 0, 0, 1, 2, 3, 4]));
      await w.close();
      const c = new MessageCodec();
      const r = await openBag(dir);
      assert.equal(r.info.topics[0]?.type, 'acme_msgs/msg/Frame');
      assert.equal((await r.definitions()).size, 0);
      assert.equal(c.knows('acme_msgs/msg/Frame'), false);
      const { got } = await collect(dir);
      assert.throws(() => c.decode('acme_msgs/msg/Frame', (got[0] as BagMessage).data), coded(ErrorCodes.MSG_TYPE));
    });
  });
});
