/**
 * What the fuzz harness attacks and how: a corpus of valid inputs (made once per run), and per
 * target a generator that turns a seed into a hostile case (files on disk, links included) and
 * the entry the child runs on it. Generators mutate real files of each format at the byte level
 * and at the level of its structure (MCAP records, SQL rows and columns, YAML values, the
 * safetensors header), and plant references to a canary file outside the case's directory.
 */
import { cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import initSqlJs from 'sql.js';

import { openBag } from '../../src/bag/reader.js';
import { MessageCodec } from '../../src/msgs/codec.js';
import { makeSampleDrive } from '../../src/sample/drive.js';
import { INTERESTING_U64, mutateBytes, mutateBytesN, type Rng } from './mutate.js';

export const TARGETS = ['mcap', 'db3', 'metadata', 'safetensors', 'image', 'cdr', 'params'] as const;
export type Target = (typeof TARGETS)[number];
/** Targets that need the native addon (and the test models). */
export const ADDON_TARGETS: ReadonlySet<Target> = new Set(['safetensors']);

/** What the child runs on a case. */
export type Entry =
  | { kind: 'bag'; path: string; replay: boolean; out: string }
  | { kind: 'model'; path: string }
  | { kind: 'image'; file: string; viaEngine: boolean; model: string }
  | { kind: 'cdr'; file: string; type: string }
  | { kind: 'params'; file: string }
  /** The harness's own checks: a case that hangs, allocates without bound, opens the canary, throws uncoded, or crashes. */
  | { kind: 'selftest'; mode: SelfTestMode; canary: string };

export const SELF_TESTS = ['hang', 'alloc', 'canary', 'uncoded', 'crash'] as const;
export type SelfTestMode = (typeof SELF_TESTS)[number];

export interface FuzzCase {
  target: Target;
  seed: number;
  /** Files (data) and symbolic links (link target) to create, relative to the case directory. */
  files: Array<{ path: string; data?: Buffer; link?: string }>;
  /** Entry with paths relative to the case directory (the harness makes them absolute). */
  entry: Entry;
  /** One line on what was done, for the failure report. */
  note: string;
}

export interface Corpus {
  dir: string;
  /** A valid bag: metadata.yaml + one MCAP split (three JPEG cameras, instruction, odometry). */
  drive: { metadata: string; split: string; splitName: string; bytes: Buffer };
  db3: Buffer;
  model?: { dir: string; files: Map<string, Buffer> };
  images: Buffer[];
  cdr: Array<{ type: string; bytes: Buffer }>;
  params: string;
  /** Outside every case directory: no case may open it. */
  canary: string;
}

const codec = new MessageCodec();

/** Builds the corpus in dir (a few hundred KB; about a second). */
export async function makeCorpus(dir: string, opts: { model?: string; config: string }): Promise<Corpus> {
  mkdirSync(dir, { recursive: true });
  const driveDir = path.join(dir, 'drive');
  await makeSampleDrive(driveDir, { durationS: 1, width: 48, height: 32 });
  const splitName = readdirSync(driveDir).find((f) => f.endsWith('.mcap')) as string;
  const bytes = readFileSync(path.join(driveDir, splitName));
  // The same messages as a Humble-style .db3.
  const SQL = await initSqlJs();
  const db = new SQL.Database();
  db.run('CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL)');
  db.run('CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, data BLOB NOT NULL)');
  db.run('CREATE INDEX timestamp_idx ON messages (timestamp ASC)');
  const bag = await openBag(driveDir);
  bag.info.topics.forEach((t, i) => db.run('INSERT INTO topics VALUES (?, ?, ?, ?, ?)', [i + 1, t.name, t.type, 'cdr', t.offeredQosProfiles]));
  const ids = new Map(bag.info.topics.map((t, i) => [t.name, i + 1]));
  const cdr: Corpus['cdr'] = [];
  const seen = new Set<string>();
  for await (const m of bag.messages()) {
    db.run('INSERT INTO messages(topic_id, timestamp, data) VALUES (?, CAST(? AS INTEGER), ?)', [ids.get(m.topic) as number, m.logTimeNs.toString(), m.data]);
    if (!seen.has(m.type)) {
      seen.add(m.type);
      cdr.push({ type: m.type, bytes: Buffer.from(m.data) });
    }
  }
  const db3 = Buffer.from(db.export());
  db.close();
  cdr.push({ type: 'sensor_msgs/msg/Image', bytes: Buffer.from(codec.encode('sensor_msgs/msg/Image', { header: { stamp: { sec: 1, nanosec: 0 }, frame_id: 'c' }, height: 4, width: 4, encoding: 'rgb8', is_bigendian: 0, step: 12, data: new Uint8Array(48).fill(9) })) });
  const rgb = Buffer.alloc(48 * 32 * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 13) & 255;
  const raw = { raw: { width: 48, height: 32, channels: 3 as const } };
  const images = [
    await sharp(rgb, raw).jpeg({ quality: 80 }).toBuffer(),
    await sharp(rgb, raw).png().toBuffer(),
    await sharp(rgb, raw).toColourspace('cmyk').jpeg().toBuffer(),
    await sharp(rgb, raw).jpeg({ progressive: true }).toBuffer(),
  ];
  let model: Corpus['model'];
  if (opts.model) {
    const files = new Map<string, Buffer>();
    for (const f of ['config.json', 'tokenizer.json', 'model.safetensors']) files.set(f, readFileSync(path.join(opts.model, f)));
    model = { dir: opts.model, files };
  }
  const canary = makeCanary(dir, bytes);
  return { dir, drive: { metadata: readFileSync(path.join(driveDir, 'metadata.yaml'), 'utf8'), split: path.join(driveDir, splitName), splitName, bytes }, db3, ...(model ? { model } : {}), images, cdr, params: readFileSync(opts.config, 'utf8'), canary };
}

/** The canary: a file outside every case directory (dir/canary/canary.mcap); `bytes`, a valid split, would read as one. */
export function makeCanary(dir: string, bytes: Buffer = Buffer.from('canary')): string {
  const canaryDir = path.join(dir, 'canary');
  mkdirSync(canaryDir, { recursive: true });
  const canary = path.join(canaryDir, 'canary.mcap');
  writeFileSync(canary, bytes);
  return canary;
}

/** MCAP records (opcode, offset, body length) of a file. */
function mcapRecords(b: Buffer): Array<{ op: number; at: number; len: number }> {
  const out: Array<{ op: number; at: number; len: number }> = [];
  for (let pos = 8; pos + 9 <= b.length; ) {
    const len = Number(b.readBigUInt64LE(pos + 1));
    out.push({ op: b[pos] as number, at: pos, len });
    if (!(len >= 0) || pos + 9 + len > b.length) break;
    pos += 9 + len;
  }
  return out;
}

function mutateMcap(b: Buffer, r: Rng): { bytes: Buffer; note: string } {
  const recs = mcapRecords(b);
  const rec = r.pick(recs);
  const out = Buffer.from(b);
  switch (r.int(6)) {
    case 0:
      out.writeBigUInt64LE(r.pick(INTERESTING_U64), rec.at + 1);
      return { bytes: out, note: `record op ${rec.op} at ${rec.at}: length field` };
    case 1:
      out[rec.at] = r.pick([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x80, 0xff]);
      return { bytes: out, note: `record at ${rec.at}: opcode` };
    case 2: {
      const chunk = recs.filter((x) => x.op === 0x06);
      const c = chunk.length ? r.pick(chunk) : rec;
      if (c.op === 0x06 && c.len >= 32) {
        const field = r.pick([0, 8, 16, 24]);
        if (field === 24) out.writeUInt32LE(r.int(2 ** 32), c.at + 9 + 24);
        else out.writeBigUInt64LE(r.pick(INTERESTING_U64), c.at + 9 + field);
        return { bytes: out, note: `chunk at ${c.at}: field at +${field}` };
      }
      return { bytes: mutateBytes(out, r), note: 'bytes' };
    }
    case 3: {
      const s = rec.at + 9, e = Math.min(out.length, s + Math.max(1, rec.len));
      for (let k = 0, n = 1 + r.int(6); k < n; k++) out[s + r.int(e - s)] ^= 1 << r.int(8);
      return { bytes: out, note: `record op ${rec.op} at ${rec.at}: body bits` };
    }
    case 4:
      return { bytes: Buffer.concat([out.subarray(0, rec.at), out.subarray(Math.min(out.length, rec.at + 9 + rec.len))]), note: `record op ${rec.op} at ${rec.at}: removed` };
    default:
      return { bytes: mutateBytesN(out, r), note: 'bytes' };
  }
}

/** YAML scalars that break parsers: types, extremes, escapes out of the bag. */
function hostileScalar(r: Rng, canary: string): string {
  return r.pick(['null', '~', '-1', '0', '-9223372036854775809', '18446744073709551616', '1e400', '.nan', '"x"', '[]', '{}', '[1, [2, [3]]]', '&a [*a]', JSON.stringify('../canary/canary.mcap'), JSON.stringify(canary), '"/dev/zero"', '"."', '""', '"\\0"', `"${'z'.repeat(5000)}"`, 'true', '0x10', '"交差点"']);
}

function mutateYaml(text: string, r: Rng, canary: string): { text: string; note: string } {
  const lines = text.split('\n');
  switch (r.int(4)) {
    case 0: {
      const i = r.int(lines.length);
      return { text: lines.filter((_, k) => k !== i).join('\n'), note: `line ${i} deleted` };
    }
    case 1:
      return { text: lines.slice(0, r.int(lines.length)).join('\n'), note: 'cut short' };
    case 2: {
      const values = lines.map((l, i) => [l, i] as const).filter(([l]) => /:\s*\S/.test(l) || /^\s*-\s/.test(l));
      if (!values.length) return { text: text + `\nx: ${hostileScalar(r, canary)}`, note: 'a key appended' };
      const [l, i] = r.pick(values);
      const v = hostileScalar(r, canary);
      lines[i] = /:\s*\S/.test(l) ? l.replace(/:\s*.*$/, `: ${v}`) : l.replace(/-\s.*$/, `- ${v}`);
      return { text: lines.join('\n'), note: `line ${i} value ${v.slice(0, 40)}` };
    }
    default:
      return { text: mutateBytes(Buffer.from(text), r).toString('latin1'), note: 'bytes' };
  }
}

async function mutateDb3(b: Buffer, r: Rng): Promise<{ bytes: Buffer; note: string }> {
  if (r.chance(0.5)) return { bytes: mutateBytesN(b, r), note: 'bytes' };
  const SQL = await initSqlJs();
  const db = new SQL.Database(Uint8Array.from(b)); // a copy: sql.js may write into the array it is given
  const stmts = [
    "UPDATE messages SET timestamp = 'soon' WHERE id = 3",
    'UPDATE messages SET timestamp = 9223372036854775807 WHERE id = 5',
    'UPDATE messages SET timestamp = -9223372036854775808 WHERE id = 2',
    'UPDATE messages SET data = NULL WHERE id = 4',
    "UPDATE messages SET data = 'text' WHERE id = 6",
    'UPDATE messages SET data = zeroblob(200000) WHERE id = 7',
    'UPDATE messages SET topic_id = 99 WHERE id = 8',
    "UPDATE topics SET type = '' WHERE id = 1",
    "UPDATE topics SET type = 'no/such/Type' WHERE id = 2",
    'UPDATE topics SET name = NULL WHERE id = 1',
    'DROP INDEX timestamp_idx',
    'ALTER TABLE messages ADD COLUMN big BLOB GENERATED ALWAYS AS (zeroblob(500000000)) VIRTUAL',
    'ALTER TABLE messages RENAME TO messages_old',
    'CREATE VIEW x AS SELECT 1',
    'DELETE FROM topics',
    'INSERT INTO messages(topic_id, timestamp, data) VALUES (1, 1, randomblob(100000))',
  ];
  const done: string[] = [];
  for (let k = 0, n = 1 + r.int(3); k < n; k++) {
    const s = r.pick(stmts);
    try {
      db.run(s);
      done.push(s);
    } catch {
      // not applicable to this database: try another
    }
  }
  let bytes: Buffer;
  try {
    bytes = Buffer.from(db.export());
  } catch {
    return { bytes: mutateBytesN(b, r), note: 'bytes (the SQL edit did not export)' };
  } finally {
    db.close();
  }
  return { bytes: r.chance(0.3) ? mutateBytes(bytes, r) : bytes, note: done.join('; ') || 'no SQL applied' };
}

function mutateSafetensors(files: Map<string, Buffer>, r: Rng): { files: Map<string, Buffer>; note: string } {
  const out = new Map(files);
  const st = files.get('model.safetensors') as Buffer;
  const n = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = r.pick(names);
  const t = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  const rebuild = () => {
    let h = JSON.stringify(header);
    while ((h.length + 8) % 8) h += ' ';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(h)));
    return Buffer.concat([len, Buffer.from(h), st.subarray(8 + n)]);
  };
  switch (r.int(7)) {
    case 0:
      t.dtype = r.pick(['F64', 'I8', 'BOOL', 'F8_E4M3', 'f32', '', 'F16']);
      out.set('model.safetensors', rebuild());
      return { files: out, note: `${name}: dtype ${t.dtype}` };
    case 1:
      t.shape = r.pick([[], [0], [1e15, 1e15], [-1, 4], [t.shape[0] ?? 1], [...t.shape].reverse(), [2 ** 53]]);
      out.set('model.safetensors', rebuild());
      return { files: out, note: `${name}: shape ${JSON.stringify(t.shape)}` };
    case 2:
      t.data_offsets = r.pick([[0, 0], [t.data_offsets[1], t.data_offsets[0]], [t.data_offsets[0], t.data_offsets[1] + 4096], [0, t.data_offsets[1] - t.data_offsets[0]], [-4, 4], [2 ** 60, 2 ** 60 + 4]]) as [number, number];
      out.set('model.safetensors', rebuild());
      return { files: out, note: `${name}: offsets ${JSON.stringify(t.data_offsets)}` };
    case 3: {
      // a NaN, an Inf or a huge value inside the tensor's data
      const b = Buffer.from(st);
      const at = 8 + n + t.data_offsets[0] + 4 * r.int(Math.max(1, (t.data_offsets[1] - t.data_offsets[0]) / 4));
      if (t.dtype === 'F32' && at + 4 <= b.length) b.writeFloatLE(r.pick([NaN, Infinity, -Infinity, 3e38, 1e-45]), at);
      out.set('model.safetensors', b);
      return { files: out, note: `${name}: a special value at byte ${at}` };
    }
    case 4: {
      const c = JSON.parse((files.get('config.json') as Buffer).toString('utf8'));
      const key = r.pick(['image_std', 'image_mean', 'num_waypoints', 'waypoint_dt_s', 'cameras', 'image_preprocess']);
      c.vla[key] = r.pick([[1e-30, 1, 1], [0, 0, 0], [1e300, 1, 1], 'x', null, -5, [], 1e9, ['a', 'a']]);
      if (r.chance(0.5)) c.text_config[r.pick(['eos_token_id', 'bos_token_id', 'vocab_size', 'max_position_embeddings', 'num_attention_heads'])] = r.pick([-1, 0, 600, 1e9, 2 ** 31, 'x', null]);
      out.set('config.json', Buffer.from(JSON.stringify(c)));
      return { files: out, note: `config.json: vla.${key}` };
    }
    case 5: {
      const t2 = JSON.parse((files.get('tokenizer.json') as Buffer).toString('utf8'));
      t2.added_tokens.push({ id: r.pick([511, 512, 600, 100000, -1]), content: r.pick(['<image>', '<x>', '</s>', '']), single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
      out.set('tokenizer.json', Buffer.from(JSON.stringify(t2)));
      return { files: out, note: 'tokenizer.json: an added token' };
    }
    default:
      out.set('model.safetensors', mutateBytesN(st, r));
      return { files: out, note: 'model.safetensors bytes' };
  }
}

async function hostileImage(c: Corpus, r: Rng): Promise<{ bytes: Buffer; note: string }> {
  switch (r.int(5)) {
    case 0:
      return { bytes: Buffer.from(r.pick(['<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"><rect width="100%" height="100%"/></svg>', '<?xml version="1.0"?><svg/>', '%PDF-1.4', 'GIF89a', 'II*\0', '\u00ff\u00d8\u00ff', '\u0089PNG\r\n\u001a\n'])), note: 'a format cameras do not send, or a bare magic' };
    case 1: {
      // a PNG or JPEG whose header claims huge dimensions
      const png = Buffer.from(c.images[1] as Buffer);
      png.writeUInt32BE(r.pick([1, 30000, 0x7fffffff, 0]), 16);
      png.writeUInt32BE(r.pick([1, 30000, 0x7fffffff, 0]), 20);
      return { bytes: png, note: 'PNG IHDR dimensions' };
    }
    case 2:
      return { bytes: await sharp({ create: { width: 1 + r.int(4000), height: 1 + r.int(4000), channels: 3, background: '#777' } }).png({ compressionLevel: 9 }).toBuffer(), note: 'a large flat PNG' };
    default: {
      const src = r.pick(c.images);
      return { bytes: mutateBytesN(src, r, 3), note: 'mutated JPEG/PNG' };
    }
  }
}

/** One hostile case of `target` from `r`. Paths in the entry are relative to the case directory. */
export async function makeCase(target: Target, seed: number, r: Rng, c: Corpus): Promise<FuzzCase> {
  const base = { target, seed };
  switch (target) {
    case 'mcap': {
      const m = mutateMcap(c.drive.bytes, r);
      const bytes = r.chance(0.3) ? mutateMcap(m.bytes, r).bytes : m.bytes;
      return { ...base, files: [{ path: `bag/${c.drive.splitName}`, data: bytes }, { path: 'bag/metadata.yaml', data: Buffer.from(c.drive.metadata) }], entry: { kind: 'bag', path: 'bag', replay: r.chance(0.3), out: 'out' }, note: m.note };
    }
    case 'db3': {
      const d = await mutateDb3(c.db3, r);
      const meta = c.drive.metadata.replace('storage_identifier: mcap', 'storage_identifier: sqlite3').split(c.drive.splitName).join('bag_0.db3');
      const withMeta = r.chance(0.5);
      return { ...base, files: [{ path: 'bag/bag_0.db3', data: d.bytes }, ...(withMeta ? [{ path: 'bag/metadata.yaml', data: Buffer.from(meta) }] : [])], entry: { kind: 'bag', path: 'bag', replay: r.chance(0.3), out: 'out' }, note: `${d.note}${withMeta ? '' : ' (no metadata.yaml)'}` };
    }
    case 'metadata': {
      const files: FuzzCase['files'] = [{ path: `bag/${c.drive.splitName}`, data: c.drive.bytes }];
      let meta = c.drive.metadata;
      let note: string;
      const k = r.int(4);
      if (k === 0) {
        // the split listed as a name that leaves the bag, or a link that does
        const name = r.pick(['../canary.mcap', c.canary, 'x/../../canary.mcap', 'link.mcap']);
        if (name === 'link.mcap') files.push({ path: 'bag/link.mcap', link: c.canary });
        meta = meta.split(c.drive.splitName).join(name);
        note = `relative_file_paths -> ${name}`;
      } else {
        const m = mutateYaml(meta, r, c.canary);
        meta = m.text;
        note = m.note;
        if (k === 1) meta = mutateYaml(meta, r, c.canary).text;
      }
      files.push({ path: 'bag/metadata.yaml', data: Buffer.from(meta, 'latin1') });
      files.push({ path: 'canary.mcap', link: c.canary }); // ../canary.mcap from the bag: outside it
      return { ...base, files, entry: { kind: 'bag', path: 'bag', replay: r.chance(0.5), out: 'out' }, note };
    }
    case 'safetensors': {
      if (!c.model) throw new Error('no model in the corpus');
      const m = mutateSafetensors(c.model.files, r);
      return { ...base, files: [...m.files].map(([p, data]) => ({ path: `model/${p}`, data })), entry: { kind: 'model', path: 'model' }, note: m.note };
    }
    case 'image': {
      const im = await hostileImage(c, r);
      return { ...base, files: [{ path: 'frame.bin', data: im.bytes }], entry: { kind: 'image', file: 'frame.bin', viaEngine: !!c.model && r.chance(0.5), model: c.model?.dir ?? '' }, note: im.note };
    }
    case 'cdr': {
      const src = r.pick(c.cdr);
      const type = r.chance(0.8) ? src.type : r.pick(c.cdr).type;
      return { ...base, files: [{ path: 'msg.cdr', data: mutateBytesN(src.bytes, r, 3) }], entry: { kind: 'cdr', file: 'msg.cdr', type }, note: `${src.type} bytes read as ${type}` };
    }
    case 'params': {
      const m = mutateYaml(c.params, r, c.canary);
      const text = r.chance(0.3) ? mutateYaml(m.text, r, c.canary).text : m.text;
      return { ...base, files: [{ path: 'params.yaml', data: Buffer.from(text, 'latin1') }], entry: { kind: 'params', file: 'params.yaml' }, note: m.note };
    }
  }
}

/** Absolute paths in an entry, for the case directory. */
export function absoluteEntry(e: Entry, dir: string): Entry {
  const abs = (p: string) => path.join(dir, p);
  switch (e.kind) {
    case 'bag':
      return { ...e, path: abs(e.path), out: abs(e.out) };
    case 'model':
      return { ...e, path: abs(e.path) };
    case 'image':
    case 'cdr':
    case 'params':
      return { ...e, file: abs(e.file) };
    case 'selftest':
      return e;
  }
}

/** Copies the case's inputs aside (for a failure report). */
export function keepCase(dir: string, to: string): void {
  cpSync(dir, to, { recursive: true, verbatimSymlinks: true });
}
