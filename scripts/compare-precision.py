#!/usr/bin/env python3
"""Score error and verdict agreement of one precision against another
(default: bf16 against f32 on the cpu backend), through `maa infer` on the
same images with the same calibration.

  compare-precision.py --model M --calibration C [--backend cpu]
                       [--a f32] [--b bf16] IMAGE_OR_DIR...
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def images(paths):
    for p in paths:
        if os.path.isdir(p):
            for dirpath, _, files in sorted(os.walk(p)):
                yield from (os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".png"))
        else:
            yield p


def infer(a, precision, files):
    r = subprocess.run([os.path.join(ROOT, "build", "maa"), "infer", "--model", a.model, "--calibration",
                        a.calibration, "--backend", a.backend, "--precision", precision, *files],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"maa infer --precision {precision} failed:\n{r.stderr}")
    return {j["image"]: j for j in map(json.loads, r.stdout.splitlines())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--a", default="f32")
    ap.add_argument("--b", default="bf16")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    files = list(images(a.paths))
    ra, rb = infer(a, a.a, files), infer(a, a.b, files)
    sa = np.array([ra[f]["score"] for f in files])
    sb = np.array([rb[f]["score"] for f in files])
    rel = np.abs(sb - sa) / np.maximum(np.abs(sa), 1e-12)
    t = ra[files[0]]["threshold"]
    agree = sum(ra[f]["verdict"] == rb[f]["verdict"] for f in files)
    near = np.abs(sa - t) <= 0.02 * t
    agree_far = sum(ra[f]["verdict"] == rb[f]["verdict"] for f, n in zip(files, near) if not n)
    print(f"{len(files)} images, {a.backend} {a.b} against {a.a}, threshold {t:.6g}")
    print(f"  score relative error: median {np.median(rel):.3g}, p95 {np.percentile(rel, 95):.3g}, "
          f"max {rel.max():.3g}")
    print(f"  verdicts agree: {agree}/{len(files)}; away from T (more than 2%): "
          f"{agree_far}/{int((~near).sum())}")


if __name__ == "__main__":
    main()
