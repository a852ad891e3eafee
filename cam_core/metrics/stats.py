"""Seeded bootstrap confidence intervals that resample *images*, for every summary figure.

An evaluation's figures are means over (image, class) rows or dataset figures (MaxBoxAccV2, PxAP)
built from per-image accumulator parts. Rows of one image are not independent (one image gives a
row per method, layer and — with several target classes — class), so the unit resampled is the
image: a bootstrap draw picks n images with replacement and *every* figure of *every* group is
recomputed from those images' rows, with the same draw for all groups. That makes paired
differences (method − best baseline on the same images) come out of the same draws.

Vectorised: a draw is a row of image counts ``W`` (B × n); a mean is ``(W @ sums) / (W @ counts)``
(the ratio estimator, exact for images with several rows), MaxBoxAccV2 is recomputed from
``W @ hits`` (deltas × thresholds per image) and PxAP from ``W @ histograms``. 1,000 draws of ~300
images cost a few matrix products.

Intervals are percentile intervals (Efron): the (1 − level)/2 and (1 + level)/2 quantiles of the
bootstrap distribution; default 1,000 draws, level 0.95, seed 0 (the same inputs always give the
same intervals). A paired difference's interval that excludes 0 is what "above the baseline"
means in :mod:`cam_core.verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DATASET_FIGURES",
    "LEVEL",
    "LOWER_IS_BETTER",
    "N_BOOT",
    "SEED",
    "SIZE_BINS",
    "Interval",
    "bootstrap_mean",
    "bootstrap_table",
    "image_parts",
    "maxboxacc_from_hits",
    "percentile_ci",
    "pxap_from_histograms",
    "resample_counts",
    "size_bin",
]

N_BOOT = 1000
LEVEL = 0.95
SEED = 0

DATASET_FIGURES: tuple[str, ...] = ("maxboxacc_v2", "pxap")
"""Figures recomputed from accumulator parts (no per-row value)."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"deletion_auc", "deletion_auc_random", "avg_drop"})
"""Figures where a lower value is better; every other figure is higher-is-better."""

SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("< 10 %", 0.0, 0.10),
    ("10–50 %", 0.10, 0.50),
    ("> 50 %", 0.50, 1.0 + 1e-9),
)
"""Box-size bins: share of the image covered by the class's boxes, [low, high)."""

ALL_SIZES = "all"


def size_bin(share: float | None) -> str | None:
    """The :data:`SIZE_BINS` label of a box share in [0, 1]; None for no boxes (share 0 / None)."""
    if share is None or not math.isfinite(share) or share <= 0.0:
        return None
    for label, lo, hi in SIZE_BINS:
        if lo <= share < hi:
            return label
    raise ValueError(f"box share must be in (0, 1], got {share!r}")


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval [lo, hi]."""

    value: float
    lo: float
    hi: float

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0."""
        return self.lo > 0.0 or self.hi < 0.0


