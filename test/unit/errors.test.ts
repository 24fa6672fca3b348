import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
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

  it('status.h comments and code_name() in status.cpp name each native code alike', () => {
    const byMember = new Map([...status.matchAll(/^\s+(\w+),\s*\/\/ (VLA_E_[A-Z_]+):/gm)].map((m) => [m[1], m[2]]));
    const cpp = readFileSync(path.join(root, 'native', 'core', 'status.cpp'), 'utf8');
    const named = new Map([...cpp.matchAll(/case Code::(\w+): return "(VLA_E_[A-Z_]+)"/g)].map((m) => [m[1], m[2]]));
    assert.equal(byMember.size, native.size);
    assert.deepEqual([...named].sort(), [...byMember].sort());
  });

  it('every table row says where, what it means and what to do', () => {
    for (const line of docs.split('\n').filter((l) => l.startsWith('| `VLA_E_'))) {
      const cells = line.split(' | ').map((c) => c.replace(/^\|\s*|\s*\|$/g, '').trim());
      assert.equal(cells.length, 4, line);
      for (const c of cells) assert.ok(c.length > 0, line);
    }
    assert.equal(docs.split('\n').filter((l) => l.startsWith('| `VLA_E_')).length, documented.size, 'a code documented twice');
  });

  it('every VLA_E_* spelled anywhere in src/, native/, bin/ or scripts/ is a documented code (no typo makes a code of its own)', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const f of readdirSync(d)) {
        const p = path.join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.(ts|js|cjs|mjs|cpp|h|cu|cuh|py)$/.test(f)) files.push(p);
      }
    };
    for (const d of ['src', 'native', 'bin', 'scripts']) walk(path.join(root, d));
    const spelled = new Map<string, string>();
    for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/\bVLA_E_[A-Z0-9_]*[A-Z0-9]\b/g)) if (!spelled.has(m[0])) spelled.set(m[0], path.relative(root, f));
    assert.ok(spelled.size >= 20);
    // VLA_E_X: status.h's example of the string form
    const unknown = [...spelled].filter(([c]) => !documented.has(c) && c !== 'VLA_E_X');
    assert.deepEqual(unknown, []);
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
