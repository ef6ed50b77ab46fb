"""float64 numpy references for the score, the mask map and preprocessing.

fmd()            contract §4, the pytorch-fid formula with scipy.linalg.sqrtm
fmd_eig()        contract §4 as written there (eigenvalues of sqrt(Si) Sr sqrt(Si))
varmap()         contract §6: m = v*v, v the local variance of e = mean_c |x - r|
preprocess()     contract §1: resize to S x S (area when shrinking, bilinear when
                 enlarging, per axis), scale to [-1, 1], mono -> C channels
"""
import functools

import numpy as np
import scipy.linalg


def _stats(F):
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2 or F.shape[0] < 2:
        raise ValueError(f"feature matrix of shape {F.shape}: need rows >= 2")
    return F.mean(axis=0), np.cov(F, rowvar=False, ddof=1).reshape(F.shape[1], F.shape[1])


def _sqrtm(a):
    """scipy.linalg.sqrtm without its error estimate: SciPy before 1.16 takes
    disp=False (else it prints a warning), later ones no longer know it."""
    try:
        return scipy.linalg.sqrtm(a, disp=False)[0]
    except TypeError:
        return scipy.linalg.sqrtm(a)


def fmd(Fi, Fr):
    """Fréchet distance between the rows of Fi and of Fr (observations are
    rows), as pytorch-fid computes it."""
    mu1, s1 = _stats(Fi)
    mu2, s2 = _stats(Fr)
    diff = mu1 - mu2
    covmean = _sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = _sqrtm((s1 + off).dot(s2 + off))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2)
                 - 2.0 * np.trace(covmean))


def _psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fmd_eig(Fi, Fr):
    """contract §4 literally: Tr sqrt via the eigenvalues of the symmetric PSD
    matrix sqrt(Si) Sr sqrt(Si), negative ones clamped to 0."""
    mu1, s1 = _stats(Fi)
    mu2, s2 = _stats(Fr)
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2)
                 - 2.0 * np.sqrt(np.clip(lam, 0.0, None)).sum())


def box_mean(a, w):
    """Mean over the w x w window centred on each pixel, counting only the
    pixels inside the image (so the border divides by fewer than w*w)."""
    a = np.asarray(a, dtype=np.float64)
    h = w // 2
    H, W = a.shape
    ii = np.zeros((H + 1, W + 1))
    ii[1:, 1:] = a.cumsum(0).cumsum(1)
    y0 = np.clip(np.arange(H) - h, 0, H)
    y1 = np.clip(np.arange(H) + h + 1, 0, H)
    x0 = np.clip(np.arange(W) - h, 0, W)
    x1 = np.clip(np.arange(W) + h + 1, 0, W)
    s = (ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0])
    n = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return s / n


def varmap(x, r, window=7):
    """x, r: [C, S, S] -> m [S, S] (float64)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window {window}: need an odd size")
    e = np.abs(np.asarray(x, np.float64) - np.asarray(r, np.float64)).mean(0)
    v = box_mean(e * e, window) - box_mean(e, window) ** 2
    return v * v


@functools.lru_cache(maxsize=16)
def _axis_matrix(n_in, n_out):
    """[n_out, n_in] resampling weights along one axis: exact area average
    (fractional pixel coverage) when shrinking, bilinear with half-pixel
    centres (edge clamped) when enlarging, identity when equal."""
    M = np.zeros((n_out, n_in))
    if n_out == n_in:
        M = np.eye(n_in)
        M.flags.writeable = False
        return M
    if n_out < n_in:
        scale = n_in / n_out
        for o in range(n_out):
            a, b = o * scale, (o + 1) * scale
            for i in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
                M[o, i] = min(b, i + 1) - max(a, i)
            M[o] /= scale
        M.flags.writeable = False
        return M
    scale = n_in / n_out
    for o in range(n_out):
        src = min(max((o + 0.5) * scale - 0.5, 0.0), n_in - 1)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        M[o, i0] += 1 - t
        M[o, i1] += t
    M.flags.writeable = False
    return M


def resize(img, S):
    """img: [H, W, ch] float -> [S, S, ch] float64 (separable, per axis)."""
    img = np.asarray(img, np.float64)
    Wy = _axis_matrix(img.shape[0], S)
    Wx = _axis_matrix(img.shape[1], S)
    tmp = np.tensordot(Wy, img, axes=(1, 0))              # [S, W, ch]
    return np.tensordot(tmp, Wx, axes=(1, 1)).transpose(0, 2, 1)


def preprocess(pixels, S, C, maxval=255):
    """pixels: [H, W] or [H, W, ch] integers (ch 1, 3 or 4; alpha ignored)
    -> [C, S, S] float64 in [-1, 1] (x = p / (maxval/2) - 1).  Gray feeds a
    3-channel model by replication; RGB for C = 1 is refused."""
    p = np.asarray(pixels)
    if p.ndim == 2:
        p = p[:, :, None]
    if p.shape[2] == 4:
        p = p[:, :, :3]
    elif p.shape[2] == 2:
        p = p[:, :, :1]
    if p.shape[2] == 3 and C == 1:
        raise ValueError("an RGB image for a 1-channel model")
    x = resize(p, S) / (maxval / 2.0) - 1.0
    if x.shape[2] == 1 and C == 3:
        x = np.repeat(x, 3, axis=2)
    return np.transpose(x, (2, 0, 1))
