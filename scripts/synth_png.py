"""Minimal deterministic PNG writer (8-bit gray or RGB, no alpha) for gen_synth.

matplotlib's imsave adds an alpha channel and a Software text chunk that
changes with the installed version; writing the chunks ourselves keeps the
dataset byte-identical for a given seed and lets the daemon's libspng read
plain 8-bit files.
"""
import struct
import zlib

import numpy as np


def _chunk(tag, data):
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode(img):
    """PNG bytes of a uint8 array shaped (H, W) or (H, W, 3)."""
    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8:
        raise ValueError("PNG writer takes uint8 pixels, got %s" % img.dtype)
    if img.ndim == 2:
        color_type, rows = 0, img
    elif img.ndim == 3 and img.shape[2] == 3:
        color_type, rows = 2, img.reshape(img.shape[0], -1)
    else:
        raise ValueError("PNG writer takes (H, W) or (H, W, 3), got %s" % (img.shape,))
    h, w = img.shape[:2]
    # Filter "Up" on every row: smooth images shrink by a third and it is one
    # vectorised subtraction (modulo 256 by uint8 wrap-around).
    up = rows.copy()
    up[1:] -= rows[:-1]
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2
    raw[0, 0] = 0
    raw[0, 1:] = rows[0]
    raw[1:, 1:] = up[1:]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _chunk(b"IEND", b""))


def write(path, img):
    with open(path, "wb") as f:
        f.write(encode(img))
