import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, VlaError } from '../util/errors.js';

/**
 * Builds a small Llama/Vicuna-style (LLaVA-1.5) Hugging Face tokenizer: BPE with byte fallback
 * over "▁"-prefixed text, merges trained deterministically on a built-in driving corpus.
 */

export const SPIECE = '\u2581';
export const IMAGE_TOKEN = '<image>';
const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
const N_BYTES = 256;

export const DRIVING_CORPUS: readonly string[] = [
  'You are a driving assistant.',
  'You are a driving assistant. USER: keep lane ASSISTANT:',
  'You are a driving assistant. USER: turn left at the next intersection ASSISTANT:',
  'You are a driving assistant. USER: turn right ASSISTANT:',
  'You are a driving assistant. USER: change to the left lane ASSISTANT:',
  'You are a driving assistant. USER: change to the right lane ASSISTANT:',
  'You are a driving assistant. USER: stop behind the car ahead ASSISTANT:',
  'You are a driving assistant. USER: follow the road ASSISTANT:',
  'You are a driving assistant. USER: slow down ASSISTANT:',
  'You are a driving assistant. USER: go straight ASSISTANT:',
  'USER: What should the car do next? ASSISTANT: Keep lane and follow the road.',
  'USER: Describe the scene. ASSISTANT: A straight road with two lanes and a car ahead.',
  'keep lane',
  'turn left at the next intersection',
  'turn right at the next intersection',
  'turn left',
  'turn right',
  'change to the left lane',
  'change to the right lane',
  'stop behind the car ahead',
  'follow the road',
  'slow down',
  'go straight',
  'speed up to 50 km/h',
  'keep the speed at 30 km/h',
  'the speed limit is 60 km/h',
  'drive at 12.5 m/s',
  'a pedestrian is crossing the road, stop and wait',
  'the traffic light is red, stop at the line',
  'the traffic light is green, go straight',
  'the traffic light turns yellow, slow down',
  'there is a pedestrian on the left side of the road',
  'a cyclist is riding in the right lane',
  'the car ahead is braking, slow down and keep distance',
  'the truck in the left lane is overtaking',
  'merge into the left lane after the bus',
  'take the second exit at the roundabout',
  'park on the right side of the street',
  'yield to the vehicles from the right',
  'the road curves to the left in 100 m',
  'the road curves to the right in 200 m',
  'the intersection is 40 m ahead',
  'keep a distance of 2 seconds to the car ahead',
  'Turn left at the next intersection, then keep lane.',
  'Turn right after the traffic light.',
  'Change to the left lane, then turn left.',
  'Stop behind the car ahead and wait for the green light.',
  'Follow the road for 300 m, then turn right.',
  'Slow down: a pedestrian is near the crossing!',
  'Go straight through the intersection.',
  'Keep lane; the car on the right is slow.',
  'Is the road clear? Yes, the lane is free.',
  'Is the light red? No, it is green.',
  'The ego vehicle drives at 8 m/s in the middle lane.',
  'Waypoints: (1.0, 0.0), (2.1, 0.1), (3.3, 0.4), (4.6, 0.9), (6.0, 1.6), (7.5, 2.5)',
  'Waypoints: (0.5, 0.0), (1.0, -0.1), (1.5, -0.3), (2.0, -0.6), (2.5, -1.0), (3.0, -1.5)',
  'Trajectory: [4.0, 0.0] [8.1, 0.2] [12.2, 0.5] [16.4, 0.9] [20.5, 1.4] [24.7, 2.0]',
  'x = 3.75 m, y = -1.25 m, yaw = 0.05 rad',
  'The front camera sees a car 25 m ahead in the same lane.',
  'The front left camera sees a pedestrian near the traffic light.',
  'The front right camera sees a parked truck.',
  'The back camera sees a motorcycle approaching at 70 km/h.',
  'Digits: 0 1 2 3 4 5 6 7 8 9 10 15 20 25 50 75 90 100',
  'Punctuation: . , : ; ! ? ( ) [ ] - + / = % \' "',
  'Speed 0 km/h, 10 km/h, 20 km/h, 30 km/h, 40 km/h, 50 km/h, 80 km/h, 120 km/h.',
  'At the next intersection turn left, then follow the road and keep lane.',
  'When the traffic light is red, stop behind the car ahead.',
  'If a pedestrian crosses, slow down and stop.',
  'Change to the right lane and take the exit in 500 m.',
  'It is raining; drive slowly and keep a safe distance.',
  'At night the road is dark, use the headlights.',
  'The vehicle ahead is stopped at the red light.',
  'ASSISTANT: Turn left. USER: Then? ASSISTANT: Go straight.',
  'A B C D E F G H I J K L M N O P Q R S T U V W X Y Z',
  'a b c d e f g h i j k l m n o p q r s t u v w x y z',
];

