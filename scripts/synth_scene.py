"""Procedural motor-commutator views, production-line nuisances and defects.

One rendered sample is a *part* (geometry, lighting, texture and noise drawn
from its own random stream) seen through one of three views, optionally with
one defect.  The defect-free and the defective rendering of a part share
every random draw, so their difference is exactly the defect; the mask is
that difference thresholded before sensor noise, and pixels outside the mask
are copied from the defect-free rendering so the mask covers every altered
pixel.

All lengths are in reference pixels of a 256 x 256 image and scaled to the
requested size, so a 64 px test image is the same scene as a 256 px one.
"""
import math

import numpy as np
from scipy import ndimage

VIEWS = ("groove", "cylinder", "hook")
DEFECTS = ("scratch", "pit", "stain", "burr", "deformed")
REF = 256.0

COPPER = np.array([0.86, 0.52, 0.31])
MICA = np.array([0.17, 0.12, 0.09])
BACKGROUND = np.array([0.06, 0.06, 0.065])
HIGHLIGHT = np.array([1.0, 0.92, 0.82])
LUMA = np.array([0.299, 0.587, 0.114])
# Fixed light source of the inspection table: upper left, towards the part.
LIGHT = np.array([-0.35, -0.25, 1.0]) / np.linalg.norm([-0.35, -0.25, 1.0])
HALF = (LIGHT + np.array([0.0, 0.0, 1.0])) / np.linalg.norm(LIGHT + np.array([0.0, 0.0, 1.0]))

# A pre-noise change smaller than this (about 8 grey levels) is not part of
# the defect; sensor noise is about 3 grey levels.
MASK_THRESHOLD = 0.03
MIN_DEFECT_PX, MAX_TRIES = 6, 8


def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class Part:
    """Every random draw of one part except its defect."""

    def __init__(self, view, size, rng):
        self.view, self.size = view, size
        self.scale = size / REF
        # Part placement on the fixture: a few px and about a degree.
        self.shift = rng.uniform(-3.0, 3.0, 2)
        self.angle = math.radians(rng.uniform(-1.5, 1.5))
        # Lighting: flicker (global gain) and a gradient across the field.
        self.gain = float(np.clip(1.0 + rng.normal(0.0, 0.04), 0.9, 1.1))
        g = rng.uniform(0.0, 0.12)
        a = rng.uniform(0.0, 2.0 * math.pi)
        self.gradient = (g * math.cos(a), g * math.sin(a))
        self.blur = rng.uniform(0.4, 0.9)
        self.read_noise = rng.uniform(0.006, 0.012)
        self.shot_noise = rng.uniform(0.00008, 0.00016)
        # Machining marks: a random 1-D profile across the turning direction
        # plus fine 2-D grain, both tied to the part.
        self.marks = ndimage.gaussian_filter1d(rng.standard_normal(1024), 0.8)
        self.marks /= self.marks.std()
        self.grain = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.7 * self.scale + 0.3)
        self.grain /= self.grain.std()
        # Angular position of the commutator, in segment pitches.
        self.phase = rng.uniform(-0.08, 0.08)
        self.seg_gain = rng.uniform(0.95, 1.05, 64)
        self.width_profile = ndimage.gaussian_filter1d(rng.standard_normal(1024), 40.0)
        self.width_profile /= self.width_profile.std() + 1e-9
        self.rng_noise_seed = rng.integers(0, 2**63)


def mark_profile(part, t):
    # Profile sampled every 0.5 reference px over [-256, 256).
    return np.interp(t, np.arange(1024) * 0.5 - 256.0, part.marks)


def coords(part):
    """Part coordinates (u across the slots, v along them) of every pixel."""
    s, k = part.size, part.scale
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    x = (xx + 0.5 - s / 2.0) / k - part.shift[0]
    y = (yy + 0.5 - s / 2.0) / k - part.shift[1]
    c, sn = math.cos(part.angle), math.sin(part.angle)
    return c * x + sn * y, -sn * x + c * y


# --- views -------------------------------------------------------------------
# Each view returns (scene RGB, copper coverage in [0,1], geometry info for
# placing defects).  `warp` is a displacement of u used by the "deformed"
# defect; texture keeps the unwarped coordinates so only the geometry moves.

CYL_R, CYL_N, CYL_SLOT = 118.0, 24, 2.2


