#!/usr/bin/env node
// Writes src/pipeline/params.generated.ts, the TypeScript type of the node's parameters, from
// configs/autoprune_ros.schema.json (the contract) with json-schema-to-typescript. Run it
// (`npm run gen:params`) after changing the schema; test/unit/params.test.ts fails while the
// committed file and the schema disagree.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { compile } from 'json-schema-to-typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SCHEMA_FILE = path.join(root, 'configs', 'autoprune_ros.schema.json');
export const GENERATED_FILE = path.join(root, 'src', 'pipeline', 'params.generated.ts');

const BANNER = `/*
 * Generated from configs/autoprune_ros.schema.json by scripts/gen-params-types.js
 * (json-schema-to-typescript): do not edit; run \`npm run gen:params\` after changing the schema.
 */`;

/** The file's text as the schema gives it now. */
export async function generateParamsTypes() {
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8'));
  // minItems/maxItems would become tuple types; the validator enforces them at run time.
  return compile(schema, 'NodeParameters', { bannerComment: BANNER, additionalProperties: false, ignoreMinAndMaxItems: true, style: { singleQuote: true, printWidth: 140 } });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(GENERATED_FILE, await generateParamsTypes());
  process.stdout.write(`wrote ${path.relative(root, GENERATED_FILE)}\n`);
}
