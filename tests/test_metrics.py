"""maa_auroc against scikit-learn's roc_auc_score and maa_aupro against a
direct NumPy computation, on random data with many ties."""
import os
import subprocess
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

HELPER = os.path.join(os.path.dirname(__file__), "..", "build", "tests", "helper_metrics")
passed = failed = 0


def check(name, ok, msg=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok  ", name)
    else:
        failed += 1
        print("FAIL", name, msg)


def run(scores, labels, regions):
    text = "".join(f"{s!r} {l} {r}\n" for s, l, r in zip(scores, labels, regions))
    out = subprocess.run([HELPER], input=text, capture_output=True, text=True, check=True).stdout
    a, p = out.split()
    return float(a), float(p)


def aupro_ref(scores, regions, limit=0.3):
    """Sweep every distinct threshold; mean per-region overlap vs FPR."""
    ids = [r for r in np.unique(regions) if r]
    neg = regions == 0
    pts = [(0.0, 0.0)]
    for t in np.unique(scores)[::-1]:
        above = scores >= t
        fpr = above[neg].mean()
        pro = np.mean([above[regions == r].mean() for r in ids])
        pts.append((fpr, pro))
    f = np.array([p[0] for p in pts])
    p = np.array([p[1] for p in pts])
    k = np.searchsorted(f, limit)
    if k < len(f):
        pl = p[k - 1] + (limit - f[k - 1]) / (f[k] - f[k - 1]) * (p[k] - p[k - 1]) if f[k] > f[k - 1] else p[k - 1]
        f = np.r_[f[:k], limit]
        p = np.r_[p[:k], pl]
    return np.trapz(p, f) / limit


rng = np.random.default_rng(7)
for trial in range(5):
    n = 400 + 100 * trial
    labels = (rng.random(n) < 0.3).astype(int)
    # Rounded scores make many ties, shifted so the classes overlap.
    scores = np.round(rng.normal(labels * 0.8, 1.0) * 4) / 4
    regions = np.where(labels == 1, rng.integers(1, 6, n), 0)
    a, p = run(scores.astype(np.float32), labels, regions)
    check(f"auroc trial {trial}", abs(a - roc_auc_score(labels, scores)) < 1e-9,
          f"{a} vs {roc_auc_score(labels, scores)}")
    ref = aupro_ref(scores.astype(np.float32), regions)
    check(f"aupro trial {trial}", abs(p - ref) < 1e-6, f"{p} vs {ref}")

a, _ = run(np.array([0.1, 0.2, 0.3], np.float32), [0, 0, 0], [0, 0, 0])
check("auroc of one class is nan", np.isnan(a))
a, _ = run(np.array([1, 2, 3, 4], np.float32), [0, 0, 1, 1], [0, 0, 1, 1])
check("perfect separation", a == 1.0)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
