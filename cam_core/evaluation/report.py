"""The self-contained HTML report of an :class:`EvalResult` (plotly.js inlined, no network)."""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cam_core.evaluation.config import BASELINES
from cam_core.evaluation.result import EvalResult
from cam_core.metrics import stats as S

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["REPORT_METRIC", "build_report", "report_figures", "write_outputs", "write_report"]

REPORT_METRIC = "pointing"
"""The figure the report's bar chart shows per class and method."""


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    return str(value)


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for rec in df.to_dict("records"):
        cls = ' class="baseline"' if rec.get("baseline") else ""
        cls = ' class="all"' if not cls and rec.get("class") == "all" else cls
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in rec.values())
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def report_figures(result: EvalResult) -> list[go.Figure]:
    """The report's figures: :func:`cam_core.figures.metric_bars` of :data:`REPORT_METRIC` (one
    colour per method, baselines grey and hatched) and a box plot of the energy in the boxes per
    (sample, class). Empty when nothing was scored.
    """
    import plotly.graph_objects as go

    from cam_core.figures import metric_bars

    table = result.summary()
    if table.empty:
        return []
    energy = go.Figure()
    rows = result.rows_frame()
    for method, layer in result.groups():
        is_base = method in BASELINES
        vals = rows[(rows["method"] == method) & (rows["layer"] == layer)]["energy"].dropna()
        energy.add_box(
            y=vals.astype(float),
            name=method if is_base else f"{method} @ {layer}",
            marker_color="gray" if is_base else None,
        )
    energy.update_layout(
        title="Energy inside the boxes per (sample, class)",
        yaxis={"range": [0, 1], "title": "share of map mass"},
        showlegend=False,
        height=420,
    )
    return [metric_bars(table, REPORT_METRIC), energy]


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:right}
th{background:#f0f0f0}td:nth-child(-n+3){text-align:left}
tr.baseline td{background:#f6f6f6;color:#666;font-style:italic}
tr.all td{font-weight:600}
.examples{display:flex;flex-wrap:wrap;gap:1rem}.examples figure{margin:0}
.examples img{max-width:320px;border:1px solid #ccc}
.warn{background:#fff3cd;padding:.5rem;border:1px solid #e0c060}
"""


def _frame_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="–", escape=True, border=0)


def _trust_sections(result: EvalResult, ci: pd.DataFrame | None) -> list[str]:
    """Intervals, paired differences, the box-size split, faithfulness, sanity and verdicts."""
    import plotly.io as pio

    from cam_core import trust_figures as TF
    from cam_core import verdict as V

    ci = V.confidence_table(result) if ci is None else ci
    if ci.empty:
        return []
    out = [
        "<h2>Confidence intervals</h2><p>Every figure with its 95 % bootstrap interval "
        f"({S.N_BOOT} draws of the images, seed {S.SEED}: rows of one image move together; "
        "MaxBoxAccV2 and PxAP recomputed per draw).</p>",
        _frame_html(TF.ci_table(ci)),
        *(
            pio.to_html(TF.ci_bars(ci, f), full_html=False, include_plotlyjs=False)
            for f in (V.FAITHFULNESS_FIGURE,)
            if f in set(ci["figure"])
        ),
        "<h2>Against the best baseline (paired)</h2><p>Method − the best model-free baseline of "
        "the class, on the same images, with its 95 % interval: an interval above 0 means the "
        "method beats every baseline there.</p>",
        _frame_html(TF.diff_table(ci)),
        "<h2>By box size</h2><p>Share of the image covered by the class's boxes: large boxes "
        "inflate pointing and energy (a centre point lands in a box that fills the image).</p>",
    ]
    for fig in (REPORT_METRIC, V.LOCALIZATION_FIGURE):
        if fig in set(ci["figure"]):
            out += [
                f"<h3>{html.escape(TF.figure_name(fig))}</h3>",
                _frame_html(TF.size_table(ci, fig)),
            ]
    sanity = getattr(result, "sanity", None)
    if sanity is not None and len(sanity):
        from cam_core.sanity_figures import sanity_figures

        out.append("<h2>Sanity checks</h2>")
        out += [
            pio.to_html(fig, full_html=False, include_plotlyjs=False)
            for fig in sanity_figures(sanity).values()
        ]
    out += [
        "<h2>Verdict</h2>",
        f"<p><b>Rule.</b> {html.escape(V.RULE)}</p>",
        TF.verdict_html(V.verdicts(ci, sanity, result.model)),
    ]
    return out


def build_report(
    result: EvalResult,
    examples: Sequence[tuple[str, bytes]] = (),
    *,
    title: str = "CAM localization report",
    ci: pd.DataFrame | None = None,
) -> str:
    """The self-contained HTML text of :func:`write_report`: the run's settings and state,
    the summary table (baseline rows marked), :func:`report_figures`, the errors, and
    ``examples``: (caption, PNG bytes) panels embedded as base64 images. ``ci``: the
    :func:`cam_core.verdict.confidence_table` of ``result`` (computed when None) for the
    intervals, paired differences, box-size split, sanity chart and verdicts.
    """
    import plotly.io as pio

    table = result.summary()
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if not result.complete:
        parts.append(
            f"<p class='warn'>Partial run: {result.n_done} of {result.n_samples} samples "
            f"({html.escape(result.status())}).</p>"
        )
    parts.append("<h2>Run</h2><table>")
    parts += [
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in result.settings().items()
    ]
    parts.append("</table>")
    parts.append(
        "<h2>Summary</h2><p>Rows marked <i>baseline</i> (grey, italic) are model-free maps "
        "scored on the same (sample, class) pairs: a single peak at the image centre, a centred "
        "Gaussian and a uniform map. A method is only informative where it beats them. Metrics "
        "are means over scoreable pairs (the class has boxes in the image); <b>all</b> pools "
        "every pair; maxboxacc_v2 and pxap are dataset figures.</p>"
    )
    parts.append(_table_html(table))
    figures = report_figures(result)
    if figures:
        from cam_core import trust_figures as TF
        from cam_core import verdict as V

        ci = V.confidence_table(result) if ci is None else ci
        if REPORT_METRIC in set(ci["figure"]):  # the same bars, with their 95 % intervals
            figures[0] = TF.ci_bars(ci, REPORT_METRIC)
        parts.append("<h2>Figures</h2>")
        for k, fig in enumerate(figures):
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=k == 0))
        parts += _trust_sections(result, ci)  # after plotly.js
    if result.errors:
        parts.append(f"<h2>Errors ({len(result.errors)})</h2><ul>")
        parts += [
            f"<li><b>{html.escape(stem)}</b>: {html.escape(msg)}</li>"
            for stem, msg in result.errors
        ]
        parts.append("</ul>")
    if examples:
        parts.append("<h2>Examples</h2><div class='examples'>")
        for k, (caption, png) in enumerate(examples):
            if not isinstance(png, bytes) or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                raise ValueError(f"example {k} ({caption!r}) is not PNG bytes")
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    result: EvalResult,
    path: str | os.PathLike[str],
    examples: Sequence[tuple[str, bytes]] = (),
    *,
    title: str = "CAM localization report",
    ci: pd.DataFrame | None = None,
) -> Path:
    """Write :func:`build_report` to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(result, examples, title=title, ci=ci), encoding="utf-8")
    return path


def write_outputs(
    result: EvalResult,
    out: str | os.PathLike[str],
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Path]:
    """Every file of a finished run in folder ``out``: ``summary.csv`` (the summary with 95 %
    intervals and paired differences, :func:`cam_core.verdict.summary_with_ci`), ``stats.csv``
    (the long :func:`cam_core.verdict.confidence_table`, box-size split included),
    ``verdicts.csv`` (:func:`cam_core.verdict.verdicts`, rule in :data:`cam_core.verdict.RULE`)
    and ``report.html``; the bootstrap runs once. Returns the paths by name.
    """
    from cam_core import verdict as V

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ci = V.confidence_table(result, progress=progress)
    paths = {name: out / name for name in ("summary.csv", "stats.csv", "verdicts.csv")}
    V.summary_with_ci(result, ci).to_csv(paths["summary.csv"], index=False, float_format="%.6g")
    ci.to_csv(paths["stats.csv"], index=False, float_format="%.6g")
    verdicts = V.verdicts(ci, getattr(result, "sanity", None), result.model)
    verdicts.to_csv(paths["verdicts.csv"], index=False, float_format="%.6g")
    paths["report.html"] = write_report(result, out / "report.html", ci=ci)
    return paths
