"""tlm serve throughput and latency at 1, 4 and 16 concurrent clients, learning on and off
(not in CI). Each setting: a fresh server (default model, one session), `--requests` chat
requests (prompts from the AdaptEval file given, else built-in ones, max_tokens 32, greedy)
sent by N client threads with the `openai` client. Prints one table: requests/s, generated
tokens/s, p50 and p99 latency, and the cost of learning (latency with learning on / off).
With `--sessions K` request i goes to session "tlm/bench-<i mod K>": K adapters whose rows
decode in one batch, each with its own LoRA (compare K = 1, the same work on one adapter).

  python tests/bench/serve_bench.py [--data ../shared/data/adapteval/agriculture.json] [--requests 48]
                                    [--sessions 1] [--clients 1,4,16] [--learn off,on]
"""
import argparse
import concurrent.futures
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "launch"))
import tlm_testing as T  # noqa: E402
from test_serve import Server  # noqa: E402


def prompts_from(path, n):
    if not path:
        base = ["What is crop rotation?", "How do I test soil pH?", "Why do leaves turn yellow?",
                "When is garlic planted?", "What causes blossom end rot?", "How do cover crops help soil?"]
        return [base[i % len(base)] + f" ({i})" for i in range(n)]
    records = json.loads(pathlib.Path(path).read_text())
    return [(r.get("question") or r.get("instruction", "")).strip() for r in records[:n]]


def run(prompts, clients, learn, max_tokens, sessions):
    server = Server("--learn", "true" if learn else "false", "--stream-batch", "8",
                    "--output-dir", T.tmpdir())
    try:
        lat, tokens = [], []

        def one(ip):
            i, p = ip
            t = time.perf_counter()
            r = server.client().chat.completions.create(model=f"tlm/bench-{i % sessions}", max_tokens=max_tokens,
                                                        temperature=0, messages=[{"role": "user", "content": p}])
            lat.append(time.perf_counter() - t)
            tokens.append(r.usage.completion_tokens)

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, enumerate(prompts)))
        wall = time.perf_counter() - start
        steps = sum(a.get("steps", 0) for a in server.adapters().values())
        mixed = metric_value(server, "tlm_decode_steps_mixed_total")
        decode_steps = metric_value(server, "tlm_decode_steps_total")
    finally:
        server.stop()
    return {"clients": clients, "learn": learn, "wall": wall, "rps": len(prompts) / wall,
            "tok_s": sum(tokens) / wall, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "steps": steps, "sessions": sessions, "decode_steps": decode_steps, "mixed_decode_steps": mixed}


def metric_value(server, name):
    _, data = server.raw("GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--learn", default="off,on")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    prompts = prompts_from(a.data, a.requests)
    rows = []
    for clients in map(int, a.clients.split(",")):
        for learn in a.learn.split(","):
            rows.append(run(prompts, clients, learn == "on", a.max_tokens, a.sessions))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| sessions | clients | learning | requests/s | tokens/s | p50 s | p99 s | steps | decode steps (mixed) | p50 on/off |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows):
        prev = rows[i - 1] if i else None
        ratio = f"{r['p50'] / prev['p50']:.2f}" if r["learn"] and prev and not prev["learn"] else ""
        print(f"| {r['sessions']} | {r['clients']} | {'on' if r['learn'] else 'off'} | {r['rps']:.2f} | "
              f"{r['tok_s']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['steps']} | "
              f"{r['decode_steps']:.0f} ({r['mixed_decode_steps']:.0f}) | {ratio} |")
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
