"""tlm adapt --checkpoint-dir and tlm-ckpt on a tiny random Llama made here: periodic
checkpoints with keep-last, every tlm-ckpt command's table and --json output, verify's exit
code on a damaged file and on folders, temporary files never listed as checkpoints, plot's
picture from a run folder and from checkpoints, and export-peft output
that HF PEFT loads onto the same model, giving the answer NLL tlm computes with the
adapter within 1e-5."""
import copy
import json
import math
import shutil
import subprocess
import unittest

import h5py
import matplotlib.image
import numpy as np
import peft
import torch
import transformers
from safetensors.torch import load_file

from tiny_llama import PROMPTS, chat_ids, make_tiny_llama
from tlm_testing import SOURCE_DIR, binary, run, tmpdir
import tlm_testing


def ckpt(*args, check=True):
    cmd = [binary("launch/tlm-ckpt"), *map(str, args)]
    if check:
        return run(cmd).stdout
    return subprocess.run(cmd, capture_output=True, text=True)


class TlmCkpt(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tmpdir("tlm-ckpt-")
        cls.model_dir = cls.work / "model"
        cls.model, cls.tok = make_tiny_llama(cls.model_dir)
        cls.data = cls.work / "stream.jsonl"
        cls.data.write_text("".join(json.dumps({"instruction": p, "output": "It depends on the soil."}) + "\n"
                                    for p in PROMPTS))
        cls.dir = cls.work / "ckpt"
        run([binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml",
             "--model", cls.model_dir, "--data", cls.data, "--output-dir", cls.work / "run", "--chat-template",
             "chatml", "--lr", "1e-3", "--threshold", 0, "--stream-batch", 4, "--train-batch-size", 2,
             "--max-new-tokens", 4, "--checkpoint-dir", cls.dir, "--checkpoint-every-steps", 2, "--keep-last", 2,
             "--device", "cpu"])

    def test_ls_keeps_the_newest_and_skips_temporary_files(self):
        (self.dir / ".step-9.h5.tmp.123").write_bytes(b"partial")
        listing = json.loads(ckpt("ls", self.dir, "--json"))
        steps = [c["step"] for c in listing["checkpoints"]]
        self.assertEqual(steps, [4, 5])  # every 2 steps, the final one, keep-last 2
        self.assertTrue(all(c["verified"] for c in listing["checkpoints"]))
        self.assertEqual(listing["temporary_files"], 1)
        table = ckpt("ls", self.dir)
        self.assertIn("step-5.h5", table)
        self.assertIn("1 temporary file(s) of interrupted saves", table)
        (self.dir / ".step-9.h5.tmp.123").unlink()

    def test_show_and_diff(self):
        show = json.loads(ckpt("show", self.dir / "step-5.h5", "--json"))
        self.assertEqual(show["state"]["global_step"], 5)
        self.assertEqual(show["state"]["samples_consumed"], 10)
        self.assertEqual(show["method"]["lora_rank"], 8)
        self.assertEqual(len(show["modules"]), 4)  # q_proj, v_proj of 2 layers
        self.assertEqual(show["modules"][0]["module"], "model.layers.0.self_attn.q_proj")
        self.assertGreater(show["modules"][0]["norm_delta"], 0)
        self.assertEqual(show["stats"]["steps_recorded"], 5)
        self.assertEqual(show["stats"]["samples"], 10)
        table = ckpt("show", self.dir / "step-5.h5")
        self.assertIn("|scale*B*A|", table)
        self.assertIn("10 samples consumed", table)
        diff = json.loads(ckpt("diff", self.dir / "step-4.h5", self.dir / "step-5.h5", "--json"))
        self.assertEqual(diff["steps"], [4, 5])
        self.assertTrue(all(m["change_B"] > 0 for m in diff["modules"]))
        self.assertIn("|d(scale*B*A)|", ckpt("diff", self.dir / "step-4.h5", self.dir / "step-5.h5"))

    def test_verify_exit_code_and_message(self):
        good = self.dir / "step-5.h5"
        self.assertEqual(ckpt("verify", good, check=False).returncode, 0)
        bad = self.work / "bad.h5"
        shutil.copy(good, bad)
        with h5py.File(bad, "r") as f:  # a byte inside one tensor's stored chunk
            offset = f["adapter/model.layers.1.self_attn.v_proj/lora_B"].id.get_chunk_info(0).byte_offset
        data = bytearray(bad.read_bytes())
        data[offset + 3] ^= 0xFF
        bad.write_bytes(bytes(data))
        proc = ckpt("verify", bad, "--json", check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        report = json.loads(proc.stdout)
        self.assertFalse(report["ok"])
        self.assertTrue(report["problems"])
        print(f"[ckpt] flipped byte: {report['problems'][0]}", flush=True)
        # Found by fuzz.checkpoint_file: a damaged file on which HDF5 1.10 itself crashes (an
        # invalid free inside H5Literate). verify exited 139; now HDF5 reads it in a child first.
        finding = SOURCE_DIR / "tests" / "checkpoints" / "fuzz_findings" / "hdf5-literate-invalid-free.h5"
        proc = ckpt("verify", finding, check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("HDF5 crashed reading it (Segmentation fault): the file is damaged", proc.stdout)
        # ... and one HDF5 reads forever: past --timeout it counts as damaged.
        endless = finding.with_name("hdf5-endless-read.h5")
        proc = ckpt("verify", endless, "--timeout", 3, check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("HDF5 did not finish reading it within 3 s: the file is damaged", proc.stdout)
        # A folder: every step-N.h5 in it (issue 14: a folder was "not an HDF5 file").
        proc = ckpt("verify", self.dir, check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"(\d+) of \1 checkpoints verify")
        folder = self.work / "mixed"
        folder.mkdir()
        shutil.copy(good, folder / "step-5.h5")
        shutil.copy(bad, folder / "step-6.h5")
        proc = ckpt("verify", folder, check=False)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn(f"{folder}: 1 of 2 checkpoints verify", proc.stdout)
        empty = self.work / "empty"
        empty.mkdir()
        proc = ckpt("verify", empty, check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(f"{empty}: a folder without checkpoints (step-N.h5)", proc.stderr)

    def test_plot_from_a_run_and_from_checkpoints(self):
        # A run with a collapse guard that resets every 2 steps, so that guard events are drawn.
        out = self.work / "guarded"
        run([binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml",
             "--model", self.model_dir, "--data", self.data, "--output-dir", out, "--chat-template", "chatml",
             "--lr", "1e-3", "--threshold", 0, "--stream-batch", 4, "--max-new-tokens", 2, "--answer-nll", "false",
             "--guard-reset-every", 3, "--checkpoint-dir", out / "ck", "--checkpoint-every-steps", 4, "--device", "cpu"])
        steps = len((out / "metrics.jsonl").read_text().splitlines())
        events = [json.loads(l) for l in (out / "guards.jsonl").read_text().splitlines()]
        self.assertGreater(len(events), 0)
        png = self.work / "run.png"
        text = ckpt("plot", out, png)
        self.assertIn(f"{steps} steps, {steps} prompts; {len(events)} guard events (red)", text)
        image = matplotlib.image.imread(png)
        self.assertEqual(image.shape[:2], (990, 990))
        self.assertGreater(float(np.std(image[..., :3])), 0.05)  # not a blank canvas
        newest = max((out / "ck").glob("step-*.h5"), key=lambda p: int(p.stem[5:]))
        with h5py.File(newest, "r") as f:
            saved = len(f["stats/step"])
        text = ckpt("plot", out / "ck", self.work / "ck.png")
        self.assertIn(f"{saved} steps", text)
        self.assertIn(f"from {newest}", text)
        proc = ckpt("plot", self.work / "missing", png, check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("no such run folder, checkpoint folder or file", proc.stderr)
        print(f"[ckpt] plot: {steps} steps and {len(events)} guard events from metrics.jsonl; {saved} steps from "
              f"{newest.name}'s /stats", flush=True)

    def test_export_peft_loads_in_peft_and_matches_tlm(self):
        out = self.work / "peft"
        ckpt("export-peft", self.dir / "step-5.h5", out)
        ours = load_file(out / "adapter_model.safetensors")
        run_adapter = load_file(self.work / "run" / "adapter" / "adapter_model.safetensors")
        self.assertEqual(sorted(ours), sorted(run_adapter))
        for k in ours:  # the final checkpoint holds the run's final adapter, bitwise
            self.assertTrue(torch.equal(ours[k], run_adapter[k]), k)
        model = peft.PeftModel.from_pretrained(copy.deepcopy(self.model), str(out))
        model.eval()
        nll, count = 0.0, 0
        for p in PROMPTS:
            prompt = chat_ids(self.tok, p)
            answer = self.tok("It depends on the soil.", add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + answer])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            tgt = ids[0, 1:]
            lp = logp[torch.arange(len(tgt)), tgt][len(prompt) - 1:]
            nll -= float(lp.sum())
            count += len(answer)
        peft_nll = nll / count
        ev = json.loads(run([binary("launch/tlm"), "eval", "--model", self.model_dir, "--data", self.data,
                             "--chat-template", "chatml", "--cutoff-len", 0, "--adapter", out, "--device", "cpu"]).stdout)
        ours_nll = ev["answer_nll"]["answer_nll_adapted"]
        print(f"[parity] export-peft: answer NLL with the adapter, PEFT {peft_nll:.7f} vs tlm {ours_nll:.7f}", flush=True)
        self.assertLess(abs(peft_nll - ours_nll), 1e-5)
        self.assertGreater(abs(ev["answer_nll"]["answer_nll_base"] - ours_nll), 1e-4, "the adapter changed nothing")

    def test_checkpoint_every_seconds(self):
        out = self.work / "timed"
        run([binary("launch/tlm"), "adapt", "--model", self.model_dir, "--data", self.data, "--output-dir", out,
             "--chat-template", "chatml", "--max-new-tokens", 2, "--checkpoint-dir", out / "ckpt",
             "--checkpoint-every-seconds", "0.000001", "--keep-last", 0, "--device", "cpu"])
        steps = [c["step"] for c in json.loads(ckpt("ls", out / "ckpt", "--json"))["checkpoints"]]
        self.assertEqual(steps, list(range(1, 11)))  # due after every step

    def test_merge_loads_in_transformers_with_the_adapted_logits(self):
        merged = self.work / "merged"
        out = ckpt("merge", self.dir / "step-5.h5", "--base", self.model_dir, merged)
        self.assertIn("4 projections merged", out)
        peft_dir = self.work / "peft-for-merge"
        ckpt("export-peft", self.dir / "step-5.h5", peft_dir)
        adapted = peft.PeftModel.from_pretrained(copy.deepcopy(self.model), str(peft_dir)).eval()
        folded = transformers.AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32).eval()
        ids = torch.tensor([chat_ids(self.tok, p) for p in PROMPTS[:1]])
        with torch.no_grad():
            want = adapted(input_ids=ids).logits
            got = folded(input_ids=ids).logits
            base = transformers.AutoModelForCausalLM.from_pretrained(self.model_dir).eval()(input_ids=ids).logits
        diff = float((got - want).abs().max())
        print(f"[parity] merge: transformers on the merged directory vs PEFT adapter, logits max abs diff {diff:.2e} "
              f"(adapter moves logits by {float((want - base).abs().max()):.2e})", flush=True)
        self.assertLess(diff, 1e-4)
        self.assertGreater(float((want - base).abs().max()), 1e-3)
        proc = ckpt("merge", self.dir / "step-5.h5", "--base", self.work / "nope", self.work / "m2", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("needs an HF model directory", proc.stderr)


if __name__ == "__main__":
    tlm_testing.main()
