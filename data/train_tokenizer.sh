#!/usr/bin/env bash
# Trains the SentencePiece BPE tokenizer of the embedded default model on the pretraining corpus and writes
#   models/labeltuning-default/tokenizer.model        (committed)
#   models/labeltuning-default/tokenizer_config.json  (committed)
#   data/.cache/tokenizer/stats.json                  (token counts: corpus, validation, IMDB reviews)
#   data/.cache/tokenizer/check.tsv                   (texts and SentencePiece's ids, for `LabelTuning.DataPrep check-tokenizer`)
# Needs data/.cache/pretrain/corpus.txt (`bash data/fetch.sh && dotnet run --project tools/LabelTuning.DataPrep -- build-all`).
# Uses Debian's python3-sentencepiece with the system /usr/bin/python3 (installed with apt-get when missing).
# LLaMA's layout: unk 0, bos 1, eos 2, no pad; byte fallback; identity normalization; digits split.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="$repo_root/data/.cache/pretrain/corpus.txt"
out_dir="$repo_root/models/labeltuning-default"
work="$repo_root/data/.cache/tokenizer"
python=/usr/bin/python3

if [ ! -f "$corpus" ]; then
    echo "train_tokenizer.sh: $corpus is missing; run: bash data/fetch.sh && dotnet run --project tools/LabelTuning.DataPrep -- build-all" >&2
    exit 1
fi

if ! "$python" -c "import sentencepiece" 2> /dev/null; then
    echo "train_tokenizer.sh: installing python3-sentencepiece"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo_cmd="sudo"
    fi
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-sentencepiece > /dev/null
fi

mkdir -p "$out_dir" "$work"
"$python" - "$repo_root" <<'PY'
import json, os, sys, time
import sentencepiece as spm

root = sys.argv[1]
cache = os.path.join(root, "data", ".cache")
corpus = os.path.join(cache, "pretrain", "corpus.txt")
work = os.path.join(cache, "tokenizer")
prefix = os.path.join(work, "tokenizer")

# The model file records its trainer options, paths included: train from data/.cache with relative paths and a fixed
# thread count so that the file is byte-identical wherever the repository lives.
os.chdir(cache)
start = time.time()
spm.SentencePieceTrainer.train(
    input=os.path.join("pretrain", "corpus.txt"),
    model_prefix=os.path.join("tokenizer", "tokenizer"),
    model_type="bpe",
    vocab_size=8000,
    byte_fallback=True,
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    add_dummy_prefix=True,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    character_coverage=0.9995,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
    unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
    max_sentence_length=32768,   # IMDB reviews are single lines of up to ~14k characters
    input_sentence_size=0,       # every line, no sampling: the result does not depend on a random draw
    num_threads=2,
    minloglevel=1,
)
train_seconds = time.time() - start

sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1), "special ids"
assert sp.get_piece_size() == 8000

def documents(path):
    with open(path, encoding="utf-8") as f:
        lines = []
        for line in f:
            line = line.rstrip("\n")
            if line == "":
                if lines:
                    yield "\n".join(lines)
                lines = []
            else:
                lines.append(line)
        if lines:
            yield "\n".join(lines)

def count(path):
    docs = tokens = chars = 0
    for doc in documents(path):
        docs += 1
        chars += len(doc)
        tokens += len(sp.encode(doc))
    return {"documents": docs, "chars": chars, "tokens": tokens, "chars_per_token": round(chars / tokens, 3)}

stats = {"train_seconds": round(train_seconds, 1), "vocab_size": sp.get_piece_size()}
stats["corpus"] = count(corpus)
stats["valid"] = count(os.path.join(cache, "pretrain", "valid.txt"))

def tsv_texts(path):
    with open(path, encoding="utf-8") as f:
        next(f)
        return [line.rstrip("\n").split("\t")[1] for line in f]

pool = [l.rstrip("\n") for l in open(os.path.join(cache, "pretrain", "imdb.txt"), encoding="utf-8")]
imdb_samples = tsv_texts(os.path.join(root, "data", "imdb", "train.tsv")) + tsv_texts(os.path.join(root, "data", "imdb", "test.tsv"))
for name, texts in (("imdb_pool", pool), ("imdb_samples", imdb_samples)):
    lengths = sorted(len(sp.encode(t)) for t in texts)
    stats[name] = {
        "reviews": len(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "median_tokens": lengths[len(lengths) // 2],
        "over_254_tokens": round(sum(l > 254 for l in lengths) / len(lengths), 4),
    }

# Texts whose ids Microsoft.ML.Tokenizers must reproduce (check-tokenizer).
edge = [
    "Hello world", " leading space", "two  spaces and trailing ", "tab\tand\nnewline", "digits 1234567 and 3.14",
    "café naïve résumé", "emoji 😀 and CJK 漢字 and Ω", "", " ", "A", "<s> and </s> are text here", "\u2026\u2014\u201cquoted\u201d",
]
checks = edge + imdb_samples[:300] + tsv_texts(os.path.join(root, "data", "spam", "test.tsv"))[:100] + tsv_texts(os.path.join(root, "data", "austen", "test.tsv"))[:100]
with open(os.path.join(work, "check.tsv"), "w", encoding="utf-8") as f:
    f.write("Text\tIds\n")
    for text in checks:
        escaped = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        f.write(escaped + "\t" + " ".join(map(str, sp.encode(text))) + "\n")

with open(os.path.join(work, "stats.json"), "w") as f:
    json.dump(stats, f, indent=2)
    f.write("\n")
print(json.dumps(stats, indent=2))
PY

cp "$work/tokenizer.model" "$out_dir/tokenizer.model"
cat > "$out_dir/tokenizer_config.json" <<'JSON'
{
  "add_bos_token": true,
  "add_eos_token": false,
  "bos_token": "<s>",
  "eos_token": "</s>",
  "unk_token": "<unk>",
  "pad_token": null,
  "tokenizer_class": "LlamaTokenizer"
}
JSON
sha256sum "$out_dir/tokenizer.model"
