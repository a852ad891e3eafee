"""Where maps and boxes sit in image coordinates: a small fixed grid per map, averaged.

Each map is divided by its maximum and resized (area average) to a ``GRID`` × ``GRID`` grid in
image coordinates (0..1 on both axes, whatever the image size); the boxes of its class become
their fractional cover of the same grid. :class:`PositionAcc` sums both over a dataset, so the
mean normalised map can be set beside the mean GT-box density (:mod:`cam_core.review.bias`).

A grid travels in an evaluation row as :func:`encode_grid`'s text (uint8, 0..255 of the map's
maximum: quantisation error <= 1/510 of the peak), so a resumed run keeps it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "GRID",
    "PositionAcc",
    "box_cover",
    "decode_grid",
    "encode_grid",
    "map_grid",
    "normalised_boxes",
]

GRID = 50
"""Side of the grid every map and box set is accumulated on."""


def map_grid(cam: np.ndarray, size: int = GRID) -> np.ndarray:
    """``cam`` / its maximum, area-resized to (size, size) float32 in [0, 1] (zeros when the
    map's maximum is <= 0).
    """
    arr = np.asarray(cam, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"map must be a non-empty 2-D array, got shape {arr.shape}")
    peak = float(arr.max())
    if not np.isfinite(peak) or peak <= 0.0:
        return np.zeros((size, size), dtype=np.float32)
    small = cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(small / peak, 0.0, 1.0).astype(np.float32)


def encode_grid(cam: np.ndarray, size: int = GRID) -> str:
    """:func:`map_grid` of ``cam`` as base64 text of size² uint8 values (row-major)."""
    grid = np.round(map_grid(cam, size) * 255.0).astype(np.uint8)
    return base64.b64encode(grid.tobytes()).decode("ascii")


def decode_grid(text: str) -> np.ndarray:
    """The float32 grid in [0, 1] of :func:`encode_grid`'s text; ValueError when it is not a
    square grid.
    """
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    side = round(raw.size**0.5)
    if side * side != raw.size or side == 0:
        raise ValueError(f"a map grid holds a square number of cells, got {raw.size}")
    return raw.reshape(side, side).astype(np.float32) / 255.0


def normalised_boxes(
    boxes: Sequence[object], shape: tuple[int, int]
) -> list[tuple[float, float, float, float]]:
    """Boxes (``x0, y0, x1, y1`` attributes, pixels) as fractions of an image of ``shape``."""
    h, w = shape
    return [
        (
            round(float(b.x0) / w, 5),  # type: ignore[attr-defined]
            round(float(b.y0) / h, 5),  # type: ignore[attr-defined]
            round(float(b.x1) / w, 5),  # type: ignore[attr-defined]
            round(float(b.y1) / h, 5),  # type: ignore[attr-defined]
        )
        for b in boxes
    ]


def _cover_1d(lo: float, hi: float, size: int) -> np.ndarray:
    """Fraction of each of ``size`` equal cells of [0, 1] covered by [lo, hi]."""
    edges = np.linspace(0.0, 1.0, size + 1)
    inter = np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo)
    return np.clip(inter * size, 0.0, 1.0)


def box_cover(boxes: Sequence[Sequence[float]], size: int = GRID) -> np.ndarray:
    """(size, size) share of each cell covered by the union of normalised boxes (the cell-wise
    maximum of each box's cover: exact for one box, a lower bound where boxes overlap a cell
    partially).
    """
    out = np.zeros((size, size), dtype=np.float64)
    for x0, y0, x1, y1 in boxes:
        cover = np.outer(_cover_1d(y0, y1, size), _cover_1d(x0, x1, size))
        np.maximum(out, cover, out=out)
    return out


@dataclass
class PositionAcc:
    """Sums of normalised map grids and of box covers of one group of rows.

    ``n`` rows added with a grid; ``n_boxed`` of them with at least one box; ``missing`` rows
    without a grid (an older row store, or a map that could not be scored). ``peak_sum`` counts
    the grid cell of each map's maximum (its first, in row-major order, on ties).
    """

    size: int = GRID
    n: int = 0
    n_boxed: int = 0
    missing: int = 0
    map_sum: np.ndarray = field(init=False, repr=False)
    box_sum: np.ndarray = field(init=False, repr=False)
    peak_sum: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"grid size must be >= 1, got {self.size!r}")
        self.map_sum = np.zeros((self.size, self.size))
        self.box_sum = np.zeros((self.size, self.size))
        self.peak_sum = np.zeros((self.size, self.size))

    def add(self, grid: str | None, boxes: Sequence[Sequence[float]] | None) -> None:
        """One row: its :func:`encode_grid` text (None: counted as missing) and its class's
        normalised boxes (None or empty: no box).
        """
        if grid is None:
            self.missing += 1
            return
        arr = decode_grid(grid)
        if arr.shape != self.map_sum.shape:
            raise ValueError(f"map grid {arr.shape} does not match the accumulator's {self.size}")
        self.map_sum += arr
        if arr.max() > 0:
            self.peak_sum[np.unravel_index(int(np.argmax(arr)), arr.shape)] += 1
        self.n += 1
        if boxes:
            self.box_sum += box_cover(boxes, self.size)
            self.n_boxed += 1

    def mean_map(self) -> np.ndarray | None:
        """Mean normalised map (size, size) in [0, 1]; None before any row."""
        return self.map_sum / self.n if self.n else None

    def peaks(self) -> np.ndarray | None:
        """Share of the maps whose maximum falls in each cell; None before any row."""
        total = self.peak_sum.sum()
        return self.peak_sum / total if total else None

    def box_density(self) -> np.ndarray | None:
        """Share of the rows with boxes whose boxes cover each cell; None without boxes."""
        return self.box_sum / self.n_boxed if self.n_boxed else None
