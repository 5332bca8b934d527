"""Soak of `tlm serve` (not in CI): `--minutes` of traffic from `--clients` threads against one
server on a loopback port (default model, learning on, 6 sessions with --max-sessions 4 so the
least recently used ones keep going to disk and coming back, checkpoints every 30 s), where
about 10% of the requests are malformed (invalid JSON, wrong types, empty prompts, oversized
bodies, unknown models, missing or wrong keys, clients that disconnect mid-stream) and the rest
are chat and completion requests, streaming and not. Every 10 s: the server's resident memory
and /healthz. At the end: SIGTERM (exit 0 wanted), then a new server with --resume latest (frozen) must
bring every session back with the prompts its newest checkpoint says it learned. Prints one JSON summary and a table:
requests by outcome, crashes (0 wanted), sessions lost (0 wanted), and resident memory over
time (flat wanted: the last minute's median against the second minute's).

  python tests/bench/serve_soak.py [--minutes 10] [--clients 8] [--out soak.json]
"""
import argparse
import http.client
import json
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pylib"))
import tlm_testing as T  # noqa: E402

KEY = "soak-key"
SESSIONS = ["tlm", "tlm/a", "tlm/b", "tlm/c", "tlm/d", "tlm/e"]
PROMPTS = ["What is crop rotation?", "How do I test soil pH?", "Why do leaves turn yellow?",
           "When is garlic planted?", "What is a bond coupon?", "How does compound interest work?",
           "What causes blossom end rot?", "How much water does maize need?"]


class Server:
    """tlm serve with its log in a file (a pipe would fill up over minutes of traffic)."""

    def __init__(self, work, *flags):
        self.log = open(work / f"serve-{int(time.time() * 1000)}.log", "w")
        self.proc = subprocess.Popen(
            [T.binary("launch/tlm"), "serve", "--config", str(T.SOURCE_DIR / "configs/serve.yaml"), "--port", "0",
             "--api-key", KEY, "--threads", "2", "--max-body-bytes", "65536", *map(str, flags)],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"tlm serve did not start: {line!r}; log {self.log.name}")
        self.host, self.port = m.group(1), int(m.group(2))

    def request(self, method, path, body=None, key=KEY, timeout=300):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def rss_mib(self):
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.proc.returncode


def saved_sessions(ckpt):
    """{model id: prompts learned} from the newest checkpoint of each session folder."""
    import h5py
    out = {}
    for folder in sorted(ckpt.iterdir()):
        files = sorted(folder.glob("step-*.h5"), key=lambda f: int(f.stem.split("-")[1]))
        if not files:
            continue
        with h5py.File(files[-1], "r") as f:
            learned = int(f["state"].attrs["samples_consumed"])
        out["tlm" if folder.name == "shared" else "tlm/" + folder.name[len("session-"):]] = learned
    return out


def chat_body(model, prompt, rng, stream):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream,
                       "max_tokens": rng.randint(4, 24), "temperature": 0})


def malformed(rng):
    """(method, path, body, key, statuses wanted); None body means a mid-stream disconnect."""
    msg = [{"role": "user", "content": "x"}]
    cases = [
        ("/v1/chat/completions", b"{not json", KEY, {400}),
        ("/v1/chat/completions", json.dumps({"model": "tlm", "messages": "hi"}).encode(), KEY, {400}),
        ("/v1/chat/completions", json.dumps({"model": "tlm", "messages": msg, "max_tokens": "9"}).encode(), KEY, {400}),
        ("/v1/completions", json.dumps({"model": "tlm", "prompt": ""}).encode(), KEY, {400}),
        ("/v1/completions", json.dumps({"model": "tlm", "prompt": "x" * 100000}).encode(), KEY, {413}),
        ("/v1/chat/completions", json.dumps({"model": "nope", "messages": msg}).encode(), KEY, {404}),
        ("/v1/chat/completions", json.dumps({"model": "tlm", "messages": msg}).encode(), None, {401}),
        ("/v1/chat/completions", json.dumps({"model": "tlm", "messages": msg}).encode(), "wrong", {401}),
        ("/v1/chat/completions", None, KEY, set()),
    ]
    return rng.choice(cases)


def disconnect_mid_stream(server, rng):
    s = socket.create_connection((server.host, server.port), timeout=60)
    body = chat_body(rng.choice(SESSIONS), "Tell me a long story.", rng, True)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    s.recv(256)  # the first bytes of the answer, then gone
    s.close()


