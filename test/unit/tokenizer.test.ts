import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';

import { buildPrompt, DRIVING_PROMPT } from '../../src/model/prompt.js';
import { buildTokenizer, DRIVING_CORPUS, IMAGE_TOKEN, SPIECE, trainBpe, writeTokenizer } from '../../src/model/tokenizer-builder.js';
import { createTokenizer, loadTokenizer, type VlaTokenizer } from '../../src/model/tokenizer.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const TEXTS = [
  'turn left at the next intersection',
  'You are a driving assistant. USER: keep lane ASSISTANT:',
  'Keep 50 km/h; stop behind the car ahead!',
  '  leading and trailing spaces  ',
  'double  spaces\tand a tab\nand a newline',
  'Zürich → München, 30 °C, naïve café',
  'emoji 🚗🚦🛑 and 👩‍👩‍👧 (ZWJ sequence)',
  '東京の交差点で左折してください',
  'Waypoints: (1.0, 0.0), (2.1, -0.3)',
  'what about <S> or </ s> or <0x41>?',
  'x',
  '',
];

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof VlaError, `expected a VlaError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, re);
    return true;
  });
}

describe('tokenizer builder', () => {
  const built = buildTokenizer();
  const json = JSON.parse(built.tokenizerJson) as {
    model: { type: string; byte_fallback: boolean; fuse_unk: boolean; unk_token: string; vocab: Record<string, number>; merges: Array<[string, string]> };
    normalizer: unknown;
    pre_tokenizer: unknown;
    post_processor: { type: string; single: unknown[] };
    decoder: { type: string; decoders: Array<{ type: string }> };
    added_tokens: Array<{ id: number; content: string; special: boolean; normalized: boolean }>;
  };

  it('has the Llama/Vicuna layout: specials, 256 byte tokens, learned pieces, <image> last', () => {
    const vocab = json.model.vocab;
    assert.equal(built.vocabSize, 512);
    assert.equal(built.imageTokenId, 511);
    assert.deepEqual([vocab['<unk>'], vocab['<s>'], vocab['</s>']], [0, 1, 2]);
    for (let b = 0; b < 256; b++) assert.equal(vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`], 3 + b);
    const ids = Object.values(vocab).sort((a, b) => a - b);
    assert.deepEqual(ids, Array.from({ length: 511 }, (_, i) => i), 'model vocab ids are 0..510');
    assert.equal(vocab[IMAGE_TOKEN], undefined, '<image> is an added token, as in llava-hf');
    assert.deepEqual(
      json.added_tokens.map((t) => [t.id, t.content, t.special, t.normalized]),
      [[0, '<unk>', true, false], [1, '<s>', true, false], [2, '</s>', true, false], [511, '<image>', true, false]],
    );
    assert.equal(json.model.type, 'BPE');
    assert.equal(json.model.byte_fallback, true);
    assert.equal(json.model.fuse_unk, true);
    assert.equal(json.model.unk_token, '<unk>');
    assert.deepEqual(json.normalizer, { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPIECE }, { type: 'Replace', pattern: { String: ' ' }, content: SPIECE }] });
    assert.equal(json.pre_tokenizer, null);
    assert.equal(json.post_processor.type, 'TemplateProcessing');
    assert.deepEqual(json.post_processor.single[0], { SpecialToken: { id: '<s>', type_id: 0 } });
    assert.deepEqual(json.decoder.decoders.map((d) => d.type), ['Replace', 'ByteFallback', 'Fuse', 'Strip']);
    for (const [a, b] of json.model.merges) {
      assert.ok(a in vocab && b in vocab && a + b in vocab, `merge ${a} + ${b}`);
      assert.ok(!b.startsWith(SPIECE), 'no merge crosses a word start');
    }
    for (const w of ['▁turn', '▁left', '▁lane', '▁the', '▁USER', '▁ASSISTANT']) assert.ok(w in vocab, `${w} was learned`);
    const cfg = JSON.parse(built.tokenizerConfigJson) as Record<string, unknown>;
    assert.equal(cfg.bos_token, '<s>');
    assert.equal(cfg.eos_token, '</s>');
    assert.equal(cfg.unk_token, '<unk>');
    assert.equal(cfg.add_bos_token, true);
    assert.equal(cfg.add_eos_token, false);
  });

  it('is deterministic (byte-identical output from a fresh build)', () => {
    const fresh = buildTokenizer({ corpus: [...DRIVING_CORPUS] }); // a different memo key: trained again
    assert.notEqual(fresh, built);
    assert.equal(fresh.tokenizerJson, built.tokenizerJson);
    assert.equal(fresh.tokenizerConfigJson, built.tokenizerConfigJson);
    assert.deepEqual(trainBpe(DRIVING_CORPUS, 100), trainBpe([...DRIVING_CORPUS], 100));
  });

  it('breaks ties between equally frequent pairs lexicographically', () => {
    const r = trainBpe(['ab cd', 'cd ab'], 8);
    // ▁a, ab, ▁c, cd all occur twice: the smallest pair (by code unit; ▁ is U+2581) goes first
    assert.deepEqual(r.merges.slice(0, 3), [['a', 'b'], ['c', 'd'], [SPIECE, 'ab']]);
  });

  it('honours vocabSize and rejects impossible ones', () => {
    assert.equal(buildTokenizer({ vocabSize: 400 }).vocabSize, 400);
    assert.equal(buildTokenizer({ vocabSize: 400 }).imageTokenId, 399);
    assert.throws(() => buildTokenizer({ vocabSize: 100 }), (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
    assert.throws(() => buildTokenizer({ vocabSize: 100000 }), (e: unknown) => e instanceof VlaError && /supports only/.test(e.message));
  });

  it('works with @huggingface/tokenizers directly: <s> prepended by the post-processor, round trips', () => {
    const tok = new Tokenizer(JSON.parse(built.tokenizerJson) as object, JSON.parse(built.tokenizerConfigJson) as object);
    const enc = tok.encode('turn left at the next intersection');
    assert.equal(enc.ids[0], 1);
    assert.equal(enc.tokens[0], '<s>');
    assert.equal(enc.ids.filter((i: number) => i === 1).length, 1);
    assert.deepEqual(enc.tokens.slice(1, 3), ['▁turn', '▁left']);
    assert.equal(tok.decode(enc.ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }), 'turn left at the next intersection');
    const img = tok.encode('USER: <image>\nkeep lane', { add_special_tokens: false });
    assert.equal(img.ids.filter((i: number) => i === 511).length, 1);
  });
});

