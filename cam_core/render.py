"""Pictures of maps and boxes: overlays, box outlines, plotly figures, PNG/.npy bytes.

Pure functions over arrays the engine already produced; nothing here computes a map.
Images are (H, W) uint8 grayscale or (H, W, 3) uint8 RGB; maps are (H, W) floats in [0, 1] at the
image's resolution; boxes are :class:`~cam_core.data.Box` or ``(x0, y0, x1, y1[, score])`` in
half-open pixel coordinates. Raster outputs are (H, W, 3) uint8 **RGB** (OpenCV's BGR never
leaves this module).

Plotly figures place pixel (r, c) at (x=c, y=r), so a box edge ``x0`` (a pixel boundary) is drawn
at ``x0 - 0.5``.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cam_core.data import Box, rescale_boxes

RGB = tuple[int, int, int]
BoxLike = Box | Sequence[float]

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "hot": cv2.COLORMAP_HOT,
}
"""Colormap names the app offers → OpenCV colormap ids (plotly scales are built from the same
lookup table, so figures and PNG downloads agree)."""

CLASS_COLOURS: dict[str, RGB] = {
    "crazing": (230, 159, 0),
    "inclusion": (86, 180, 233),
    "patches": (0, 158, 115),
    "pitted_surface": (240, 228, 66),
    "rolled-in_scale": (204, 121, 167),
    "scratches": (213, 94, 0),
}
"""One colour per NEU-DET class (Okabe–Ito palette: tells apart under colour blindness)."""

_EXTRA_COLOURS: tuple[RGB, ...] = (
    (0, 114, 178),
    (255, 255, 255),
    (148, 103, 189),
    (140, 86, 75),
    (127, 127, 127),
    (188, 189, 34),
)
CAM_BOX_COLOUR: RGB = (255, 255, 255)
"""Outline of boxes derived from a map (GT boxes use their class colour)."""


def class_colour(cls: str) -> RGB:
    """The RGB colour of class ``cls``: fixed for NEU-DET classes, stable by name otherwise."""
    if cls in CLASS_COLOURS:
        return CLASS_COLOURS[cls]
    return _EXTRA_COLOURS[sum(cls.encode("utf-8")) % len(_EXTRA_COLOURS)]


def _css(colour: RGB) -> str:
    return f"rgb({colour[0]},{colour[1]},{colour[2]})"


# --------------------------------------------------------------------------- rasters


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 → a new (H, W, 3) uint8 RGB array."""
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")