def view_cylinder(part, u, v, warp):
    uw = u + warp(u, v) if warp else u
    xn = np.clip(uw / CYL_R, -0.999, 0.999)
    inside = 1.0 - smoothstep(0.97, 0.995, np.abs(uw) / CYL_R)
    theta = np.arcsin(xn)
    c = np.cos(theta)
    seg_f = theta * CYL_N / (2.0 * math.pi) + 0.5 + part.phase
    seg = np.floor(seg_f)
    frac = seg_f - seg
    dist = np.minimum(frac, 1.0 - frac) * (2.0 * math.pi / CYL_N) * CYL_R * c
    hw = CYL_SLOT * c
    slot = 1.0 - smoothstep(hw - 0.6, hw + 0.6, dist)
    nx, nz = np.sin(theta), c
    diffuse = np.clip(nx * LIGHT[0] + nz * LIGHT[2], 0.0, 1.0)
    spec = np.clip(nx * HALF[0] + nz * HALF[2], 0.0, 1.0) ** 40
    tex = 1.0 + 0.05 * mark_profile(part, v) + 0.025 * part.grain
    sg = part.seg_gain[seg.astype(np.int64) % CYL_N]
    copper = (COPPER * (sg * (0.22 + 0.78 * diffuse) * tex)[..., None]
              + 0.45 * spec[..., None] * HIGHLIGHT)
    mica = MICA * ((0.5 + 0.5 * diffuse) * (1.0 + 0.08 * part.grain))[..., None]
    cov = (1.0 - slot) * inside
    scene = (copper * (1.0 - slot)[..., None] + mica * slot[..., None])
    scene = scene * inside[..., None] + BACKGROUND * (1.0 - inside)[..., None]
    return scene, cov


GROOVE_HALF, GROOVE_WALL = 20.0, 7.0


def view_groove(part, u, v, warp):
    uw = u + warp(u, v) if warp else u
    half = GROOVE_HALF + 0.4 * np.interp(v, np.arange(1024) * 0.5 - 256.0, part.width_profile)
    au = np.abs(uw) - half
    bottom = 1.0 - smoothstep(-0.6, 0.6, au)
    flat = smoothstep(GROOVE_WALL - 0.6, GROOVE_WALL + 0.6, au)
    chamfer = 1.0 - bottom - flat
    # Light from the left: the right-hand chamfer faces it, the left one
    # turns away, and the left wall shadows the groove floor next to it.
    t = np.clip(au / GROOVE_WALL, 0.0, 1.0)
    ch_shade = np.where(uw > 0, 0.75 + 0.35 * (1.0 - t), 0.30 + 0.25 * t)
    tex = 1.0 + 0.05 * mark_profile(part, v) + 0.025 * part.grain
    side = np.where(uw > 0, part.seg_gain[1], part.seg_gain[0])
    sheen = 0.78 + 0.12 * np.exp(-((u + 60.0) / 70.0) ** 2)
    copper = COPPER * (side * sheen * tex)[..., None]
    chamf = COPPER * (ch_shade * (1.0 + 0.02 * part.grain))[..., None]
    shadow = 0.45 + 0.55 * smoothstep(-half, -half + 10.0, uw)
    floor = MICA * (shadow * (1.0 + 0.10 * part.grain + 0.04 * mark_profile(part, 3.0 * u)))[..., None]
    scene = (copper * flat[..., None] + chamf * chamfer[..., None] + floor * bottom[..., None])
    return scene, flat + chamfer


HOOK_PITCH, HOOK_BASE, HOOK_TOP, HOOK_R, HOOK_FOLD = 44.0, 30.0, -70.0, 9.0, -42.0


def hook_shape(du, v, top):
    """Signed distance to a tang of half-width HOOK_R with a round top."""
    cy = top + HOOK_R
    return np.hypot(du, np.maximum(cy - v, 0.0)) - HOOK_R


