"""Plotly figures and tables: the image and its maps for the browser, class scores, the
confusion matrix, and the evaluation's per-class comparison (table, styling, bars).

Pictures come from :mod:`cam_core.render` (same colours, same colormap lookup tables, so figures
and PNG downloads agree). Plotly figures place pixel (r, c) at (x=c, y=r), so a box edge ``x0``
(a pixel boundary) is drawn at ``x0 - 0.5``. Evaluation inputs are
:meth:`cam_core.evaluation.EvalResult.summary` frames, whose column and method ids stay
machine-readable (they are the CSV's); what a person sees is named by :mod:`cam_core.vocabulary`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cam_core.data import Box
from cam_core.render import (
    CAM_BOX_COLOUR,
    HALO_COLOUR,
    BoxLike,
    as_map,
    box_xyxy,
    class_colour,
    colormap_lut,
    css,
    label_rects,
    png_bytes,
    to_rgb,
)
from cam_core.vocabulary import (
    METRICS,
    column_name,
    is_baseline,
    method_name,
    metric_name,
    row_heading,
)

__all__ = [
    "colorscale",
    "comparison_table",
    "confusion_figure",
    "heatmap_figure",
    "image_figure",
    "metric_bars",
    "probability_figure",
    "styled_comparison",
    "worst_table",
]

# --------------------------------------------------------------------------- plotly


def colorscale(colormap: str = "jet", steps: int = 16) -> list[list[Any]]:
    """A plotly colorscale sampled from the OpenCV ``colormap`` lookup table."""
    levels = np.linspace(0, 255, steps).round().astype(int)
    lut = colormap_lut(colormap)[levels]
    return [[i / (steps - 1), css(tuple(int(v) for v in lut[i]))] for i in range(steps)]


def _data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def _image_trace(rgb: np.ndarray, max_side: int, hover: bool) -> go.Image:
    """The picture as a PNG ``source`` (compact), shrunk to ``max_side`` and stretched back."""
    h, w = rgb.shape[:2]
    f = max(1.0, max(h, w) / max_side)
    if f > 1.0:
        rgb = cv2.resize(rgb, (round(w / f), round(h / f)), interpolation=cv2.INTER_AREA)
    dx, dy = w / rgb.shape[1], h / rgb.shape[0]
    return go.Image(
        source=_data_uri(rgb),
        x0=(dx - 1) / 2,
        y0=(dy - 1) / 2,
        dx=dx,
        dy=dy,
        hoverinfo="x+y" if hover else "skip",
        name="image",
    )


def _outline(boxes: Sequence[BoxLike]) -> tuple[list[float | None], list[float | None]]:
    """Closed rectangles as one polyline (None between boxes), in plotly pixel coordinates."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for box in boxes:
        x0, y0, x1, y1 = (v - 0.5 for v in box_xyxy(box))
        xs += [x0, x1, x1, x0, x0, None]
        ys += [y0, y0, y1, y1, y0, None]
    return xs, ys


def _halo_trace(boxes: Sequence[BoxLike]) -> go.Scatter:
    """A dark line under every outline (not in the legend): see :data:`HALO_COLOUR`."""
    xs, ys = _outline(boxes)
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        line={"color": "rgba({},{},{},0.85)".format(*HALO_COLOUR), "width": 4},
        name="outline halo",
        showlegend=False,
        hoverinfo="skip",
    )


def _gt_traces(boxes: Sequence[Box], dash: str, legend: bool) -> list[go.Scatter]:
    """One outline trace per class (legend entry = class name, colour = class colour)."""
    traces = []
    for cls in dict.fromkeys(b.cls for b in boxes):
        mine = [b for b in boxes if b.cls == cls]
        xs, ys = _outline(mine)
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": css(class_colour(cls)), "width": 2, "dash": dash},
                name=f"GT {cls} ({len(mine)})",
                legendgroup=cls,
                showlegend=legend,
                hoverinfo="name",
            )
        )
    return traces


