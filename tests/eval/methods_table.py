"""Prints the methods table (markdown) from the run directories of compare_methods.sh."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/methods")
METHODS = ["tlm", "tlm-noselect", "tent", "eata", "come", "sytta", "norm-affine", "episodic", "episodic-scalenet"]


def fmt(x, spec=".4f"):
    return "n/a" if x is None else format(x, spec)


def forgetting(name):
    f = out / f"forgetting-{name}.json"
    if not f.exists():
        return None
    r = json.loads(f.read_text())["answer_nll"]
    return r["answer_nll_adapted"] - r["answer_nll_base"]


print("| data | method | answer NLL | ROUGE-Lsum | input ppl (after adapting) | selected | wall time | forgetting (alpaca answer NLL change) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for ds in ("agriculture", "finance"):
    rows = []
    base_nll = base_ppl = None
    for name in METHODS:
        p = out / f"{ds}-{name}" / "summary.json"
        if not p.exists():
            continue
        s = json.loads(p.read_text())
        base_nll = s.get("answer_nll_base", base_nll)
        base_ppl = s.get("input_ppl_base")
        rows.append((name, s.get("answer_nll_adapted"), s.get("rouge_lsum"), s.get("input_ppl_adapted"),
                     100 * s.get("selected_fraction", 0.0),
                     s.get("wall_seconds", 0.0), forgetting(name) if ds == "agriculture" else None, s.get("samples")))
    base_eval = out / f"{ds}-base" / "eval.json"
    if base_eval.exists():
        b = json.loads(base_eval.read_text())["predictions"]
        secs = out / f"{ds}-base" / "seconds"
        wall = float(secs.read_text()) if secs.exists() else None
        print(f"| {ds} | base | {fmt(base_nll)} | {fmt(b.get('rouge_lsum'))} | {fmt(base_ppl, '.1f')} | - | "
              f"{fmt(wall / 60 if wall else None, '.1f')} min | 0 |")
    for name, nll, rouge, ppl, sel, wall, forget, n in rows:
        if ds != "agriculture":
            forget_s = "-"
        elif name.startswith("episodic"):
            forget_s = "0 (no adapter kept)"
        else:
            forget_s = fmt(forget, "+.4f")
        print(f"| {ds} ({n}) | {name} | {fmt(nll)} | {fmt(rouge)} | {fmt(ppl, '.1f')} | {sel:.0f}% | "
              f"{wall / 60:.1f} min | {forget_s} |")
