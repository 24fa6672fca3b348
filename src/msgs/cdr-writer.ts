/**
 * CDR serialisation of ROS 2 messages from parsed `.msg` definitions. It replaces
 * @foxglove/rosmsg2-serialization's MessageWriter, whose strings go through
 * @foxglove/cdr's CdrWriter.string(): that sizes a string by its UTF-16 length, not its UTF-8
 * bytes, so "交差点で左折" went out as "交差" (3.5.0, the latest release, still does). Here a
 * string is encoded once and written as its byte length + 1, its bytes and a NUL, as rmw does.
 * Everything else (alignment, primitives, arrays, defaults for missing fields) follows the
 * library's writer, whose primitive writes (CdrWriter) are reused.
 */
import { CdrWriter } from '@foxglove/cdr';
import type { parse } from '@foxglove/rosmsg';

type Definitions = ReturnType<typeof parse>;
type Definition = Definitions[number];
type Field = Definition['definitions'][number];

const utf8 = new TextEncoder();
/** Buffers start at most this large (a bigger message still grows its own). */
const SIZE_HINT_MAX = 64 << 10;

type Obj = Record<string, unknown> | undefined;

function num(v: unknown, dflt: unknown): number {
  return typeof v === 'number' ? v : typeof dflt === 'number' ? dflt : 0;
}

function big(v: unknown, dflt: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  return typeof dflt === 'bigint' ? dflt : 0n;
}

function writeString(w: CdrWriter, s: string): void {
  const bytes = utf8.encode(s);
  w.uint32(bytes.byteLength + 1);
  w.uint8Array(bytes, false);
  w.uint8(0);
}

function writePrimitive(w: CdrWriter, type: string, v: unknown, dflt: unknown): void {
  switch (type) {
    case 'bool':
      w.int8((typeof v === 'boolean' ? v : dflt === true) ? 1 : 0);
      return;
    case 'int8':
      w.int8(num(v, dflt));
      return;
    case 'uint8':
    case 'byte':
    case 'char':
      w.uint8(num(v, dflt));
      return;
    case 'int16':
      w.int16(num(v, dflt));
      return;
    case 'uint16':
      w.uint16(num(v, dflt));
      return;
    case 'int32':
      w.int32(num(v, dflt));
      return;
    case 'uint32':
      w.uint32(num(v, dflt));
      return;
    case 'int64':
      w.int64(big(v, dflt));
      return;
    case 'uint64':
      w.uint64(big(v, dflt));
      return;
    case 'float32':
      w.float32(num(v, dflt));
      return;
    case 'float64':
      w.float64(num(v, dflt));
      return;
    case 'string':
      writeString(w, typeof v === 'string' ? v : typeof dflt === 'string' ? dflt : '');
      return;
    case 'time':
    case 'duration': {
      const t = (v ?? {}) as { sec?: number; nsec?: number; nanosec?: number };
      w.int32(t.sec ?? 0);
      w.uint32(t.nsec ?? t.nanosec ?? 0);
      return;
    }
    case 'wstring':
      throw new Error('wstring is implementation-defined and not supported');
    default:
      throw new Error(`unknown primitive type ${type}`);
  }
}

export class CdrMessageWriter {
  private readonly root: Field[];
  private readonly byName: Map<string, Field[]>;

  constructor(definitions: Definitions) {
    // ros2idl modules may put constant-only modules before the root struct
    const root = definitions.find((d) => !(d.definitions.length > 0 && d.definitions.every((f) => f.isConstant === true)));
    if (!root) throw new Error('no root message definition');
    this.root = root.definitions;
    this.byName = new Map(definitions.map((d) => [d.name ?? '', d.definitions]));
  }

  writeMessage(message: unknown): Uint8Array {
    // Sized like the type's largest message so far: growing the buffer copies it each time.
    const w = new CdrWriter({ size: this.sizeHint });
    this.write(this.root, message as Obj, w);
    if (w.size > this.sizeHint) this.sizeHint = Math.min(w.size, SIZE_HINT_MAX);
    return w.data;
  }

  private sizeHint = 256;

  private nested(type: string): Field[] {
    const d = this.byName.get(type);
    if (!d) throw new Error(`unknown complex type ${type}`);
    return d;
  }

  /** Each definition's fields without its constants, made once (write() runs per nested message). */
  private readonly dataFields = new WeakMap<Field[], Field[]>();

  private write(def: Field[], msg: Obj, w: CdrWriter): void {
    let fields = this.dataFields.get(def);
    if (!fields) this.dataFields.set(def, (fields = def.filter((f) => f.isConstant !== true)));
    if (!fields.length) {
      // An empty message is one uint8 in ROS 2's IDL (structure_needs_at_least_one_member).
      w.uint8(0);
      return;
    }
    for (const f of fields) {
      const v = msg?.[f.name];
      if (f.isArray === true) {
        const given = Array.isArray(v) || ArrayBuffer.isView(v) ? (v as ArrayLike<unknown>) : undefined;
        if (f.arrayLength !== undefined && given !== undefined && given.length !== f.arrayLength) {
          throw new Error(`field ${f.name}: expected ${f.arrayLength} items, got ${given.length}`);
        }
        const dflt = Array.isArray(f.defaultValue) ? (f.defaultValue as unknown[]) : undefined;
        const items: ArrayLike<unknown> = given ?? dflt ?? { length: f.arrayLength ?? 0 };
        if (f.arrayLength === undefined) w.sequenceLength(items.length);
        if (f.isComplex === true) {
          const d = this.nested(f.type);
          for (let i = 0; i < items.length; i++) this.write(d, (items[i] ?? {}) as Obj, w);
        } else if ((f.type === 'uint8' || f.type === 'byte' || f.type === 'char') && items instanceof Uint8Array) {
          w.uint8Array(items, false);
        } else {
          for (let i = 0; i < items.length; i++) writePrimitive(w, f.type, items[i], undefined);
        }
      } else if (f.isComplex === true) {
        this.write(this.nested(f.type), (v ?? {}) as Obj, w);
      } else {
        writePrimitive(w, f.type, v, f.defaultValue);
      }
    }
  }
}
