/**
 * The rclnodejs stand-in is typed against rclnodejs' own declarations: this compiles it (and
 * the node it drives) with the project's compiler settings, so a change of rclnodejs' API fails
 * here, not first on a ROS 2 machine.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';

const here = path.dirname(fileURLToPath(import.meta.url));

describe('rclnodejs stand-in types (ros)', function () {
  this.timeout(120_000);
  it('the stand-in, the tests that drive main.ts through it, and src/ type-check against node_modules/rclnodejs/types', () => {
    const configFile = path.join(here, 'tsconfig.json');
    const read = ts.readConfigFile(configFile, (f) => ts.sys.readFile(f));
    assert.equal(read.error, undefined);
    const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, here);
    assert.ok(parsed.fileNames.some((f) => f.endsWith('rclnodejs-standin.ts')));
    const program = ts.createProgram(parsed.fileNames, parsed.options);
    const diags = ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? path.relative(here, d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    assert.deepEqual(diags, []);
    // the declarations it was checked against are rclnodejs' own
    const decl = program.getSourceFiles().find((f) => /node_modules[\\/]rclnodejs[\\/]types[\\/]lifecycle\.d\.ts$/.test(f.fileName));
    assert.ok(decl, 'rclnodejs types/lifecycle.d.ts took part');
  });
});
