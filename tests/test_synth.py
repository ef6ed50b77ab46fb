#!/usr/bin/python3
"""Tests of scripts/gen_synth.py: layout, determinism, masks, pixel format.

Ends with "N passed, N failed" like every maad test.
"""
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "scripts")
GEN = os.path.join(SCRIPTS, "gen_synth.py")
sys.path.insert(0, SCRIPTS)
import synth_png  # noqa: E402
import synth_scene  # noqa: E402

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s" % what)


def gen(out, *extra):
    cmd = [sys.executable, GEN, "--out", out, "--size", "64", "--train-good", "3",
           "--test-good", "2", "--test-defect", "2"] + list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True)
    check(r.returncode == 0, "gen_synth %s exits 0 (%s)" % (" ".join(extra), r.stderr.strip()[-300:]))
    return r


def files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def png_header(data):
    """(width, height, bit depth, colour type) straight from IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return w, h, data[24], data[25]


def test_layout(root, channels):
    tree = files(root)
    expect = {"README.txt"}
    expect |= {"train/good/%03d.png" % i for i in range(3)}
    expect |= {"test/good/%03d.png" % i for i in range(2)}
    for d in synth_scene.DEFECTS:
        expect |= {"test/%s/%03d.png" % (d, i) for i in range(2)}
        expect |= {"ground_truth/%s/%03d_mask.png" % (d, i) for i in range(2)}
    check(set(tree) == expect, "layout: extra %s missing %s"
          % (sorted(set(tree) - expect)[:5], sorted(expect - set(tree))[:5]))
    check(b"gen_synth.py" in tree.get("README.txt", b"") and b"--seed" in tree.get("README.txt", b""),
          "README.txt records the generation command")
    mode = "RGB" if channels == 3 else "L"
    ctype = 2 if channels == 3 else 0
    for name, data in tree.items():
        if not name.endswith(".png"):
            continue
        w, h, depth, ct = png_header(data)
        is_mask = name.startswith("ground_truth/")
        ok = (w, h, depth) == (64, 64, 8) and ct == (0 if is_mask else ctype)
        check(ok, "%s: 64x64 8-bit %s, got %dx%d depth %d type %d"
              % (name, "gray" if is_mask else mode, w, h, depth, ct))
        im = Image.open(os.path.join(root, name))
        check(im.mode == ("L" if is_mask else mode), "%s decodes as %s, got %s" % (name, mode, im.mode))
    for d in synth_scene.DEFECTS:
        for i in range(2):
            m = np.asarray(Image.open(os.path.join(root, "ground_truth", d, "%03d_mask.png" % i)))
            vals = set(np.unique(m).tolist())
            n = int((m == 255).sum())
            check(vals <= {0, 255}, "%s/%03d mask is 0/255, has %s" % (d, i, sorted(vals)[:5]))
            # A local defect: visible, but far from covering the part.
            check(6 <= n <= 0.15 * m.size, "%s/%03d mask covers %d px" % (d, i, n))


def test_render_matches_files(root):
    # The file on disk is exactly what render() gives for that image's key,
    # so the PNG writer is lossless and the key naming is stable.
    import gen_synth
    img, mask, _ = synth_scene.render("groove", "pit", 64, 3, gen_synth.key(0, "groove", "test", "pit", 1))
    disk = np.asarray(Image.open(os.path.join(root, "test/pit/001.png")))
    mdisk = np.asarray(Image.open(os.path.join(root, "ground_truth/pit/001_mask.png")))
    check(np.array_equal(img, disk), "test/pit/001.png equals render() of its key")
    check(np.array_equal(mask, mdisk), "ground_truth/pit/001_mask.png equals render() of its key")


def test_defect_is_where_mask_is():
    # For every view and defect type: the defective image equals the same
    # part rendered without a defect outside the mask, and differs inside.
    for view in synth_scene.VIEWS:
        for channels in (3, 1):
            for d in synth_scene.DEFECTS:
                for idx in range(2):
                    key = [7, idx, channels]
                    img, mask, clean = synth_scene.render(view, d, 64, channels, key)
                    m = mask > 0
                    diff = img.astype(int) - clean.astype(int)
                    if diff.ndim == 3:
                        diff = np.abs(diff).max(axis=2)
                    else:
                        diff = np.abs(diff)
                    tag = "%s/%s/c%d/%d" % (view, d, channels, idx)
                    check(m.sum() >= 6, "%s: mask not empty (%d px)" % (tag, m.sum()))
                    check(not diff[~m].any(), "%s: no change outside the mask" % tag)
                    inside = (diff[m] > 0).mean() if m.any() else 0.0
                    check(inside >= 0.97, "%s: %.2f of mask pixels changed" % (tag, inside))
                    shape = (64, 64, 3) if channels == 3 else (64, 64)
                    check(img.shape == shape and img.dtype == np.uint8,
                          "%s: image %s %s" % (tag, img.shape, img.dtype))
            img, mask, clean = synth_scene.render(view, None, 64, 3, [7, 0, 3])
            check(not mask.any() and np.array_equal(img, clean), "%s: good part has an empty mask" % view)


def test_small_images():
    # At the smallest size edges are sharper than a pixel; every defect must
    # still find a place and change some pixels.
    for view in synth_scene.VIEWS:
        for d in synth_scene.DEFECTS:
            counts = [int((synth_scene.render(view, d, 32, 1, [3, k])[1] > 0).sum()) for k in range(6)]
            check(min(counts) >= 6, "%s/%s at 32 px: mask sizes %s" % (view, d, counts))


def test_png_writer():
    rng = np.random.default_rng(1)
    for shape in ((5, 7), (6, 3, 3)):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            synth_png.write(f.name, a)
            back = np.asarray(Image.open(f.name))
        check(np.array_equal(a, back), "PNG round trip %s" % (shape,))
    data = synth_png.encode(np.zeros((4, 4), np.uint8))
    check(b"tEXt" not in data and png_header(data)[3] == 0, "PNG has no text chunk, gray type")
    check(zlib.crc32(data[12:29]) & 0xFFFFFFFF == int.from_bytes(data[29:33], "big"), "IHDR CRC")


with tempfile.TemporaryDirectory() as tmp:
    a, b, c = (os.path.join(tmp, n) for n in ("a", "b", "c"))
    mono = os.path.join(tmp, "mono")
    gen(a, "--view", "groove", "--seed", "0")
    gen(b, "--view", "groove", "--seed", "0")
    gen(c, "--view", "groove", "--seed", "1")
    sheet = os.path.join(tmp, "sheet.png")
    gen(mono, "--view", "hook", "--channels", "1", "--contact-sheet", sheet)
    ta, tb, tc = files(a), files(b), files(c)
    test_layout(a, 3)
    test_layout(mono, 1)
    same = [n for n in ta if n != "README.txt" and ta[n] == tb.get(n)]
    check(len(same) == len(ta) - 1, "same seed: %d of %d files byte-identical" % (len(same), len(ta) - 1))
    check(ta["README.txt"].replace(a.encode(), b"R") == tb["README.txt"].replace(b.encode(), b"R"),
          "same seed: same README apart from --out")
    images = [n for n in ta if n.endswith(".png")]
    differ = [n for n in images if ta[n] != tc.get(n)]
    check(len(differ) == len(images), "other seed: %d of %d files differ" % (len(differ), len(images)))
    test_render_matches_files(a)
    # One row per type (good + 5 defects) of 64 px tiles, RGB for the docs.
    im = Image.open(sheet) if os.path.exists(sheet) else None
    check(im is not None and im.mode == "RGB" and im.size[1] == 6 * 64,
          "contact sheet: RGB, six rows of 64 px (%s)" % str(None if im is None else (im.mode, im.size)))
    r = subprocess.run([sys.executable, GEN, "--out", os.path.join(tmp, "bad"), "--size", "8"],
                       capture_output=True, text=True)
    check(r.returncode != 0 and "size" in r.stderr, "a too small --size is refused")

test_defect_is_where_mask_is()
test_small_images()
test_png_writer()

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
