#!/usr/bin/python3
"""Train an MAA model on defect-free images (paper Algorithm 1) and write the
model file (contract §3).  See docs/training.md.

  train.py --data ROOT --out MODEL.safetensors [--size 256] [--channels 3]
           [--g-base 16] [--d-base 64] [--iters N | --epochs E] [--batch 32]
           [--paper] [--lambda-adv 0.1] [--lambda-con 0.1] [--pixel-l1 10]
           [--augment d4] [--lr 5e-4] [--lr-d LR] [--holdout 0.2]
           [--check-every 100] [--device auto]
           [--seed 0] [--resume CKPT] [--ckpt-every 500] [--workdir DIR]

ROOT is an MVTec-AD style folder; only ROOT/train/good is used.  A fraction
of it (--holdout) is set aside, never trained on, for `maa calibrate`; the
names and SHA-256 of both parts go to MODEL.split.json.  The rest is split
at random into halves A and B; G reconstructs A, the discriminator sees B
(real) and G(A) (fake):
  D:  BCE(f(x_b), 1) + BCE(f(G(x_a)), 0)
  G:  lambda_con * L_con + lambda_adv * L_adv + w_pix * |x_a - G(x_a)|_1
      L_con = mean |f(x_b) - f(G(x_a))|,  L_adv = BCE(f(G(x_a)), 1)
f is the d.5 patch map (logits).  The ConvLSTM state is carried from one
iteration to the next (detached); the model file stores its mean over the
batch as g.mem.h0 / g.mem.c0.  --paper is the paper's literal loss
(lambdas 1, no pixel term, lr 1e-4); the default recipe reconstructs the
input first (docs/training.md says why).

Every --check-every iterations the inference model of the moment
reconstructs the held-out images; a collapse (the discriminator winning
outright while the consistency loss climbs, or the held-out reconstruction
error rising well above its best) is flagged in the progress line and at
the end, and the run exits with status 3 (the model is still written, for
inspection).
"""
import argparse
import csv
import hashlib
import json
import math
import os
import pickle
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import maa_io  # noqa: E402
import maa_net  # noqa: E402
import maa_ref  # noqa: E402

IMAGE_EXT = (".png", ".bmp", ".ppm", ".pgm", ".pnm")
CSV_FIELDS = ["iter", "loss_d", "loss_g", "l_con", "l_adv", "l_pix", "seconds"]
CHECK_FIELDS = ["iter", "loss_d_mean", "l_con_mean", "heldout_l1", "collapse"]
BRIGHTNESS = 0.05  # +- additive jitter in [-1, 1] units


class TrainError(Exception):
    pass


def load_image(path, S, C):
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr, maxval = np.array(im).astype(np.int64), 65535
        else:
            if im.mode not in ("L", "RGB", "RGBA", "LA"):
                im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB")
            arr, maxval = np.array(im), 255
    try:
        return maa_ref.preprocess(arr, S, C, maxval).astype(np.float32)
    except ValueError as e:
        raise TrainError(f"{path}: {e}") from None


def good_dir(root):
    return os.path.join(root, "train", "good")


def list_good(root):
    d = good_dir(root)
    if not os.path.isdir(d):
        raise TrainError(f"{d}: no such folder (need ROOT/train/good)")
    return sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXT))


