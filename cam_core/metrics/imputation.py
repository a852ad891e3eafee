"""ROAD's noisy linear imputation, without the noise: which pixels a removal keeps
(:func:`road_masks`) and what the removed ones become (:func:`impute`), in pure numpy + scipy.

The rule and the weights are pytorch-grad-cam's (``pytorch_grad_cam.metrics.road``, after Rong et
al. 2022): a removed pixel is the weighted mean of its 8 neighbours, all removed pixels solved
jointly as one sparse linear system.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

__all__ = ["ROAD_PERCENTILES", "impute", "road_masks"]

ROAD_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
"""pytorch-grad-cam's ``ROADCombined`` default percentiles."""

# pytorch-grad-cam's NoisyLinearImputer neighbour weights: (row offset, column offset), weight
_NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)


def road_masks(cam: np.ndarray, percentiles: Sequence[float] = ROAD_PERCENTILES) -> np.ndarray:
    """(2, P, S, S) bool *kept* pixels of LeRF then MoRF removal at each percentile, by
    pytorch-grad-cam's rule: MoRF keeps ``cam < percentile_p(cam)``, LeRF keeps
    ``1 − cam < percentile_p(1 − cam)``.
    """
    a = np.asarray(cam, dtype=np.float32)
    out = np.empty((2, len(percentiles), *a.shape), dtype=bool)
    for d, m in enumerate(((np.float32(1) - a), a)):
        for k, p in enumerate(percentiles):
            out[d, k] = m < np.float32(np.percentile(m, p))
    return out


def impute(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Noise-free linear imputation (ROAD): every removed pixel becomes the weighted mean of its
    8 neighbours (weights 1/6 edge, 1/12 corner), solved jointly; ``image`` (C, H, W) float,
    ``keep`` (H, W) bool → (C, n_removed) float64 values in row-major order of the removed
    pixels. A removal that keeps nothing is filled with each channel's mean.

    Faster than pytorch-grad-cam's imputer on the same system: the matrix is assembled at once
    (not through a ``lil_matrix``), factorised as the symmetric matrix it is, and when the
    channels are affine copies of one another (a gray image fed to a 3-channel stem) one channel
    is solved and the others follow (the imputation commutes with affine maps).
    """
    img = np.asarray(image, dtype=np.float64)
    c_n, h, w = img.shape
    miss = ~keep
    r, c = np.nonzero(miss)
    n = len(r)
    if n == 0:
        return np.zeros((c_n, 0))
    if n == h * w:
        return np.repeat(img.reshape(c_n, -1).mean(axis=1, keepdims=True), n, axis=1)
    base, coef = _affine_channels(img)
    src = img[[0]] if coef is not None else img
    var = -np.ones((h, w), dtype=np.int64)
    var[miss] = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros((n, src.shape[0]))
    rows, cols, vals = [np.arange(n)], [np.arange(n)], []
    for dr, dc, wt in _NEIGHBOURS:
        rr, cc = r + dr, c + dc
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        ids, rr, cc = np.nonzero(ok)[0], rr[ok], cc[ok]
        diag[ids] += wt
        known = keep[rr, cc]
        rhs[ids[known]] += wt * src[:, rr[known], cc[known]].T
        rows.append(ids[~known])
        cols.append(var[rr[~known], cc[~known]])
        vals.append(np.full(int((~known).sum()), -wt))
    a = sp.csc_matrix(
        (np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
    )
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    sol = lu.solve(rhs).T  # (C', n)
    if coef is None:
        return sol
    return coef[:, None] * sol + base[:, None]


def _affine_channels(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(offsets, scales) with channel c == scale_c · channel 0 + offset_c, or (…, None)."""
    flat = img.reshape(img.shape[0], -1)
    x0 = flat[0]
    lo, hi = int(np.argmin(x0)), int(np.argmax(x0))
    if img.shape[0] == 1:
        return np.zeros(1), np.ones(1)
    if x0[hi] == x0[lo]:
        return np.zeros(0), None
    scale = (flat[:, hi] - flat[:, lo]) / (x0[hi] - x0[lo])
    offset = flat[:, lo] - scale * x0[lo]
    pred = scale[:, None] * x0[None] + offset[:, None]
    tol = 1e-6 * max(1.0, float(np.abs(flat).max()))
    if np.abs(pred - flat).max() > tol:
        return np.zeros(0), None
    return offset, scale
