/**
 * Seeded randomness and byte mutators for the fuzz harness: the same seed gives the same cases
 * on every machine, so a failure prints a seed that reproduces it.
 */

/** mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** A case's seed from the run's seed, the target and the case number (stable across runs). */
export function caseSeed(runSeed: number, target: string, index: number): number {
  let h = 2166136261 ^ runSeed;
  for (const c of `${target}#${index}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return h >>> 0;
}

/** Values that tend to find bugs in length and count fields. */
export const INTERESTING_U64: readonly bigint[] = [0n, 1n, 2n, 7n, 8n, 255n, 256n, 4095n, 4096n, 65535n, 65536n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 1n << 30n, 1n << 40n, (1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];

/** One random byte-level mutation of `b` (a new buffer). */
export function mutateBytes(b: Buffer, r: Rng): Buffer {
  const out = Buffer.from(b);
  const at = () => r.int(Math.max(1, out.length));
  switch (r.int(8)) {
    case 0: // flip bits
      for (let k = 0, n = 1 + r.int(8); k < n && out.length; k++) out[at()] ^= 1 << r.int(8);
      return out;
    case 1: // truncate
      return out.subarray(0, r.int(out.length + 1));
    case 2: // interesting u32
      if (out.length >= 4) out.writeUInt32LE(Number(r.pick(INTERESTING_U64) & 0xffffffffn), r.int(out.length - 3));
      return out;
    case 3: // interesting u64
      if (out.length >= 8) out.writeBigUInt64LE(r.pick(INTERESTING_U64), r.int(out.length - 7));
      return out;
    case 4: // overwrite a run of bytes
      for (let i = at(), n = 1 + r.int(64); n > 0 && i < out.length; i++, n--) out[i] = r.pick([0, 0xff, 0x7f, 0x80, r.int(256)]);
      return out;
    case 5: { // duplicate a range
      const s = at(), e = Math.min(out.length, s + 1 + r.int(512));
      return Buffer.concat([out.subarray(0, e), out.subarray(s, e), out.subarray(e)]);
    }
    case 6: { // delete a range
      const s = at(), e = Math.min(out.length, s + 1 + r.int(512));
      return Buffer.concat([out.subarray(0, s), out.subarray(e)]);
    }
    default: // random tail
      return Buffer.concat([out, Buffer.from(Array.from({ length: 1 + r.int(256) }, () => r.int(256)))]);
  }
}

/** Several mutations in a row. */
export function mutateBytesN(b: Buffer, r: Rng, max = 4): Buffer {
  let out = b;
  for (let k = 0, n = 1 + r.int(max); k < n; k++) out = mutateBytes(out, r);
  return out;
}
