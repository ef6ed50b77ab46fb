#!/usr/bin/env python3
"""plot_gpu_bench.py RESULTS PNG [TITLE] — the benchmark of scripts/gpu-check.sh
as a picture: frames/s per pipeline and batch (left) and ms per batch (right),
with the targets of the cuda backend's issue drawn in (batch 4 <= 0.9 ms,
batch 32 >= 8,000 frames/s).

RESULTS is the file gpu-check.sh writes (build/gpu-check/results.txt): lines
  RESULT <pipeline> batch <n>: <ms> ms/batch <fps> frames/s ...
"""
import re
import sys

LINE = re.compile(r"^RESULT (\S+) batch (\d+): ([0-9.]+) ms/batch ([0-9.]+) frames/s")
TARGET_MS_B4, TARGET_FPS_B32 = 0.9, 8000.0


def read(path):
    rows = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                name, n, ms, fps = m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4))
                rows.setdefault(name, {})[n] = (ms, fps)
    return rows


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    rows = read(argv[0])
    if not rows:
        print(f"plot_gpu_bench: no RESULT lines in {argv[0]}", file=sys.stderr)
        return 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({n for r in rows.values() for n in r})
    names = sorted(rows, key=lambda s: (not s.startswith("maad"), s))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [b + (i - (len(names) - 1) / 2) * width for b in range(len(batches))]
        fps = [rows[name].get(n, (0, 0))[1] for n in batches]
        ms = [rows[name].get(n, (0, 0))[0] for n in batches]
        style = dict(width=width, label=name, edgecolor="black", linewidth=0.5,
                     hatch=None if name.startswith("maad") else "//")
        ax1.bar(xs, fps, **style)
        ax2.bar(xs, ms, **style)
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(batches)))
        ax.set_xticklabels([f"batch {n}" for n in batches])
        ax.set_yscale("log")
        ax.grid(axis="y", which="both", alpha=0.3)
    if 32 in batches:
        x = batches.index(32)
        ax1.hlines(TARGET_FPS_B32, x - 0.45, x + 0.45, colors="red", linestyles="--",
                   label="target, batch 32")
    if 4 in batches:
        x = batches.index(4)
        ax2.hlines(TARGET_MS_B4, x - 0.45, x + 0.45, colors="red", linestyles="--",
                   label="target, batch 4")
    ax1.set_ylabel("frames/s (higher is better)")
    ax2.set_ylabel("ms per batch, frames in to results out (lower is better)")
    ax1.legend(fontsize=8, loc="upper left")
    ax2.legend(fontsize=8)
    fig.suptitle(argv[2] if len(argv) == 3 else "maad vs PyTorch, whole pipeline, S=256")
    fig.tight_layout()
    fig.savefig(argv[1], dpi=110)
    print(f"plot_gpu_bench: wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
