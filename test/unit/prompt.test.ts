import assert from 'node:assert/strict';

import { buildPrompt, DEFAULT_PROMPT, DRIVING_PROMPT } from '../../src/model/prompt.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

describe('buildPrompt', () => {
  it('fills the driving template (docs/model-format.md) with one image prompt per view', () => {
    assert.equal(
      buildPrompt(DRIVING_PROMPT, 'turn left at the next intersection', 3),
      'You are a driving assistant. USER: <image>\n<image>\n<image>\n\nturn left at the next intersection ASSISTANT:',
    );
    assert.equal(buildPrompt(DRIVING_PROMPT, '', 1), 'You are a driving assistant. USER: <image>\n\n ASSISTANT:');
  });

  it('defaults to plain LLaVA-1.5 and drops an empty {system}', () => {
    assert.deepEqual({ ...DEFAULT_PROMPT }, { system_prompt: '', prompt_template: 'USER: {images}{instruction} ASSISTANT:', image_prompt: '<image>\n' });
    assert.equal(buildPrompt(DEFAULT_PROMPT, 'keep lane', 1), 'USER: <image>\nkeep lane ASSISTANT:');
    assert.equal(buildPrompt({ ...DRIVING_PROMPT, system_prompt: '' }, 'x', 1), 'USER: <image>\n\nx ASSISTANT:');
  });

  it('keeps placeholder-like text in the instruction literal', () => {
    assert.equal(buildPrompt(DEFAULT_PROMPT, 'say {images} and {system}', 1), 'USER: <image>\nsay {images} and {system} ASSISTANT:');
  });

  it('rejects bad arguments with coded errors', () => {
    const code = (fn: () => unknown, c: string) => assert.throws(fn, (e: unknown) => e instanceof VlaError && e.code === c);
    code(() => buildPrompt(DEFAULT_PROMPT, 'x', -1), ErrorCodes.INPUT);
    code(() => buildPrompt(DEFAULT_PROMPT, 'x', 1.5), ErrorCodes.INPUT);
    code(() => buildPrompt(DEFAULT_PROMPT, 42 as unknown as string, 1), ErrorCodes.INPUT);
    code(() => buildPrompt({ ...DEFAULT_PROMPT, prompt_template: 'USER: {instruction}' }, 'x', 2), ErrorCodes.CONFIG);
    code(() => buildPrompt({ ...DEFAULT_PROMPT, image_prompt: 3 as unknown as string }, 'x', 2), ErrorCodes.CONFIG);
  });
});
