// Fills in the expected ids and decodes of every <folder>/cases.json next to this script, using the
// Hugging Face tokenizers library itself (Rust, through its Node binding):
//   npm install tokenizers@0.23.2
//   NODE_PATH=./node_modules node generate-cases.js
// Each cases.json names its tokenizer.json ("tokenizer", relative to its folder) and may list
// "override": { "dotted.path": value } edits applied to that JSON before loading it. The C# tests
// apply the same edits, so a case folder needs no code.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Tokenizer } = require('tokenizers');

function applyOverride(json, override) {
  for (const [key, value] of Object.entries(override || {})) {
    const parts = key.split('.');
    let node = json;
    for (const part of parts.slice(0, -1)) node = node[part];
    node[parts[parts.length - 1]] = value;
  }
  return json;
}

(async () => {
  const root = __dirname;
  for (const name of fs.readdirSync(root).sort()) {
    const casesPath = path.join(root, name, 'cases.json');
    if (!fs.existsSync(casesPath)) continue;
    const spec = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
    const json = applyOverride(JSON.parse(fs.readFileSync(path.join(root, name, spec.tokenizer), 'utf8')), spec.override);
    const tmp = path.join(os.tmpdir(), `tokenizer-${name}.json`);
    fs.writeFileSync(tmp, JSON.stringify(json));
    const tokenizer = Tokenizer.fromFile(tmp);
    const specials = new Set(json.added_tokens.filter(t => t.special).map(t => t.content));
    for (const c of spec.cases) {
      const encoding = await tokenizer.encode(c.text, null, { addSpecialTokens: true });
      c.ids = encoding.getIds();
      c.parse_special = [...specials].some(s => c.text.includes(s));
      c.decoded = await tokenizer.decode(c.ids, true);
      c.decoded_with_special = await tokenizer.decode(c.ids, false);
    }
    spec.generator = 'Hugging Face tokenizers 0.23.2 (npm "tokenizers", Rust core): encode(text, addSpecialTokens=true), decode(ids, skipSpecialTokens=true/false). HF always matches special tokens in the text, so cases with parse_special=true are checked with special-token parsing on.';
    const lines = spec.cases.map(c => ' ' + JSON.stringify(c));
    const head = { ...spec }; delete head.cases;
    const headText = JSON.stringify(head, null, 1);
    fs.writeFileSync(casesPath, headText.slice(0, -2) + ',\n "cases": [\n' + lines.join(',\n') + '\n ]\n}\n');
    console.log(name, spec.cases.length);
  }
})();
