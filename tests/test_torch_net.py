#!/usr/bin/python3
"""Tests of the PyTorch side: scripts/maa_net.py, maa_io.py, maa_ref.py,
export_model.py, golden.py, train.py and tests/indep_model.py."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import golden  # noqa: E402
import maa_io  # noqa: E402
import maa_net  # noqa: E402
import maa_ref  # noqa: E402
import train  # noqa: E402

PY = sys.executable
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")


def run(cmd, **kw):
    return subprocess.run([PY] + cmd, capture_output=True, text=True, **kw)


def why(r):
    """The end of a failed command's stderr, for the check's message."""
    return "" if r.returncode == 0 else f" (rc {r.returncode}: {r.stderr.strip()[-300:]})"


# contract §2 written out by hand: (layer, weight shape as a function of
# (C, b, a), bias?, bn?).  BN width is the layer's output channels.
def spec_list(S, C, b, a):
    rows = [
        ("g.enc.0", (b, C, 1, 7), b), ("g.enc.1", (2 * b, b, 7, 1), 2 * b),
        ("g.enc.2", (4 * b, 2 * b, 3, 3), 4 * b),
        ("g.enc.3", (8 * b, 4 * b, 3, 3), 8 * b),
        ("g.enc.4", (16 * b, 8 * b, 3, 3), 16 * b),
        ("g.dec.0", (16 * b, 8 * b, 3, 3), 8 * b),
        ("g.dec.1", (8 * b, 4 * b, 3, 3), 4 * b),
        ("g.dec.2", (4 * b, 2 * b, 3, 3), 2 * b),
        ("g.dec.3", (b, 2 * b, 7, 1), b),
        ("d.1", (2 * a, a, 4, 4), 2 * a), ("d.2", (4 * a, 2 * a, 4, 4), 4 * a),
        ("d.3", (8 * a, 4 * a, 4, 4), 8 * a),
    ]
    out = {}
    for name, w, n in rows:
        out[name + ".weight"] = w
        for t in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{t}"] = (n,)
    for k in range(6):
        for j in (1, 2):
            out[f"g.res.{k}.conv{j}.weight"] = (16 * b, 16 * b, 3, 3)
            for t in ("weight", "bias", "running_mean", "running_var"):
                out[f"g.res.{k}.bn{j}.{t}"] = (16 * b,)
    out.update({
        "g.mem.weight": (64 * b, 32 * b, 3, 3), "g.mem.bias": (64 * b,),
        "g.mem.h0": (16 * b, S // 8, S // 8), "g.mem.c0": (16 * b, S // 8, S // 8),
        "g.dec.4.weight": (C, b, 1, 7), "g.dec.4.bias": (C,),
        "d.0.weight": (a, C, 4, 4), "d.0.bias": (a,),
        "d.4.weight": (1, 8 * a, 4, 4), "d.4.bias": (1,),
        "d.5.weight": (1, 1, 4, 4), "d.5.bias": (1,),
    })
    return out


def test_names(tmp):
    for cfg in ((256, 3, 16, 64), (64, 1, 2, 4)):
        S, C, b, a = cfg
        want = spec_list(*cfg)
        sd = maa_net.MAA(S, C, b, a).state_dict()
        got = {k: tuple(v.shape) for k, v in sd.items()}
        check(got == want, f"state_dict names and shapes = the contract for {cfg} "
              f"(extra {sorted(set(got) - set(want))[:3]}, "
              f"missing {sorted(set(want) - set(got))[:3]})")
        check({k: tuple(v) for k, v in maa_io.spec_shapes(*cfg).items()} == want,
              f"maa_io.spec_shapes = the contract for {cfg}")
    n = sum(int(np.prod(s)) for s in spec_list(256, 3, 16, 64).values())
    check(n == 15886453, f"default network holds 15886453 numbers ({n})")


def test_markov_size(tmp):
    for S in (32, 64, 104, 256):
        m = maa_net.MAA(S, 3, 1, 2).eval()
        with torch.no_grad():
            r, fx, fr = m(torch.zeros(2, 3, S, S))
        check(tuple(fx.shape) == (2, S // 8 - 3, S // 8 - 3) and
              tuple(r.shape) == (2, 3, S, S) and m.markov_size == S // 8 - 3,
              f"S={S}: r {tuple(r.shape)}, f(x) {tuple(fx.shape)}")


def test_batch_independent(tmp):
    m = maa_net.MAA(64, 3, 4, 8)
    maa_net.init_test(m, 5)
    m.eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        r3, f3, _ = m(x)
        r1, f1, _ = m(x[1:2])
    # Not bit-equal: the convolution may pick other kernels for other batch
    # sizes; the tolerance is far below what any batch leak would cause.
    check(torch.allclose(r3[1:2], r1, atol=2e-5) and torch.allclose(f3[1:2], f1, atol=2e-5),
          "inference of an image does not depend on the rest of the batch")


def test_roundtrip(tmp):
    p32, p16 = os.path.join(tmp, "m32.safetensors"), os.path.join(tmp, "m16.safetensors")
    r = run([os.path.join(SCRIPTS, "export_model.py"), "--random", "--size", "64",
             "--channels", "3", "--g-base", "4", "--d-base", "8", "--seed", "9",
             "--out", p32])
    check(r.returncode == 0, "export_model.py --random f32" + why(r))
    r = run([os.path.join(SCRIPTS, "export_model.py"), "--random", "--size", "64",
             "--g-base", "4", "--d-base", "8", "--seed", "9", "--dtype", "f16",
             "--out", p16])
    check(r.returncode == 0, "export_model.py --random f16")
    model = maa_net.MAA(64, 3, 4, 8)
    maa_net.init_test(model, 9)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg, t32, dt = maa_io.read_model(p32)
    check(dt == "F32" and all(np.array_equal(t32[k], sd[k]) for k in sd),
          "F32 round trip is exact")
    cfg16, t16, dt16 = maa_io.read_model(p16)
    check(dt16 == "F16" and all(np.array_equal(t16[k], sd[k].astype(np.float16).astype(np.float32))
                                for k in sd), "F16 round trip equals fp16 rounding")
    rel = max(float(np.max(np.abs(t16[k] - sd[k]) / (np.abs(sd[k]) + 1e-4))) for k in sd)
    check(rel < 1e-3, f"F16 relative error {rel:.2e} < 1e-3")
    check(cfg == dict(image_size=64, channels=3, g_base=4, d_base=8, bn_eps=1e-5,
                      lrelu_slope=0.1), f"metadata parsed back: {cfg}")
    with open(p32, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    check(n % 8 == 0 and hdr["__metadata__"] == {
        "format": "maa", "version": "1", "image_size": "64", "channels": "3",
        "g_base": "4", "d_base": "8", "bn_eps": "1e-05", "lrelu_slope": "0.1"},
        "header: metadata strings, length a multiple of 8")
    nt = set(hdr) - {"__metadata__"}
    check(nt == set(sd) and not any("num_batches" in k for k in nt),
          "file holds exactly the contract's tensors")
    spans = sorted(v["data_offsets"] for k, v in hdr.items() if k != "__metadata__")
    check(spans[0][0] == 0 and spans[-1][1] == len(data) - 8 - n and
          all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "data offsets tile the body")

    bad = [("truncated", data[:len(data) - 10]), ("not JSON", data[:8] + b"x" + data[9:]),
           ("short", data[:5])]
    h2 = dict(hdr)
    del h2["g.mem.h0"]
    hb = json.dumps(h2).encode()
    bad.append(("missing g.mem.h0", struct.pack("<Q", len(hb)) + hb + data[8 + n:]))
    h3 = json.loads(json.dumps(hdr))
    h3["d.5.weight"]["shape"] = [1, 1, 2, 8]  # same size, wrong shape
    hb = json.dumps(h3).encode()
    bad.append(("wrong shape", struct.pack("<Q", len(hb)) + hb + data[8 + n:]))
    h4 = json.loads(json.dumps(hdr))
    h4["__metadata__"]["format"] = "other"
    hb = json.dumps(h4).encode()
    bad.append(("bad format", struct.pack("<Q", len(hb)) + hb + data[8 + n:]))
    h5 = json.loads(json.dumps(hdr))
    h5["__metadata__"]["channels"] = "2"
    hb = json.dumps(h5).encode()
    bad.append(("channels 2", struct.pack("<Q", len(hb)) + hb + data[8 + n:]))
    for what, blob in bad:
        p = os.path.join(tmp, "bad.safetensors")
        with open(p, "wb") as f:
            f.write(blob)
        try:
            maa_io.read_model(p)
            check(False, f"reader refuses a file that is {what}")
        except ValueError as e:
            check(True, f"reader refuses a file that is {what}: {e}")
    m2 = maa_io.load_model(p32)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    model.eval()
    with torch.no_grad():
        same = all(torch.equal(a, b) for a, b in zip(model(x), m2(x)))
    check(same, "loaded model computes what the exported one did")


def direct_fmd(A, B):
    """FD written out without scipy: sqrt via an eigendecomposition."""
    A, B = A.astype(np.float64), B.astype(np.float64)
    n = A.shape[0]
    ma, mb = A.sum(0) / n, B.sum(0) / n
    Sa = sum(np.outer(r - ma, r - ma) for r in A) / (n - 1)
    Sb = sum(np.outer(r - mb, r - mb) for r in B) / (n - 1)
    w, V = np.linalg.eigh(Sa)
    ra = V @ np.diag(np.sqrt(np.maximum(w, 0))) @ V.T
    lam = np.linalg.eigvalsh(ra @ Sb @ ra)
    return float(((ma - mb) ** 2).sum() + np.trace(Sa) + np.trace(Sb)
                 - 2 * np.sqrt(np.maximum(lam, 0)).sum())


def direct_varmap(x, r, w):
    e = np.abs(x.astype(np.float64) - r.astype(np.float64)).mean(0)
    H, W = e.shape
    m = np.empty_like(e)
    h = w // 2
    for i in range(H):
        for j in range(W):
            p = e[max(0, i - h):i + h + 1, max(0, j - h):j + h + 1]
            v = (p * p).mean() - p.mean() ** 2
            m[i, j] = v * v
    return m


def test_fmd_ref(tmp):
    # 29 observations of 29-vectors, as for S = 256: the covariances are
    # singular, and the trace of a matrix square root there is only good to
    # about sqrt(machine epsilon) (an eigenvalue of 1e-16 has root 1e-8),
    # whichever way it is computed; full-rank cases agree to rounding.
    rng = np.random.default_rng(1)
    A = rng.standard_normal((29, 29))
    tr = np.trace(np.cov(A, rowvar=False))
    check(abs(maa_ref.fmd(A, A)) < 1e-8 * tr, "FMD(F, F) = 0 (sqrtm)")
    check(abs(maa_ref.fmd_eig(A, A)) < 1e-8 * tr, "FMD(F, F) = 0 (eig)")
    check(abs(maa_ref.fmd(A, A + 0.5) - 29 * 0.25) < 1e-8 * tr, "FMD of a shift = |shift|^2")
    B = rng.standard_normal((29, 29)) * 1.5 + 0.2
    f, d = maa_ref.fmd(A, B), direct_fmd(A, B)
    check(abs(f - d) < 1e-8 * abs(d), f"FMD scipy {f:.12g} = direct {d:.12g}")
    check(abs(maa_ref.fmd_eig(A, B) - d) < 1e-8 * abs(d), "FMD eig form = direct")
    A, B = rng.standard_normal((60, 20)), rng.standard_normal((60, 20)) * 0.7
    f, d = maa_ref.fmd(A, B), direct_fmd(A, B)
    check(abs(f - d) < 1e-11 * abs(d) and abs(maa_ref.fmd_eig(A, B) - d) < 1e-11 * abs(d),
          "FMD scipy = eig = direct, full-rank covariances")
    # One column: the 1-D Fréchet distance (mu1-mu2)^2 + (s1-s2)^2.
    a, b = rng.standard_normal((10, 1)), rng.standard_normal((10, 1)) * 2
    want = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    check(abs(maa_ref.fmd(a, b) - want) < 1e-10, "1-D FMD = (mu1-mu2)^2 + (s1-s2)^2")


def test_golden(tmp):
    d = os.path.join(tmp, "golden")
    r = run([os.path.join(SCRIPTS, "golden.py"), "--out", d, "--case", "small"])
    check(r.returncode == 0, "golden.py --case small" + why(r))
    man = json.load(open(os.path.join(d, "manifest.json")))
    A = {k: np.fromfile(os.path.join(d, v["file"]), "<f4").reshape(v["shape"])
         for k, v in man["arrays"].items()}
    N, M = man["batch"], man["markov_size"]
    check(N == 3 and M == 5 and A["x"].shape == (3, 3, 64, 64) and A["fx"].shape == (3, 5, 5),
          "small case: batch 3, Markov 5x5")
    check(A["x"].min() >= -1 and A["x"].max() <= 1 and A["x"].std() > 0.1, "inputs in [-1, 1], not flat")
    for i in range(N):
        d0 = direct_fmd(A["fx"][i], A["fr"][i])
        check(abs(man["fmd_stored"][i] - d0) <= 1e-7 * abs(d0) + 1e-12,
              f"golden fmd_stored[{i}] {man['fmd_stored'][i]:.10g} = direct {d0:.10g}")
        check(abs(man["fmd"][i] - man["fmd_eig"][i]) <= 1e-6 * abs(d0) and
              abs(man["fmd"][i] - d0) <= 1e-5 * abs(d0), f"golden fmd[{i}] consistent")
        check(man["fmd"][i] > 1e-3, f"golden fmd[{i}] = {man['fmd'][i]:.4g} is not trivial")
    m1 = direct_varmap(A["x"][1], A["r"][1], 7)
    check(np.allclose(A["m"][1], m1, rtol=1e-5, atol=1e-12) and m1.max() > 0,
          "golden mask map = direct windowed variance squared")
    model = maa_io.load_model(os.path.join(d, man["model"]))
    with torch.no_grad():
        r32, fx32, fr32 = (t.numpy() for t in model(torch.from_numpy(A["x"])))
    check(np.abs(r32 - A["r"]).max() < 1e-4 and np.abs(fx32 - A["fx"]).max() < 1e-4,
          "float32 network reproduces the float64 golden r and f(x)")
    v = man["variants"][0]
    check(v["dtype"] == "F16" and maa_io.read_model(os.path.join(d, v["model"]))[2] == "F16",
          "small case has an F16 variant")
    rel = max(abs(a - b) / b for a, b in zip(v["fmd"], man["fmd"]))
    check(0 < rel < 0.05, f"F16 FMD within {rel:.2e} of F32")


def test_indep(tmp):
    d = os.path.join(tmp, "indep")
    r = run([os.path.join(HERE, "indep_model.py"), "--out", d])
    check(r.returncode == 0, "indep_model.py" + why(r))
    man = json.load(open(os.path.join(d, "indep.json")))
    A = {k: np.fromfile(os.path.join(d, v["file"]), "<f4").reshape(v["shape"])
         for k, v in man["arrays"].items()}
    with open(os.path.join(d, man["model"]), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        keys = list(json.loads(f.read(n)))
    check(keys[0] == "g.res.5.conv2.weight" and keys[-1] == "__metadata__",
          "indep file: reverse key order, metadata last")
    model = maa_io.load_model(os.path.join(d, man["model"]))
    with torch.no_grad():
        rr, fx, fr = (t.numpy() for t in model(torch.from_numpy(A["x"])))
    check(np.abs(rr - A["r"]).max() < 1e-4 and np.abs(fx - A["fx"]).max() < 1e-4,
          "maa_net agrees with the independent implementation")
    f = [maa_ref.fmd(fx[i], fr[i]) for i in range(man["batch"])]
    rel = max(abs(a - b) / b for a, b in zip(f, man["fmd"]))
    check(rel < 1e-4, f"FMD agrees with the independent one ({rel:.1e})")


def png_bytes(img):
    """A minimal 8-bit PNG (gray or RGB) encoder."""
    h, w = img.shape[:2]
    ch = 1 if img.ndim == 2 else img.shape[2]
    raw = b"".join(b"\0" + img[y].tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if ch == 1 else 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_augment(tmp):
    x = torch.rand(6, 3, 8, 8) * 1.8 - 0.9  # away from the clamp at +-1
    out, states = {}, {}
    for kind in train.AUGMENTS:
        gen = torch.Generator().manual_seed(7)
        out[kind] = train.augment(x, gen, kind)
        states[kind] = gen.get_state()
    check(all(torch.equal(states[k], states["d4"]) for k in train.AUGMENTS),
          "every --augment kind draws the same random numbers")
    check(torch.equal(out["none"], x), "--augment none leaves the images as they are")
    shift = (out["brightness"] - x).flatten(1)
    check(float((shift.max(1).values - shift.min(1).values).max()) < 1e-6 and
          float(shift.abs().max()) <= train.BRIGHTNESS + 1e-6 and
          float(shift.abs().max()) > 0,
          "--augment brightness adds one shift per image, within +-BRIGHTNESS")
    turned = 0
    for i in range(x.shape[0]):
        plain = x[i] + shift[i, 0]
        poses = [torch.rot90(plain, k, (1, 2)) for k in range(4)]
        poses += [torch.flip(p, (2,)) for p in poses]
        match = [j for j, p in enumerate(poses) if torch.allclose(out["d4"][i], p, atol=1e-6)]
        check(len(match) >= 1, f"--augment d4 image {i} is a turn/flip of its shifted input")
        turned += bool(match) and match[0] != 0
    check(turned > 0, "--augment d4 turns or flips some of the images")


def test_train(tmp):
    good = os.path.join(tmp, "ds", "train", "good")
    os.makedirs(good)
    os.makedirs(os.path.join(tmp, "ds", "test", "bad"))
    rng = np.random.default_rng(3)
    for i in range(5):
        img = (rng.uniform(0, 255, (40, 48, 3))).astype(np.uint8)
        with open(os.path.join(good, f"{i}.png"), "wb") as f:
            f.write(png_bytes(img))
    gray = rng.uniform(0, 255, (36, 36)).astype(np.uint8)
    with open(os.path.join(good, "g.ppm"), "wb") as f:
        f.write(b"P6 36 36 255\n" + np.repeat(gray[:, :, None], 3, 2).tobytes())
    with open(os.path.join(good, "notes.txt"), "w") as f:
        f.write("not an image\n")
    base = ["--data", os.path.join(tmp, "ds"), "--size", "32", "--g-base", "2",
            "--d-base", "4", "--batch", "2", "--seed", "4", "--device", "cpu",
            "--augment", "brightness"]
    out1, w1 = os.path.join(tmp, "a.safetensors"), os.path.join(tmp, "wa")
    r = run([os.path.join(SCRIPTS, "train.py")] + base +
            ["--out", out1, "--workdir", w1, "--iters", "4"])
    check(r.returncode == 0, "train.py 4 iterations" + why(r))
    check("iter 4/4" in r.stderr, "progress line reaches iter 4/4")
    rows = open(os.path.join(w1, "loss.csv")).read().split()
    check(rows[0].startswith("iter,loss_d,loss_g,l_con,l_adv") and len(rows) == 5,
          f"loss.csv has a header and 4 rows ({len(rows) - 1})")
    png = open(os.path.join(w1, "loss.png"), "rb").read(8)
    check(png == b"\x89PNG\r\n\x1a\n", "loss.png written")
    cfg, t, _ = maa_io.read_model(out1)
    check(cfg["image_size"] == 32 and cfg["g_base"] == 2, "model file written with the run's config")
    check(np.abs(t["g.mem.h0"]).max() > 0, "memory h0 learned (not the zero initial state)")

    ex = os.path.join(tmp, "ex.safetensors")
    r = run([os.path.join(SCRIPTS, "export_model.py"), "--ckpt",
             os.path.join(w1, "ckpt.pt"), "--out", ex])
    check(r.returncode == 0 and open(ex, "rb").read() == open(out1, "rb").read(),
          "export_model.py --ckpt gives the file train.py wrote" + why(r))

    out2, w2 = os.path.join(tmp, "b.safetensors"), os.path.join(tmp, "wb")
    r = run([os.path.join(SCRIPTS, "train.py")] + base +
            ["--out", out2, "--workdir", w2, "--iters", "2"])
    r = run([os.path.join(SCRIPTS, "train.py"), "--data", os.path.join(tmp, "ds"),
             "--out", out2, "--workdir", w2, "--iters", "4", "--device", "cpu",
             "--resume", os.path.join(w2, "ckpt.pt")])
    check(r.returncode == 0 and "iter 4/4" in r.stderr and "iters 2->4" in r.stderr,
          "--resume continues from iteration 2 to 4" + why(r))
    rows2 = open(os.path.join(w2, "loss.csv")).read().split()
    check([x.split(",")[0] for x in rows2[1:]] == ["1", "2", "3", "4"],
          "resumed loss.csv holds iterations 1..4")
    _, t2, _ = maa_io.read_model(out2)
    diff = max(float(np.abs(t[k] - t2[k]).max()) for k in t)
    check(diff < 1e-5, f"2 + resumed 2 iterations (with the checkpoint's --augment) = 4 "
          f"straight (max diff {diff:.1e})")
    r = run([os.path.join(SCRIPTS, "train.py")] + base +
            ["--out", out2, "--workdir", w2, "--iters", "3",
             "--resume", os.path.join(w2, "ckpt.pt")])
    check(r.returncode != 0 and "already at 4" in r.stderr,
          "resume to fewer iterations than done is refused")
    r = run([os.path.join(SCRIPTS, "train.py"), "--data", os.path.join(tmp, "nope"),
             "--out", out2, "--iters", "1"])
    check(r.returncode != 0 and "train/good" in r.stderr, "missing ROOT/train/good is reported")


def gen_set(root, n_good, seed):
    """A small gray synthetic set (scripts/gen_synth.py, 64 px)."""
    r = run([os.path.join(SCRIPTS, "gen_synth.py"), "--out", root, "--size", "64",
             "--channels", "1", "--train-good", str(n_good), "--test-good", "2",
             "--test-defect", "1", "--seed", str(seed)])
    assert r.returncode == 0, r.stderr


TINY = ["--size", "32", "--channels", "1", "--g-base", "2", "--d-base", "4", "--batch", "8",
        "--device", "cpu", "--seed", "3"]


def test_holdout(tmp):
    """The held-out images never reach training: two runs whose data differ
    only in the held-out images' content train the same model bit for bit
    (the collapse check reconstructs them, without gradients)."""
    d1, d2 = os.path.join(tmp, "d1"), os.path.join(tmp, "d2")
    gen_set(d1, 30, 1)
    gen_set(d2, 30, 1)
    out1, out2 = os.path.join(tmp, "m1.safetensors"), os.path.join(tmp, "m2.safetensors")
    r = run([os.path.join(SCRIPTS, "train.py"), "--data", d1, "--out", out1, "--iters", "6",
             "--check-every", "2"] + TINY)
    check(r.returncode == 0 and "6 held out for calibration" in r.stderr,
          "train.py holds out a fifth of 30 images" + why(r))
    split = json.load(open(os.path.join(tmp, "m1.split.json")))
    held = [e["file"] for e in split["held_out"]]
    trained = [e["file"] for e in split["trained"]]
    check(len(held) == 6 and len(trained) == 24 and not set(held) & set(trained) and
          sorted(held + trained) == sorted(os.listdir(os.path.join(d1, "train", "good"))),
          "the split file names every image once, held out or trained")
    good2 = os.path.join(d2, "train", "good")
    noise = np.random.default_rng(9).integers(0, 256, (64, 64), dtype=np.uint8)
    for f in held:
        with open(os.path.join(good2, f), "wb") as fh:
            fh.write(png_bytes(noise))
    r2 = run([os.path.join(SCRIPTS, "train.py"), "--data", d2, "--out", out2, "--iters", "6",
              "--check-every", "2"] + TINY)
    same = r2.returncode == 0 and open(out1, "rb").read() == open(out2, "rb").read()
    check(same, "held-out images replaced by noise: the same model, bit for bit" + why(r2))
    checks1 = open(os.path.join(tmp, "m1.train", "checks.csv")).read()
    checks2 = open(os.path.join(tmp, "m2.train", "checks.csv")).read()
    check(checks1 != checks2, "... while the held-out reconstruction error (checks.csv) differs, "
          "so the held-out images were read")
    r = run([os.path.join(SCRIPTS, "train.py"), "--data", d1, "--out", out1, "--iters", "8",
             "--resume", os.path.join(tmp, "m1.train", "ckpt.pt"), "--device", "cpu"])
    split2 = json.load(open(os.path.join(tmp, "m1.split.json")))
    check(r.returncode == 0 and [e["file"] for e in split2["held_out"]] == held,
          "a resumed run keeps the held-out set" + why(r))
    r = run([os.path.join(SCRIPTS, "train.py"), "--data", d1, "--out", out1, "--iters", "1",
             "--holdout", "1.5"] + TINY)
    check(r.returncode == 2 and "--holdout 1.5" in r.stderr, "--holdout outside [0, 1) is refused")


def test_collapse(tmp):
    """The collapse check fires on a run forced to collapse (a discriminator
    learning rate 20 times the default) and stays quiet on a healthy one."""
    d = os.path.join(tmp, "d")
    gen_set(d, 60, 1)
    common = [os.path.join(SCRIPTS, "train.py"), "--data", d, "--iters", "60",
              "--check-every", "10", "--holdout", "0.34"] + TINY
    out = os.path.join(tmp, "bad.safetensors")
    r = run(common + ["--out", out, "--lr-d", "1e-2"])
    check(r.returncode == 3 and "train: COLLAPSE: discriminator loss" in r.stderr and
          "WARNING: the training collapsed" in r.stderr and os.path.exists(out),
          f"--lr-d 1e-2: collapse said in the progress and at the end, exit status 3, "
          f"the model kept for inspection (rc {r.returncode})")
    rows = list(csv_rows(os.path.join(tmp, "bad.train", "checks.csv")))
    check(len(rows) == 6 and any(r["collapse"] == "1" for r in rows),
          "checks.csv has a row per check, the collapse marked")
    r = run(common + ["--out", os.path.join(tmp, "good.safetensors")])
    check(r.returncode == 0 and "COLLAPSE" not in r.stderr and "WARNING" not in r.stderr,
          "a healthy run of the same size: no collapse warning" + why(r))


def test_recipe(tmp):
    """The default recipe, --paper's literal loss, and explicit options
    winning over either, as the run records them."""
    d = os.path.join(tmp, "d")
    gen_set(d, 10, 2)
    want = {(): (5e-4, 0.1, 0.1, 10.0), ("--paper",): (1e-4, 1.0, 1.0, 0.0),
            ("--paper", "--pixel-l1", "3"): (1e-4, 1.0, 1.0, 3.0)}
    for i, (extra, vals) in enumerate(want.items()):
        out = os.path.join(tmp, f"m{i}.safetensors")
        r = run([os.path.join(SCRIPTS, "train.py"), "--data", d, "--out", out, "--iters", "1",
                 "--holdout", "0"] + TINY + list(extra))
        hp = json.load(open(os.path.join(tmp, f"m{i}.train", "train.json")))["hparams"] \
            if r.returncode == 0 else {}
        got = tuple(hp.get(k) for k in ("lr", "lambda_adv", "lambda_con", "pixel_l1"))
        check(got == vals, f"train.py {' '.join(extra) or '(defaults)'}: lr, lambda_adv, "
              f"lambda_con, pixel_l1 = {got}" + why(r))


def csv_rows(path):
    import csv
    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def main():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tests = [test_names, test_markov_size, test_batch_independent, test_roundtrip,
             test_fmd_ref, test_golden, test_indep, test_augment, test_train, test_holdout,
             test_collapse, test_recipe]
    with tempfile.TemporaryDirectory() as tmp:
        for t in tests:
            d = os.path.join(tmp, t.__name__)
            os.makedirs(d)
            try:
                t(d)
            except Exception:
                traceback.print_exc()
                check(False, f"{t.__name__} raised")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
