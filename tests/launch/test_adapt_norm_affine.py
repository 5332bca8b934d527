"""Norm-affine tuning (`trainable: norm-affine`) against HF PEFT's LN tuning + torch AdamW, on a
tiny random Llama made here.

tlm adapt trains the RMSNorm weights (every input_layernorm, post_attention_layernorm and the
final norm) with the official online TLM rule: chunks of 4 prompts, train batch 2, a fresh AdamW
per chunk, the threshold between the prompts' initial ce values so some samples are selected
and some are not. The reference does the same steps on peft.get_peft_model(model,
LNTuningConfig()). Checks:
  - per-step losses within 1e-5 relative, selection identical;
  - at least 99% of the trained norm weights within 1e-5 of PEFT's, every one within 2 lr, and
    the change the steps make within 5e-3 of PEFT's relative to its size (|d_ours - d_ref| /
    |d_ref|). Why not 1e-5 everywhere: Adam divides by sqrt(v), so an element whose gradient is
    a near-cancelling sum moves by up to lr on rounding noise alone. Measured: one weight of 320
    (layer 0 post_attention_layernorm[51]) is 4.4e-4 from a float64 PEFT run; PEFT's own fp32
    run is 2.6e-4 from it there; every other tensor's update is within 3e-6 of float64 for both.
  - the exported adapter (peft_type LN_TUNING) loads with PeftModel.from_pretrained, and its
    per-record input ce equals `tlm score --adapter` on the same directory within 1e-5
    (and differs from the base model's by far more, so the check can fail);
  - tlm-ckpt export-peft of the job's checkpoint writes the same adapter, and tlm-ckpt show
    describes the norms.
"""
import copy
import json
import unittest

import numpy as np
import peft
import torch
from safetensors.torch import load_file

from tiny_llama import PROMPTS, chat_ids, make_tiny_llama
import tlm_testing
from tlm_reference import sample_ce, tlm_loss
from tlm_testing import SOURCE_DIR, assert_close, binary, run, tmpdir

LR = 1e-2  # norm weights start at ~1: a larger lr than LoRA's makes the steps visible
TRAIN_BS = 2
STREAM = 4


