"""Per-map localization figures: pointing game, energy in boxes, pixel IoU, map → boxes, box IoU,
and :func:`map_figures`, the one function that scores a map for evaluation rows, panels and the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from cam_core.data import Box

CLASSIC_POINTING_TOLERANCE: float = 15.0
"""Tolerance (pixels) of the classic pointing game (Zhang et al., ECCV 2016)."""

PredBox = tuple[float, float, float, float, float]
"""A box found in a map: (x0, y0, x1, y1, score), half-open pixel coordinates."""


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_map(cam: np.ndarray) -> np.ndarray:
    """The map as an ndarray, after checking it is 2-D, non-empty and finite."""
    arr = np.asarray(cam)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"map must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"map must be real-valued, got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise ValueError(f"map contains NaN or inf ({bad} of {arr.size} values)")
    return arr


def _check_non_negative(arr: np.ndarray) -> None:
    lo = float(arr.min())
    if lo < 0:
        raise ValueError(f"map must be non-negative, got min {lo:g}")


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(s) != s or s <= 0 for s in shape):
        raise ValueError(f"shape must be (height, width) with positive integers, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _box_coords(box: Box) -> tuple[float, float, float, float]:
    coords = (float(box.x0), float(box.y0), float(box.x1), float(box.y1))
    if not all(math.isfinite(v) for v in coords):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    return coords


# --------------------------------------------------------------------------------------------
# per-(image, class) metrics


def box_mask(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the union of ``boxes``; a pixel is in iff its centre is in a box.

    Parts of boxes outside the image are ignored; degenerate boxes add nothing.
    """
    h, w = _check_shape(shape)
    mask = np.zeros((h, w), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = _box_coords(box)
        # Pixel index i is inside [a, b) iff a <= i + 0.5 < b iff ceil(a - .5) <= i < ceil(b - .5).
        c0 = min(max(math.ceil(x0 - 0.5), 0), w)
        c1 = min(max(math.ceil(x1 - 0.5), 0), w)
        r0 = min(max(math.ceil(y0 - 0.5), 0), h)
        r1 = min(max(math.ceil(y1 - 0.5), 0), h)
        mask[r0:r1, c0:c1] = True
    return mask


def pointed_pixel(cam: np.ndarray) -> tuple[int, int]:
    """(row, col) the map points at: its maximum.

    Ties go to the first maximum in row-major order (``np.argmax``), except for a constant map,
    which points at the centre pixel ``(H // 2, W // 2)`` — the same pixel as
    :func:`centre_point_map`, so a uniform map scores exactly like the centre-point baseline.
    """
    arr = _check_map(cam)
    h, w = arr.shape
    if arr.max() == arr.min():
        return h // 2, w // 2
    r, c = np.unravel_index(int(np.argmax(arr)), arr.shape)
    return int(r), int(c)


def _distance_to_box(px: float, py: float, box: Box) -> float:
    """Euclidean distance (pixels) from point (px, py) to the closed rectangle of ``box``."""
    x0, y0, x1, y1 = _box_coords(box)
    dx = max(x0 - px, 0.0, px - x1)
    dy = max(y0 - py, 0.0, py - y1)
    return math.hypot(dx, dy)


def _pointing(r: int, c: int, mask: np.ndarray, boxes: Sequence[Box], tolerance: float) -> bool:
    if mask[r, c]:
        return True
    if tolerance > 0:
        px, py = c + 0.5, r + 0.5
        return any(_distance_to_box(px, py, b) <= tolerance for b in boxes)
    return False


def pointing_game(cam: np.ndarray, boxes: Sequence[Box], tolerance: float = 0.0) -> bool | None:
    """Whether the map's maximum (see :func:`pointed_pixel`) hits a box; None without boxes.

    With ``tolerance`` > 0 (pixels; the classic game uses 15) it is also a hit when the centre of
    the pointed pixel is within that Euclidean distance of a box. Pointing with a map whose maximum
    is not unique is decided by the tie rule only, so it says little (e.g. for a uniform map).
    """
    arr = _check_map(cam)
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0 pixels, got {tolerance!r}")
    if not boxes:
        return None
    r, c = pointed_pixel(arr)
    return _pointing(r, c, box_mask(boxes, arr.shape), boxes, tolerance)


def _energy(arr: np.ndarray, mask: np.ndarray) -> float:
    total = float(arr.sum(dtype=np.float64))
    if total <= 0.0:  # all-zero map: treat as uniform, i.e. the area share of the boxes
        return float(mask.mean())
    inside = float(arr.sum(where=mask, dtype=np.float64))
    return min(max(inside / total, 0.0), 1.0)


def energy_in_boxes(cam: np.ndarray, boxes: Sequence[Box]) -> float | None:
    """Share of the map's mass inside the union of ``boxes``, in [0, 1]; None without boxes.

    An all-zero map counts as uniform (the result is then the boxes' area share). The map must be
    non-negative.
    """
    arr = _check_map(cam)
    _check_non_negative(arr)
    if not boxes:
        return None
    return _energy(arr, box_mask(boxes, arr.shape))


def _ratio(energy: float, mask: np.ndarray) -> float | None:
    share = float(mask.mean())
    return None if share == 0.0 else energy / share


def energy_ratio(cam: np.ndarray, boxes: Sequence[Box]) -> float | None:
    """:func:`energy_in_boxes` divided by the boxes' area share (1.0 = chance, a uniform map).

    None without boxes, or when no pixel is inside a box (area share 0).
    """
    arr = _check_map(cam)
    _check_non_negative(arr)
    if not boxes:
        return None
    mask = box_mask(boxes, arr.shape)
    return _ratio(_energy(arr, mask), mask)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape; 1.0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def _threshold_mask(arr: np.ndarray, fraction: float) -> np.ndarray:
    """``arr >= fraction * max``; a map with max <= 0 is treated as constant (all True)."""
    peak = float(arr.max())
    if peak <= 0.0:
        return np.ones(arr.shape, dtype=bool)
    return arr >= fraction * peak


def pixel_iou(cam: np.ndarray, boxes: Sequence[Box], tau: float = 0.5) -> float | None:
    """IoU of the pixels where ``cam >= tau * cam.max()`` with the union of ``boxes``.

    None without boxes. A map with max <= 0 selects every pixel.
    """
    arr = _check_map(cam)
    _check_fraction("tau", tau)
    if not boxes:
        return None
    return mask_iou(_threshold_mask(arr, tau), box_mask(boxes, arr.shape))


def _component_boxes(
    selected: np.ndarray, arr: np.ndarray, min_area: int, score: str
) -> list[PredBox]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        selected.astype(np.uint8), connectivity=8
    )
    out: list[PredBox] = []
    for k in range(1, n):  # label 0 is the background
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        values = arr[labels == k]
        s = float(values.mean(dtype=np.float64) if score == "mean" else values.max())
        out.append((float(x), float(y), float(x + w), float(y + h), s))
    out.sort(key=lambda b: -b[4])
    return out