def _layout(fig: go.Figure, title: str, height: int, shape: tuple[int, int], legend: bool) -> None:
    h, w = shape
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 14}},
        height=height,
        margin={"l": 4, "r": 56, "t": 36, "b": 4},
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0, "font": {"size": 11}},
        plot_bgcolor="rgba(0,0,0,0)",
        hoverlabel={"bgcolor": "white"},
    )
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain")
    fig.update_yaxes(
        visible=False, range=[h - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain"
    )


def image_figure(
    image: np.ndarray,
    gt_boxes: Sequence[Box] = (),
    *,
    title: str = "",
    height: int = 360,
    max_side: int = 512,
) -> go.Figure:
    """The raw image with its GT boxes, one colour and one legend entry per class."""
    rgb = to_rgb(image)
    traces = [_image_trace(rgb, max_side, hover=True), *_gt_traces(gt_boxes, "solid", True)]
    fig = go.Figure(traces[:1] + ([_halo_trace(gt_boxes)] if gt_boxes else []) + traces[1:])
    _layout(fig, title, height + (30 if gt_boxes else 0), rgb.shape[:2], legend=bool(gt_boxes))
    return fig


def _cam_box_traces(
    boxes: Sequence[BoxLike], labels: Sequence[str] | None, shape: tuple[int, int]
) -> list[go.Scatter]:
    """Map boxes in white, a legend swatch that reads on a white page (white square, dark edge),
    and their labels where the slides put them (:func:`cam_core.render.label_rects`): inside
    the image, never over an earlier label.
    """
    h, w = shape
    xs, ys = _outline(boxes)
    traces = [
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"color": css(CAM_BOX_COLOUR), "width": 2},
            name=f"map boxes ({len(boxes)})",
            legendgroup="map boxes",
            showlegend=False,
            hoverinfo="name",
        ),
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={
                "symbol": "square",
                "size": 11,
                "color": css(CAM_BOX_COLOUR),
                "line": {"color": css(HALO_COLOUR), "width": 1.5},
            },
            name=f"map boxes ({len(boxes)})",
            legendgroup="map boxes",
        ),
    ]
    if labels:
        # at the places the slides use: inside the image, never over an earlier label (one with
        # no free place is left out)
        placed = [
            (s, r) for s, r in zip(labels, label_rects((h, w), boxes, labels), strict=True) if r
        ]
        texts, plates = [s for s, _ in placed], [r for _, r in placed]
        traces.append(
            go.Scatter(
                x=[(x0 + x1) / 2 - 0.5 for x0, _, x1, _ in plates],
                y=[(y0 + y1) / 2 - 0.5 for _, y0, _, y1 in plates],
                mode="text",
                text=texts,
                textposition="middle center",
                textfont={"color": "white", "size": 11, "shadow": "0 0 2px black"},
                cliponaxis=False,
                showlegend=False,
                hoverinfo="skip",
            )
        )
    return traces


