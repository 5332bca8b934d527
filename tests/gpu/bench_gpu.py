"""One-GPU benchmark of the TLM step: tlm against HF transformers + PEFT doing the same steps
on the same GPU, on a random model of a real shape (tests/bench/make_random_llama.py; default
Llama-3.2-1B, bf16 base, fp32 LoRA r 8 on q/v and fp32 AdamW on both sides).

Both sides train online TLM on the same token ids (the stream of configs/demo-stream.jsonl,
each prompt its instruction and reference joined, so a prompt is ~100-250 tokens of the test
tokenizer), chunks of 8 with a fresh AdamW each, batch 1, threshold 0 (every sample selected:
every step has a backward), clipping at 1. Timed: the optimiser steps only (loading excluded),
each step from its start to the GPU being done (tlm's per-step record; torch.cuda.synchronize
on the peer side), the first step of each side reported apart (CUDA and cuBLAS start-up).
Memory per component: weights, LoRA + AdamW, peak activations (caching allocator peaks).

    python tests/gpu/bench_gpu.py --tlm build/launch/tlm --work /tmp/bench [--shape llama3.2-1b]
        [--device cuda] [--repeat 2] [--json OUT.json]
Prints a table and writes the figures as JSON. Not part of the test suite.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "pylib"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

MIB = 1024.0 * 1024.0


def make_stream(path, repeat):
    records = [json.loads(l) for l in (ROOT / "configs" / "demo-stream.jsonl").read_text().splitlines() if l.strip()]
    lines = [json.dumps({"instruction": r["instruction"] + " " + r["output"]}) for r in records] * repeat
    path.write_text("\n".join(lines) + "\n")
    return [json.loads(l)["instruction"] for l in lines]


def run_tlm(args, model_dir, data, out):
    cmd = [args.tlm, "adapt", "--config", ROOT / "configs" / "tlm-online.yaml", "--model", model_dir, "--data", data,
           "--output-dir", out, "--device", args.device, "--dtype", args.dtype, "--chat-template", "chatml",
           "--cutoff-len", 0, "--threshold", 0, "--stream-batch", 8, "--generate", "false", "--answer-nll", "false"]
    t = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"tlm adapt failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    mem = summary["memory"]["per_rank"][0]
    return {"step_seconds": [s["seconds"] for s in steps], "tokens": [s["tokens"] for s in steps],
            "loss": [s["loss"] for s in steps], "weights_mib": mem["weights_mib"],
            "trainable_mib": mem["trainable_mib"], "peak_activations_mib": mem["peak_activations_mib"],
            "host_rss_mib": mem["host_rss_mib"], "process_seconds": wall,
            "log": [l for l in proc.stderr.splitlines() if "memory" in l or "layout" in l]}


def sample_ce(model, seq, device):
    ids = torch.tensor([seq], device=device)
    logits = model(input_ids=ids).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tok = -torch.gather(logp, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return tok.mean(1)


def run_peer(args, model_dir, prompts):
    import peft
    import transformers
    from tiny_llama import chat_ids

    dev = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(dev)
    weights = sum(p.numel() * p.element_size() for p in base.parameters())
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                      lora_dropout=0.0))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    seqs = [chat_ids(tok, p) for p in prompts]
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_allocated = torch.cuda.memory_allocated()
    times, tokens, losses = [], [], []
    for c in range(0, len(seqs), 8):
        opt = torch.optim.AdamW(params, lr=5e-5)
        for s in seqs[c:c + 8]:
            t = time.perf_counter()
            ce = sample_ce(model, s, dev)
            mask = ce > 0.0
            coeff = 0.1 * torch.exp(ce.detach() - 0.0)
            loss = (ce * coeff * mask).sum() / max(1, int(mask.sum()))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            tokens.append(len(s))
    trainable = sum(p.numel() * p.element_size() * 3 for p in params)  # weights + two AdamW moments
    peak = 0.0
    if dev.type == "cuda":
        peak = max(0.0, torch.cuda.max_memory_allocated() - base_allocated - trainable)
    return {"step_seconds": times, "tokens": tokens, "loss": losses, "weights_mib": weights / MIB,
            "trainable_mib": trainable / MIB, "peak_activations_mib": peak / MIB}


def rates(side):
    t, n = side["step_seconds"], side["tokens"]
    rest_t, rest_n = sum(t[1:]), sum(n[1:])
    return {"first_step_s": t[0], "median_step_s": statistics.median(t[1:]),
            "steps_per_s": (len(t) - 1) / rest_t, "tokens_per_s": rest_n / rest_t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tlm", required=True)
    ap.add_argument("--work", type=pathlib.Path, required=True)
    ap.add_argument("--shape", default="llama3.2-1b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=pathlib.Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    model_dir = a.work / f"model-{a.shape}"
    if not (model_dir / "config.json").exists():
        subprocess.run([sys.executable, ROOT / "tests" / "bench" / "make_random_llama.py", a.shape, model_dir,
                        "--dtype", "bf16"], check=True, stdout=subprocess.DEVNULL)
    data = a.work / "stream.jsonl"
    prompts = make_stream(data, a.repeat)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    # tlm first, in its own process, while this one holds nothing on the device yet.
    ours = run_tlm(a, model_dir, data, a.work / "tlm-run")
    peer = run_peer(a, model_dir, prompts)
    r_ours, r_peer = rates(ours), rates(peer)
    gpu = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    result = {"shape": a.shape, "device": gpu, "dtype": a.dtype, "steps": len(ours["step_seconds"]),
              "mean_tokens_per_step": statistics.mean(ours["tokens"]), "tlm": {**ours, **r_ours},
              "hf_peft": {**peer, **r_peer}, "ratio_tokens_per_s": r_ours["tokens_per_s"] / r_peer["tokens_per_s"],
              "first_losses": {"tlm": ours["loss"][:3], "hf_peft": peer["loss"][:3]}}
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    print(f"\nTLM steps on {gpu}: {a.shape} random weights, {a.dtype} base, fp32 LoRA r8 q/v + AdamW, "
          f"{result['steps']} steps of batch 1, {result['mean_tokens_per_step']:.0f} tokens per step on average")
    print(f"{'':24}{'tlm':>14}{'HF + PEFT':>14}{'tlm / HF':>10}")
    for key, label, fmt in (("tokens_per_s", "tokens/s (steps 2..N)", "{:14.0f}"),
                            ("steps_per_s", "steps/s (steps 2..N)", "{:14.2f}"),
                            ("median_step_s", "median step, ms", None), ("first_step_s", "first step, ms", None)):
        o, p = r_ours[key], r_peer[key]
        if fmt is None:
            print(f"{label:24}{o * 1e3:14.1f}{p * 1e3:14.1f}{p / o:10.2f}")
        else:
            print(f"{label:24}" + fmt.format(o) + fmt.format(p) + f"{o / p:10.2f}")
    for key, label in (("weights_mib", "weights, MiB"), ("trainable_mib", "LoRA + AdamW, MiB"),
                       ("peak_activations_mib", "peak activations, MiB")):
        print(f"{label:24}{ours[key]:14.1f}{peer[key]:14.1f}")
    print(f"{'first losses':24}{str([round(x, 4) for x in ours['loss'][:2]]):>14}"
          f"{str([round(x, 4) for x in peer['loss'][:2]]):>14}")


if __name__ == "__main__":
    main()
