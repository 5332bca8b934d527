"""GSM8K answer extraction parity with Python's re / float / round semantics.

tlm implements the official TLM rule (see engine/metrics/exact_match.h) with PCRE2; this
test states the same rule with Python's str regexes (Unicode \\s and \\d) and compares the
extracted answers on generated completions that mix ASCII and Unicode digits, Unicode
whitespace, signs, commas, dots and trailing junk.
"""
import json
import random
import re
import unicodedata
import unittest

import tlm_testing as T
import tlm_testing


def reference_answer(text):
    """The documented rule, step by step, in Python."""
    tokens = [t for t in re.split(r"\s+", text) if re.search(r"\d", t)]
    if not tokens:
        return None
    candidate = re.sub(r"[^\d,.\-]", "", tokens[-1]).replace(",", "").strip(".")
    if candidate.count(".") > 1 or candidate.count("-") > 1:
        return None
    if not re.fullmatch(r"-?\d*\.?\d*", candidate):
        return None
    try:
        return str(round(float(candidate)))
    except (ValueError, OverflowError):
        return None


def reference_label(text):
    if "####" in text:
        text = text[text.rindex("####") + 4:]
    return reference_answer(text)


UNICODE_DIGIT_ZEROS = sorted({ord(c) - unicodedata.decimal(c) for c in map(chr, range(0x110000))
                              if unicodedata.category(c) == "Nd"})
SPACES = [c for c in map(chr, range(0x110000)) if c.isspace()]
NOT_SPACES = ["\u200b", "\u180e", "\ufeff", "\u2060"]
WORDS = ["the", "answer", "is", "total", "apples", "so", "she", "has", "left", "=", "$", "%",
         "####", "step", "dollars", "km/h", "x", "(", ")", "<<", ">>", "5-year-old", "1e5",
         "½", "²", "Ⅻ", "一", "answer:", "**", "\\boxed{", "}"]


def random_number(rng):
    digits_of = lambda: "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 5)))
    s = digits_of()
    r = rng.random()
    if r < 0.2:
        s = f"{rng.randint(1, 999)},{rng.randint(0, 999):03d}"
    elif r < 0.4:
        s = s + "." + digits_of()
    elif r < 0.45:
        s = s + ".5"
    elif r < 0.5:
        s = "." + s
    if rng.random() < 0.25:
        s = "-" + s
    if rng.random() < 0.2:
        zero = rng.choice(UNICODE_DIGIT_ZEROS)
        s = "".join(chr(zero + int(c)) if c.isdigit() and c in "0123456789" else c for c in s)
    if rng.random() < 0.2:
        s = s + rng.choice([".", "..", "-", "%", ")", "th", "-year", ",", "!", "?", "/2"])
    if rng.random() < 0.1:
        s = rng.choice(["$", "(", "=", "-", "x", "#"]) + s
    return s


def random_completion(rng):
    parts = []
    for _ in range(rng.randint(0, 14)):
        parts.append(random_number(rng) if rng.random() < 0.35 else rng.choice(WORDS))
    out = ""
    for p in parts:
        r = rng.random()
        if r < 0.7:
            sep = " "
        elif r < 0.9:
            sep = rng.choice(SPACES)
        else:
            sep = rng.choice(NOT_SPACES)
        out += sep + p
    return out


class ExactMatchParity(unittest.TestCase):
    def test_extraction(self):
        rng = random.Random(8)
        cases = []
        for _ in range(3000):
            pred = random_completion(rng)
            ref = rng.choice(["", "Reasoning <<2*3=6>>6.\n#### ", "#### "]) + random_number(rng)
            cases.append({"prediction": pred, "reference": ref})
        # Every Unicode digit, alone and inside a number.
        for zero in UNICODE_DIGIT_ZEROS:
            for d in range(10):
                cases.append({"prediction": f"answer {chr(zero + d)}{chr(zero + 9 - d)}",
                              "reference": f"#### {d}{9 - d}"})
        work = T.tmpdir("tlm-em-")
        T.write_json(work / "in.json", {"gsm8k": cases})
        T.run([T.binary("tests/engine/metrics/metrics_probe"), work / "in.json", work / "out.json"])
        ours = json.loads((work / "out.json").read_text())["gsm8k"]
        self.assertEqual(len(ours), len(cases))
        bad = []
        n_answers = n_matches = 0
        for case, got in zip(cases, ours):
            pred = reference_answer(case["prediction"])
            ref = reference_label(case["reference"])
            match = pred is not None and ref is not None and pred == ref
            n_answers += pred is not None
            n_matches += match
            if (got["prediction"], got["reference"], got["match"]) != (pred, ref, match):
                bad.append((case, got, (pred, ref, match)))
        print(f"[parity] gsm8k extraction: {len(cases) - len(bad)} of {len(cases)} cases equal "
              f"({n_answers} with an answer, {n_matches} matches)", flush=True)
        self.assertEqual(bad[:5], [], f"{len(bad)} cases differ")


if __name__ == "__main__":
    tlm_testing.main()
