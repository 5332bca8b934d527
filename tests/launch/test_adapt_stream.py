"""Unbounded input streams for `tlm adapt`, on a tiny random Llama made here:
  stdin         `--data -` fed the 12-prompt stream (with a bad line and a blank one) equals
                `--data FILE` on the same file: adapter, AdamW moments, metrics (but for
                timings) and predictions bitwise;
  stdin resume  SIGTERM after step 6 (in the middle of the second chunk of 4), then
                --resume latest with standard input continued from the byte offset the
                checkpoint recorded: the same adapter and moments, bitwise, as the file job;
  follow        `--follow FILE` on a file that a writer appends to while the job runs (a line
                written in two halves, a pause longer than the poll interval), SIGTERM while
                it waits for its third chunk (8 prompts learned), then --resume latest while the writer finishes the file, SIGTERM
                once all 12 are learned: bitwise the file job again; the summary counts 12;
  refusals      offline mode on a stream and a non-constant schedule without fresh optimisers
                are refused with the reason.
Every comparison is exact: the stream job makes the same chunks, steps and random draws."""
import json
import signal
import subprocess
import time
import unittest

import h5py
import numpy as np

from tiny_llama import PROMPTS, make_tiny_llama
import tlm_testing
from tlm_testing import SOURCE_DIR, binary, run, tmpdir

STREAM = PROMPTS + ["How much water does maize need?", "What is a bond coupon?"]  # 12 prompts
LINES = [json.dumps({"instruction": p, "output": "ref"}) for p in STREAM]


def trained_state(ckpt):
    """The adapter and AdamW moments of a checkpoint file, by dataset name."""
    out = {}
    with h5py.File(ckpt, "r") as f:
        for group in ("adapter", "optimizer"):
            f[group].visititems(lambda n, o: out.__setitem__(f"{group}/{n}", o[()]) if isinstance(o, h5py.Dataset) else None)
        scheduler = json.loads(f["state"].attrs["scheduler_state"])
    return out, scheduler


def metrics(path):
    drop = ("seconds", "tokens_per_s")
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in path.read_text().splitlines()]


def predictions(path):
    return [{k: v for k, v in json.loads(l).items() if k != "source"} for l in path.read_text().splitlines()]


def wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def steps_done(out):
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


