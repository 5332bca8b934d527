"""One benchmark run, one table: tlm against its peer (HF transformers + PEFT, peer.py) on the
same model, prompts and threads, each timing only its work (model load excluded), with the
machine's own limits measured in the same run. Not part of the test suite.

  bench.py TLM_BINARY MODEL.gguf DATA N OUT_DIR [THREADS] [ROUNDS] [TLM_FLAGS]

TLM_FLAGS (one string) is added to every tlm command, e.g. "--packed-weights off" for the
path before oneDNN's packed weights.

Each work kind runs ROUNDS times (default 2), tlm and the peer interleaved; the table shows
each side's median round (bench.json keeps every round's seconds).

Work kinds: online TLM steps over the first N prompts (batch 1, chunks of 8), scoring (the
input-perplexity passes before and after), greedy decode of 64 new tokens at batch 8 (the N
prompts) and at batch 1 (the first 4). For each: tlm's and the peer's tokens/s and their
ratio, tlm's achieved rate, the bound on this machine, and efficiency = achieved / bound:
  step, scoring  FLOP/s against the best product this run's LibTorch does at the model's
                 shapes and row counts (MKL's sgemm or oneDNN's packed one, whichever is faster)
  decode         time per step against max(bytes moved / read bandwidth, FLOPs / peak), the
                 bytes being the fp32 weights read once per step plus the KV cache, the peak
                 the best GEMM rate measured above (the machine's, not LibTorch's rate at the
                 batch's few rows, which tlm's block kernel exceeds); the "GGUF blocks" rows
                 run tlm with --weights gguf, whose bytes are the file's blocks
"""
import json
import pathlib
import re
import statistics
import subprocess
import sys
import time

import torch

import gguf


def model_dims(path):
    """The decoder's dimensions from the GGUF header (any Llama-family GGUF)."""
    r = gguf.GGUFReader(path)

    def val(suffix):
        field = next(v for k, v in r.fields.items() if k.endswith(suffix))
        return int(field.parts[field.data[0]][0])
    H, L, F = val(".embedding_length"), val(".block_count"), val(".feed_forward_length")
    heads, kv = val(".attention.head_count"), val(".attention.head_count_kv")
    V = next(int(max(t.shape)) for t in r.tensors if t.name == "token_embd.weight")
    return dict(H=H, L=L, F=F, heads=heads, kv=kv, D=H // heads, V=V)


def projections(d):
    H, F, D = d["H"], d["F"], d["D"]
    return [(d["heads"] * D, H), (d["kv"] * D, H), (d["kv"] * D, H), (H, d["heads"] * D), (F, H), (F, H), (H, F)]


def forward_flops(d, T):
    """FLOPs of one forward over a T-token sequence: the linears, causal attention, the head."""
    per_token = 2 * (d["L"] * sum(o * i for o, i in projections(d)) + d["V"] * d["H"])
    attention = d["L"] * 2 * T * T * d["heads"] * d["D"]  # QK^T and PV, causal half of 2 x 2 T^2 hD
    return T * per_token + attention


def weight_bytes(d):
    return 4 * (d["L"] * sum(o * i for o, i in projections(d)) + d["V"] * d["H"])


def gguf_weight_bytes(path):
    """Bytes of the GGUF's matrices as stored (what --weights gguf reads per decode step)."""
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors if len(t.shape) == 2)


def timed(f, n):
    f()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_peak(d, rows):
    """FLOP/s of the model's products at `rows` rows: per shape the faster of at::linear (MKL)
    and oneDNN's packed product, summed over one forward's shapes."""
    shapes = projections(d) + [(d["V"], d["H"])]
    total_flops, total_time = 0.0, 0.0
    for out, inp in shapes:
        w = torch.randn(out, inp) * 0.02
        x = torch.randn(rows, inp)
        t_mkl = timed(lambda: torch.nn.functional.linear(x, w), 5)
        p = torch.ops.mkldnn._reorder_linear_weight(w, 8)
        t_dnn = timed(lambda: torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], ""), 5)
        count = 1 if out == d["V"] else d["L"]
        total_flops += count * 2 * rows * out * inp
        total_time += count * min(t_mkl, t_dnn)
    return total_flops / total_time


def read_bandwidth():
    big = torch.ones(256 * 1024 * 1024)  # 1 GiB
    return big.numel() * 4 / timed(lambda: big.sum(), 5)


