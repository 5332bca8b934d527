"""tokenizer.parity_bpe_trained: byte-level BPE tokenizer.json files trained at test time with
HF `tokenizers`, loaded through load_tokenizer_from_directory and compared with the
`tokenizers` library on the same file and with AutoTokenizer on the directory.

Variant "llama3": Llama-3's Split regex + ByteLevel(use_regex=False), ignore_merges, special
tokens, BOS template, added tokens with lstrip/rstrip/single_word/normalized flags.
Variant "nfc_digits": NFC normalizer, Digits(individual) + Qwen2 Split regex.
Variant "gpt2": ByteLevel(add_prefix_space=True, use_regex=True), no post-processor."""
import json
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import tok_fixtures  # noqa: E402
import tlm_testing  # noqa: E402
import tlm_testing

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_0|>"]
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


class TrainedBpeParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tlm_testing.tmpdir("tlm-tok-bpe-")
        cls.corpus = tok_fixtures.training_corpus(seed=5, lines=3000)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def compare(self, name, directory, strings, strip_tokens=(), hf_auto=True):
        """Encodes `strings` with our loader, the tokenizers library and (optionally)
        AutoTokenizer; all must agree, and decode must give the input back."""
        from tokenizers import Tokenizer

        lib = Tokenizer.from_file(str(directory / "tokenizer.json"))
        resp = tok_fixtures.probe({"dir": str(directory), "encode": strings, "add_bos": True},
                                  self.work)
        resp_plain = tok_fixtures.probe({"dir": str(directory), "encode": strings,
                                         "add_bos": False}, self.work)
        ours = [e["ids"] for e in resp["encode"]]
        ours_plain = [e["ids"] for e in resp_plain["encode"]]
        lib_ids = [e.ids for e in lib.encode_batch(strings, add_special_tokens=True)]
        lib_plain = [e.ids for e in lib.encode_batch(strings, add_special_tokens=False)]
        lib_dec = lib.decode_batch(lib_plain, skip_special_tokens=False)
        lib_skip = lib.decode_batch(lib_plain, skip_special_tokens=True)
        bad = sum(a != b for a, b in zip(ours, lib_ids))
        bad_plain = sum(a != b for a, b in zip(ours_plain, lib_plain))
        bad_dec = sum(e["decoded"] != d for e, d in zip(resp_plain["encode"], lib_dec))
        bad_skip = sum(e["decoded_skip"] != d for e, d in zip(resp_plain["encode"], lib_skip))
        bad_stream = sum(e["stream"] != d for e, d in zip(resp_plain["encode"], lib_skip))
        # lstrip/rstrip tokens swallow the spaces around them, so those strings cannot
        # round-trip (HF's decode loses them too; `bad_dec` checks we agree with it).
        bad_roundtrip = sum(e["decoded"] != s for e, s in zip(resp_plain["encode"], strings)
                            if not any(t in s for t in strip_tokens))
        print(f"[parity] bpe_trained/{name}: {len(strings)} strings, "
              f"{sum(map(len, lib_plain))} tokens; vs tokenizers: id mismatches {bad} "
              f"(with specials) {bad_plain} (without), decode {bad_dec}, skip-special decode "
              f"{bad_skip}, stream {bad_stream}; decode(ids)!=input {bad_roundtrip}", flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, lib_ids, strings))
        self.assertEqual(bad_plain, 0, tok_fixtures.first_mismatch(ours_plain, lib_plain, strings))
        self.assertEqual(bad_dec, 0)
        self.assertEqual(bad_skip, 0)
        self.assertEqual(bad_stream, 0)
        self.assertEqual(bad_roundtrip, 0)
        self.assertEqual(resp["vocab_size"], lib.get_vocab_size(with_added_tokens=True))
        if hf_auto:
            from transformers import AutoTokenizer

            auto = AutoTokenizer.from_pretrained(str(directory))
            auto_ids = auto(strings)["input_ids"]
            bad_auto = sum(a != b for a, b in zip(ours, auto_ids))
            print(f"[parity] bpe_trained/{name}: vs AutoTokenizer ({type(auto).__name__}): "
                  f"{bad_auto} id mismatches", flush=True)
            self.assertEqual(bad_auto, 0, tok_fixtures.first_mismatch(ours, auto_ids, strings))
            self.assertEqual(resp["bos"], auto.bos_token_id)
            self.assertEqual(resp["eos"], auto.eos_token_id)
        return resp

    def strings_for(self, specials, seed):
        held_out = tok_fixtures.generate_strings(seed=seed, specials=specials, count=2100)
        return self.corpus[:800] + held_out

    def test_llama3_style(self):
        from tokenizers import AddedToken

        directory = self.work / "llama3"
        tok = tok_fixtures.train_byte_level_bpe(directory, self.corpus, LLAMA3_SPECIALS,
                                                vocab_size=3000,
                                                add_bos_template="<|begin_of_text|>")
        # Added tokens exercising HF's matching flags.
        tok.add_special_tokens([AddedToken("<|tool|>", lstrip=True, rstrip=True,
                                           normalized=False, special=True)])
        tok.add_tokens([AddedToken("hello", single_word=True, normalized=True),
                        AddedToken("new_token_xyz", normalized=False),
                        AddedToken(" the", normalized=True)])
        tok.save(str(directory / "tokenizer.json"))
        tlm_testing.write_json(directory / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
            "clean_up_tokenization_spaces": False, "model_max_length": 8192})
        extra = ["hello world", "othello hello!", "say hello", "hellos", "x <|tool|>  y",
                 "  <|tool|>\n\nz", "new_token_xyzabc", "in the end the", "<|tool|><|tool|>"]
        specials = LLAMA3_SPECIALS + ["<|tool|>"]
        strings = self.strings_for(specials, seed=21) + extra
        resp = self.compare("llama3", directory, strings, strip_tokens=["<|tool|>"])
        self.assertTrue(json.loads((directory / "tokenizer.json").read_text())["model"]
                        ["ignore_merges"])
        self.assertEqual(resp["bos"], tok.token_to_id("<|begin_of_text|>"))

    def test_add_bos_flags_ignored_with_tokenizer_json(self):
        # transformers 5 drops tokenizer_config.json's add_bos_token/add_eos_token when a
        # tokenizer.json exists: the file's post-processor (BOS here) stays.
        directory = self.work / "no_bos"
        tok_fixtures.train_byte_level_bpe(directory, self.corpus[:1500], LLAMA3_SPECIALS,
                                          vocab_size=1000, add_bos_template="<|begin_of_text|>")
        tlm_testing.write_json(directory / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
            "add_eos_token": True, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
        from transformers import AutoTokenizer

        strings = self.corpus[:50] + ["", "x"]
        auto = AutoTokenizer.from_pretrained(str(directory))
        resp = tok_fixtures.probe({"dir": str(directory), "encode": strings, "add_bos": True},
                                  self.work)
        self.assertEqual([e["ids"] for e in resp["encode"]], auto(strings)["input_ids"])

    def test_nfc_digits(self):
        from tokenizers import Regex, normalizers, pre_tokenizers, processors

        directory = self.work / "nfc_digits"
        tok = tok_fixtures.train_byte_level_bpe(directory, self.corpus, ["<|endoftext|>",
                                                                         "<|im_start|>",
                                                                         "<|im_end|>"],
                                                vocab_size=2500)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.save(str(directory / "tokenizer.json"))
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        strings = self.strings_for(specials, seed=22)
        # NFC changes decomposed input, so check ids/decoding against the library only; the
        # round trip holds for the NFC form of the input.
        from tokenizers import Tokenizer
        import unicodedata

        lib = Tokenizer.from_file(str(directory / "tokenizer.json"))
        resp = tok_fixtures.probe({"dir": str(directory), "encode": strings}, self.work)
        ours = [e["ids"] for e in resp["encode"]]
        refs = [e.ids for e in lib.encode_batch(strings)]
        dec = lib.decode_batch(refs, skip_special_tokens=False)
        bad = sum(a != b for a, b in zip(ours, refs))
        bad_dec = sum(e["decoded"] != d for e, d in zip(resp["encode"], dec))
        bad_nfc = sum(e["decoded"] != unicodedata.normalize("NFC", s)
                      for e, s in zip(resp["encode"], strings))
        print(f"[parity] bpe_trained/nfc_digits: {len(strings)} strings; id mismatches {bad}, "
              f"decode mismatches {bad_dec}, decode!=NFC(input) {bad_nfc}", flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, refs, strings))
        self.assertEqual(bad_dec, 0)
        self.assertEqual(bad_nfc, 0)

    def test_gpt2_style(self):
        from tokenizers import pre_tokenizers

        directory = self.work / "gpt2"
        tok = tok_fixtures.train_byte_level_bpe(directory, self.corpus, ["<|endoftext|>"],
                                                vocab_size=2000)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
        tok.save(str(directory / "tokenizer.json"))
        strings = self.strings_for(["<|endoftext|>"], seed=23)
        from tokenizers import Tokenizer

        lib = Tokenizer.from_file(str(directory / "tokenizer.json"))
        resp = tok_fixtures.probe({"dir": str(directory), "encode": strings}, self.work)
        ours = [e["ids"] for e in resp["encode"]]
        refs = [e.ids for e in lib.encode_batch(strings)]
        dec = lib.decode_batch(refs, skip_special_tokens=False)
        bad = sum(a != b for a, b in zip(ours, refs))
        bad_dec = sum(e["decoded"] != d for e, d in zip(resp["encode"], dec))
        print(f"[parity] bpe_trained/gpt2: {len(strings)} strings; id mismatches {bad}, "
              f"decode mismatches {bad_dec}", flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, refs, strings))
        self.assertEqual(bad_dec, 0)

    def test_gguf_gpt2_vocabularies(self):
        # The trained vocabulary stored as a GGUF `gpt2` vocabulary (as llama.cpp writes it),
        # under several tokenizer.ggml.pre values: each selects HF's pre-tokenizer regex.
        from transformers import AutoTokenizer

        src = self.work / "gguf_src"
        tok_fixtures.train_byte_level_bpe(src, self.corpus, LLAMA3_SPECIALS, vocab_size=2500)
        data = json.loads((src / "tokenizer.json").read_text())
        vocab = data["model"]["vocab"]
        tokens = [""] * (max(vocab.values()) + 1)
        for t, i in vocab.items():
            tokens[i] = t
        types = [1] * len(tokens)
        for a in data["added_tokens"]:
            types[a["id"]] = 3
        # A user-defined token, and a control token spelled outside the byte alphabet (a
        # llama.cpp mislabel transformers skips).
        tokens += ["<think>", "<ctrl with space>"]
        types += [4, 3]
        merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
        strings = tok_fixtures.generate_strings(seed=24, specials=LLAMA3_SPECIALS, count=2000)
        strings += ["<think>reason</think>", "a <ctrl with space> b", "x<think>"]
        for pre in ["llama-bpe", "qwen2", "smollm", "gpt-4o", "tekken"]:
            directory = self.work / f"gguf_{pre}"
            directory.mkdir()
            path = directory / "vocab.gguf"
            tok_fixtures.write_gguf_vocab(path, "gpt2", tokens, types, merges=merges, pre=pre,
                                          bos=0, eos=4, add_bos=(pre != "qwen2"))
            auto = AutoTokenizer.from_pretrained(str(directory), gguf_file=path.name)
            resp = tok_fixtures.probe({"gguf": str(path), "encode": strings, "add_bos": True},
                                      self.work)
            ours = [e["ids"] for e in resp["encode"]]
            refs = auto(strings)["input_ids"]
            hf_dec = auto.batch_decode(refs)
            bad = sum(a != b for a, b in zip(ours, refs))
            bad_dec = sum(e["decoded"] != d for e, d in zip(resp["encode"], hf_dec))
            print(f"[parity] gguf gpt2 vocabulary, pre={pre}: {len(strings)} strings; id "
                  f"mismatches {bad}, decode mismatches {bad_dec}", flush=True)
            self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, refs, strings))
            self.assertEqual(bad_dec, 0)
            # transformers' GPT2Tokenizer also registers its default "<|endoftext|>" as a new
            # id past the vocabulary when the file lacks it; tlm does not invent that token.
            phantom = auto.convert_tokens_to_ids("<|endoftext|>")
            self.assertEqual(phantom, len(tokens))
            self.assertEqual(resp["vocab_size"], len(auto) - 1)

    def test_unsupported_component_fails_loudly(self):
        directory = self.work / "bad"
        tok = tok_fixtures.train_byte_level_bpe(directory, self.corpus[:500], ["<s>"],
                                                vocab_size=400)
        data = json.loads((directory / "tokenizer.json").read_text())
        data["normalizer"] = {"type": "BertNormalizer", "clean_text": True}
        (directory / "tokenizer.json").write_text(json.dumps(data))
        with self.assertRaises(AssertionError) as ctx:
            tok_fixtures.probe({"dir": str(directory), "encode": ["x"]}, self.work)
        message = str(ctx.exception)
        self.assertIn("tokenizer.json: normalizer", message)
        self.assertIn("BertNormalizer", message)
        del tok


if __name__ == "__main__":
    tlm_testing.main()