class Stream(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tmpdir("tlm-stream-")
        cls.model_dir = cls.work / "model"
        make_tiny_llama(cls.model_dir)
        # A bad line and a blank one in the middle: skipped, not counted as prompts.
        cls.text = "\n".join(LINES[:5] + ["{not json", ""] + LINES[5:]) + "\n"
        cls.data = cls.work / "stream.jsonl"
        cls.data.write_text(cls.text)
        cls.file_run = cls.work / "file"
        run(cls.cmd(cls.file_run, "--data", cls.data))
        cls.want, _ = trained_state(cls.file_run / "ckpt" / "step-12.h5")

    @classmethod
    def cmd(cls, out, *extra):
        return [binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml", "--model",
                cls.model_dir, "--output-dir", out, "--chat-template", "chatml", "--cutoff-len", 0, "--lr", "1e-3",
                "--threshold", 0, "--stream-batch", 4, "--max-new-tokens", 3, "--answer-nll", "false", "--threads", 1,
                "--checkpoint-dir", out / "ckpt", "--checkpoint-every-steps", 1, "--keep-last", 0, "--device", "cpu",
                "--dtype", "fp32", *extra]

    def assert_equals_file_run(self, out, what, outputs=True):
        got, scheduler = trained_state(out / "ckpt" / "step-12.h5")
        self.assertEqual(sorted(got), sorted(self.want), what)
        for name in self.want:
            self.assertTrue(np.array_equal(got[name], self.want[name]), f"{what}: {name} differs from the file job")
        self.assertEqual(scheduler["stream"]["records"], 12, what)
        self.assertEqual(scheduler["stream"]["offset"], len(self.text.encode()), what)
        if outputs:
            self.assertEqual(metrics(out / "metrics.jsonl"), metrics(self.file_run / "metrics.jsonl"), what)
            self.assertEqual(predictions(out / "predictions.jsonl"), predictions(self.file_run / "predictions.jsonl"),
                             what)
        return len(got)

    def test_stdin_equals_file(self):
        out = self.work / "stdin"
        proc = run(self.cmd(out, "--data", "-"), input=self.text)
        self.assertIn("the stream ended after 12 prompts", proc.stderr)
        n = self.assert_equals_file_run(out, "--data -")
        summary = json.loads((out / "summary.json").read_text())
        self.assertEqual((summary["samples"], summary["steps"], summary["ended"]), (12, 12, True))
        self.assertEqual(summary["records_skipped"], {"invalid_json": 1})
        print(f"[stream] --data - over 12 prompts: {n} adapter and moment tensors bitwise equal to --data FILE; "
              f"metrics and predictions equal", flush=True)

    def test_stdin_stop_and_resume(self):
        out = self.work / "stdin-resume"
        proc = run(self.cmd(out, "--data", "-", "--fault-inject", "rank=0,step=6,action=term"), input=self.text)
        self.assertIn("stopped by a signal after 6 prompts", proc.stderr)
        summary = json.loads((out / "summary.json").read_text())
        self.assertTrue(summary["stopped"])
        _, scheduler = trained_state(out / "ckpt" / "step-6.h5")
        position = scheduler["stream"]
        self.assertEqual((position["chunk_learned"], position["chunk_samples"], position["records"]), (2, 4, 4))
        offset = position["offset"]
        self.assertIn(f"feeding standard input from byte {offset}", proc.stderr)
        rest = self.text.encode()[offset:]
        proc = run(self.cmd(out, "--data", "-", "--resume", "latest"), input=rest.decode())
        self.assertIn("resumed from", proc.stderr)
        n = self.assert_equals_file_run(out, "--data - stopped at step 6 and resumed")
        print(f"[stream] --data - stopped after step 6 (mid-chunk), resumed from byte {offset}: {n} tensors bitwise "
              f"equal to the uninterrupted file job", flush=True)

    def follow(self, out, *extra):
        return subprocess.Popen([str(c) for c in self.cmd(out, "--follow", self.follow_file, *extra)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self, proc):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, err[-3000:])
        return err

    def test_follow_stop_and_resume(self):
        out = self.work / "follow"
        self.follow_file = self.work / "growing.jsonl"
        lines = self.text.splitlines(keepends=True)
        with open(self.follow_file, "w") as f:
            f.writelines(lines[:3])
            f.flush()
            proc = self.follow(out)
            wait_for(lambda: (out / "metrics.jsonl").exists(), "the job to start")
            time.sleep(0.5)  # longer than the poll interval: the job waits for a full chunk
            self.assertEqual(steps_done(out), 0)
            half = len(lines[3]) // 2
            f.write(lines[3][:half])  # a writer caught mid-line: the line is not taken yet
            f.flush()
            time.sleep(0.3)
            f.write(lines[3][half:])
            f.writelines(lines[4:8])  # 2 records, a bad one and a blank line: 6 prompts so far
            f.flush()
            wait_for(lambda: steps_done(out) >= 4, "the first chunk")
            f.writelines(lines[8:10])
            f.flush()
            wait_for(lambda: steps_done(out) >= 8, "the second chunk")
            time.sleep(0.3)  # the job now waits for the third chunk's prompts
            err = self.stop(proc)
            self.assertIn("stopped by a signal after 8 prompts", err)
            stopped_at = steps_done(out)
            self.assertEqual(stopped_at, 8)
            proc = self.follow(out, "--resume", "latest")
            f.writelines(lines[10:])
            f.flush()
            wait_for(lambda: steps_done(out) >= 12, "all 12 prompts")
            time.sleep(0.3)
            err = self.stop(proc)
        self.assertIn("resumed from", err)
        n = self.assert_equals_file_run(out, "--follow stopped and resumed")
        summary = json.loads((out / "summary.json").read_text())
        self.assertEqual((summary["samples"], summary["steps"], summary["stopped"]), (12, 12, True))
        self.assertTrue((out / "adapter" / "adapter_model.safetensors").exists())
        print(f"[stream] --follow over a growing file, SIGTERM after {stopped_at} prompts, resumed, SIGTERM after 12: "
              f"{n} tensors bitwise equal to the file job", flush=True)

    def test_refusals(self):
        out = self.work / "refused"
        proc = subprocess.run([str(c) for c in self.cmd(out, "--data", "-", "--mode", "offline")], input="",
                              capture_output=True, text=True)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("mode online only", proc.stderr)
        proc = subprocess.run([str(c) for c in self.cmd(out, "--data", "-", "--schedule", "cosine",
                                                        "--fresh-optimizer-per-chunk", "false")],
                              input="", capture_output=True, text=True)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("the schedule must be constant", proc.stderr)


if __name__ == "__main__":
    tlm_testing.main()