def view_hook(part, u, v, warp):
    k = np.round((u - part.phase * HOOK_PITCH) / HOOK_PITCH)
    du = u - part.phase * HOOK_PITCH - k * HOOK_PITCH
    top = np.full(u.shape, HOOK_TOP)
    if warp:
        du, top = warp(u, v, du, top)
    d = hook_shape(du, v, top)
    tang = (1.0 - smoothstep(-0.7, 0.7, d)) * (1.0 - smoothstep(HOOK_BASE - 0.5, HOOK_BASE + 0.5, v))
    bar = smoothstep(HOOK_BASE - 0.6, HOOK_BASE + 0.6, v)
    # Slots between the bars sit half a pitch from the hooks.
    sd = HOOK_PITCH / 2.0 - np.abs(u - part.phase * HOOK_PITCH - k * HOOK_PITCH)
    slot = 1.0 - smoothstep(2.0, 3.2, sd)
    tex = 1.0 + 0.05 * mark_profile(part, u) + 0.025 * part.grain
    # A bent strip: shade across its width like a cylinder, darker fold line
    # where it turns back, the folded part a little darker still.
    nx = np.clip(du / HOOK_R, -1.0, 1.0)
    nz = np.sqrt(1.0 - nx * nx)
    diffuse = np.clip(nx * LIGHT[0] + nz * LIGHT[2], 0.0, 1.0)
    spec = np.clip(nx * HALF[0] + nz * HALF[2], 0.0, 1.0) ** 30
    fold = 1.0 - 0.55 * np.exp(-((v - (HOOK_FOLD + (top - HOOK_TOP) * 0.5)) / 2.0) ** 2)
    folded = np.where(v < HOOK_FOLD + (top - HOOK_TOP) * 0.5, 0.85, 1.0)
    sg = part.seg_gain[k.astype(np.int64) % 64]
    tang_rgb = (COPPER * (sg * (0.25 + 0.75 * diffuse) * fold * folded * tex)[..., None]
                + 0.35 * spec[..., None] * HIGHLIGHT)
    edge = 1.0 + 0.35 * np.exp(-((v - HOOK_BASE - 1.5) / 1.5) ** 2)
    bar_rgb = COPPER * (sg * 0.8 * edge * (1.0 + 0.05 * mark_profile(part, v) + 0.025 * part.grain))[..., None]
    bar_rgb = bar_rgb * (1.0 - slot)[..., None] + MICA * slot[..., None]
    bg = BACKGROUND * (1.0 + 0.3 * part.grain)[..., None]
    tang_only = tang * (1.0 - bar)
    scene = bg * (1.0 - tang_only - bar)[..., None] + tang_rgb * tang_only[..., None] + bar_rgb * bar[..., None]
    return scene, tang_only + bar * (1.0 - slot)


VIEW_FUNCS = {"groove": view_groove, "cylinder": view_cylinder, "hook": view_hook}


# --- defects -------------------------------------------------------------------


def pick(rng, weight, part, margin=24.0):
    """A pixel (row, col) where weight > 0.5, away from the image border."""
    s = part.size
    m = int(margin * part.scale)
    w = weight.copy()
    w[:m, :] = 0
    w[s - m:, :] = 0
    w[:, :m] = 0
    w[:, s - m:] = 0
    idx = np.flatnonzero(w > 0.5)
    if idx.size == 0:
        idx = np.flatnonzero(weight > 0.5)
    if idx.size == 0:
        idx = np.array([np.argmax(weight)])
    i = idx[rng.integers(0, idx.size)]
    return divmod(int(i), s)


def local(part, centre, angle=0.0):
    """Pixel coordinates relative to centre in reference px, rotated by angle."""
    s = part.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    dy = (yy - centre[0]) / part.scale
    dx = (xx - centre[1]) / part.scale
    c, sn = math.cos(angle), math.sin(angle)
    return c * dx + sn * dy, -sn * dx + c * dy


def wobble(rng, a, b, scale, terms=4):
    """Smooth random field built from a few sinusoids of wavelength ~scale."""
    f = np.zeros_like(a)
    for _ in range(terms):
        th = rng.uniform(0, 2 * math.pi)
        k = rng.uniform(0.6, 1.6) * 2 * math.pi / scale
        f += np.cos(k * (math.cos(th) * a + math.sin(th) * b) + rng.uniform(0, 2 * math.pi))
    return f / math.sqrt(terms / 2.0)


