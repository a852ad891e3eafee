"""Model-free maps any localization claim must beat: centre point, centred Gaussian, uniform."""

from __future__ import annotations

import math

import numpy as np

from cam_core.metrics.localization import _check_shape

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
