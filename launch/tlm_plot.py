"""tlm-ckpt plot: one picture of an adaptation job, from a run folder (its metrics.jsonl and,
when present, guards.jsonl) or from checkpoints (a step-N.h5 file, or the newest one of a
checkpoint folder: its /stats datasets, one value per optimiser step).

Four panels against the optimiser step (the prompts consumed on the top axis): the stream's
input perplexity per step and smoothed, the selected fraction, the loss, the learning rate.
Steps whose update was skipped (nothing selected) and guard events (reset, rollback) are marked.

    python launch/tlm_plot.py DIR_OR_RUN OUT.png [--smooth N]
"""
import argparse
import json
import math
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


class Series:
    """Per optimiser step: step, samples in it, mean input ce, selected fraction, loss, lr, updated."""

    def __init__(self, step, samples, ce, selected, loss, lr, updated, source):
        self.step, self.samples = np.asarray(step, float), np.asarray(samples, float)
        self.ce, self.selected = np.asarray(ce, float), np.asarray(selected, float)
        self.loss, self.lr, self.updated = np.asarray(loss, float), np.asarray(lr, float), np.asarray(updated, bool)
        self.source = source
        self.events = []  # (step, kind)


def from_metrics(path):
    rows = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            sys.exit(f"{path}:{no}: not a JSON line ({e.msg})")
    if not rows:
        sys.exit(f"{path}: no steps recorded yet")
    ce = [float(np.mean(r["ce"])) if r.get("ce") else math.nan for r in rows]
    sel = [float(np.mean(r["selected"])) if r.get("selected") else math.nan for r in rows]
    n = [len(r.get("ce", [])) for r in rows]
    s = Series([r["step"] for r in rows], n, ce, sel, [r.get("loss", math.nan) for r in rows],
               [r.get("lr", math.nan) for r in rows], [r.get("updated", True) for r in rows], str(path))
    guards = path.parent / "guards.jsonl"
    if guards.exists():
        for line in guards.read_text().splitlines():
            e = json.loads(line) if line.strip() else {}
            if e and e.get("event") != "probe passed":
                s.events.append((e["step"], e["event"]))
    return s


def from_checkpoint(path):
    import h5py

    with h5py.File(path, "r") as f:
        if "stats" not in f or "step" not in f["stats"]:
            sys.exit(f"{path}: no /stats in this checkpoint")
        st = {k: f["stats"][k][()] for k in f["stats"]}
    sel = np.where(st["samples"] > 0, st["selected"] / np.maximum(st["samples"], 1), math.nan)
    return Series(st["step"], st["samples"], st["ce_mean"], sel, st["loss"], st["lr"], st["updated"] > 0.5, str(path))


def load(arg):
    p = pathlib.Path(arg)
    if p.is_file():
        return from_metrics(p) if p.suffix == ".jsonl" else from_checkpoint(p)
    if not p.is_dir():
        sys.exit(f"{p}: no such run folder, checkpoint folder or file")
    if (p / "metrics.jsonl").exists():
        return from_metrics(p / "metrics.jsonl")
    steps = sorted((int(m.group(1)), q) for q in p.iterdir() if (m := re.fullmatch(r"step-(\d+)\.h5", q.name)))
    if not steps:
        sys.exit(f"{p}: neither a run folder (metrics.jsonl) nor a checkpoint folder (step-N.h5)")
    return from_checkpoint(steps[-1][1])


def smoothed(x, window):
    """Trailing mean over `window` steps (NaNs ignored)."""
    out = np.full_like(x, math.nan)
    for i in range(len(x)):
        w = x[max(0, i - window + 1):i + 1]
        w = w[~np.isnan(w)]
        if len(w):
            out[i] = w.mean()
    return out


def draw(s, out, window):
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True, constrained_layout=True)
    ppl = np.exp(s.ce)
    ax = axes[0]
    ax.plot(s.step, ppl, ".", ms=3, alpha=0.45, color="tab:blue", label="per step")
    ax.plot(s.step, np.exp(smoothed(s.ce, window)), color="tab:blue", lw=1.8, label=f"smoothed ({window} steps)")
    ax.set_yscale("log")
    ax.set_ylabel("input perplexity")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    ax.plot(s.step, smoothed(s.selected, window), color="tab:green", lw=1.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel(f"selected fraction\n({window}-step mean)")
    ax = axes[2]
    ax.plot(s.step, s.loss, color="tab:orange", lw=1)
    ax.set_ylabel("loss")
    ax = axes[3]
    ax.plot(s.step, s.lr, color="tab:purple", lw=1.5)
    ax.set_ylim(0, 1.15 * np.nanmax(s.lr) if np.nanmax(s.lr) > 0 else 1)
    ax.set_ylabel("learning rate")
    ax.set_xlabel("optimiser step")
    skipped = s.step[~s.updated]
    for ax in axes:
        for x in skipped:
            ax.axvline(x, color="0.85", lw=0.6, zorder=0)
        for x, kind in s.events:
            ax.axvline(x, color="tab:red", lw=1.2, ls="--", zorder=1)
    for x, kind in s.events:
        axes[0].annotate(kind, (x, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                         fontsize=7, color="tab:red")
    cum = np.cumsum(s.samples)
    xs, ys = np.concatenate([[0.0], s.step]), np.concatenate([[0.0], cum])
    slope = ys[-1] / xs[-1] if xs[-1] > 0 else 1.0

    def to_prompts(x):  # piecewise linear through (step, prompts so far), extended at both ends
        x = np.asarray(x, float)
        return np.where(x > xs[-1], ys[-1] + (x - xs[-1]) * slope, np.where(x < 0, x * slope, np.interp(x, xs, ys)))

    def to_steps(y):
        y = np.asarray(y, float)
        return np.where(y > ys[-1], xs[-1] + (y - ys[-1]) / slope, np.where(y < 0, y / slope, np.interp(y, ys, xs)))

    top = axes[0].secondary_xaxis("top", functions=(to_prompts, to_steps))
    top.set_xlabel("prompts consumed")
    note = f"{len(s.step)} steps, {int(cum[-1]) if len(cum) else 0} prompts"
    note += f"; {len(skipped)} skipped updates (grey)" if len(skipped) else ""
    note += f"; {len(s.events)} guard events (red)" if s.events else ""
    fig.suptitle(f"{pathlib.Path(s.source).parent.name}/{pathlib.Path(s.source).name}: {note}", fontsize=10)
    fig.savefig(out, dpi=110)
    return note


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="run folder, metrics.jsonl, checkpoint folder or step-N.h5")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--smooth", type=int, default=8, help="steps in the trailing mean (default 8)")
    a = ap.parse_args()
    if a.smooth < 1:
        sys.exit(f"--smooth must be >= 1, got {a.smooth}")
    s = load(a.source)
    out = pathlib.Path(a.out)
    tmp = out.with_name(out.name + ".tmp.png")
    note = draw(s, tmp, a.smooth)
    tmp.replace(out)  # whole or absent
    print(f"{out}: {note} (from {s.source})")


if __name__ == "__main__":
    main()
