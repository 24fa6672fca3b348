/**
 * One CDR codec for every path (live ROS, in-memory tests, bag replay): message definitions
 * come from `.msg` text — our own in msg/msg/, the standard ROS 2 ones shipped by
 * @foxglove/rosmsg-msgs-common — @foxglove/rosmsg2-serialization reads the bytes and our
 * CdrMessageWriter (cdr-writer.ts: UTF-8 strings by their byte length) writes them.
 * No rclnodejs here.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { parse } from '@foxglove/rosmsg';
import { MessageReader } from '@foxglove/rosmsg2-serialization';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { CdrMessageWriter } from './cdr-writer.js';
import { EXT_MSG_DIR, OWN_MSG_DIR } from '../util/paths.js';

/** The separator rosbag2 and MCAP use between a definition and its dependencies. */
const SEPARATOR = '='.repeat(80);
const PRIMITIVES = new Set(['bool', 'byte', 'char', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', 'float64', 'string', 'wstring', 'time', 'duration']);

export const OWN_PACKAGE = 'autoprune_ros_msgs';
// Other packages' interfaces we publish (e.g. Autoware) are in EXT_MSG_DIR as <pkg>/msg/*.msg.

/** .msg files are read once per process: every codec (one per replay run, per node) shares them. */
const fileCache = new Map<string, string | null>();
function readCached(file: string): string | undefined {
  let text = fileCache.get(file);
  if (text === undefined) {
    text = existsSync(file) ? readFileSync(file, 'utf8') : null;
    fileCache.set(file, text);
  }
  return text ?? undefined;
}

function standardMsgDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve('@foxglove/rosmsg-msgs-common/package.json'));
  return path.join(pkg, 'msgdefs', 'ros2jazzy');
}

/** "pkg/msg/Type" or "pkg/Type" -> ["pkg", "Type"]. */
function splitType(type: string): [string, string] {
  const parts = type.split('/');
  if (parts.length === 3 && parts[1] === 'msg' && parts[0] && parts[2]) return [parts[0], parts[2]];
  if (parts.length === 2 && parts[0] && parts[1]) return [parts[0], parts[1]];
  throw new VlaError(ErrorCodes.MSG_TYPE, `'${type}' is not a message type name (pkg/msg/Type)`);
}

/**
 * Reader and writer by full definition text, shared by every codec of the process: a replay
 * makes a codec per run, and parsing the definitions again each time cost milliseconds.
 * Both are stateless between calls (the reader's last length is read right after its call).
 */
const compiledCache = new Map<string, { reader: MessageReader; writer: CdrMessageWriter }>();
const COMPILED_MAX = 512;

function compiled(text: string, defs: ReturnType<typeof parse> | undefined): { reader: MessageReader; writer: CdrMessageWriter } {
  let c = compiledCache.get(text);
  if (!c) {
    const d = defs ?? parse(text, { ros2: true });
    c = { reader: new MessageReader(d), writer: new CdrMessageWriter(d) };
    // Bags bring their own texts: bounded, oldest first out.
    if (compiledCache.size >= COMPILED_MAX) compiledCache.delete(compiledCache.keys().next().value as string);
    compiledCache.set(text, c);
  }
  return c;
}

interface Entry {
  reader: MessageReader;
  writer: CdrMessageWriter;
  text: string;
}

export class MessageCodec {
  private readonly own = new Map<string, string>(); // "pkg/Type" -> its own .msg text
  private readonly entries = new Map<string, Entry>();
  /** Definitions a bag carried (addDefinition); tried before the built-in ones when decoding. */
  private readonly bagEntries = new Map<string, Entry>();
  /** predecode()'s results, by the bytes they came from; each is taken once. */
  private readonly predecoded = new WeakMap<Uint8Array, { type: string; value: unknown }>();

  constructor(private readonly stdDir: string = standardMsgDir(), ownDir: string = OWN_MSG_DIR, extDir: string = EXT_MSG_DIR) {
    const add = (pkg: string, dir: string) => {
      for (const f of readdirSync(dir)) if (f.endsWith('.msg')) this.own.set(`${pkg}/${f.slice(0, -4)}`, readCached(path.join(dir, f)) as string);
    };
    if (existsSync(ownDir)) add(OWN_PACKAGE, ownDir);
    if (existsSync(extDir)) {
      for (const pkg of readdirSync(extDir)) if (existsSync(path.join(extDir, pkg, 'msg'))) add(pkg, path.join(extDir, pkg, 'msg'));
    }
  }

  /** The type's own definition text (no dependencies). */
  private ownText(pkgType: string): string {
    const mine = this.own.get(pkgType);
    if (mine !== undefined) return mine;
    const [pkg, name] = pkgType.split('/') as [string, string];
    const file = path.join(this.stdDir, pkg, 'msg', `${name}.msg`);
    const text = readCached(file);
    if (text === undefined) throw new VlaError(ErrorCodes.MSG_TYPE, `unknown message type ${pkg}/msg/${name}`);
    return text.split(`\n${SEPARATOR}\n`)[0] as string;
  }

