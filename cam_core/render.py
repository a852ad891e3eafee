"""Pictures of maps and boxes: overlays, box outlines, PNG/.npy bytes, the words under a panel,
and the shared intensity scale across the classes of one image. Plotly figures are in
:mod:`cam_core.figures`, slide-ready PNG sheets in :mod:`cam_core.slides`.

Pure functions over arrays the engine already produced; nothing here computes a map.
Images are (H, W) uint8 grayscale or (H, W, 3) uint8 RGB; maps are (H, W) floats in [0, 1] at the
image's resolution; boxes are :class:`~cam_core.data.Box` or ``(x0, y0, x1, y1[, score])`` in
half-open pixel coordinates. Raster outputs are (H, W, 3) uint8 **RGB** (OpenCV's BGR never
leaves this module).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cam_core.data import Box, rescale_boxes
from cam_core.vocabulary import method_name, metric_info

if TYPE_CHECKING:
    from cam_core.explain import CamResult

__all__ = [
    "CAM_BOX_COLOUR",
    "CLASS_COLOURS",
    "COLORMAPS",
    "HALO_COLOUR",
    "LABEL_PLATE",
    "LOW_PROBABILITY",
    "SHARED_SCALE_TITLE",
    "as_map",
    "box_xyxy",
    "class_colour",
    "colorize",
    "colormap_lut",
    "css",
    "draw_boxes",
    "label_rects",
    "legend_markdown",
    "npy_bytes",
    "overlay",
    "panel_image",
    "panel_title",
    "png_bytes",
    "probability_note",
    "scores_caption",
    "shared_gains",
    "shared_scale",
    "thumbnail",
    "to_rgb",
]

RGB = tuple[int, int, int]
BoxLike = Box | Sequence[float]

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "hot": cv2.COLORMAP_HOT,
}
"""Colormap names the app offers → OpenCV colormap ids (plotly scales are built from the same
lookup table, so figures and PNG downloads agree)."""

CLASS_COLOURS: dict[str, RGB] = {
    "crazing": (230, 159, 0),
    "inclusion": (86, 180, 233),
    "patches": (0, 168, 122),
    "pitted_surface": (240, 228, 66),
    "rolled-in_scale": (204, 121, 167),
    "scratches": (236, 96, 52),
}
"""One colour per NEU-DET class: the Okabe–Ito palette (tells apart under colour blindness), its
green and vermilion lightened so that every outline, edged by :data:`HALO_COLOUR`, keeps a
luminance contrast of at least 2.5:1 (3:1 for most) against every colour of every colormap."""

_EXTRA_COLOURS: tuple[RGB, ...] = (
    (0, 114, 178),
    (255, 255, 255),
    (148, 103, 189),
    (140, 86, 75),
    (127, 127, 127),
    (188, 189, 34),
)
CAM_BOX_COLOUR: RGB = (255, 255, 255)
"""Outline of boxes derived from a map (GT boxes use their class colour)."""

HALO_COLOUR: RGB = (0, 0, 0)
"""Dark edge on both sides of every outline: light class colours
(inclusion's sky blue, pitted surface's yellow) and the white map boxes stay visible on every
colormap, whose palettes contain colours close to each of them."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(cls: str) -> RGB:
    """The RGB colour of class ``cls``: fixed for NEU-DET classes, stable by name otherwise."""
    if cls in CLASS_COLOURS:
        return CLASS_COLOURS[cls]
    return _EXTRA_COLOURS[sum(cls.encode("utf-8")) % len(_EXTRA_COLOURS)]


def css(colour: RGB) -> str:
    """``"rgb(r,g,b)"`` for HTML and plotly."""
    return f"rgb({colour[0]},{colour[1]},{colour[2]})"


# --------------------------------------------------------------------------- rasters


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 → a new (H, W, 3) uint8 RGB array."""
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")


def as_map(cam: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``cam`` as an (H, W) float32 array clipped to [0, 1]; ``shape`` (H, W[, 3]) must match.

    Raises ``ValueError`` naming the shapes, or for NaN / inf values.
    """
    arr = np.asarray(cam, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"map must be (H, W), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape[:2]):
        raise ValueError(f"map is {arr.shape} but the image is {tuple(shape[:2])}")
    if not np.isfinite(arr).all():
        raise ValueError("map contains NaN or inf values")
    return np.clip(arr, 0.0, 1.0)


def _check_colormap(colormap: str) -> int:
    try:
        return COLORMAPS[colormap]
    except KeyError:
        raise KeyError(f"Unknown colormap {colormap!r}; valid: {sorted(COLORMAPS)}") from None


def colormap_lut(colormap: str = "jet") -> np.ndarray:
    """The (256, 3) uint8 RGB palette of ``colormap``: entry v colours map value v / 255."""
    code = _check_colormap(colormap)
    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None, :], code)[0, :, ::-1].copy()


