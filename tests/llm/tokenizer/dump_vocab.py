#!/usr/bin/env python3
"""Reads SmolLM2's tokenizer vocabulary out of its GGUF file with the `gguf` package.

As a script it writes tokens.txt, merges.txt and token_types.txt (one entry a line, in id / rank
order) into a folder, for inspection or for other tools; as a module it gives load_vocab() to the
reference tokenizer. It is independent of the project's own GGUF reader on purpose: the tests use
it as a second opinion.

usage: dump_vocab.py MODEL.gguf OUT_DIR
"""

import pathlib
import sys


def _strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def load_vocab(model_path):
    """Returns (tokens, merges, token_types) as Python lists."""
    import gguf  # imported here so that `--help` works without it

    reader = gguf.GGUFReader(str(model_path))
    tokens = _strings(reader, "tokenizer.ggml.tokens")
    merges = _strings(reader, "tokenizer.ggml.merges")
    types_field = reader.fields["tokenizer.ggml.token_type"]
    token_types = [int(types_field.parts[i][0]) for i in types_field.data]
    return tokens, merges, token_types


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    tokens, merges, token_types = load_vocab(argv[1])
    out = pathlib.Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for name, entries in (("tokens", tokens), ("merges", merges)):
        # One entry a line only works if no entry holds a line break; byte-level spellings never
        # do (newline is spelled "Ċ"), but fail loudly rather than write a corrupt file.
        bad = [e for e in entries if "\n" in e or "\r" in e]
        if bad:
            raise SystemExit(f"{name}: {len(bad)} entries contain line breaks, e.g. {bad[0]!r}")
        (out / f"{name}.txt").write_text("\n".join(entries) + "\n", encoding="utf-8")
    (out / "token_types.txt").write_text("\n".join(map(str, token_types)) + "\n")
    print(f"{len(tokens)} tokens, {len(merges)} merges -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
