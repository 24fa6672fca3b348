import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';

import { ErrorCodes, VlaError } from '../util/errors.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** fp32 values, row-major; a function is called once, when the tensor is written, so big models need not sit in memory whole. */
  data: Float32Array | (() => Float32Array);
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** Elements converted and written per write call. */
const CHUNK = 1 << 20;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function f16FromF32Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // a carry out of the mantissa correctly bumps the exponent (up to infinity)
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

function bf16FromF32Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40; // quiet NaN, keep sign
  // x < 0xff800001 here, so the sum stays below 2^32 and >>> is exact
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

/** IEEE binary16 bits of `v` rounded to fp32 first, then to nearest-even (subnormals, inf and NaN kept). */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  return f16FromF32Bits(u32[0] as number);
}

/** bfloat16 bits of `v` rounded to fp32 first, then to nearest-even. */
export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  return bf16FromF32Bits(u32[0] as number);
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0] as number;
}

function encodeChunk(src: Float32Array, dtype: SafetensorsDtype, out: Buffer): Buffer {
  if (dtype === 'F32') return Buffer.from(src.buffer, src.byteOffset, src.byteLength);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const dst = new Uint16Array(out.buffer, out.byteOffset, src.length);
  // one loop per dtype keeps the conversion monomorphic (inlined), which matters for 300M-value models
  if (dtype === 'F16') for (let i = 0; i < bits.length; i++) dst[i] = f16FromF32Bits(bits[i] as number);
  else for (let i = 0; i < bits.length; i++) dst[i] = bf16FromF32Bits(bits[i] as number);
  return out.subarray(0, src.length * 2);
}

function validate(t: TensorToWrite, seen: Set<string>): number {
  if (typeof t.name !== 'string' || t.name.length === 0 || t.name === '__metadata__') {
    throw new VlaError(ErrorCodes.INPUT, `safetensors: invalid tensor name ${JSON.stringify(t.name)}`);
  }
  if (seen.has(t.name)) throw new VlaError(ErrorCodes.INPUT, `safetensors: tensor '${t.name}' given twice`);
  seen.add(t.name);
  if (!(t.dtype in BYTES)) throw new VlaError(ErrorCodes.DTYPE, `safetensors: tensor '${t.name}' has unsupported dtype '${String(t.dtype)}'`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new VlaError(ErrorCodes.INPUT, `safetensors: tensor '${t.name}' has invalid shape ${JSON.stringify(t.shape)}`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (typeof t.data !== 'function' && t.data.length !== n) {
    throw new VlaError(ErrorCodes.INPUT, `safetensors: tensor '${t.name}' has ${t.data.length} values, shape ${JSON.stringify(t.shape)} needs ${n}`);
  }
  return n;
}

/** The header bytes (JSON padded with spaces to a multiple of 8) for tensors already sorted. */
function buildHeader(sorted: Array<{ t: TensorToWrite; n: number }>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const meta: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      const v = metadata[k];
      if (typeof v !== 'string') throw new VlaError(ErrorCodes.INPUT, `safetensors: metadata '${k}' must be a string`);
      meta[k] = v;
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const { t, n } of sorted) {
    const bytes = n * BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  return padded;
}

/**
 * Writes a safetensors file tensor by tensor (never the whole file in memory), tensors sorted by
 * name with contiguous offsets; the file appears atomically (written to a temp name, renamed).
 */
export async function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  if (os.endianness() !== 'LE') throw new VlaError(ErrorCodes.INTERNAL, 'safetensors writer needs a little-endian host');
  const seen = new Set<string>();
  const sorted = tensors.map((t) => ({ t, n: validate(t, seen) })).sort((a, b) => (a.t.name < b.t.name ? -1 : a.t.name > b.t.name ? 1 : 0));
  const header = buildHeader(sorted, metadata);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));

  const tmp = `${path}.tmp-${process.pid}`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'w');
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${path}: ${(err as Error).message}`, { file: path }, { cause: err });
  }
  let ok = false;
  try {
    const file = fh;
    // small tensors are gathered into one buffer: one write per few MB, not per tensor
    const out = Buffer.alloc(CHUNK * 4);
    let fill = 0;
    const flush = async (): Promise<void> => {
      let done = 0;
      while (done < fill) done += (await file.write(out, done, fill - done)).bytesWritten;
      fill = 0;
    };
    const append = async (bytes: Uint8Array): Promise<void> => {
      if (fill + bytes.length > out.length) await flush();
      out.set(bytes, fill);
      fill += bytes.length;
    };
    await append(prefix);
    if (header.length > out.length) {
      await flush();
      let done = 0;
      while (done < header.length) done += (await file.write(header, done, header.length - done)).bytesWritten;
    } else {
      await append(header);
    }
    const scratch = Buffer.alloc(CHUNK * 2);
    for (const { t, n } of sorted) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (!(data instanceof Float32Array) || data.length !== n) {
        throw new VlaError(ErrorCodes.INPUT, `safetensors: tensor '${t.name}' produced ${data?.length} values, shape ${JSON.stringify(t.shape)} needs ${n}`);
      }
      for (let i = 0; i < n; i += CHUNK) await append(encodeChunk(data.subarray(i, Math.min(n, i + CHUNK)), t.dtype, scratch));
    }
    await flush();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
    ok = true;
  } catch (err) {
    if (err instanceof VlaError) throw err;
    throw new VlaError(ErrorCodes.IO, `${path}: ${(err as Error).message}`, { file: path }, { cause: err });
  } finally {
    if (fh) await fh.close().catch(() => undefined);
    if (!ok) await rm(tmp, { force: true }).catch(() => undefined);
  }
}
