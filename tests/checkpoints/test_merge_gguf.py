"""tlm-ckpt merge onto a GGUF base (issue 13): two online TLM steps on the default model
(SmolLM2-135M-Instruct, Q4_1 GGUF; LoRA on all 7 projections), merged into an HF directory
that transformers loads as a plain model. Checks: its logits against transformers' own GGUF
loader with PEFT applying the exported adapter (the adapted model), tlm reading the merged
directory against transformers on it, and its tokenizer files against transformers' tokenizer
built from the GGUF on the SmolLM2 tokenizer test's 2400 strings, chat template included; and
`tlm-ckpt convert` + `export-peft --base` giving an adapter that PEFT's AutoPeftModel loads.
The same merge onto Gemma 3 270M (norms stored as 1 + w, a SentencePiece-style vocabulary).
Each part is skipped when its model is not installed."""
import json
import os
import pathlib
import sys
import unittest

import numpy as np
import peft
import torch
import transformers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "engine" / "tokenizer"))
import tok_fixtures  # noqa: E402
from tlm_testing import DEFAULT_MODEL, SOURCE_DIR, binary, require_default_model, run, tmpdir  # noqa: E402
import tlm_testing  # noqa: E402

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<jupyter_code>", "<empty_output>"]
PROMPTS = ["How do legumes fix nitrogen in the soil?", "What does a bond's coupon rate mean for its price?"]


def compare_merged_with_peft(case, what, merged, gguf_path, peft_dir, ids):
    """transformers on the merged directory against PEFT applying the exported adapter to
    transformers' own load of the GGUF; returns the merged model's logits."""
    folded = transformers.AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    base = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_path),
                                                             gguf_file=os.path.basename(gguf_path),
                                                             dtype=torch.float32).eval()
    with torch.no_grad():
        before = base(input_ids=ids).logits
        want = peft.PeftModel.from_pretrained(base, str(peft_dir)).eval()(input_ids=ids).logits
        got = folded(input_ids=ids).logits
    diff, scale = float((got - want).abs().max()), float(want.abs().max())
    moved = float((want - before).abs().max())
    print(f"[parity] merge onto {what}: transformers on the merged directory vs PEFT on transformers' GGUF load, "
          f"logits max abs diff {diff:.2e} at max |logit| {scale:.1f} (the adapter moves logits by {moved:.2f})",
          flush=True)
    # W + s B A folded in fp32 rounds differently from W x + s B (A x): measured 1.55e-4 at
    # logits of 56 (2.8e-6 relative) through SmolLM2's 30 layers. 1e-5 of the largest logit.
    case.assertLessEqual(diff, 1e-5 * scale)
    case.assertGreater(moved, 1e-2)
    return got


