"""Continual online learning across stops, crashes and re-layouts, on a tiny random Llama
made here (4 heads, 2 KV heads, vocabulary padded to a multiple of 4):
  exact resume  12 online steps uninterrupted vs 5 steps, SIGTERM (exit 0 after finishing the
                step and checkpointing), --resume latest to 12: final adapter, AdamW moments
                and statistics bitwise equal, metrics.jsonl equal but for timings,
                predictions.jsonl byte-identical; the same with LoRA dropout (RNG state), and
                for an offline job (cosine schedule, stopped after step 5 of 6);
  crash safety  kill -9 at random moments while checkpoints are being written (a test hook
                pauses between write and rename) in TLM_CRASH_TRIALS trials (20 in CI): the
                newest checkpoint still verifies, temporary files are never taken for
                checkpoints, and resuming ends with the uninterrupted run's adapter (no prompt
                learned twice or skipped);
  corruption    --resume latest skips a damaged newest checkpoint (logged with the reason) and
                continues from the previous one to the same result;
  identity      a checkpoint of another base model config is refused, naming both;
  resharding    a final checkpoint saved at TP 2 resumed at TP 1 and TP 4 under mpirun: the
                same adapter, and the input ce with it within 1e-5.
With --device cuda (CTest: checkpoints.resume.cuda, label gpu) the single-process jobs run on the
GPU, so exact resume with dropout covers the CUDA generator's state in the checkpoint, and
CrossDeviceResume stops a GPU job and finishes it on the CPU (and the other way round)."""
import json
import os
import random
import shutil
import signal
import subprocess
import time
import unittest

import h5py
import numpy as np
from safetensors.numpy import load_file

from tiny_llama import PROMPTS, make_tiny_llama
import tlm_testing
from tlm_testing import DEVICE, MPI_ENV, MPIRUN, SOURCE_DIR, binary, require_device, run, tmpdir

ENV = MPI_ENV
STREAM = PROMPTS + ["How much water does maize need?", "What is a bond coupon?"]  # 12 prompts


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def list_steps(folder):
    return sorted((p.name for p in folder.iterdir() if p.name.startswith("step-")),
                  key=lambda n: int(n[5:-3]))


def metrics(path):
    drop = ("seconds", "tokens_per_s")
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in path.read_text().splitlines()]