  /** Whether the codec can encode and decode this type (from its own or a registered definition). */
  knows(type: string): boolean {
    try {
      const [pkg, name] = splitType(type);
      if (this.bagEntries.has(`${pkg}/${name}`)) return true;
      this.entry(type);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Registers a type from the full concatenated `ros2msg` text a bag carries (MCAP schema data,
   * .db3 message_definitions). A bag's own definition is what its bytes were written with, so it
   * replaces the built-in one for this codec.
   */
  addDefinition(type: string, fullText: string): void {
    const [pkg, name] = splitType(type);
    let defs;
    try {
      defs = compiledCache.has(fullText) ? undefined : parse(fullText, { ros2: true });
    } catch (err) {
      throw new VlaError(ErrorCodes.MSG_TYPE, `${pkg}/msg/${name}: cannot parse the bag's definition: ${(err as Error).message}`, { type }, { cause: err });
    }
    this.bagEntries.set(`${pkg}/${name}`, { ...compiled(fullText, defs), text: fullText });
  }

  /**
   * The full definition as rosbag2 stores it (MCAP schema `ros2msg`): the type's text, then each
   * dependency once as `MSG: pkg/Type` blocks.
   */
  definitionText(type: string): string {
    return this.entry(type).text;
  }

  private entry(type: string): Entry {
    const [pkg, name] = splitType(type);
    const key = `${pkg}/${name}`;
    const hit = this.entries.get(key);
    if (hit) return hit;
    const blocks: string[] = [this.ownText(key)];
    const seen = new Set([key]);
    const queue = [key];
    while (queue.length) {
      const cur = queue.shift() as string;
      const curPkg = cur.split('/')[0] as string;
      for (const dep of fieldTypes(this.ownText(cur))) {
        const full = dep.includes('/') ? dep.replace('/msg/', '/') : dep === 'Header' ? 'std_msgs/Header' : `${curPkg}/${dep}`;
        if (seen.has(full)) continue;
        seen.add(full);
        queue.push(full);
        blocks.push(`MSG: ${full}\n${this.ownText(full)}`);
      }
    }
    const text = blocks.join(`\n${SEPARATOR}\n`);
    let defs;
    try {
      defs = compiledCache.has(text) ? undefined : parse(text, { ros2: true });
    } catch (err) {
      throw new VlaError(ErrorCodes.MSG_TYPE, `${pkg}/msg/${name}: cannot parse its definition: ${(err as Error).message}`, undefined, { cause: err });
    }
    const e: Entry = { ...compiled(text, defs), text };
    this.entries.set(key, e);
    return e;
  }

  encode(type: string, message: unknown): Uint8Array {
    const e = this.entry(type);
    try {
      return e.writer.writeMessage(message);
    } catch (err) {
      throw new VlaError(ErrorCodes.CDR, `cannot encode ${type}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }

  /**
   * Decodes CDR bytes; truncated or malformed input is VLA_E_CDR, never a crash. A bag's own
   * definition is tried first, but only trusted when it accounts for the message's bytes
   * (recorders have stored abridged definitions); otherwise the built-in one decodes it.
   */
  decode<T = Record<string, unknown>>(type: string, bytes: Uint8Array): T {
    const pre = this.predecoded.get(bytes);
    if (pre && pre.type === type) {
      this.predecoded.delete(bytes);
      return pre.value as T;
    }
    if (bytes.byteLength < 4) throw new VlaError(ErrorCodes.CDR, `cannot decode ${type}: ${bytes.byteLength} bytes is shorter than the CDR header`);
    const [pkg, name] = splitType(type);
    const bag = this.bagEntries.get(`${pkg}/${name}`);
    if (bag) {
      let builtin: Entry | undefined;
      try {
        builtin = this.entry(type);
      } catch {
        return this.read<T>(bag, type, bytes, false);
      }
      try {
        return this.read<T>(bag, type, bytes, true);
      } catch {
        return this.read<T>(builtin, type, bytes, false);
      }
    }
    return this.read<T>(this.entry(type), type, bytes, false);
  }

  /**
   * Decodes ahead of need (replay's read-ahead, while the model runs): the next decode() of the
   * same bytes as the same type returns this result instead of decoding again. A failure is
   * left for that decode() to report.
   */
  predecode(type: string, bytes: Uint8Array): void {
    try {
      const value = this.decode(type, bytes);
      this.predecoded.set(bytes, { type, value });
    } catch {
      // decode() throws it again, where the caller handles it
    }
  }

  private read<T>(e: Entry, type: string, bytes: Uint8Array, exact: boolean): T {
    try {
      const msg = e.reader.readMessage<T>(bytes);
      // Byte arrays are read as views, which clamp silently at the end: check what was consumed.
      const used = e.reader.lastReadByteLength();
      if (used > bytes.byteLength) throw new Error(`the message needs ${used} bytes (truncated)`);
      // CDR pads to 4 bytes at most at the end: more left over means another definition.
      if (exact && used < bytes.byteLength - 3) throw new Error(`the definition reads ${used} of ${bytes.byteLength} bytes`);
      return msg;
    } catch (err) {
      throw new VlaError(ErrorCodes.CDR, `cannot decode ${type} from ${bytes.byteLength} bytes: ${(err as Error).message}`, { type, bytes: bytes.byteLength }, { cause: err });
    }
  }
}

/** Non-primitive field types named in a .msg text (constants and comments skipped). */
function fieldTypes(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const m = /^([A-Za-z_][\w/]*)(?:<=\d+)?(?:\[[^\]]*\])?\s+\w+(\s*=.*)?/.exec(line);
    if (!m || m[2]) continue; // constants have primitive types
    const base = m[1] as string;
    if (!PRIMITIVES.has(base)) out.push(base);
  }
  return out;
}
