"""How methods' maps of one image relate: identical or sign-inverted maps, and the best method.

For Compare: several methods explain the same (image, class); two of them may give the same map
under different names (Grad-CAM and HiResCAM on a global-average-pooled head), or one may be the
negative of another, and a person wants the best one per class marked. Pure numpy on the maps
(``(H, W)`` float arrays of equal shape) and on the panel figures of
:func:`cam_core.metrics.localization_scores`.

Example::

    for pair in related_maps({"gradcam": cam, "hirescam": cam * 0.5, "negative": 1 - cam}):
        print(pair.describe())  # Grad-CAM and HiResCAM give identical maps (r = 1.00) …
    best = best_methods({"gradcam": scores_a, "hirescam": scores_b})  # ("gradcam",)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cam_core.vocabulary import method_name, metric_info

__all__ = [
    "IDENTICAL_R",
    "INVERTED_R",
    "RANKING",
    "SAME_R",
    "MapRelation",
    "best_methods",
    "map_correlation",
    "ranking_text",
    "related_maps",
]

IDENTICAL_R = 0.99
"""Maps whose pixel correlation is at least this are flagged (nearly) identical."""

SAME_R = 0.9999
"""Flagged maps are called "identical" (not "nearly identical") from this correlation up, or
when no pixel differs by more than :data:`SAME_ATOL`."""

SAME_ATOL = 1e-4
"""Largest per-pixel difference (map units) of two maps still called identical."""

INVERTED_R = -0.9
"""Maps whose pixel correlation is at most this are flagged sign-inverted."""

RANKING: tuple[str, ...] = ("pointing", "energy", "iou", "box_iou")
"""Panel figures that pick the best method, compared in this order (ties go to the next); all
are figures the Compare captions show."""


def _as_map(cam: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(cam, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"map {name!r} must be (H, W), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"map {name!r} contains NaN or inf values")
    return arr


def map_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two (H, W) maps' pixels, in [-1, 1].

    Equal maps give 1.0 (also two blank ones); None when exactly one of them is constant (a
    correlation is undefined there). Raises ``ValueError`` when the shapes differ.
    """
    x, y = _as_map(a, "a"), _as_map(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"maps differ in shape: {x.shape} and {y.shape}")
    if np.allclose(x, y, rtol=0.0, atol=1e-6):
        return 1.0
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    if norm == 0.0:
        return None
    return float(np.clip(float(x @ y) / norm, -1.0, 1.0))


@dataclass(frozen=True)
class MapRelation:
    """Two methods (ids, in the order given) whose maps are ``kind``: "identical" (correlation
    >= :data:`SAME_R`, or equal to within :data:`SAME_ATOL`), "nearly identical" (>= the flag level,
    :data:`IDENTICAL_R` by default) or "inverted" (<= :data:`INVERTED_R`).
    """

    first: str
    second: str
    correlation: float
    kind: Literal["identical", "nearly identical", "inverted"]

    def describe(self) -> str:
        """A sentence for the page: "Grad-CAM and HiResCAM give identical maps (r = 1.00)"."""
        what = "sign-inverted" if self.kind == "inverted" else self.kind
        first, second = method_name(self.first), method_name(self.second)
        return f"{first} and {second} give {what} maps (r = {self.correlation:.2f})"


def related_maps(
    maps: Mapping[str, np.ndarray],
    *,
    identical: float = IDENTICAL_R,
    inverted: float = INVERTED_R,
) -> list[MapRelation]:
    """Every pair of ``maps`` (method id → map of the same image and class) that is (nearly)
    identical or sign-inverted, pairs in the mapping's order. A method identical to an earlier
    one is still compared with the rest, so a group of three equal maps gives three pairs.
    """
    if not -1.0 <= inverted < identical <= 1.0:
        raise ValueError(f"need -1 <= inverted < identical <= 1, got {inverted}, {identical}")
    names = list(maps)
    found = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            r = map_correlation(maps[first], maps[second])
            if r is not None and r >= identical:
                same = r >= SAME_R or _max_diff(maps[first], maps[second]) <= SAME_ATOL
                found.append(
                    MapRelation(first, second, r, "identical" if same else "nearly identical")
                )
            elif r is not None and r <= inverted:
                found.append(MapRelation(first, second, r, "inverted"))
    return found


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def ranking_text(keys: Sequence[str] = RANKING) -> str:
    """How :func:`best_methods` ranks, in caption names: "pointing, then energy, then IoU…"."""
    return ", then ".join(metric_info(k).short for k in keys)


def _rank_value(value: float | bool | None) -> float:
    return -math.inf if value is None else round(float(value), 9)


def best_methods(
    scores: Mapping[str, Mapping[str, float | bool | None]],
    keys: Sequence[str] = RANKING,
) -> tuple[str, ...]:
    """The methods whose panel figures (method id → :func:`localization_scores`-style dict) rank
    first, comparing ``keys`` in order (a pointing hit, energy, pixel IoU, box IoU); every
    method tied at the top is returned, in the mapping's order. () when no method has a figure
    (no GT box of the class: nothing to rank on).
    """
    if not keys:
        raise ValueError("keys is empty; name at least one figure, e.g. 'energy'")
    ranked = {m: tuple(_rank_value(s.get(k)) for k in keys) for m, s in scores.items()}
    scored = {m: r for m, r in ranked.items() if any(v != -math.inf for v in r)}
    if not scored:
        return ()
    top = max(scored.values())
    return tuple(m for m, r in scored.items() if r == top)
