"""Regenerates the committed fuzz seeds (tiny valid files): run with the venv's python from
this directory. The seeds only need to be valid and small; libFuzzer mutates from them."""
import json
import pathlib
import struct

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

HERE = pathlib.Path(__file__).resolve().parent


def write_gguf(path, tensors, kv=True, alignment=None):
    w = gguf.GGUFWriter(str(path), arch="llama")
    if kv:
        w.add_uint32("llama.block_count", 1)
        w.add_float32("llama.rope.freq_base", 10000.0)
        w.add_bool("tokenizer.ggml.add_bos_token", True)
        w.add_string("general.name", "seed")
        w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
        w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0])
        w.add_array("tokenizer.ggml.token_type", [3, 1, 1])
        w.add_uint64("m.u64", 7)
        w.add_int8("m.i8", -3)
        w.add_float64("m.f64", 0.25)
    if alignment:
        w.add_custom_alignment(alignment)
    for name, arr, raw in tensors:
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    rng = np.random.default_rng(0)
    g = HERE / "gguf"
    g.mkdir(exist_ok=True)
    x = rng.standard_normal((2, 32)).astype(np.float32)
    write_gguf(g / "f32_q8.gguf", [("a", x, None), ("b", quantize(x, T.Q8_0), T.Q8_0)])
    write_gguf(g / "legacy.gguf", [("q40", quantize(x, T.Q4_0), T.Q4_0),
                                   ("q41", quantize(x, T.Q4_1), T.Q4_1),
                                   ("q50", quantize(x, T.Q5_0), T.Q5_0),
                                   ("f16", x.astype(np.float16), None)], kv=False, alignment=16)
    k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    write_gguf(g / "q4k.gguf", [("k", k, T.Q4_K)], kv=False)
    write_gguf(g / "empty.gguf", [], kv=True)

    s = HERE / "safetensors"
    s.mkdir(exist_ok=True)
    header = {"__metadata__": {"format": "pt"},
              "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]},
              "e": {"dtype": "I64", "shape": [0], "data_offsets": [20, 20]}}
    text = json.dumps(header).encode()
    (s / "small.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + bytes(range(20)))
    text = b'{"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}  '
    (s / "padded.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + b"abc")


if __name__ == "__main__":
    main()
