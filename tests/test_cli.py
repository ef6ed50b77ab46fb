"""The maa tool as a user meets it: infer on every supported image format,
bad images reported by name while the others are still judged, batches equal
single runs, model-info, calibrate's refusals and its binding to one model,
eval's report.  Models are random-init from scripts/export_model.py."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAA = os.path.join(ROOT, "build", "maa")
PY = sys.executable
passed = failed = 0


def check(name, ok, msg=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok  ", name)
    else:
        failed += 1
        print("FAIL", name, msg)


def maa(*args):
    return subprocess.run([MAA, *args], capture_output=True, text=True)


def png(path, a):
    """Minimal PNG writer: 8/16-bit gray or RGB from a numpy array."""
    a = np.asarray(a)
    depth = 16 if a.dtype == np.uint16 else 8
    ctype = 0 if a.ndim == 2 else 2
    h, w = a.shape[:2]
    raw = a.astype(">u2" if depth == 16 else "u1").reshape(h, -1).tobytes()
    stride = len(raw) // h
    data = b"".join(b"\0" + raw[i * stride:(i + 1) * stride] for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def ppm(path, a):
    h, w = a.shape[:2]
    with open(path, "wb") as f:
        f.write((b"P6" if a.ndim == 3 else b"P5") + b"\n%d %d\n255\n" % (w, h) + a.astype("u1").tobytes())


def bmp(path, a):
    h, w = a.shape[:2]
    row = (w * 3 + 3) & ~3
    body = b"".join(a[y, :, ::-1].astype("u1").tobytes().ljust(row, b"\0") for y in range(h - 1, -1, -1))
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54)
                + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(body), 2835, 2835, 0, 0) + body)


def plant(link, victim):
    """A symbolic link at link to victim, a new file that must survive: maa
    wrote its outputs with fopen (jansson's json_dump_file, matplotlib's
    savefig), through whatever link stood at the path or at the fixed
    PATH.tmp of a calibration."""
    with open(victim, "w") as f:
        f.write("precious\n")
    os.symlink(victim, link)


def written_beside(path, victim):
    """path was replaced by a regular file, and the victim is intact."""
    return (os.path.isfile(path) and not os.path.islink(path)
            and open(victim, "rb").read() == b"precious\n")


def part(rng, size=80, shift=0.0):
    """A smooth, slightly noisy 'part' so scores vary a little."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.3 * np.sin(6 * x + shift) * np.cos(4 * y)
    img = np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)
    return np.stack([img, img * 0.8, img * 0.6], -1)


def export(out, seed, size=64):
    subprocess.run([PY, os.path.join(ROOT, "scripts", "export_model.py"), "--random", "--size", str(size),
                    "--channels", "3", "--g-base", "4", "--d-base", "8", "--seed", str(seed), "--out", out],
                   check=True, capture_output=True)