def cam_to_boxes(
    cam: np.ndarray,
    threshold: float | Literal["otsu"] = 0.5,
    *,
    min_area: int = 1,
    score: Literal["mean", "max"] = "mean",
) -> list[PredBox]:
    """Boxes around the 8-connected regions where the map is high, best score first.

    ``threshold`` is a fraction of the map's maximum (a pixel is kept when
    ``cam >= threshold * cam.max()``) or ``"otsu"`` (Otsu's level on the map scaled to uint8 by its
    maximum; kept when above it). Regions smaller than ``min_area`` pixels are dropped. Each box is
    ``(x0, y0, x1, y1, score)`` in half-open pixel coordinates, always inside the image, with
    ``score`` the mean or max map value in the region. A map with max <= 0 gives no boxes.
    """
    arr = _check_map(cam)
    if score not in ("mean", "max"):
        raise ValueError(f"score must be 'mean' or 'max', got {score!r}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1 pixel, got {min_area!r}")
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be a fraction in [0, 1] or 'otsu', got {threshold!r}")
    else:
        _check_fraction("threshold", threshold)
    peak = float(arr.max())
    if peak <= 0.0:
        return []
    if threshold == "otsu":
        scaled = np.clip(arr / peak, 0.0, 1.0)
        u8 = np.round(scaled * 255).astype(np.uint8)
        level, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        selected = u8 > level
        if not selected.any():  # constant map: Otsu has nothing to split
            selected = u8 >= level
    else:
        selected = arr >= threshold * peak
    return _component_boxes(selected, arr, min_area, score)


