"""Dataset-level figures accumulated over many maps: MaxBoxAccV2 and PxAP (Choe et al., 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cam_core.data import Box
from cam_core.metrics.localization import _as_xyxy, _check_map, _iou_matrix, box_mask

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