with tempfile.TemporaryDirectory(prefix="maa-cli-") as tmp:
    rng = np.random.default_rng(3)
    model, other = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "o.safetensors")
    export(model, 1)
    export(other, 2)

    # Every supported format, plus a missing, a corrupt and an unsupported file.
    imgs = os.path.join(tmp, "imgs")
    os.makedirs(imgs)
    a = (part(rng) * 255).astype(np.uint8)
    paths = {
        "rgb.png": lambda p: png(p, a),
        "gray16.png": lambda p: png(p, (a[..., 0].astype(np.uint16) * 257)),
        "gray.pgm": lambda p: ppm(p, a[..., 0]),
        "rgb.ppm": lambda p: ppm(p, a),
        "rgb.bmp": lambda p: bmp(p, a),
    }
    good = []
    for name, write in paths.items():
        write(os.path.join(imgs, name))
        good.append(os.path.join(imgs, name))
    corrupt = os.path.join(imgs, "corrupt.png")
    with open(good[0], "rb") as f:
        open(corrupt, "wb").write(f.read()[:60])
    unsupported = os.path.join(imgs, "notes.png")
    open(unsupported, "w").write("hello")
    missing = os.path.join(imgs, "missing.png")

    r = maa("infer", "--model", model, "--backend", "ref", good[0], missing, corrupt, *good[1:], unsupported)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    check("infer: one JSON line per readable image, in order",
          [x["image"] for x in lines] == good, r.stdout + r.stderr)
    check("infer: exit status 1 when an image is bad", r.returncode == 1, str(r.returncode))
    check("infer: each bad image named on stderr",
          all(p in r.stderr for p in (missing, corrupt, unsupported)), r.stderr)
    check("infer: scores are finite and non-negative",
          all(np.isfinite(x["score"]) and x["score"] >= 0 for x in lines), r.stdout)
    by = {x["image"]: x["score"] for x in lines}
    check("infer: the same picture as PNG, PPM and BMP scores the same",
          by[good[0]] == by[good[3]] == by[good[4]], str(by))
    check("infer: 8-bit and 16-bit gray of the same picture agree",
          abs(by[good[1]] - by[good[2]]) <= 1e-3 * by[good[2]] + 1e-9, str(by))

    r1 = maa("infer", "--model", model, "--backend", "ref", "--batch", "1", *good)
    r3 = maa("infer", "--model", model, "--backend", "ref", "--batch", "3", *good)
    check("infer: batch 3 gives the scores of batch 1",
          [json.loads(x)["score"] for x in r1.stdout.splitlines()]
          == [json.loads(x)["score"] for x in r3.stdout.splitlines()], r1.stdout + r3.stdout)
    r = maa("infer", "--model", model, "--backend", "warp", good[0])
    check("infer: a bad backend name is refused", r.returncode == 2 and "warp" in r.stderr, r.stderr)
    r = maa("infer", "--model", os.path.join(tmp, "nope.safetensors"), good[0])
    check("infer: a missing model is named", r.returncode != 0 and "nope.safetensors" in r.stderr, r.stderr)

    r = maa("model-info", model)
    import torch  # noqa: E402
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import maa_net  # noqa: E402
    n_params = sum(t.numel() for k, t in maa_net.MAA(64, 3, 4, 8).state_dict().items()
                   if "num_batches_tracked" not in k)
    check("model-info: parameter count equals the PyTorch module's",
          f"parameters:  {n_params}" in r.stdout, r.stdout)
    check("model-info: metadata shown", "format       maa" in r.stdout and "g_base       4" in r.stdout, r.stdout)

    # Calibration: 24 good images; refusals first.
    cal_dir = os.path.join(tmp, "good")
    os.makedirs(cal_dir)
    for i in range(24):
        png(os.path.join(cal_dir, f"{i:03d}.png"), (part(rng, shift=0.05 * i) * 255).astype(np.uint8))
    few = os.path.join(tmp, "few")
    os.makedirs(few)
    for i in range(5):
        png(os.path.join(few, f"{i}.png"), a)
    cal = os.path.join(tmp, "c.yaml")
    r = maa("calibrate", "--model", model, "--images", few, "--out", cal, "--backend", "ref")
    check("calibrate: refuses fewer than 20 images", r.returncode != 0 and "at least 20" in r.stderr, r.stderr)
    mixed = os.path.join(tmp, "mixed")
    os.makedirs(mixed)
    for i in range(21):
        png(os.path.join(mixed, f"{i:03d}.png"), a if i != 7 else a[..., 0])
    r = maa("calibrate", "--model", model, "--images", mixed, "--out", cal, "--backend", "ref")
    check("calibrate: refuses mixed channel counts", r.returncode != 0 and "mixed channel counts" in r.stderr
          and "007.png" in r.stderr, r.stderr)
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    for i in range(21):
        png(os.path.join(bad, f"{i:03d}.png"), a)
    open(os.path.join(bad, "010.png"), "wb").write(b"\x89PNG\r\n\x1a\n junk")
    r = maa("calibrate", "--model", model, "--images", bad, "--out", cal, "--backend", "ref")
    check("calibrate: refuses an unreadable image, naming it", r.returncode != 0 and "010.png" in r.stderr,
          r.stderr)

    hist = os.path.join(tmp, "hist.png")
    victim = os.path.join(tmp, "victim-")
    plant(cal + ".tmp", victim + "cal")
    plant(hist, victim + "hist")
    r = maa("calibrate", "--model", model, "--images", cal_dir, "--out", cal, "--backend", "ref",
            "--gamma", "3", "--plot", hist)
    check("calibrate: succeeds on 24 good images", r.returncode == 0, r.stdout + r.stderr)
    check("calibrate: the calibration is not written through a link at its PATH.tmp",
          written_beside(cal, victim + "cal"), r.stderr)
    check("calibrate: the plot replaces a link at its path", written_beside(hist, victim + "hist"),
          r.stderr)
    text = open(cal).read() if os.path.exists(cal) else ""
    for key in ("mu:", "sigma:", "n:", "gamma:", "threshold:", "normality_stat:", "normality_p:",
                "pixel_threshold:", "model_sha256:"):
        check(f"calibrate: file has {key}", key in text, text)
    check("calibrate: histogram written", os.path.exists(os.path.join(tmp, "hist.png")), r.stderr)

    r = maa("infer", "--model", model, "--calibration", cal, "--backend", "ref", "--masks",
            os.path.join(tmp, "masks"), *good)
    check("infer --masks refuses two images with one stem (rgb.png, rgb.ppm)",
          r.returncode == 2 and "rgb_mask.png" in r.stderr and not r.stdout, r.stderr)
    good = [p for p in good if not p.endswith((".ppm", ".bmp"))]
    os.makedirs(os.path.join(tmp, "masks"))
    plant(os.path.join(tmp, "masks", "rgb_mask.png"), victim + "mask")
    r = maa("infer", "--model", model, "--calibration", cal, "--backend", "ref", "--masks",
            os.path.join(tmp, "masks"), *good)
    check("infer --masks: a mask replaces a link at its path",
          written_beside(os.path.join(tmp, "masks", "rgb_mask.png"), victim + "mask"), r.stderr)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    check("infer with calibration: verdict, threshold, defects",
          lines and all(x["verdict"] in ("pass", "reject") and "threshold" in x and "defects" in x
                        for x in lines), r.stdout + r.stderr)
    check("infer with calibration (rule either): reject exactly when score > threshold "
          "or a defect region is kept, and the evidence says which",
          all(x["rule"] == "either" and
              (x["verdict"] == "reject") == (x["score"] > x["threshold"] or x["defects_total"] > 0)
              and ("score" in x["evidence"]) == (x["score"] > x["threshold"])
              and ("mask" in x["evidence"]) == (x["defects_total"] > 0)
              and (x["defects_total"] == 0 or x["mask_peak"] > x["mask_threshold"])
              for x in lines), r.stdout)
    check("infer --masks writes <name>_mask.png per image",
          sorted(os.listdir(os.path.join(tmp, "masks"))) == sorted(
              os.path.splitext(os.path.basename(p))[0] + "_mask.png" for p in good), r.stderr)
    r = maa("infer", "--model", other, "--calibration", cal, good[0])
    check("infer: a calibration for another model is refused",
          r.returncode != 0 and "calibration was made for the model" in r.stderr and cal in r.stderr, r.stderr)

    # eval on a tiny MVTec-layout set: good parts and 'defects' (a dark blot).
    root = os.path.join(tmp, "set")
    for d in ("test/good", "test/blot", "ground_truth/blot"):
        os.makedirs(os.path.join(root, d))
    for i in range(6):
        png(os.path.join(root, "test/good", f"{i:03d}.png"), (part(rng, shift=0.03 * i) * 255).astype(np.uint8))
        img = part(rng, shift=0.03 * i)
        m = np.zeros(img.shape[:2], np.uint8)
        m[30:46, 20:40] = 255
        img[m > 0] = 0.05
        png(os.path.join(root, "test/blot", f"{i:03d}.png"), (img * 255).astype(np.uint8))
        png(os.path.join(root, "ground_truth/blot", f"{i:03d}_mask.png"), m)
    rep = os.path.join(tmp, "report.json")
    plots = os.path.join(tmp, "plots")
    os.makedirs(plots)
    linked = [rep, *(os.path.join(plots, n) for n in ("report.json", "roc.png", "case0_mask.png"))]
    for i, path in enumerate(linked):
        plant(path, victim + f"eval{i}")
    r = maa("eval", "--model", model, "--calibration", cal, "--data", root, "--json", rep, "--backend", "ref",
            "--plots", plots)
    check("eval: runs", r.returncode == 0, r.stdout + r.stderr)
    for i, path in enumerate(linked):
        check(f"eval: {os.path.relpath(path, tmp)} replaces a link at its path",
              written_beside(path, victim + f"eval{i}"), r.stderr)
    j = json.load(open(rep)) if os.path.exists(rep) else {}
    check("eval: report keys", all(k in j for k in ("image_auroc", "pixel_auroc", "accuracy", "recall",
                                                     "precision", "f1", "per_type")), str(j.keys()))
    check("eval: per-type entries", set(j.get("per_type", {})) == {"good", "blot"}, str(j.get("per_type")))
    check("eval: counts", j.get("n_good") == 6 and j.get("n_defective") == 6, str(j.get("n_good")))
    check("eval: table printed", "image AUROC" in r.stdout and "blot" in r.stdout, r.stdout)
    check("eval: plots", all(os.path.exists(os.path.join(tmp, "plots", f)) for f in
                             ("roc.png", "scores.png", "worst.png")), r.stderr)

    # maa compare's usage errors and refusals (exit 2: no comparison); its
    # numbers and criteria are tests/e2e_pipeline.sh's, on trained models.
    def compare_args(candidate=model, data=root):
        return ["--model", model, "--calibration", cal, "--candidate", candidate,
                "--candidate-calibration", cal, "--data", data, "--backend", "ref"]

    both = compare_args()
    r = maa("compare", "--model", model, "--calibration", cal, "--data", root)
    check("compare: the candidate is required", r.returncode == 2 and "--candidate" in r.stderr
          and "required" in r.stderr, r.stderr)
    for opt, val, why in (("--max-good-rejected-increase", "a bit", "not a number in [-1, 1]"),
                          ("--min-recall-change", "1.5", "not a number in [-1, 1]"),
                          ("--rule", "both", "need either, score or mask")):
        r = maa("compare", *both, opt, val)
        check(f"compare: {opt} {val} refused", r.returncode == 2 and why in r.stderr
              and not r.stdout, r.stderr)
    r = maa("compare", *both, "--camera", os.path.join(tmp, "nope.yaml"))
    check("compare: an unreadable --camera configuration refused",
          r.returncode == 2 and "--camera" in r.stderr and "nope.yaml" in r.stderr, r.stderr)
    r = maa("compare", *both, "--candidate-split", os.path.join(tmp, "nope.split.json"))
    check("compare: a missing --candidate-split refused",
          r.returncode == 2 and "nope.split.json: no such split file" in r.stderr, r.stderr)
    r = maa("compare", *compare_args(data=imgs))
    check("compare: a set without test/<type> refused", r.returncode == 2 and "MVTec" in r.stderr,
          r.stderr)
    r = maa("compare", *compare_args(candidate=other))
    check("compare: a candidate whose calibration is another model's refused",
          r.returncode == 2 and "calibration was made for the model" in r.stderr
          and "refused: the candidate model" in r.stderr, r.stderr)
    r = maa("compare", *both)
    check("compare: a model against itself agrees on every part and may be deployed (exit 0)",
          r.returncode == 0 and "they agree on every part" in r.stdout
          and r.stdout.splitlines()[-1].startswith("recommendation: deploy the candidate")
          and "no split file" in r.stderr, r.stdout + r.stderr)

    # Every numeric option is range-checked where it is parsed, with the
    # option and its range in the message and exit 2: a value that converts
    # with an overflow (--fps 0.0001 became a 32-bit frame period, --timeout
    # 1e30 a deadline in nanoseconds), wraps (--width 4294967360 became 64)
    # or is clamped by strtoll (--count became LLONG_MAX) is refused.
    # watch and fakecam would otherwise run: they get an endpoint and
    # images, and 10 s.
    def refused(name, args, why):
        try:
            r = subprocess.run([MAA, *args], capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            check(name, False, "still running after 10 s")
            return
        check(name, r.returncode == 2 and why in r.stderr and not r.stdout,
              f"exit {r.returncode}: {r.stderr}")

    watch = ["watch", "tcp://127.0.0.1:9"]
    fakecam = ["fakecam", "--images", cal_dir, "--address", "127.0.0.1", "--duration", "5"]
    infer = ["infer", "--model", model, "--backend", "ref", good[0]]
    calibrate = ["calibrate", "--model", model, "--images", cal_dir, "--backend", "ref",
                 "--out", os.path.join(tmp, "refused.yaml")]
    review = ["review", tmp, "-o", os.path.join(tmp, "refused.html")]
    export = ["archive", "export", tmp, os.path.join(tmp, "refused")]
    for args, opt, val, why in (
            (review, "--limit", "0", 'is not an integer in 1..1000000000'),
            (review, "--thumb", "8", 'is not an integer in 16..2048'),
            (review, "--why", "rejected", 'is not reject, uninspected or pass'),
            (review, "--since", "yesterday", 'is not a UTC time'),
            (review, "--until", "2026-13-01", 'is not a UTC time'),
            (export, "--since", "-8h", 'is not a UTC time'),
            (fakecam, "--fps", "0.0001", 'is not a number in [0.01, 1000]'),
            (fakecam, "--fps", "nan", 'is not a number in [0.01, 1000]'),
            (fakecam, "--width", "4294967360", 'is not an integer in 1..2048'),
            (fakecam, "--height", "0", 'is not an integer in 1..2048'),
            (fakecam, "--duration", "-1", 'is not a number in [0, 31536000]'),
            (fakecam, "--duration", "1e400", 'is not a number in [0, 31536000]'),
            (watch, "--timeout", "1e30", 'is not a number in [0.001, 31536000]'),
            (watch, "--timeout", "0", 'is not a number in [0.001, 31536000]'),
            (watch, "--count", "99999999999999999999", 'is not an integer in 1..1000000000000'),
            (watch, "--count", "1.5", 'is not an integer in 1..1000000000000'),
            (infer, "--threads", "4294967296", 'is not an integer in 0..1024'),
            (infer, "--batch", "0", 'is not an integer in 1..256'),
            (calibrate, "--window", "6", 'is not an odd integer in 1..63'),
            (calibrate, "--window", "65", 'is not an integer in 1..63'),
            (calibrate, "--min-area", "1.5", 'is not an integer in 1..1000000'),
            (calibrate, "--gamma", "1e400", 'is not a number in [-10, 100]')):
        refused(f"{args[0]} {opt} {val} refused", [*args, opt, val], f'{opt} "{val}" {why}')

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
