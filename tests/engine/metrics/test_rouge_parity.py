"""ROUGE-L / ROUGE-Lsum and Porter stemmer parity against rouge_score 0.1.2 and nltk.

Generates prediction/reference pairs (multi-line, punctuation-heavy, non-ASCII, numbers,
repeated words, empty lines, words that stem interestingly), scores them with
RougeScorer(['rougeL', 'rougeLsum'], use_stemmer=True) and with tlm's metrics_probe, and
requires P, R and F to agree within 1e-6 on every pair. Also compares the tokenizer output
on every text and the stem of several thousand words with nltk's PorterStemmer() (the
object rouge_score's DefaultTokenizer creates).
"""
import json
import random
import unittest

from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize, tokenizers

import tlm_testing as T
import tlm_testing

WORDS = """
the a an of to and in is was for on that with as by at from it this be are or not have
has had were which their they them will would can could should may might must shall do
does did done doing make makes made making take takes took taken taking
running runner runs ran run happiness happy happier happiest happily unhappiness
generalization generalizations generalize generalized general generally generalizing
caresses caress cats cat ponies pony ties tie sky skies die dying dies died lie lying
tie tying news innings inning outings outing cannings canning howe proceed exceed succeed
feed agreed plastered bled motoring sing conflated troubled sized hopping tanned falling
hissing fizzed failing filing relational conditional rational valenci hesitanci digitizer
conformabli radicalli differentli vileli analogousli vietnamization predication operator
feudalism decisiveness hopefulness callousness formaliti sensitiviti sensibiliti
triplicate formative formalize electriciti electrical hopeful goodness revival allowance
inference airliner gyroscopic adjustable defensible irritant replacement adjustment
dependent adoption homologou communism activate angulariti homologous effective bowdlerize
probate rate cease controll roll agriculture cassava farmers harvesting harvested soil
soils irrigation irrigated fertilizer fertilizers fertilization yields yielding crops
cropping plant plants planted planting maturity matures mature maturing propagation
propagated cuttings stem stems stemming leaves leaf yellowing yellowed beetles beetle
defoliation geography geographic geographical geologist geology theology archaeology
analogy analogies biology biological finance financial financially investment investing
investor investors market markets marketing medicine medical medically patient patients
symptoms symptom diagnosis diagnoses treatment treatments treating treated hospital
hospitals doctor doctors question questions answer answers answered answering responses
response responding instruction instructions input output learning learned learner
learners model models modeling modelling adaptation adapt adapted adaptive test testing
tested tests time timing perplexity entropy minimization minimize minimized minimizing
sample samples sampling sampled reasoning reasoned reason reasons logic logical logically
mathematics mathematical number numbers numbered counting counted count counts total
totally apples oranges bananas dollars cents hours minutes seconds days weeks years
flies spied spy fly try tries tried enjoy enjoyment enjoying agreement agreements
conditionally nationalization nationalism nationalist rationalization organization
organizational organizations organize organized organizer operational operations
operating operated syzygy yyyy toy toys boy boys by my yoyo ayyy bayy sayyy yelling
bowdlerized electricity electrician hopelessly hopelessness carelessness usefulness
fruitfulness thankfully beautifully successfully successful success succeeding
exceeding proceeding proceedings tying untying lying belying dying undying
ability abilities possibility possibilities sensibility sensitivity activity activities
relativity relatively relative relatives relation relations relationship relationships
""".split()

TORTURE = """
a aa aaa aaaa i is as us yes ye y yy yyy yyyy yyyyy yayy yeye eyes eye ayes ays
sses ies ss s eed ied ed ing ings at bl iz ational tional enci anci izer bli abli alli
entli eli ousli ization ation ator alism iveness fulness ousness aliti iviti biliti fulli
logi icate ative alize iciti ical ful ness al ance ence er ic able ible ant ement ment
ent ion sion tion ou ism ate iti ous ive ize e ll
skies skiing skied ski spies spied spying ties tied ties pies pied lies lied dies died
hies vies vied cries cried fries fried dries dried
generalizations internationalization internationalizations counterrevolutionaries
antidisestablishmentarianism floccinaucinihilipilification pneumonoultramicroscopic
hopping hoping hoped hopped filing filling filed filled failing failed fizzing fizzed
controlling controlled rolling rolled telling told falling fallen calling called
agreed disagreed feed feeds needed seeded weeded speeded bleed bleeding breed breeding
conflating conflated troubling troubled sizing sized rationalize rationalizing
caring cared care cares scaring scared bating bated bat bats wining wined
happily happiness happy happier happiest sly slyly shy shyly dry drying dryly
enjoyable enjoyably employ employment employed annoy annoyance annoyed
geology geologi theologi archaeologi apologi apology analogy ecology etymologi
abli ably fully fulli hopefulli carefulli doubtfulli
alli radically radicalli basically basicalli critically criticalli
1990s 2nd 3rd 4th abc123s x86 a1b2c3d4 123ing 456ed 0000s ye2s by1y
""".split()

