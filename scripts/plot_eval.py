#!/usr/bin/env python3
"""Plots of a `maa eval` report: the ROC curve, the score distributions of good
and defective parts with T, and a grid of the worst cases (input,
reconstruction, mask over the input).  Called by `maa eval --plots DIR`."""
import argparse
import io
import json
import os
import secrets

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def roc(scores, labels):
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (1 + distinct) - tps
    return np.r_[0, fps / max(fps[-1], 1)], np.r_[0, tps / max(tps[-1], 1)]


def save(fig, path):
    """fig as the file at path, written as maa writes its files: into a new
    file beside it, created exclusively (never through a symbolic link
    planted there), then renamed over path."""
    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(path)[1][1:] or "png")
    tmp = "%s.%s.tmp" % (path, secrets.token_hex(8))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def overlay(ax, inp, mask):
    """The input with a mask (read with plt.imread) in translucent red."""
    ax.imshow(inp, cmap="gray")
    if mask.max() > 0:
        over = np.zeros(mask.shape[:2] + (4,))
        over[..., 0] = 1
        over[..., 3] = 0.5 * (mask[..., 0] if mask.ndim == 3 else mask)
        ax.imshow(over, extent=(0, inp.shape[1], inp.shape[0], 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--report", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rep = json.load(open(a.report))
    imgs = rep["images"]
    scores = np.array([i["score"] for i in imgs])
    labels = np.array([1 if i["defective"] else 0 for i in imgs])

    fpr, tpr = roc(scores, labels)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.plot(fpr, tpr, lw=2, label=f"all (AUROC {rep['image_auroc']:.4f})")
    for t in sorted({i["type"] for i in imgs} - {"good"}):
        sel = np.array([i["type"] in ("good", t) for i in imgs])
        f, p = roc(scores[sel], labels[sel])
        ax.plot(f, p, lw=1, alpha=0.7, label=t)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate (good parts rejected)")
    ax.set_ylabel("true positive rate (defective parts rejected)")
    ax.set_title("ROC, image level")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save(fig, os.path.join(a.out, "roc.png"))

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    bins = np.linspace(scores.min(), scores.max(), 50)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="#2e86c1")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defective", color="#c0392b")
    ax.axvline(rep["threshold"], color="k", lw=2, label=f"T (gamma {rep['gamma']:g})")
    ax.axvline(rep["gamma0"]["threshold"], color="k", ls="--", lw=1, label="T at gamma 0")
    ax.set_xlabel("FMD score")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, os.path.join(a.out, "scores.png"))

    cases = rep.get("worst_cases", [])
    if cases:
        fig, axes = plt.subplots(len(cases), 3, figsize=(6.6, 2.2 * len(cases)), dpi=90, squeeze=False)
        for row, c in zip(axes, cases):
            inp = plt.imread(c["image"])
            rec = plt.imread(c["recon"])
            mask = plt.imread(c["mask"])
            row[0].imshow(inp, cmap="gray")
            row[1].imshow(rec, cmap="gray")
            overlay(row[2], inp, mask)
            row[0].set_ylabel(f"{c['type']}\n{c['score']:.3g}", fontsize=8)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0][0].set_title("input", fontsize=9)
        axes[0][1].set_title("reconstruction", fontsize=9)
        axes[0][2].set_title("mask", fontsize=9)
        fig.tight_layout()
        save(fig, os.path.join(a.out, "worst.png"))


if __name__ == "__main__":
    main()
