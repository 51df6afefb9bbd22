#!/usr/bin/env python3
"""Reference values for gguf_model_test, from the PyPI `gguf` package (gguf-py).

usage: gguf_reference.py MODEL SPECS OUT_ROWS OUT_INFOS

SPECS is a text file of lines "tensor_name first_row n_rows". For each line, OUT_ROWS receives the
rows dequantized by gguf.quants.dequantize (numpy) as little-endian float32, back to back.
OUT_INFOS receives one line per tensor, in file order: "name type_id abs_offset n_bytes ne0,ne1,..".

Exit status 77 means the gguf package (or numpy) is not importable; the C++ test then skips.
"""
import sys


def main() -> int:
    try:
        import numpy as np
        from gguf import GGUFReader, GGML_QUANT_SIZES
        from gguf.quants import dequantize
    except ImportError as exc:
        print(f"python package 'gguf' is not importable ({exc}); pip install gguf", file=sys.stderr)
        return 77

    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    model, specs, out_rows, out_infos = sys.argv[1:]
    reader = GGUFReader(model)
    tensors = {t.name: t for t in reader.tensors}

    with open(out_infos, "w", encoding="utf-8") as out:
        for t in reader.tensors:
            shape = ",".join(str(int(n)) for n in t.shape)
            out.write(f"{t.name} {int(t.tensor_type)} {int(t.data_offset)} {int(t.n_bytes)} {shape}\n")

    with open(specs, encoding="utf-8") as spec_file, open(out_rows, "wb") as out:
        for line in spec_file:
            if not line.strip():
                continue
            name, first, count = line.split()
            first, count = int(first), int(count)
            t = tensors[name]
            block_size, type_size = GGML_QUANT_SIZES[t.tensor_type]
            row_length = int(t.shape[0])
            row_bytes = row_length // block_size * type_size
            begin = int(t.data_offset) + first * row_bytes
            raw = np.asarray(reader.data[begin : begin + count * row_bytes], dtype=np.uint8)
            rows = dequantize(raw.reshape(count, row_bytes), t.tensor_type)
            out.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
