"""`tlm serve` against clients nobody here wrote: OpenAI's Python client (chat and
completions, streaming and not, auth), prometheus_client's text parser on /metrics, raw
HTTP for the bad requests, with the default model (SmolLM2-135M-Instruct).

  ServeApi       models, auth refused and accepted, chat/completions (a stream's text equals
                 the whole answer), a session that learns while the shared adapter stays as it
                 was, /metrics, bad requests (each its status, the server keeps serving), a
                 client that disconnects mid-stream, 16 concurrent clients whose greedy answers
                 equal the ones each request gets alone.
  ServeLearning  a session's adapter after 8 served prompts is bitwise the adapter `tlm adapt`
                 learns from the same 8 prompts (online, chunks of 4); SIGTERM after 6 and
                 `--resume latest` give bitwise that same adapter; the same with collapse guards
                 (resets, probes, rollbacks: adapter and events equal tlm adapt's, and in
                 /metrics); requests of two sessions, the shared adapter and the base decode in
                 one batch, each row with its own LoRA, and get their alone answers; the same
                 for norm-affine sessions (adapter bitwise tlm adapt's); SIGTERM under load answers every admitted request and persists each
                 answered prompt exactly once.
"""
import concurrent.futures
import http.client
import json
import pathlib
import re
import signal
import socket
import subprocess
import time
import unittest

import h5py
import numpy as np
import openai
from prometheus_client.parser import text_string_to_metric_families
from safetensors.numpy import load_file

import tlm_testing as T

KEY = "test-key-1234"
PROMPTS = [
    "What is crop rotation?",
    "How do I test soil pH at home?",
    "Why do tomato leaves turn yellow?",
    "What is the best time to plant garlic?",
    "How much water does a young apple tree need?",
    "What causes blossom end rot?",
    "How do cover crops improve soil?",
    "When should wheat be harvested?",
]
GENERAL = [
    "Write a short poem about the sea.",
    "What is the capital of France?",
    "Explain how a bicycle works.",
    "Give me three tips for learning to cook.",
]