def box_iou(
    a_xyxy: Sequence[float],
    b_xyxy: Sequence[float],
) -> float:
    """IoU of two half-open boxes ``(x0, y0, x1, y1, ...)`` (extra items such as a score ignored).

    0.0 when the union has no area (e.g. both boxes degenerate).
    """
    ax0, ay0, ax1, ay1 = (float(v) for v in a_xyxy[:4])
    bx0, by0, bx1, by1 = (float(v) for v in b_xyxy[:4])
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    area_a = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0)
    area_b = max(0.0, bx1 - bx0) * max(0.0, by1 - by0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _as_xyxy(boxes: Sequence[Box] | Sequence[Sequence[float]]) -> np.ndarray:
    """(N, 4) float64 array from Box objects or (x0, y0, x1, y1, ...) tuples."""
    rows = [_box_coords(b) if isinstance(b, Box) else tuple(float(v) for v in b[:4]) for b in boxes]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) half-open xyxy arrays (0 where the union is empty)."""
    ax0, ay0, ax1, ay1 = (a[:, i, None] for i in range(4))
    bx0, by0, bx1, by1 = b.T
    iw = np.maximum(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0.0)
    ih = np.maximum(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0.0)
    inter = iw * ih
    area_a = np.maximum(ax1 - ax0, 0.0) * np.maximum(ay1 - ay0, 0.0)
    area_b = np.maximum(bx1 - bx0, 0.0) * np.maximum(by1 - by0, 0.0)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_box_iou(
    cam_boxes: Sequence[Sequence[float]],
    gt_boxes: Sequence[Box],
) -> float:
    """Best IoU of any predicted box with any GT box; 0.0 when either list is empty."""
    if not cam_boxes or not gt_boxes:
        return 0.0
    return float(_iou_matrix(_as_xyxy(cam_boxes), _as_xyxy(gt_boxes)).max())


def localization_scores(
    cam: np.ndarray,
    boxes: Sequence[Box],
    *,
    tau: float = 0.5,
    tolerance: float = CLASSIC_POINTING_TOLERANCE,
) -> dict[str, float | bool | None]:
    """Every per-(image, class) figure at once; all values None when there are no boxes.

    Keys: ``pointing`` (strict), ``pointing_tol`` (within ``tolerance`` px), ``energy``,
    ``energy_ratio``, ``iou`` (:func:`pixel_iou` at ``tau``) and ``box_iou``
    (:func:`best_box_iou` of :func:`cam_to_boxes` at ``tau``). The ``scores`` of
    :func:`map_figures`.
    """
    return map_figures(cam, boxes, threshold=tau, tolerance=tolerance, max_boxes=0).scores


@dataclass(frozen=True)
class MapFigures:
    """The figures of one map against the GT boxes of its class (:func:`map_figures`).

    ``scores``: the :func:`localization_scores` keys (all None without boxes). ``cam_boxes``: the
    best boxes of :func:`cam_to_boxes` (``(x0, y0, x1, y1, mean map value)``, pixels);
    ``cam_box_ious``: each one's best IoU with a GT box (None without boxes).
    """

    scores: dict[str, float | bool | None]
    cam_boxes: tuple[PredBox, ...] = ()
    cam_box_ious: tuple[float | None, ...] = ()

    def labels(self) -> list[str]:
        """Text for each map box: its IoU with GT, or its mean map value without GT."""
        return [
            f"IoU {iou:.2f}" if iou is not None else f"map {box[4]:.2f}"
            for box, iou in zip(self.cam_boxes, self.cam_box_ious, strict=True)
        ]


def map_figures(
    cam: np.ndarray,
    boxes: Sequence[Box],
    *,
    threshold: float | Literal["otsu"] = 0.5,
    tolerance: float = CLASSIC_POINTING_TOLERANCE,
    max_boxes: int = 5,
) -> MapFigures:
    """The figures of one map: the one function behind evaluation rows, app panels and the
    explain command.

    ``threshold`` is the map → boxes cut of :func:`cam_to_boxes` (a fraction of the peak, or
    ``"otsu"``) and, when numeric, the pixel-IoU level τ (0.5 for Otsu); ``box_iou`` is the best
    IoU of those boxes with ``boxes``. The ``max_boxes`` best map boxes are kept. Raises
    ValueError for a map that is not finite and non-negative, or a bad threshold or tolerance.
    """
    arr = _check_map(cam)
    _check_non_negative(arr)
    tau = _check_fraction("tau", threshold) if not isinstance(threshold, str) else 0.5
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0 pixels, got {tolerance!r}")
    found = cam_to_boxes(arr, threshold) if boxes or max_boxes > 0 else []
    kept = tuple(tuple(float(v) for v in b) for b in found[:max_boxes])
    keys = ("pointing", "pointing_tol", "energy", "energy_ratio", "iou", "box_iou")
    if not boxes:
        return MapFigures(dict.fromkeys(keys), kept, (None,) * len(kept))  # type: ignore[arg-type]
    mask = box_mask(boxes, arr.shape)
    r, c = pointed_pixel(arr)
    energy = _energy(arr, mask)
    scores: dict[str, float | bool | None] = {
        "pointing": _pointing(r, c, mask, boxes, 0.0),
        "pointing_tol": _pointing(r, c, mask, boxes, tolerance),
        "energy": energy,
        "energy_ratio": _ratio(energy, mask),
        "iou": mask_iou(_threshold_mask(arr, tau), mask),
        "box_iou": best_box_iou(found, boxes),
    }
    ious = tuple(best_box_iou([b], boxes) for b in kept)
    return MapFigures(scores, kept, ious)  # type: ignore[arg-type]
