/**
 * The ament package's metadata: ros/package.xml and msg/package.xml validate against REP 149's
 * schema (a committed copy, ros/schema/), and the package installs the executables it has.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import { validateXML } from 'xmllint-wasm';

import { root } from '../addon/helpers.js';

const schemaDir = path.join(root, 'ros', 'schema');
const schema = { fileName: 'package_format3.xsd', contents: readFileSync(path.join(schemaDir, 'package_format3.xsd'), 'utf8') };
const preload = [{ fileName: 'package_common.xsd', contents: readFileSync(path.join(schemaDir, 'package_common.xsd'), 'utf8') }];

async function validate(fileName: string, contents: string): Promise<string[]> {
  const r = await validateXML({ xml: [{ fileName, contents }], schema: [schema], preload });
  return r.valid ? [] : r.errors.map((e) => e.message);
}

describe('ament package metadata (ros)', function () {
  this.timeout(60_000);
  for (const rel of ['ros/package.xml', 'msg/package.xml']) {
    it(`${rel} is a valid REP 149 (format 3) manifest`, async () => {
      const xml = readFileSync(path.join(root, rel), 'utf8');
      assert.match(xml, /<package format="3">/);
      assert.deepEqual(await validate(rel, xml), []);
    });
  }

  it('the validation can fail: a manifest without a licence, one with an unknown element', async () => {
    const xml = readFileSync(path.join(root, 'ros', 'package.xml'), 'utf8');
    const noLicence = xml.replace(/\s*<license>[^<]*<\/license>/, '');
    assert.ok((await validate('no-licence.xml', noLicence)).some((m) => /license/.test(m)));
    const unknown = xml.replace('<buildtool_depend>', '<run_depend>x</run_depend><buildtool_depend>');
    assert.ok((await validate('unknown.xml', unknown)).some((m) => /run_depend/.test(m)));
  });

  it('declares what the node needs: rclnodejs\' libraries, Node.js, the messages it uses, launch', () => {
    const xml = readFileSync(path.join(root, 'ros', 'package.xml'), 'utf8');
    const deps = new Set([...xml.matchAll(/<(?:depend|exec_depend|build_depend)>([^<]+)</g)].map((m) => m[1]));
    for (const d of ['nodejs', 'rcl', 'rcl_lifecycle', 'rmw', 'rosidl_runtime_c', 'autoprune_ros_msgs', 'sensor_msgs', 'nav_msgs', 'std_msgs', 'diagnostic_msgs', 'geometry_msgs', 'lifecycle_msgs', 'launch_ros']) assert.ok(deps.has(d), d);
    // rclnodejs links exactly these ROS libraries (its binding.gyp): each is a dependency
    const gyp = readFileSync(path.join(root, 'node_modules', 'rclnodejs', 'binding.gyp'), 'utf8');
    const libs = [...gyp.slice(gyp.indexOf("'libraries'")).matchAll(/'-l(rcl\w*|rcutils|rcpputils|rmw|rosidl_runtime_c)'/g)].map((m) => m[1]);
    assert.ok(libs.length >= 8, 'libraries parsed from binding.gyp');
    for (const l of libs) assert.ok(deps.has(l as string), `rclnodejs links -l${l}; package.xml lacks it`);
  });

  it('installs every launcher in ros/scripts (executable, running node on the built entry point) and is the only package colcon sees with msg/', () => {
    const cmake = readFileSync(path.join(root, 'ros', 'CMakeLists.txt'), 'utf8');
    const programs = /install\(PROGRAMS ([^)]*) DESTINATION lib\/\$\{PROJECT_NAME\}\)/.exec(cmake)?.[1]?.split(/\s+/).filter(Boolean) ?? [];
    const scripts = readdirSync(path.join(root, 'ros', 'scripts'));
    assert.deepEqual(programs.map((p) => path.basename(p)).sort(), scripts.sort());
    for (const s of scripts) {
      const f = path.join(root, 'ros', 'scripts', s);
      assert.ok(statSync(f).mode & 0o111, `${s} is executable`);
      const main = /share\/autoprune_ros\/(dist\/[\w/.-]+\.js)/.exec(readFileSync(f, 'utf8'))?.[1];
      assert.ok(main && existsSync(path.join(root, 'src', main.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${s} runs ${main}, built from src/`);
    }
    assert.ok(existsSync(path.join(root, 'COLCON_IGNORE')), 'the repository root (cmake-js CMakeLists.txt) is not a colcon package');
  });
});
