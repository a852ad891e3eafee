"""Procedural NEU-DET look-alikes: steel-strip textures with planted defects and their VOC boxes.

Lets the app, the tests and a demo model run on a fresh clone with no data. Each image is a
(size, size) uint8 grayscale steel-strip background (rolling streaks and grain, mild vignetting,
noise) with 1-3 local defects of one NEU class, each with its :class:`~cam_core.data.Box`
(0-based, half-open pixels). The background is drawn first from the generator, by the same code
for every class, and every defect pixel lies inside its box: the only class cue is in the boxes.

Command line: ``python -m cam_core synth OUT_DIR --per-class N --seed S`` writes a NEU-style flat
folder (``IMAGES/<stem>.png`` + ``ANNOTATIONS/<stem>.xml``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from lxml import etree

from cam_core.data import NEU_CLASSES, Box, Sample, load_dataset

MIN_AREA_FRAC = 0.03
"""Smallest box area, as a fraction of the image area."""
MAX_AREA_FRAC = 0.35
"""Largest box area, as a fraction of the image area."""
MIN_SIDE = 6
"""Smallest box side in pixels (thin scratches get their box widened to this)."""
MIN_IMAGE_SIZE = 48
"""Smallest image side :func:`generate` accepts, in pixels."""

_DEFECT_COUNT_P = (0.4, 0.4, 0.2)  # probabilities of 1, 2, 3 defects: the same for every class
_MAX_TRIES = 40
_MAX_OVERLAP = 0.3  # largest intersection / smaller box area between two defects of one image
_VISIBLE = 1.0  # a pixel belongs to a defect when it changes by more than this many gray levels

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels; may extend past the image
Drawer = Callable[[np.random.Generator, int, Rect], np.ndarray]


# --------------------------------------------------------------------------- noise fields


def _unit(field: np.ndarray) -> np.ndarray:
    """``field`` shifted and scaled to mean 0, std 1 (float32)."""
    field = field.astype(np.float32)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 low-frequency noise, about ``cells`` blobs per side, std 1."""
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(grid, (size + 2 * size // cells, size + 2 * size // cells), cv2.INTER_CUBIC)
    off = size // cells
    return _unit(big[off : off + size, off : off + size])


def _grain(rng: np.random.Generator, size: int, sigma_x: float, sigma_y: float) -> np.ndarray:
    """(size, size) float32 white noise blurred by an axis-aligned Gaussian (pixels), std 1."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    return _unit(cv2.GaussianBlur(white, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y))


def _ellipse_weight(
    rng: np.random.Generator, size: int, rect: Rect, wobble: float, soft: float
) -> np.ndarray:
    """(size, size) float32 in [0, 1]: an irregular ellipse filling ``rect``, soft edge."""
    x0, y0, x1, y1 = rect
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    coords = np.arange(size, dtype=np.float32) + 0.5
    r = ((coords[None, :] - cx) / rx) ** 2 + ((coords[:, None] - cy) / ry) ** 2
    r = np.sqrt(r) + wobble * _smooth_noise(rng, size, 6)
    return np.clip((1.0 - r) / soft, 0.0, 1.0)


def _sample_inside(
    rng: np.random.Generator, weight: np.ndarray, rect: Rect, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` (x, y) float points in ``rect`` on the image, kept with chance ``weight``."""
    size = weight.shape[0]
    x0, y0, x1, y1 = max(rect[0], 0.0), max(rect[1], 0.0), min(rect[2], size), min(rect[3], size)
    xs = rng.uniform(x0, x1, 4 * n)
    ys = rng.uniform(y0, y1, 4 * n)
    ix = np.clip(xs.astype(np.int64), 0, size - 1)
    iy = np.clip(ys.astype(np.int64), 0, size - 1)
    keep = rng.random(4 * n) < weight[iy, ix]
    return xs[keep][:n], ys[keep][:n]


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Steel-strip background and the sensor noise to add last, both (size, size) float32.

    Rolling runs vertically (streaks and grain are stretched along y), as in NEU-DET.
    """
    s = size / 200
    level = rng.uniform(85, 175)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    # rolling streaks: a column profile, slightly varying down the strip
    streak_cols = _grain(rng, size, rng.uniform(0.8, 4.0) * s, 0.1)[0]
    streaks = streak_cols[None, :] * rng.uniform(1.5, 6.0)
    streaks = streaks * (1 + 0.3 * _smooth_noise(rng, size, 3))
    grain = _grain(rng, size, rng.uniform(0.5, 1.0) * s, rng.uniform(1.5, 5.0) * s)
    grain *= rng.uniform(2.0, 9.0)
    mottle = _smooth_noise(rng, size, int(rng.integers(3, 7))) * rng.uniform(1.5, 6.0)
    # mild vignetting and an illumination gradient in a random direction
    r2 = coords[None, :] ** 2 + coords[:, None] ** 2
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]
    light = (1 - rng.uniform(0.0, 0.35) * r2) * (1 + rng.uniform(0.0, 0.25) * ramp)
    image = (level + streaks + grain + mottle) * light
    noise = rng.standard_normal((size, size)).astype(np.float32) * rng.uniform(1.0, 3.5)
    return image.astype(np.float32), noise


# --------------------------------------------------------------------------- defects
# Each drawer returns the (size, size) float32 gray-level change a defect filling ``rect`` makes.


def _crazing(rng: np.random.Generator, size: int, rect: Rect) -> np.ndarray:
    """A network of short, wiggly, mostly horizontal fine dark cracks."""
    s = size / 200
    weight = _ellipse_weight(rng, size, rect, wobble=0.25, soft=0.15)
    area = (rect[2] - rect[0]) * (rect[3] - rect[1])
    xs, ys = _sample_inside(rng, weight, rect, int(area / rng.uniform(30, 60) / s**2))
    n, k = len(xs), 6
    heading = rng.normal(0, 0.25, n)[:, None] + rng.choice([0, np.pi], n)[:, None]
    turns = heading + np.cumsum(rng.normal(0, 0.28, (n, k)), axis=1)
    steps = rng.uniform(1.0, 3.0, (n, k)) * s
    px = xs[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(steps * np.cos(turns), 1)], 1)
    py = ys[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(steps * np.sin(turns), 1)], 1)
    pts = np.round(np.stack([px, py], axis=-1) * 4).astype(np.int32)  # shift=2 fixed point
    canvas = np.zeros((size, size), np.uint8)
    half = n // 2
    cv2.polylines(canvas, list(pts[:half]), False, 255, 1, cv2.LINE_AA, shift=2)
    cv2.polylines(canvas, list(pts[half:]), False, 150, 1, cv2.LINE_AA, shift=2)
    cracks = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.5 * s)
    mottle = np.clip(_grain(rng, size, 1.5 * s, 1.5 * s), 0, None) * weight
    amp = rng.uniform(30, 55)
    return -amp * (cracks * (0.6 + 0.4 * np.sqrt(weight)) + 0.2 * mottle)


def _inclusion(rng: np.random.Generator, size: int, rect: Rect) -> np.ndarray:
    """1-4 dark elongated spots strung along the rolling direction, with a faint dark trail."""
    s = size / 200
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    m = int(rng.integers(1, 5))
    lengths = rng.uniform(0.6, 1.0, m) * h / max(m, 1.5)
    centres_y = np.linspace(y0 + lengths[0] / 2, y1 - lengths[-1] / 2, m)
    if m == 1:
        centres_y = np.array([(y0 + y1) / 2])
    canvas = np.zeros((size, size), np.uint8)
    for cy, length in zip(centres_y, lengths, strict=True):
        cx = rng.uniform(x0 + 0.3 * w, x1 - 0.3 * w)
        half_len = max(4.0, length / 2)
        axes = (max(1.5, min(rng.uniform(0.08, 0.2) * w, half_len / 2.2)), half_len)
        centre = (round(cx * 4), round(cy * 4))
        axes4 = (round(axes[0] * 4), round(axes[1] * 4))
        tone = int(rng.integers(170, 256))
        cv2.ellipse(canvas, centre, axes4, rng.normal(0, 8), 0, 360, tone, -1, cv2.LINE_AA, 2)
    spots = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), rng.uniform(0.8, 1.6) * s)
    trail = np.zeros((size, size), np.uint8)
    xm = (x0 + x1) / 2 + rng.normal(0, 0.1 * w)
    cv2.line(trail, (round(xm * 4), round(y0 * 4)), (round(xm * 4), round(y1 * 4)), 255, 2,
             cv2.LINE_AA, 2)  # fmt: skip
    trail_f = cv2.GaussianBlur(trail.astype(np.float32) / 255, (0, 0), 2.0 * s)
    texture = 0.8 + 0.2 * _smooth_noise(rng, size, 25)
    amp = rng.uniform(50, 90)
    return -amp * (spots * texture + 0.2 * trail_f)


def _patches(rng: np.random.Generator, size: int, rect: Rect) -> np.ndarray:
    """An irregular blotchy region, mostly darker (sometimes lighter), mottled inside."""
    s = size / 200
    weight = _ellipse_weight(rng, size, rect, wobble=0.35, soft=0.35)
    blotch = np.clip(0.7 + 0.5 * _smooth_noise(rng, size, int(rng.integers(12, 20))), 0, 1)
    texture = 0.85 + 0.15 * _grain(rng, size, 1.2 * s, 1.8 * s)
    sign = -1.0 if rng.random() < 0.8 else 0.7
    return sign * rng.uniform(45, 90) * weight * blotch * texture


def _pitted_surface(rng: np.random.Generator, size: int, rect: Rect) -> np.ndarray:
    """A cluster of small dark pits, slightly stretched along the rolling direction."""
    s = size / 200
    weight = _ellipse_weight(rng, size, rect, wobble=0.3, soft=0.3)
    area = (rect[2] - rect[0]) * (rect[3] - rect[1])
    xs, ys = _sample_inside(rng, weight, rect, int(area / rng.uniform(35, 90) / s**2))
    canvas = np.zeros((size, size), np.float32)
    ix, iy = xs.astype(np.int64), ys.astype(np.int64)
    on = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    np.add.at(canvas, (iy[on], ix[on]), rng.uniform(0.5, 1.0, int(on.sum())).astype(np.float32))
    sx = rng.uniform(0.9, 1.6) * s
    sy = sx * rng.uniform(1.0, 1.7)
    pits = np.clip(cv2.GaussianBlur(canvas, (0, 0), sx, sigmaY=sy) * (2 * np.pi * sx * sy), 0, 1.3)
    amp = rng.uniform(35, 70)
    return -amp * (pits + 0.12 * weight)


def _rolled_in_scale(rng: np.random.Generator, size: int, rect: Rect) -> np.ndarray:
    """Flaky scale: irregular dark flakes with a few bright ones, on a mottled patch."""
    s = size / 200
    weight = _ellipse_weight(rng, size, rect, wobble=0.3, soft=0.3)
    flakes = _grain(rng, size, rng.uniform(2.0, 3.2) * s, rng.uniform(1.2, 2.0) * s)
    flakes += 0.4 * _grain(rng, size, 0.8 * s, 0.8 * s)
    t = rng.uniform(0.8, 1.3)
    dark = np.clip((flakes - t) / 0.5, 0, 1)
    bright = np.clip((-flakes - t - 0.3) / 0.5, 0, 1)
    mottle = np.clip(_smooth_noise(rng, size, 20), 0, None)
    amp = rng.uniform(35, 65)
    return amp * weight * (-dark + 0.4 * bright - 0.2 * mottle)


def _scratches(rng: np.random.Generator, size: int, rect: Rect) -> np.ndarray:
    """A thin long line (mostly bright, sometimes dark) along ``rect``'s long diagonal axis."""
    s = size / 200
    x0, y0, x1, y1 = rect
    # rect is the scratch's extent; it runs corner to corner (or straight when rect is thin)
    flip = rng.random() < 0.5
    ends = np.array([[x0, y1], [x1, y0]] if flip else [[x0, y0], [x1, y1]], np.float64)
    t = np.linspace(0, 1, 16)[:, None]
    pts = ends[0] + t * (ends[1] - ends[0])
    direction = (ends[1] - ends[0]) / max(float(np.hypot(*(ends[1] - ends[0]))), 1e-6)
    wiggle = np.cumsum(rng.normal(0, 0.4 * s, 16))
    wiggle -= np.linspace(wiggle[0], wiggle[-1], 16)
    pts += wiggle[:, None] * np.array([-direction[1], direction[0]])
    canvas = np.zeros((size, size), np.uint8)
    thick = 1 if rng.random() < 0.7 else 2
    cv2.polylines(canvas, [np.round(pts * 4).astype(np.int32)], False, 255, thick, cv2.LINE_AA, 2)
    line = canvas.astype(np.float32) / 255
    core = cv2.GaussianBlur(line, (0, 0), 0.6 * s)
    halo = cv2.GaussianBlur(line, (0, 0), 2.5 * s)
    along = np.clip(0.55 + 0.5 * _smooth_noise(rng, size, 8), 0.15, 1.4)
    if rng.random() < 0.75:
        return rng.uniform(60, 120) * along * (core + 0.3 * halo)
    return -rng.uniform(50, 80) * along * (core + 0.2 * halo)


_DRAWERS: dict[str, Drawer] = {
    "crazing": _crazing,
    "inclusion": _inclusion,
    "patches": _patches,
    "pitted_surface": _pitted_surface,
    "rolled-in_scale": _rolled_in_scale,
    "scratches": _scratches,
}

# area fraction range and aspect (height / width) range of a defect's region, per class
_REGION: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "crazing": ((0.08, 0.28), (0.5, 2.0)),
    "inclusion": ((0.035, 0.12), (2.5, 6.0)),
    "patches": ((0.05, 0.25), (0.5, 2.5)),
    "pitted_surface": ((0.08, 0.28), (0.6, 2.5)),
    "rolled-in_scale": ((0.06, 0.22), (0.5, 2.0)),
}


def _region(rng: np.random.Generator, cls: str, size: int, inside: bool) -> Rect:
    """A random defect region: at most half of it off each image edge, none when ``inside``."""
    if cls == "scratches":
        length = rng.uniform(0.55, 0.98) * size
        tilt = rng.normal(0, 0.14) if rng.random() < 0.75 else rng.uniform(-np.pi / 2, np.pi / 2)
        w = max(abs(math.sin(tilt)) * length, 1.0)
        h = max(abs(math.cos(tilt)) * length, 1.0)
    else:
        (a_lo, a_hi), (r_lo, r_hi) = _REGION[cls]
        area = rng.uniform(a_lo, a_hi) * size * size
        aspect = math.exp(rng.uniform(math.log(r_lo), math.log(r_hi)))
        w, h = math.sqrt(area / aspect), math.sqrt(area * aspect)
    w, h = min(w, size * 0.98), min(h, size * 0.98)
    if inside:
        cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
    else:
        cx, cy = rng.uniform(w / 4, size - w / 4), rng.uniform(h / 4, size - h / 4)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _grow(lo: int, hi: int, need: int, size: int) -> tuple[int, int]:
    """Interval [lo, hi) widened about its centre to length ``need``, kept inside [0, size)."""
    if hi - lo >= need:
        return lo, hi
    lo = max(0, min(size - need, (lo + hi - need) // 2))
    return lo, lo + need


def _fit_box(delta: np.ndarray) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1) enclosing every visible pixel of ``delta``, grown to the minimum
    side and area; None when nothing is visible or the box is too large.
    """
    size = delta.shape[0]
    visible = np.abs(delta) > _VISIBLE
    cols, rows = np.flatnonzero(visible.any(axis=0)), np.flatnonzero(visible.any(axis=1))
    if cols.size == 0:
        return None
    x0, x1 = _grow(int(cols[0]), int(cols[-1]) + 1, MIN_SIDE, size)
    y0, y1 = _grow(int(rows[0]), int(rows[-1]) + 1, MIN_SIDE, size)
    min_area = MIN_AREA_FRAC * size * size
    if (x1 - x0) * (y1 - y0) < min_area:
        if x1 - x0 <= y1 - y0:
            x0, x1 = _grow(x0, x1, min(size, math.ceil(min_area / (y1 - y0))), size)
        else:
            y0, y1 = _grow(y0, y1, min(size, math.ceil(min_area / (x1 - x0))), size)
    area = (x1 - x0) * (y1 - y0)
    if not min_area <= area <= MAX_AREA_FRAC * size * size:
        return None
    return x0, y0, x1, y1


def _overlap(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a.x1, b.x1) - max(a.x0, b.x0)
    ih = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, iw) * max(0.0, ih) / max(min(a.area, b.area), 1e-6)


# --------------------------------------------------------------------------- public API


def generate(
    cls: str, rng: np.random.Generator, size: int = 200
) -> tuple[np.ndarray, tuple[Box, ...]]:
    """One synthetic steel image with 1-3 planted defects of class ``cls``.

    Returns a (size, size) uint8 grayscale image and one :class:`Box` per defect (0-based,
    half-open pixels, integer-valued; ``truncated`` when the defect runs off the image). Each box
    covers 3-35 % of the image and contains every pixel its defect changed. The background is
    drawn first and identically for every class, so the same generator state gives the same
    pixels outside the boxes whatever ``cls`` is.
    """
    if cls not in _DRAWERS:
        raise ValueError(f"unknown defect class {cls!r}; valid: {', '.join(NEU_CLASSES)}")
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"size must be >= {MIN_IMAGE_SIZE} pixels, got {size}")
    image, noise = _background(rng, size)
    n_defects = int(rng.choice(len(_DEFECT_COUNT_P), p=_DEFECT_COUNT_P)) + 1
    boxes: list[Box] = []
    for _ in range(n_defects):
        for attempt in range(_MAX_TRIES):
            rect = _region(rng, cls, size, inside=attempt >= _MAX_TRIES // 2)
            visible_w = min(rect[2], size) - max(rect[0], 0)
            visible_h = min(rect[3], size) - max(rect[1], 0)
            if visible_w * visible_h < MIN_AREA_FRAC * size * size and cls != "scratches":
                continue
            delta = _DRAWERS[cls](rng, size, rect)
            fitted = _fit_box(delta)
            if fitted is None:
                continue
            x0, y0, x1, y1 = fitted
            truncated = (rect[0] < 0 and x0 == 0) or (rect[1] < 0 and y0 == 0)
            truncated |= (rect[2] > size and x1 == size) or (rect[3] > size and y1 == size)
            box = Box(cls, float(x0), float(y0), float(x1), float(y1), truncated=truncated)
            if any(_overlap(box, other) > _MAX_OVERLAP for other in boxes):
                continue
            image[y0:y1, x0:x1] += delta[y0:y1, x0:x1]  # nothing outside the box changes
            boxes.append(box)
            break
    if not boxes:  # pragma: no cover - the second half of the tries always fits one
        raise RuntimeError(f"could not place a {cls!r} defect on a {size}x{size} image")
    image = np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)
    return image, tuple(boxes)


def make_sample_set(
    n_per_class: int, seed: int, size: int = 200
) -> list[tuple[str, np.ndarray, tuple[Box, ...]]]:
    """``n_per_class`` images of every NEU class as (stem, image, boxes), class by class.

    Stems look like ``crazing_synth_0007``. Image ``i`` of a class depends only on
    (``seed``, class, ``i``), not on ``n_per_class``.
    """
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    out = []
    for k, cls in enumerate(NEU_CLASSES):
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, k, i])
            image, boxes = generate(cls, rng, size)
            out.append((f"{cls}_synth_{i:04d}", image, boxes))
    return out


def voc_xml(filename: str, size: tuple[int, int], boxes: tuple[Box, ...]) -> bytes:
    """A NEU-style VOC annotation (1-based inclusive ints, depth 1) for an image of (h, w)."""
    h, w = size
    root = etree.Element("annotation")
    etree.SubElement(root, "folder").text = "synthetic"
    etree.SubElement(root, "filename").text = filename
    etree.SubElement(etree.SubElement(root, "source"), "database").text = "cam_core.synth"
    size_el = etree.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 1)):
        etree.SubElement(size_el, tag).text = str(value)
    etree.SubElement(root, "segmented").text = "0"
    for box in boxes:
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = box.cls
        etree.SubElement(obj, "pose").text = "Unspecified"
        etree.SubElement(obj, "truncated").text = str(int(box.truncated))
        etree.SubElement(obj, "difficult").text = str(int(box.difficult))
        bnd = etree.SubElement(obj, "bndbox")
        coords = (
            ("xmin", max(1, math.floor(box.x0) + 1)),
            ("ymin", max(1, math.floor(box.y0) + 1)),
            ("xmax", min(w, math.ceil(box.x1))),
            ("ymax", min(h, math.ceil(box.y1))),
        )
        for tag, value in coords:
            etree.SubElement(bnd, tag).text = str(value)
    return etree.tostring(root, pretty_print=True, encoding="utf-8")


def write_voc_folder(out_dir: str | Path, n_per_class: int, seed: int, size: int = 200) -> Path:
    """Write :func:`make_sample_set` as ``out_dir/IMAGES/<stem>.png`` and
    ``out_dir/ANNOTATIONS/<stem>.xml`` (NEU flat layout); returns ``out_dir`` as a Path.
    """
    out = Path(out_dir)
    images, annotations = out / "IMAGES", out / "ANNOTATIONS"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for stem, image, boxes in make_sample_set(n_per_class, seed, size):
        path = images / f"{stem}.png"
        if not cv2.imwrite(str(path), image):
            raise OSError(f"could not write image {path}")
        (annotations / f"{stem}.xml").write_bytes(voc_xml(path.name, image.shape, boxes))
    return out


def synthetic_folder(n_per_class: int = 3, seed: int = 7, root: str | Path | None = None) -> Path:
    """A synthetic NEU-like VOC folder (written once, reused): the app's demo without data.

    Lives under ``root`` (default: the system temp folder), named by ``n_per_class`` and ``seed``.
    """
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    out = base / f"cam-core-synthetic-{n_per_class}x-seed{seed}"
    if not (out / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix=out.name + "-", dir=base))
        write_voc_folder(tmp, n_per_class, seed)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, out)
        except OSError:  # another session wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def synthetic_samples(n_per_class: int = 3, seed: int = 7) -> tuple[Sample, ...]:
    """The samples of :func:`synthetic_folder` (boxes from their XML)."""
    return load_dataset(synthetic_folder(n_per_class, seed)).samples
