"""The MAA network (contract §2) as PyTorch modules.

state_dict() of MAA holds exactly the contract's tensor names and shapes, so the
model file (contract §3) is the state dict written as safetensors.  BatchNorm is a
small module of our own rather than nn.BatchNorm2d: the latter always carries
a `num_batches_tracked` buffer that is not part of the file format.

Inference (eval mode): BN uses running stats and the ConvLSTM takes one step
from the frozen memory (g.mem.h0, g.mem.c0).  Training (train mode): BN uses
batch stats and the caller carries the ConvLSTM state (h, c) from one
iteration to the next (see generate()).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class BN(nn.Module):
    """BatchNorm2d with only weight, bias, running_mean and running_var."""

    def __init__(self, n, eps, momentum=0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var,
                            self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class ConvLayer(nn.Module):
    """A contract layer `L`: conv weight L.weight, optional L.bias, optional L.bn.

    transposed=True uses the [in, out, kh, kw] layout and output_padding 1."""

    def __init__(self, cin, cout, kernel, stride, pad, bias, bn_eps=None,
                 transposed=False):
        super().__init__()
        kh, kw = kernel
        shape = (cin, cout, kh, kw) if transposed else (cout, cin, kh, kw)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.bn = BN(cout, bn_eps) if bn_eps is not None else None
        self.stride, self.pad, self.transposed = stride, pad, transposed

    def forward(self, x):
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride,
                                   self.pad, output_padding=1)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.pad)
        return self.bn(y) if self.bn is not None else y


class ResBlock(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.conv1 = nn.Conv2d(n, n, 3, 1, 1, bias=False)
        self.bn1 = BN(n, eps)
        self.conv2 = nn.Conv2d(n, n, 3, 1, 1, bias=False)
        self.bn2 = BN(n, eps)

    def forward(self, x):
        return x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class Memory(nn.Module):
    """ConvLSTM cell (one step); gates i, f, o, g along channels."""

    def __init__(self, n, m):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(4 * n, 2 * n, 3, 3))
        self.bias = nn.Parameter(torch.zeros(4 * n))
        self.register_buffer("h0", torch.zeros(n, m, m))
        self.register_buffer("c0", torch.zeros(n, m, m))

    def forward(self, z, h, c):
        gates = F.conv2d(torch.cat([z, h], 1), self.weight, self.bias, 1, 1)
        i, f, o, g = torch.chunk(gates, 4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class Generator(nn.Module):
    def __init__(self, S, C, b, eps):
        super().__init__()
        self.enc = nn.ModuleList([
            ConvLayer(C, b, (1, 7), 1, (0, 3), False, eps),
            ConvLayer(b, 2 * b, (7, 1), 1, (3, 0), False, eps),
            ConvLayer(2 * b, 4 * b, (3, 3), 2, 1, False, eps),
            ConvLayer(4 * b, 8 * b, (3, 3), 2, 1, False, eps),
            ConvLayer(8 * b, 16 * b, (3, 3), 2, 1, False, eps),
        ])
        self.res = nn.ModuleList([ResBlock(16 * b, eps) for _ in range(6)])
        self.mem = Memory(16 * b, S // 8)
        self.dec = nn.ModuleList([
            ConvLayer(16 * b, 8 * b, (3, 3), 2, 1, False, eps, True),
            ConvLayer(8 * b, 4 * b, (3, 3), 2, 1, False, eps, True),
            ConvLayer(4 * b, 2 * b, (3, 3), 2, 1, False, eps, True),
            ConvLayer(2 * b, b, (7, 1), 1, (3, 0), False, eps),
            ConvLayer(b, C, (1, 7), 1, (0, 3), True),
        ])

    def initial_state(self, n):
        """The stored memory, expanded over a batch of n."""
        h0, c0 = self.mem.h0, self.mem.c0
        return (h0.unsqueeze(0).expand(n, *h0.shape),
                c0.unsqueeze(0).expand(n, *c0.shape))

    def forward(self, x, state=None):
        """Returns (r, (h, c)).  state defaults to the stored memory."""
        if state is None:
            state = self.initial_state(x.shape[0])
        for layer in self.enc:
            x = F.relu(layer(x))
        for blk in self.res[:3]:
            x = blk(x)
        h, c = self.mem(x, *state)
        x = h
        for blk in self.res[3:]:
            x = blk(x)
        for layer in self.dec[:4]:
            x = F.relu(layer(x))
        return torch.tanh(self.dec[4](x)), (h, c)


class Discriminator(nn.ModuleList):
    """Discriminator and Markov encoder: the d.5 output is f(x) (logits).
    A ModuleList itself so that its layers are named d.0 .. d.5."""

    def __init__(self, C, a, eps, slope):
        super().__init__([
            ConvLayer(C, a, (4, 4), 2, 1, True),
            ConvLayer(a, 2 * a, (4, 4), 2, 1, False, eps),
            ConvLayer(2 * a, 4 * a, (4, 4), 2, 1, False, eps),
            ConvLayer(4 * a, 8 * a, (4, 4), 1, 1, False, eps),
            ConvLayer(8 * a, 1, (4, 4), 1, 1, True),
            ConvLayer(1, 1, (4, 4), 1, 1, True),
        ])
        self.slope = slope

    def forward(self, x):
        for k in range(4):
            x = F.leaky_relu(self[k](x), self.slope)
        x = self[5](self[4](x))
        return x[:, 0]


class MAA(nn.Module):
    """g = generator, d = discriminator; hyper-parameters as in the file."""

    def __init__(self, image_size=256, channels=3, g_base=16, d_base=64,
                 bn_eps=1e-5, lrelu_slope=0.1):
        super().__init__()
        if image_size % 8 or image_size < 32:
            raise ValueError(f"image_size {image_size}: need a multiple of 8, >= 32")
        if channels not in (1, 3):
            raise ValueError(f"channels {channels}: need 1 or 3")
        self.config = dict(image_size=image_size, channels=channels,
                           g_base=g_base, d_base=d_base, bn_eps=bn_eps,
                           lrelu_slope=lrelu_slope)
        self.g = Generator(image_size, channels, g_base, bn_eps)
        self.d = Discriminator(channels, d_base, bn_eps, lrelu_slope)
        init_paper(self)

    @property
    def markov_size(self):
        return self.config["image_size"] // 8 - 3

    def generate(self, x, state=None):
        """G(x) -> (r, (h, c)); state None means the stored memory."""
        return self.g(x, state)

    def reconstruct(self, x):
        """Inference: r = G(x) from the stored memory."""
        return self.g(x)[0]

    def markov(self, x):
        """f(x): [N, H', W'], H' = S/8 - 3."""
        return self.d(x)

    def forward(self, x):
        """Inference: (r, f(x), f(r))."""
        r = self.reconstruct(x)
        return r, self.markov(x), self.markov(r)


