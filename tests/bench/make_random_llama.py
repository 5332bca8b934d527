"""Writes a Llama-family model with random weights and the real dimensions of a named model
(config.json, model-0000k-of-0000n.safetensors + index, and the tiny test BPE tokenizer with a
chatml template), for measurements that need real sizes but no download:
    python tests/bench/make_random_llama.py llama2-7b OUT_DIR [--dtype bf16]
Tensors are streamed shard by shard, so writing a 13 GB model needs little memory."""
import argparse
import json
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pylib"))

SHAPES = {
    # name: hidden, intermediate, layers, heads, kv heads, vocab, rope theta, tied
    "tiny": (128, 256, 2, 4, 2, 4096, 10000.0, False),  # rehearsals of the benchmark scripts
    "llama3.2-1b": (2048, 8192, 16, 32, 8, 128256, 500000.0, True),
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 32000, 10000.0, False),
    "llama2-7b": (4096, 11008, 32, 32, 32, 32000, 10000.0, False),
    "llama3-8b": (4096, 14336, 32, 32, 8, 128256, 500000.0, False),
    "llama2-13b": (5120, 13824, 40, 40, 40, 32000, 10000.0, False),
}


def tensors(shape):
    H, I, L, nh, nkv, V, _, tied = shape
    D = H // nh
    yield "model.embed_tokens.weight", (V, H)
    for i in range(L):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (H,)
        yield p + "post_attention_layernorm.weight", (H,)
        yield p + "self_attn.q_proj.weight", (nh * D, H)
        yield p + "self_attn.k_proj.weight", (nkv * D, H)
        yield p + "self_attn.v_proj.weight", (nkv * D, H)
        yield p + "self_attn.o_proj.weight", (H, nh * D)
        yield p + "mlp.gate_proj.weight", (I, H)
        yield p + "mlp.up_proj.weight", (I, H)
        yield p + "mlp.down_proj.weight", (H, I)
    yield "model.norm.weight", (H,)
    if not tied:
        yield "lm_head.weight", (V, H)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--shard-gb", type=float, default=2.0)
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    H, I, L, nh, nkv, V, theta, tied = shape
    a.out.mkdir(parents=True, exist_ok=True)
    from tiny_llama import make_tokenizer_files  # the test tokenizer, chatml template
    make_tokenizer_files(a.out)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
              "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": nh,
              "num_key_value_heads": nkv, "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": theta,
              "max_position_embeddings": 4096, "tie_word_embeddings": tied, "torch_dtype":
              "bfloat16" if a.dtype == "bf16" else "float32", "hidden_act": "silu"}
    (a.out / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(0)
    specs = list(tensors(shape))
    limit = a.shard_gb * 1e9
    shards, current, size = [], {}, 0.0
    bytes_per = 2 if a.dtype == "bf16" else 4
    for name, dims in specs:
        n = int(np.prod(dims))
        if current and size + n * bytes_per > limit:
            shards.append(current)
            current, size = {}, 0.0
        current[name] = dims
        size += n * bytes_per
    shards.append(current)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        out = {}
        for name, dims in shard.items():
            if name.endswith("norm.weight"):
                x = np.ones(dims, np.float32)
            else:
                x = (rng.standard_normal(dims, dtype=np.float32) * 0.02)
            t = torch.from_numpy(x)
            out[name] = t.to(torch.bfloat16) if a.dtype == "bf16" else t
            weight_map[name] = fname
            total += x.size * bytes_per
        save_file(out, str(a.out / fname))
        print(f"{fname}: {len(shard)} tensors", flush=True)
    (a.out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    print(f"{a.shape}: {sum(int(np.prod(d)) for _, d in specs) / 1e9:.2f}B parameters, {total / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