export interface TokenizerBuildOptions {
  /** Total vocabulary: specials, byte tokens, learned pieces and `<image>` (default 512). */
  vocabSize?: number;
  /** Training text (default DRIVING_CORPUS). */
  corpus?: readonly string[];
  /** tokenizer_config.json model_max_length, when given. */
  modelMaxLength?: number;
}

export interface BuiltTokenizer {
  /** tokenizer.json text. */
  tokenizerJson: string;
  /** tokenizer_config.json text. */
  tokenizerConfigJson: string;
  vocabSize: number;
  unkId: number;
  bosId: number;
  eosId: number;
  imageTokenId: number;
  /** Learned merges, in rank order. */
  merges: Array<[string, string]>;
}

function normalize(text: string): string {
  return SPIECE + text.replaceAll(' ', SPIECE);
}

/** Training words: "▁" only ever starts a piece, digits stand alone (as sentencepiece's split_digits), punctuation too. */
const WORD_RE = /\u2581?\p{L}+|\u2581?\p{N}|\u2581?[^\p{L}\p{N}\u2581\n\r]|\u2581+/gu;

function pairKey(a: string, b: string): string {
  // \0 sorts below every character, so comparing keys compares (a, b) lexicographically
  return `${a}\u0000${b}`;
}

/**
 * Trains BPE merges until the base vocabulary plus new pieces reaches `budget`; ties in pair
 * counts go to the lexicographically smallest pair so the result is the same on every run.
 */
export function trainBpe(corpus: readonly string[], budget: number): { alphabet: string[]; merges: Array<[string, string]>; pieces: string[] } {
  const wordCounts = new Map<string, number>();
  for (const line of corpus) {
    for (const m of normalize(line).matchAll(WORD_RE)) wordCounts.set(m[0], (wordCounts.get(m[0]) ?? 0) + 1);
  }
  const charCounts = new Map<string, number>();
  for (const [w, c] of wordCounts) for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + c);
  const alphabet = [...charCounts.entries()]
    .sort((a, b) => b[1] - a[1] || ((a[0].codePointAt(0) as number) - (b[0].codePointAt(0) as number)))
    .map(([ch]) => ch);
  if (alphabet.length > budget) {
    throw new VlaError(ErrorCodes.INPUT, `tokenizer: the corpus has ${alphabet.length} distinct characters, more than the ${budget} piece slots the vocabulary size leaves`);
  }
  const words = [...wordCounts.entries()].sort((x, y) => (x[0] < y[0] ? -1 : 1)).map(([w, count]) => ({ sym: Array.from(w), count }));
  // pair counts kept up to date incrementally: only words holding the merged pair are revisited
  const counts = new Map<string, number>();
  const where = new Map<string, Set<number>>();
  const account = (wi: number, sign: 1 | -1): void => {
    const w = words[wi] as { sym: string[]; count: number };
    for (let i = 0; i + 1 < w.sym.length; i++) {
      const k = pairKey(w.sym[i] as string, w.sym[i + 1] as string);
      const c = (counts.get(k) ?? 0) + sign * w.count;
      if (c > 0) counts.set(k, c);
      else counts.delete(k);
      if (sign > 0) {
        let set = where.get(k);
        if (!set) where.set(k, (set = new Set()));
        set.add(wi);
      }
    }
  };
  words.forEach((_, wi) => account(wi, 1));
  const known = new Set(alphabet);
  const pieces: string[] = [];
  const merges: Array<[string, string]> = [];
  while (alphabet.length + pieces.length < budget) {
    let best: string | undefined;
    let bestCount = 0;
    for (const [k, c] of counts) {
      if (c > bestCount || (c === bestCount && best !== undefined && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best === undefined) {
      throw new VlaError(ErrorCodes.INPUT, `tokenizer: the corpus supports only ${alphabet.length + pieces.length} pieces, ${budget} are needed (smaller vocabSize or more text)`);
    }
    const [a, b] = best.split('\u0000') as [string, string];
    const merged = a + b;
    merges.push([a, b]);
    if (!known.has(merged)) {
      known.add(merged);
      pieces.push(merged);
    }
    for (const wi of where.get(best) ?? []) {
      account(wi, -1);
      const s = (words[wi] as { sym: string[] }).sym;
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === a && s[i + 1] === b) s.splice(i, 2, merged);
      }
      account(wi, 1);
    }
    where.delete(best);
  }
  return { alphabet, merges, pieces };
}

