import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, writeSafetensors, type TensorToWrite } from '../../src/model/safetensors-writer.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function readHeader(file: string): { n: number; raw: string; header: Record<string, unknown>; buf: Buffer } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const raw = buf.subarray(8, 8 + n).toString('utf8');
  return { n, raw, header: JSON.parse(raw) as Record<string, unknown>, buf };
}

const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

describe('safetensors writer: dtype conversion', () => {
  it('converts known values to f16 exactly', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2.5, 0xc100],
      [0.5, 0x3800],
      [65504, 0x7bff], // largest finite
      [65519, 0x7bff], // just below the halfway point to 65536
      [65520, 0x7c00], // halfway to 65536: ties to even = overflow to inf
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -24, 0x0001], // smallest subnormal
      [1e-7, 0x0002], // 1.68 * 2^-24
      [6e-8, 0x0001],
      [1e-8, 0x0000], // below half the smallest subnormal: underflows to zero
      [-1e-8, 0x8000],
      [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even (0)
      [3 * 2 ** -25, 0x0002], // 1.5 ulp: ties to even (2)
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and 1+2^-10: even is 1
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between odd and even: rounds up to even
      [2049, 0x6800], // halfway between 2048 and 2050: 2048
      [2051, 0x6802], // halfway between 2050 and 2052: 2052
      [0.1, 0x2e66],
    ];
    for (const [v, bits] of cases) assert.equal(f32ToF16Bits(v), bits, `f16(${v}) = 0x${f32ToF16Bits(v).toString(16)}, want 0x${bits.toString(16)}`);
    assert.ok(isNaN16(f32ToF16Bits(NaN)));
    assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
    assert.equal(f16BitsToF32(0x7bff), 65504);
    assert.equal(f16BitsToF32(0x0001), 2 ** -24);
    assert.equal(f16BitsToF32(0xfc00), -Infinity);
  });

  it('round-trips every f16 bit pattern and rounds midpoints to even', () => {
    for (let h = 0; h < 0x10000; h++) {
      if (isNaN16(h)) continue;
      assert.equal(f32ToF16Bits(f16BitsToF32(h)), h, `bits 0x${h.toString(16)}`);
    }
    // the midpoint between neighbours goes to the even one; a hair either side goes to the nearer one
    const below = (x: number) => x - Math.abs(x) * 2 ** -20;
    const above = (x: number) => x + Math.abs(x) * 2 ** -20;
    for (let h = 1; h < 0x7bff; h += 37) {
      const lo = f16BitsToF32(h), hi = f16BitsToF32(h + 1);
      const mid = (lo + hi) / 2;
      assert.equal(f32ToF16Bits(mid), h % 2 === 0 ? h : h + 1, `midpoint after 0x${h.toString(16)}`);
      assert.equal(f32ToF16Bits(below(mid)), h);
      assert.equal(f32ToF16Bits(above(mid)), h + 1);
      assert.equal(f32ToF16Bits(-mid), 0x8000 | (h % 2 === 0 ? h : h + 1));
    }
  });

  it('converts known values to bf16 exactly', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3f80],
      [-2.5, 0xc020],
      [65504, 0x4780], // 65504 = 0x477fe000 rounds up to 65536
      [1 + 2 ** -8, 0x3f80], // halfway: even
      [1 + 3 * 2 ** -8, 0x3f82], // halfway: up to even
      [1 + 2 ** -8 + 2 ** -20, 0x3f81], // just above halfway
      [3.4028234663852886e38, 0x7f80], // max f32 rounds to inf
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [1e-40, 0x0001], // f32 subnormal 0x000116c2
      [2 ** -140, 0x0000], // f32 subnormal 0x00000200: below half a bf16 subnormal ulp
    ];
    for (const [v, bits] of cases) assert.equal(f32ToBf16Bits(v), bits, `bf16(${v}) = 0x${f32ToBf16Bits(v).toString(16)}, want 0x${bits.toString(16)}`);
    const nan = f32ToBf16Bits(NaN);
    assert.equal(nan & 0x7f80, 0x7f80);
    assert.notEqual(nan & 0x7f, 0);
    assert.ok(Number.isNaN(bf16BitsToF32(nan)));
    assert.equal(bf16BitsToF32(0x3f80), 1);
    assert.equal(bf16BitsToF32(0xc020), -2.5);
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0) continue;
      assert.equal(f32ToBf16Bits(bf16BitsToF32(h)), h);
    }
  });
});

