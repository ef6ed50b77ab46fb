#!/usr/bin/env python3
"""Plots of a `maa compare` report: each model's distribution of what its rule
ranks parts by (1 is its decision boundary, so the two models' scales meet),
the two against each other part by part, and a contact sheet of the parts on
which the models disagree (input, each model's mask over it).  Called by
`maa compare --plots DIR`."""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from plot_eval import overlay, save  # noqa: E402

SIDES = ("running", "candidate")
GOOD, BAD = "#2e86c1", "#c0392b"


def scores(rep, out):
    imgs = rep["images"]
    bad = np.array([i["defective"] for i in imgs])
    v = {s: np.array([i[s]["rank_value"] for i in imgs], float) for s in SIDES}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    for ax, s in zip(axes, SIDES):
        d = rep[s]["rules"][rep["rule"]]
        # Each model's own range around its boundary: one model's spread
        # must not crush the other's into a bin or two.
        lo, hi = min(np.nanmin(v[s]), 1), max(np.nanmax(v[s]), 1)
        bins = np.linspace(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo), 40)
        ax.hist(v[s][~bad], bins=bins, alpha=0.6, color=GOOD, label="good")
        ax.hist(v[s][bad], bins=bins, alpha=0.6, color=BAD, label="defective")
        ax.axvline(1, color="k", lw=1.5, label="decision boundary")
        ax.set_title(f"{s}: good rejected {100 * d['false_reject_rate']:.1f}%, "
                     f"recall {d['recall']:.2f}", fontsize=9)
        ax.set_xlabel(f"rank value of rule {rep['rule']} (reject above 1)", fontsize=8)
        ax.set_ylabel("parts")
        ax.legend(fontsize=7)
    ax = axes[2]
    for sel, col, lab in ((~bad, GOOD, "good"), (bad, BAD, "defective")):
        ax.scatter(v["running"][sel], v["candidate"][sel], s=14, c=col, alpha=0.7, label=lab)
    ax.axvline(1, color="k", lw=1)
    ax.axhline(1, color="k", lw=1)
    ax.set_xlabel("running (reject right of the line)", fontsize=8)
    ax.set_ylabel("candidate (reject above the line)", fontsize=8)
    ax.set_title(f"part by part: {len(rep['disagreements'])} disagreements "
                 "(off-diagonal quadrants)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, os.path.join(out, "scores.png"))


def contact_sheet(rep, out):
    """Two parts a row: the input, then each model's mask over it and its
    verdict with the evidence behind it."""
    parts = [d for d in rep["disagreements"] if all("mask" in d[s] for s in SIDES)]
    if not parts:
        return
    per_row = 2 if len(parts) > 1 else 1
    nrows = (len(parts) + per_row - 1) // per_row
    fig, axes = plt.subplots(nrows, 3 * per_row, figsize=(6.6 * per_row, 2.3 * nrows), dpi=90,
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for k, d in enumerate(parts):
        row = axes[k // per_row][3 * (k % per_row):3 * (k % per_row) + 3]
        inp = plt.imread(d["image"])
        row[0].imshow(inp, cmap="gray")
        name = "/".join(d["image"].split("/")[-2:])
        row[0].set_ylabel(f"{name}\ncandidate {'right' if d['right'] == 'candidate' else 'wrong'}",
                          fontsize=8)
        for ax, s in zip(row[1:], SIDES):
            overlay(ax, inp, plt.imread(d[s]["mask"]))
            ev = ", ".join(d[s]["evidence"]) or "no evidence"
            ax.set_xlabel(f"{s}: {d[s]['verdict']} ({ev})", fontsize=8,
                          color=BAD if d[s]["verdict"] == "reject" else GOOD)
    for c in range(per_row):
        for ax, t in zip(axes[0][3 * c:3 * c + 3], ("input", "running: mask", "candidate: mask")):
            ax.set_title(t, fontsize=9)
    fig.tight_layout()
    save(fig, os.path.join(out, "disagreements.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--report", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rep = json.load(open(a.report))
    scores(rep, a.out)
    contact_sheet(rep, a.out)


if __name__ == "__main__":
    main()
