/**
 * Where the package's own files are, whether running from src/ (tsx) or dist/: the one place
 * that knows the layout of the checkout (models, sample frames, configs, message definitions).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (this file is src/util/paths.ts or dist/util/paths.js). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The native addon cmake-js builds (VLA_ADDON overrides it at load time). */
export const ADDON_FILE = path.join(packageRoot, 'build', 'Release', 'vla_addon.node');

/** The generated tiny model the demo and the sample config use (written on first use). */
export const DEFAULT_MODEL_DIR = path.join(packageRoot, 'build', 'models', 'tiny');

/** The bundled sample frames and instruction of `demo`. */
export const SAMPLE_FRAMES_DIR = path.join(packageRoot, 'assets', 'sample');

/** Node parameter files and their schema. */
export const CONFIG_DIR = path.join(packageRoot, 'configs');
export const SAMPLE_CONFIG = path.join(CONFIG_DIR, 'sample-drive.yaml');
export const PARAMS_SCHEMA = path.join(CONFIG_DIR, 'autoprune_ros.schema.json');

/** Our .msg definitions, and the vendored ones of packages outside the standard set. */
export const OWN_MSG_DIR = path.join(packageRoot, 'msg', 'msg');
export const EXT_MSG_DIR = path.join(packageRoot, 'msg', 'ext');

/** A relative model path is taken from the working directory when it exists there, else from the package. */
export function resolveModelPath(p: string): string {
  if (path.isAbsolute(p) || existsSync(p)) return path.resolve(p);
  return path.join(packageRoot, p);
}