def client(server, seed, deadline, counts, lock):
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        try:
            if rng.random() < 0.1:
                path, body, key, want = malformed(rng)
                if body is None:
                    disconnect_mid_stream(server, rng)
                    outcome = "disconnected mid-stream"
                else:
                    status, _ = server.request("POST", path, body, key=key)
                    outcome = f"malformed -> {status}" if status in want else f"UNEXPECTED malformed -> {status}"
            else:
                model, prompt = rng.choice(SESSIONS), rng.choice(PROMPTS) + f" ({rng.randint(0, 9999)})"
                if rng.random() < 0.5:
                    body = chat_body(model, prompt, rng, rng.random() < 0.5)
                    status, data = server.request("POST", "/v1/chat/completions", body)
                else:
                    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": rng.randint(4, 24)})
                    status, data = server.request("POST", "/v1/completions", body)
                outcome = "answered" if status == 200 else f"UNEXPECTED valid -> {status}"
        except Exception as e:  # noqa: BLE001 (a refused connection is a crash of the server)
            outcome = f"EXCEPTION {type(e).__name__}"
        with lock:
            counts[outcome] = counts.get(outcome, 0) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    work = T.tmpdir("tlm-soak-")
    flags = ["--stream-batch", 4, "--max-sessions", 4, "--checkpoint-dir", work / "ckpt",
             "--checkpoint-every-seconds", 30, "--output-dir", work / "out"]
    server = Server(work, *flags)
    counts, lock = {}, threading.Lock()
    start = time.monotonic()
    deadline = start + a.minutes * 60
    threads = [threading.Thread(target=client, args=(server, i, deadline, counts, lock)) for i in range(a.clients)]
    for t in threads:
        t.start()
    rss, health = [], []
    while time.monotonic() < deadline and server.proc.poll() is None:
        time.sleep(10)
        if server.proc.poll() is None:
            rss.append((time.monotonic() - start, server.rss_mib()))
            health.append(server.request("GET", "/healthz", key=None)[0])
    for t in threads:
        t.join()
    crashed = server.proc.poll() is not None
    code = server.stop()  # SIGTERM: every changed session is checkpointed
    saved = saved_sessions(work / "ckpt")
    # A frozen server (no learning, so the counts cannot move) brings each session back; a
    # request loads it into memory, /v1/adapters then reports what it learned.
    resumed = Server(work, *flags, "--resume", "latest", "--learn", "false")
    after = {}
    for sid in saved:
        resumed.request("POST", "/v1/completions", json.dumps({"model": sid, "prompt": "Hi", "max_tokens": 1}))
        status, data = resumed.request("GET", "/v1/adapters")
        listed = {x["id"]: x for x in json.loads(data)["data"]}
        after[sid] = listed.get(sid, {}).get("learned_prompts", -1)
    resumed_code = resumed.stop()
    used = sorted(saved)
    lost = [s for s in used if after.get(s) != saved[s]]
    second = [m for t, m in rss if 60 <= t < 120] or [m for _, m in rss[:6]]
    last = [m for t, m in rss if t >= rss[-1][0] - 60] if rss else []
    med = lambda v: sorted(v)[len(v) // 2] if v else 0.0  # noqa: E731
    summary = {"minutes": a.minutes, "clients": a.clients, "requests": sum(counts.values()), "outcomes": counts,
               "crashed": crashed, "exit_code": code, "resumed_exit_code": resumed_code,
               "healthz_not_200": sum(1 for h in health if h != 200), "sessions_used": used,
               "learned_saved": saved, "learned_after_resume": after, "sessions_lost": lost,
               "rss_mib_second_minute": med(second), "rss_mib_last_minute": med(last),
               "rss_mib_max": max((m for _, m in rss), default=0.0), "rss_samples": rss, "work": str(work)}
    print(json.dumps(summary, indent=1))
    bad = sum(n for k, n in counts.items() if k.startswith(("UNEXPECTED", "EXCEPTION")))
    print(f"\n| requests | malformed | unexpected | crashes | sessions lost | RSS MiB (2nd min -> last min, max) |")
    print("| --- | --- | --- | --- | --- | --- |")
    mal = sum(n for k, n in counts.items() if k.startswith(("malformed", "disconnected")))
    print(f"| {summary['requests']} | {mal} | {bad} | {int(crashed)} | {len(lost)} of {len(used)} | "
          f"{summary['rss_mib_second_minute']:.0f} -> {summary['rss_mib_last_minute']:.0f}, "
          f"{summary['rss_mib_max']:.0f} |")
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(summary, indent=1))
    return 0 if not crashed and not lost and bad == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
