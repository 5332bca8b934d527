"""The tlm command line on bad input: every error names the file and line (or the flag),
exits non-zero, and a bad record is skipped with its line and reason instead of stopping
the job. Uses the tiny model made by tiny_llama.py (no network, no shared data)."""
import json
import subprocess
import unittest

from tiny_llama import make_tiny_llama
from tlm_testing import SOURCE_DIR, binary, tmpdir
import tlm_testing


def tlm(*args):
    proc = subprocess.run([binary("launch/tlm"), *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


class CliErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tmpdir("tlm-cli-")
        cls.model = cls.work / "model"
        make_tiny_llama(cls.model)

    def test_usage_and_unknown_command(self):
        code, out = tlm()
        self.assertEqual(code, 2)
        self.assertIn("usage: tlm <command>", out)
        code, out = tlm("frobnicate")
        self.assertEqual(code, 2)
        self.assertIn("unknown command 'frobnicate'", out)
        for cmd in ("adapt", "generate", "score", "eval", "serve"):
            code, out = tlm(cmd, "--help")
            self.assertEqual(code, 0, out)
            self.assertIn("--model", out)

    def test_layout_recipes_parse_and_layout_errors_name_the_numbers(self):
        # Every recipe in configs/ is valid; the layout ones stop at the launcher check.
        for recipe in sorted((SOURCE_DIR / "configs").glob("*.yaml")):
            if recipe.name == "serve.yaml":  # tlm serve's recipe; an out-of-range port stops it before loading
                code, out = tlm("serve", "--config", recipe, "--model", self.model, "--port", 99999)
                self.assertIn("'serve.port' must be in [0, 65535] (0 = any free port), got 99999", out)
                continue
            code, out = tlm("adapt", "--config", recipe, "--model", self.model, "--data", "/nonexistent.jsonl",
                            "--backend", "single")
            self.assertNotEqual(code, 0)
            self.assertNotIn("unknown key", out, recipe)
            self.assertNotIn("wrong type", out, recipe)
        code, out = tlm("adapt", "--model", self.model, "--data", "/nonexistent.jsonl", "--tp-size", 2, "--dp-size", 3)
        self.assertNotEqual(code, 0)
        self.assertIn("--tp-size 2 x --dp-size 3 = 6 ranks, but this process was not started by mpirun", out)
        data = self.work / "one.jsonl"
        data.write_text(json.dumps({"instruction": "How do legumes fix nitrogen?"}) + "\n")
        code, out = tlm("score", "--model", self.model, "--data", data, "--dp-size", 2)
        self.assertIn("only tlm adapt splits its work over data-parallel replicas", out)
        code, out = tlm("adapt", "--model", self.model, "--data", "/nonexistent.jsonl", "--backend", "gloo")
        self.assertIn("parallel.backend must be auto, single, mpi or nccl", out)
        code, out = tlm("adapt", "--model", self.model, "--data", "/nonexistent.jsonl", "--method", "sgd")
        self.assertNotEqual(code, 0)
        self.assertIn("command line --method: method must be tlm, tent, eata, come or sytta, got 'sgd'", out)
        code, out = tlm("adapt", "--model", self.model, "--data", "/nonexistent.jsonl", "--method", "tent",
                        "--positions", "answer")
        self.assertIn("objective.positions must be prompt or generated, got 'answer'", out)
        code, out = tlm("adapt", "--model", self.model, "--data", "/nonexistent.jsonl", "--device", "gpu")
        self.assertIn("device must be auto, cpu, cuda or cuda:N, got 'gpu'", out)

    def test_recipe_errors_name_file_line_or_flag(self):
        recipe = self.work / "bad.yaml"
        recipe.write_text("mode: online\noptim:\n  lrr: 1.0\n")
        code, out = tlm("adapt", "--config", recipe, "--model", self.model)
        self.assertNotEqual(code, 0)
        self.assertIn(f"{recipe}:3: unknown key 'optim.lrr'", out)
        recipe.write_text("mode: online\noptim:\n  lr: fast\n")
        code, out = tlm("adapt", "--config", recipe, "--model", self.model)
        self.assertIn(f"{recipe}:3: 'optim.lr' has the wrong type", out)
        code, out = tlm("adapt", "--model", self.model, "--threshold", "high")
        self.assertIn("command line --threshold: 'objective.threshold' has the wrong type", out)
        code, out = tlm("adapt", "--model", self.model, "--mode", "sideways", "--data", recipe)
        self.assertIn("mode must be online, offline or episodic", out)
        # Method, guard and test-hook settings name the flag.
        for args, message in [
                (["--method", "come", "--come-base", "sar"], "objective.come_base must be tent or eata, got 'sar'"),
                (["--method", "sytta", "--positions", "prompt"], "objective.positions must be generated"),
                (["--guard-probe-every", "2"], "guard.probe_every needs the probe set"),
                (["--guard-loss-average", "1.5"], "'guard.loss_average' must be in [0, 1), got 1.5"),
                (["--mode", "episodic", "--guard-reset-every", "3"], "an episodic job resets after every prompt"),
                (["--trainable", "bias"], "trainable 'bias' is not one of: lora, norm-affine"),
                (["--mode", "episodic", "--trainable", "norm-affine"], "an episodic job trains a fresh LoRA"),
                (["--scalenet", "net.safetensors"], "ScaleNet sets the step sizes of mode episodic"),
                (["--fisher-data", "ref.json"], "the Fisher regulariser is EATA's; method 'tlm'"),
                (["--method", "eata", "--fisher-data", "ref.json", "--fisher-samples", "0"],
                 "'objective.fisher_samples' must be in [1, "),
                (["--fault-inject", "rank=0,step=2,action=explode"], "action must be kill, stop, term or throw"),
                (["--fault-inject", "rank=zero,step=2,action=kill"], "rank must be an integer, got 'zero'")]:
            code, out = tlm("adapt", "--model", self.model, "--data", recipe, *args)
            self.assertNotEqual(code, 0, args)
            self.assertIn(message, out, args)
            self.assertIn("command line --", out, args)

    def test_weights_setting_is_checked(self):
        prompts = self.work / "one.txt"
        prompts.write_text("hello\n")
        code, out = tlm("generate", "--model", self.model, "--prompts-file", prompts, "--weights", "q8")
        self.assertEqual(code, 1, out)
        self.assertIn("--weights: weights must be fp32 or gguf, got 'q8'", out)
        code, out = tlm("generate", "--model", self.model, "--prompts-file", prompts, "--weights", "gguf")
        self.assertEqual(code, 1, out)
        self.assertIn(f"--weights gguf: {self.model}", out)
        self.assertIn("is not a GGUF file", out)
        recipe = self.work / "weights.yaml"
        recipe.write_text("mode: online\nweights: int4\n")
        code, out = tlm("adapt", "--config", recipe, "--model", self.model, "--data", prompts)
        self.assertEqual(code, 1, out)
        self.assertIn(f"{recipe}:2: weights must be fp32 or gguf, got 'int4'", out)

    def test_non_finite_numbers_duplicate_keys_and_no_op_settings_are_refused(self):
        # Issue 14: NaN and infinities in a recipe were accepted (an adapter full of NaN, updates
        # silently skipped); a repeated key silently kept its first value; lora.alpha 0 made the
        # adapter a no-op. Each is now an error naming the file and line, or the flag.
        recipe = self.work / "nonfinite.yaml"
        for key, section, value in [("lr", "optim", ".inf"), ("alpha", "lora", ".nan"),
                                    ("threshold", "objective", ".nan"), ("lambda", "objective", "-.inf")]:
            recipe.write_text(f"mode: online\n{section}:\n  {key}: {value}\n")
            code, out = tlm("adapt", "--config", recipe, "--model", self.model, "--data", recipe)
            self.assertNotEqual(code, 0, (key, value))
            self.assertIn(f"{recipe}:3: '{section}.{key}' must be a finite number", out)
        code, out = tlm("adapt", "--model", self.model, "--data", recipe, "--threshold", ".inf")
        self.assertNotEqual(code, 0)
        self.assertIn("command line --threshold: 'objective.threshold' must be a finite number", out)
        recipe.write_text("mode: online\noptim:\n  lr: 1.0e-4\n  lr: 5.0e-5\n")
        code, out = tlm("adapt", "--config", recipe, "--model", self.model, "--data", recipe)
        self.assertNotEqual(code, 0)
        self.assertIn(f"{recipe}:4: duplicate key 'optim.lr' (first at line 3)", out)
        code, out = tlm("adapt", "--model", self.model, "--data", recipe, "--lora-alpha", "0")
        self.assertNotEqual(code, 0)
        self.assertIn("command line --lora-alpha: 'lora.alpha' must be in (0, inf) (the scale is alpha / r; 0 makes", out)

    def test_out_of_range_numbers_a_config_folder_and_jsonl_named_txt_are_refused(self):
        # Issue 14: these were accepted (--max-samples -1 ran everything, --threads -5 ran 5x
        # slower, generate --max-new-tokens -1 answered nothing, a huge LoRA rank ended in a raw
        # LibTorch trace, --config DIR printed "basic_filebuf::underflow error", a JSONL file
        # named .txt was trained on as text, reference answers included).
        data = self.work / "range.jsonl"
        data.write_text(json.dumps({"instruction": "How do legumes fix nitrogen?", "output": "Rhizobia."}) + "\n")
        cases = [
            (["adapt", "--data", data, "--max-samples", -1], "command line --max-samples: 'stream.max_samples' must be in [0, "),
            (["adapt", "--data", data, "--threads", -5], "command line --threads: 'threads' must be in [0, 4096]"),
            (["adapt", "--data", data, "--cutoff-len", -5], "command line --cutoff-len: 'stream.cutoff_len' must be in [0, "),
            (["adapt", "--data", data, "--lora-rank", 99999999999], "command line --lora-rank: 'lora.rank' must be in [1, 65536]"),
            (["adapt", "--data", data, "--lora-dropout", 1], "'lora.dropout' must be in [0, 1), got 1"),
            (["adapt", "--data", data, "--top-p", 0], "'generation.top_p' must be in (0, 1]"),
            (["generate", "--prompt", "hi", "--max-new-tokens", -1],
             "command line --max-new-tokens: 'generation.max_new_tokens' must be in [1, "),
            (["generate", "--prompt", "hi", "--threads", -5], "command line --threads: 'threads' must be in [0, 4096]"),
            (["generate", "--prompts-file", data, "--max-samples", -1], "command line --max-samples: 'stream.max_samples'"),
            (["generate", "--prompt", "hi", "--cutoff-len", -5], "command line --cutoff-len: 'stream.cutoff_len'"),
            (["score", "--data", data, "--batch-size", 0], "command line --batch-size: 'eval.score_batch' must be in [1, "),
            (["adapt", "--config", self.work, "--data", data], f"{self.work}: is a directory; --config names a YAML recipe"),
        ]
        for args, message in cases:
            code, out = tlm(*args, "--model", self.model)
            self.assertEqual(code, 1, args)
            self.assertIn(message, out, args)
            self.assertNotIn("Exception raised from", out, args)  # no LibTorch trace
        recipe = self.work / "range.yaml"
        recipe.write_text("mode: online\nlora:\n  rank: 0\n")
        code, out = tlm("adapt", "--config", recipe, "--model", self.model, "--data", data)
        self.assertIn(f"{recipe}:3: 'lora.rank' must be in [1, 65536]", out)
        misnamed = self.work / "records.txt"
        misnamed.write_text(data.read_text() * 3)
        code, out = tlm("adapt", "--model", self.model, "--data", misnamed, "--output-dir", self.work / "txt-run")
        self.assertEqual(code, 1)
        self.assertIn(f"{misnamed}: named as text, but its lines are JSON objects (3 of the first non-empty ones)", out)
        # Told explicitly, the lines are text: the job runs on them.
        code, out = tlm("adapt", "--model", self.model, "--data", misnamed, "--data-format", "txt", "--generate", "false",
                        "--answer-nll", "false", "--output-dir", self.work / "txt-run")
        self.assertEqual(code, 0, out)

    def test_a_recipe_key_that_is_not_a_name_is_refused(self):
        # Found by fuzz.recipe (40 min outside CI): a YAML key that is a list or a mapping
        # (`? [a, b]`) escaped as yaml-cpp's TypedBadConversion, an uncaught exception (abort).
        data = self.work / "key.jsonl"
        data.write_text(json.dumps({"instruction": "How do legumes fix nitrogen?"}) + "\n")
        plain = self.work / "complex-key.yaml"
        plain.write_text("mode: online\n? [lora, rank]\n: 8\n")
        finding = SOURCE_DIR / "tests" / "launch" / "fuzz_findings" / "recipe-key-not-a-name.yaml"
        for recipe, line in [(plain, 2), (finding, None)]:
            code, out = tlm("adapt", "--config", recipe, "--model", self.model, "--data", data)
            self.assertEqual(code, 1, out)
            self.assertIn(f"{recipe}:{line if line else ''}", out)
            self.assertIn("a key must be a plain name", out)

    def test_score_and_eval_refuse_inputs_with_nothing_to_score(self):
        # Issue 14: both reported a mean over zero records (ce 0, ppl 1, ROUGE 0) and exited 0.
        empty, garbage, unlabeled = self.work / "empty.jsonl", self.work / "garbage.jsonl", self.work / "preds.jsonl"
        empty.write_text("")
        garbage.write_text("{not json\n[1, 2]\n")
        unlabeled.write_text(json.dumps({"prompt": "p", "predict": "an answer"}) + "\n")
        for data in (empty, garbage):
            code, out = tlm("score", "--model", self.model, "--data", data, "--chat-template", "chatml")
            self.assertNotEqual(code, 0, data)
            self.assertIn(f"{data}: no usable record to score", out)
        for preds in (empty, unlabeled):
            code, out = tlm("eval", "--predictions", preds)
            self.assertNotEqual(code, 0, preds)
            self.assertIn(f"{preds}: no prediction with a reference to score", out)

    def test_missing_model_and_data(self):
        code, out = tlm("score", "--model", self.work / "nope", "--data", self.work / "nope.jsonl")
        self.assertNotEqual(code, 0)
        self.assertIn("nope", out)
        code, out = tlm("score", "--model", self.work, "--data", self.work / "x.jsonl")
        self.assertNotEqual(code, 0)

    def test_bad_records_are_skipped_with_line_and_reason(self):
        data = self.work / "stream.jsonl"
        data.write_text("\n".join([
            json.dumps({"instruction": "How does crop rotation help the soil?"}),
            "{not json",
            json.dumps({"question": 5}),
            json.dumps({"prompt": "   "}),
            json.dumps(["a list"]),
            json.dumps({"text": "no known field"}),
            json.dumps({"prompt": "Why plant beans before wheat?"}),
        ]) + "\n")
        out_dir = self.work / "run"
        code, out = tlm("adapt", "--model", self.model, "--data", data, "--output-dir", out_dir,
                        "--chat-template", "chatml", "--max-new-tokens", 4, "--answer-nll", "false")
        self.assertEqual(code, 0, out)
        for line in (2, 3, 4, 5, 6):
            self.assertIn(f"{data}:{line}: skipped record", out)
        summary = json.loads((out_dir / "summary.json").read_text())
        self.assertEqual(summary["samples"], 2)
        self.assertEqual(summary["records_skipped"]["total"], 5)
        preds = [json.loads(l) for l in (out_dir / "predictions.jsonl").read_text().splitlines()]
        self.assertEqual([p["prompt"] for p in preds],
                         ["How does crop rotation help the soil?", "Why plant beans before wheat?"])
        steps = (out_dir / "metrics.jsonl").read_text().splitlines()
        self.assertEqual(len(steps), 2)


if __name__ == "__main__":
    tlm_testing.main()