class MergeOntoGguf(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_default_model()
        cls.work = tmpdir("tlm-merge-gguf-")
        run([binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml", "--data",
             SOURCE_DIR / "configs" / "demo-stream.jsonl", "--max-samples", 2, "--max-new-tokens", 2, "--output-dir",
             cls.work / "run", "--checkpoint-dir", cls.work / "run" / "ckpt", "--checkpoint-every-steps", 1,
             "--lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--lr", "1e-2",
             "--threshold", 0, "--dtype", "fp32"])
        step = cls.work / "run" / "ckpt" / "step-2.h5"
        cls.merged, cls.peft_dir = cls.work / "merged", cls.work / "peft"
        cls.merge_out = run([binary("launch/tlm-ckpt"), "merge", step, "--base", DEFAULT_MODEL, cls.merged]).stdout
        run([binary("launch/tlm-ckpt"), "export-peft", step, cls.peft_dir])
        cls.gguf_dir, cls.gguf_name = os.path.dirname(DEFAULT_MODEL), os.path.basename(DEFAULT_MODEL)
        cls.tok = transformers.AutoTokenizer.from_pretrained(cls.merged)
        cls.ref_tok = transformers.AutoTokenizer.from_pretrained(cls.gguf_dir, gguf_file=cls.gguf_name)

    def test_transformers_loads_the_merged_model_with_the_adapted_logits(self):
        self.assertIn("210 projections merged", self.merge_out)
        self.assertEqual(sorted(p.name for p in self.merged.iterdir()),
                         ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json"])
        msgs = [[{"role": "user", "content": p}] for p in PROMPTS]
        ids = [self.ref_tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True) for m in msgs]
        ids = [i["input_ids"] if isinstance(i, dict) or hasattr(i, "keys") else i for i in ids]
        n = min(len(i) for i in ids)
        batch = torch.tensor([i[:n] for i in ids])
        got = compare_merged_with_peft(self, "the default GGUF", self.merged, DEFAULT_MODEL, self.peft_dir, batch)
        # tlm reads what it wrote: the merged directory through tlm's HF loader.
        probe_in = self.work / "ids.json"
        probe_in.write_text(json.dumps({"ids": batch.tolist(), "mask": [[1] * n] * len(ids)}))
        run([binary("tests/engine/model/model_probe"), "logits", self.merged, probe_in, self.work / "logits.f32"])
        ours = np.fromfile(self.work / "logits.f32", dtype=np.float32).reshape(got.shape)
        ours_diff = float(np.abs(ours - got.numpy()).max())
        print(f"[parity] tlm on the merged directory vs transformers on it: logits max abs diff {ours_diff:.2e}",
              flush=True)
        self.assertLessEqual(ours_diff, 1e-4)

    def test_an_exported_adapter_names_the_converted_base_that_peft_loads(self):
        # PEFT cannot load a .gguf base: export-peft warns, and names the directory convert writes.
        proc = run([binary("launch/tlm-ckpt"), "export-peft", self.work / "run" / "ckpt" / "step-2.h5",
                    self.work / "peft-gguf-named"])
        self.assertIn("which PEFT cannot load", proc.stderr)
        converted, peft_dir = self.work / "converted", self.work / "peft-converted"
        out = run([binary("launch/tlm-ckpt"), "convert", DEFAULT_MODEL, converted]).stdout
        self.assertIn("HF directory", out)
        run([binary("launch/tlm-ckpt"), "export-peft", self.work / "run" / "ckpt" / "step-2.h5", peft_dir,
             "--base", converted])
        self.assertEqual(json.loads((peft_dir / "adapter_config.json").read_text())["base_model_name_or_path"],
                         str(converted))
        adapted = peft.AutoPeftModelForCausalLM.from_pretrained(str(peft_dir), dtype=torch.float32).eval()
        folded = transformers.AutoModelForCausalLM.from_pretrained(self.merged, dtype=torch.float32).eval()
        ids = torch.tensor([self.tok(PROMPTS[1])["input_ids"]])
        with torch.no_grad():
            want, got = adapted(input_ids=ids).logits, folded(input_ids=ids).logits
        diff, scale = float((got - want).abs().max()), float(want.abs().max())
        print(f"[parity] AutoPeftModelForCausalLM on the converted base vs the merged model: logits max abs diff "
              f"{diff:.2e} at max |logit| {scale:.1f}", flush=True)
        self.assertLessEqual(diff, 1e-5 * scale)

    def test_tokenizer_files_encode_like_transformers_gguf_tokenizer(self):
        strings = tok_fixtures.generate_strings(seed=1234, specials=SPECIALS, count=2400)
        ours, ref = self.tok(strings)["input_ids"], self.ref_tok(strings)["input_ids"]
        bad = sum(a != b for a, b in zip(ours, ref))
        decoded_bad = sum(a != b for a, b in zip(self.tok.batch_decode(ours), self.ref_tok.batch_decode(ref)))
        print(f"[parity] merged tokenizer.json vs transformers' GGUF tokenizer: {len(strings)} strings, "
              f"{sum(map(len, ref))} tokens, {bad} id mismatches, {decoded_bad} decode mismatches", flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, ref, strings))
        self.assertEqual(decoded_bad, 0)
        msgs = [{"role": "user", "content": PROMPTS[0]}]
        self.assertEqual(self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
                         self.ref_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        for attr in ("bos_token", "eos_token", "pad_token", "unk_token"):
            self.assertEqual(getattr(self.tok, attr), getattr(self.ref_tok, attr), attr)


GEMMA3 = os.environ.get("TLM_GEMMA3_MODEL", "")


class MergeOntoGemma3Gguf(unittest.TestCase):
    """The same for Gemma 3 270M (`--model gemma3-270m`): its GGUF holds norms as 1 + w and a
    SentencePiece-style vocabulary; the merged directory holds HF's w and a tokenizer.json.
    Logits against PEFT on transformers' GGUF load; the tokenizer against SentencePiece on the
    model rebuilt from the GGUF (tokenizer.parity_gemma3's reference)."""

    @classmethod
    def setUpClass(cls):
        if not GEMMA3 or not os.path.exists(GEMMA3):
            raise unittest.SkipTest(f"Gemma 3 270M is not installed (TLM_GEMMA3_MODEL={GEMMA3!r})")
        cls.work = tmpdir("tlm-merge-gemma3-")
        run([binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml", "--model",
             "gemma3-270m", "--chat-template", "raw", "--data", SOURCE_DIR / "configs" / "demo-stream.jsonl",
             "--max-samples", 2, "--max-new-tokens", 2, "--output-dir", cls.work / "run", "--checkpoint-dir",
             cls.work / "run" / "ckpt", "--checkpoint-every-steps", 1, "--lr", "1e-2", "--threshold", 0,
             "--lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--dtype", "fp32"])
        step = cls.work / "run" / "ckpt" / "step-2.h5"
        cls.merged, cls.peft_dir = cls.work / "merged", cls.work / "peft"
        cls.merge_out = run([binary("launch/tlm-ckpt"), "merge", step, "--base", GEMMA3, cls.merged]).stdout
        run([binary("launch/tlm-ckpt"), "export-peft", step, cls.peft_dir])

    def test_transformers_loads_the_merged_gemma3(self):
        self.assertIn("126 projections merged", self.merge_out)
        config = json.loads((self.merged / "config.json").read_text())
        self.assertEqual((config["model_type"], config["query_pre_attn_scalar"], config["layer_types"].count(
            "full_attention")), ("gemma3_text", 256, 3))
        ids = torch.tensor([[2, 818, 5279, 529, 7001, 563, 9079, 236761, 669, 5279, 529]])
        compare_merged_with_peft(self, "Gemma 3 270M", self.merged, GEMMA3, self.peft_dir, ids)

    def test_merged_tokenizer_encodes_like_sentencepiece(self):
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "engine" / "tokenizer"))
        import test_parity_gemma3 as gemma_tok  # noqa: E402 (its SentencePiece reference)
        sp, ids = gemma_tok.sentencepiece_from_gguf(GEMMA3)
        tok = transformers.AutoTokenizer.from_pretrained(self.merged)
        strings = tok_fixtures.generate_strings(seed=1234, specials=gemma_tok.SPECIALS, count=2400)
        refs = [[2] + gemma_tok.reference_encode(sp, ids, s) for s in strings]
        ours = tok(strings)["input_ids"]
        bad = sum(a != b for a, b in zip(ours, refs))
        bad_decode = sum(tok.decode(r, skip_special_tokens=True) != sp.decode(r) for r in refs)
        print(f"[parity] merged Gemma 3 tokenizer.json vs SentencePiece: {len(strings)} strings, "
              f"{sum(map(len, refs))} tokens, {bad} id mismatches, {bad_decode} decode mismatches", flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, refs, strings))
        self.assertEqual(bad_decode, 0)


if __name__ == "__main__":
    tlm_testing.main()