def image_parts(deltas: Sequence[float], row: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """One row's dataset-figure parts: MaxBoxAccV2 hits (``best_iou >= delta``, bool,
    deltas × thresholds) and the PxAP (positive, negative) histograms as int32.
    """
    best = np.asarray(row["_best_ious"], dtype=np.float64)
    hits = best[None, :] >= np.asarray(deltas, dtype=np.float64)[:, None]
    return hits, np.asarray(row["_pos"], dtype=np.int32), np.asarray(row["_neg"], dtype=np.int32)


def resample_counts(n: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """(n_boot, n) float64: how often each of ``n`` images is drawn in each bootstrap draw."""
    if n < 1:
        raise ValueError(f"need at least one image to resample, got n={n}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 of bootstrap ``samples`` (NaN draws ignored)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    a = (1.0 - level) / 2.0
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            lo, hi = np.nanquantile(samples, [a, 1.0 - a], axis=0)
    return lo, hi


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """Mean of ``values`` (one per image) with its percentile interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"values must be a non-empty 1-D array of finite numbers, got {x!r}")
    w = resample_counts(x.size, n_boot, seed)
    draws = (w @ x) / x.size
    lo, hi = percentile_ci(draws, level)
    return Interval(float(x.mean()), float(lo), float(hi))


def maxboxacc_from_hits(hits: np.ndarray, count: np.ndarray) -> np.ndarray:
    """MaxBoxAccV2 from summed hits (..., D, T) and scored-map counts (...): per delta the best
    threshold's accuracy, averaged over deltas (as :class:`~cam_core.metrics.MaxBoxAccV2`).
    """
    c = np.asarray(count, dtype=np.float64)[..., None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(c > 0, hits / np.where(c > 0, c, 1.0), np.nan)
    return acc.max(axis=-1).mean(axis=-1)


def pxap_from_histograms(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """PxAP from summed (positive, negative) histograms (..., bins), as
    :meth:`cam_core.metrics.PxAP.compute`; NaN where there is no positive pixel.
    """
    tp = np.cumsum(pos[..., ::-1], axis=-1)
    fp = np.cumsum(neg[..., ::-1], axis=-1)
    n_pos = tp[..., -1:]
    kept = tp + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, tp / np.where(kept > 0, kept, 1.0), 0.0)
        recall = tp / np.where(n_pos > 0, n_pos, 1.0)
    gain = np.diff(recall, axis=-1, prepend=0.0)
    ap = np.sum(np.where(gain > 0, precision, 0.0) * gain, axis=-1)
    return np.where(n_pos[..., 0] > 0, ap, np.nan)


# ------------------------------------------------------------------------------ the table


@dataclass
class _Group:
    """One (method, layer) group's per-image sums on a stratum's images."""

    sums: np.ndarray  # (n, K)
    counts: np.ndarray  # (n, K)
    hits: np.ndarray | None  # (n, D*T)
    scored: np.ndarray | None  # (n,)
    pos: np.ndarray | None  # (n, bins)
    neg: np.ndarray | None  # (n, bins)
    dims: tuple[int, int] | None


def _group_arrays(
    frame: pd.DataFrame,
    figures: Sequence[str],
    stems: pd.Index,
    parts: Iterable[tuple[str, tuple[Any, Any, Any]]],
) -> _Group:
    n, k = len(stems), len(figures)
    vals = frame[list(figures)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    pos_idx = stems.get_indexer(frame["stem"])
    ok = np.isfinite(vals)
    sums, counts = np.zeros((n, k)), np.zeros((n, k))
    np.add.at(sums, pos_idx, np.where(ok, vals, 0.0))
    np.add.at(counts, pos_idx, ok.astype(np.float64))
    plist = [(stems.get_loc(s), p) for s, p in parts if s in stems]
    if not plist:
        return _Group(sums, counts, None, None, None, None, None)
    hits0, pos0, _ = plist[0][1]
    dims = hits0.shape
    hits = np.zeros((n, dims[0] * dims[1]))
    scored = np.zeros(n)
    pos, neg = np.zeros((n, pos0.size)), np.zeros((n, pos0.size))
    for i, (h, p, q) in plist:
        hits[i] += h.reshape(-1)
        scored[i] += 1
        pos[i] += p
        neg[i] += q
    return _Group(sums, counts, hits, scored, pos, neg, dims)


def _group_draws(g: _Group, w: np.ndarray) -> np.ndarray:
    """(B, K + 2): every figure of a group for each row of draw counts ``w``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ g.sums) / (w @ g.counts)
    extra = np.full((w.shape[0], 2), np.nan)
    if g.hits is not None and g.dims is not None:
        hits = (w @ g.hits).reshape(w.shape[0], *g.dims)
        extra[:, 0] = maxboxacc_from_hits(hits, w @ g.scored)
        extra[:, 1] = pxap_from_histograms(w @ g.pos, w @ g.neg)
    return np.concatenate([means, extra], axis=1)


def _best_baseline(
    points: Mapping[tuple[str, str], np.ndarray], baselines: Sequence[str], j: int, lower: bool
) -> tuple[str, str] | None:
    best, best_v = None, math.nan
    for key, p in points.items():
        if key[0] not in baselines or not math.isfinite(p[j]):
            continue
        if best is None or (p[j] < best_v if lower else p[j] > best_v):
            best, best_v = key, p[j]
    return best


def bootstrap_table(
    rows: pd.DataFrame,
    parts: Mapping[tuple[str, str, str], Mapping[str, tuple[Any, Any, Any]]],
    figures: Sequence[str],
    baselines: Sequence[str],
    *,
    by_size: bool = True,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Long table: one record per (method, layer, class, size, figure) with ``value``, ``lo``,
    ``hi`` (bootstrap interval), ``n_images``, and the paired difference against the best
    baseline of that class and figure (``baseline``, ``diff``, ``diff_lo``, ``diff_hi``; NaN for
    the baselines themselves or when no baseline has the figure).

    ``rows``: the evaluation's public rows (``stem``, ``class``, ``method``, ``layer``,
    ``error``, ``box_share``, and the ``figures`` columns); rows with an error are left out.
    ``parts``: per (method, layer, class) and stem, :func:`image_parts` (for MaxBoxAccV2 and
    PxAP). Strata: each class and "all", each over every size ("all") and, with ``by_size``,
    per :data:`SIZE_BINS` label (rows without boxes leave a size bin out). Every stratum draws
    its images once (seeded) and all groups use those draws. "Best baseline" is the baseline
    with the best point estimate (highest; lowest for :data:`LOWER_IS_BETTER`).
    ``progress(done, total, message)`` is called before each stratum.
    """
    figures = [f for f in figures if f in rows.columns and f not in DATASET_FIGURES]
    cols = [*figures, *DATASET_FIGURES]
    ok = rows[rows["error"].isna()] if "error" in rows.columns else rows
    ok = ok[ok["class"].notna()].copy()
    ok["_size"] = (
        [size_bin(s) for s in ok["box_share"]] if "box_share" in ok.columns else [None] * len(ok)
    )
    strata: list[tuple[str, str, pd.DataFrame]] = []
    classes = list(dict.fromkeys(ok["class"]))
    sizes = [ALL_SIZES] + ([b[0] for b in SIZE_BINS] if by_size else [])
    for cls in [*classes, "all"]:
        sub = ok if cls == "all" else ok[ok["class"] == cls]
        for size in sizes:
            part = sub if size == ALL_SIZES else sub[sub["_size"] == size]
            if len(part):
                strata.append((cls, size, part))
    out: list[dict[str, Any]] = []
    for k, (cls, size, part) in enumerate(strata):
        if progress is not None:
            progress(k, len(strata), f"bootstrap: {cls}, boxes {size}")
        stems = pd.Index(sorted(set(part["stem"])))
        w = resample_counts(len(stems), n_boot, seed)
        ones = np.ones((1, len(stems)))
        points: dict[tuple[str, str], np.ndarray] = {}
        draws: dict[tuple[str, str], np.ndarray] = {}
        for (method, layer), frame in part.groupby(["method", "layer"], sort=False):
            pairs = set(zip(frame["stem"], frame["class"], strict=True))
            gp = [
                (s, p)
                for c in (classes if cls == "all" else [cls])
                for s, p in parts.get((method, layer, c), {}).items()
                if (s, c) in pairs
            ]
            g = _group_arrays(frame, figures, stems, gp)
            points[(method, layer)] = _group_draws(g, ones)[0]
            draws[(method, layer)] = _group_draws(g, w)
        for key, d in draws.items():
            lo, hi = percentile_ci(d, level)
            for j, fig in enumerate(cols):
                if not math.isfinite(points[key][j]):
                    continue
                rec: dict[str, Any] = {
                    "method": key[0],
                    "layer": key[1],
                    "class": cls,
                    "size": size,
                    "figure": fig,
                    "value": points[key][j],
                    "lo": lo[j],
                    "hi": hi[j],
                    "n_images": len(stems),
                    "baseline": None,
                    "diff": math.nan,
                    "diff_lo": math.nan,
                    "diff_hi": math.nan,
                }
                base = _best_baseline(points, baselines, j, fig in LOWER_IS_BETTER)
                if key[0] not in baselines and base is not None:
                    diff = d[:, j] - draws[base][:, j]
                    dlo, dhi = percentile_ci(diff, level)
                    rec.update(
                        baseline=base[0],
                        diff=points[key][j] - points[base][j],
                        diff_lo=float(dlo),
                        diff_hi=float(dhi),
                    )
                out.append(rec)
    columns = [
        "method", "layer", "class", "size", "figure", "value", "lo", "hi", "n_images",
        "baseline", "diff", "diff_lo", "diff_hi",
    ]  # fmt: skip
    return pd.DataFrame(out, columns=columns)
