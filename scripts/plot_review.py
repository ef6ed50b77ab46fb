#!/usr/bin/env python3
"""The contact sheet of `maa review --png`: a grid of the archived frames
(thumbnails maa made, the mask already laid over each in red), each with a
caption coloured by why it was kept, newest first.  maa writes the tiles and
the list (--tiles, JSON: title, note, tiles [{png or null, why, lines}]);
this script only lays them out."""
import argparse
import json
import math
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from plot_eval import save  # noqa: E402

COLOUR = {"reject": "#c0392b", "uninspected": "#d68910", "pass": "#1e8449"}
COLS = 6


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    doc = json.load(open(a.tiles))
    tiles = doc["tiles"]
    cols = max(1, min(COLS, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    # constrained: room for the suptitle and for every caption line
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 3.4 * rows + 0.5), dpi=90,
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for ax, t in zip(axes.flat, tiles):
        if t.get("png"):
            ax.imshow(plt.imread(t["png"]), interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "no frame", ha="center", va="center", transform=ax.transAxes)
        ax.set_frame_on(True)
        for side in ax.spines.values():
            side.set_color(COLOUR.get(t["why"], "k"))
            side.set_linewidth(3)
        # long reasons (camera errors) are cut, the record's name (last, for
        # maa archive mark) is wrapped at its dashes, never cut
        lines = [s if len(s) <= 46 else s[:45] + "\u2026" for s in t["lines"][:-1]]
        lines += textwrap.wrap(t["lines"][-1], 46, break_on_hyphens=True)
        ax.set_xlabel("\n".join(lines), fontsize=6.5, color=COLOUR.get(t["why"], "k"),
                      linespacing=1.25)
    if not tiles:
        axes[0][0].text(0.5, 0.5, "no records", ha="center", va="center",
                        transform=axes[0][0].transAxes)
    fig.suptitle(doc["title"] + "\n" + doc["note"], fontsize=9)
    save(fig, a.out)


if __name__ == "__main__":
    main()