def colorize(cam: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 RGB via ``colormap`` (values outside clipped)."""
    code = _check_colormap(colormap)
    u8 = np.rint(as_map(cam) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(u8, code)[:, :, ::-1].copy()


def overlay(
    image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5, colormap: str = "jet"
) -> np.ndarray:
    """The image blended with the coloured map: ``(1 - alpha) * image + alpha * colour``.

    ``alpha`` in [0, 1] (0 = image only, 1 = map only); returns (H, W, 3) uint8 RGB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    rgb = to_rgb(image)
    heat = colorize(as_map(cam, rgb.shape), colormap)
    mixed = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def box_xyxy(box: BoxLike) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a :class:`Box` or an ``(x0, y0, x1, y1[, score])`` tuple."""
    if isinstance(box, Box):
        return box.x0, box.y0, box.x1, box.y1
    if len(box) < 4:
        raise ValueError(f"box must be (x0, y0, x1, y1[, score]), got {box!r}")
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


def _pixel_span(lo: float, hi: float, limit: int) -> tuple[int, int] | None:
    """First and last pixel (inclusive) whose centre lies in [lo, hi), clipped to the image."""
    first = max(math.ceil(lo - 0.5), 0)
    last = min(math.ceil(hi - 0.5) - 1, limit - 1)
    return (first, last) if first <= last else None


def _ring(out: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], t: int, rgb: RGB) -> None:
    """Paint the ``t``-pixel ring just inside rows r0..r1 × cols c0..c1 (inclusive), clipped."""
    h, w = out.shape[:2]
    (r0, r1), (c0, c1) = rows, cols
    for ra, rb, ca, cb in (
        (r0, min(r0 + t - 1, r1), c0, c1),
        (max(r1 - t + 1, r0), r1, c0, c1),
        (r0, r1, c0, min(c0 + t - 1, c1)),
        (r0, r1, max(c1 - t + 1, c0), c1),
    ):
        ra, rb, ca, cb = max(ra, 0), min(rb, h - 1), max(ca, 0), min(cb, w - 1)
        if ra <= rb and ca <= cb:
            out[ra : rb + 1, ca : cb + 1] = rgb


LABEL_PLATE: RGB = (24, 24, 24)
"""Solid backing of box labels: crisp text on every colormap (not a blurred halo stroke)."""

Rect = tuple[int, int, int, int]
"""Pixel rectangle (x0, y0, x1, y1), ends exclusive."""


def _label_font(h: int, w: int) -> tuple[float, int]:
    scale = max(0.35, min(h, w) / 600)
    return scale, max(1, round(scale))


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(
    shape: tuple[int, ...], text: str, rows: tuple[int, int], c0: int, taken: Sequence[Rect]
) -> tuple[tuple[int, int], Rect] | None:
    """Baseline origin and plate of ``text`` for the box with pixel ``rows`` starting at column
    ``c0``: above the box, else inside its top edge, else below it, else stacked further out;
    shifted left to end inside the image; None when every place overlaps a plate in ``taken``.
    """
    h, w = shape[:2]
    scale, stroke = _label_font(h, w)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, stroke)
    x = max(2, min(c0 + 1, w - tw - 3))
    step = th + base + 5
    above, inside, below = rows[0] - 3 - base, rows[0] + th + 5, rows[1] + th + 5
    tries = [above, inside, below, *(above - k * step for k in (1, 2)), inside + step]
    for y in tries:
        plate = (x - 2, y - th - 2, x + tw + 2, y + base + 1)
        if plate[1] >= 0 and plate[3] <= h and not any(_overlaps(plate, t) for t in taken):
            return (x, y), plate
    return None


def label_rects(
    shape: tuple[int, ...], boxes: Sequence[BoxLike], labels: Sequence[str]
) -> list[Rect | None]:
    """Where :func:`draw_boxes` puts each label's plate in an image of ``shape`` (one per box,
    None for an empty label, a box outside the image, or a label skipped because every place
    for it overlaps an earlier label). Placed plates never overlap each other.
    """
    if len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
    h, w = shape[:2]
    taken: list[Rect] = []
    out: list[Rect | None] = []
    for box, text in zip(boxes, labels, strict=True):
        x0, y0, x1, y1 = box_xyxy(box)
        cols, rows = _pixel_span(x0, x1, w), _pixel_span(y0, y1, h)
        spot = _place_label(shape, text, rows, cols[0], taken) if text and cols and rows else None
        out.append(spot[1] if spot else None)
        if spot:
            taken.append(spot[1])
    return out


def _label(out: np.ndarray, text: str, origin: tuple[int, int], plate: Rect, rgb: RGB) -> None:
    """``text`` in ``rgb`` at baseline ``origin`` on a solid :data:`LABEL_PLATE` ``plate``."""
    scale, stroke = _label_font(*out.shape[:2])
    out[plate[1] : plate[3], plate[0] : plate[2]] = LABEL_PLATE
    cv2.putText(out, text, origin, _FONT, scale, rgb, stroke, cv2.LINE_AA)


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[BoxLike],
    *,
    colour: RGB | None = None,
    thickness: int = 2,
    labels: Sequence[str] | None = None,
    halo: bool = True,
) -> np.ndarray:
    """A copy of ``image`` (as RGB) with each box outlined ``thickness`` pixels *inside* its edge.

    The outline covers exactly the pixels whose centres are inside the box and within
    ``thickness`` pixels of its border; ``halo`` edges it with one :data:`HALO_COLOUR` pixel on
    both sides so that it stays visible on any colormap. ``colour`` None: a :class:`Box` takes its
    class colour, other boxes :data:`CAM_BOX_COLOUR`. ``labels`` (one per box) are written on a
    dark plate above each box (else inside its top edge, else below it), always inside the image
    and never over an earlier label (see :func:`label_rects`; a label with no free place is left
    out).
    """
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1 pixel, got {thickness}")
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
    out = to_rgb(image)
    h, w = out.shape[:2]
    spans = []
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = box_xyxy(box)
        cols, rows = _pixel_span(x0, x1, w), _pixel_span(y0, y1, h)
        if cols is not None and rows is not None:
            rgb = colour or (class_colour(box.cls) if isinstance(box, Box) else CAM_BOX_COLOUR)
            spans.append((i, rows, cols, rgb))
    t = thickness
    if halo:  # all halos first, so that no halo covers a neighbouring box's colour
        for _, (r0, r1), (c0, c1), _ in spans:
            _ring(out, (r0 - 1, r1 + 1), (c0 - 1, c1 + 1), t + 2, HALO_COLOUR)
    for _, rows, cols, rgb in spans:
        _ring(out, rows, cols, t, rgb)
    taken: list[Rect] = []  # labels never overlap: a later one moves out or is left out
    for i, rows, cols, rgb in spans:
        if labels is not None and labels[i]:
            spot = _place_label(out.shape, labels[i], rows, cols[0], taken)
            if spot is not None:
                _label(out, labels[i], *spot, rgb)
                taken.append(spot[1])
    return out


def thumbnail(image: np.ndarray, boxes: Sequence[Box] = (), side: int = 128) -> np.ndarray:
    """(side, side·W/H) RGB preview of ``image`` with its GT boxes in class colours."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = cv2.resize(to_rgb(image), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return draw_boxes(small, rescale_boxes(tuple(boxes), (h, w), size), thickness=1)


