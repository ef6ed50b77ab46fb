#!/usr/bin/python3
"""An independent implementation of the MAA network and of the FMD, written
from contract §2-§4 alone (it imports nothing from scripts/), for the C tests to
check the engine against something other than scripts/maa_net.py.

  indep_model.py --out DIR [--size 64] [--channels 3] [--g-base 4]
                 [--d-base 8] [--batch 2] [--seed 7]

Writes to DIR:
  indep.safetensors  the model, F16, tensors in reverse name order, metadata
                     written last in the header, no header padding
  x.f32, fx.f32, fr.f32, r.f32   raw little-endian float32 (C order)
  indep.json         {"model": ..., "config": {...}, "batch": N,
                      "markov_size": M, "arrays": {"x": {"file", "shape"},
                      ...}, "fmd": [N numbers]}
The network runs in float64 on the F16 weights widened, with functional
calls only (BN in inference form, the ConvLSTM one step from h0, c0); the
FMD is the eigenvalue form of contract §4, computed with numpy.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def names_shapes(S, C, b, a):
    """contract §2 tensor names -> shapes, built from the tables."""
    t = {}

    def bn(prefix, n):
        for k in ("weight", "bias", "running_mean", "running_var"):
            t[prefix + "." + k] = [n]

    g_layers = [("g.enc.0", [b, C, 1, 7]), ("g.enc.1", [2 * b, b, 7, 1]),
                ("g.enc.2", [4 * b, 2 * b, 3, 3]),
                ("g.enc.3", [8 * b, 4 * b, 3, 3]),
                ("g.enc.4", [16 * b, 8 * b, 3, 3]),
                ("g.dec.0", [16 * b, 8 * b, 3, 3]),
                ("g.dec.1", [8 * b, 4 * b, 3, 3]),
                ("g.dec.2", [4 * b, 2 * b, 3, 3]),
                ("g.dec.3", [b, 2 * b, 7, 1])]
    for name, shape in g_layers:
        t[name + ".weight"] = shape
        out_ch = shape[1] if name in ("g.dec.0", "g.dec.1", "g.dec.2") else shape[0]
        bn(name + ".bn", out_ch)
    t["g.dec.4.weight"] = [C, b, 1, 7]
    t["g.dec.4.bias"] = [C]
    for k in range(6):
        for j in ("1", "2"):
            t["g.res.%d.conv%s.weight" % (k, j)] = [16 * b, 16 * b, 3, 3]
            bn("g.res.%d.bn%s" % (k, j), 16 * b)
    t["g.mem.weight"] = [64 * b, 32 * b, 3, 3]
    t["g.mem.bias"] = [64 * b]
    t["g.mem.h0"] = [16 * b, S // 8, S // 8]
    t["g.mem.c0"] = [16 * b, S // 8, S // 8]
    widths = [C, a, 2 * a, 4 * a, 8 * a, 1, 1]
    for k in range(6):
        t["d.%d.weight" % k] = [widths[k + 1], widths[k], 4, 4]
        if k in (0, 4, 5):
            t["d.%d.bias" % k] = [widths[k + 1]]
        else:
            bn("d.%d.bn" % k, widths[k + 1])
    return t


def random_weights(shapes, seed):
    rng = np.random.RandomState(seed)
    w = {}
    for name, shape in shapes.items():
        last = name.rsplit(".", 1)[1]
        is_bn = ".bn" in name
        if is_bn and last == "weight":
            v = rng.uniform(0.6, 1.4, shape)
        elif is_bn and last == "bias":
            v = rng.normal(0, 0.1, shape)
        elif last == "running_mean":
            v = rng.normal(0, 0.1, shape)
        elif last == "running_var":
            v = rng.uniform(0.6, 1.6, shape)
        elif last == "h0":
            v = rng.uniform(-0.4, 0.4, shape)
        elif last == "c0":
            v = rng.normal(0, 0.8, shape)
        elif last == "bias":
            v = rng.normal(0, 0.05, shape)
        else:
            if name.startswith("g.dec.") and name[6] in "012":
                fan = shape[0] * shape[2] * shape[3] / 4.0
            else:
                fan = shape[1] * shape[2] * shape[3]
            v = rng.normal(0, 1.1 / np.sqrt(fan), shape)
        w[name] = v.astype(np.float16)
    return w


def write_model(path, w, meta):
    """safetensors, F16, names in reverse order, metadata last."""
    header, blobs, off = {}, [], 0
    for name in sorted(w, reverse=True):
        raw = np.ascontiguousarray(w[name], dtype="<f2").tobytes()
        header[name] = {"data_offsets": [off, off + len(raw)],
                        "shape": list(w[name].shape), "dtype": "F16"}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = meta
    hdr = json.dumps(header, indent=None).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))


def bn_eval(x, w, prefix, eps):
    return F.batch_norm(x, w[prefix + ".running_mean"], w[prefix + ".running_var"],
                        w[prefix + ".weight"], w[prefix + ".bias"], False, 0.0, eps)


def generator(x, w, eps):
    relu = torch.relu
    x = relu(bn_eval(F.conv2d(x, w["g.enc.0.weight"], padding=(0, 3)), w, "g.enc.0.bn", eps))
    x = relu(bn_eval(F.conv2d(x, w["g.enc.1.weight"], padding=(3, 0)), w, "g.enc.1.bn", eps))
    for k in (2, 3, 4):
        x = relu(bn_eval(F.conv2d(x, w["g.enc.%d.weight" % k], stride=2, padding=1),
                         w, "g.enc.%d.bn" % k, eps))

    def res(x, k):
        p = "g.res.%d." % k
        y = relu(bn_eval(F.conv2d(x, w[p + "conv1.weight"], padding=1), w, p + "bn1", eps))
        y = bn_eval(F.conv2d(y, w[p + "conv2.weight"], padding=1), w, p + "bn2", eps)
        return x + y

    for k in range(3):
        x = res(x, k)
    n = x.shape[0]
    h = w["g.mem.h0"].expand(n, -1, -1, -1)
    c = w["g.mem.c0"].expand(n, -1, -1, -1)
    gates = F.conv2d(torch.cat((x, h), dim=1), w["g.mem.weight"], w["g.mem.bias"], padding=1)
    q = gates.shape[1] // 4
    gi, gf, go, gg = (gates[:, j * q:(j + 1) * q] for j in range(4))
    c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
    x = torch.sigmoid(go) * torch.tanh(c)
    for k in range(3, 6):
        x = res(x, k)
    for k in (0, 1, 2):
        x = F.conv_transpose2d(x, w["g.dec.%d.weight" % k], stride=2, padding=1,
                               output_padding=1)
        x = relu(bn_eval(x, w, "g.dec.%d.bn" % k, eps))
    x = relu(bn_eval(F.conv2d(x, w["g.dec.3.weight"], padding=(3, 0)), w, "g.dec.3.bn", eps))
    return torch.tanh(F.conv2d(x, w["g.dec.4.weight"], w["g.dec.4.bias"], padding=(0, 3)))


def markov(x, w, eps, slope):
    x = F.leaky_relu(F.conv2d(x, w["d.0.weight"], w["d.0.bias"], stride=2, padding=1), slope)
    for k, s in ((1, 2), (2, 2), (3, 1)):
        x = F.conv2d(x, w["d.%d.weight" % k], stride=s, padding=1)
        x = F.leaky_relu(bn_eval(x, w, "d.%d.bn" % k, eps), slope)
    x = F.conv2d(x, w["d.4.weight"], w["d.4.bias"], padding=1)
    x = F.conv2d(x, w["d.5.weight"], w["d.5.bias"], padding=1)
    return x.squeeze(1)


def fmd(a, b):
    """contract §4: rows are observations; Tr sqrt via eigenvalues."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    ma, mb = a.mean(0), b.mean(0)
    ca = (a - ma).T @ (a - ma) / (a.shape[0] - 1)
    cb = (b - mb).T @ (b - mb) / (b.shape[0] - 1)
    ev, V = np.linalg.eigh(ca)
    root = V @ np.diag(np.sqrt(np.maximum(ev, 0))) @ V.T
    lam = np.linalg.eigvalsh(root @ cb @ root)
    return float(np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb)
                 - 2 * np.sqrt(np.maximum(lam, 0)).sum())


