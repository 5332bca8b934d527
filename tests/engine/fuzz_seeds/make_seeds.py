"""Writes the committed seed corpora of the libFuzzer targets (tests/fuzzing.cmake):
prompt records, tokenizer files, chat templates, serve request bodies, PEFT adapters. Run with the venv's
Python from the repository root; the seeds are committed, so the tests never need this."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "pylib"))
sys.path.insert(0, str(ROOT / "tests" / "engine" / "tokenizer"))
OUT = pathlib.Path(__file__).resolve().parent


def put(kind, name, data):
    d = OUT / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def records():
    put("prompt_records", "jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"instruction": "How do legumes fix nitrogen?", "output": "Rhizobia."},
        {"instruction": "Summarise:", "input": "Crop rotation keeps soil healthy.", "output": "Rotate."},
        {"question": "What is a bond coupon?", "answer": "Interest.", "context": "Finance"},
        {"prompt": "   "}, {"messages": [{"role": "user", "content": "Hi"}]}, {"text": 3}]))
    put("prompt_records", "array.json", json.dumps([{"instruction": "Why irrigate?", "output": "Water."},
                                                    {"query": "Define yield.", "response": "Output per area."}]))
    put("prompt_records", "text.txt", "How much water does maize need?\n\nWhat is a bond coupon?\r\n")
    put("prompt_records", "bad-utf8.jsonl", b'{"instruction": "caf\xc3"}\n{"instruction": "ok \xe2\x82\xac"}\n')


def tokenizers_files():
    from tiny_llama import make_tokenizer_files
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp())
    make_tokenizer_files(d)
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["model"]["merges"] = tok["model"]["merges"][:40]  # small seeds mutate faster
    keep = {k: v for k, v in tok["model"]["vocab"].items() if v < 300}
    tok["model"]["vocab"] = keep
    config = (d / "tokenizer_config.json").read_text()
    put("tokenizer_files", "bpe", json.dumps(tok))
    put("tokenizer_files", "bpe-with-config", json.dumps(tok) + "\n#tokenizer_config.json\n" + config)


def peft_adapters():
    # adapter_config.json, NUL, adapter_model.safetensors; shapes of tests/engine/model's tiny
    # Llama (hidden 32, intermediate 64, 2 layers, 4 heads of 8, 2 KV heads).
    import numpy as np
    from safetensors.numpy import save
    shapes = {"q_proj": (32, 32), "k_proj": (16, 32), "v_proj": (16, 32), "o_proj": (32, 32),
              "gate_proj": (64, 32), "up_proj": (64, 32), "down_proj": (32, 64)}
    prefix = "base_model.model.model.layers."
    rng = np.random.default_rng(5)

    def lora(name, targets, r, dtype):
        tensors = {}
        for layer in range(2):
            for t in targets:
                out, inp = shapes[t]
                part = "self_attn" if t.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
                base = f"{prefix}{layer}.{part}.{t}"
                tensors[base + ".lora_A.weight"] = rng.standard_normal((r, inp)).astype(dtype)
                tensors[base + ".lora_B.weight"] = rng.standard_normal((out, r)).astype(dtype)
        config = {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0, "target_modules": targets,
                  "task_type": "CAUSAL_LM"}
        put("peft_adapter", name, json.dumps(config).encode() + b"\0" + save(tensors))

    lora("lora-qv", ["q_proj", "v_proj"], 4, np.float32)
    lora("lora-all-f16", list(shapes), 2, np.float16)
    ln = {f"{prefix}{layer}.input_layernorm.ln_tuning_layers.weight": np.ones(32, np.float32) for layer in range(2)}
    put("peft_adapter", "ln-tuning", json.dumps({"peft_type": "LN_TUNING", "target_modules": ["input_layernorm"]}).encode()
        + b"\0" + save(ln))


def templates():
    from test_parity_chat_templates import LLAMA2_TEMPLATE, LLAMA3_TEMPLATE, MISTRAL_TEMPLATE, QWEN25_TEMPLATE
    for name, text in [("llama2", LLAMA2_TEMPLATE), ("llama3", LLAMA3_TEMPLATE), ("mistral", MISTRAL_TEMPLATE),
                       ("qwen", QWEN25_TEMPLATE)]:
        put("chat_template", name, text)
    put("chat_template", "chatml",
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def requests():
    put("request_body", "chat", json.dumps({"model": "tlm", "messages": [{"role": "system", "content": "Be terse."},
                                                                         {"role": "user", "content": "Hi"}],
                                            "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 3,
                                            "stop": ["\n", "END"], "stream": True,
                                            "stream_options": {"include_usage": True}}))
    put("request_body", "completion", json.dumps({"model": "tlm/alice", "prompt": "Soil is", "max_tokens": 4,
                                                  "stop": "."}))
    put("request_body", "base", json.dumps({"model": "base", "prompt": ["a", "b"], "temperature": None}))


if __name__ == "__main__":
    records()
    tokenizers_files()
    templates()
    requests()
    peft_adapters()
