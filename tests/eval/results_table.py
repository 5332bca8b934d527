"""Prints the AdaptEval results table (markdown) from the run directories of run_adapteval.sh."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/adapteval")
print("| data (first N) | answer NLL base | answer NLL after TLM | ROUGE-Lsum base | ROUGE-Lsum TLM | input ppl base -> adapted | selected | wall time TLM |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for ds in ("agriculture", "finance"):
    tlm_path = out / f"{ds}-tlm" / "summary.json"
    if not tlm_path.exists():
        continue
    t = json.loads(tlm_path.read_text())
    base_eval = out / f"{ds}-base" / "eval.json"
    b = json.loads(base_eval.read_text())["predictions"] if base_eval.exists() else {}
    print(f"| {ds} ({t['samples']}) | {t.get('answer_nll_base', float('nan')):.4f} | {t.get('answer_nll_adapted', float('nan')):.4f} "
          f"| {b.get('rouge_lsum', float('nan')):.4f} | {t.get('rouge_lsum', float('nan')):.4f} "
          f"| {t['input_ppl_base']:.2f} -> {t['input_ppl_adapted']:.2f} | {100 * t['selected_fraction']:.1f}% "
          f"| {t['wall_seconds'] / 60:.1f} min |")
f = out / "forgetting.json"
if f.exists():
    r = json.loads(f.read_text())["answer_nll"]
    print(f"\nForgetting: answer NLL on alpaca_general (first {r['records']}, {r['answer_tokens']} tokens): "
          f"base {r['answer_nll_base']:.4f}, with the agriculture adapter {r['answer_nll_adapted']:.4f} "
          f"({r['answer_nll_adapted'] - r['answer_nll_base']:+.4f}).")