def inputs(n, c, s, seed):
    """Smooth images in [-1, 1]: sums of a few random plane waves."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:s, 0:s] / float(s)
    x = np.zeros((n, c, s, s))
    for i in range(n):
        for ch in range(c):
            for _ in range(4):
                fy, fx = rng.uniform(-4, 4, 2)
                x[i, ch] += rng.uniform(0.1, 0.3) * np.cos(
                    2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 6.3))
    return np.clip(x, -1, 1).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description="independent MAA model + FMD")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--g-base", type=int, default=4)
    ap.add_argument("--d-base", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    S, C, eps, slope = a.size, a.channels, 1e-5, 0.1
    os.makedirs(a.out, exist_ok=True)
    shapes = names_shapes(S, C, a.g_base, a.d_base)
    w16 = random_weights(shapes, a.seed)
    meta = {"lrelu_slope": "0.1", "bn_eps": "1e-05", "d_base": str(a.d_base),
            "g_base": str(a.g_base), "channels": str(C), "image_size": str(S),
            "version": "1", "format": "maa"}
    write_model(os.path.join(a.out, "indep.safetensors"), w16, meta)
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w16.items()}
    x = inputs(a.batch, C, S, a.seed + 1)
    with torch.no_grad():
        xt = torch.from_numpy(x.astype(np.float64))
        r = generator(xt, w, eps)
        fx, fr = markov(xt, w, eps, slope).numpy(), markov(r, w, eps, slope).numpy()
    arrays = {}
    for name, arr in (("x", x), ("r", r.numpy()), ("fx", fx), ("fr", fr)):
        arr = np.ascontiguousarray(arr, dtype="<f4")
        arr.tofile(os.path.join(a.out, name + ".f32"))
        arrays[name] = {"file": name + ".f32", "shape": list(arr.shape)}
    scores = [fmd(fx[i], fr[i]) for i in range(a.batch)]
    with open(os.path.join(a.out, "indep.json"), "w") as f:
        json.dump({"model": "indep.safetensors",
                   "config": {"image_size": S, "channels": C, "g_base": a.g_base,
                              "d_base": a.d_base, "bn_eps": eps, "lrelu_slope": slope},
                   "batch": a.batch, "markov_size": fx.shape[1],
                   "arrays": arrays, "fmd": scores}, f, indent=1)
    print("indep: %s fmd=%s" % (a.out, ["%.6g" % s for s in scores]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