def heatmap_figure(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    title: str = "",
    gt_boxes: Sequence[Box] = (),
    cam_boxes: Sequence[BoxLike] = (),
    cam_box_labels: Sequence[str] | None = None,
    height: int = 360,
    max_side: int = 256,
    scale_title: str = "",
) -> go.Figure:
    """The map over the image: a translucent heatmap (hover shows the map value), GT boxes
    dashed in class colours, and map-derived boxes in white with ``cam_box_labels``.

    The map is block-averaged to at most ``max_side`` cells a side for the browser.
    ``scale_title`` names the colour bar's scale (e.g. :data:`SHARED_SCALE_TITLE`).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if cam_box_labels is not None and len(cam_box_labels) != len(cam_boxes):
        raise ValueError(f"{len(cam_box_labels)} labels for {len(cam_boxes)} map boxes")
    rgb = to_rgb(image)
    arr = as_map(cam, rgb.shape)
    h, w = arr.shape
    f = max(1.0, max(h, w) / max_side)
    if f > 1.0:
        arr = cv2.resize(arr, (round(w / f), round(h / f)), interpolation=cv2.INTER_AREA)
    dx, dy = w / arr.shape[1], h / arr.shape[0]
    traces: list[Any] = [
        _image_trace(rgb, 512, hover=False),
        go.Heatmap(
            z=arr,
            x0=(dx - 1) / 2,
            dx=dx,
            y0=(dy - 1) / 2,
            dy=dy,
            zmin=0.0,
            zmax=1.0,
            colorscale=colorscale(colormap),
            opacity=alpha,
            showscale=True,
            colorbar={
                "thickness": 10,
                "len": 0.8,
                "tickvals": [0, 0.5, 1],
                "x": 1.01,
                "xpad": 4,
                "title": {"text": scale_title, "side": "right", "font": {"size": 10}},
            },
            hovertemplate="x %{x:.0f}, y %{y:.0f}<br>map %{z:.2f}<extra></extra>",
            name="map",
        ),
    ]
    if gt_boxes or cam_boxes:
        traces.append(_halo_trace([*gt_boxes, *cam_boxes]))
    traces += _gt_traces(gt_boxes, "dash", True)
    if cam_boxes:
        traces += _cam_box_traces(cam_boxes, cam_box_labels, (h, w))
    fig = go.Figure(traces)
    _layout(fig, title, height + 30, (h, w), legend=bool(gt_boxes or cam_boxes))
    return fig


def probability_figure(
    classes: Sequence[str], probs: Sequence[float], *, highlight: Sequence[str] = ()
) -> go.Figure:
    """Horizontal bars of class scores in [0, 1], class colours, ``highlight`` classes outlined."""
    if len(classes) != len(probs):
        raise ValueError(f"{len(classes)} classes for {len(probs)} scores")
    fig = go.Figure(
        go.Bar(
            x=[float(p) for p in probs],
            y=list(classes),
            orientation="h",
            marker={
                "color": [css(class_colour(c)) for c in classes],
                "line": {
                    "color": ["black" if c in highlight else "rgba(0,0,0,0)" for c in classes],
                    "width": 2,
                },
            },
            text=[f"{float(p):.2f}" for p in probs],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=40 + 26 * len(classes),
        margin={"l": 4, "r": 4, "t": 8, "b": 4},
        xaxis={"range": [0, 1], "title": None},
        yaxis={"autorange": "reversed"},
    )
    return fig


def confusion_figure(classes: Sequence[str], matrix: Sequence[Sequence[int]]) -> go.Figure:
    """Confusion matrix heatmap: rows = true class, columns = predicted, counts in the cells."""
    z = np.asarray(matrix, dtype=float)
    if z.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix is {z.shape} for {len(classes)} classes")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(classes),
            y=list(classes),
            colorscale="Blues",
            showscale=False,
            text=z.astype(int).astype(str),
            texttemplate="%{text}",
            hovertemplate="true %{y}<br>predicted %{x}: %{z:.0f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=80 + 40 * len(classes),
        margin={"l": 4, "r": 4, "t": 30, "b": 4},
        title={"text": "Validation confusion (rows: true class)", "font": {"size": 14}},
        yaxis={"autorange": "reversed"},
        xaxis={"side": "bottom"},
    )
    return fig


# --------------------------------------------------------------------------- evaluation


def _group_name(method: str, layer: str, layers: int) -> str:
    if is_baseline(method) or layers <= 1:
        return method
    return f"{method} @ {layer}"


def comparison_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per class (rows, "all" last) × method id (columns), baselines on the right.

    ``summary`` is :meth:`cam_core.evaluation.EvalResult.summary`; a method evaluated at several
    layers gets one column per layer ("method @ layer"). The first column, ``n``, counts the
    scored (image, class) pairs of the class (the most any method scored). Columns keep their ids;
    :func:`styled_comparison` shows them by name.
    """
    if metric not in summary.columns:
        valid = [c for c in METRICS if c in summary.columns]
        raise KeyError(f"Unknown metric {metric!r}; valid: {valid}")
    layers = summary.loc[~summary["baseline"], "layer"].nunique()
    frame = summary.assign(
        column=[
            _group_name(m, lay, layers)
            for m, lay in zip(summary["method"], summary["layer"], strict=True)
        ]
    )
    order = list(dict.fromkeys(frame.sort_values("baseline", kind="stable")["column"]))
    classes = list(dict.fromkeys(frame["class"]))
    table = frame.pivot_table(
        index="class", columns="column", values=metric, aggfunc="first", dropna=False
    ).reindex(index=classes, columns=order)
    counts = frame[~frame["baseline"]].groupby("class")["n"].max()
    table.insert(0, "n", counts.reindex(classes).fillna(0).astype(int))
    return table