describe('VlaTokenizer', () => {
  let tmp: string;
  let tok: VlaTokenizer;
  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-tok-'));
    await writeTokenizer(path.join(tmp, 'good'));
    tok = await loadTokenizer(path.join(tmp, 'good'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('knows its special ids and vocabulary size', () => {
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.vocabSize, 512);
    assert.equal(tok.tokenId('<image>'), 511);
    assert.equal(tok.tokenId('<unk>'), 0);
    assert.equal(tok.tokenId('no such token'), undefined);
    assert.equal(tok.idToToken(511), '<image>');
  });

  it('round-trips arbitrary text, non-ASCII and emojis through byte fallback', () => {
    for (const t of TEXTS) {
      const ids = tok.encode(t, { addBos: false });
      assert.ok(ids instanceof Int32Array);
      assert.equal(tok.decode(ids), t, JSON.stringify(t));
      const withBos = tok.encode(t, { addBos: true });
      assert.equal(tok.decode(withBos, { skipSpecial: true }), t);
      for (const id of ids) assert.ok(id >= 0 && id < tok.vocabSize);
    }
    const car = tok.encode('🚗', { addBos: false });
    assert.deepEqual(Array.from(car).slice(-4), [0xf0, 0x9f, 0x9a, 0x97].map((b) => 3 + b), 'emoji as its four UTF-8 byte tokens');
    assert.ok(!tok.encode('naïve 東京', { addBos: false }).includes(0), 'no <unk>');
  });

  it('adds BOS exactly once, whatever the text or the tokenizer.json does', () => {
    const t = 'keep lane';
    const plain = Array.from(tok.encode(t, { addBos: false }));
    assert.notEqual(plain[0], 1);
    assert.deepEqual(Array.from(tok.encode(t, { addBos: true })), [1, ...plain]);
    assert.deepEqual(Array.from(tok.encode(t)), [1, ...plain], 'add_bos_token true is the default');
    assert.deepEqual(Array.from(tok.encode('', { addBos: true })), [1]);
    assert.deepEqual(Array.from(tok.encode('', { addBos: false })), []);
    const lit = Array.from(tok.encode('<s>keep lane', { addBos: true }));
    assert.equal(lit.filter((i) => i === 1).length, 1, 'a literal leading <s> is not doubled');

    // the same tokenizer without a post-processor (BOS left to tokenizer_config.json, as older Llama) and without any config
    const json = JSON.parse(buildTokenizer().tokenizerJson) as Record<string, unknown>;
    const noPost = createTokenizer({ ...json, post_processor: null }, { bos_token: { __type: 'AddedToken', content: '<s>' } }, 'x');
    assert.deepEqual(Array.from(noPost.encode(t, { addBos: true })), [1, ...plain]);
    const noConfig = createTokenizer(json, undefined, 'x');
    assert.equal(noConfig.bosId, 1);
    assert.deepEqual(Array.from(noConfig.encode(t, { addBos: true })), [1, ...plain]);
    const noBosDefault = createTokenizer(json, { add_bos_token: false }, 'x');
    assert.deepEqual(Array.from(noBosDefault.encode(t)), plain);
  });

  it('maps <image> to one id per occurrence, in the filled prompt too', () => {
    assert.deepEqual(Array.from(tok.encode('<image>', { addBos: false })), [511]);
    const prompt = buildPrompt(DRIVING_PROMPT, 'turn left at the next intersection', 3);
    const ids = Array.from(tok.encode(prompt, { addBos: true }));
    assert.equal(ids[0], 1);
    assert.equal(ids.filter((i) => i === 511).length, 3);
    assert.equal(ids.filter((i) => i === 1).length, 1);
    assert.ok(!tok.encode('<imag e> image <Image>', { addBos: false }).includes(511));
    const text = tok.decode(ids, { skipSpecial: false });
    assert.equal(text.split('<image>').length - 1, 3);
    assert.ok(!tok.decode(ids, { skipSpecial: true }).includes('<image>'));
    assert.equal(tok.decode([]), '');
    assert.throws(() => tok.decode([1.5]), (e: unknown) => e instanceof VlaError && e.code === ErrorCodes.INPUT);
  });

  it('reports a missing, corrupt or foreign tokenizer.json as VLA_E_TOKENIZER naming the file', async () => {
    const dir = (name: string) => {
      const d = path.join(tmp, name);
      mkdirSync(d, { recursive: true });
      return d;
    };
    await rejectsWith(loadTokenizer(dir('empty')), ErrorCodes.TOKENIZER, /empty[/\\]tokenizer\.json: missing/);
    await rejectsWith(loadTokenizer(path.join(tmp, 'no-such-dir')), ErrorCodes.TOKENIZER, /tokenizer\.json/);
    let d = dir('corrupt');
    writeFileSync(path.join(d, 'tokenizer.json'), '{not json');
    await rejectsWith(loadTokenizer(d), ErrorCodes.TOKENIZER, /corrupt[/\\]tokenizer\.json: not valid JSON/);
    d = dir('truncated');
    writeFileSync(path.join(d, 'tokenizer.json'), buildTokenizer().tokenizerJson.slice(0, 5000));
    await rejectsWith(loadTokenizer(d), ErrorCodes.TOKENIZER, /tokenizer\.json/);
    d = dir('array');
    writeFileSync(path.join(d, 'tokenizer.json'), '[1, 2]');
    await rejectsWith(loadTokenizer(d), ErrorCodes.TOKENIZER, /tokenizer\.json: not a Hugging Face tokenizer/);
    d = dir('badmodel');
    writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({ model: { type: 'NoSuchModel' }, added_tokens: [] }));
    await rejectsWith(loadTokenizer(d), ErrorCodes.TOKENIZER, /tokenizer\.json: unsupported or malformed/);
    d = dir('dirfile');
    mkdirSync(path.join(d, 'tokenizer.json'));
    await rejectsWith(loadTokenizer(d), ErrorCodes.TOKENIZER, /tokenizer\.json/);
    d = dir('badconfig');
    writeFileSync(path.join(d, 'tokenizer.json'), buildTokenizer().tokenizerJson);
    writeFileSync(path.join(d, 'tokenizer_config.json'), '{"bos_token": ');
    await rejectsWith(loadTokenizer(d), ErrorCodes.TOKENIZER, /tokenizer_config\.json: not valid JSON/);
    rmSync(path.join(d, 'tokenizer_config.json'));
    const ok = await loadTokenizer(d);
    assert.equal(ok.bosId, 1, 'tokenizer_config.json is optional');
  });
});