NON_ASCII = [
    "café", "naïve", "über", "straße", "İstanbul", "\u212aelvin", "\u212a", "İ", "Ωmega",
    "中文", "日本語のテキスト", "😀", "emoji😀word", "résumé", "fiancée", "\ufb01nance",
    "Ǆemal", "ΣΑΣ", "ｆｕｌｌｗｉｄｔｈ", "x\u0307y", "a\u00a0b", "line\u2028sep", "١٢٣",
    "Ａ１", "ﬀ", "Ⅻ", "²³", "ǅ", "Ĳssel", "MÜNCHEN", "ÀÉÎÕÜ", "ﬃx", "dž", "ǈ", "ﾊﾝｶｸ",
]

PUNCT = ["", ".", ",", "!", "?", ";", ":", "...", "'s", "n't", "-", "—", "(", ")", "\"",
         "[", "]", "/", "&", "%", "$", "#", "@", "*", "''", "``", "–", "…", "·", "\t"]

SEPARATORS = [" ", " ", " ", "  ", ", ", ". ", "; ", "\t", " - ", "/", "'", " (", ") ",
              "... ", "! ", "? ", " \u00a0", "\r"]


def random_word(rng):
    """A pseudo-word: syllables plus a suffix that the stemmer's rules look at."""
    consonants = "bcdfghjklmnpqrstvwxyz"
    vowels = "aeiouy"
    suffixes = ["", "s", "es", "ies", "sses", "ss", "ed", "ied", "eed", "ing", "ly", "y",
                "ational", "tional", "enci", "anci", "izer", "bli", "alli", "entli", "eli",
                "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness",
                "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative",
                "alize", "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic",
                "able", "ible", "ant", "ement", "ment", "ent", "ion", "sion", "tion", "ou",
                "ism", "ate", "iti", "ous", "ive", "ize", "e", "ll", "at", "bl", "iz",
                "ingly", "edly", "ments", "ations", "izations", "fulnesses"]
    parts = []
    for _ in range(rng.randint(0, 4)):
        parts.append(rng.choice(consonants) * rng.choice([1, 1, 1, 2]))
        parts.append(rng.choice(vowels) * rng.choice([1, 1, 2]))
    if rng.random() < 0.5:
        parts.append(rng.choice(consonants) * rng.choice([1, 2]))
    return "".join(parts) + rng.choice(suffixes)


def random_token(rng, previous):
    r = rng.random()
    if r < 0.55:
        w = rng.choice(WORDS)
    elif r < 0.62:
        w = random_word(rng)
    elif r < 0.70:
        w = rng.choice([str(rng.randint(0, 100000)), f"{rng.randint(0, 999)},{rng.randint(0, 999):03d}",
                        f"{rng.uniform(-100, 100):.2f}", f"-{rng.randint(1, 50)}",
                        f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d}", f"{rng.randint(1, 99)}%",
                        f"${rng.randint(1, 999)}", f"{rng.randint(1, 9)}th", "1990s"])
    elif r < 0.78:
        w = rng.choice(NON_ASCII)
    elif r < 0.86 and previous:
        w = previous
    else:
        w = rng.choice(WORDS) + rng.choice(PUNCT) + rng.choice(WORDS)
    case = rng.random()
    if case < 0.1:
        w = w.upper()
    elif case < 0.25:
        w = w.capitalize()
    if rng.random() < 0.25:
        w = rng.choice(PUNCT) + w + rng.choice(PUNCT)
    return w


def random_line(rng):
    r = rng.random()
    if r < 0.08:
        return ""
    if r < 0.12:
        return rng.choice(["   ", "\t", "...", "!!!", "—", "\r", " . ", "****", "😀😀"])
    tokens = []
    for _ in range(rng.randint(1, 22)):
        tokens.append(random_token(rng, tokens[-1] if tokens else None))
    out = tokens[0]
    for t in tokens[1:]:
        out += rng.choice(SEPARATORS) + t
    return out


def random_text(rng):
    lines = [random_line(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 4, 6]))]
    text = "\n".join(lines)
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n")
    if rng.random() < 0.1:
        text = "\n" + text + "\n\n"
    return text


def perturb(rng, text):
    """A prediction close to the reference: words dropped, swapped, repeated, re-broken."""
    words = text.replace("\n", " \n ").split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.12:
            continue
        if r < 0.2:
            out.append(random_token(rng, w))
        elif r < 0.25:
            out.extend([w, w])
        else:
            out.append(w)
        if rng.random() < 0.05:
            out.append("\n")
    if len(out) > 3 and rng.random() < 0.5:
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    return " ".join(out)


