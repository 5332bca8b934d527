"""Gemma 3 270M's vocabulary from its GGUF (SentencePiece-style BPE, 262,144 pieces, no dummy
prefix, byte fallback, merges regenerated from the scores) against SentencePiece itself: the
model rebuilt from the same GGUF (pieces, scores and types; llama.cpp's converter writes the
user-defined pieces with real spaces for U+2581, which are put back), with control tokens in the
text split out as transformers' added tokens are. transformers cannot build a tokenizer from a
Gemma 3 GGUF, so SentencePiece, the library Gemma's tokenizer is made with, is the reference.
2400 generated strings (the SmolLM2 test's generator), encodings and decodings. Skipped when the
model is not installed."""
import os
import pathlib
import re
import shutil
import sys
import unittest

import gguf
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

sys.path.insert(0, os.path.dirname(__file__))
import tok_fixtures  # noqa: E402
import tlm_testing  # noqa: E402

MODEL = os.environ.get("TLM_GEMMA3_MODEL", "")
SPECIALS = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>"]


def sentencepiece_from_gguf(path):
    fields = gguf.GGUFReader(path).fields
    def strings(key):
        f = fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    def numbers(key, kind):
        f = fields[key]
        return [kind(f.parts[i][0]) for i in f.data]
    pieces, scores = strings("tokenizer.ggml.tokens"), numbers("tokenizer.ggml.scores", float)
    types = numbers("tokenizer.ggml.token_type", int)
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(pieces)
    m.trainer_spec.pad_id, m.trainer_spec.eos_id, m.trainer_spec.bos_id, m.trainer_spec.unk_id = 0, 1, 2, 3
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for piece, score, kind in zip(pieces, scores, types):
        p = m.pieces.add()
        p.piece = piece.replace(" ", "\u2581") if kind == 4 else piece
        p.score, p.type = score, kind
        if piece == "<unk>":
            p.type = pb.ModelProto.SentencePiece.UNKNOWN
    return spm.SentencePieceProcessor(model_proto=m.SerializeToString()), {p: i for i, p in enumerate(pieces)}


def reference_encode(sp, ids, text):
    """SentencePiece's ids for `text`, control tokens split out first as transformers' added
    tokens are (SentencePiece itself reads them as plain text)."""
    out = []
    for part in re.split("(" + "|".join(map(re.escape, SPECIALS)) + ")", text):
        if part in SPECIALS:
            out.append(ids[part])
        elif part:
            out += sp.encode(part)
    return out


class Gemma3GgufTokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not MODEL or not os.path.exists(MODEL):
            raise unittest.SkipTest(f"Gemma 3 270M is not installed (TLM_GEMMA3_MODEL={MODEL!r})")
        cls.sp, cls.ids = sentencepiece_from_gguf(MODEL)
        cls.work = tlm_testing.tmpdir("tlm-tok-gemma3-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def reference(self, text):
        return reference_encode(self.sp, self.ids, text)

    def test_generated_strings(self):
        strings = tok_fixtures.generate_strings(seed=1234, specials=SPECIALS, count=2400)
        resp = tok_fixtures.probe({"gguf": MODEL, "encode": strings, "add_bos": True}, self.work)
        ours = [e["ids"] for e in resp["encode"]]
        refs = [[2] + self.reference(s) for s in strings]  # tokenizer.ggml.add_bos_token: <bos>
        bad = sum(a != b for a, b in zip(ours, refs))
        bad_skip = sum(e["decoded_skip"] != self.sp.decode(r) for e, r in zip(resp["encode"], refs))
        print(f"[parity] gemma3 gguf vocabulary vs SentencePiece: {len(strings)} strings, "
              f"{sum(map(len, refs))} tokens; id mismatches {bad}, decode(skip_special) mismatches {bad_skip}",
              flush=True)
        self.assertEqual(bad, 0, tok_fixtures.first_mismatch(ours, refs, strings))
        self.assertEqual(bad_skip, 0)


if __name__ == "__main__":
    tlm_testing.main()
