#!/usr/bin/env node
// Configures and builds the native code with cmake-js into build/.
//   node scripts/build-native.js              the addon and the engine library (npm run build)
//   node scripts/build-native.js --tests      also the native tests ctest runs (npm test)
//   node scripts/build-native.js --target T   one CMake target, e.g. bench-cpu
// Environment: each variable that is set is passed to CMake (build/ is reconfigured with it); one
// that is not keeps build/'s cached value (on a fresh build/, the default):
//   VLA_CUDA=AUTO|ON|OFF       the CUDA backend (default AUTO: where nvcc and an NVIDIA driver are found)
//   VLA_CUDA_EMULATION=ON|OFF  the CUDA backend's tests on its CPU emulation too (default OFF; CI: ON)
//   VLA_CUDA_ARCHITECTURES     e.g. 87 (Orin) or 90 (H100/H200); default 87;90
//   VLA_BUILD_TYPE=Debug, VLA_NATIVE=OFF (no -march=native)
// Node's headers come from the local installation (no download): npm's `nodedir`, else the
// directory next to this node binary.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const targets = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--tests') targets.push('vla-tests');
  else if (argv[i] === '--target' && argv[i + 1]) targets.push(argv[++i]);
  else {
    process.stderr.write(`VLA_E_ARGS: build-native: unknown argument '${argv[i]}' (--tests, --target <name>)\n`);
    process.exit(2);
  }
}

const env = { ...process.env };
if (!env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
}
const onOff = (name, dflt) => {
  const v = (env[name] ?? dflt).toUpperCase();
  return ['1', 'TRUE', 'YES'].includes(v) ? 'ON' : ['0', 'FALSE', 'NO'].includes(v) ? 'OFF' : v;
};
const defs = [];
if (env.VLA_CUDA) defs.push(`VLA_CUDA=${env.VLA_CUDA.toUpperCase()}`);
if (env.VLA_CUDA_EMULATION) defs.push(`VLA_CUDA_EMULATION=${onOff('VLA_CUDA_EMULATION', 'OFF')}`);
if (env.VLA_CUDA_ARCHITECTURES) defs.push(`VLA_CUDA_ARCHITECTURES=${env.VLA_CUDA_ARCHITECTURES}`);
if (env.VLA_BUILD_TYPE) defs.push(`CMAKE_BUILD_TYPE=${env.VLA_BUILD_TYPE}`);
if (env.VLA_NATIVE) defs.push(`VLA_NATIVE=${onOff('VLA_NATIVE', 'ON')}`);
const common = ['--out', 'build', ...(env.npm_config_nodedir ? ['--directory', '.'] : [])];

const t0 = Date.now();
const phase = (n, what) => process.stdout.write(`\nvla: [${n}/2] ${what}\n`);
const run = (args) => {
  const r = spawnSync('npx', ['--no-install', 'cmake-js', ...args], { stdio: 'inherit', env });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

// Configure at every call, so that the options above take effect on an existing build/ (cmake-js
// `build` alone would keep the cached ones); an unchanged configuration takes seconds.
phase(1, `configure build/${defs.length ? ` (${defs.join(' ')})` : ''}`);
run(['configure', ...common, ...defs.map((d) => `--CD${d}`)]);
const what = targets.length ? `the target${targets.length > 1 ? 's' : ''} ${targets.join(', ')}` : 'the addon and the engine library';
phase(2, `compile ${what} (ninja counts [done/total] steps)`);
if (!targets.length) run(['build', ...common]);
for (const t of targets) run(['build', ...common, '--target', t]);
process.stdout.write(`vla: native build done in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
