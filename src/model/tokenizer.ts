import path from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import { componentLogger } from '../util/logger.js';

const log = componentLogger('tokenizer');

export interface TokenizerEncodeOptions {
  /** Prepend BOS (default: tokenizer_config.json's add_bos_token, else true). Never doubled. */
  addBos?: boolean;
}

export interface TokenizerDecodeOptions {
  /** Drop special tokens (BOS, EOS, `<image>`, ...). Default false. */
  skipSpecial?: boolean;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Older tokenizer_config.json files spell tokens as {"__type": "AddedToken", "content": ...}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

function normalizeConfig(raw: Json): Json {
  const cfg: Json = { ...raw };
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    if (k in cfg) {
      const s = tokenString(cfg[k]);
      if (s === undefined) delete cfg[k];
      else cfg[k] = s;
    }
  }
  if (Array.isArray(cfg.additional_special_tokens)) {
    cfg.additional_special_tokens = cfg.additional_special_tokens.map(tokenString).filter((s): s is string => s !== undefined);
  }
  return cfg;
}

/** The first special token a TemplateProcessing post-processor puts before the sequence, if any. */
function templateBos(pp: unknown): string | undefined {
  if (!isObject(pp)) return undefined;
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    for (const p of pp.processors) {
      const t = templateBos(p);
      if (t !== undefined) return t;
    }
    return undefined;
  }
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return undefined;
  const first: unknown = pp.single[0];
  if (!isObject(first) || !isObject(first.SpecialToken)) return undefined;
  const id = first.SpecialToken.id;
  if (typeof id !== 'string') return undefined;
  const spec = isObject(pp.special_tokens) ? pp.special_tokens[id] : undefined;
  if (isObject(spec) && Array.isArray(spec.tokens) && typeof spec.tokens[0] === 'string') return spec.tokens[0];
  return id;
}

/**
 * The tokenizer the engine uses, over any Hugging Face tokenizer.json. BOS is added here rather
 * than by the post-processor, so it is there exactly once whether the tokenizer.json adds it
 * (Llama-2 TemplateProcessing), leaves it to tokenizer_config.json (older Llama), or neither.
 */
export class VlaTokenizer {
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** Largest id + 1, added tokens included. */
  readonly vocabSize: number;
  private readonly addBosDefault: boolean;
  private readonly cleanUpSpaces: boolean;

  constructor(
    private readonly tok: Tokenizer,
    config: Json,
    json: Json,
    readonly source: string,
  ) {
    const id = (t: string | undefined) => (t === undefined ? undefined : tok.token_to_id(t));
    this.bosId = id(tokenString(config.bos_token)) ?? id(templateBos(json.post_processor)) ?? id('<s>');
    this.eosId = id(tokenString(config.eos_token)) ?? id('</s>');
    let max = -1;
    for (const v of tok.get_vocab(true).values()) if (v > max) max = v;
    this.vocabSize = max + 1;
    this.addBosDefault = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : true;
    // Llama's tokenizers do not clean up; the library's default (true) would eat spaces before punctuation
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
  }

  encode(text: string, options: TokenizerEncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new VlaError(ErrorCodes.INPUT, 'text to tokenize must be a string');
    const ids = text.length === 0 ? [] : this.tok.encode(text, { add_special_tokens: false }).ids;
    const addBos = (options.addBos ?? this.addBosDefault) && this.bosId !== undefined && ids[0] !== this.bosId;
    const out = new Int32Array(ids.length + (addBos ? 1 : 0));
    if (addBos) out[0] = this.bosId as number;
    out.set(ids, addBos ? 1 : 0);
    return out;
  }

  decode(ids: ArrayLike<number>, options: TokenizerDecodeOptions = {}): string {
    const list = Array.from(ids, Number);
    if (list.length === 0) return '';
    for (const i of list) {
      if (!Number.isInteger(i) || i < 0) throw new VlaError(ErrorCodes.INPUT, `token id ${i} is not a non-negative integer`);
    }
    return this.tok.decode(list, { skip_special_tokens: options.skipSpecial ?? false, clean_up_tokenization_spaces: this.cleanUpSpaces });
  }

  /** Every id of the vocabulary (added tokens included) at or above `min`. */
  idsFrom(min: number): number[] {
    const out: number[] = [];
    for (const v of this.tok.get_vocab(true).values()) if (v >= min) out.push(v);
    return out.sort((a, b) => a - b);
  }

  /** The id of a token string (added tokens included), or undefined. */
  tokenId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** Tokenizes without ids (for inspection). */
  tokens(text: string): string[] {
    return this.tok.tokenize(text, { add_special_tokens: false });
  }
}

/** Builds a VlaTokenizer from parsed tokenizer.json / tokenizer_config.json objects; `source` names them in errors. */
export function createTokenizer(json: unknown, config: unknown = {}, source = 'tokenizer.json'): VlaTokenizer {
  if (!isObject(json) || !isObject(json.model)) {
    throw new VlaError(ErrorCodes.TOKENIZER, `${source}: not a Hugging Face tokenizer (no "model" object)`, { file: source });
  }
  const cfg = normalizeConfig(isObject(config) ? config : {});
  // the library insists on these keys; they are optional (null) in the format
  const full: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json };
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) if (full[k] === undefined) full[k] = null;
  if (!Array.isArray(full.added_tokens)) full.added_tokens = [];
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(full, cfg);
  } catch (err) {
    throw new VlaError(ErrorCodes.TOKENIZER, `${source}: unsupported or malformed tokenizer: ${(err as Error).message}`, { file: source }, { cause: err });
  }
  return new VlaTokenizer(tok, cfg, full, source);
}

/** Llama 3's tokenizer.json is 9 MB; a file far larger is not one. */
const MAX_TOKENIZER_BYTES = 256 << 20;

async function readJson(file: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = (await readRegularFile(file, MAX_TOKENIZER_BYTES)).toString('utf8');
  } catch (err) {
    const code = ((err as VlaError).cause as NodeJS.ErrnoException | undefined)?.code;
    if (!required && code === 'ENOENT') return undefined;
    const what = code === 'ENOENT' ? `${file}: missing (the model directory needs a Hugging Face tokenizer.json)` : (err as Error).message;
    throw new VlaError(ErrorCodes.TOKENIZER, what, { file }, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new VlaError(ErrorCodes.TOKENIZER, `${file}: not valid JSON: ${(err as Error).message}`, { file }, { cause: err });
  }
}

/** Loads `modelDir/tokenizer.json` (+ tokenizer_config.json when present). Failures are VLA_E_TOKENIZER naming the file. */
export async function loadTokenizer(modelDir: string): Promise<VlaTokenizer> {
  const file = path.join(modelDir, 'tokenizer.json');
  const cfgFile = path.join(modelDir, 'tokenizer_config.json');
  const [json, config] = await Promise.all([readJson(file, true), readJson(cfgFile, false)]);
  if (config !== undefined && !isObject(config)) {
    throw new VlaError(ErrorCodes.TOKENIZER, `${cfgFile}: not a JSON object`, { file: cfgFile });
  }
  const tok = createTokenizer(json, config ?? {}, file);
  log.debug({ file, vocabSize: tok.vocabSize, bosId: tok.bosId, eosId: tok.eosId }, 'tokenizer loaded');
  return tok;
}