class Resume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_device()
        cls.work = tmpdir("tlm-resume-")
        cls.model_dir = cls.work / "model"
        make_tiny_llama(cls.model_dir, vocab_multiple=4)
        cls.data = cls.work / "stream.jsonl"
        cls.data.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in STREAM))
        cls.full = cls.work / "full"
        cls.adapt(cls.full)

    @classmethod
    def cmd(cls, out, *extra, device=DEVICE):
        # fp32 on every device: the bitwise comparisons are between runs on one device.
        return [binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml", "--model",
                cls.model_dir, "--data", cls.data, "--output-dir", out, "--chat-template", "chatml", "--cutoff-len", 0,
                "--lr", "1e-3", "--threshold", 0, "--stream-batch", 4, "--max-new-tokens", 3, "--answer-nll", "false",
                "--threads", 1, "--checkpoint-dir", out / "ckpt", "--checkpoint-every-steps", 1, "--keep-last", 0,
                "--device", device, "--dtype", "fp32", *extra]

    @classmethod
    def adapt(cls, out, *extra, env=None, device=DEVICE):
        return run(cls.cmd(out, *extra, device=device), env=dict(ENV, **(env or {})))

    def assert_same_as_full(self, out, what):
        self.assert_same_as_full_dir(self.full, out, what)

    def assert_same_as_full_dir(self, full, out, what):
        want, got = datasets(full / "ckpt" / "step-12.h5"), datasets(out / "ckpt" / "step-12.h5")
        self.assertEqual(sorted(want), sorted(got), what)
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{what}: {name} differs")
        self.assertEqual(metrics(out / "metrics.jsonl"), metrics(full / "metrics.jsonl"), what)
        self.assertEqual((out / "predictions.jsonl").read_bytes(), (full / "predictions.jsonl").read_bytes(), what)

    def test_exact_resume_after_sigterm(self):
        out = self.work / "stopped"
        proc = self.adapt(out, "--fault-inject", "rank=0,step=5,action=term")
        self.assertIn("stopped by a signal after step 5", proc.stderr)
        self.assertTrue(json.loads((out / "summary.json").read_text())["stopped"])
        self.assertEqual(len((out / "metrics.jsonl").read_text().splitlines()), 5)
        proc = self.adapt(out, "--resume", "latest")
        self.assertIn("resumed from", proc.stderr)
        self.assert_same_as_full(out, "resumed run")
        n = len(datasets(out / "ckpt" / "step-12.h5"))
        print(f"[resume] SIGTERM after step 5, resume to 12: {n} datasets bitwise equal to the uninterrupted run; "
              f"metrics and predictions identical", flush=True)

    def test_exact_resume_of_an_offline_job(self):
        # Offline: selection ce from the adapter-off model, one pass over the 12 prompts with a
        # cosine schedule (warmup 0.1), then every prompt answered. Stopped after step 5 (of 6,
        # two prompts a step) and resumed, it must end exactly where the uninterrupted job does.
        offline = ("--mode", "offline", "--schedule", "cosine", "--warmup-ratio", "0.1", "--train-batch-size", 2)
        full, out = self.work / "offline-full", self.work / "offline-stopped"
        self.adapt(full, *offline)
        proc = self.adapt(out, *offline, "--fault-inject", "rank=0,step=5,action=term")
        self.assertIn("stopped by a signal after step 5", proc.stderr)
        self.assertIn("continue with --resume latest", proc.stderr)
        self.assertFalse((out / "predictions.jsonl").read_text(), "an offline job answers after its pass")
        proc = self.adapt(out, *offline, "--resume", "latest")
        self.assertIn("resumed from", proc.stderr)
        want, got = datasets(full / "ckpt" / "step-6.h5"), datasets(out / "ckpt" / "step-6.h5")
        self.assertEqual(sorted(want), sorted(got))
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"offline resume: {name} differs")
        self.assertEqual(metrics(out / "metrics.jsonl"), metrics(full / "metrics.jsonl"))
        self.assertEqual((out / "predictions.jsonl").read_bytes(), (full / "predictions.jsonl").read_bytes())
        print(f"[resume] offline job (cosine, 2 prompts a step): SIGTERM after step 5, resume to 6: {len(want)} "
              f"datasets bitwise equal to the uninterrupted run; metrics and predictions identical", flush=True)

    def episodic_cmd(self, out, *extra, ranks=1):
        cmd = [binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "episodic.yaml", "--model",
               self.model_dir, "--data", self.data, "--output-dir", out, "--chat-template", "chatml", "--cutoff-len", 0,
               "--episodic-steps", 2, "--lr", "0.05", "--stream-batch", 4, "--max-new-tokens", 6, "--threads", 1,
               "--device", "cpu", *extra]
        if ranks > 1:
            cmd = MPIRUN + ["-np", str(ranks)] + cmd + ["--dp-size", ranks, "--collective-timeout", 30]
        return cmd

    def episodic(self, out, *extra, ranks=1):
        return run(self.episodic_cmd(out, *extra, ranks=ranks), env=ENV)

    def test_episodic_job_stops_and_resumes(self):
        # Episodic (a fresh LoRA per prompt, 2 steps, answer, reset) used to ignore SIGTERM until
        # the stream's end. Now a signal after episode 6's steps stops it while it answers: the
        # chunk in progress (prompts 5-8) is dropped, summary.json records 4 prompts done, and
        # --resume latest ends with the uninterrupted job's outputs. Under DP 2 the signal reaches
        # rank 1 only; the replicas agree to stop at the chunk's end.
        full = self.work / "episodic-full"
        self.episodic(full)
        want_metrics, want_predictions = metrics(full / "metrics.jsonl"), (full / "predictions.jsonl").read_text()
        want_summary = json.loads((full / "summary.json").read_text())
        for ranks, rank, episode in [(1, 0, 6), (2, 1, 7)]:  # DP 2: rank 1 runs episodes 7 and 8 of chunk 2
            with self.subTest(ranks=ranks):
                out = self.work / f"episodic-stopped-{ranks}"
                proc = self.episodic(out, "--fault-inject", f"rank={rank},step={episode},action=term", ranks=ranks)
                self.assertIn("stopped by a signal after 4 of 12 prompts", proc.stderr)
                summary = json.loads((out / "summary.json").read_text())
                self.assertTrue(summary["stopped"] and summary["resumable"])
                self.assertEqual(summary["episodic_progress"]["samples_done"], 4)
                self.assertEqual(len((out / "predictions.jsonl").read_text().splitlines()), 4)
                proc = self.episodic(out, "--resume", "latest", ranks=ranks)
                self.assertIn("resumed at prompt 5", proc.stderr)
                got_summary = json.loads((out / "summary.json").read_text())
                self.assertEqual(metrics(out / "metrics.jsonl"), want_metrics, "metrics.jsonl (timings aside)")
                self.assertEqual((out / "predictions.jsonl").read_text(), want_predictions)
                for key in ("input_ce_base", "input_ce_adapted", "selected", "steps"):
                    # DP 2 scores the base model in other batches: within 1e-6 there, bitwise alone.
                    self.assertAlmostEqual(got_summary[key], want_summary[key], delta=1e-6 if ranks > 1 else 0,
                                           msg=key)
        # A finished job has nothing to resume; a file is not what an episodic job resumes from.
        for spec, expect in [("latest", "not the summary of a stopped episodic job"),
                             ("ckpt/step-1.h5", "resumes from its output directory")]:
            proc = subprocess.run([str(c) for c in self.episodic_cmd(full, "--resume", spec)], env=ENV,
                                  capture_output=True, text=True)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn(expect, proc.stderr)
        print("[resume] episodic: SIGTERM at episode 6 (one process) and 7 (rank 1 of DP 2), resume: metrics, "
              "predictions and summary figures equal to the uninterrupted job", flush=True)

    def test_a_signal_during_answers_stops_between_decode_steps(self):
        # Issue 14: a signal was acted on only at step boundaries, so a job answering a chunk
        # ran on until every answer was done. The SIGTERM lands at step 4, the end of chunk 1;
        # chunk 2's answers are cut at their first decode step and not written, and resuming
        # answers chunk 2 again: bitwise the uninterrupted run.
        out = self.work / "stopped-in-answers"
        proc = self.adapt(out, "--fault-inject", "rank=0,step=4,action=term")
        self.assertIn("stopped by a signal after step 4", proc.stderr)
        self.assertEqual(len((out / "predictions.jsonl").read_text().splitlines()), 4)  # chunk 1's only
        self.adapt(out, "--resume", "latest")
        self.assert_same_as_full(out, "resumed after a stop in the answers")
        # Answers of 100000 tokens (minutes of decoding): a SIGTERM while chunk 1 is answered
        # stops the job within seconds, before its first step.
        proc, out = self.start_long_answers("stopped-in-long-answers")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        seconds = time.monotonic() - start
        self.assertEqual(proc.returncode, 0, err[-2000:])
        self.assertIn("stopped by a signal after step 0 (0 of 12 prompts learned)", err)
        self.assertLess(seconds, 30, "the stop waited for the answers")
        self.assertEqual((out / "predictions.jsonl").read_text(), "")
        print(f"[resume] SIGTERM before chunk 2's answers: cut at the first decode step, resumed bitwise; during "
              f"100000-token answers the job stopped {seconds:.1f} s after the signal", flush=True)

    def start_long_answers(self, name):
        """A job answering with up to 100000 tokens, once its signal handlers are set."""
        out = self.work / name
        proc = subprocess.Popen([str(c) for c in self.cmd(out, "--max-new-tokens", 100000)], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (out / "predictions.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        return proc, out

    def test_a_second_signal_exits_at_once(self):
        # The first signal waits for what is in progress (here a checkpoint save held for 60 s by
        # the test hook before its rename); a second one exits at once with 128 + SIGTERM. The
        # save it cut short leaves its temporary file, which the next start removes.
        out = self.work / "two-signals"
        proc = subprocess.Popen([str(c) for c in self.cmd(out, "--checkpoint-pause-before-rename", 60)], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not list((out / "ckpt").glob(".step-1.h5.tmp.*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        self.assertIsNone(proc.poll(), "the first signal must let the save finish")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - start
        self.assertEqual(proc.returncode, 128 + signal.SIGTERM, err[-2000:])
        self.assertIn("tlm: a second signal: exiting now", err)
        self.assertLess(seconds, 10)
        stale = list((out / "ckpt").glob(".step-1.h5.tmp.*"))
        self.assertEqual(len(stale), 1)
        proc = self.adapt(out, "--checkpoint-fresh", "true", "--max-samples", 4)
        self.assertIn(f"removed {stale[0]}", proc.stderr)
        print(f"[resume] second SIGTERM during a held save: exit {128 + signal.SIGTERM} after {seconds:.2f} s; its "
              "temporary file removed by the next start", flush=True)

    def test_sigterm_without_a_checkpoint_folder_keeps_the_adapter(self):
        # Issue 14: this exited 0, said nothing was saved and advised --resume latest, which
        # cannot work without checkpoints. Now the adapter learned so far is written (the one of
        # the uninterrupted run's step-5 checkpoint, bitwise) and the log says it cannot resume.
        out = self.work / "stopped-no-ckpt"
        cmd = [str(c) for c in self.cmd(out, "--fault-inject", "rank=0,step=5,action=term")]
        i = cmd.index("--checkpoint-dir")
        del cmd[i:i + 6]  # --checkpoint-dir D --checkpoint-every-steps 1 --keep-last 0
        proc = run(cmd, env=ENV)
        self.assertIn("stopped by a signal after step 5", proc.stderr)
        self.assertIn(f"without --checkpoint-dir: the adapter learned so far is in {out}/adapter, but the job cannot "
                      "resume", proc.stderr)
        self.assertNotIn("--resume latest", proc.stderr)
        summary = json.loads((out / "summary.json").read_text())
        self.assertTrue(summary["stopped"])
        self.assertFalse(summary["resumable"])
        want = self.work / "step-5-peft"
        run([binary("launch/tlm-ckpt"), "export-peft", self.full / "ckpt" / "step-5.h5", want])
        got, ref = load_file(out / "adapter" / "adapter_model.safetensors"), load_file(want / "adapter_model.safetensors")
        self.assertEqual(sorted(got), sorted(ref))
        for name in ref:
            self.assertTrue(np.array_equal(got[name], ref[name]), name)
        print(f"[resume] SIGTERM without --checkpoint-dir: the adapter after step 5 written ({len(ref)} tensors "
              "bitwise those of the full run's step-5 checkpoint); no resume advised", flush=True)

    def test_exact_resume_with_lora_dropout(self):
        # Dropout draws from the default generator, which every process starts from the same
        # seed: without its state in the checkpoint the resumed steps would redraw step 1's masks.
        full, out = self.work / "dropout-full", self.work / "dropout-stopped"
        self.adapt(full, "--lora-dropout", "0.2")
        self.adapt(out, "--lora-dropout", "0.2", "--fault-inject", "rank=0,step=7,action=term")
        self.adapt(out, "--lora-dropout", "0.2", "--resume", "latest")
        want, got = datasets(full / "ckpt" / "step-12.h5"), datasets(out / "ckpt" / "step-12.h5")
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after resuming with dropout")

    def test_a_signal_between_forward_and_backward_abandons_the_step(self):
        # Issue 14: a signal was acted on only at step boundaries. The SIGTERM lands after step
        # 6's forward pass (mid-chunk 2): the step is abandoned, no backward, no update, and the
        # dropout generator goes back to where it was before the forward, so the resumed run
        # redoes step 6 with the masks the uninterrupted run drew.
        full, out = self.work / "dropout-full-fb", self.work / "stopped-after-forward"
        self.adapt(full, "--lora-dropout", "0.2")
        proc = self.adapt(out, "--lora-dropout", "0.2",
                          "--fault-inject", "rank=0,step=6,action=term,phase=after-forward")
        self.assertIn("(after its forward pass)", proc.stderr)
        self.assertIn("stopped by a signal after step 5", proc.stderr)
        self.assertEqual(len((out / "metrics.jsonl").read_text().splitlines()), 5)
        self.assertEqual(list_steps(out / "ckpt")[-1], "step-5.h5")
        self.adapt(out, "--lora-dropout", "0.2", "--resume", "latest")
        self.assert_same_as_full_dir(full, out, "resumed after a stop between forward and backward")
        print("[resume] SIGTERM between step 6's forward and backward (LoRA dropout 0.2): step abandoned, "
              "stopped after step 5; resumed run bitwise the uninterrupted one", flush=True)

    def test_exact_resume_with_eata_state(self):
        # EATA's moving average is method state: checkpointed in /method_state and restored, or
        # the resumed steps would see no average (cosine -1) and keep samples the uninterrupted
        # run drops. entropy_margin 1 keeps every sample by entropy (E <= ln V), so the average is
        # set at step 1 and the redundancy filter (0.05) decides afterwards.
        full, out = self.work / "eata-full", self.work / "eata-stopped"
        extra = ["--method", "eata", "--entropy-margin", "1.0", "--skip-unselected-steps", "true"]
        self.adapt(full, *extra)
        self.adapt(out, *extra, "--fault-inject", "rank=0,step=6,action=term")
        proc = self.adapt(out, *extra, "--resume", "latest")
        self.assertIn("resumed from", proc.stderr)
        want, got = datasets(full / "ckpt" / "step-12.h5"), datasets(out / "ckpt" / "step-12.h5")
        self.assertIn("method_state/eata.moving_average", want)
        self.assertEqual(sorted(want), sorted(got))
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after resuming EATA")
        self.assertEqual(metrics(out / "metrics.jsonl"), metrics(full / "metrics.jsonl"))
        kept = sum(sum(json.loads(l)["selected"]) for l in (full / "metrics.jsonl").read_text().splitlines())
        print(f"[resume] EATA, SIGTERM after step 6, resumed to 12: {len(want)} datasets (moving average included) "
              f"bitwise equal; {kept} of 12 samples kept", flush=True)
        self.assertGreater(kept, 0)

    def test_exact_resume_with_collapse_guards(self):
        # The guards' state is checkpointed: the fresh and last good trainables and moments as
        # method state, the event counts and the loss moving average as per-step stats. Without
        # it the resumed job would take the step-7 adapter as "fresh" and the periodic reset at
        # step 10 would restore the wrong one.
        full, out = self.work / "guards-full", self.work / "guards-stopped"
        extra = ["--guard-reset-every", "5", "--guard-loss-floor", "1e-9", "--guard-probe-every", "3",
                 "--guard-data", self.data, "--guard-tolerance", "10"]
        self.adapt(full, *extra)
        self.adapt(out, *extra, "--fault-inject", "rank=0,step=7,action=term")
        self.adapt(out, *extra, "--resume", "latest")
        want, got = datasets(full / "ckpt" / "step-12.h5"), datasets(out / "ckpt" / "step-12.h5")
        self.assertIn("method_state/guard.fresh.model.layers.0.self_attn.q_proj.lora_A", want)
        self.assertIn("stats/guard_resets_periodic", want)
        self.assertEqual(want["stats/guard_resets_periodic"][-1], 2)
        self.assertEqual(want["stats/guard_probes"][-1], 4)
        self.assertEqual(sorted(want), sorted(got))
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after resuming with guards")
        self.assertEqual(metrics(out / "metrics.jsonl"), metrics(full / "metrics.jsonl"))
        self.assertEqual((out / "guards.jsonl").read_text(), (full / "guards.jsonl").read_text())
        summary = json.loads((out / "summary.json").read_text())["guards"]
        self.assertEqual((summary["resets_periodic"], summary["probes"]), (2, 4))
        print(f"[resume] collapse guards, SIGTERM after step 7, resumed to 12: {len(want)} datasets bitwise equal; "
              f"guards.jsonl identical", flush=True)

    def test_exact_resume_tent_on_generated_tokens(self):
        # Tent on the distributions that produced each answer's tokens: the answers' ids travel
        # in predictions.jsonl ("predict_ids"), so a job stopped in the middle of a chunk (step 6
        # of chunks of 4) learns from the same tokens after resuming.
        full, out = self.work / "tent-gen-full", self.work / "tent-gen-stopped"
        extra = ["--method", "tent", "--positions", "generated", "--generated-tokens", 3]
        self.adapt(full, *extra)
        self.adapt(out, *extra, "--fault-inject", "rank=0,step=6,action=term")
        self.adapt(out, *extra, "--resume", "latest")
        self.assert_same_as_full_dir(full, out, "Tent on generated tokens")
        first = json.loads((full / "predictions.jsonl").read_text().splitlines()[0])
        self.assertIn("predict_ids", first)

    def test_exact_resume_with_dropout_at_dp2(self):
        # Data-parallel replicas draw different dropout masks (different samples, different
        # shapes): each rank's generators are in the checkpoint and come back to that rank.
        full, out = self.work / "dp2-full", self.work / "dp2-stopped"
        extra = ["--lora-dropout", "0.2", "--dp-size", 2, "--train-batch-size", 2]
        mpi = MPIRUN + ["-np", "2"]
        run(mpi + self.cmd(full, *extra, device="cpu"), env=ENV)
        run(mpi + self.cmd(out, *extra, "--fault-inject", "rank=1,step=3,action=term", device="cpu"), env=ENV)
        proc = run(mpi + self.cmd(out, *extra, "--resume", "latest", device="cpu"), env=ENV)
        self.assertIn("resumed from", proc.stderr)
        want, got = datasets(full / "ckpt" / "step-6.h5"), datasets(out / "ckpt" / "step-6.h5")
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after resuming DP 2 with dropout")
        print(f"[resume] DP 2 with LoRA dropout 0.2, SIGTERM to rank 1 after step 3, resumed: {len(want)} datasets "
              f"bitwise equal to the uninterrupted run", flush=True)

    def test_kill_during_saves(self):
        trials = int(os.environ.get("TLM_CRASH_TRIALS", "20"))
        rng = random.Random(1234)
        counts = {"killed in a pause before rename": 0, "temporary files left": 0, "resumed from step": []}
        for trial in range(trials):
            out = self.work / f"crash-{trial}"
            p = subprocess.Popen([str(c) for c in self.cmd(out, "--checkpoint-pause-before-rename", "0.15")], env=ENV, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            # Kill at a random moment once the job has started checkpointing (start-up time varies
            # with the machine's load; a kill before the first checkpoint tests nothing).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and p.poll() is None and not (
                    (out / "ckpt").exists() and os.listdir(out / "ckpt")):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            p.send_signal(signal.SIGKILL)
            _, err = p.communicate()
            names = sorted(os.listdir(out / "ckpt")) if (out / "ckpt").exists() else []
            temps = [n for n in names if n.startswith(".")]
            counts["temporary files left"] += len(temps)
            counts["killed in a pause before rename"] += 1 if temps else 0
            if not any(n.endswith(".h5") and not n.startswith(".") for n in names):
                continue  # killed before the first checkpoint: nothing to resume
            listing = json.loads(run([binary("launch/tlm-ckpt"), "ls", out / "ckpt", "--json"]).stdout)
            self.assertEqual(listing["temporary_files"], len(temps))
            self.assertTrue(all(c["verified"] for c in listing["checkpoints"]), listing)
            proc = self.adapt(out, "--resume", "latest")
            counts["resumed from step"].append(int(proc.stderr.split("resumed from")[1].split("step ")[1].split(",")[0]))
            self.assert_same_as_full(out, f"trial {trial}")
        print(f"[resume] {trials} kill -9 trials: {counts}", flush=True)
        self.assertGreater(len(counts["resumed from step"]), trials // 2)

    def test_resume_latest_falls_back_past_a_damaged_checkpoint(self):
        out = self.work / "damaged"
        self.adapt(out, "--fault-inject", "rank=0,step=8,action=term")  # checkpoints 1..8
        newest = out / "ckpt" / "step-8.h5"
        with h5py.File(newest, "r") as f:
            offset = f["adapter/model.layers.0.self_attn.q_proj/lora_B"].id.get_chunk_info(0).byte_offset
        data = bytearray(newest.read_bytes())
        data[offset + 1] ^= 0x10
        newest.write_bytes(bytes(data))
        proc = self.adapt(out, "--resume", "latest")
        self.assertIn(f"--resume latest: skipping {newest}", proc.stderr)
        self.assertIn("resumed from", proc.stderr)
        self.assertIn("step-7.h5: step 7", proc.stderr)
        self.assert_same_as_full(out, "resumed past a damaged checkpoint")

    def test_checkpoint_of_another_base_model_is_refused(self):
        other = self.work / "other-model"  # the same model with another rope theta: another config
        shutil.copytree(self.model_dir, other)
        config = json.loads((other / "config.json").read_text())
        config["rope_theta"] = 20000.0
        config.pop("rope_parameters", None)
        (other / "config.json").write_text(json.dumps(config))
        out = self.work / "other-base"
        shutil.copytree(self.full / "ckpt", out / "ckpt")
        cmd = self.cmd(out, "--resume", out / "ckpt" / "step-6.h5")
        cmd[cmd.index("--model") + 1] = other
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("saved for a base model with config fingerprint", proc.stderr)
        self.assertIn("--resume-ignore-base", proc.stderr)

    def test_checkpoint_of_other_weights_is_refused(self):
        # The same config, one weight changed (as a fine-tuned or requantised file at the same
        # path would be): the weights' fingerprint in the checkpoint tells them apart.
        from safetensors.numpy import save_file
        other = self.work / "other-weights"
        shutil.copytree(self.model_dir, other)
        tensors = load_file(other / "model.safetensors")
        name = "model.layers.1.mlp.down_proj.weight"
        tensors[name] = tensors[name].copy()
        tensors[name][0, 0] += 1.0
        save_file(tensors, other / "model.safetensors", metadata={"format": "pt"})
        with h5py.File(self.full / "ckpt" / "step-6.h5", "r") as f:
            saved = f.attrs["base_weights_hash"]
            saved = saved.decode() if isinstance(saved, bytes) else saved
        self.assertRegex(saved, r"^w1:[0-9a-f]{16}/\d+$")
        out = self.work / "other-weights-run"
        shutil.copytree(self.full, out)  # the outputs too, for the resume that is let through
        cmd = self.cmd(out, "--resume", out / "ckpt" / "step-6.h5")
        cmd[cmd.index("--model") + 1] = other
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("whose weights have fingerprint " + saved, proc.stderr)
        self.assertIn("the same config, other weights", proc.stderr)
        proc = run(cmd + ["--resume-ignore-base", "true"], env=ENV)
        self.assertIn("RESUMING ONTO A DIFFERENT BASE MODEL", proc.stderr)
        show = run([binary("launch/tlm-ckpt"), "show", self.full / "ckpt" / "step-6.h5"]).stdout
        self.assertIn(f"weights {saved}", show)
        print(f"[resume] a base with the same config and one changed weight is refused (weights {saved})", flush=True)

    def test_a_checkpoint_folder_belongs_to_one_job(self):
        # Issue 14: a new job silently overwrote another job's step-1.h5, step-2.h5, ... and left
        # a mixed folder; stale temporary files of killed saves stayed forever; keep_last never
        # pruned checkpoints written before a resume.
        other_data = self.work / "other-stream.jsonl"
        other_data.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in STREAM[:8]))
        foreign = self.work / "foreign"
        shutil.copytree(self.full / "ckpt", foreign / "ckpt")
        cmd = self.cmd(foreign)
        cmd[cmd.index("--data") + 1] = other_data
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("holds checkpoints of another job (12, newest", proc.stderr)
        self.assertIn(f"stream '{self.data} (12 prompts)'", proc.stderr)
        self.assertEqual(len(list((foreign / "ckpt").iterdir())), 12, "the other job's checkpoints are untouched")

        same = self.work / "same-job"
        shutil.copytree(self.full / "ckpt", same / "ckpt")
        stale = same / "ckpt" / ".step-13.h5.tmp.999999999"  # no such process: a save a kill cut short
        stale.write_bytes(b"partial")
        proc = subprocess.run([str(c) for c in self.cmd(same)], capture_output=True, text=True, env=ENV)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("already holds checkpoints of this job", proc.stderr)
        self.assertIn("--resume latest", proc.stderr)
        proc = self.adapt(same, "--checkpoint-fresh", "true")
        self.assertIn("--checkpoint-fresh: deleted the 12 checkpoints", proc.stderr)
        self.assertFalse(stale.exists(), "the stale temporary file is removed")
        self.assert_same_as_full(same, "a fresh job in a folder it emptied")

        pruned = self.work / "pruned"
        self.adapt(pruned, "--fault-inject", "rank=0,step=5,action=term")
        self.assertEqual(len(list_steps(pruned / "ckpt")), 5)
        self.adapt(pruned, "--resume", "latest", "--keep-last", 2)
        self.assertEqual(list_steps(pruned / "ckpt"), ["step-11.h5", "step-12.h5"],
                         "keep_last prunes the checkpoints written before the resume too")
        print("[resume] a folder with another job's checkpoints is refused, this job's points at --resume latest, "
              "--checkpoint-fresh empties it; stale temporary files removed; keep_last prunes across a resume",
              flush=True)

    def test_resharding_tp2_checkpoint_to_tp1_and_tp4(self):
        base = self.work / "tp2"
        run(MPIRUN + ["-np", "2"] + self.cmd(base, device="cpu") + ["--tp-size", 2], env=ENV)
        ref_ce = json.loads((base / "summary.json").read_text())["input_ce_adapted"]
        for tp in (1, 4):
            out = self.work / f"from-tp2-at-tp{tp}"
            (out / "ckpt").mkdir(parents=True)
            shutil.copy(base / "predictions.jsonl", out / "predictions.jsonl")
            shutil.copy(base / "metrics.jsonl", out / "metrics.jsonl")
            cmd = self.cmd(out, "--resume", base / "ckpt" / "step-12.h5", device="cpu")
            if tp > 1:
                cmd = MPIRUN + ["-np", str(tp)] + cmd + ["--tp-size", tp]
            proc = run(cmd, env=ENV)
            self.assertIn(f"saved at tp 2, running at tp {tp}", proc.stderr)
            ce = json.loads((out / "summary.json").read_text())["input_ce_adapted"]
            # The adapter the resumed job ends with (it had nothing left to learn) is the TP 2 one.
            a = load_file(base / "adapter" / "adapter_model.safetensors")
            b = load_file(out / "adapter" / "adapter_model.safetensors")
            self.assertEqual(sorted(a), sorted(b))
            for name in a:
                self.assertTrue(np.array_equal(a[name], b[name]), name)
            print(f"[parity] checkpoint saved at tp 2 loaded at tp {tp}: input ce with the adapter {ce:.7f} vs "
                  f"{ref_ce:.7f} at tp 2 (diff {abs(ce - ref_ce):.1e})", flush=True)
            self.assertLess(abs(ce - ref_ce), 1e-5)


class CrossDeviceResume(Resume):
    """A checkpoint written on the GPU finishes on the CPU and one written on the CPU finishes on
    the GPU: full-size fp32 tensors, CPU generator state always, the device generator where it
    exists. Not bitwise across devices (the kernels differ): the input ce with the final adapter
    agrees with the uninterrupted run's within 1e-4 and the adapters within 1e-3 in norm."""

    @classmethod
    def setUpClass(cls):
        if not tlm_testing.cuda_available():
            raise unittest.SkipTest("no CUDA GPU visible (torch.cuda.is_available() is False)")
        super().setUpClass()

    def test_gpu_checkpoint_finishes_on_cpu_and_back(self):
        a = load_file(self.full / "adapter" / "adapter_model.safetensors")
        ce_full = json.loads((self.full / "summary.json").read_text())["input_ce_adapted"]
        for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
            out = self.work / f"{first}-then-{second}"
            self.adapt(out, "--fault-inject", "rank=0,step=5,action=term", device=first)
            proc = self.adapt(out, "--resume", "latest", device=second)
            self.assertIn("resumed from", proc.stderr)
            b = load_file(out / "adapter" / "adapter_model.safetensors")
            rel = float(np.sqrt(sum(((a[n] - b[n]) ** 2).sum() for n in a) / sum((a[n] ** 2).sum() for n in a)))
            ce = json.loads((out / "summary.json").read_text())["input_ce_adapted"]
            print(f"[parity] stopped on {first} after step 5, finished on {second}: adapter rel. diff {rel:.2e}, "
                  f"input ce {ce:.7f} vs {ce_full:.7f} uninterrupted on {DEVICE}", flush=True)
            self.assertLess(rel, 1e-3)
            self.assertLess(abs(ce - ce_full), 1e-4)

    # The parent's tests run once, in Resume.
    test_exact_resume_after_sigterm = test_exact_resume_with_lora_dropout = None
    test_kill_during_saves = test_resume_latest_falls_back_past_a_damaged_checkpoint = None
    test_checkpoint_of_another_base_model_is_refused = test_resharding_tp2_checkpoint_to_tp1_and_tp4 = None
    test_checkpoint_of_other_weights_is_refused = test_a_checkpoint_folder_belongs_to_one_job = None


if __name__ == "__main__":
    tlm_testing.main()
