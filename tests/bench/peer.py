"""The peer tlm is measured against: HF transformers + PEFT doing the same work as a tlm
command, on the same model file and prompts, timing only the work (model load excluded).
Used by tests/bench/bench.py; not part of the test suite. Prints one JSON object.

  peer.py adapt    MODEL.gguf DATA N      online TLM steps (batch 1, chunks of 8, a fresh AdamW
                                          per chunk) and the input-ce passes before and after,
                                          like `tlm adapt --generate false --answer-nll false`
  peer.py generate MODEL.gguf DATA N T B  greedy answers, batches of B, T new tokens at most,
                                          like `tlm generate --batch-size B`
"""
import json
import math
import os
import pathlib
import sys
import time

import peft
import torch
import transformers

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))


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


def mean_input_ce(model, seqs):
    # Shortest first in batches of 8, as tlm's scoring does.
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    with torch.no_grad():
        total = sum(sample_ce(model, [seqs[i] for i in order[b:b + 8]]).sum().item() for b in range(0, len(seqs), 8))
    return total / len(seqs)


def adapt(model_path, data, n):
    tok, base = load(model_path)
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                      lora_dropout=0.0))
    seqs = [ids_of(tok, p) for p in prompts(data, n)]
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    before = mean_input_ce(model, seqs)
    score_seconds = time.perf_counter() - t0
    selected = 0
    t0 = time.perf_counter()
    for c in range(0, len(seqs), 8):
        opt = torch.optim.AdamW(params, lr=5e-5)
        for s in seqs[c:c + 8]:
            ce = sample_ce(model, [s])
            mask = ce > 3.0
            selected += int(mask.sum())
            coeff = 0.1 * torch.exp(ce.detach() - 3.0)
            loss = (ce * coeff * mask).sum() / max(1, int(mask.sum()))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    after = mean_input_ce(model, seqs)
    score_seconds += time.perf_counter() - t0
    tokens = sum(map(len, seqs))
    print(json.dumps({"train_seconds": train_seconds, "train_tokens": tokens, "score_seconds": score_seconds,
                      "score_tokens": 2 * tokens, "selected": selected, "samples": len(seqs),
                      "input_ppl_base": math.exp(before), "input_ppl_adapted": math.exp(after)}))


def generate(model_path, data, n, new_tokens, batch_size):
    tok, model = load(model_path)
    seqs = [ids_of(tok, p) for p in prompts(data, n)]
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    pad = eos[0]
    total, seconds = 0, 0.0
    with torch.no_grad():
        for b in range(0, len(seqs), batch_size):
            batch = seqs[b:b + batch_size]
            T = max(map(len, batch))
            ids = torch.tensor([[pad] * (T - len(s)) + s for s in batch])
            mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in batch])
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=eos, pad_token_id=pad)
            seconds += time.perf_counter() - t0
            total += int(sum(((row != pad) & (row != eos[1])).sum() for row in out[:, T:]))
    print(json.dumps({"decode_seconds": seconds, "new_tokens": total, "prompts": len(seqs)}))


if __name__ == "__main__":
    if sys.argv[1] == "adapt":
        adapt(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        generate(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