def panel_image(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    gt_boxes: Sequence[Box] = (),
    cam_boxes: Sequence[BoxLike] = (),
    cam_box_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """The heatmap panel as one RGB raster: overlay, GT boxes (class colours), map boxes (white)."""
    out = overlay(image, cam, alpha=alpha, colormap=colormap)
    out = draw_boxes(out, gt_boxes)
    return draw_boxes(out, cam_boxes, colour=CAM_BOX_COLOUR, labels=cam_box_labels)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG file content of an (H, W) or (H, W, 3) uint8 RGB array."""
    arr = to_rgb(rgb)
    ok, buf = cv2.imencode(".png", arr[:, :, ::-1])
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays, checked above
        raise ValueError(f"could not encode a {arr.shape} image as PNG")
    return buf.tobytes()


def npy_bytes(cam: np.ndarray) -> bytes:
    """``.npy`` file content of a map (float32, shape kept)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(cam, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- text


def _fmt(value: float | bool | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "hit":
        return "hit ✓" if value else "miss ✗"
    return f"{float(value):.2f}"


def scores_caption(scores: Mapping[str, float | bool | None], blank: bool = False) -> str:
    """One line of localization figures: pointing, energy in boxes, pixel IoU, map-box IoU
    (short names from :mod:`cam_core.vocabulary`).

    ``blank`` (:attr:`~cam_core.explain.CamResult.blank`) puts first that the method found no
    positive evidence, so a dark panel is not read as "looking nowhere in particular".
    """
    parts = ["blank map: no positive evidence for this class"] if blank else []
    if all(v is None for v in scores.values()):
        return " · ".join([*parts, "no GT box of this class: localization not scored"])
    kinds = {"pointing": "hit", "energy": "num", "iou": "num", "box_iou": "num"}
    parts += [
        f"{metric_info(key).short} {_fmt(scores.get(key), kind)}"
        for key, kind in kinds.items()
        if key != "box_iou" or key in scores
    ]
    return " · ".join(parts)


def panel_title(image: str, cls: str, p: float | None, method: str, layer: str = "") -> str:
    """A panel's title for figures and slides: "crazing_3 · crazing (p = 0.93) · Grad-CAM @ layer3".

    ``method`` is an id (shown by its display name); ``p`` None leaves the probability out; a
    probability under :data:`LOW_PROBABILITY` adds :func:`probability_note`'s warning.
    """
    prob = "" if p is None else f" (p = {p:.2f})"
    where = f" @ {layer}" if layer else ""
    note = probability_note(p) if p is not None else ""
    return f"{image} · {cls}{prob} · {method_name(method)}{where}" + (f" · {note}" if note else "")


LOW_PROBABILITY = 0.1
"""Class probabilities under this get a warning: the map explains a class the model hardly sees."""


def probability_note(p: float, low: float = LOW_PROBABILITY) -> str:
    """The "low probability" badge text of a map of a class at probability ``p``; "" if p >= low."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p!r}")
    return f"low probability (p = {p:.2f} < {low:g})" if p < low else ""


def _swatch(background: str) -> str:
    return (
        f'<span style="display:inline-block;width:0.8em;height:0.8em;background:{background};'
        'border:1px solid #374151;border-radius:2px;margin:0 0.3em 0 0.8em"></span>'
    )


def legend_markdown(classes: Sequence[str], *, map_boxes: bool = False) -> str:
    """A one-line colour key (HTML spans) for ``classes``; ``map_boxes`` adds the white swatch of
    the boxes drawn from the map. Every swatch has a dark edge, so white and yellow read on a
    white page.
    """
    items = [f"{_swatch(css(class_colour(c)))}GT {c}" for c in classes]
    if map_boxes:
        items.append(f"{_swatch(css(CAM_BOX_COLOUR))}boxes from the map")
    return "".join(items)


# --------------------------------------------------------------------------- intensity

SHARED_SCALE_TITLE = "share of the strongest class"
"""Colour-bar title of maps drawn with :func:`shared_scale`."""


def shared_gains(results: Sequence[CamResult]) -> tuple[float | None, ...]:
    """Per map, its raw strength over the strongest among ``results`` of the same method and
    layer: multiply the normalised map by it to draw the classes of one image on one scale.

    The engine scales each map to its own peak and keeps the peak as
    :attr:`~cam_core.explain.CamResult.strength` (raw maps of one method and layer share units;
    of different methods they do not, so each method is scaled on its own). A gain is in [0, 1]:
    1 for the strongest map, 0 for a blank one; None when the strength is unknown (the map can only
    be drawn on its own scale) or every map of its group is blank.
    """
    peak: dict[tuple[str, str], float] = {}
    for r in results:
        if r.strength is not None:
            key = (r.method, r.layer)
            peak[key] = max(peak.get(key, 0.0), float(r.strength))
    gains: list[float | None] = []
    for r in results:
        top = peak.get((r.method, r.layer), 0.0)
        gains.append(None if r.strength is None or top <= 0 else float(r.strength) / top)
    return tuple(gains)


def shared_scale(cam: np.ndarray, gain: float | None) -> np.ndarray:
    """The (H, W) map in [0, 1] times ``gain`` (from :func:`shared_gains`); None keeps it as is."""
    arr = as_map(cam)
    if gain is None:
        return arr
    if not 0.0 <= gain <= 1.0:
        raise ValueError(f"gain must be in [0, 1], got {gain!r}")
    return arr * np.float32(gain)