EDGE_PAIRS = [
    ("", ""), ("", "a"), ("a", ""), ("\n\n", "x"), ("x", "\n\n"), ("...", "..."),
    ("the cat", "the cat"), ("!!!", "word"), ("   ", "   "), ("\n", "\n"),
    ("İ", "i"), ("\u212aelvin", "kelvin"), ("Kelvin", "\u212aELVIN"),
    ("a b c d e", "e d c b a"), ("the the the", "the"), ("the", "the the the"),
    ("a b\nb a", "b a\na b"), ("x y x y x", "y x y x y\nx x"),
    ("running happiness generalization", "ran happy general"),
    ("caresses ponies sky", "caress pony skies"), ("中文 text", "text 中文"),
    ("one\n\ntwo\n\nthree", "three two one"), ("1,000 dollars", "1 000 dollars"),
    ("a\rb", "a b"), ("é", "e"), ("\u00a0", " "),
]


class RougeParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = random.Random(20250501)
        pairs = list(EDGE_PAIRS)
        while len(pairs) < 640:
            ref = random_text(rng)
            r = rng.random()
            if r < 0.45:
                pred = perturb(rng, ref)
            elif r < 0.55:
                pred = ref
            elif r < 0.6:
                pred = rng.choice(["", " ", "\n", "...", ref.upper(), ref.lower()])
            else:
                pred = random_text(rng)
            pairs.append((ref, pred))
        cls.pairs = pairs
        cls.texts = [t for p in pairs for t in p]

        words = set(TORTURE) | set(WORDS)
        for t in cls.texts:
            words.update(tokenize.tokenize(t, None))
        while len(words) < 5000:
            words.add(random_word(rng))
        cls.words = sorted(words)

        work = T.tmpdir("tlm-rouge-")
        req = {"pairs": [{"reference": r, "prediction": p} for r, p in pairs],
               "words": cls.words, "texts": cls.texts}
        T.write_json(work / "in.json", req)
        T.run([T.binary("tests/engine/metrics/metrics_probe"), work / "in.json", work / "out.json"])
        cls.ours = json.loads((work / "out.json").read_text())

    def test_stemmer(self):
        stemmer = porter.PorterStemmer()  # what rouge_score's DefaultTokenizer builds
        ref = [stemmer.stem(w) for w in self.words]
        bad = [(w, o, r) for w, o, r in zip(self.words, self.ours["stems"], ref) if o != r]
        print(f"[parity] porter stems: {len(self.words) - len(bad)} of {len(self.words)} words equal",
              flush=True)
        self.assertEqual(bad[:20], [], f"{len(bad)} stems differ (word, ours, nltk)")

    def test_tokens(self):
        tok = tokenizers.DefaultTokenizer(use_stemmer=True)
        bad = [(t, o, tok.tokenize(t)) for t, o in zip(self.texts, self.ours["tokens"])
               if o != tok.tokenize(t)]
        print(f"[parity] tokenizer: {len(self.texts) - len(bad)} of {len(self.texts)} texts equal",
              flush=True)
        self.assertEqual(bad[:5], [], f"{len(bad)} tokenizations differ")

    def test_rouge(self):
        scorer = rouge_scorer.RougeScorer(["rougeL", "rougeLsum"], use_stemmer=True)
        ref = {"rougeL": [], "rougeLsum": []}
        for r, p in self.pairs:
            s = scorer.score(r, p)
            for k in ref:
                ref[k].append([s[k].precision, s[k].recall, s[k].fmeasure])
        multi = sum(1 for r, p in self.pairs if "\n" in r.strip("\n") or "\n" in p.strip("\n"))
        differ = sum(1 for a, b in zip(ref["rougeL"], ref["rougeLsum"]) if a[2] != b[2])
        print(f"[parity] {len(self.pairs)} pairs, {multi} multi-line, {differ} where rougeLsum F "
              f"differs from rougeL F", flush=True)
        for k in ("rougeLsum", "rougeL"):
            ours = self.ours[k]
            exact = sum(1 for o, r in zip(ours, ref[k]) if o == r)
            nonzero = sum(1 for r in ref[k] if r[2] > 0)
            print(f"[parity] {k}: {exact} of {len(ours)} pairs bit-identical (P, R, F); "
                  f"{nonzero} with F > 0", flush=True)
            for i, name in enumerate(("precision", "recall", "fmeasure")):
                T.assert_close(self, [o[i] for o in ours], [r[i] for r in ref[k]], atol=1e-6,
                               what=f"{k} {name}")
            corpus_ours = sum(o[2] for o in ours) / len(ours)
            corpus_ref = sum(r[2] for r in ref[k]) / len(ref[k])
            print(f"[parity] {k} corpus F: ours {corpus_ours:.9f} rouge_score {corpus_ref:.9f}",
                  flush=True)


if __name__ == "__main__":
    tlm_testing.main()
