"""Positional bias: does a class's evidence sit where its boxes are, or in a fixed place?

Per class, the evaluation accumulates (:class:`cam_core.metrics.position.PositionAcc`, a 50 × 50
grid in image coordinates) the mean normalised map (each map divided by its maximum), the mean
GT-box cover and where each map's maximum fell. :func:`position_bias` compares them:

- ``map_border`` / ``box_border``: share of the mean map's energy (of the box density's mass) in
  the border band — the outer ``band`` (10 %) of the image on each side (36 % of its area);
- ``map_corners`` / ``box_corners``: the same in the four ``band`` × ``band`` corner squares (4 %);
- ``in_box_prior``: share of the mean map's energy where the boxes occur (box density at least
  10 % of its peak);
- ``peak_share``: the largest share of map maxima inside one ``band`` × ``band`` window;
  ``box_peak_share``: the box density's mass in that same window.

**Flag rule** (any one flags the class; each adds its reason):

1. *off the boxes' prior*: ``in_box_prior`` < 0.5;
2. *border*: ``map_border`` − ``box_border`` > 0.15;
3. *corners*: ``map_corners`` > 2 × ``box_corners`` + 0.05;
4. *fixed peak*: ``peak_share`` ≥ 0.5 and ``peak_share`` > 3 × ``box_peak_share`` — half of the
   maps peak in one small window the boxes do not favour (a zero-padded CNN's layer4 peaking in
   one fixed cell per class whatever the image).

Without boxes (no box density) nothing is compared and nothing is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cam_core.evaluation import EvalResult
from cam_core.metrics.position import PositionAcc

__all__ = [
    "BAND",
    "COLUMNS",
    "FLAG_RULE",
    "BiasFigures",
    "bias_figure",
    "bias_maps",
    "bias_table",
    "position_bias",
]

BAND = 0.1
"""Border band width and side of a corner square / peak window (fraction of the image)."""

FLAG_RULE = (
    "Flagged when any holds: less than half of the mean map's energy lies where the boxes occur; "
    "the border band holds 0.15 more of the map's energy than of the boxes' mass; the corners "
    "hold more than 2x the boxes' share + 0.05; or half the maps peak in one 10 % x 10 % window "
    "holding less than a third as much of the boxes' mass."
)
"""The flag rule in a person's words (the module docstring states it with the figures' names)."""

COLUMNS: dict[str, tuple[str, str]] = {
    "map_border": (
        "Map border",
        "Share of the mean map's energy in the outer 10 % band (36 % of the area).",
    ),
    "box_border": ("Box border", "Share of the boxes' mass in the same band."),
    "map_corners": (
        "Map corners",
        "Share of the mean map's energy in the four 10 % x 10 % corners (4 % of the area).",
    ),
    "box_corners": ("Box corners", "Share of the boxes' mass in the same corners."),
    "in_box_prior": (
        "Map where boxes occur",
        "Share of the mean map's energy where the box density is at least 10 % of its peak.",
    ),
    "peak_share": (
        "Peaks in one spot",
        "Largest share of the maps' peaks inside one 10 % x 10 % window.",
    ),
    "box_peak_share": ("Boxes in that spot", "Share of the boxes' mass in that same window."),
}
"""Display name and tooltip of each :func:`bias_table` figure column."""

_RULES = {
    "off": "less than half of the mean map's energy lies where this class's boxes occur",
    "border": "the border band holds much more map energy than box mass (> +0.15)",
    "corners": "the corners hold much more map energy than box mass (> 2x + 0.05)",
    "fixed": "half or more of the maps peak in one small window the boxes do not favour",
}


@dataclass(frozen=True)
class BiasFigures:
    """:func:`position_bias`'s figures (fractions) and its verdict; ``reasons`` in plain words."""

    map_border: float
    box_border: float
    map_corners: float
    box_corners: float
    in_box_prior: float
    peak_share: float
    box_peak_share: float
    flagged: bool
    reasons: tuple[str, ...]


def _unit(arr: np.ndarray) -> np.ndarray:
    total = float(arr.sum())
    return arr / total if total > 0 else np.zeros_like(arr, dtype=np.float64)


def _masks(size: int, band: float) -> tuple[np.ndarray, np.ndarray]:
    k = max(1, round(band * size))
    border = np.ones((size, size), bool)
    border[k : size - k, k : size - k] = False
    corners = np.zeros((size, size), bool)
    for rows in (slice(0, k), slice(size - k, size)):
        for cols in (slice(0, k), slice(size - k, size)):
            corners[rows, cols] = True
    return border, corners


