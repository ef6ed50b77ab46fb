#!/usr/bin/python3
"""Golden cases for the C engine tests, computed by PyTorch in float64.

  golden.py --out DIR --case small|mono|default [--f16]

Cases (the model is maa_net.init_test(seed), so BN running stats, affine
terms and the memory h0/c0 are all non-trivial):
  small    S=64,  C=3, g_base 4,  d_base 8,  batch 3, seed 1 (+ F16 model)
  mono     S=64,  C=1, g_base 2,  d_base 4,  batch 1, seed 2
  default  S=256, C=3, g_base 16, d_base 64, batch 1, seed 3
--f16 adds the F16 variant to any case (small always has it).

Files written to DIR:
  model.safetensors        the model, F32 (contract §3)
  model_f16.safetensors    the same weights rounded to F16 (variant only)
  *.f32                    raw little-endian float32, C order, no header;
                           the shape of each is in manifest.json
  manifest.json            described below

manifest.json:
  {"format": "maa-golden", "version": 1, "case": "small",
   "config": {"image_size": 64, "channels": 3, "g_base": 4, "d_base": 8,
              "bn_eps": 1e-05, "lrelu_slope": 0.1},
   "batch": N, "markov_size": M, "seed": K, "window": 7,
   "model": "model.safetensors", "dtype": "F32",
   "arrays": {"x":  {"file": "x.f32",  "shape": [N, C, S, S]},
              "r":  {"file": "r.f32",  "shape": [N, C, S, S]},
              "fx": {"file": "fx.f32", "shape": [N, M, M]},
              "fr": {"file": "fr.f32", "shape": [N, M, M]},
              "e":  {"file": "e.f32",  "shape": [N, S, S]},
              "m":  {"file": "m.f32",  "shape": [N, S, S]}},
   "fmd":        [N numbers],
   "fmd_stored": [N numbers],
   "fmd_eig":    [N numbers],
   "m_peak":     [N numbers],
   "variants": [{"dtype": "F16", "model": "model_f16.safetensors",
                 "arrays": {"r": ..., "fx": ..., "fr": ..., "e": ..., "m": ...},
                 "fmd": [...], "fmd_stored": [...], "fmd_eig": [...],
                 "m_peak": [...]}]}

x is the input (values in [-1, 1], already float32; the network saw exactly
these values).  r = G(x) from the stored memory, fx = f(x), fr = f(r), all
computed in float64 from the file's weights (F32 or F16 widened) and then
rounded to float32 for storage.  fmd is contract §4 from the float64 features
(scipy sqrtm, pytorch-fid formula); fmd_stored is the same formula applied
to the stored float32 fx, fr (what maa_fmd on fx.f32/fr.f32 must give);
fmd_eig is contract §4's eigenvalue form on the float64 features.  e (mean_c
|x - r|) and m (contract §6, window 7) are computed in float64 from the stored
float32 x and r, so maa_varmap on x.f32/r.f32 must reproduce m.f32.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import maa_io  # noqa: E402
import maa_ref  # noqa: E402
from export_model import random_model  # noqa: E402

CASES = {
    "small": dict(size=64, channels=3, g_base=4, d_base=8, batch=3, seed=1,
                  f16=True),
    "mono": dict(size=64, channels=1, g_base=2, d_base=4, batch=1, seed=2,
                 f16=False),
    "default": dict(size=256, channels=3, g_base=16, d_base=64, batch=1,
                    seed=3, f16=False),
}
WINDOW = 7


def smooth_images(n, c, s, seed):
    """Deterministic smooth images in [-1, 1]: a bilinear-enlarged random
    6x6 field, a little fine texture, and on every second image a dark
    square 'defect', rounded to float32."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, c, s, s), np.float32)
    for i in range(n):
        field = maa_ref.resize(rng.uniform(-1, 1, (6, 6, c)), s)
        img = 0.7 * field + 0.05 * rng.standard_normal((s, s, c))
        if i % 2 == 1:
            y, x = rng.integers(s // 8, s - s // 4, 2)
            img[y:y + s // 8, x:x + s // 8, :] = -0.9
        out[i] = np.clip(img, -1, 1).transpose(2, 0, 1)
    return out


def write_f32(d, name, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    a.tofile(os.path.join(d, name + ".f32"))
    return {"file": name + ".f32", "shape": list(a.shape)}


def run_model(path, x, d, prefix):
    """Evaluates the model file at path on x in float64; writes arrays."""
    model = maa_io.load_model(path).double()
    with torch.no_grad():
        r, fx, fr = model(torch.from_numpy(x.astype(np.float64)))
    r, fx, fr = r.numpy(), fx.numpy(), fr.numpy()
    r32, fx32, fr32 = (a.astype(np.float32) for a in (r, fx, fr))
    n = x.shape[0]
    e = np.abs(x.astype(np.float64) - r32.astype(np.float64)).mean(1)
    m = np.stack([maa_ref.varmap(x[i], r32[i], WINDOW) for i in range(n)])
    res = {
        "arrays": {
            "r": write_f32(d, prefix + "r", r32),
            "fx": write_f32(d, prefix + "fx", fx32),
            "fr": write_f32(d, prefix + "fr", fr32),
            "e": write_f32(d, prefix + "e", e),
            "m": write_f32(d, prefix + "m", m),
        },
        "fmd": [maa_ref.fmd(fx[i], fr[i]) for i in range(n)],
        "fmd_stored": [maa_ref.fmd(fx32[i], fr32[i]) for i in range(n)],
        "fmd_eig": [maa_ref.fmd_eig(fx[i], fr[i]) for i in range(n)],
        "m_peak": [float(m[i].max()) for i in range(n)],
    }
    return res


def make_case(out, case, f16=False):
    p = CASES[case]
    os.makedirs(out, exist_ok=True)
    model = random_model(p["size"], p["channels"], p["g_base"], p["d_base"],
                         p["seed"])
    mpath = os.path.join(out, "model.safetensors")
    maa_io.save_model(model, mpath, "F32")
    x = smooth_images(p["batch"], p["channels"], p["size"], p["seed"] + 100)
    man = {
        "format": "maa-golden", "version": 1, "case": case,
        "config": dict(model.config), "batch": p["batch"],
        "markov_size": model.markov_size, "seed": p["seed"], "window": WINDOW,
        "model": "model.safetensors", "dtype": "F32",
    }
    res = run_model(mpath, x, out, "")
    res["arrays"] = dict(x=write_f32(out, "x", x), **res["arrays"])
    man.update(res)
    man["variants"] = []
    if f16 or p["f16"]:
        hpath = os.path.join(out, "model_f16.safetensors")
        maa_io.save_model(model, hpath, "F16")
        v = {"dtype": "F16", "model": "model_f16.safetensors"}
        v.update(run_model(hpath, x, out, "f16_"))
        man["variants"].append(v)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    return man


def main(argv=None):
    ap = argparse.ArgumentParser(description="golden cases for the C tests")
    ap.add_argument("--out", required=True, help="directory to write")
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--f16", action="store_true",
                    help="also the F16 variant (small always has it)")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    man = make_case(a.out, a.case, a.f16)
    print(f"golden {a.case}: {a.out} fmd={['%.6g' % v for v in man['fmd']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
