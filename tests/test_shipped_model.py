#!/usr/bin/python3
"""The model `make demo` ships (models/groove): it is the file its SHA256SUMS
names, it loads, its calibration was made for it on the parts it held out
(and comes out the same when made again from regenerated images), and it
rejects a known defective part and passes a known good one."""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL_DIR = os.path.join(ROOT, "models", "groove")
MAA = os.path.join(ROOT, "build", "maa")
PY = "/usr/bin/python3"
# Unseen test parts of the groove view (gen_synth.py --seed 0), chosen from
# models/groove/eval.txt's report: the defective one is rejected by both
# kinds of evidence and the good one is far below both thresholds.
KNOWN_DEFECTIVE = "test/burr/006.png"
KNOWN_GOOD = "test/good/007.png"
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}" + (f": {detail.strip()[-600:]}" if detail else ""))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def calibration(path):
    out = {}
    for line in open(path):
        if line.strip() and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def main():
    if not os.access(MAA, os.X_OK):
        check(False, "build/maa exists (run make first)")
        print(f"{passed} passed, {failed} failed")
        return 1
    sums = [l.split() for l in open(os.path.join(MODEL_DIR, "SHA256SUMS")) if l.strip()]
    bad = [name for digest, name in sums if sha256(os.path.join(MODEL_DIR, name)) != digest]
    check(sums and not bad, "models/groove matches SHA256SUMS", " ".join(bad))
    model = os.path.join(MODEL_DIR, "model.safetensors")
    shipped = calibration(os.path.join(MODEL_DIR, "calibration.yaml"))
    check(shipped.get("model_sha256") == sha256(model),
          "the shipped calibration was made for the shipped model file")
    r = subprocess.run([MAA, "model-info", model], capture_output=True, text=True)
    check(r.returncode == 0 and re.search(r"input:\s+3 x 128 x 128", r.stdout) and
          "F16" in r.stdout, "the model loads: F16, 3 x 128 x 128", r.stdout + r.stderr)
    check(os.path.getsize(model) <= 10 * 1024 * 1024, "the model is at most 10 MB")

    split = json.load(open(os.path.join(MODEL_DIR, "model.split.json")))
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        r = subprocess.run([PY, os.path.join(ROOT, "scripts", "gen_synth.py"), "--out", data,
                            "--view", "groove", "--seed", "0", "--test-good", "8",
                            "--test-defect", "7"], capture_output=True, text=True)
        check(r.returncode == 0, "gen_synth.py regenerates the groove view", r.stderr)
        good = os.path.join(data, "train", "good")
        held = os.path.join(tmp, "held-out")
        os.makedirs(held)
        same = 0
        for e in split["held_out"]:
            src = os.path.join(good, e["file"])
            same += os.path.exists(src) and sha256(src) == e["sha256"]
            if os.path.exists(src):
                os.link(src, os.path.join(held, e["file"]))
        check(same == len(split["held_out"]) >= 20,
              f"the {len(split['held_out'])} held-out parts regenerate byte for byte ({same})")
        cal = os.path.join(tmp, "c.yaml")
        r = subprocess.run([MAA, "calibrate", "--model", model, "--images", held, "--split",
                            os.path.join(MODEL_DIR, "model.split.json"), "--out", cal,
                            "--plot", os.path.join(tmp, "c.png"), "--backend", "cpu",
                            "--gamma", shipped.get("gamma", "3")],
                           capture_output=True, text=True)
        check(r.returncode == 0 and "used to train" not in r.stderr,
              "calibrating again on the held-out parts: no trained-on warning", r.stderr)
        # oneDNN may pick other kernels on another processor: the numbers
        # agree to float32 rounding, not bit for bit.
        again = calibration(cal) if r.returncode == 0 else {}
        diff = {k: (shipped.get(k), again.get(k)) for k in
                ("n", "mu", "sigma", "threshold", "pixel_threshold", "min_region_area")
                if not again.get(k) or
                abs(float(again[k]) - float(shipped[k])) > 1e-4 * abs(float(shipped[k]))}
        check(not diff, "the calibration made again equals the shipped one", str(diff))
        r = subprocess.run([MAA, "infer", "--model", model, "--calibration",
                            os.path.join(MODEL_DIR, "calibration.yaml"), "--backend", "cpu",
                            os.path.join(data, KNOWN_DEFECTIVE), os.path.join(data, KNOWN_GOOD)],
                           capture_output=True, text=True)
        rows = [json.loads(l) for l in r.stdout.splitlines()] if r.returncode == 0 else []
        check(len(rows) == 2 and rows[0]["verdict"] == "reject",
              f"a known defective part ({KNOWN_DEFECTIVE}) is rejected", r.stdout + r.stderr)
        check(len(rows) == 2 and rows[1]["verdict"] == "pass",
              f"a known good part ({KNOWN_GOOD}) passes", r.stdout + r.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
