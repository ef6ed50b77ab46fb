#!/usr/bin/env python3
"""Histogram of the good-part scores of a calibration, with the fitted normal
N(mu, sigma) and the threshold T marked.  Called by `maa calibrate`."""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from plot_eval import save  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scores", required=True, help="one score per line")
    for k in ("mu", "sigma", "gamma", "threshold", "normality-p"):
        ap.add_argument("--" + k, type=float, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    s = np.loadtxt(a.scores, ndmin=1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.hist(s, bins=max(10, min(60, len(s) // 3)), density=True, color="#8fb3d9",
            edgecolor="#3c6a9c", label=f"good parts (n={len(s)})")
    lo = min(s.min(), a.mu - 4 * a.sigma)
    hi = max(s.max(), a.threshold, a.mu + 4 * a.sigma)
    xs = np.linspace(lo, hi, 400)
    if a.sigma > 0:
        pdf = np.exp(-0.5 * ((xs - a.mu) / a.sigma) ** 2) / (a.sigma * np.sqrt(2 * np.pi))
        ax.plot(xs, pdf, color="#1f3b5c", lw=2,
                label=f"normal fit: mu={a.mu:.4g}, sigma={a.sigma:.3g}")
    ax.axvline(a.threshold, color="#c0392b", lw=2,
               label=f"T = mu + {a.gamma:g} sigma = {a.threshold:.4g}")
    ax.set_xlabel("FMD score")
    ax.set_ylabel("density")
    ax.set_title(f"maa calibration (normality p = {a.normality_p:.3g})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, a.out)


if __name__ == "__main__":
    main()
