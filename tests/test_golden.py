"""The C engine against PyTorch: golden cases from scripts/golden.py (small
S=64 batch 3 with its F16 variant, mono S=64, the default network at S=256)
and a model written by the independent implementation tests/indep_model.py,
checked by build/tests/helper_golden for every CPU backend built in: the
maps r, f(x), f(r) and the FMD, each within a bound set from the error
measured (BOUNDS)."""
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


# Each bound is 10x the largest error measured on the ref and cpu backends
# over the case's images (and small's F16 variant), 2026-12-04 on the 2-core
# development machine; helper_golden prints every error it bounds.  What a
# float32 engine gets wrong against the float64 reference is rounding; 10x
# leaves room for other CPUs' oneDNN kernels and compilers, and is still
# below what an engine off by a term gives: without BN's epsilon in
# engine/ref.c the maps are off by 9.3e-5 (small r), 1.3e-4 (mono r), 1.0e-4
# (default r), the independent model's by 2.2e-5 (r) and 9.1e-6 (f(r)), its
# FMD by 1.2e-4 relative.
#            measured: r        f(x), f(r)  FMD (relative)
#   small              4.3e-6   1.28e-6     3.23e-6
#   mono               4.46e-6  1.32e-6     8.36e-7
#   default            8.64e-6  4.67e-6     8.71e-7
#   indep              8.34e-7  3.2e-7      1.86e-6
# maa_fmd on the reference's own float32 maps (float64 arithmetic, another
# algorithm than scipy's sqrtm): 9.1e-9 relative at most.
BOUNDS = {  # case: (r, f(x) and f(r), FMD relative)
    "small": (4.3e-5, 1.3e-5, 3.3e-5),
    "mono": (4.5e-5, 1.4e-5, 8.4e-6),
    "default": (8.7e-5, 4.7e-5, 8.8e-6),
    "indep": (8.4e-6, 3.2e-6, 1.9e-5),
}
FMD_STORED = 1e-7


def bounds(case):
    r, markov, fmd = BOUNDS[case]
    return ["--maps", repr(r), "--markov", repr(markov), "--fmd", repr(fmd)]


with tempfile.TemporaryDirectory(prefix="maa-golden-") as tmp:
    for case in ("small", "mono", "default"):
        d = os.path.join(tmp, case)
        subprocess.run([PY, os.path.join(ROOT, "scripts", "golden.py"), "--out", d, "--case", case],
                       check=True)
        for b in backends():
            helper(os.path.join(d, "manifest.json"), "--backend", b, *bounds(case),
                   "--fmd-stored", repr(FMD_STORED), "--mask",
                   *(["--variants"] if case == "small" else []))
    d = os.path.join(tmp, "indep")
    subprocess.run([PY, os.path.join(HERE, "indep_model.py"), "--out", d], check=True)
    for b in backends():
        helper(os.path.join(d, "indep.json"), "--backend", b, *bounds("indep"))

print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