function addedToken(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** JSON.stringify would put integer-like keys ("0".."9" pieces) first; the vocab is written in id order instead. */
function vocabJson(vocab: string[], indent: string): string {
  const inner = indent + '  ';
  return '{\n' + vocab.map((tok, id) => `${inner}${JSON.stringify(tok)}: ${id}`).join(',\n') + `\n${indent}}`;
}

const cache = new Map<string, BuiltTokenizer>();

/** Builds tokenizer.json and tokenizer_config.json in memory (deterministic; memoised per options). */
export function buildTokenizer(options: TokenizerBuildOptions = {}): BuiltTokenizer {
  const vocabSize = options.vocabSize ?? 512;
  const corpus = options.corpus ?? DRIVING_CORPUS;
  const key = JSON.stringify([vocabSize, options.corpus ?? null, options.modelMaxLength ?? null]);
  const hit = cache.get(key);
  if (hit) return hit;
  if (!Number.isInteger(vocabSize) || vocabSize < SPECIALS.length + N_BYTES + 2) {
    throw new VlaError(ErrorCodes.INPUT, `tokenizer: vocabSize must be an integer >= ${SPECIALS.length + N_BYTES + 2}, got ${vocabSize}`);
  }
  const base: string[] = [...SPECIALS];
  for (let b = 0; b < N_BYTES; b++) base.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const { alphabet, merges, pieces } = trainBpe(corpus, vocabSize - base.length - 1);
  const vocab = [...base, ...alphabet, ...pieces];
  const imageTokenId = vocab.length;
  const [unkId, bosId, eosId] = [0, 1, 2];

  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...SPECIALS.map((t, i) => addedToken(i, t)), addedToken(imageTokenId, IMAGE_TOKEN)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPIECE },
        { type: 'Replace', pattern: { String: ' ' }, content: SPIECE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [bosId], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPIECE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: '__VOCAB__',
      merges,
    },
  };
  const tokenizerJson = JSON.stringify(tokenizer, null, 2).replace('"__VOCAB__"', vocabJson(vocab, '    ')) + '\n';

  const addedDecoder: Record<string, unknown> = {};
  for (const t of tokenizer.added_tokens) {
    const { id, ...rest } = t;
    addedDecoder[String(id)] = rest;
  }
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: addedDecoder,
    bos_token: '<s>',
    clean_up_tokenization_spaces: false,
    eos_token: '</s>',
    legacy: true,
    ...(options.modelMaxLength !== undefined ? { model_max_length: options.modelMaxLength } : {}),
    padding_side: 'left',
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
    unk_token: '<unk>',
  };
  const built: BuiltTokenizer = {
    tokenizerJson,
    tokenizerConfigJson: JSON.stringify(config, null, 2) + '\n',
    vocabSize: imageTokenId + 1,
    unkId,
    bosId,
    eosId,
    imageTokenId,
    merges,
  };
  cache.set(key, built);
  return built;
}

/** Writes tokenizer.json and tokenizer_config.json into `dir` (created if needed). */
export async function writeTokenizer(dir: string, options: TokenizerBuildOptions = {}): Promise<BuiltTokenizer> {
  const built = buildTokenizer(options);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'tokenizer.json'), built.tokenizerJson);
    await writeFile(path.join(dir, 'tokenizer_config.json'), built.tokenizerConfigJson);
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${dir}: ${(err as Error).message}`, { dir }, { cause: err });
  }
  return built;
}