class AdaptNormAffine(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tmpdir("tlm-norm-affine-")
        cls.model_dir = cls.work / "model"
        cls.base, cls.tok = make_tiny_llama(cls.model_dir)
        cls.ids = [chat_ids(cls.tok, p) for p in PROMPTS]
        with torch.no_grad():
            ce0 = np.sort(sample_ce(cls.base, cls.ids).numpy())
        cls.threshold = float((ce0[4] + ce0[5]) / 2)
        cls.data = cls.work / "stream.jsonl"
        cls.data.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in PROMPTS))
        cls.out = cls.work / "run"
        run([binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "norm-affine-online.yaml",
             "--model", cls.model_dir, "--data", cls.data, "--output-dir", cls.out, "--chat-template", "chatml",
             "--lr", LR, "--threshold", cls.threshold, "--stream-batch", STREAM, "--train-batch-size", TRAIN_BS,
             "--generate", "false", "--answer-nll", "false", "--cutoff-len", 0, "--device", "cpu",
             "--checkpoint-dir", cls.work / "ck"])
        cls.steps = [json.loads(l) for l in (cls.out / "metrics.jsonl").read_text().splitlines()]

    def reference(self):
        model = peft.get_peft_model(copy.deepcopy(self.base), peft.LNTuningConfig(task_type="CAUSAL_LM"))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        self.assertEqual(len(params), 2 * self.base.config.num_hidden_layers + 1)
        losses, selected = [], []
        for c in range(0, len(self.ids), STREAM):
            opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
            chunk = self.ids[c:c + STREAM]
            for i in range(0, len(chunk), TRAIN_BS):
                ce = sample_ce(model, chunk[i:i + TRAIN_BS])
                loss, mask = tlm_loss(ce, ce.detach(), self.threshold, 0.1)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                losses.append(loss.item())
                selected += mask.tolist()
        state = {k: v.detach() for k, v in peft.get_peft_model_state_dict(model).items()}
        return losses, selected, state

    def test_steps_equal_peft_ln_tuning(self):
        losses, selected, ref = self.reference()
        self.assertEqual([s for st in self.steps for s in st["selected"]], selected, "selection differs")
        self.assertIn(True, selected)
        self.assertIn(False, selected)
        ours_l = np.array([s["loss"] for s in self.steps])
        print(f"[norm-affine] losses ours {np.round(ours_l, 6).tolist()} ref {np.round(losses, 6).tolist()}")
        assert_close(self, ours_l, np.array(losses), rtol=1e-5, atol=1e-12, what="per-step losses")
        ours = load_file(self.out / "adapter" / "adapter_model.safetensors")
        self.assertEqual(sorted(ours), sorted(ref), "LN-tuning tensor names differ from PEFT's")
        init = {n: self.base.state_dict()[n.replace("base_model.model.", "").replace(".ln_tuning_layers", "")]
                for n in ref}
        for name in sorted(ref):
            assert_close(self, ours[name].numpy(), ref[name].numpy(), atol=2 * LR, what=name)
        d_ours = torch.cat([(ours[n] - init[n]).flatten() for n in sorted(ref)])
        d_ref = torch.cat([(ref[n] - init[n]).flatten() for n in sorted(ref)])
        update_rel = float((d_ours - d_ref).norm() / d_ref.norm())
        close = float(((d_ours - d_ref).abs() <= 1e-5).double().mean())
        print(f"[norm-affine] |update ours - update PEFT| / |update PEFT| = {update_rel:.3e} (tolerance 5e-3); "
              f"{100 * close:.2f}% of the weights within 1e-5 (at least 99%)")
        self.assertLessEqual(update_rel, 5e-3, "the updates differ")
        self.assertGreaterEqual(close, 0.99, "fewer than 99% of the norm weights within 1e-5 of PEFT's")
        moved = float(d_ref.abs().max())
        print(f"[norm-affine] largest change of a norm weight: {moved:.3e}")
        self.assertGreater(moved, 1e-3, "the norms barely moved: the test would not see a wrong update")

    def score(self, adapter):
        out = self.work / f"score-{adapter.name}.jsonl"
        run([binary("launch/tlm"), "score", "--model", self.model_dir, "--data", self.data, "--output", out,
             "--chat-template", "chatml", "--cutoff-len", 0, "--device", "cpu", "--adapter", adapter])
        return np.array([json.loads(l)["ce"] for l in out.read_text().splitlines()])

    def test_export_loads_in_peft_with_our_logits(self):
        adapter = self.out / "adapter"
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        self.assertEqual(cfg["peft_type"], "LN_TUNING")
        model = peft.PeftModel.from_pretrained(copy.deepcopy(self.base), adapter)
        model.eval()
        with torch.no_grad():
            ref = sample_ce(model, self.ids).numpy()
            base = sample_ce(self.base, self.ids).numpy()
        ours = self.score(adapter)
        print(f"[norm-affine] ce with the adapter: ours {np.round(ours, 5).tolist()}, PEFT {np.round(ref, 5).tolist()}")
        assert_close(self, ours, ref, atol=1e-5, what="per-record ce through the exported adapter")
        self.assertGreater(float(np.abs(ref - base).max()), 1e-3, "the adapter does not change the model")

    def test_reads_an_adapter_peft_saved(self):
        # An LN-tuning adapter saved by PEFT itself (its target order, its tensor names), with
        # the norms scaled so that it differs from the base: tlm score --adapter and tlm adapt
        # --init-adapter see PEFT's model.
        model = peft.get_peft_model(copy.deepcopy(self.base), peft.LNTuningConfig(task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "ln_tuning_layers" in name:
                    p.mul_(1.25)
        saved = self.work / "peft-saved"
        model.save_pretrained(saved)
        model.eval()
        with torch.no_grad():
            ref = sample_ce(model, self.ids).numpy()
        assert_close(self, self.score(saved), ref, atol=1e-5, what="per-record ce through PEFT's own LN-tuning save")
        out = self.work / "from-peft"
        run([binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "norm-affine-online.yaml",
             "--model", self.model_dir, "--data", self.data, "--output-dir", out, "--chat-template", "chatml",
             "--init-adapter", saved, "--max-samples", 1, "--generate", "false", "--answer-nll", "false",
             "--cutoff-len", 0, "--device", "cpu"])
        first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        assert_close(self, first["current_ce"], ref[:1], atol=1e-5, what="first step's ce from --init-adapter")

    def test_checkpoint_tools(self):
        ck = sorted((self.work / "ck").glob("step-*.h5"), key=lambda p: int(p.stem.split("-")[1]))[-1]
        exported = self.work / "exported"
        run([binary("launch/tlm-ckpt"), "export-peft", ck, exported])
        a = load_file(exported / "adapter_model.safetensors")
        b = load_file(self.out / "adapter" / "adapter_model.safetensors")
        self.assertEqual(sorted(a), sorted(b))
        for name in a:
            self.assertTrue(torch.equal(a[name], b[name]), f"{name}: export-peft differs from the job's adapter")
        self.assertEqual(json.loads((exported / "adapter_config.json").read_text())["peft_type"], "LN_TUNING")
        shown = json.loads(run([binary("launch/tlm-ckpt"), "show", ck, "--json"]).stdout)
        self.assertEqual(shown["method"]["trainable"], "norm-affine")
        self.assertEqual(len(shown["modules"]), 2 * self.base.config.num_hidden_layers + 1)
        self.assertIn("model.norm", [m["module"] for m in shown["modules"]])


if __name__ == "__main__":
    tlm_testing.main()
