import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ErrorCodes, VlaError, isVlaError } from '../../src/util/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('error codes', () => {
  const docs = readFileSync(path.join(root, 'docs', 'errors.md'), 'utf8');
  const documented = new Set([...docs.matchAll(/^\| `(VLA_E_[A-Z_]+)` \|/gm)].map((m) => m[1]));
  const status = readFileSync(path.join(root, 'native', 'include', 'vla', 'status.h'), 'utf8');
  const native = new Set([...status.matchAll(/\/\/ (VLA_E_[A-Z_]+):/g)].map((m) => m[1]));

  it('every TypeScript code is documented, and every documented code exists', () => {
    const ts = new Set<string>(Object.values(ErrorCodes));
    assert.deepEqual([...ts].sort(), [...documented].sort());
  });

  it('every native code in status.h is a TypeScript code', () => {
    assert.ok(native.size >= 14);
    for (const c of native) assert.ok(Object.values(ErrorCodes).includes(c as never), c);
  });

  it('wraps native errors by their code and keeps unknown ones internal', () => {
    const n = Object.assign(new Error('bad shape'), { code: 'VLA_E_TENSOR_SHAPE' });
    const e = VlaError.from(n);
    assert.equal(e.code, ErrorCodes.TENSOR_SHAPE);
    assert.equal(e.message, 'bad shape');
    assert.equal(VlaError.from(Object.assign(new Error('x'), { code: 'ENOENT' })).code, ErrorCodes.INTERNAL);
    assert.equal(VlaError.from('plain').code, ErrorCodes.INTERNAL);
    assert.ok(isVlaError(e, ErrorCodes.TENSOR_SHAPE));
    assert.ok(!isVlaError(n));
  });
});
