#!/usr/bin/python3
"""Synthetic motor-commutator surface dataset in MVTec AD layout.

    /usr/bin/python3 scripts/gen_synth.py --out ROOT [--view groove|cylinder|hook]
        [--size 256] [--channels 3|1] [--train-good 200] [--test-good 50]
        [--test-defect 10] [--seed 0] [--contact-sheet PNG]

Writes ROOT/train/good/NNN.png, ROOT/test/good/NNN.png, ROOT/test/<type>/NNN.png,
ROOT/ground_truth/<type>/NNN_mask.png (0/255) and ROOT/README.txt.  The same
command gives byte-identical images and masks.  See docs/data.md.
"""
import argparse
import os
import shlex
import sys
import time

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth_png  # noqa: E402
import synth_scene  # noqa: E402

# Each image's random stream is named by (seed, view, split, type, index), so
# any one image can be regenerated alone and counts do not shift the others.
SPLITS = {"train": 0, "test": 1}
TYPES = ("good",) + synth_scene.DEFECTS


def key(seed, view, split, kind, index):
    return [seed, synth_scene.VIEWS.index(view), SPLITS[split], TYPES.index(kind), index]


def name_width(n):
    return max(3, len(str(max(n - 1, 0))))


def jobs(args):
    """(split, type, index, count) of every image to write, in writing order."""
    out = [("train", "good", i, args.train_good) for i in range(args.train_good)]
    out += [("test", "good", i, args.test_good) for i in range(args.test_good)]
    for d in synth_scene.DEFECTS:
        out += [("test", d, i, args.test_defect) for i in range(args.test_defect)]
    return out


def command_line(args):
    parts = ["/usr/bin/python3", "scripts/gen_synth.py", "--out", args.out,
             "--view", args.view, "--size", str(args.size), "--channels", str(args.channels),
             "--train-good", str(args.train_good), "--test-good", str(args.test_good),
             "--test-defect", str(args.test_defect), "--seed", str(args.seed)]
    return " ".join(shlex.quote(p) for p in parts)


def outline(mask):
    m = mask > 0
    return m & ~ndimage.binary_erosion(m)


def shrink(img, tile):
    """Area-average an (S, S, 3) image down to about tile px (integer factor)."""
    f = max(1, img.shape[0] // tile)
    s = img.shape[0] // f * f
    return img[:s, :s].reshape(s // f, f, s // f, f, 3).mean(axis=(1, 3)).round().astype(np.uint8)


def contact_sheet(path, root, args, cols=3, tile=128):
    """Grid: one row per type (good first), mask outlines in green."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import image as mpimg
    from PIL import Image

    cols = min(cols, max(args.test_good, args.test_defect))
    rows = []
    labels = []
    for kind in TYPES:
        count = args.test_good if kind == "good" else args.test_defect
        n = min(cols, count)
        if n == 0:
            continue
        w = name_width(count)
        tiles = []
        for i in range(n):
            img = mpimg.imread(os.path.join(root, "test", kind, "%0*d.png" % (w, i)))
            img = (img * 255).round().astype(np.uint8)
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            if kind != "good":
                m = mpimg.imread(os.path.join(root, "ground_truth", kind, "%0*d_mask.png" % (w, i)))
                img[outline(m)] = (40, 255, 40)
            tiles.append(shrink(img, tile))
        tiles += [np.zeros_like(tiles[0])] * (cols - n)
        rows.append(np.concatenate(tiles, axis=1))
        labels.append(kind)
    sheet = np.concatenate(rows, axis=0)
    h, w = sheet.shape[:2]
    fig = plt.figure(figsize=(w / 100.0, h / 100.0), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(sheet, interpolation="nearest")
    ax.set_axis_off()
    for r, label in enumerate(labels):
        ax.text(3, r * rows[0].shape[0] + 3, "%s: %s" % (args.view, label), color="white", fontsize=7,
                va="top", ha="left", bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
    # RGB without alpha and Pillow's adaptive row filters: the sheet goes
    # into the docs, and sensor noise makes it compress poorly.
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    Image.fromarray(rgb).save(path, optimize=True)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="dataset root (created)")
    p.add_argument("--view", choices=synth_scene.VIEWS, default="groove")
    p.add_argument("--size", type=int, default=256, help="image side in px (>= 32)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3)
    p.add_argument("--train-good", type=int, default=200)
    p.add_argument("--test-good", type=int, default=50)
    p.add_argument("--test-defect", type=int, default=10, help="per defect type")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a PNG grid of test samples")
    args = p.parse_args(argv)
    if args.size < 32:
        p.error("--size must be at least 32")
    for n in ("train_good", "test_good", "test_defect", "seed"):
        if getattr(args, n) < 0:
            p.error("--%s must not be negative" % n.replace("_", "-"))
    return args


def main(argv=None):
    args = parse(argv)
    t0 = time.time()
    todo = jobs(args)
    dirs = {os.path.join(args.out, s, k) for s, k, _, _ in todo}
    dirs |= {os.path.join(args.out, "ground_truth", k) for s, k, _, _ in todo if k != "good"}
    for d in sorted(dirs):
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(args.out, "README.txt"), "w") as f:
        f.write("Synthetic motor-commutator surface dataset (maad, MVTec AD layout).\n"
                "Generated by:\n  %s\n"
                "View %s, %dx%d px, %d channel(s); defect types: %s.\n"
                "Masks are 0/255; see docs/data.md in the maad repository.\n"
                % (command_line(args), args.view, args.size, args.size, args.channels,
                   ", ".join(synth_scene.DEFECTS)))
    step = max(1, len(todo) // 10)
    for n, (split, kind, i, count) in enumerate(todo):
        defect = None if kind == "good" else kind
        img, mask, _ = synth_scene.render(args.view, defect, args.size, args.channels,
                                          key(args.seed, args.view, split, kind, i))
        stem = "%0*d" % (name_width(count), i)
        synth_png.write(os.path.join(args.out, split, kind, stem + ".png"), img)
        if defect is not None:
            synth_png.write(os.path.join(args.out, "ground_truth", kind, stem + "_mask.png"), mask)
        if (n + 1) % step == 0 or n + 1 == len(todo):
            print("gen_synth: %d/%d images (%s/%s) %.1f s"
                  % (n + 1, len(todo), split, kind, time.time() - t0), flush=True)
    if args.contact_sheet:
        contact_sheet(args.contact_sheet, args.out, args)
        print("gen_synth: contact sheet %s" % args.contact_sheet)
    print("gen_synth: wrote %d images to %s in %.1f s" % (len(todo), args.out, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