def _check_cam(cam: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(cam, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"map must be (H, W), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape[:2]):
        raise ValueError(f"map is {arr.shape} but the image is {tuple(shape[:2])}")
    if not np.isfinite(arr).all():
        raise ValueError("map contains NaN or inf values")
    return np.clip(arr, 0.0, 1.0)


def _check_colormap(colormap: str) -> int:
    try:
        return COLORMAPS[colormap]
    except KeyError:
        raise KeyError(f"Unknown colormap {colormap!r}; valid: {sorted(COLORMAPS)}") from None


def colorize(cam: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 RGB via ``colormap`` (values outside clipped)."""
    code = _check_colormap(colormap)
    u8 = np.rint(_check_cam(cam) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(u8, code)[:, :, ::-1].copy()


def overlay(
    image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5, colormap: str = "jet"
) -> np.ndarray:
    """The image blended with the coloured map: ``(1 - alpha) * image + alpha * colour``.

    ``alpha`` in [0, 1] (0 = image only, 1 = map only); returns (H, W, 3) uint8 RGB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    rgb = to_rgb(image)
    heat = colorize(_check_cam(cam, rgb.shape), colormap)
    mixed = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _xyxy(box: BoxLike) -> tuple[float, float, float, float]:
    if isinstance(box, Box):
        return box.x0, box.y0, box.x1, box.y1
    if len(box) < 4:
        raise ValueError(f"box must be (x0, y0, x1, y1[, score]), got {box!r}")
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


def _pixel_span(lo: float, hi: float, limit: int) -> tuple[int, int] | None:
    """First and last pixel (inclusive) whose centre lies in [lo, hi), clipped to the image."""
    first = max(math.ceil(lo - 0.5), 0)
    last = min(math.ceil(hi - 0.5) - 1, limit - 1)
    return (first, last) if first <= last else None


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[BoxLike],
    *,
    colour: RGB | None = None,
    thickness: int = 2,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """A copy of ``image`` (as RGB) with each box outlined ``thickness`` pixels *inside* its edge.

    The outline covers exactly the pixels whose centres are inside the box and within
    ``thickness`` pixels of its border. ``colour`` None: a :class:`Box` takes its class colour,
    other boxes :data:`CAM_BOX_COLOUR`. ``labels`` (one per box) are written above each box.
    """
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1 pixel, got {thickness}")
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
    out = to_rgb(image)
    h, w = out.shape[:2]
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = _xyxy(box)
        cols, rows = _pixel_span(x0, x1, w), _pixel_span(y0, y1, h)
        if cols is None or rows is None:
            continue
        (c0, c1), (r0, r1) = cols, rows
        rgb = colour or (class_colour(box.cls) if isinstance(box, Box) else CAM_BOX_COLOUR)
        t = thickness
        out[r0 : min(r0 + t, r1 + 1), c0 : c1 + 1] = rgb
        out[max(r1 - t + 1, r0) : r1 + 1, c0 : c1 + 1] = rgb
        out[r0 : r1 + 1, c0 : min(c0 + t, c1 + 1)] = rgb
        out[r0 : r1 + 1, max(c1 - t + 1, c0) : c1 + 1] = rgb
        if labels is not None and labels[i]:
            scale = max(0.35, min(h, w) / 600)
            y_text = r0 - 3 if r0 > 12 else min(r0 + 12 + t, h - 2)
            cv2.putText(
                out,
                labels[i],
                (c0 + 1, y_text),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                rgb,
                1,
                cv2.LINE_AA,
            )
    return out


def thumbnail(image: np.ndarray, boxes: Sequence[Box] = (), side: int = 128) -> np.ndarray:
    """(side, side·W/H) RGB preview of ``image`` with its GT boxes in class colours."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = cv2.resize(to_rgb(image), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return draw_boxes(small, rescale_boxes(tuple(boxes), (h, w), size), thickness=1)


def panel_image(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    gt_boxes: Sequence[Box] = (),
    cam_boxes: Sequence[BoxLike] = (),
    cam_box_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """The heatmap panel as one RGB raster: overlay, GT boxes (class colours), map boxes (white)."""
    out = overlay(image, cam, alpha=alpha, colormap=colormap)
    out = draw_boxes(out, gt_boxes)
    return draw_boxes(out, cam_boxes, colour=CAM_BOX_COLOUR, labels=cam_box_labels)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG file content of an (H, W) or (H, W, 3) uint8 RGB array."""
    arr = to_rgb(rgb)
    ok, buf = cv2.imencode(".png", arr[:, :, ::-1])
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays, checked above
        raise ValueError(f"could not encode a {arr.shape} image as PNG")
    return buf.tobytes()


def npy_bytes(cam: np.ndarray) -> bytes:
    """``.npy`` file content of a map (float32, shape kept)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(cam, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- plotly


def colorscale(colormap: str = "jet", steps: int = 16) -> list[list[Any]]:
    """A plotly colorscale sampled from the OpenCV ``colormap`` lookup table."""
    code = _check_colormap(colormap)
    levels = np.linspace(0, 255, steps).round().astype(np.uint8)[None, :]
    lut = cv2.applyColorMap(levels, code)[0, :, ::-1]
    return [[i / (steps - 1), _css(tuple(int(v) for v in lut[i]))] for i in range(steps)]


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
        x0, y0, x1, y1 = (v - 0.5 for v in _xyxy(box))
        xs += [x0, x1, x1, x0, x0, None]
        ys += [y0, y0, y1, y1, y0, None]
    return xs, ys


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
                line={"color": _css(class_colour(cls)), "width": 2, "dash": dash},
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
    fig = go.Figure([_image_trace(rgb, max_side, hover=True), *_gt_traces(gt_boxes, "solid", True)])
    _layout(fig, title, height + (30 if gt_boxes else 0), rgb.shape[:2], legend=bool(gt_boxes))
    return fig


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
) -> go.Figure:
    """The map over the image: a translucent heatmap (hover shows the map value), GT boxes
    dashed in class colours, and map-derived boxes in white with ``cam_box_labels``.

    The map is block-averaged to at most ``max_side`` cells a side for the browser.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if cam_box_labels is not None and len(cam_box_labels) != len(cam_boxes):
        raise ValueError(f"{len(cam_box_labels)} labels for {len(cam_boxes)} map boxes")
    rgb = to_rgb(image)
    arr = _check_cam(cam, rgb.shape)
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
            colorbar={"thickness": 10, "len": 0.8, "tickvals": [0, 0.5, 1], "x": 1.01, "xpad": 4},
            hovertemplate="x %{x:.0f}, y %{y:.0f}<br>map %{z:.2f}<extra></extra>",
            name="map",
        ),
        *_gt_traces(gt_boxes, "dash", True),
    ]
    if cam_boxes:
        xs, ys = _outline(cam_boxes)
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": _css(CAM_BOX_COLOUR), "width": 2},
                name=f"map boxes ({len(cam_boxes)})",
                hoverinfo="name",
            )
        )
        if cam_box_labels:
            tops = [_xyxy(b) for b in cam_boxes]
            traces.append(
                go.Scatter(
                    x=[x0 - 0.5 for x0, _, _, _ in tops],
                    y=[y0 - 0.5 for _, y0, _, _ in tops],
                    mode="text",
                    text=list(cam_box_labels),
                    textposition="top right",
                    textfont={"color": "white", "size": 11},
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
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
                "color": [_css(class_colour(c)) for c in classes],
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


# --------------------------------------------------------------------------- text


def _fmt(value: float | bool | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "hit":
        return "hit ✓" if value else "miss ✗"
    return f"{float(value):.2f}"


def scores_caption(scores: Mapping[str, float | bool | None], blank: bool = False) -> str:
    """One line of localization figures: pointing, energy in boxes, pixel IoU, map-box IoU.

    ``blank`` (:attr:`~cam_core.explain.CamResult.blank`) puts first that the method found no
    positive evidence, so a dark panel is not read as "looking nowhere in particular".
    """
    parts = ["blank map: no positive evidence for this class"] if blank else []
    if all(v is None for v in scores.values()):
        return " · ".join([*parts, "no GT box of this class: localization not scored"])
    parts += [
        f"pointing {_fmt(scores.get('pointing'), 'hit')}",
        f"energy {_fmt(scores.get('energy'), 'num')}",
        f"IoU {_fmt(scores.get('iou'), 'num')}",
    ]
    if "box_iou" in scores:
        parts.append(f"box IoU {_fmt(scores.get('box_iou'), 'num')}")
    return " · ".join(parts)


def legend_markdown(classes: Sequence[str]) -> str:
    """A one-line colour key (HTML spans) for ``classes``."""
    items = [
        f'<span style="display:inline-block;width:0.8em;height:0.8em;'
        f'background:{_css(class_colour(c))};border-radius:2px;margin:0 0.3em 0 0.8em"></span>{c}'
        for c in classes
    ]
    return "".join(items)


__all__ = [
    "CAM_BOX_COLOUR",
    "CLASS_COLOURS",
    "COLORMAPS",
    "class_colour",
    "colorize",
    "colorscale",
    "comparison_table",
    "confusion_figure",
    "draw_boxes",
    "heatmap_figure",
    "image_figure",
    "legend_markdown",
    "metric_bars",
    "npy_bytes",
    "overlay",
    "panel_image",
    "png_bytes",
    "probability_figure",
    "scores_caption",
    "styled_comparison",
    "thumbnail",
    "to_rgb",
]


# --------------------------------------------------------------------------- evaluation tables

METRIC_LABELS: dict[str, str] = {
    "pointing": "pointing game (strict)",
    "pointing_tol": "pointing game (15 px tolerance)",
    "energy": "energy inside the boxes",
    "energy_ratio": "energy / box area",
    "iou": "pixel IoU at τ",
    "box_iou": "best map-box IoU",
    "maxboxacc_v2": "MaxBoxAccV2",
    "pxap": "PxAP",
}
"""Readable names of the evaluation figures (all fractions; higher is better)."""


def _group_name(method: str, layer: str, layers: int) -> str:
    if method.startswith("baseline:") or layers <= 1:
        return method
    return f"{method} @ {layer}"


def comparison_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per class (rows, "all" last) × method (columns), baselines on the right.

    ``summary`` is :meth:`cam_core.evaluate.EvalResult.summary`; a method evaluated at several
    layers gets one column per layer ("method @ layer"). The first column, ``n``, counts the
    scored (image, class) pairs of the class (the most any method scored).
    """
    if metric not in summary.columns:
        valid = [c for c in METRIC_LABELS if c in summary.columns]
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
    """Grouped bars of ``metric`` per class, one bar per method; baselines hatched and grey."""
    table = comparison_table(summary, metric)
    fig = go.Figure()
    greys = ("#9aa5b1", "#bcc5cf", "#d9dee4")
    n_base = 0
    for column in table.columns[1:]:
        is_base = column.startswith("baseline:")
        marker: dict[str, Any] = {}
        if is_base:
            marker = {"color": greys[n_base % len(greys)], "pattern": {"shape": "/"}}
            n_base += 1
        fig.add_bar(
            x=list(table.index),
            y=[None if pd.isna(v) else float(v) for v in table[column]],
            name=column,
            marker=marker,
            hovertemplate=f"{column}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
        )
    fig.update_layout(
        barmode="group",
        height=380,
        margin={"l": 4, "r": 4, "t": 40, "b": 4},
        title={
            "text": f"{METRIC_LABELS.get(metric, metric)} per class — grey hatched: baselines",
            "font": {"size": 14},
        },
        yaxis={"range": [0, 1], "title": metric},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def styled_comparison(table: pd.DataFrame) -> Any:
    """:func:`comparison_table` as a pandas Styler: method cells that beat every baseline of
    their class in green, baseline columns grey and italic, three decimals.
    """
    base_cols = [c for c in table.columns if str(c).startswith("baseline:")]
    value_cols = [c for c in table.columns if c != "n"]
    best_base = table[base_cols].max(axis=1) if base_cols else None

    def colour(row: pd.Series) -> list[str]:
        styles = []
        for column, value in row.items():
            if column == "n":
                styles.append("color: #6b7280")
            elif column in base_cols:
                styles.append("color: #6b7280; font-style: italic; background-color: #f3f4f6")
            elif best_base is not None and pd.notna(value) and value > best_base[row.name]:
                styles.append("background-color: #d1fae5; font-weight: 600")
            else:
                styles.append("")
        return styles

    return table.style.apply(colour, axis=1).format("{:.3f}", subset=value_cols, na_rep="–")


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