describe('safetensors writer: file layout', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-st-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const values = Float32Array.from([1, -2.5, 65504, 1e-8, NaN, Infinity, -Infinity, 0.1, 3.14159]);

  it('writes a sorted, aligned header with contiguous offsets and converted data', async () => {
    const file = path.join(tmp, 'a.safetensors');
    const lazyCalls: number[] = [];
    const tensors: TensorToWrite[] = [
      { name: 'z.last', dtype: 'F32', shape: [3, 3], data: values },
      { name: 'b.half', dtype: 'F16', shape: [9], data: values },
      { name: 'a.brain', dtype: 'BF16', shape: [1, 9], data: values },
      { name: 'm.lazy', dtype: 'F32', shape: [2, 1], data: () => (lazyCalls.push(1), Float32Array.from([7, 8])) },
      { name: 'c.empty', dtype: 'F16', shape: [0, 4], data: new Float32Array(0) },
      { name: 'd.odd', dtype: 'F16', shape: [3], data: Float32Array.from([1, 2, 3]) },
    ];
    await writeSafetensors(file, tensors, { format: 'pt', b: 'x' });
    assert.equal(lazyCalls.length, 1);
    assert.deepEqual(readdirSync(tmp), ['a.safetensors'], 'no temporary file left');

    const { n, raw, header, buf } = readHeader(file);
    assert.equal(n % 8, 0, 'header length is a multiple of 8');
    assert.equal(raw, raw.trimEnd() + ' '.repeat(raw.length - raw.trimEnd().length), 'padded with spaces');
    assert.ok(raw.length - raw.trimEnd().length < 8);
    assert.deepEqual(Object.keys(header), ['__metadata__', 'a.brain', 'b.half', 'c.empty', 'd.odd', 'm.lazy', 'z.last']);
    assert.deepEqual(header.__metadata__, { b: 'x', format: 'pt' });

    let offset = 0;
    const entries = Object.entries(header).filter(([k]) => k !== '__metadata__') as Array<[string, Entry]>;
    for (const [name, e] of entries) {
      assert.equal(e.data_offsets[0], offset, `${name} starts where the previous tensor ended`);
      const count = e.shape.reduce((a, b) => a * b, 1);
      assert.equal(e.data_offsets[1] - e.data_offsets[0], count * (e.dtype === 'F32' ? 4 : 2), name);
      offset = e.data_offsets[1];
    }
    assert.equal(buf.length, 8 + n + offset, 'file ends with the last tensor');

    const data = (name: string) => {
      const e = header[name] as Entry;
      return buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    };
    const f32 = data('z.last');
    const back32 = Array.from({ length: 9 }, (_, i) => f32.readFloatLE(i * 4));
    assert.deepEqual(back32, Array.from(values));
    const f16 = data('b.half');
    const bits16 = Array.from({ length: 9 }, (_, i) => f16.readUInt16LE(i * 2));
    assert.deepEqual(bits16.filter((_, i) => i !== 4), [0x3c00, 0xc100, 0x7bff, 0x0000, 0x7c00, 0xfc00, 0x2e66, 0x4248]);
    assert.ok(isNaN16(bits16[4] as number));
    const bf = data('a.brain');
    const bitsBf = Array.from({ length: 9 }, (_, i) => bf.readUInt16LE(i * 2));
    assert.deepEqual(bitsBf.filter((_, i) => i !== 4), [0x3f80, 0xc020, 0x4780, 0x322c, 0x7f80, 0xff80, 0x3dcd, 0x4049]);
    assert.deepEqual(Array.from({ length: 2 }, (_, i) => data('m.lazy').readFloatLE(i * 4)), [7, 8]);
    assert.equal(data('c.empty').length, 0);
    assert.deepEqual([0, 1, 2].map((i) => f16BitsToF32(data('d.odd').readUInt16LE(i * 2))), [1, 2, 3]);
  });

  it('is deterministic whatever the input order', async () => {
    const t = (name: string, v: number): TensorToWrite => ({ name, dtype: 'F16', shape: [2], data: Float32Array.from([v, -v]) });
    await writeSafetensors(path.join(tmp, 'x1'), [t('b', 1), t('a', 2), t('c', 3)]);
    await writeSafetensors(path.join(tmp, 'x2'), [t('c', 3), t('b', 1), t('a', 2)]);
    assert.deepEqual(readFileSync(path.join(tmp, 'x1')), readFileSync(path.join(tmp, 'x2')));
    const { header } = readHeader(path.join(tmp, 'x1'));
    assert.equal('__metadata__' in header, false);
  });

  it('rejects bad tensors with coded errors and leaves no file', async () => {
    const file = path.join(tmp, 'bad.safetensors');
    const expectCode = async (tensors: TensorToWrite[], code: string, re: RegExp) => {
      await assert.rejects(writeSafetensors(file, tensors), (err: unknown) => {
        assert.ok(err instanceof VlaError);
        assert.equal(err.code, code, err.message);
        assert.match(err.message, re);
        return true;
      });
      assert.equal(existsSync(file), false);
    };
    await expectCode([{ name: 'w', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }], ErrorCodes.INPUT, /'w'.*3 values/);
    await expectCode([{ name: 'w', dtype: 'F32', shape: [2], data: () => new Float32Array(5) }], ErrorCodes.INPUT, /'w' produced 5/);
    await expectCode([{ name: 'w', dtype: 'F32', shape: [1], data: new Float32Array(1) }, { name: 'w', dtype: 'F16', shape: [1], data: new Float32Array(1) }], ErrorCodes.INPUT, /twice/);
    await expectCode([{ name: 'w', dtype: 'I8' as 'F32', shape: [1], data: new Float32Array(1) }], ErrorCodes.DTYPE, /I8/);
    await expectCode([{ name: 'w', dtype: 'F32', shape: [-1], data: new Float32Array(0) }], ErrorCodes.INPUT, /shape/);
    await expectCode([{ name: '__metadata__', dtype: 'F32', shape: [1], data: new Float32Array(1) }], ErrorCodes.INPUT, /name/);
    assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('bad')), []);
    await assert.rejects(writeSafetensors(path.join(tmp, 'no', 'such', 'dir', 'w.safetensors'), []), (err: unknown) => err instanceof VlaError && err.code === ErrorCodes.IO && /no[/\\]such/.test(err.message));
  });
});
