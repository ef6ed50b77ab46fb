"""The MAA model file (contract §3): safetensors, written and read by hand.

Layout: 8-byte little-endian header length n, n bytes of JSON header
(padded with spaces to a multiple of 8, as the safetensors library does),
then the raw little-endian tensor data.  Header entries:
  "<name>": {"dtype": "F32"|"F16", "shape": [...], "data_offsets": [b, e]}
with offsets relative to the start of the data, and "__metadata__" with
string values format=maa, version=1, image_size, channels, g_base, d_base,
bn_eps, lrelu_slope.
"""
import json
import struct
from collections import OrderedDict

import numpy as np

META_KEYS = ("image_size", "channels", "g_base", "d_base", "bn_eps",
             "lrelu_slope")
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}


def spec_shapes(S, C, b, a):
    """Every contract §2 tensor name and shape, in table order."""
    out = OrderedDict()

    def layer(name, w, bias=False, bn=False):
        out[name + ".weight"] = w
        if bias:
            out[name + ".bias"] = (w[1] if name.startswith("g.dec.") and
                                   name[-1] in "012" else w[0],)
        if bn:
            n = w[1] if name.startswith("g.dec.") and name[-1] in "012" else w[0]
            for t in ("weight", "bias", "running_mean", "running_var"):
                out[f"{name}.bn.{t}"] = (n,)

    layer("g.enc.0", (b, C, 1, 7), bn=True)
    layer("g.enc.1", (2 * b, b, 7, 1), bn=True)
    layer("g.enc.2", (4 * b, 2 * b, 3, 3), bn=True)
    layer("g.enc.3", (8 * b, 4 * b, 3, 3), bn=True)
    layer("g.enc.4", (16 * b, 8 * b, 3, 3), bn=True)

    def res(k):
        for j in (1, 2):
            out[f"g.res.{k}.conv{j}.weight"] = (16 * b, 16 * b, 3, 3)
            for t in ("weight", "bias", "running_mean", "running_var"):
                out[f"g.res.{k}.bn{j}.{t}"] = (16 * b,)

    for k in range(3):
        res(k)
    m = S // 8
    out["g.mem.weight"] = (64 * b, 32 * b, 3, 3)
    out["g.mem.bias"] = (64 * b,)
    out["g.mem.h0"] = (16 * b, m, m)
    out["g.mem.c0"] = (16 * b, m, m)
    for k in range(3, 6):
        res(k)
    layer("g.dec.0", (16 * b, 8 * b, 3, 3), bn=True)
    layer("g.dec.1", (8 * b, 4 * b, 3, 3), bn=True)
    layer("g.dec.2", (4 * b, 2 * b, 3, 3), bn=True)
    layer("g.dec.3", (b, 2 * b, 7, 1), bn=True)
    layer("g.dec.4", (C, b, 1, 7), bias=True)
    layer("d.0", (a, C, 4, 4), bias=True)
    layer("d.1", (2 * a, a, 4, 4), bn=True)
    layer("d.2", (4 * a, 2 * a, 4, 4), bn=True)
    layer("d.3", (8 * a, 4 * a, 4, 4), bn=True)
    layer("d.4", (1, 8 * a, 4, 4), bias=True)
    layer("d.5", (1, 1, 4, 4), bias=True)
    return out


def meta_strings(config):
    """__metadata__ for a config dict (MAA.config)."""
    meta = {"format": "maa", "version": "1"}
    for k in META_KEYS:
        v = config[k]
        meta[k] = repr(float(v)) if k in ("bn_eps", "lrelu_slope") else str(int(v))
    return meta


def write_safetensors(path, tensors, metadata, dtype="F32", order=None):
    """tensors: name -> array-like; order: the names in data and header order
    (default: as given)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype}: need F32 or F16")
    names = list(order) if order is not None else list(tensors)
    header = {"__metadata__": dict(metadata)}
    blobs, off = [], 0
    for name in names:
        a = np.ascontiguousarray(_to_numpy(tensors[name]), dtype=DTYPES[dtype])
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """-> (OrderedDict name -> float32 ndarray, metadata, name -> dtype).
    Raises ValueError naming the problem for a malformed file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated (no header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: truncated header ({n} bytes announced)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"),
                            object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: header is not valid JSON: {e}") from None
    body = memoryview(data)[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors, dtypes, spans = OrderedDict(), {}, []
    for name, info in header.items():
        dt = info.get("dtype")
        if dt not in DTYPES:
            raise ValueError(f"{path}: tensor {name}: dtype {dt} not F32/F16")
        shape = tuple(info["shape"])
        b, e = info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= b <= e <= len(body)) or e - b != count * DTYPES[dt].itemsize:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets [{b}, {e}]")
        spans.append((b, e, name))
        a = np.frombuffer(body[b:e], dtype=DTYPES[dt]).reshape(shape)
        tensors[name] = a.astype(np.float32)
        dtypes[name] = dt
    spans.sort()
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: tensors {n0} and {n1} overlap")
    return tensors, meta, dtypes


def config_from_meta(meta, path="model"):
    if meta.get("format") != "maa" or meta.get("version") != "1":
        raise ValueError(f"{path}: metadata format/version is not maa/1")
    try:
        cfg = {k: (float(meta[k]) if k in ("bn_eps", "lrelu_slope")
                   else int(meta[k])) for k in META_KEYS}
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: bad or missing metadata {e}") from None
    S = cfg["image_size"]
    if S < 32 or S % 8 or cfg["channels"] not in (1, 3) or cfg["g_base"] < 1 \
            or cfg["d_base"] < 1 or not cfg["bn_eps"] > 0 or not cfg["lrelu_slope"] >= 0:
        raise ValueError(f"{path}: metadata out of range: {cfg}")
    return cfg


def read_model(path):
    """Reads and validates a model file against contract §2 names and shapes.
    -> (config, OrderedDict of float32 arrays in contract order, dtype name)."""
    tensors, meta, dtypes = read_safetensors(path)
    cfg = config_from_meta(meta, path)
    want = spec_shapes(cfg["image_size"], cfg["channels"], cfg["g_base"],
                       cfg["d_base"])
    out = OrderedDict()
    for name, shape in want.items():
        if name not in tensors:
            raise ValueError(f"{path}: missing tensor {name}")
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(f"{path}: tensor {name} has shape "
                             f"{list(tensors[name].shape)}, want {list(shape)}")
        out[name] = tensors[name]
    kinds = set(dtypes[n] for n in want)
    return cfg, out, (kinds.pop() if len(kinds) == 1 else "mixed")


def save_model(model, path, dtype="F32"):
    """Writes an MAA module (scripts/maa_net.py) as a model file."""
    sd = model.state_dict()
    cfg = model.config
    names = list(spec_shapes(cfg["image_size"], cfg["channels"],
                             cfg["g_base"], cfg["d_base"]))
    if set(names) != set(sd):
        raise ValueError("state dict does not match the contract's tensor list: "
                         f"{sorted(set(names) ^ set(sd))[:4]}")
    write_safetensors(path, sd, meta_strings(cfg), dtype, order=names)


def load_model(path):
    """-> an MAA module (eval mode) holding the file's weights as float32."""
    import torch
    from maa_net import MAA
    cfg, tensors, _ = read_model(path)
    model = MAA(**cfg)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    return model.eval()


def _to_numpy(t):
    if hasattr(t, "detach"):
        return t.detach().cpu().float().numpy()
    return np.asarray(t)
