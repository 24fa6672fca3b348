/**
 * Which of the bundled node parameter files (configs/*.yaml) fits a recording, for a replay or
 * an evaluation run without --config: the first whose camera topics (resolved as the node
 * resolves them, then remapped) are all in the bag, among those whose model is on this machine
 * (the bundled one). A config that fits the bag but names a model the user supplies is not
 * taken; the error names it, with every other config's missing topics.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { parse as parseYaml } from 'yaml';

import { loadParamsFile } from '../pipeline/params.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { CONFIG_DIR, packageRoot, resolveModelPath, SAMPLE_CONFIG } from '../util/paths.js';
import { resolveTopic } from './port.js';

const NODE_NAME = 'autoprune_ros';

export interface ConfigFit {
  file: string;
  /** Resolved, remapped camera topics the config subscribes to. */
  cameraTopics: string[];
  /** Those of them the bag lacks. */
  missing: string[];
  /** The config's model directory exists here (the bundled model, or one the user has put there). */
  modelHere: boolean;
  modelPath: string;
}

/**
 * Whether a parameter file is one of the node's: it names cameras. configs/ also holds the
 * parameters of other nodes (the CARLA control node), which a replay cannot run.
 */
function isNodeConfig(file: string): boolean {
  try {
    const doc = parseYaml(readFileSync(file, 'utf8')) as Record<string, { ros__parameters?: Record<string, unknown> }> | null;
    return Object.values(doc ?? {}).some((section) => section?.ros__parameters !== undefined && 'camera_names' in section.ros__parameters);
  } catch {
    return false;
  }
}

/** The node's bundled parameter files, the sample drive's first (the layout `make-sample-drive` and `make-test-drives` write). */
export function bundledConfigFiles(dir = CONFIG_DIR): string[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && isNodeConfig(path.join(dir, f)))
    .map((f) => path.join(dir, f))
    .sort((a, b) => Number(b === SAMPLE_CONFIG) - Number(a === SAMPLE_CONFIG) || a.localeCompare(b));
  return files;
}

/** How each bundled config fits a bag with these topics. */
export function fitConfigs(bagTopics: Iterable<string>, remaps: ReadonlyMap<string, string> = new Map(), files = bundledConfigFiles()): ConfigFit[] {
  const have = new Set(bagTopics);
  return files.map((file) => {
    const c = loadParamsFile(file);
    const cameraTopics = c.node.cameras.map((cam) => resolveTopic(cam.topic, NODE_NAME, remaps));
    const modelPath = resolveModelPath(c.engine.modelPath);
    return { file, cameraTopics, missing: cameraTopics.filter((t) => !have.has(t)), modelHere: existsSync(path.join(modelPath, 'config.json')), modelPath: c.engine.modelPath };
  });
}

const rel = (f: string) => path.relative(process.cwd(), f) || f;

/**
 * The bundled config to replay this bag with, or a VLA_E_INPUT that names, per config, the
 * camera topics the bag lacks, and the bag's own image topics to remap them onto.
 */
export function chooseBundledConfig(bag: string, topics: ReadonlyArray<{ name: string; type: string }>, remaps: ReadonlyMap<string, string> = new Map(), files = bundledConfigFiles()): string {
  const fits = fitConfigs(topics.map((t) => t.name), remaps, files);
  const ok = fits.find((f) => !f.missing.length && f.modelHere);
  if (ok) return ok.file;
  const images = topics.filter((t) => /^sensor_msgs\/msg\/(Compressed)?Image$/.test(t.type)).map((t) => t.name);
  const lines = [`${rel(bag)}: no --config given, and no bundled config with a model on this machine has all its camera topics in the bag (its image topics: ${images.join(', ') || 'none'}):`];
  for (const f of fits) {
    const name = path.relative(packageRoot, f.file);
    if (!f.missing.length) lines.push(`  ${name}: every camera topic matches, but its model ${f.modelPath} is not here: --config ${name} --model <your model>`);
    else lines.push(`  ${name}: missing ${f.missing.join(', ')}`);
  }
  lines.push('Pass --config FILE, or map the config\'s camera topics onto the bag\'s with --remap FROM:=TO.');
  throw new VlaError(ErrorCodes.INPUT, lines.join('\n'), { bag, images });
}
