"""The evaluation report as a PDF to hand over: title, settings, the per-class tables, bars, the
right-for-the-right-reason quadrants, the positional-bias maps, the verdicts and the
release-vs-release diff when they were computed.

**Library: reportlab** (BSD, pure Python, already a dependency). The HTML report
(:mod:`~.report`) is built from plotly figures; turning HTML or plotly into PDF needs a browser
engine (Chromium through kaleido or Playwright, WeasyPrint with Pango/Cairo system libraries) —
none is available to the app at run time on a plant PC or a bare server. So the PDF is drawn
directly: tables as reportlab tables, the bars as a reportlab vector chart
(:class:`~reportlab.graphics.charts.barcharts.VerticalBarChart`), the bias maps as PNGs made with
numpy + OpenCV. The content follows the HTML report (same table, same metric, same sections).

Text uses the standard Helvetica fonts (nothing embedded); characters outside Latin-1 are
written out (``τ`` → ``tau``).

Example::

    pdf = build_pdf(result, verdicts=verdict_table(result))
    Path("report.pdf").write_bytes(pdf)
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import cv2
import numpy as np
import pandas as pd
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from cam_core.evaluation.config import BASELINES
from cam_core.evaluation.report import REPORT_METRIC
from cam_core.evaluation.result import EvalResult
from cam_core.figures import comparison_table
from cam_core.render import png_bytes
from cam_core.vocabulary import method_name, metric_name

if TYPE_CHECKING:
    from cam_core.review.diff import ReleaseDiff

__all__ = ["PDF_METRICS", "build_pdf", "write_pdf"]

PDF_METRICS: tuple[str, ...] = (REPORT_METRIC, "energy")
"""The per-class tables the PDF prints (the bar chart shows the first)."""
MAX_ROWS = 60
"""Longest table printed (the diff's changed images, errors); the rest is counted."""

_PAGE = landscape(A4)
_STYLES = getSampleStyleSheet()
_SMALL = ParagraphStyle("small", parent=_STYLES["BodyText"], fontSize=8, leading=10)
_CELL = ParagraphStyle("cell", parent=_SMALL, fontSize=7, leading=8.5)
_WARN = ParagraphStyle("warn", parent=_STYLES["BodyText"], backColor=colors.HexColor("#fff3cd"))
_METHOD_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
_BASELINE_GREYS = ("#9e9e9e", "#bdbdbd", "#d9d9d9")
_VERDICT_COLOURS = {"green": "#c8e6c9", "amber": "#ffe0b2", "red": "#ffcdd2"}
_ASCII = str.maketrans({"τ": "tau", "σ": "sigma", "→": "->", "≥": ">=", "≤": "<=", "×": "x"})


def _latin(text: object) -> str:
    """``text`` for the standard fonts: Greek letters and arrows written out, other
    characters outside Latin-1 replaced by ``?``.
    """
    out = str(text).translate(_ASCII)
    return out.encode("latin-1", "replace").decode("latin-1")


def _p(text: object, style: ParagraphStyle = _STYLES["BodyText"]) -> Paragraph:
    return Paragraph(escape(_latin(text)), style)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    return _latin(value)


def _column_name(column: str) -> str:
    method, _, layer = str(column).partition(" @ ")
    return method_name(method) + (f" @ {layer}" if layer else "")


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    grey_rows: Sequence[int] = (),
    bold_rows: Sequence[int] = (),
    fills: Sequence[tuple[int, int, str]] = (),
    widths: Sequence[float] | None = None,
) -> Table:
    """A bordered table: ``header`` wrapped, cells formatted by :func:`_fmt`; ``fills`` are
    (row, column, colour) of body cells.
    """
    data: list[list[Any]] = [[_p(h, _CELL) for h in header]]
    for row in rows:  # with column widths, text wraps inside its cell
        cells = [_fmt(v) for v in row]
        if widths is not None:
            cells = [
                _p(c, _CELL) if isinstance(v, str) else c for c, v in zip(cells, row, strict=True)
            ]
        data.append(cells)
    style = [
        ("FONT", (0, 1), (-1, -1), "Helvetica", 7.5),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f0f0f0")),
        ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]
    for r in grey_rows:
        style.append(("TEXTCOLOR", (0, r + 1), (-1, r + 1), colors.HexColor("#666666")))
        style.append(("FONT", (0, r + 1), (-1, r + 1), "Helvetica-Oblique", 7.5))
    for r in bold_rows:
        style.append(("FONT", (0, r + 1), (-1, r + 1), "Helvetica-Bold", 7.5))
    for r, c, colour in fills:
        style.append(("BACKGROUND", (c, r + 1), (c, r + 1), colors.HexColor(colour)))
    table = Table(data, repeatRows=1, hAlign="LEFT", colWidths=widths)
    table.setStyle(TableStyle(style))
    return table


