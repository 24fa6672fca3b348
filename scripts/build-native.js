#!/usr/bin/env node
// Builds the addon and the native tests with cmake-js into build/.
// VLA_CUDA=AUTO|ON|OFF (default AUTO) picks the CUDA backend; CMake prints what it found;
// VLA_CUDA_ARCHITECTURES (default 87;90) the GPU architectures it is compiled for.
// Node's headers come from the local installation (no download): npm's `nodedir`, else the
// directory next to this node binary.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const env = { ...process.env };
if (!env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
}
const cuda = (env.VLA_CUDA ?? 'AUTO').toUpperCase();
const args = ['cmake-js', 'compile', '--out', 'build', `--CDVLA_CUDA=${cuda}`];
if (env.VLA_BUILD_TYPE) args.push(`--CDCMAKE_BUILD_TYPE=${env.VLA_BUILD_TYPE}`);
// e.g. 87 alone on a Jetson Orin (scripts/jetson-setup.sh): one architecture compiles in a third of the time
if (env.VLA_CUDA_ARCHITECTURES) args.push(`--CDVLA_CUDA_ARCHITECTURES=${env.VLA_CUDA_ARCHITECTURES}`);
if (env.VLA_NATIVE) args.push(`--CDVLA_NATIVE=${env.VLA_NATIVE}`);
if (env.npm_config_nodedir) args.push('--directory', '.');
const r = spawnSync('npx', ['--no-install', ...args], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