def metric_bars(summary: pd.DataFrame, metric: str) -> go.Figure:
    """Grouped bars of ``metric`` per class, one bar per method (display names); baselines
    hatched and grey. The y axis is titled with the metric's name and the title gives n.
    """
    table = comparison_table(summary, metric)
    fig = go.Figure()
    greys = ("#9aa5b1", "#bcc5cf", "#d9dee4")
    n_base = 0
    for column in table.columns[1:]:
        name = column_name(column)
        marker: dict[str, Any] = {}
        if is_baseline(column):
            marker = {"color": greys[n_base % len(greys)], "pattern": {"shape": "/"}}
            n_base += 1
        fig.add_bar(
            x=list(table.index),
            y=[None if pd.isna(v) else float(v) for v in table[column]],
            name=name,
            marker=marker,
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
        )
    n_all = int(table["n"].iloc[-1]) if len(table) else 0
    title = f"{metric_name(metric)} per class (n = {n_all}) — grey hatched: baselines"
    top = max(1.0, float(pd.to_numeric(table.iloc[:, 1:].stack(), errors="coerce").max()))
    fig.update_layout(
        barmode="group",
        height=380,
        margin={"l": 4, "r": 4, "t": 40, "b": 4},
        title={"text": title, "font": {"size": 14}},
        yaxis={"range": [0, top], "title": metric_name(metric)},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def styled_comparison(table: pd.DataFrame) -> Any:
    """:func:`comparison_table` as a pandas Styler with display names for the columns: method
    cells that beat every baseline of their class in green, baseline columns grey and italic,
    three decimals.
    """
    base_ids = [c for c in table.columns if is_baseline(str(c))]
    best_base = table[base_ids].max(axis=1) if base_ids else None
    names = {c: column_name(str(c)) for c in table.columns}
    shown = table.rename(columns=names)
    base_cols = {names[c] for c in base_ids}
    count_col = names.get("n")
    value_cols = [c for c in shown.columns if c != count_col]

    def colour(row: pd.Series) -> list[str]:
        styles = []
        for column, value in row.items():
            if column == count_col:
                styles.append("color: #6b7280")
            elif column in base_cols:
                styles.append("color: #6b7280; font-style: italic; background-color: #f3f4f6")
            elif best_base is not None and pd.notna(value) and value > best_base[row.name]:
                styles.append("background-color: #d1fae5; font-weight: 600")
            else:
                styles.append("")
        return styles

    return shown.style.apply(colour, axis=1).format("{:.3f}", subset=value_cols, na_rep="–")


def worst_table(worst: pd.DataFrame) -> pd.DataFrame:
    """:func:`cam_core.evaluation.worst.worst_cases` as shown: methods and column headings by
    their display names, rows in the same order (a selected row's index is the worst case's).
    """
    shown = worst.assign(method=[method_name(str(m)) for m in worst["method"]])
    return shown.rename(columns=row_heading)