def defect_scratch(scene, cov, part, rng):
    centre = pick(rng, cov, part)
    a, b = local(part, centre, rng.uniform(0, math.pi))
    length = rng.uniform(30.0, 80.0)
    # At least about a pixel wide, or small images would sample it away.
    width = max(rng.uniform(0.8, 1.5), 0.9 / part.scale)
    b = b - rng.uniform(-0.006, 0.006) * a * a
    along = 1.0 - smoothstep(length / 2 - 6.0, length / 2, np.abs(a))
    prof = np.exp(-(b / width) ** 2) * along * (0.75 + 0.25 * wobble(rng, a, b, 15.0))
    prof = np.clip(prof, 0.0, 1.0)[..., None]
    if rng.random() < 0.5:
        return scene + 0.40 * prof * HIGHLIGHT
    return scene * (1.0 - 0.65 * prof)


def defect_pit(scene, cov, part, rng):
    centre = pick(rng, cov, part)
    a, b = local(part, centre, rng.uniform(0, math.pi))
    r = max(rng.uniform(3.0, 6.0), 1.5 / part.scale)
    ecc = rng.uniform(0.7, 1.0)
    rho = np.hypot(a, b / ecc) / r
    core = np.exp(-2.5 * rho * rho)
    # The rim catches the light on the side facing the lamp (upper left).
    ly = LIGHT[1] / math.hypot(LIGHT[0], LIGHT[1])
    lx = LIGHT[0] / math.hypot(LIGHT[0], LIGHT[1])
    xx, yy = local(part, centre, 0.0)
    facing = np.clip(-(xx * lx + yy * ly) / (np.hypot(xx, yy) + 1e-6), 0.0, 1.0)
    rim = np.exp(-((rho - 1.1) / 0.3) ** 2) * (0.3 + 0.7 * facing)
    return scene * (1.0 - 0.8 * core)[..., None] + 0.45 * rim[..., None] * HIGHLIGHT


def defect_stain(scene, cov, part, rng):
    centre = pick(rng, cov, part)
    a, b = local(part, centre, rng.uniform(0, math.pi))
    r = rng.uniform(8.0, 20.0)
    rho = np.hypot(a, b * rng.uniform(1.0, 1.6)) / r
    field = 1.0 - rho * rho + 0.35 * wobble(rng, a, b, r)
    alpha = smoothstep(0.0, 0.35, field) * rng.uniform(0.45, 0.7)
    # Oxide (brown-black) or patina (green); both darker than bare copper so
    # a mono camera sees them too.
    colour = np.array([0.30, 0.17, 0.10]) if rng.random() < 0.6 else np.array([0.22, 0.34, 0.27])
    lum = np.clip((scene @ LUMA) / (COPPER @ LUMA), 0.3, 1.5)
    stained = colour * lum[..., None]
    alpha = alpha * cov
    return scene * (1.0 - alpha)[..., None] + stained * alpha[..., None]


def defect_burr(scene, cov, part, rng):
    # A pixel on a copper edge, then a particle that reaches into the dark.
    # Copper pixels next to non-copper ones: the edge at any image size.
    solid = cov > 0.5
    edge = solid & ~ndimage.binary_erosion(solid, border_value=1)
    centre = pick(rng, edge.astype(np.float64), part)
    gy, gx = np.gradient(ndimage.gaussian_filter(cov, 1.5 * part.scale))
    g = np.hypot(gx[centre], gy[centre]) + 1e-9
    dirx, diry = -gx[centre] / g, -gy[centre] / g
    r = max(rng.uniform(3.5, 6.5), 1.5 / part.scale)
    off = r * 0.6 * part.scale
    c2 = (centre[0] + diry * off, centre[1] + dirx * off)
    a, b = local(part, c2, math.atan2(diry, dirx))
    rho = np.hypot(a / 1.4, b) / r + 0.15 * wobble(rng, a, b, r * 1.5)
    alpha = 1.0 - smoothstep(0.85, 1.05, rho)
    z = np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0))
    xx, yy = local(part, c2, 0.0)
    nx, ny = xx / (r * 1.4), yy / r
    lit = np.clip(nx * LIGHT[0] + ny * LIGHT[1] + z * LIGHT[2], 0.0, 1.0)
    if rng.random() < 0.7:
        rgb = COPPER * (0.35 + 0.8 * lit)[..., None] + 0.5 * (lit ** 12)[..., None] * HIGHLIGHT
    else:
        rgb = np.array([0.22, 0.22, 0.24]) * (0.5 + 0.6 * lit)[..., None]
    return scene * (1.0 - alpha)[..., None] + rgb * alpha[..., None]


