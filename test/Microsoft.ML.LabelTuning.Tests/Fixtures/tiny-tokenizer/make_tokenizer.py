"""Trains the tiny SentencePiece BPE tokenizer the tests use (vocab 400, byte fallback, LLaMA's special ids).

Run with Debian's python3-sentencepiece:  /usr/bin/python3 make_tokenizer.py
The corpus is synthetic (the toy tasks' words plus filler), so the fixture needs no downloaded data.
"""
import random
import sentencepiece as spm

random.seed(0)
words = ("the a an this that movie film plot actor story scene music ending it was is really very quite so and but "
         "good great excellent wonderful superb brilliant lovely bad awful terrible boring dreadful poor weak "
         "sport game team player match goal win science space planet atom energy theory music song band "
         "concert guitar city london paris bath emma anne mr mrs darcy elizabeth jane walked said went to of in on "
         "with for not no yes i you he she they we").split()
lines = []
for _ in range(4000):
    n = random.randint(3, 14)
    lines.append(" ".join(random.choice(words) for _ in range(n)).capitalize() + random.choice([".", "!", "?", ","]))
lines += ["Hello, world! Numbers 0123456789 and symbols #@$%&*()[]{}<>/\\|~^_+=-:;'\""] * 20
with open("corpus.txt", "w") as f:
    f.write("\n".join(lines))
spm.SentencePieceTrainer.train(
    input="corpus.txt", model_prefix="tokenizer", model_type="bpe", vocab_size=400, byte_fallback=True,
    normalization_rule_name="identity", split_digits=True, character_coverage=1.0,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True, remove_extra_whitespaces=False)
