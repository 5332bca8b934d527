"""The peer tlm is measured against: HF transformers + PEFT doing the same work as a tlm
command, on the same model file and prompts. Used by tests/bench/run_bench.sh (whole-process
timings, side by side); not part of the test suite.

  peer.py adapt    MODEL.gguf DATA N   online TLM steps (train only) + input ce before/after,
                                       like `tlm adapt --generate false --answer-nll false`
  peer.py generate MODEL.gguf DATA N T greedy answers, batch 8, T new tokens, like `tlm generate`
"""
import json
import math
import pathlib
import sys

import peft
import torch
import transformers

torch.set_num_threads(int(__import__("os").environ.get("BENCH_THREADS", "2")))


def load(model_path):
    p = pathlib.Path(model_path)
    tok = transformers.AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32)
    return tok, model


def prompts(path, n):
    text = pathlib.Path(path).read_text()
    recs = json.loads(text) if path.endswith(".json") else [json.loads(l) for l in text.splitlines() if l.strip()]
    out = []
    for r in recs[:n]:
        if "instruction" in r:
            out.append(r["instruction"] + ("\n" + r["input"] if r.get("input") else ""))
        else:
            out.append(r.get("question") or r.get("prompt"))
    return out


def ids_of(tok, p):
    ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def sample_ce(model, batch):
    T = max(map(len, batch))
    ids = torch.tensor([s + [0] * (T - len(s)) for s in batch])
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in batch])
    logits = model(input_ids=ids, attention_mask=mask).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, 0)
    valid = mask[:, 1:].bool()
    tok = -torch.gather(logp, 2, tgt.unsqueeze(-1)).squeeze(-1) * valid
    return tok.sum(1) / valid.sum(1)


def adapt(model_path, data, n):
    tok, base = load(model_path)
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                      lora_dropout=0.0))
    seqs = [ids_of(tok, p) for p in prompts(data, n)]
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        before = sum(sample_ce(model, seqs[i:i + 8]).sum().item() for i in range(0, len(seqs), 8)) / len(seqs)
    for c in range(0, len(seqs), 8):
        opt = torch.optim.AdamW(params, lr=5e-5)
        for s in seqs[c:c + 8]:
            ce = sample_ce(model, [s])
            mask = ce > 3.0
            coeff = 0.1 * torch.exp(ce.detach() - 3.0)
            loss = (ce * coeff * mask).sum() / max(1, int(mask.sum()))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    with torch.no_grad():
        after = sum(sample_ce(model, seqs[i:i + 8]).sum().item() for i in range(0, len(seqs), 8)) / len(seqs)
    print(f"peer adapt: input ppl {math.exp(before):.3f} -> {math.exp(after):.3f}")


def generate(model_path, data, n, new_tokens):
    tok, model = load(model_path)
    tok.padding_side = "left"
    seqs = [ids_of(tok, p) for p in prompts(data, n)]
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    total = 0
    with torch.no_grad():
        for b in range(0, len(seqs), 8):
            batch = seqs[b:b + 8]
            T = max(map(len, batch))
            ids = torch.tensor([[2] * (T - len(s)) + s for s in batch])
            mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in batch])
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=eos, pad_token_id=2)
            total += int((out[:, T:] != 2).sum())
    print(f"peer generate: {total} new tokens")


if __name__ == "__main__":
    if sys.argv[1] == "adapt":
        adapt(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        generate(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
