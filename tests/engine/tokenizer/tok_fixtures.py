"""Shared pieces of the tokenizer parity tests: the probe driver, the test-string
generator, and tokenizers trained at test time (byte-level BPE, SentencePiece BPE)."""
import json
import os
import pathlib
import random
import sys
import unicodedata

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "pylib"))
import tlm_testing  # noqa: E402

PROBE = "tests/engine/tokenizer/tokenizer_probe"

# Llama-3's pre-tokenizer regex, as the brief and Llama-3's tokenizer.json give it.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def probe(request, workdir):
    """Runs tokenizer_probe on one request dict and returns the response dict."""
    workdir = pathlib.Path(workdir)
    req = workdir / "probe_request.json"
    resp = workdir / "probe_response.json"
    tlm_testing.write_json(req, request)
    tlm_testing.run([tlm_testing.binary(PROBE), req, resp])
    return json.loads(resp.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------
# Test strings
# ---------------------------------------------------------------------------------------

WORDS = ("the of and to in is that it was for on are with as be at by this had not but "
         "from have they you were which one all we can her has there been if more when will "
         "would who so no time people year way day man thing woman life child world school "
         "state family student group country problem hand part place case week company "
         "system program question work government number night point home water room "
         "mother area money story fact month lot right study book eye job word business "
         "issue side kind head house service friend father power hour game line end member "
         "law car city community name president team minute idea kid body information back "
         "parent face others level office door health person art war history party result "
         "change morning reason research girl guy moment air teacher force education "
         "Tokenization Transformer GPU PyTorch naïve café résumé Zürich São façade").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "’s"]
CODE_SNIPPETS = [
    "def f(x):\n    return x ** 2 + 1\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "#include <vector>\nstd::vector<int> v{1,2,3};\n",
    "x = lambda a, b: a if a > b else b  # comment\n",
    "<div class=\"box\"><span>Hi &amp; bye</span></div>",
    "$ ls -la /usr/local/bin | grep -v '^d' > out.txt 2>&1",
    "    \t  indented_with_mixed\t\twhitespace()  \n\n",
    "fn main() { println!(\"{}\", 42u64.pow(2)); }",
    "a=b+c*d/e-f%g^h|i&j~k<<2>>1",
    "@decorator\nclass Foo(Bar, metaclass=Meta):\n    pass\r\n",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🏳️‍🌈", "🇯🇵", "🇺🇸", "#️⃣", "❤️", "🧑‍🤝‍🧑",
         "👁️‍🗨️", "🐈‍⬛", "✌🏻", "🤷‍♂️", "😶‍🌫️", "🫠", "🦀", "☕", "⚽️", "🎉🎉🎉"]
CJK = ["東京は日本の首都です。", "我爱自然语言处理", "こんにちは、世界！", "한국어 텍스트입니다",
       "カタカナとひらがな", "中文，标点。符号！", "漢字かな交じり文", "ㄅㄆㄇ", "汉字123数字"]
ACCENTED = ["café", "cafe\u0301", "naïve", "Ångström", "Straße", "İstanbul ıi", "ﬁnance",
            "Tiếng Việt có dấu", "Ελληνικά γράμματα", "Русский текст", "العربية", "עברית",
            "हिन्दी भाषा", "ภาษาไทย", "Ꭰ Cherokee", "ǅemal", "ᾼ", "x\u0308\u0323y"]
WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0",
              "\u3000", "\u2003", "\u0085", "\x0b", "\x0c", "\u2028", "\u200b", "\u180e",
              " \t \n", "\n   \n"]
NUMBERS = ["0", "7", "42", "123", "1234", "12345", "1234567890", "3.14159", "-0.5", "1e-9",
           "1,234,567", "2024-01-15", "12:30:45", "+1 (555) 123-4567", "0xDEADBEEF", "١٢٣",
           "٣.١٤", "①②③", "Ⅻ", "½", "१२३", "99%", "$19.99", "€5", "10^6"]


def special_strings(specials):
    """Strings with the tokenizer's special tokens embedded in text."""
    out = []
    for s in specials:
        out += [s, f"x{s}y", f" {s} ", f"{s}{s}", f"a {s}\nb", f"{s[:-1]}", f"{s[1:]}",
                f"<{s}>", f"hello{s}world  ", f"\n{s}\n", f"{s}user\nHi there!{specials[-1]}"]
    for a in specials:
        for b in specials[:3]:
            out.append(f"{a}text {b} more")
    return out


def assigned_chars(rng, n, lo, hi):
    """`n` random code points in [lo, hi) that Unicode 14 (Python 3.11) assigns."""
    out = []
    while len(out) < n:
        c = rng.randrange(lo, hi)
        if 0xD800 <= c < 0xE000:
            continue
        if unicodedata.category(chr(c)) == "Cn":
            continue
        out.append(chr(c))
    return out