def init_paper(model, generator=None):
    """Algorithm 1 / Table I: weights N(0, 0.02), biases 0, BN weight
    N(1, 0.02), BN bias 0, running stats (0, 1), memory zero."""
    with torch.no_grad():
        for name, t in _named_tensors(model):
            if _is_bn(name, "weight"):
                t.normal_(1.0, 0.02, generator=generator)
            elif name.endswith("running_var"):
                t.fill_(1.0)
            elif name.endswith("weight"):
                t.normal_(0.0, 0.02, generator=generator)
            else:  # biases, running_mean, h0, c0
                t.zero_()


def init_test(model, seed):
    """A random model for tests: weights scaled by fan-in so activations stay
    O(1) through the whole network, and BN with non-trivial affine terms and
    running stats, so that BN folding and the memory are really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in _named_tensors(model):
            if _is_bn(name, "weight"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif _is_bn(name, "bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("h0"):
                t.copy_(0.5 * torch.tanh(torch.randn(t.shape, generator=gen)))
            elif name.endswith("c0"):
                t.copy_(torch.randn(t.shape, generator=gen))
            elif name.endswith("bias"):
                t.copy_(0.05 * torch.randn(t.shape, generator=gen))
            else:
                fan_in = t[0].numel() if not _is_transposed(name) else \
                    t.shape[0] * t.shape[2] * t.shape[3] / 4
                std = 1.2 / math.sqrt(fan_in)
                t.copy_(std * torch.randn(t.shape, generator=gen))


def _is_bn(name, what):
    parts = name.split(".")
    return parts[-1] == what and len(parts) >= 2 and \
        (parts[-2] == "bn" or parts[-2].startswith("bn"))


def _is_transposed(name):
    return name.startswith("g.dec.") and name.split(".")[2] in ("0", "1", "2")


def _named_tensors(model):
    return list(model.state_dict(keep_vars=True).items())
