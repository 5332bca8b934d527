"""tlm on the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against transformers
loading the same file (gguf_file=...): logits on real chat-templated prompts of a padded
batch agree within 1e-3 relative to the logit scale (|ours - ref| <= 1e-3 * max|ref|), and
so do the chunked token log-likelihoods. This also checks GGUF dequantisation and the
un-permutation of Q/K rows against transformers' own loader."""
import json
import os
import pathlib
import unittest

import numpy as np
import torch
import transformers

from tlm_testing import DEFAULT_MODEL, assert_close, binary, run, tmpdir
import tlm_testing

PROMPTS = [
    "What is the capital of France?",
    "Explain how crop rotation improves soil fertility.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "用一句话介绍你自己。",
]


@unittest.skipUnless(DEFAULT_MODEL and os.path.exists(DEFAULT_MODEL), "default model not installed")
class DefaultGgufParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        path = pathlib.Path(DEFAULT_MODEL)
        cls.tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        cls.model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32)
        cls.model.eval()
        seqs = [cls.tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                            tokenize=True) for p in PROMPTS]
        seqs = [s["input_ids"] if isinstance(s, dict) or hasattr(s, "keys") else s for s in seqs]
        T = max(map(len, seqs))
        cls.ids = np.array([s + [0] * (T - len(s)) for s in seqs], dtype=np.int64)
        cls.mask = np.array([[1] * len(s) + [0] * (T - len(s)) for s in seqs], dtype=np.int64)
        with torch.no_grad():
            cls.ref = cls.model(input_ids=torch.tensor(cls.ids), attention_mask=torch.tensor(cls.mask)).logits.numpy()
        cls.work = tmpdir()
        (cls.work / "in.json").write_text(json.dumps({"ids": cls.ids.tolist(), "mask": cls.mask.tolist()}))

    def test_logits(self):
        self.check_logits([])

    def test_logits_packed_weights(self):
        self.check_logits(["fp32", "cpu", "--packed"])

    def check_logits(self, extra):
        out = self.work / "logits.f32"
        run([binary("tests/engine/model/model_probe"), "logits", DEFAULT_MODEL, self.work / "in.json", out, *extra])
        ours = np.fromfile(out, dtype=np.float32).reshape(self.ref.shape)
        real = self.mask.astype(bool)
        scale = float(np.abs(self.ref[real]).max())
        assert_close(self, ours[real], self.ref[real], atol=1e-3 * scale,
                     what=f"SmolLM2 GGUF logits ({int(real.sum())} tokens, logit scale {scale:.1f})")
        # Same next-token choice everywhere.
        agree = (ours[real].argmax(-1) == self.ref[real].argmax(-1)).mean()
        print(f"[parity] SmolLM2 argmax agreement {agree:.4f}", flush=True)
        self.assertEqual(agree, 1.0)

    def test_token_log_likelihoods(self):
        self.check_token_log_likelihoods([])

    def test_token_log_likelihoods_packed_weights(self):
        self.check_token_log_likelihoods(["cpu", "--packed"])

    def check_token_log_likelihoods(self, extra):
        out = self.work / "ll.f32"
        run([binary("tests/engine/model/model_probe"), "loglik", DEFAULT_MODEL, self.work / "in.json", out, "64", *extra])
        ll = np.fromfile(out, dtype=np.float32).reshape(self.ids.shape[0], self.ids.shape[1] - 1)
        logp = torch.log_softmax(torch.tensor(self.ref[:, :-1]), -1)
        ref_ll = torch.gather(logp, 2, torch.tensor(self.ids[:, 1:]).unsqueeze(-1)).squeeze(-1).numpy()
        real = self.mask.astype(bool)
        valid = real[:, :-1] & real[:, 1:]
        assert_close(self, ll[valid], ref_ll[valid], atol=1e-3, rtol=1e-3,
                     what="SmolLM2 GGUF token log-likelihoods")

    def test_greedy_decoding_from_the_gguf_blocks_equals_transformers(self):
        """--weights gguf: decoding's products read the file's Q4_1 / Q8_0 blocks (the same numbers
        as the fp32 weights, summed in another order). Greedy answers of a batch of 4 equal
        transformers' greedy generation prompt by prompt, token for token, and tlm's fp32 path."""
        prompts = self.work / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        answers = {}
        for weights in ("fp32", "gguf"):
            out = self.work / f"generate-{weights}.jsonl"
            proc = run([binary("launch/tlm"), "generate", "--model", DEFAULT_MODEL, "--prompts-file", prompts,
                        "--max-new-tokens", "24", "--batch-size", "4", "--weights", weights, "--output", out])
            if weights == "gguf":
                self.assertIn("--weights gguf: 211 of 211 weights", proc.stdout + proc.stderr)
            answers[weights] = [json.loads(l)["predict"] for l in out.read_text().splitlines()]
        ref = []
        for p in PROMPTS:
            ids = self.tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                               tokenize=True, return_tensors="pt")
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            with torch.no_grad():
                seq = self.model.generate(ids, max_new_tokens=24, do_sample=False,
                                          eos_token_id=self.tok.convert_tokens_to_ids("<|im_end|>"))
            ref.append(self.tok.decode(seq[0, ids.shape[1]:], skip_special_tokens=True))
        print(f"[parity] greedy answers, --weights gguf: {answers['gguf']}", flush=True)
        self.assertEqual(answers["gguf"], ref)
        self.assertEqual(answers["fp32"], ref)


if __name__ == "__main__":
    tlm_testing.main()