def generate_strings(seed, specials, count=2200):
    """At least `count` strings of every kind the tokenizers must handle."""
    rng = random.Random(seed)
    ws = lambda: rng.choice(WHITESPACE)  # noqa: E731
    out = ["", " ", "a", "\n", "  leading", "trailing  ", "double  space", "tab\there"]
    out += [chr(c) for c in range(32, 127)]
    out += special_strings(specials)
    kinds = ["prose", "code", "numbers", "whitespace", "emoji", "cjk", "accents", "mixed",
             "random_bmp", "random_any", "specials", "long"]
    i = 0
    while len(out) < count:
        kind = kinds[i % len(kinds)]
        i += 1
        if kind == "prose":
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 25))]
            for j in range(len(words)):
                r = rng.random()
                if r < 0.1:
                    words[j] += rng.choice(CONTRACTIONS)
                elif r < 0.2:
                    words[j] += rng.choice(".,;:!?")
                elif r < 0.25:
                    words[j] = words[j].upper()
                elif r < 0.3:
                    words[j] = words[j].capitalize()
            s = " ".join(words)
        elif kind == "code":
            s = "".join(rng.choice(CODE_SNIPPETS) for _ in range(rng.randint(1, 3)))
        elif kind == "numbers":
            s = " ".join(rng.choice(NUMBERS + [str(rng.randint(0, 10 ** rng.randint(1, 15)))])
                         for _ in range(rng.randint(1, 6)))
        elif kind == "whitespace":
            parts = []
            for _ in range(rng.randint(1, 8)):
                parts.append(ws() * rng.randint(1, 4))
                if rng.random() < 0.6:
                    parts.append(rng.choice(WORDS))
            s = "".join(parts)
        elif kind == "emoji":
            s = ""
            for _ in range(rng.randint(1, 6)):
                s += rng.choice(EMOJI) + (rng.choice(["", " ", "a", "1"]))
        elif kind == "cjk":
            s = rng.choice(CJK) + rng.choice(["", " ", "abc", "\n"]) + rng.choice(CJK)
        elif kind == "accents":
            s = " ".join(rng.choice(ACCENTED) for _ in range(rng.randint(1, 4)))
        elif kind == "mixed":
            pool = WORDS + EMOJI + CJK + ACCENTED + NUMBERS + WHITESPACE + CONTRACTIONS
            s = "".join(rng.choice(pool) + rng.choice(["", " ", "  ", "\n"])
                        for _ in range(rng.randint(2, 10)))
        elif kind == "random_bmp":
            chars = assigned_chars(rng, rng.randint(1, 12), 0x20, 0x10000)
            s = "".join(c + (rng.choice(["", " ", "a", "1", "\n"]) if rng.random() < 0.3 else "")
                        for c in chars)
        elif kind == "random_any":
            chars = assigned_chars(rng, rng.randint(1, 8), 0x80, 0x30000)
            s = "".join(chars)
        elif kind == "specials":
            s = rng.choice(WORDS) + rng.choice(specials) + ws() + rng.choice(WORDS)
        else:  # long
            s = " ".join(rng.choice(WORDS + NUMBERS + EMOJI) for _ in range(rng.randint(300, 700)))
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------
# Tokenizers trained at test time
# ---------------------------------------------------------------------------------------

def training_corpus(seed, lines=3000):
    rng = random.Random(seed)
    corpus = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.6:
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 20))]
            line = " ".join(w + (rng.choice(CONTRACTIONS) if rng.random() < 0.08 else "")
                            for w in words) + rng.choice([".", "!", "?", ""])
        elif kind < 0.75:
            line = rng.choice(CODE_SNIPPETS)
        elif kind < 0.85:
            line = " ".join(rng.choice(NUMBERS) for _ in range(rng.randint(1, 5)))
        else:
            line = " ".join(rng.choice(CJK + ACCENTED + EMOJI) for _ in range(rng.randint(1, 4)))
        corpus.append(line)
    return corpus


def train_byte_level_bpe(directory, corpus, special_tokens, vocab_size=3000,
                         tokenizer_config=None, add_bos_template=None):
    """Trains a Llama-3-style byte-level BPE tokenizer.json into `directory`.

    Pre-tokenizer: Split(LLAMA3_SPLIT, Isolated) + ByteLevel(use_regex=False); decoder
    ByteLevel; `ignore_merges` on, as Llama-3 sets it. `add_bos_template` (a special token)
    gives a TemplateProcessing post-processor that prepends it.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    if add_bos_template:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{add_bos_template} $A", pair=f"{add_bos_template} $A {add_bos_template} $B",
            special_tokens=[(add_bos_template, tok.token_to_id(add_bos_template))])
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    if tokenizer_config is not None:
        tlm_testing.write_json(directory / "tokenizer_config.json", tokenizer_config)
    return tok


def train_sentencepiece(directory, corpus, vocab_size=800, tokenizer_config=None,
                        user_defined_symbols=()):
    """Trains a Llama-style SentencePiece BPE model (byte fallback, digits split, identity
    normalization, whitespace kept) and writes tokenizer.model (+ tokenizer_config.json)."""
    import sentencepiece as spm

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    corpus_file = directory / "corpus.txt"
    corpus_file.write_text("\n".join(corpus), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus_file), model_prefix=str(directory / "sp"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, allow_whitespace_only_pieces=True,
        user_defined_symbols=list(user_defined_symbols), minloglevel=2, num_threads=2)
    (directory / "sp.model").rename(directory / "tokenizer.model")
    (directory / "sp.vocab").unlink()
    corpus_file.unlink()
    if tokenizer_config is not None:
        tlm_testing.write_json(directory / "tokenizer_config.json", tokenizer_config)
    return directory / "tokenizer.model"


def first_mismatch(ours, refs, inputs):
    """A readable description of the first differing encoding, or None."""
    for i, (a, b) in enumerate(zip(ours, refs)):
        if a != b:
            return f"string {i} {inputs[i]!r}: ours {a} vs reference {b}"
    return None


def write_gguf_vocab(path, model, tokens, token_types, merges=None, scores=None, pre=None,
                     bos=None, eos=None, unk=None, pad=None, add_bos=None, chat_template=None):
    """Writes a minimal llama-architecture GGUF (one tiny tensor) carrying a tokenizer, the
    way llama.cpp's converter stores it, so HF can load it with gguf_file=."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(4)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    if merges is not None:
        w.add_token_merges(merges)
    if scores is not None:
        w.add_token_scores(scores)
    for value, setter in ((bos, w.add_bos_token_id), (eos, w.add_eos_token_id),
                          (unk, w.add_unk_token_id), (pad, w.add_pad_token_id)):
        if value is not None:
            setter(value)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
