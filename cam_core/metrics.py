"""Localization metrics for class-activation maps, in pure numpy + OpenCV (no torch).

Conventions shared by every function here:

- A *map* (``cam``) is a finite 2-D array of shape (H, W) at image resolution, normally
  float32 in [0, 1]. NaN or inf raises ``ValueError``.
- *Boxes* are :class:`cam_core.data.Box` already at the map's resolution, in pixels, 0-based and
  half-open. A pixel (row r, column c) is inside a box iff its centre ``(c + 0.5, r + 0.5)`` is.
  Metrics never filter by class: pass the boxes of the class the map explains
  (``Sample.boxes_for(cls)``).
- Per-(image, class) scores return ``None`` when there are no boxes (not scoreable).
- Predicted boxes are tuples ``(x0, y0, x1, y1[, score])`` in the same half-open pixel convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from cam_core.data import Box

__all__ = [
    "CLASSIC_POINTING_TOLERANCE",
    "MapFigures",
    "MaxBoxAccV2",
    "PxAP",
    "best_box_iou",
    "box_iou",
    "box_mask",
    "cam_to_boxes",
    "centre_point_map",
    "centred_gaussian_map",
    "energy_in_boxes",
    "energy_ratio",
    "localization_scores",
    "map_figures",
    "mask_iou",
    "pixel_iou",
    "pointed_pixel",
    "pointing_game",
    "uniform_map",
]

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


# --------------------------------------------------------------------------------------------
# dataset-level accumulators

_CONTOUR_THRESHOLDS = np.round(np.arange(0.0, 1.0, 0.01), 2)


class MaxBoxAccV2:
    """MaxBoxAccV2 of Choe et al., CVPR 2020, accumulated one map at a time in O(thresholds) memory.

    For every map threshold t (default 0, 0.01, ..., 0.99, as fractions of the map's maximum)
    every contour of ``cam >= t * max`` gives a box (``cv2.findContours``, ``RETR_TREE``, as in the
    reference, so holes' contours count too). A sample is correct at (t, delta) when any such box
    has IoU >= delta with any of its GT boxes. Per delta the best t's accuracy is kept; the score
    is their mean over ``deltas`` (default 0.3, 0.5, 0.7).

    Deviations from the reference (clovaai/wsolevaluation ``BoxEvaluator``): thresholds apply to
    the float map with ``>=`` (the reference casts to uint8 and keeps ``> t``, so its t = 0 drops
    the zero pixels while ours keeps the whole image); boxes are half-open with areas
    ``(x1 - x0) * (y1 - y0)`` (the reference mixes ``x + w`` ends with ``+1`` areas and clips to
    ``W - 1``); a map with max <= 0 yields no box (the reference scores a 1-pixel box at the
    origin); GT is the boxes passed (the caller's per-class rule); samples without boxes are
    skipped and counted; results are fractions in [0, 1], not percentages.
    """

    def __init__(
        self,
        thresholds: Sequence[float] | np.ndarray = _CONTOUR_THRESHOLDS,
        deltas: Sequence[float] = (0.3, 0.5, 0.7),
    ) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.deltas = tuple(float(d) for d in deltas)
        if self.thresholds.ndim != 1 or self.thresholds.size == 0:
            raise ValueError(f"thresholds must be a non-empty 1-D sequence, got {thresholds!r}")
        if ((self.thresholds < 0) | (self.thresholds > 1)).any():
            raise ValueError(f"thresholds must be fractions in [0, 1], got {thresholds!r}")
        if not self.deltas or any(not 0 < d <= 1 for d in self.deltas):
            raise ValueError(f"deltas must be IoU levels in (0, 1], got {deltas!r}")
        self._correct = np.zeros((len(self.deltas), self.thresholds.size), dtype=np.int64)
        self.count = 0
        self.skipped = 0

    def best_ious(self, cam: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Per map threshold, the best IoU of any contour box with any GT box; shape (T,)."""
        arr = _check_map(cam)
        gt = _as_xyxy(boxes)
        best = np.zeros(self.thresholds.size, dtype=np.float64)
        peak = float(arr.max())
        if peak <= 0.0 or gt.shape[0] == 0:
            return best
        previous: tuple[int, np.ndarray] | None = None  # masks repeat for close thresholds
        for i, t in enumerate(self.thresholds):
            selected = arr >= t * peak
            n_sel = int(np.count_nonzero(selected))
            if previous is not None and previous[0] == n_sel:  # nested masks: same count = same
                best[i] = best[previous[1]]
                continue
            previous = (n_sel, i)
            contours, _ = cv2.findContours(
                selected.view(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
            )
            if not contours:
                continue
            rects = np.asarray([cv2.boundingRect(c) for c in contours], dtype=np.float64)
            rects[:, 2:] += rects[:, :2]  # (x, y, w, h) -> (x0, y0, x1, y1)
            best[i] = _iou_matrix(rects, gt).max()
        return best

    def update(self, cam: np.ndarray, boxes: Sequence[Box]) -> None:
        """Add one (map, GT boxes of its class) sample; a sample without boxes is skipped."""
        arr = _check_map(cam)
        if not boxes:
            self.skipped += 1
            return
        self.add_best_ious(self.best_ious(arr, boxes))

    def add_best_ious(self, best: Sequence[float] | np.ndarray) -> None:
        """Add one scored sample from its :meth:`best_ious` vector, shape (T,).

        ``update(cam, boxes)`` equals ``add_best_ious(best_ious(cam, boxes))``; this lets a
        resumable loop store the vector and rebuild the accumulator exactly.
        """
        vec = np.asarray(best, dtype=np.float64)
        if vec.shape != self.thresholds.shape:
            raise ValueError(
                f"best IoUs must have shape {self.thresholds.shape} (one per threshold), "
                f"got {vec.shape}"
            )
        for k, delta in enumerate(self.deltas):
            self._correct[k] += vec >= delta
        self.count += 1

    def compute(self) -> dict[str, float]:
        """``maxboxacc_v2`` (mean over deltas), ``maxboxacc@<delta>``, ``best_threshold@<delta>``
        (lowest map threshold reaching it) and ``n`` (samples scored).
        """
        if self.count == 0:
            raise ValueError(f"MaxBoxAccV2 has no scored samples (skipped {self.skipped})")
        acc = self._correct / self.count
        out: dict[str, float] = {}
        for k, delta in enumerate(self.deltas):
            j = int(np.argmax(acc[k]))
            out[f"maxboxacc@{delta:g}"] = float(acc[k, j])
            out[f"best_threshold@{delta:g}"] = float(self.thresholds[j])
        out["maxboxacc_v2"] = float(np.mean([out[f"maxboxacc@{d:g}"] for d in self.deltas]))
        out["n"] = float(self.count)
        return out


class PxAP:
    """Pixel average precision (Choe et al., CVPR 2020) in O(bins) memory.

    The positive pixels are those inside the union of the GT boxes (NEU-DET has no masks, so this
    is box-mask AP). Map values, which must lie in [0, 1], are histogrammed into ``bins`` equal
    bins for positive and negative pixels; threshold k keeps values >= ``k / bins``. AP is the
    area under the step precision-recall curve, ``sum_k precision_k * (recall_k - recall_k+1)``,
    as in the reference ``MaskEvaluator`` (no ignore regions here). Samples without boxes are
    skipped and counted; the result is a fraction, not a percentage.
    """

    def __init__(self, bins: int = 1000) -> None:
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins!r}")
        self.bins = int(bins)
        self._pos = np.zeros(self.bins, dtype=np.int64)
        self._neg = np.zeros(self.bins, dtype=np.int64)
        self.count = 0
        self.skipped = 0

    def update(self, cam: np.ndarray, boxes: Sequence[Box]) -> None:
        """Add one (map, GT boxes of its class) sample; a sample without boxes is skipped."""
        arr = _check_map(cam)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"PxAP needs map values in [0, 1], got range [{lo:g}, {hi:g}]")
        if not boxes:
            self.skipped += 1
            return
        self.add_histograms(*self.histograms(arr, boxes))

    def histograms(self, cam: np.ndarray, boxes: Sequence[Box]) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) pixel counts per bin, int64 (bins,) each, for one sample.

        ``update(cam, boxes)`` equals ``add_histograms(*histograms(cam, boxes))`` for a sample
        with boxes; a resumable loop can store the two vectors and rebuild the accumulator.
        """
        arr = _check_map(cam)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"PxAP needs map values in [0, 1], got range [{lo:g}, {hi:g}]")
        mask = box_mask(boxes, arr.shape)
        idx = np.clip((arr.astype(np.float64) * self.bins).astype(np.int64), 0, self.bins - 1)
        pos = np.bincount(idx[mask], minlength=self.bins).astype(np.int64)
        neg = np.bincount(idx[~mask], minlength=self.bins).astype(np.int64)
        return pos, neg

    def add_histograms(
        self, pos: Sequence[int] | np.ndarray, neg: Sequence[int] | np.ndarray
    ) -> None:
        """Add one scored sample from its :meth:`histograms` (positive, negative) counts."""
        p, n = np.asarray(pos), np.asarray(neg)
        for name, h in (("positive", p), ("negative", n)):
            if h.shape != (self.bins,):
                raise ValueError(f"{name} histogram must have shape ({self.bins},), got {h.shape}")
            if h.size and (not np.issubdtype(h.dtype, np.integer) or int(h.min()) < 0):
                raise ValueError(f"{name} histogram must hold non-negative integer counts")
        self._pos += p.astype(np.int64)
        self._neg += n.astype(np.int64)
        self.count += 1

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(thresholds, precision, recall), each (bins,), from the highest threshold down.

        Precision is NaN where a threshold keeps no pixel.
        """
        n_pos = int(self._pos.sum())
        if n_pos == 0:
            raise ValueError(
                f"PxAP has no positive pixels (scored {self.count}, skipped {self.skipped})"
            )
        tp = np.cumsum(self._pos[::-1]).astype(np.float64)
        fp = np.cumsum(self._neg[::-1]).astype(np.float64)
        kept = tp + fp
        precision = np.divide(tp, kept, out=np.full_like(tp, np.nan), where=kept > 0)
        recall = tp / n_pos
        thresholds = np.arange(self.bins - 1, -1, -1, dtype=np.float64) / self.bins
        return thresholds, precision, recall

    def compute(self) -> dict[str, float]:
        """``pxap`` (in [0, 1]), ``n`` (samples scored) and ``positive_fraction`` (chance AP)."""
        _, precision, recall = self.curve()
        gain = np.diff(recall, prepend=0.0)
        ap = float(np.sum(np.where(gain > 0, precision, 0.0) * gain))
        n_pos, n_all = int(self._pos.sum()), int(self._pos.sum() + self._neg.sum())
        return {"pxap": ap, "n": float(self.count), "positive_fraction": n_pos / n_all}


# --------------------------------------------------------------------------------------------
# baselines


def centre_point_map(shape: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) map that is 1 at the centre pixel ``(H // 2, W // 2)`` and 0 elsewhere.

    The pointing baseline ("point at the image centre").
    """
    h, w = _check_shape(shape)
    out = np.zeros((h, w), dtype=np.float32)
    out[h // 2, w // 2] = 1.0
    return out


def centred_gaussian_map(shape: tuple[int, int], sigma_frac: float = 0.25) -> np.ndarray:
    """float32 (H, W) Gaussian with peak 1, sigma = ``sigma_frac`` x height / width.

    Centred on the centre pixel ``(H // 2, W // 2)`` (the image centre for odd sizes), so that it
    points where :func:`centre_point_map` does.
    """
    h, w = _check_shape(shape)
    if not sigma_frac > 0 or not math.isfinite(sigma_frac):
        raise ValueError(f"sigma_frac must be a finite number > 0, got {sigma_frac!r}")
    ys = (np.arange(h) - h // 2) / (sigma_frac * h)
    xs = (np.arange(w) - w // 2) / (sigma_frac * w)
    g = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return g.astype(np.float32)


def uniform_map(shape: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) map of ones: energy = area share, ratio 1; points at the centre pixel."""
    h, w = _check_shape(shape)
    return np.ones((h, w), dtype=np.float32)