def _window_sums(arr: np.ndarray, k: int) -> np.ndarray:
    """Sum of ``arr`` over every k × k window (valid positions)."""
    c = np.pad(arr, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def position_bias(
    mean_map: np.ndarray,
    box_density: np.ndarray | None,
    peaks: np.ndarray | None = None,
    band: float = BAND,
) -> BiasFigures:
    """Compare a class's mean map (and its peak histogram) with its mean box density on the same
    square grid; see the module's flag rule. ValueError for grids of different shapes.
    """
    m = np.asarray(mean_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"mean map must be a square grid, got shape {m.shape}")
    size = m.shape[0]
    border, corners = _masks(size, band)
    k = max(1, round(band * size))
    mu = _unit(m)
    nan = float("nan")
    if box_density is None or float(np.sum(box_density)) <= 0:
        return BiasFigures(
            float(mu[border].sum()), nan, float(mu[corners].sum()), nan, nan, nan, nan, False, ()
        )
    d = np.asarray(box_density, dtype=np.float64)
    if d.shape != m.shape:
        raise ValueError(f"box density {d.shape} and mean map {m.shape} differ in shape")
    du = _unit(d)
    in_prior = float(mu[d >= 0.1 * d.max()].sum())
    if peaks is not None and float(np.sum(peaks)) > 0:
        wins = _window_sums(_unit(np.asarray(peaks, dtype=np.float64)), k)
        r, c = np.unravel_index(int(np.argmax(wins)), wins.shape)
        peak_share = float(wins[r, c])
        box_peak = float(du[r : r + k, c : c + k].sum())
    else:
        peak_share, box_peak = nan, nan
    fig = BiasFigures(
        map_border=float(mu[border].sum()),
        box_border=float(du[border].sum()),
        map_corners=float(mu[corners].sum()),
        box_corners=float(du[corners].sum()),
        in_box_prior=in_prior,
        peak_share=peak_share,
        box_peak_share=box_peak,
        flagged=False,
        reasons=(),
    )
    reasons = []
    if fig.in_box_prior < 0.5:
        reasons.append(_RULES["off"])
    if fig.map_border - fig.box_border > 0.15:
        reasons.append(_RULES["border"])
    if fig.map_corners > 2 * fig.box_corners + 0.05:
        reasons.append(_RULES["corners"])
    if peak_share >= 0.5 and peak_share > 3 * box_peak:
        reasons.append(_RULES["fixed"])
    return BiasFigures(**{**fig.__dict__, "flagged": bool(reasons), "reasons": tuple(reasons)})


def _position(result: EvalResult, method: str, layer: str, cls: str) -> PositionAcc | None:
    acc = result.accumulators.get((method, layer, cls))
    return getattr(acc, "position", None) if acc is not None else None


def bias_maps(
    result: EvalResult, method: str, layer: str, cls: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mean normalised map, mean box density) of ``cls`` ("all": every class) on the grid;
    None where nothing was accumulated (no map grid stored, or no box).
    """
    pos = _position(result, method, layer, cls)
    if pos is None:
        return None, None
    return pos.mean_map(), pos.box_density()


def bias_table(
    result: EvalResult, method: str, layer: str, classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per class (the result's classes that have maps, or ``classes``): ``n`` maps,
    ``missing`` rows without a stored grid, the :class:`BiasFigures` figures, ``flagged`` and
    ``reasons`` (joined with "; ").
    """
    names = list(classes) if classes is not None else list(result.classes)
    out = []
    for cls in names:
        pos = _position(result, method, layer, cls)
        if pos is None or pos.n == 0:
            continue
        fig = position_bias(pos.mean_map(), pos.box_density(), pos.peaks())  # type: ignore[arg-type]
        rec = {"class": cls, "n": pos.n, "missing": pos.missing, **fig.__dict__}
        rec["reasons"] = "; ".join(fig.reasons)
        out.append(rec)
    columns = ["class", "n", "missing", *BiasFigures.__dataclass_fields__]
    return pd.DataFrame(out, columns=columns)


def bias_figure(
    mean_map: np.ndarray, box_density: np.ndarray | None, title: str = "", band: float = BAND
) -> go.Figure:
    """Two heatmaps in image coordinates (x right, y down, 0–1): the mean normalised map and
    the mean GT-box density, the border band outlined (dashed).
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Mean map (each map / its max)", "GT-box density (share of images)"),
        horizontal_spacing=0.08,
    )
    size = mean_map.shape[0]
    axis = (np.arange(size) + 0.5) / size
    for col, arr in ((1, mean_map), (2, box_density)):
        if arr is None:
            continue
        fig.add_trace(
            go.Heatmap(
                z=arr,
                x=axis,
                y=axis,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == 2,
                hovertemplate="x %{x:.2f}, y %{y:.2f}: %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_shape(
            type="rect",
            x0=band,
            y0=band,
            x1=1 - band,
            y1=1 - band,
            line={"color": "white", "dash": "dash", "width": 1},
            row=1,
            col=col,
        )
    fig.update_yaxes(autorange="reversed", range=[0, 1], scaleanchor="x", constrain="domain")
    fig.update_xaxes(range=[0, 1], constrain="domain")
    fig.update_layout(
        title={"text": title, "font": {"size": 15}},
        height=330,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return fig