class Server:
    """A `tlm serve` on a free loopback port (port 0: the server prints the one it took)."""

    def __init__(self, *flags, env=None, launcher=(), threads=2, stop_signal=signal.SIGTERM):
        """`launcher`: a command in front (mpirun ...); `stop_signal`: what stop() sends."""
        self.stop_signal = stop_signal
        self.proc = subprocess.Popen(
            [*map(str, launcher), T.binary("launch/tlm"), "serve", "--config", str(T.SOURCE_DIR / "configs/serve.yaml"),
             "--port", "0", "--threads", str(threads), *map(str, flags)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"tlm serve did not start: {line!r}\n{self.proc.stderr.read()[-3000:]}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"

    def client(self, key=KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def raw(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def adapters(self, key=KEY):
        status, data = self.raw("GET", "/v1/adapters", headers={"Authorization": f"Bearer {key}"})
        assert status == 200, data
        return {a["id"]: a for a in json.loads(data)["data"]}

    def wait_learned(self, session, n, key=KEY, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            a = self.adapters(key).get(session, {})
            if a.get("learned_prompts", 0) >= n:
                return a
            time.sleep(0.2)
        raise AssertionError(f"{session} did not learn {n} prompts in {timeout} s: {self.adapters(key)}")

    def export(self, session, key=KEY):
        status, data = self.raw("POST", f"/v1/adapters/{session}/export", headers={"Authorization": f"Bearer {key}"})
        assert status == 200, data
        return pathlib.Path(json.loads(data)["path"])

    def stop(self, signal_sent=False):
        """SIGTERM (unless already sent: a second one means exit at once); returns (exit code, stderr)."""
        if self.proc.poll() is None and not signal_sent:
            self.proc.send_signal(self.stop_signal)
        try:
            _, err = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def chat(client, model, prompt, max_tokens=16, stream=False):
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
        return r.choices[0].message.content
    parts = []
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


class ServeApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        T.require_default_model()
        cls.dir = T.tmpdir()
        cls.server = Server("--api-key", KEY, "--stream-batch", "4", "--max-body-bytes", "65536",
                            "--output-dir", cls.dir)
        cls.client = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "server"):
            code, err = cls.server.stop()
            assert code == 0, err[-3000:]

    def test_models_and_auth(self):
        ids = [m.id for m in self.client.models.list().data]
        self.assertIn("base", ids)
        self.assertIn("tlm", ids)
        with self.assertRaises(openai.AuthenticationError):
            self.server.client("wrong-key").models.list()
        status, body = self.server.raw("POST", "/v1/chat/completions", body=b"{}")
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(body)["error"]["type"], "authentication_error")
        self.assertEqual(self.server.raw("GET", "/healthz")[0], 200)  # health needs no key

    def test_chat_and_completions_stream_equals_whole(self):
        whole = chat(self.client, "base", "Name three fruits.")
        self.assertTrue(whole)
        self.assertEqual(chat(self.client, "base", "Name three fruits.", stream=True), whole)
        r = self.client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=4)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.usage.completion_tokens, 4)
        self.assertEqual(r.choices[0].finish_reason, "length")
        c = self.client.completions.create(model="base", prompt="The capital of France is", max_tokens=8)
        text = "".join(ch.choices[0].text for ch in self.client.completions.create(
            model="base", prompt="The capital of France is", max_tokens=8, stream=True))
        self.assertEqual(text, c.choices[0].text)
        self.assertGreater(c.usage.prompt_tokens, 0)
        # A stop sequence ends the answer before it.
        stopped = self.client.completions.create(model="base", prompt="The capital of France is", max_tokens=8,
                                                 stop=[c.choices[0].text.strip()[:3]])
        self.assertEqual(stopped.choices[0].finish_reason, "stop")
        self.assertLess(len(stopped.choices[0].text), len(c.choices[0].text))

    def test_session_learns_shared_unchanged(self):
        before = self.server.adapters()["tlm"]
        for p in PROMPTS[:4]:
            chat(self.client, "tlm/learner", p, max_tokens=4)
        a = self.server.wait_learned("tlm/learner", 4)
        self.assertGreaterEqual(a["steps"], 4)
        self.assertGreater(a["version"], 0)
        self.assertEqual(self.server.adapters()["tlm"]["version"], before["version"])
        self.assertIn("tlm/learner", [m.id for m in self.client.models.list().data])
        session = load_file(self.server.export("tlm/learner") / "adapter_model.safetensors")
        shared = load_file(self.server.export("tlm") / "adapter_model.safetensors")
        b = [k for k in session if "lora_B" in k]
        self.assertTrue(b)
        self.assertTrue(any(np.abs(session[k]).max() > 0 for k in b), "the session's lora_B did not move")
        self.assertTrue(all(np.abs(shared[k]).max() == 0 for k in b), "the shared adapter moved")
        families = {f.name: f for f in text_string_to_metric_families(
            self.server.raw("GET", "/metrics", headers={"Authorization": f"Bearer {KEY}"})[1].decode())}
        steps = families["tlm_learning_steps"].samples[0].value  # the parser drops _total
        self.assertGreaterEqual(steps, 4)
        self.assertIn("tlm_request_latency_seconds", families)
        self.assertIn("tlm_recent_input_perplexity", families)
        self.assertIn("tlm_seconds_since_last_checkpoint", families)

    def test_bad_requests_get_their_status(self):
        auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        cases = [
            (b"{not json", 400),
            (json.dumps({"model": "tlm", "messages": "hi"}).encode(), 400),
            (json.dumps({"model": "tlm", "messages": [{"role": "user", "content": 5}]}).encode(), 400),
            (json.dumps({"model": "tlm", "messages": [{"role": "user", "content": ""}]}).encode(), 400),
            (json.dumps({"model": 7, "messages": [{"role": "user", "content": "x"}]}).encode(), 400),
            (json.dumps({"model": "tlm", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}).encode(), 400),
            (json.dumps({"model": "tlm", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9}).encode(), 400),
            (json.dumps({"model": "tlm", "messages": [{"role": "user", "content": "x"}], "temperature": -1}).encode(), 400),
            (json.dumps({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).encode(), 404),
            (json.dumps({"model": "tlm/bad name", "messages": [{"role": "user", "content": "x"}]}).encode(), 400),
            (json.dumps({"model": "tlm", "prompt": "x" * 100000}).encode(), 413),
        ]
        for body, want in cases:
            path = "/v1/completions" if b'"prompt"' in body else "/v1/chat/completions"
            status, data = self.server.raw("POST", path, body=body, headers=auth)
            self.assertEqual(status, want, (body[:80], data[:300]))
            self.assertIn("error", json.loads(data), data[:300])
        status, _ = self.server.raw("POST", "/v1/completions", body=json.dumps({"model": "tlm", "prompt": ""}),
                                    headers=auth)
        self.assertEqual(status, 400)
        self.assertEqual(self.server.raw("GET", "/v1/nothing", headers=auth)[0], 404)
        # A client that goes away mid-stream: dropped cleanly, the server keeps serving.
        s = socket.create_connection((self.server.host, self.server.port))
        body = json.dumps({"model": "base", "stream": True, "max_tokens": 200,
                           "messages": [{"role": "user", "content": "Tell me a long story."}]})
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        received = b""
        while b"data: " not in received:
            chunk = s.recv(4096)
            self.assertTrue(chunk, f"the stream closed before any event: {received!r}")
            received += chunk
        s.close()
        self.assertTrue(chat(self.client, "base", "Say hi.", max_tokens=4))
        self.assertEqual(self.server.raw("GET", "/healthz")[0], 200)

    def test_16_concurrent_clients_get_their_alone_answers(self):
        prompts = [PROMPTS[i % len(PROMPTS)] + (" Briefly." if i >= 8 else "") for i in range(16)]
        alone = [chat(self.client, "base", p, max_tokens=12) for p in prompts]

        def one(i):
            return chat(self.server.client(), "base", prompts[i], max_tokens=12, stream=i % 2 == 0)

        start = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            together = list(pool.map(one, range(16)))
        print(f"[serve] 16 concurrent requests answered in {time.time() - start:.1f} s", flush=True)
        self.assertEqual(together, alone)


def adapt_reference(dirpath, prompts, *flags, name="adapt"):
    """The adapter `tlm adapt` (online, chunks of 4, `flags` added) learns from `prompts`."""
    data = dirpath / "prompts.jsonl"
    data.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts))
    out = dirpath / name
    T.run([T.binary("launch/tlm"), "adapt", "--config", T.SOURCE_DIR / "configs/tlm-online.yaml", "--data", data,
           "--stream-batch", "4", "--generate", "false", "--answer-nll", "false", "--threads", "2",
           "--output-dir", out, *map(str, flags)])
    return load_file(out / "adapter" / "adapter_model.safetensors")


