import { ErrorCodes, VlaError } from '../util/errors.js';

/** The prompt fields of config.json's `vla` section. */
export interface PromptConfig {
  system_prompt: string;
  /** With `{system}`, `{images}` and `{instruction}` placeholders. */
  prompt_template: string;
  /** Repeated once per view (in camera order) into `{images}`; holds the image token. */
  image_prompt: string;
}

/** A plain LLaVA-1.5 checkpoint (config.json without a `vla` section). */
export const DEFAULT_PROMPT: Readonly<PromptConfig> = Object.freeze({
  system_prompt: '',
  prompt_template: 'USER: {images}{instruction} ASSISTANT:',
  image_prompt: '<image>\n',
});

/** The prompt the generated models (src/model/tiny.ts) carry, as in docs/model-format.md. */
export const DRIVING_PROMPT: Readonly<PromptConfig> = Object.freeze({
  system_prompt: 'You are a driving assistant.',
  prompt_template: '{system} USER: {images}\n{instruction} ASSISTANT:',
  image_prompt: '<image>\n',
});

const PLACEHOLDER = /\{system\}( ?)|\{images\}|\{instruction\}/g;

/**
 * Fills the template in one pass, so placeholder-like text inside the instruction or the system
 * prompt stays literal. An empty system prompt also drops the single space after `{system}`,
 * so the prompt does not start with a stray space.
 */
export function buildPrompt(vla: PromptConfig, instruction: string, nViews: number): string {
  if (typeof instruction !== 'string') throw new VlaError(ErrorCodes.INPUT, 'instruction must be a string');
  if (!Number.isInteger(nViews) || nViews < 0) throw new VlaError(ErrorCodes.INPUT, `the number of views must be a non-negative integer, got ${nViews}`);
  for (const key of ['system_prompt', 'prompt_template', 'image_prompt'] as const) {
    if (typeof vla?.[key] !== 'string') throw new VlaError(ErrorCodes.CONFIG, `vla.${key} must be a string`);
  }
  if (nViews > 0 && !vla.prompt_template.includes('{images}')) {
    throw new VlaError(ErrorCodes.CONFIG, `vla.prompt_template has no {images} placeholder: ${JSON.stringify(vla.prompt_template)}`);
  }
  const images = vla.image_prompt.repeat(nViews);
  return vla.prompt_template.replace(PLACEHOLDER, (match: string, space: string | undefined) => {
    if (match === '{images}') return images;
    if (match === '{instruction}') return instruction;
    return vla.system_prompt === '' ? '' : vla.system_prompt + (space ?? '');
  });
}

/**
 * The instruction as the node feeds it to the model: with the ego speed (odometry) when known.
 * One definition for the node and the dataset writer, so training prompts match inference.
 */
export function modelInstruction(instruction: string, speedMps?: number): string {
  if (speedMps === undefined) return instruction;
  return `${instruction} (ego speed ${speedMps.toFixed(1)} m/s)`;
}

/** The ego speed modelInstruction appended, or undefined (the constant-velocity baseline reads it). */
export function egoSpeedOf(instruction: string): number | undefined {
  const m = /\(ego speed (-?\d+(?:\.\d+)?) m\/s\)$/.exec(instruction);
  return m ? Number(m[1]) : undefined;
}