def deform_warp(part, rng):
    """A local displacement of the geometry for the view of this part."""
    amp = rng.uniform(5.0, 10.0) * (1 if rng.random() < 0.5 else -1)
    v0 = rng.uniform(-70.0, 70.0)
    length = rng.uniform(8.0, 18.0)
    if part.view == "cylinder":
        k = rng.integers(-4, 4)
        theta = (k - 0.5 - part.phase) * 2 * math.pi / CYL_N
        u0 = CYL_R * math.sin(theta)

        def warp(u, v):
            return amp * np.exp(-((u - u0) / 5.0) ** 2 - ((v - v0) / length) ** 2)
        return warp
    if part.view == "groove":
        u0 = (GROOVE_HALF + GROOVE_WALL / 2) * (1 if rng.random() < 0.5 else -1)

        def warp(u, v):
            return amp * np.exp(-((u - u0) / 8.0) ** 2 - ((v - v0) / length) ** 2)
        return warp
    k = rng.integers(-1, 2)
    u0 = part.phase * HOOK_PITCH + k * HOOK_PITCH
    bend = rng.random() < 0.5
    cut = rng.uniform(15.0, 30.0)

    def warp(u, v, du, top):
        w = np.exp(-((u - u0) / (0.45 * HOOK_PITCH)) ** 8)
        if bend:
            t = np.clip((HOOK_BASE - v) / (HOOK_BASE - HOOK_TOP), 0.0, 1.0)
            return du - amp * 1.2 * t * t * w, top
        return du, top + cut * (w > 0.5)
    return warp


DEFECT_FUNCS = {"scratch": defect_scratch, "pit": defect_pit, "stain": defect_stain,
                "burr": defect_burr}


# --- camera -------------------------------------------------------------------


def camera(part, scene, channels):
    """Lighting, blur and colour conversion: everything before sensor noise."""
    s = part.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) / s - 0.5
    light = part.gain * (1.0 + part.gradient[0] * 2 * xx + part.gradient[1] * 2 * yy)
    img = scene * light[..., None]
    img = img @ LUMA if channels == 1 else img
    sigma = part.blur * part.scale
    if img.ndim == 3:
        return ndimage.gaussian_filter(img, (sigma, sigma, 0))
    return ndimage.gaussian_filter(img, sigma)


def sensor(part, img):
    rng = np.random.default_rng(part.rng_noise_seed)
    sd = np.sqrt(part.read_noise ** 2 + part.shot_noise * np.clip(img, 0.0, None))
    noisy = img + rng.standard_normal(img.shape) * sd
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def render(view, defect, size, channels, key):
    """(image, mask, defect-free image) of one part; key: ints naming the part.

    image and defect-free image are uint8 (size, size) or (size, size, 3); mask
    is uint8 0/255 (size, size), all zero when defect is None.
    """
    if view not in VIEWS:
        raise ValueError("unknown view %r" % view)
    if defect is not None and defect not in DEFECTS:
        raise ValueError("unknown defect %r" % defect)
    ss = np.random.SeedSequence([int(k) for k in key])
    part_ss, defect_ss = ss.spawn(2)
    part = Part(view, size, np.random.default_rng(part_ss))
    u, v = coords(part)
    scene, cov = VIEW_FUNCS[view](part, u, v, None)
    clean = camera(part, scene, channels)
    clean_u8 = sensor(part, clean)
    if defect is None:
        return clean_u8, np.zeros((size, size), np.uint8), clean_u8
    rng = np.random.default_rng(defect_ss)
    # A defect drawn where it barely changes the image (a stain on a dark
    # edge) is drawn again from the same stream, so the result stays
    # deterministic and every defective image has a real defect.
    for _ in range(MAX_TRIES):
        if defect == "deformed":
            scene_d, _ = VIEW_FUNCS[view](part, u, v, deform_warp(part, rng))
        else:
            scene_d = DEFECT_FUNCS[defect](scene, cov, part, rng)
        dirty = camera(part, scene_d, channels)
        diff = np.abs(dirty - clean)
        mask = (diff.max(axis=2) if diff.ndim == 3 else diff) > MASK_THRESHOLD
        if mask.sum() >= MIN_DEFECT_PX:
            break
    keep = mask[..., None] if dirty.ndim == 3 else mask
    dirty = np.where(keep, dirty, clean)
    return sensor(part, dirty), mask.astype(np.uint8) * 255, clean_u8