def run(cmd, out_dir, name):
    """Runs cmd under /usr/bin/time; returns (stdout, peak RSS MiB)."""
    rss_file = out_dir / f"{name}.rss"
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *map(str, cmd)],
                       capture_output=True, text=True)
    (out_dir / f"{name}.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        sys.exit(f"{name} failed (exit {p.returncode}); see {out_dir / (name + '.log')}")
    return p.stdout, int(rss_file.read_text().split()[-1]) / 1024


def decode_steps(records, batch):
    """Decode steps a batched run takes: per batch, its longest answer (+1 when it stopped)."""
    steps = 0
    for b in range(0, len(records), batch):
        steps += max(r["new_tokens"] + (1 if r["stopped"] else 0) for r in records[b:b + batch])
    return steps


def tlm_adapt(tlm, root, model, data, n, threads, out, tag):
    ad = out / f"tlm-adapt-{tag}"
    _, rss = run([tlm[0], "adapt", *tlm[1], "--config", root / "configs/tlm-online.yaml", "--model", model, "--data", data,
                  "--max-samples", n, "--generate", "false", "--answer-nll", "false", "--threads", threads,
                  "--output-dir", ad], out, f"tlm-adapt-{tag}")
    s = json.loads((ad / "summary.json").read_text())
    s["steps"] = [json.loads(l) for l in (ad / "metrics.jsonl").read_text().splitlines() if l.strip()]
    s["rss"] = rss
    return s


def tlm_generate(tlm, model, data, count, batch, threads, out, tag):
    g = out / f"tlm-generate-b{batch}-{tag}"
    _, rss = run([tlm[0], "generate", *tlm[1], "--model", model, "--prompts-file", data, "--max-samples", count,
                  "--max-new-tokens", 64, "--batch-size", batch, "--threads", threads,
                  "--summary", f"{g}.json", "--output", f"{g}.jsonl"], out, g.name)
    gs = json.loads(pathlib.Path(f"{g}.json").read_text())
    gs["records"] = [json.loads(l) for l in pathlib.Path(f"{g}.jsonl").read_text().splitlines()]
    gs["rss"] = rss
    return gs


def peer_run(peer, args, out, name):
    text, rss = run([*peer, *args], out, name)
    r = json.loads(text.strip().splitlines()[-1])
    r["rss"] = rss
    return r


def median_by(runs, key):
    """The run whose `key` is the median (the lower middle one for an even count)."""
    return sorted(runs, key=key)[(len(runs) - 1) // 2]


def print_table(rows):
    print("| work | tlm | HF (+ PEFT) | tlm / HF | tlm achieved | bound | efficiency | peak RSS tlm / HF (MiB) | notes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        if r["kind"] == "flops":
            ach, bnd, eff = f"{r['achieved'] / 1e9:.0f} GFLOP/s", f"{r['bound'] / 1e9:.0f} GFLOP/s", r["achieved"] / r["bound"]
        else:
            ach, bnd, eff = f"{1e3 * r['achieved']:.1f} ms/step", f"{1e3 * r['bound']:.1f} ms/step", r["bound"] / r["achieved"]
        print(f"| {name} | {r['tlm']:.1f} {r['unit']} | {r['peer']:.1f} | {r['tlm'] / r['peer']:.2f} | {ach} | {bnd} | "
              f"{eff:.2f} | {r['tlm_rss']:.0f} / {r['peer_rss']:.0f} | {r['note']} |")


def main():
    binary, model, data, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), pathlib.Path(sys.argv[5])
    threads = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    rounds = int(sys.argv[7]) if len(sys.argv) > 7 else 2
    flags = sys.argv[8].split() if len(sys.argv) > 8 else []
    torch.set_num_threads(threads)
    tlm = (binary, flags)
    out.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(__file__).resolve().parents[2]
    peer = [sys.executable, root / "tests/bench/peer.py"]
    d = model_dims(model)
    rows = {}

    # TLM steps and scoring, tlm and the peer interleaved round by round.
    ts, ps = [], []
    for r in range(rounds):
        ts.append(tlm_adapt(tlm, root, model, data, n, threads, out, r))
        ps.append(peer_run(peer, ["adapt", model, data, n], out, f"peer-adapt-{r}"))
    steps = ts[0]["steps"]
    lengths = [st["tokens"] for st in steps]
    train_flops = sum(forward_flops(d, st["tokens"]) * (2 if any(st["selected"]) else 1) for st in steps)
    score_flops = 2 * sum(forward_flops(d, t) for t in lengths)
    mean_len = round(statistics.mean(lengths))
    peak_step = gemm_peak(d, mean_len)
    peak_score = gemm_peak(d, 8 * mean_len)
    def flops_row(kind, unit, flops, bound, note):
        """A compute-bound work kind: tokens/s of each side's median round, tlm's FLOP/s."""
        s = median_by(ts, lambda x: x[f"{kind}_seconds"])
        p = median_by(ps, lambda x: x[f"{kind}_seconds"])
        return dict(unit=unit, tlm=s[f"{kind}_tokens"] / s[f"{kind}_seconds"],
                    peer=p[f"{kind}_tokens"] / p[f"{kind}_seconds"], achieved=flops / s[f"{kind}_seconds"],
                    bound=bound, kind="flops", tlm_rss=s["rss"], peer_rss=p["rss"],
                    rounds=[(x[f"{kind}_seconds"], y[f"{kind}_seconds"]) for x, y in zip(ts, ps)], note=note(s, p))

    rows["TLM step"] = flops_row("train", "prompt tok/s", train_flops, peak_step,
                                 lambda s, p: f"{s['selected']}/{s['samples']} selected; backward skipped on "
                                              f"{sum(not any(st['selected']) for st in steps)} of {len(steps)} steps")
    rows["scoring"] = flops_row("score", "tok/s", score_flops, peak_score,
                                lambda s, p: f"ppl {s['input_ppl_base']:.3f} -> {s['input_ppl_adapted']:.3f} "
                                             f"(peer {p['input_ppl_base']:.3f} -> {p['input_ppl_adapted']:.3f})")

    # Decode at batch 8 (the N prompts) and batch 1 (the first 4), tlm reading its fp32 weights and
    # (--weights gguf) the GGUF's own blocks; the peer reads fp32.
    bw = read_bandwidth()
    for batch, count in ((8, n), (1, min(4, n))):
        gl, bl, pl = [], [], []
        for r in range(rounds):
            gl.append(tlm_generate(tlm, model, data, count, batch, threads, out, r))
            bl.append(tlm_generate((binary, flags + ["--weights", "gguf"]), model, data, count, batch, threads, out,
                                   f"gguf-{r}"))
            pl.append(peer_run(peer, ["generate", model, data, count, 64, batch], out, f"peer-generate-b{batch}-{r}"))
        pg = median_by(pl, lambda x: x["decode_seconds"])
        for name, runs, bytes_read in ((f"decode b{batch}", gl, weight_bytes(d)),
                                       (f"decode b{batch}, GGUF blocks", bl, gguf_weight_bytes(model))):
            gs = median_by(runs, lambda x: x["decode_seconds"])
            recs = gs["records"]
            nsteps = decode_steps(recs, batch)
            ctx = statistics.mean(r["prompt_tokens"] for r in recs) + 32
            kv_bytes = batch * d["L"] * 2 * d["kv"] * d["D"] * ctx * 4
            step_time = gs["decode_seconds"] / nsteps
            t_mem = (bytes_read + kv_bytes) / bw
            t_flop = 2 * batch * (weight_bytes(d) / 4) / max(peak_step, peak_score)
            same = sum(a["predict"] == b["predict"] for a, b in zip(gl[0]["records"], recs))
            rows[name] = dict(unit="new tok/s", tlm=gs["new_tokens"] / gs["decode_seconds"],
                              peer=pg["new_tokens"] / pg["decode_seconds"], achieved=step_time,
                              bound=max(t_mem, t_flop), kind="time", tlm_rss=gs["rss"], peer_rss=pg["rss"],
                              rounds=[(x["decode_seconds"], y["decode_seconds"]) for x, y in zip(runs, pl)],
                              note=f"{gs['new_tokens']} vs {pg['new_tokens']} new tokens; {1e3 * step_time:.1f} ms/step; "
                                   f"answers equal to the fp32 path: {same} of {len(recs)}")

    print(f"model {pathlib.Path(model).name}: L{d['L']} H{d['H']} V{d['V']}; {n} prompts of {data} "
          f"(mean {mean_len} tokens); {threads} threads; read bandwidth {bw / 1e9:.1f} GB/s; "
          f"GEMM peak at the model's shapes: {peak_step / 1e9:.0f} GFLOP/s at {mean_len} rows, "
          f"{peak_score / 1e9:.0f} at {8 * mean_len}; median of {rounds} interleaved rounds")
    print()
    print_table(rows)
    (out / "bench.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