def load_images(root, files, S, C):
    d = good_dir(root)
    return torch.from_numpy(np.stack([load_image(os.path.join(d, f), S, C)
                                      for f in files]))


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_split(path, root, files, held, trained, hp):
    """MODEL.split.json: which images of ROOT/train/good the model was
    trained on and which were held out for calibration, by name and by
    content (SHA-256), so that `maa calibrate` can use exactly the held-out
    ones and notice trained ones under any name."""
    d = os.path.abspath(good_dir(root))
    doc = {"format": "maa-split", "version": 1, "images": d,
           "holdout_fraction": hp["holdout"], "seed": hp["seed"],
           "held_out": [{"file": files[i], "sha256": file_sha256(os.path.join(d, files[i]))}
                        for i in held],
           "trained": [{"file": files[i], "sha256": file_sha256(os.path.join(d, files[i]))}
                       for i in trained]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def split_path(out):
    return os.path.splitext(out)[0] + ".split.json"


def choose_holdout(n, fraction, gen):
    """Indices held out (sorted) and the rest, drawn once from the seed.  At
    least two images stay for training (one for A, one for B)."""
    k = int(round(fraction * n)) if fraction > 0 else 0
    k = min(k, n - 2)
    perm = torch.randperm(n, generator=gen)
    return perm[:k].sort().values, perm[k:].sort().values


AUGMENTS = ("d4", "brightness", "none")


def augment(x, gen, kind):
    """Per image, for kind "d4": a random multiple of 90 degrees and a random
    horizontal flip (together the 8 symmetries of the square), then for "d4"
    and "brightness" a brightness shift in [-BRIGHTNESS, BRIGHTNESS].  The
    random draws are the same whatever the kind, so that only the images
    change between runs that differ in kind alone."""
    n = x.shape[0]
    rot = torch.randint(0, 4, (n,), generator=gen).tolist()
    flip = torch.randint(0, 2, (n,), generator=gen).tolist()
    shift = (torch.rand(n, generator=gen) * 2 - 1) * BRIGHTNESS
    if kind == "none":
        return x
    if kind == "d4":
        out = []
        for i in range(n):
            xi = torch.rot90(x[i], rot[i], (1, 2))
            out.append(torch.flip(xi, (2,)) if flip[i] else xi)
        x = torch.stack(out)
    return (x + shift.view(n, 1, 1, 1)).clamp(-1, 1)


# Collapse criteria, measured per check interval (docs/training.md).  The
# discriminator "wins" when its mean loss is below D_WIN (BCE of two terms:
# 0.05 means it tells real from fake with ~99% confidence on every patch);
# the consistency loss "climbs" when its interval mean exceeds CLIMB times
# the lowest interval mean so far; the held-out reconstruction error "rises"
# when it exceeds RISE times its best.  A flag must hold at PERSIST checks
# in a row, so that one noisy interval does not cry wolf.
D_WIN = 0.05
CLIMB = 1.5
RISE = 1.5
PERSIST = 2


class CollapseWatch:
    """Keeps the per-interval means and the held-out error and says, at each
    check, whether the training looks collapsed and why."""

    def __init__(self, state=None):
        s = state or {}
        self.con_min = s.get("con_min", math.inf)
        self.l1_best = s.get("l1_best", math.inf)
        self.streak = s.get("streak", 0)
        self.events = s.get("events", [])
        self.sum_d = self.sum_con = 0.0
        self.count = 0

    def state(self):
        return {"con_min": self.con_min, "l1_best": self.l1_best,
                "streak": self.streak, "events": self.events}

    def add(self, loss_d, l_con):
        self.sum_d += loss_d
        self.sum_con += l_con
        self.count += 1

    def check(self, it, heldout_l1):
        """Returns (row for checks.csv, reason or None)."""
        d = self.sum_d / max(self.count, 1)
        con = self.sum_con / max(self.count, 1)
        self.sum_d = self.sum_con = 0.0
        self.count = 0
        why = []
        if d < D_WIN and con > CLIMB * self.con_min:
            why.append(f"discriminator loss {d:.3g} < {D_WIN} while the consistency "
                       f"loss climbed to {con:.3g} ({con / self.con_min:.1f}x its low)")
        if heldout_l1 > RISE * self.l1_best:
            why.append(f"held-out reconstruction error {heldout_l1:.3g} is "
                       f"{heldout_l1 / self.l1_best:.1f}x its best ({self.l1_best:.3g})")
        self.con_min = min(self.con_min, con)
        self.l1_best = min(self.l1_best, heldout_l1)
        self.streak = self.streak + 1 if why else 0
        reason = "; ".join(why) if self.streak >= PERSIST else None
        if reason:
            self.events.append({"iter": it, "reason": reason})
        return ({"iter": it, "loss_d_mean": d, "l_con_mean": con,
                 "heldout_l1": heldout_l1, "collapse": int(reason is not None)}, reason)


def heldout_l1(model, state, images, dev, batch):
    """Mean |x - G(x)| of the inference model of the moment (eval-mode BN,
    the memory as the model file would store it) over the held-out images."""
    g = model.g
    was = g.training
    g.eval()
    h0, c0 = g.mem.h0.clone(), g.mem.c0.clone()
    with torch.no_grad():
        g.mem.h0.copy_(state[0].mean(0))
        g.mem.c0.copy_(state[1].mean(0))
        total = 0.0
        for i in range(0, images.shape[0], batch):
            x = images[i:i + batch].to(dev)
            total += float((x - g(x)[0]).abs().mean((1, 2, 3)).sum())
        g.mem.h0.copy_(h0)
        g.mem.c0.copy_(c0)
    g.train(was)
    return total / images.shape[0]


def model_from_checkpoint(path):
    """The inference model of a checkpoint: its weights, and the carried
    ConvLSTM state reduced over the batch by the mean as h0, c0."""
    ck = torch_load(path)
    model = maa_net.MAA(**ck["config"])
    model.load_state_dict(ck["model"])
    with torch.no_grad():
        model.g.mem.h0.copy_(ck["h"].mean(0))
        model.g.mem.c0.copy_(ck["c"].mean(0))
    return model.eval()


def torch_load(path):
    """A checkpoint, loaded without unpickling code (weights_only).  Only
    tensors, ints and strings go into the pickle, because PyTorch 1.13's
    weights-only unpickler cannot read floats; everything else is JSON."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(ck.pop("meta"))
    except (OSError, RuntimeError, KeyError, ValueError,
            pickle.UnpicklingError) as e:
        raise TrainError(f"{path}: not a train.py checkpoint ({e})") from None
    ck.update(meta)
    for k in ("opt_g", "opt_d"):
        ck[k] = {"state": ck.pop(k + "_state"), "param_groups": meta[k + "_groups"]}
    return ck


def save_checkpoint(path, ck):
    ck = dict(ck)
    meta = {k: ck.pop(k) for k in ("config", "hparams", "total", "iter", "files", "watch")}
    for k in ("opt_g", "opt_d"):
        sd = ck.pop(k)
        ck[k + "_state"] = sd["state"]
        meta[k + "_groups"] = sd["param_groups"]
    ck["meta"] = json.dumps(meta)
    ck = {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in ck.items()}
    tmp = path + ".tmp"
    torch.save(ck, tmp)
    os.replace(tmp, path)


class Progress:
    """A plain progress line on stderr: redrawn in place on a terminal,
    a line every ~10 s otherwise."""

    def __init__(self, start, total):
        self.start, self.total = start, total
        self.t0 = time.time()
        self.last = 0.0
        self.tty = sys.stderr.isatty()
        self.heldout = None
        self.collapsed = None

    def flag(self, reason):
        """A collapse found at a check: said at once on its own line, then
        kept in every progress line while it lasts."""
        if reason and not self.collapsed:
            sys.stderr.write(("\n" if self.tty else "") +
                             f"train: COLLAPSE: {reason}\n")
        self.collapsed = reason

    def update(self, it, losses, force=False):
        now = time.time()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        done = it - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - it) / rate if rate > 0 else 0
        width = 24
        fill = int(width * it / max(self.total, 1))
        bar = "=" * fill + (">" if fill < width else "") + " " * (width - fill - 1)
        line = (f"iter {it}/{self.total} [{bar[:width]}] D {losses['loss_d']:.4f} "
                f"G {losses['loss_g']:.4f} (con {losses['l_con']:.4f} "
                f"adv {losses['l_adv']:.4f})"
                + (f" held-out L1 {self.heldout:.4f}" if self.heldout is not None else "")
                + (" COLLAPSED" if self.collapsed else "")
                + f" {rate:.2f} it/s ETA {_hms(eta)}")
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\n")


def _hms(s):
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def plot_losses(csv_path, checks_path, png_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = read_csv(csv_path)
    if not rows:
        return
    it = np.array([r["iter"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    checks = read_csv(checks_path)
    if checks:
        ci = [r["iter"] for r in checks]
        ax.plot(ci, [r["heldout_l1"] for r in checks], "k.-", label="held-out L1")
        bad = [r for r in checks if r["collapse"]]
        if bad:
            ax.plot([r["iter"] for r in bad], [r["heldout_l1"] for r in bad], "rx",
                    markersize=10, label="collapse")
    k = max(1, len(rows) // 100)
    for key in ("loss_d", "loss_g", "l_con", "l_adv", "l_pix"):
        v = np.array([r[key] for r in rows], float)
        if key == "l_pix" and not v.any():
            continue
        sm = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(it[k - 1:], sm, label=key)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"loss (moving mean of {k})")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


# The default recipe, measured on the synthetic groove view (docs/training.md,
# docs/quality.md): reconstruction first, with the paper's consistency and
# adversarial terms kept as weak regularisers; and the paper's literal loss.
RECIPE = dict(lr=5e-4, lambda_adv=0.1, lambda_con=0.1, pixel_l1=10.0)
PAPER = dict(lr=1e-4, lambda_adv=1.0, lambda_con=1.0, pixel_l1=0.0)


def parse_args(argv):
    p = argparse.ArgumentParser(description="train an MAA model (Algorithm 1)")
    p.add_argument("--data", required=True, help="MVTec-style ROOT (uses ROOT/train/good)")
    p.add_argument("--out", required=True, help="model file to write (F32)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--g-base", type=int, default=16)
    p.add_argument("--d-base", type=int, default=64)
    n = p.add_mutually_exclusive_group()
    n.add_argument("--iters", type=int, help="iterations (default 3000)")
    n.add_argument("--epochs", type=float, help="passes over set A")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--paper", action="store_true",
                   help="the paper's literal loss and rate: --lr 1e-4 --lambda-adv 1 "
                   "--lambda-con 1 --pixel-l1 0 (options given explicitly still win)")
    p.add_argument("--lambda-adv", type=float, help="weight of the adversarial loss "
                   "(default 0.1; --paper: 1)")
    p.add_argument("--lambda-con", type=float, help="weight of the consistency loss "
                   "|f(x_b) - f(G(x_a))| (default 0.1; --paper: 1)")
    p.add_argument("--pixel-l1", type=float,
                   help="weight of mean|x - G(x)| in the G loss (default 10; --paper: 0)")
    p.add_argument("--augment", choices=AUGMENTS, default="d4",
                   help="d4: 90-degree turns, flips and brightness (parts "
                   "without a preferred orientation); brightness: brightness "
                   "only (parts always presented the same way); none")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 5e-4; "
                   "--paper: 1e-4)")
    p.add_argument("--lr-d", type=float, help="discriminator learning rate "
                   "(default: --lr)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of train/good never trained on, for "
                   "calibration (default 0.2; 0: none)")
    p.add_argument("--check-every", type=int, default=100,
                   help="collapse check period in iterations (0: never)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", help="checkpoint to continue from")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--workdir", help="checkpoint, loss.csv, loss.png "
                   "(default: OUT without extension + .train)")
    a = p.parse_args(argv)
    recipe = PAPER if a.paper else RECIPE
    for k, v in recipe.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if not 0 <= a.holdout < 1:
        p.error(f"--holdout {a.holdout}: need a fraction in [0, 1)")
    return a


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device available")
    return dev


def train(a):
    dev = pick_device(a.device)
    workdir = a.workdir or os.path.splitext(a.out)[0] + ".train"
    os.makedirs(workdir, exist_ok=True)
    ckpt_path = os.path.join(workdir, "ckpt.pt")
    csv_path = os.path.join(workdir, "loss.csv")
    checks_path = os.path.join(workdir, "checks.csv")
    png_path = os.path.join(workdir, "loss.png")

    ck = torch_load(a.resume) if a.resume else None
    cfg = ck["config"] if ck else dict(image_size=a.size, channels=a.channels,
                                       g_base=a.g_base, d_base=a.d_base)
    hp = ck["hparams"] if ck else dict(batch=a.batch, lambda_adv=a.lambda_adv,
                                       lambda_con=a.lambda_con,
                                       pixel_l1=a.pixel_l1, augment=a.augment, lr=a.lr,
                                       lr_d=a.lr if a.lr_d is None else a.lr_d,
                                       holdout=a.holdout, seed=a.seed)
    # Checkpoints from before the held-out set and the separate D rate.
    hp.setdefault("lr_d", hp["lr"])
    hp.setdefault("holdout", 0.0)
    hp.setdefault("lambda_con", 1.0)
    torch.manual_seed(hp["seed"])
    gen = torch.Generator().manual_seed(hp["seed"])
    files = list_good(a.data)
    if len(files) < 2 + (1 if hp["holdout"] > 0 else 0):
        raise TrainError(f"{good_dir(a.data)}: {len(files)} images, need at least "
                         f"{2 + (1 if hp['holdout'] > 0 else 0)}")
    model = maa_net.MAA(**cfg)
    maa_net.init_paper(model, gen)
    if ck:
        if ck.get("files", files) != files:
            raise TrainError(f"{good_dir(a.data)}: not the images {a.resume} was "
                             f"trained on (the file names differ)")
        held, kept = ck.get("held", torch.zeros(0, dtype=torch.long)), ck["kept"] \
            if "kept" in ck else torch.arange(len(files))
        split_a, split_b = ck["split_a"], ck["split_b"]
        if int(max(split_a.max(), split_b.max())) >= len(kept):
            raise TrainError(f"{a.resume}: split does not fit the {len(files)} images")
    else:
        held, kept = choose_holdout(len(files), hp["holdout"], gen)
        perm = torch.randperm(len(kept), generator=gen)
        na = (len(kept) + 1) // 2
        split_a, split_b = perm[:na], perm[na:]
    data = load_images(a.data, [files[i] for i in kept.tolist()], cfg["image_size"],
                       cfg["channels"])
    set_a, set_b = data[split_a], data[split_b]
    # The collapse check reconstructs the held-out images (never trained on);
    # without any, a fixed sample of A stands in.
    watch_set = (load_images(a.data, [files[i] for i in held.tolist()], cfg["image_size"],
                             cfg["channels"]) if len(held) else set_a)[:64]
    B = hp["batch"]
    if a.iters is not None:
        total = a.iters
    elif a.epochs is not None:
        total = int(math.ceil(a.epochs * math.ceil(len(split_a) / B)))
    else:
        total = ck["total"] if ck else 3000
    if ck and total < ck["iter"]:
        raise TrainError(f"--iters {total}: the checkpoint is already at {ck['iter']}")

    model.to(dev).train()
    opt_g = torch.optim.Adam(model.g.parameters(), hp["lr"], betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.d.parameters(), hp["lr_d"], betas=(0.5, 0.999))
    if ck:
        model.load_state_dict(ck["model"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        state = (ck["h"].to(dev), ck["c"].to(dev))
        gen.set_state(ck["gen"])
        start = ck["iter"]
        rows = [r for r in read_csv(csv_path) if r["iter"] <= start]
        check_rows = [r for r in read_csv(checks_path) if r["iter"] <= start]
        watch = CollapseWatch(ck.get("watch"))
    else:
        state = tuple(t.clone() for t in model.g.initial_state(B))
        start, rows, check_rows = 0, [], []
        watch = CollapseWatch()
    rewrite_csv(csv_path, CSV_FIELDS, rows)
    rewrite_csv(checks_path, CHECK_FIELDS, check_rows)

    def checkpoint(it):
        save_checkpoint(ckpt_path, {
            "config": cfg, "hparams": hp, "total": total, "iter": it,
            "files": files, "watch": watch.state(),
            "model": model.state_dict(), "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(), "h": state[0], "c": state[1],
            "gen": gen.get_state(), "split_a": split_a, "split_b": split_b,
            "held": held, "kept": kept})
        plot_losses(csv_path, checks_path, png_path)

    print(f"train: {len(files)} good images ({len(held)} held out for calibration, "
          f"{len(split_a)} A, {len(split_b)} B), "
          f"S={cfg['image_size']} C={cfg['channels']} g_base={cfg['g_base']} "
          f"d_base={cfg['d_base']}, batch {B}, pixel L1 {hp['pixel_l1']:g}, "
          f"iters {start}->{total}, device {dev}", file=sys.stderr)
    if 0 < len(held) < 20:
        print(f"train: warning: only {len(held)} images held out; `maa calibrate` "
              f"needs at least 20 (raise --holdout or add good images)", file=sys.stderr)
    ones = zeros = None
    prog = Progress(start, total)
    # The seconds column counts training time across resumes.
    t0 = time.time() - (rows[-1]["seconds"] if rows else 0.0)
    with open(csv_path, "a", newline="") as fcsv, open(checks_path, "a", newline="") as fchk:
        wcsv = csv.DictWriter(fcsv, CSV_FIELDS)
        wchk = csv.DictWriter(fchk, CHECK_FIELDS)
        for it in range(start + 1, total + 1):
            ia = torch.randint(0, len(split_a), (B,), generator=gen)
            ib = torch.randint(0, len(split_b), (B,), generator=gen)
            xa = augment(set_a[ia], gen, hp["augment"]).to(dev)
            xb = augment(set_b[ib], gen, hp["augment"]).to(dev)

            fake, (h, c) = model.g(xa, state)
            state = (h.detach(), c.detach())

            # Discriminator step (k = 1).
            real_logit = model.d(xb)
            if ones is None:
                ones = torch.ones_like(real_logit)
                zeros = torch.zeros_like(real_logit)
            loss_d = (F.binary_cross_entropy_with_logits(real_logit, ones) +
                      F.binary_cross_entropy_with_logits(model.d(fake.detach()), zeros))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            # Generator step against the updated discriminator.
            for p in model.d.parameters():
                p.requires_grad_(False)
            with torch.no_grad():
                f_real = model.d(xb)
            f_fake = model.d(fake)
            l_con = (f_real - f_fake).abs().mean()
            l_adv = F.binary_cross_entropy_with_logits(f_fake, ones)
            l_pix = (xa - fake).abs().mean() if hp["pixel_l1"] > 0 else torch.zeros((), device=dev)
            loss_g = hp["lambda_con"] * l_con + hp["lambda_adv"] * l_adv + hp["pixel_l1"] * l_pix
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for p in model.d.parameters():
                p.requires_grad_(True)

            losses = {"iter": it, "loss_d": loss_d.item(), "loss_g": loss_g.item(),
                      "l_con": l_con.item(), "l_adv": l_adv.item(),
                      "l_pix": l_pix.item(), "seconds": round(time.time() - t0, 3)}
            if not all(math.isfinite(v) for v in losses.values()):
                raise TrainError(f"iteration {it}: loss is not finite {losses}; the "
                                 f"training diverged (lower --lr / --lr-d)")
            wcsv.writerow(losses)
            watch.add(losses["loss_d"], losses["l_con"])
            if a.check_every > 0 and (it % a.check_every == 0 or it == total):
                row, reason = watch.check(it, heldout_l1(model, state, watch_set, dev, B))
                wchk.writerow(row)
                fchk.flush()
                prog.flag(reason)
                prog.heldout = row["heldout_l1"]
            prog.update(it, losses, force=(it == total))
            if a.ckpt_every > 0 and it % a.ckpt_every == 0 and it != total:
                fcsv.flush()
                checkpoint(it)
    prog.close()
    checkpoint(total)
    final = model_from_checkpoint(ckpt_path)
    maa_io.save_model(final, a.out, "F32")
    write_split(split_path(a.out), a.data, files, held.tolist(), kept.tolist(), hp)
    summary = {"config": cfg, "hparams": hp, "iters": total,
               "seconds": round(time.time() - t0, 1), "held_out": len(held),
               "final_heldout_l1": check_rows_last(checks_path),
               "collapse": watch.events}
    with open(os.path.join(workdir, "train.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(f"train: wrote {a.out} and {split_path(a.out)} (checkpoint {ckpt_path}, "
          f"losses {csv_path}, {png_path})", file=sys.stderr)
    if watch.events:
        first = watch.events[0]
        print(f"train: WARNING: the training collapsed (first at iteration "
              f"{first['iter']}: {first['reason']}; {len(watch.events)} checks flagged, "
              f"see {checks_path} and {png_path}).  The model was written for "
              f"inspection but will not tell defective parts from good ones.  "
              f"Try a larger --pixel-l1, a lower --lr-d, or more good images.",
              file=sys.stderr)
        return 3
    return 0


def check_rows_last(path):
    rows = read_csv(path)
    return rows[-1]["heldout_l1"] if rows else None


def rewrite_csv(path, fields, rows):
    """The CSV with its header and the rows kept (those up to a resumed
    iteration)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(v) if k in ("iter", "collapse") else v) for k, v in r.items()})


def main(argv=None):
    a = parse_args(argv)
    try:
        return train(a)
    except TrainError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
