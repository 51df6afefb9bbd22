#!/usr/bin/env python3
"""Reference SmolLM2 tokenizer built with Hugging Face `tokenizers` from the GGUF vocabulary.

It is the independent implementation the C++ tokenizer is checked against: a byte-level BPE model
with the vocabulary and merges from the GGUF file, and SmolLM2's pre-tokenizer written as Hugging
Face does (split digits individually, then the ByteLevel GPT-2 regex).

Prints one line per input file: the token ids, space-separated. Files must be UTF-8.
With --special, control-token text in the input ("<|im_start|>") is parsed as the control token, as
Hugging Face does on a rendered chat template; without it everything is literal text.

usage: reference_encode.py [--special] MODEL.gguf FILE...
"""

import pathlib
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from dump_vocab import load_vocab  # noqa: E402

CONTROL = 3  # GGUF token type


def build(model_path, special):
    tokens, merges, token_types = load_vocab(model_path)
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    if special:
        controls = [t for t, ty in zip(tokens, token_types) if ty == CONTROL]
        tokenizer.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in controls]
        )
    return tokenizer


def main(argv):
    args = argv[1:]
    special = "--special" in args
    args = [a for a in args if a != "--special"]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    tokenizer = build(args[0], special)
    for path in args[1:]:
        text = pathlib.Path(path).read_bytes().decode("utf-8")
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        print(" ".join(map(str, ids)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
