#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu-check.sh's benchmark: the same model file
and frames as build/bench_cuda, the same pipeline per batch (8-bit frames on
the host -> GPU -> [-1, 1] -> G, f(x), f(r) -> FMD score, verdict and
defect mask on the host), in three ways:

  eager-f32        PyTorch eager, float32 NCHW (TF32 off)
  f16-cl           half precision, channels_last
  f16-graph        half, channels_last, network and mask in one CUDA graph

The FMD is computed on the host in float64 (numpy), as maad does; maad
additionally labels the mask's regions, which this side skips.

  bench_torch.py --make-frames PATH SIZE|WxH CHANNELS COUNT
  bench_torch.py MODEL FRAMES SECONDS BATCH [BATCH ...] [--frame WxH] [--modes M,...]

Frames are S x S unless --frame gives their size: larger frames are shrunk
on the GPU by F.interpolate(mode='area'), contract §1's resize.  --modes picks
some of the three ways.  Prints lines "RESULT torch-<mode>[-WxH] batch <n>:
<ms> ms/batch <fps> frames/s score <mean>".  Needs scripts/maa_net.py and scripts/maa_io.py (the PyTorch
network whose state_dict names are the contract's tensor names).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

THRESHOLD, PIXEL_THRESHOLD, WINDOW = 1.0, 1e-3, 7


def geometry(text):
    """ "256" or "1920x1200" -> (width, height)."""
    w, _, h = text.partition("x")
    return int(w), int(h or w)


def make_frames(path, size, channels, count):
    """Smooth random textures with a few bright spots, as 8-bit frames."""
    rng = np.random.default_rng(7)
    w, h = geometry(size)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    out = np.empty((count, h, w, channels), np.uint8)
    for i in range(count):
        for c in range(channels):
            f = rng.uniform(2, 9, 2)
            v = 0.5 + 0.3 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy + rng.uniform()))
            v += 0.1 * rng.standard_normal((h, w))
            out[i, :, :, c] = np.clip(v * 255, 0, 255).astype(np.uint8)
    out.tofile(path)


def fmd(fx, fr):
    """contract §4 for a batch: fx, fr [n, H', W'] float -> [n] float64."""
    fi, fr = fx.astype(np.float64), fr.astype(np.float64)
    rows = fi.shape[1]
    mi, mr = fi.mean(1), fr.mean(1)
    ci, cr = fi - mi[:, None], fr - mr[:, None]
    si = np.einsum("nri,nrj->nij", ci, ci) / (rows - 1)
    sr = np.einsum("nri,nrj->nij", cr, cr) / (rows - 1)
    w, v = np.linalg.eigh(si)
    root = v @ (np.sqrt(np.clip(w, 0, None))[:, :, None] * np.swapaxes(v, 1, 2))
    lam = np.linalg.eigvalsh(root @ sr @ root)
    return (((mi - mr) ** 2).sum(1) + np.trace(si, axis1=1, axis2=2) +
            np.trace(sr, axis1=1, axis2=2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum(1))


def main(argv):
    if argv and argv[0] == "--make-frames":
        make_frames(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    frame, wanted = None, None
    while len(argv) >= 2 and argv[-2] in ("--frame", "--modes"):
        if argv[-2] == "--frame":
            frame = geometry(argv[-1])
        else:
            wanted = argv[-1].split(",")
        argv = argv[:-2]
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    import torch
    import torch.nn.functional as F
    try:
        import maa_io
    except ImportError as e:
        print(f"bench_torch: {e}: scripts/maa_net.py and maa_io.py are needed",
              file=sys.stderr)
        return 3
    model_path, frames_path, seconds = argv[0], argv[1], float(argv[2])
    batches = [int(b) for b in argv[3:]]
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    base = maa_io.load_model(model_path)
    S, C = base.config["image_size"], base.config["channels"]
    W, H = frame or (S, S)
    frames = np.fromfile(frames_path, np.uint8).reshape(-1, H, W, C)
    suffix = f"-{W}x{H}" if (W, H) != (S, S) else ""
    dev = torch.device("cuda")

    def pipeline(model, half, cl):
        def step(u8):
            x = u8.permute(0, 3, 1, 2).float()
            if (W, H) != (S, S):
                x = F.interpolate(x, size=(S, S), mode="area")
            x = x / 127.5 - 1
            xin = x.half() if half else x
            if cl:
                xin = xin.contiguous(memory_format=torch.channels_last)
            r, fx, fr = model(xin)
            r = r.float()
            e = (x - r).abs().mean(1, keepdim=True)
            mean = F.avg_pool2d(e, WINDOW, 1, WINDOW // 2, count_include_pad=False)
            sq = F.avg_pool2d(e * e, WINDOW, 1, WINDOW // 2, count_include_pad=False)
            v = sq - mean * mean
            mask = (v * v > PIXEL_THRESHOLD).to(torch.uint8) * 255
            return fx.float(), fr.float(), mask
        return step

    modes = []
    if not wanted or "eager-f32" in wanted:
        m32 = maa_io.load_model(model_path).to(dev).eval()
        modes.append(("eager-f32", pipeline(m32, False, False), False))
    m16 = base.to(dev).half().to(memory_format=torch.channels_last).eval()
    if not wanted or "f16-cl" in wanted:
        modes.append(("f16-cl", pipeline(m16, True, True), False))
    if not wanted or "f16-graph" in wanted:
        modes.append(("f16-graph", pipeline(m16, True, True), True))

    for name, step, graphed in modes:
        for n in batches:
            host = torch.empty((n, H, W, C), dtype=torch.uint8).pin_memory()
            static = torch.empty((n, H, W, C), dtype=torch.uint8, device=dev)
            nxt = 0

            def load():
                nonlocal nxt
                idx = [(nxt + i) % len(frames) for i in range(n)]
                nxt = (nxt + n) % len(frames)
                host.numpy()[:] = frames[idx]
                static.copy_(host, non_blocking=True)

            with torch.no_grad():
                run = lambda: step(static)  # noqa: E731
                if graphed:
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(3):
                            step(static)
                    torch.cuda.current_stream().wait_stream(side)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        outs = step(static)

                    def run():
                        g.replay()
                        return outs
                total, count, t0 = 0.0, 0, None
                for it in range(10 ** 9):
                    if it == 3:
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                    load()
                    fx, fr, mask = run()
                    fx, fr, mask = fx.cpu().numpy(), fr.cpu().numpy(), mask.cpu().numpy()
                    scores = fmd(fx, fr)
                    verdicts = scores > THRESHOLD  # noqa: F841 (part of the pipeline)
                    if t0 is not None:
                        count += 1
                        total += scores.sum()
                        if count >= 5 and time.perf_counter() - t0 >= seconds:
                            break
                ms = (time.perf_counter() - t0) * 1e3 / count
            print(f"RESULT torch-{name}{suffix} batch {n}: {ms:.3f} ms/batch "
                  f"{n * 1e3 / ms:.1f} frames/s score {total / (count * n):.6g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
