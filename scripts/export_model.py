#!/usr/bin/python3
"""Export an MAA model file (contract §3) from a training checkpoint or a random
initialisation.

  export_model.py --ckpt CKPT.pt --out M.safetensors [--dtype f32|f16]
  export_model.py --random [--size S] [--channels C] [--g-base B]
                  [--d-base A] [--seed K] [--init test|paper]
                  [--dtype f32|f16] --out M.safetensors

--random --init test (the default) gives weights scaled by fan-in, BN with
random affine terms and running statistics, and a random memory (h0, c0):
a model whose every tensor matters, for tests.  --init paper is Algorithm 1's
initialisation (N(0, 0.02), BN (1, 0), zero memory).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maa_io  # noqa: E402
import maa_net  # noqa: E402


def random_model(size=64, channels=3, g_base=4, d_base=8, seed=0,
                 init="test"):
    import torch
    model = maa_net.MAA(size, channels, g_base, d_base)
    if init == "test":
        maa_net.init_test(model, seed)
    else:
        maa_net.init_paper(model, torch.Generator().manual_seed(seed))
    return model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="training checkpoint (train.py)")
    src.add_argument("--random", action="store_true")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--g-base", type=int, default=16)
    p.add_argument("--d-base", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("test", "paper"), default="test")
    p.add_argument("--dtype", choices=("f32", "f16"), default="f32")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.random:
        model = random_model(a.size, a.channels, a.g_base, a.d_base, a.seed,
                             a.init)
    else:
        import train
        try:
            model = train.model_from_checkpoint(a.ckpt)
        except train.TrainError as e:
            print(f"export_model: {e}", file=sys.stderr)
            return 2
    maa_io.save_model(model, a.out, a.dtype.upper())
    cfg = model.config
    print(f"wrote {a.out}: S={cfg['image_size']} C={cfg['channels']} "
          f"g_base={cfg['g_base']} d_base={cfg['d_base']} {a.dtype.upper()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