def guard_events(path):
    """guards.jsonl's events without the session they belong to."""
    events = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
    for e in events:
        e.pop("session", None)
    return events


def metric_values(server, name):
    """{labels as a sorted tuple: value} of one metric family on /metrics."""
    status, data = server.raw("GET", "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 200, data
    return {tuple(sorted(s.labels.items())): s.value for fam in text_string_to_metric_families(data.decode())
            for s in fam.samples if s.name == name}


def learn_and_export(server, session, prompts):
    """Sends `prompts` to `session` one by one (4 new tokens each), waits until it learned them
    all, and returns its exported adapter."""
    client = server.client()
    for p in prompts:
        chat(client, session, p, max_tokens=4)
    server.wait_learned(session, len(prompts))
    return load_file(server.export(session) / "adapter_model.safetensors")


def assert_bitwise(testcase, ours, ref, what):
    testcase.assertEqual(sorted(ours), sorted(ref), what)
    for k in ref:
        testcase.assertTrue(np.array_equal(ours[k], ref[k]), f"{what}: {k} differs by {np.abs(ours[k] - ref[k]).max()}")
    print(f"[parity] {what}: {len(ref)} tensors bitwise equal", flush=True)


class ServeLearning(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        T.require_default_model()
        cls.dir = T.tmpdir()
        cls.reference = adapt_reference(cls.dir, PROMPTS)

    def test_served_session_equals_tlm_adapt(self):
        server = Server("--stream-batch", "4", "--output-dir", self.dir / "plain")
        try:
            served = learn_and_export(server, "tlm/s", PROMPTS)
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        assert_bitwise(self, served, self.reference, "served session vs tlm adapt")

    def test_sigterm_and_resume_continue_exactly(self):
        ck = self.dir / "ck-resume"
        server = Server("--stream-batch", "4", "--checkpoint-dir", ck, "--output-dir", self.dir / "r1")
        for p in PROMPTS[:6]:
            chat(server.client(), "tlm/r", p, max_tokens=4)
        server.wait_learned("tlm/r", 4)
        code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        files = sorted((ck / "session-r").glob("step-*.h5"))
        self.assertTrue(files, list(ck.rglob("*")))
        with h5py.File(files[-1], "r") as f:
            sched = json.loads(f["state"].attrs["scheduler_state"])
            self.assertEqual(int(f["state"].attrs["samples_consumed"]), 4)
        self.assertEqual(len(sched["queue"]) + len(sched["chunk"]) - sched["chunk_pos"], 2)
        # A new server refuses the folder without --resume.
        proc = subprocess.run([T.binary("launch/tlm"), "serve", "--config", T.SOURCE_DIR / "configs/serve.yaml",
                               "--port", "0", "--checkpoint-dir", ck], capture_output=True, text=True, timeout=120)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("--resume latest", proc.stderr)
        server = Server("--stream-batch", "4", "--checkpoint-dir", ck, "--resume", "latest",
                        "--output-dir", self.dir / "r2")
        try:
            a = server.adapters(key="")["tlm/r"]
            self.assertEqual((a["learned_prompts"], a["queued_prompts"]), (4, 2))
            for p in PROMPTS[6:]:
                chat(server.client(), "tlm/r", p, max_tokens=4)
            server.wait_learned("tlm/r", 8)
            resumed = load_file(server.export("tlm/r") / "adapter_model.safetensors")
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        assert_bitwise(self, resumed, self.reference, "stopped + resumed session vs tlm adapt")

    def test_sessions_decode_together_each_with_its_adapter(self):
        # Two sessions learn different prompts (lr 2e-3, so that their answers differ), then
        # their requests, the shared adapter's and the base model's decode in one batch, each
        # row with its own LoRA: every greedy answer equals the one the request gets alone.
        # (Chunks of 4: the 3 later requests per session stay queued, the adapters fixed.)
        server = Server("--stream-batch", "4", "--lr", "2e-3", "--output-dir", self.dir / "mixed")
        try:
            client = server.client()
            for session, prompts in (("tlm/a", PROMPTS[:4]), ("tlm/b", PROMPTS[4:])):
                for p in prompts:
                    chat(client, session, p, max_tokens=4)
                server.wait_learned(session, 4)
            question = "What should I know before planting a small orchard?"
            models = ["tlm/a", "tlm/b", "tlm", "base"]
            alone = {m: chat(client, m, question, max_tokens=24) for m in models}
            self.assertGreater(len(set(alone.values())), 1, alone)
            mixed_before = metric_values(server, "tlm_decode_steps_mixed_total")[()]
            jobs = [(m, k % 2 == 0) for k in range(2) for m in models]
            with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
                together = list(pool.map(lambda j: chat(server.client(), j[0], question, max_tokens=24, stream=j[1]),
                                         jobs))
            mixed = metric_values(server, "tlm_decode_steps_mixed_total")[()] - mixed_before
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        print(f"[serve] {len(jobs)} requests of 4 adapters together: {mixed:.0f} decode steps with several adapters",
              flush=True)
        self.assertGreater(mixed, 0, "the requests never shared a decode step")
        self.assertEqual(together, [alone[m] for m, _ in jobs])

    def test_norm_affine_session_equals_tlm_adapt_and_decodes_with_others(self):
        # trainable norm-affine (the RMSNorm weights train instead of LoRA, lr 1e-2): the served
        # session's exported LN-tuning adapter is bitwise `tlm adapt`'s on the same prompts;
        # then its requests and the base model's decode in one batch (each row its own norm
        # weights) and get their alone answers.
        flags = ["--trainable", "norm-affine", "--lr", "1e-2"]
        reference = adapt_reference(self.dir, PROMPTS, *flags, name="adapt-norm")
        server = Server("--stream-batch", "4", "--output-dir", self.dir / "norm", *flags)
        try:
            served = learn_and_export(server, "tlm/n", PROMPTS)
            client = server.client()
            question = "What should I know before planting a small orchard?"
            alone = {m: chat(client, m, question, max_tokens=24) for m in ("tlm/n", "base")}
            self.assertNotEqual(alone["tlm/n"], alone["base"])
            jobs = ["tlm/n", "base", "tlm/n", "base"]
            with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
                together = list(pool.map(lambda m: chat(server.client(), m, question, max_tokens=24), jobs))
            mixed = metric_values(server, "tlm_decode_steps_mixed_total")[()]
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        assert_bitwise(self, served, reference, "served norm-affine session vs tlm adapt")
        self.assertGreater(mixed, 0, "the requests never shared a decode step")
        self.assertEqual(together, [alone[m] for m in jobs])

    def test_guarded_session_equals_tlm_adapt_with_the_same_guards(self):
        # Collapse guards on a served session: a periodic reset (step 7) and a probe of 4
        # general prompts every 2 steps that rolls back when their NLL exceeds the base's (lr
        # 3e-2, large enough that probes fail: rollbacks at 2 and 6, passes at 4 and 8). The
        # session's adapter and its guard events equal those of `tlm adapt` with the same
        # guards, uninterrupted and across SIGTERM after step 4 + --resume latest: the rollback
        # at step 6 goes back to the state the probe passed at step 4, which only the
        # session's checkpoint holds.
        probe = self.dir / "probe.jsonl"
        probe.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in GENERAL))
        guards = ["--guard-reset-every", 7, "--guard-probe-every", 2, "--guard-data", probe,
                  "--guard-samples", 4, "--guard-tolerance", 0, "--lr", "3e-2"]
        reference = adapt_reference(self.dir, PROMPTS, *guards, name="adapt-guards")
        expected = guard_events(self.dir / "adapt-guards" / "guards.jsonl")
        kinds = {e["event"] for e in expected}
        print(f"[serve] guard events of tlm adapt: {[(e['step'], e['event']) for e in expected]}", flush=True)
        self.assertTrue({"reset (periodic)", "rollback", "probe passed"} <= kinds, expected)

        server = Server("--stream-batch", "4", "--output-dir", self.dir / "g1", "--api-key", KEY, *guards)
        try:
            for p in PROMPTS:
                chat(server.client(), "tlm/g", p, max_tokens=4)
            a = server.wait_learned("tlm/g", 8)
            served = load_file(server.export("tlm/g") / "adapter_model.safetensors")
            counts = metric_values(server, "tlm_guard_events_total")
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        assert_bitwise(self, served, reference, "guarded session vs tlm adapt with the same guards")
        self.assertEqual(guard_events(self.dir / "g1" / "guards.jsonl"), expected)
        label = {"reset (periodic)": "reset_periodic", "rollback": "rollback", "probe passed": "probe_passed"}
        for kind, name in label.items():
            n = sum(e["event"] == kind for e in expected)
            self.assertEqual(counts[(("event", name),)], n, (kind, counts))
        counts = {"resets_loss_floor": 0, "resets_periodic": sum(e["event"] == "reset (periodic)" for e in expected),
                  "probes": sum(e["event"] in ("rollback", "probe passed") for e in expected),
                  "rollbacks": sum(e["event"] == "rollback" for e in expected)}
        self.assertEqual(a["guards"], counts)

        ck = self.dir / "ck-guards"
        server = Server("--stream-batch", "4", "--checkpoint-dir", ck, "--output-dir", self.dir / "g2", *guards)
        for p in PROMPTS[:6]:
            chat(server.client(), "tlm/g", p, max_tokens=4)
        server.wait_learned("tlm/g", 4)
        code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        server = Server("--stream-batch", "4", "--checkpoint-dir", ck, "--resume", "latest",
                        "--output-dir", self.dir / "g2", *guards)
        try:
            for p in PROMPTS[6:]:
                chat(server.client(), "tlm/g", p, max_tokens=4)
            a = server.wait_learned("tlm/g", 8)
            resumed = load_file(server.export("tlm/g") / "adapter_model.safetensors")
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])
        assert_bitwise(self, resumed, reference, "guarded session stopped + resumed vs tlm adapt")
        self.assertEqual(guard_events(self.dir / "g2" / "guards.jsonl"), expected)
        self.assertEqual(a["guards"], counts)

    def test_sessions_beyond_the_limit_move_to_disk_and_come_back(self):
        ck = self.dir / "ck-lru"
        server = Server("--stream-batch", "4", "--max-sessions", "2", "--checkpoint-dir", ck,
                        "--output-dir", self.dir / "lru")
        try:
            client = server.client()
            for p in PROMPTS[:4]:
                chat(client, "tlm/a", p, max_tokens=4)
            server.wait_learned("tlm/a", 4)
            learned_a = load_file(server.export("tlm/a") / "adapter_model.safetensors")
            chat(client, "tlm/b", PROMPTS[4], max_tokens=4)  # the shared adapter + b: a goes to disk
            adapters = server.adapters()
            self.assertFalse(adapters["tlm/a"]["in_memory"], adapters)
            self.assertTrue((ck / "session-a").is_dir())
            back = load_file(server.export("tlm/a") / "adapter_model.safetensors")  # reloaded from its folder
            assert_bitwise(self, back, learned_a, "session reloaded after eviction")
            self.assertEqual(server.adapters()["tlm/a"]["requests"], 4)
        finally:
            code, err = server.stop()
        self.assertEqual(code, 0, err[-2000:])

    def test_sigterm_under_load_loses_nothing(self):
        ck = self.dir / "ck-load"
        server = Server("--stream-batch", "4", "--checkpoint-dir", ck, "--output-dir", self.dir / "load")

        def one(i):
            try:
                chat(server.client(), "tlm/load", PROMPTS[i % 8], max_tokens=24, stream=i % 2 == 0)
                return "ok"
            except (openai.APIConnectionError, openai.InternalServerError, openai.APIStatusError) as e:
                return f"refused: {type(e).__name__}"

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(one, i) for i in range(12)]
            time.sleep(2.0)
            server.proc.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        code, err = server.stop(signal_sent=True)
        self.assertEqual(code, 0, err[-2000:])
        answered = results.count("ok")
        print(f"[serve] SIGTERM under load: {answered} of 12 answered, the rest refused: {results}", flush=True)
        self.assertGreater(answered, 0)
        files = sorted((ck / "session-load").glob("step-*.h5"), key=lambda p: int(p.stem.split("-")[1]))
        with h5py.File(files[-1], "r") as f:
            learned = int(f["state"].attrs["samples_consumed"])
            sched = json.loads(f["state"].attrs["scheduler_state"])
        queued = len(sched["queue"]) + len(sched["chunk"]) - sched["chunk_pos"]
        self.assertEqual(learned + queued, answered, "every answered prompt is learned or queued, once")
        self.assertEqual(sched["requests"], answered)


if __name__ == "__main__":
    T.main()
