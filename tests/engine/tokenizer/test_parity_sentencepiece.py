"""tokenizer.parity_sentencepiece: a SentencePiece BPE model trained at test time (Llama-style:
byte fallback, split digits, identity normalization, a user-defined symbol), saved as
tokenizer.model with a Llama tokenizer_config.json. Our load_tokenizer_from_directory must
encode like AutoTokenizer on that directory (and like sentencepiece itself where HF does);
the same vocabulary written as a GGUF `llama` vocabulary (scores, no merges) must encode
like AutoTokenizer(gguf_file=...)."""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import tok_fixtures  # noqa: E402
import tlm_testing  # noqa: E402
import tlm_testing

SPECIALS = ["<s>", "</s>", "<unk>", "<tool>"]
LLAMA_CONFIG = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True,
                "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                "unk_token": "<unk>", "legacy": False, "clean_up_tokenization_spaces": False}


class SentencePieceParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tlm_testing.tmpdir("tlm-tok-sp-")
        corpus = tok_fixtures.training_corpus(seed=11, lines=4000)
        cls.dir = cls.work / "llama_sp"
        cls.model_file = tok_fixtures.train_sentencepiece(
            cls.dir, corpus, vocab_size=1200, tokenizer_config=LLAMA_CONFIG,
            user_defined_symbols=["<tool>"])
        cls.strings = corpus[:500] + tok_fixtures.generate_strings(seed=31, specials=SPECIALS,
                                                                   count=2100)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def check_against(self, name, resp, ref_ids, hf, strings):
        ours = [e["ids"] for e in resp["encode"]]
        bad = sum(a != b for a, b in zip(ours, ref_ids))
        dec = hf.batch_decode(ref_ids)
        dec_skip = hf.batch_decode(ref_ids, skip_special_tokens=True)
        bad_dec = sum(e["decoded"] != d for e, d in zip(resp["encode"], dec))
        bad_skip = sum(e["decoded_skip"] != d for e, d in zip(resp["encode"], dec_skip))
        bad_stream = sum(e["stream"] != d for e, d in zip(resp["encode"], dec_skip))
        print(f"[parity] sentencepiece/{name}: {len(strings)} strings, "
              f"{sum(map(len, ref_ids))} tokens; id mismatches {bad}, decode {bad_dec}, "
              f"skip-special decode {bad_skip}, stream {bad_stream}", flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, ref_ids, strings))
        self.assertEqual(bad_dec, 0)
        self.assertEqual(bad_skip, 0)
        self.assertEqual(bad_stream, 0)

    def test_directory_vs_auto_tokenizer(self):
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(self.dir))
        resp = tok_fixtures.probe({"dir": str(self.dir), "encode": self.strings,
                                   "add_bos": True}, self.work)
        self.check_against("tokenizer.model", resp, hf(self.strings)["input_ids"], hf,
                           self.strings)
        self.assertEqual(resp["vocab_size"], len(hf))
        self.assertEqual(resp["bos"], hf.bos_token_id)
        self.assertEqual(resp["eos"], hf.eos_token_id)
        self.assertEqual(resp["strip_leading"], 1)

    def test_directory_vs_sentencepiece(self):
        # HF (and tlm) differ from sentencepiece where HF's pipeline differs: a leading
        # space is not doubled by the dummy prefix, the text after an added token gets no
        # dummy prefix, and <s>/</s> written in the text are special tokens. Elsewhere the
        # three agree.
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        strings = [s for s in self.strings
                   if s and not s[0].isspace() and not any(t in s for t in SPECIALS)]
        resp = tok_fixtures.probe({"dir": str(self.dir), "encode": strings, "add_bos": True},
                                  self.work)
        ours = [e["ids"] for e in resp["encode"]]
        refs = [[sp.bos_id()] + ids for ids in sp.encode(strings)]
        bad = sum(a != b for a, b in zip(ours, refs))
        print(f"[parity] sentencepiece/tokenizer.model vs sentencepiece: {len(strings)} "
              f"strings; id mismatches {bad}", flush=True)
        self.assertGreater(len(strings), 1500)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, refs, strings))
        decoded = [e["decoded_skip"] for e in resp["encode"]]
        self.assertEqual(decoded, strings)

    def test_prefix_space_variants(self):
        # add_prefix_space=false and legacy=true change Metaspace's prepend scheme.
        from transformers import AutoTokenizer

        strings = self.strings[:600]
        for extra in ({"add_prefix_space": False}, {"legacy": True}, {"add_bos_token": False}):
            directory = self.work / ("variant_" + "_".join(extra))
            directory.mkdir()
            (directory / "tokenizer.model").write_bytes(self.model_file.read_bytes())
            tlm_testing.write_json(directory / "tokenizer_config.json", {**LLAMA_CONFIG, **extra})
            hf = AutoTokenizer.from_pretrained(str(directory))
            resp = tok_fixtures.probe({"dir": str(directory), "encode": strings,
                                       "add_bos": True}, self.work)
            self.check_against(f"variant {extra}", resp, hf(strings)["input_ids"], hf, strings)

    def test_gguf_llama_vocabulary(self):
        from sentencepiece import sentencepiece_model_pb2
        from transformers import AutoTokenizer

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(self.model_file.read_bytes())
        tokens = [p.piece for p in proto.pieces]
        scores = [p.score for p in proto.pieces]
        types = [int(p.type) for p in proto.pieces]
        directory = self.work / "gguf_llama"
        directory.mkdir()
        path = directory / "sp.gguf"
        tok_fixtures.write_gguf_vocab(path, "llama", tokens, types, scores=scores, pre="default",
                                      bos=1, eos=2, unk=0, chat_template="{{ messages }}")
        hf = AutoTokenizer.from_pretrained(str(directory), gguf_file=path.name)
        resp = tok_fixtures.probe({"gguf": str(path), "encode": self.strings, "add_bos": True},
                                  self.work)
        self.check_against("gguf llama", resp, hf(self.strings)["input_ids"], hf, self.strings)
        self.assertEqual(resp["vocab_size"], len(hf))
        self.assertEqual(resp["bos"], hf.bos_token_id)
        self.assertEqual(resp["chat_template"], "{{ messages }}")

    def test_llama2_style_tokenizer_json(self):
        # A Llama-2 repository ships tokenizer.json with the old Prepend/Replace normalizer;
        # transformers 5 keeps only its vocabulary, merges, added tokens and post-processor
        # and rebuilds LlamaTokenizer's Metaspace pipeline around them. So must we.
        import json

        from transformers import AutoTokenizer

        base = AutoTokenizer.from_pretrained(str(self.dir))
        directory = self.work / "llama2_json"
        directory.mkdir()
        base.backend_tokenizer.save(str(directory / "tokenizer.json"))
        data = json.loads((directory / "tokenizer.json").read_text())
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        data["pre_tokenizer"] = None
        data["model"]["unk_token"] = "<unk>"
        (directory / "tokenizer.json").write_text(json.dumps(data))
        tlm_testing.write_json(directory / "tokenizer_config.json", LLAMA_CONFIG)
        hf = AutoTokenizer.from_pretrained(str(directory))
        self.assertEqual(type(hf).__name__, "LlamaTokenizer")
        strings = self.strings[:1000] + [" hello", "a<s>b", "<tool>ka x", "x</s> y"]
        resp = tok_fixtures.probe({"dir": str(directory), "encode": strings, "add_bos": True},
                                  self.work)
        self.check_against("llama2-style tokenizer.json", resp, hf(strings)["input_ids"], hf,
                           strings)

    def test_unsupported_class_fails_loudly(self):
        directory = self.work / "t5_like"
        directory.mkdir()
        (directory / "tokenizer.model").write_bytes(self.model_file.read_bytes())
        tlm_testing.write_json(directory / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer"})
        with self.assertRaises(AssertionError) as ctx:
            tok_fixtures.probe({"dir": str(directory), "encode": ["x"]}, self.work)
        self.assertIn("T5Tokenizer", str(ctx.exception))
        self.assertIn("tokenizer_config.json", str(ctx.exception))


if __name__ == "__main__":
    tlm_testing.main()
