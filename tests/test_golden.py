"""The C engine against PyTorch: golden cases from scripts/golden.py (small
S=64 batch 3 with its F16 variant, mono S=64, the default network at S=256)
and a model written by the independent implementation tests/indep_model.py,
checked by build/tests/helper_golden for every CPU backend built in."""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HELPER = os.path.join(ROOT, "build", "tests", "helper_golden")
PY = sys.executable
passed = failed = skipped = 0


def helper(manifest, *args):
    global passed, failed, skipped
    r = subprocess.run([HELPER, manifest, *args], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    m = re.search(r"^(\d+) passed, (\d+) failed", r.stdout, re.M)
    if not m:
        failed += 1
        print("FAIL helper_golden", manifest, args, "gave no summary, exit", r.returncode)
        return
    passed += int(m.group(1))
    failed += int(m.group(2))
    s = re.search(r"^\d+ passed, \d+ failed, (\d+) skipped", r.stdout, re.M)
    skipped += int(s.group(1)) if s else 0


def backends():
    """The CPU backends (cuda is checked on the GPU machine); helper_golden
    reports one that is not built in as skipped."""
    return ["ref", "cpu"]


with tempfile.TemporaryDirectory(prefix="maa-golden-") as tmp:
    for case in ("small", "mono", "default"):
        d = os.path.join(tmp, case)
        subprocess.run([PY, os.path.join(ROOT, "scripts", "golden.py"), "--out", d, "--case", case],
                       check=True)
        for b in backends():
            # The default network is slow on the reference backend: once.
            helper(os.path.join(d, "manifest.json"), "--backend", b, "--maps", "1e-4",
                   "--fmd", "1e-5", "--fmd-stored", "1e-5", "--mask",
                   *(["--variants"] if case == "small" else []))
    d = os.path.join(tmp, "indep")
    subprocess.run([PY, os.path.join(HERE, "indep_model.py"), "--out", d], check=True)
    for b in backends():
        helper(os.path.join(d, "indep.json"), "--backend", b, "--fmd", "1e-3")

print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