def _settings(result: EvalResult) -> list[Any]:
    rows = [(k, v) for k, v in result.settings().items()]
    table = Table([[_p(k, _SMALL), _p(v, _SMALL)] for k, v in rows], colWidths=[6 * cm, 20 * cm])
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0")),
            ]
        )
    )
    return [_p("Run", _STYLES["Heading2"]), table]


def _per_class(summary: pd.DataFrame, metric: str) -> list[Any]:
    """The Evaluate page's per-class table of ``metric`` (classes × methods, baselines right)."""
    table = comparison_table(summary, metric)
    header = ["class", "n", *(_column_name(c) for c in table.columns[1:])]
    rows = [
        [cls, int(table.loc[cls, "n"]), *table.loc[cls].iloc[1:].tolist()] for cls in table.index
    ]
    base = [i for i, c in enumerate(table.columns) if c in BASELINES]
    fills = [(r, c + 1, "#f6f6f6") for r in range(len(rows)) for c in base]
    bold = [i for i, cls in enumerate(table.index) if cls == "all"]
    return [
        _p(f"{metric_name(metric)} per class", _STYLES["Heading3"]),
        _table(header, rows, fills=fills, bold_rows=bold),
        Spacer(1, 0.3 * cm),
    ]


def _bars(summary: pd.DataFrame, metric: str) -> Drawing | None:
    """Grouped bars of ``metric`` per class, one series per method (baselines grey)."""
    table = comparison_table(summary, metric).drop(columns="n")
    if table.empty:
        return None
    width, height = 24 * cm, 7.5 * cm
    drawing = Drawing(width, height + 1.2 * cm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = (
        1.2 * cm,
        1.0 * cm,
        width - 7 * cm,
        height - 1 * cm,
    )
    values = table.fillna(0.0).to_numpy(dtype=float).T  # series = methods, categories = classes
    chart.data = [tuple(v) for v in values]
    chart.categoryAxis.categoryNames = [_latin(c) for c in table.index]
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.angle = 20
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.valueMin, chart.valueAxis.valueMax, chart.valueAxis.valueStep = 0, 1, 0.2
    chart.valueAxis.labels.fontSize = 7
    chart.groupSpacing, chart.barSpacing = 6, 0.5
    methods = [c for c in table.columns if c not in BASELINES]
    palette = {c: _METHOD_COLOURS[i % len(_METHOD_COLOURS)] for i, c in enumerate(methods)}
    palette |= {b: _BASELINE_GREYS[i % 3] for i, b in enumerate(BASELINES)}
    for i, column in enumerate(table.columns):
        chart.bars[i].fillColor = colors.HexColor(palette[column])
        chart.bars[i].strokeWidth = 0.2
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = width - 5.5 * cm, height
    legend.fontSize, legend.dx, legend.dy = 7, 7, 7
    legend.columnMaximum, legend.alignment = 10, "right"  # one column, swatch then name
    legend.colorNamePairs = [
        (colors.HexColor(palette[c]), _latin(_column_name(c))) for c in table.columns
    ]
    drawing.add(legend)
    return drawing


def _heat_png(arr: np.ndarray, side: int = 150, band: float = 0.1) -> bytes:
    """A (G, G) array in [0, 1] as a ``side`` px viridis PNG, the border band outlined."""
    unit = np.clip(np.nan_to_num(np.asarray(arr, dtype=np.float32)), 0, 1)
    big = cv2.resize(unit, (side, side), interpolation=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(
        cv2.applyColorMap((big * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB
    )
    edge = round(band * side)
    cv2.rectangle(rgb, (edge, edge), (side - 1 - edge, side - 1 - edge), (255, 255, 255), 1)
    return png_bytes(rgb)


def _image(png: bytes, width: float) -> Image:
    return Image(io.BytesIO(png), width=width, height=width)


def _review_sections(result: EvalResult) -> list[Any]:
    """Quadrant tables and bias maps (:mod:`cam_core.review`) of each evaluated (method, layer);
    empty when the rows lack what they need (a store written before the review existed).
    """
    from cam_core.review.bias import bias_maps, bias_table
    from cam_core.review.quadrants import QUADRANT_NAMES, QUADRANTS, quadrant_counts

    rows = result.rows_frame()
    out: list[Any] = []
    groups = [(m, lay) for m, lay in result.groups() if m not in BASELINES]
    quad: list[Any] = []
    for method, layer in groups:
        try:
            counts = quadrant_counts(rows, method, layer, classes=result.classes)
        except (KeyError, ValueError):
            continue
        header = ["class", *(QUADRANT_NAMES[q] for q in QUADRANTS), "n", "unscored", "off share"]
        body = counts[["class", *QUADRANTS, "n", "unscored", "off_share"]].values.tolist()
        bold = [i for i, r in enumerate(body) if r[0] == "all"]
        fills = [(i, 1, "#ffe0b2") for i, r in enumerate(body) if r[1]]
        quad += [
            _p(f"{method_name(method)} @ {layer}", _STYLES["Heading3"]),
            _table(header, body, bold_rows=bold, fills=fills),
        ]
    if quad:
        out += [
            PageBreak(),
            _p("Right for the right reason", _STYLES["Heading2"]),
            _p(
                "Per class: the prediction correct or wrong x the map's peak inside or outside "
                "the class's boxes (pointing game). 'Correct class, map off the defect' first: "
                "the case accuracy hides. Off share = that quadrant / correct predictions.",
                _SMALL,
            ),
            *quad,
        ]
    bias: list[Any] = []
    for method, layer in groups:
        table = bias_table(result, method, layer, [*result.classes, "all"])
        if table.empty:
            continue
        cells = []
        for rec in table.to_dict("records"):
            mean_map, density = bias_maps(result, method, layer, rec["class"])
            if mean_map is None:
                continue
            pics = [_image(_heat_png(mean_map), 3.2 * cm)]
            if density is not None:
                pics.append(_image(_heat_png(density), 3.2 * cm))
            flag = "FLAGGED: " + rec["reasons"] if rec["flagged"] else "follows the boxes"
            caption = (
                f"{rec['class']} (n {rec['n']}): border {rec['map_border']:.2f} vs boxes "
                f"{rec['box_border']:.2f}; corners {rec['map_corners']:.2f} vs "
                f"{rec['box_corners']:.2f}. {flag}"
            )
            inner = Table([pics], hAlign="LEFT")
            cells.append([inner, _p(caption, _SMALL)])
        if cells:
            grid = Table(cells, colWidths=[7.2 * cm, 18 * cm], hAlign="LEFT")
            grid.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
            bias += [_p(f"{method_name(method)} @ {layer}", _STYLES["Heading3"]), grid]
    if bias:
        out += [
            PageBreak(),
            _p("Positional bias", _STYLES["Heading2"]),
            _p(
                "Left: the mean map (each map divided by its maximum) in image coordinates; "
                "right: the share of images whose GT boxes cover each place. The white frame "
                "is the border band. A flag says where the maps' prior does not follow the "
                "boxes'.",
                _SMALL,
            ),
            *bias,
        ]
    return out


def _verdicts(table: pd.DataFrame) -> list[Any]:
    cols = ["method", "layer", "class", "verdict", "localization", "faithfulness", "sanity"]
    cols = [c for c in cols if c in table.columns]
    body = []
    fills = []
    for i, rec in enumerate(table.to_dict("records")):
        row = [method_name(rec["method"]) if c == "method" else rec[c] for c in cols]
        if {"loc_diff", "loc_lo", "loc_hi"} <= rec.keys():
            row.append(f"{_fmt(rec['loc_diff'])} [{_fmt(rec['loc_lo'])}, {_fmt(rec['loc_hi'])}]")
        row.append(rec.get("why", ""))
        body.append(row)
        if "verdict" in cols:
            fills.append(
                (i, cols.index("verdict"), _VERDICT_COLOURS.get(rec["verdict"], "#ffffff"))
            )
    header = [*cols]
    if body and len(body[0]) == len(cols) + 2:
        header.append("energy - best baseline [95 % CI]")
    header.append("why")
    return [
        _p("Verdicts", _STYLES["Heading2"]),
        _table(header, body[:MAX_ROWS], fills=fills[:MAX_ROWS], widths=_verdict_widths(header)),
        *_more(len(body)),
    ]


def _verdict_widths(header: Sequence[str]) -> list[float]:
    """Column widths (points) of the verdict table: the last column ("why") takes the rest."""
    fixed = {"method": 2.3, "layer": 1.6, "class": 2.4, "verdict": 1.5}
    widths = [fixed.get(h, 2.0 if "CI" not in h else 3.8) * cm for h in header[:-1]]
    return [*widths, max(_PAGE[0] - 3 * cm - sum(widths), 3 * cm)]


def _diff(diff: ReleaseDiff) -> list[Any]:
    table = diff.table
    body = table[["class", "figure", "a", "b", "diff", "lo", "hi", "n_images", "significant"]]
    rows = body.values.tolist()
    fills = [(i, 8, "#ffcdd2" if r[4] < 0 else "#c8e6c9") for i, r in enumerate(rows) if r[8]]
    changes = diff.changes
    counts = changes["change"].value_counts() if len(changes) else pd.Series(dtype=int)
    lines = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"
    out = [
        PageBreak(),
        _p("Release A vs release B", _STYLES["Heading2"]),
        _p(f"A: {diff.a}. B: {diff.b}. {diff.n_images} images, paired bootstrap 95 % CI.", _SMALL),
        _table(
            ["class", "figure", "A", "B", "B - A", "lo", "hi", "images", "significant"],
            rows[:MAX_ROWS],
            fills=fills,
        ),
        *_more(len(rows)),
        _p(f"Images that changed: {lines}", _STYLES["Heading3"]),
    ]
    if len(changes):
        cols = list(changes.columns)
        out += [_table(cols, changes.values.tolist()[:MAX_ROWS]), *_more(len(changes))]
    return out


def _more(n: int) -> list[Any]:
    return [_p(f"... {n - MAX_ROWS} more rows not printed.", _SMALL)] if n > MAX_ROWS else []


def build_pdf(
    result: EvalResult,
    *,
    title: str = "CAM localization report",
    verdicts: pd.DataFrame | None = None,
    diff: ReleaseDiff | None = None,
    review: bool = True,
) -> bytes:
    """The PDF bytes of the report of ``result``: title, partial-run warning, settings, the
    per-class tables of :data:`PDF_METRICS` (baselines grey), the bars of the first, the
    quadrant tables and bias maps of each (method, layer) (``review``), ``verdicts``
    (:func:`cam_core.verdict.verdict_table`) and ``diff``
    (:func:`cam_core.review.diff.diff_results`) when given, and the errors.
    """
    summary = result.summary()
    story: list[Any] = [_p(title, _STYLES["Title"])]
    if not result.complete:
        story.append(
            _p(
                f"Partial run: {result.n_done} of {result.n_samples} images ({result.status()}).",
                _WARN,
            )
        )
    story += _settings(result)
    story.append(_p("Summary", _STYLES["Heading2"]))
    story.append(
        _p(
            "Baselines (grey) are model-free maps scored on the same (image, class) pairs: a "
            "single peak at the image centre, a centred Gaussian and a uniform map. A method is "
            "only informative where it beats them. Figures are means over scoreable pairs; 'all' "
            "pools every pair.",
            _SMALL,
        )
    )
    if summary.empty:
        story.append(_p("Nothing was scored.", _WARN))
    else:
        story += _per_class(summary, PDF_METRICS[0])
        bars = _bars(summary, PDF_METRICS[0])
        if bars is not None:
            story.append(KeepTogether([_p(f"{metric_name(PDF_METRICS[0])}: bars", _SMALL), bars]))
        for metric in PDF_METRICS[1:]:
            if metric in summary.columns:
                story += _per_class(summary, metric)
    if verdicts is not None and len(verdicts):
        story += _verdicts(verdicts)
    if review and not summary.empty:
        story += _review_sections(result)
    if diff is not None:
        story += _diff(diff)
    if result.errors:
        story.append(_p(f"Errors ({len(result.errors)})", _STYLES["Heading2"]))
        story += [_p(f"{stem}: {msg}", _SMALL) for stem, msg in result.errors[:MAX_ROWS]]
        story += _more(len(result.errors))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=_PAGE,
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.2 * cm,
        bottomMargin=1.2 * cm,
        title=_latin(title),
        author="cam_core",
    )
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return buf.getvalue()


def _footer(canvas: Any, doc: Any) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 7)
    canvas.drawRightString(_PAGE[0] - 1.5 * cm, 0.7 * cm, f"page {doc.page}")
    canvas.restoreState()


def write_pdf(result: EvalResult, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write :func:`build_pdf` to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_pdf(result, **kwargs))
    return path
